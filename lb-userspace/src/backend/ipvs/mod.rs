//! The IPVS backend: the kernel's IP Virtual Server, programmed over generic netlink exactly as
//! ldirectord programs it through ipvsadm. It serves every virtual the XDP program cannot (NAT,
//! firewall marks, thresholds, scheduler flags, every IPVS scheduler).
//!
//! What ipvsadm does in user space, this does too: a direct-routing or tunnelled real of an
//! address service takes the virtual's port, and a port-0 service must be persistent. As
//! keepalived does, an add of what exists is an edit, an edit of what is missing is an add, and
//! a delete of what is gone is done.
//!
//! IPVS holds other programs' services too (another configuration, keepalived): this backend
//! reads back and changes only the services it was given ([`IpvsBackend::open`]'s `scope`) or
//! has added since.
//!
//! # Layout
//! * `message`: the family's messages and attributes.
//! * `netlink`: the socket, family resolution, requests and dumps, ipvsadm's error words.

pub mod message;
pub mod netlink;

use std::collections::BTreeSet;
use std::net::IpAddr;

use message::{
    AF_INET, AF_INET6, DestEntry, FWD_DROUTE, FWD_LOCALNODE, FWD_MASQ, FWD_TUNNEL, Info,
    IpvsMessage, SVC_F_ONEPACKET, SVC_F_PERSISTENT, ServiceEntry, ServiceId, Stats, cmd,
};
use netlink::{IpvsError, IpvsSocket};

use crate::{
    backend::{Backend, BackendError, Notes},
    live::{LiveReal, LiveService, Rates, Traffic},
    table::{
        BackendKind, DesiredTable, Forwarding, Persistence, Protocol, Real, Service, ServiceAttrs,
        ServiceKey, SocketText,
        diff::{self, Op},
        sched_flags,
    },
};

impl From<IpvsError> for BackendError {
    fn from(e: IpvsError) -> BackendError {
        match e {
            IpvsError::NoModule { .. } => BackendError::Unsupported(e.to_string()),
            other => BackendError::system("IPVS", other),
        }
    }
}

/// What IPVS can do with a virtual service; `Err` says what ipvsadm would refuse, in its words.
/// (The kernel does not check these; ipvsadm does, and so must every netlink client.)
pub fn validate(key: &ServiceKey, service: &Service) -> Result<(), String> {
    if let ServiceKey::Inet { port: 0, .. } = key
        && service.attrs.persistence.is_none()
    {
        return Err("Zero port specified for non-persistent service".into());
    }
    if service.attrs.one_packet
        && matches!(
            key,
            ServiceKey::Inet {
                protocol: Protocol::Tcp,
                ..
            }
        )
    {
        return Err("One-Packet only available for UDP or firewall marks".into());
    }
    if service.attrs.scheduler.len() > 15 {
        return Err(format!(
            "scheduler name \"{}\" is longer than IPVS takes (15 characters)",
            service.attrs.scheduler
        ));
    }
    Ok(())
}

fn family(ipv6: bool) -> u16 {
    if ipv6 { AF_INET6 } else { AF_INET }
}

fn addr16(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(a) => {
            let mut b = [0; 16];
            b[..4].copy_from_slice(&a.octets());
            b
        }
        IpAddr::V6(a) => a.octets(),
    }
}

fn addr_of(af: u16, bytes: &[u8; 16]) -> IpAddr {
    if af == AF_INET6 {
        IpAddr::from(*bytes)
    } else {
        IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
    }
}

fn service_id(key: &ServiceKey) -> ServiceId {
    match *key {
        ServiceKey::Inet {
            protocol,
            addr,
            port,
        } => ServiceId::Inet {
            af: family(addr.is_ipv6()),
            protocol: match protocol {
                Protocol::Tcp => libc::IPPROTO_TCP as u16,
                Protocol::Udp => libc::IPPROTO_UDP as u16,
            },
            addr: addr16(addr),
            port,
        },
        ServiceKey::Fwmark { mark, ipv6 } => ServiceId::Fwmark {
            af: family(ipv6),
            mark,
        },
    }
}

/// The key of a service IPVS holds; `None` for a protocol ldirectord cannot configure (SCTP).
fn service_key(id: &ServiceId) -> Option<ServiceKey> {
    Some(match *id {
        ServiceId::Inet {
            af,
            protocol,
            addr,
            port,
        } => ServiceKey::Inet {
            protocol: match protocol as i32 {
                libc::IPPROTO_TCP => Protocol::Tcp,
                libc::IPPROTO_UDP => Protocol::Udp,
                _ => return None,
            },
            addr: addr_of(af, &addr),
            port,
        },
        ServiceId::Fwmark { af, mark } => ServiceKey::Fwmark {
            mark,
            ipv6: af == AF_INET6,
        },
    })
}

/// The IPv4 netmask (network order, as its bytes) or IPv6 prefix length of a persistence
/// granularity; ipvsadm's defaults (/32, /128) without persistence.
fn netmask(key: &ServiceKey, persistence: Option<Persistence>) -> u32 {
    if key.is_ipv6() {
        persistence.map_or(128, |p| u32::from(p.prefix_len))
    } else {
        let len = persistence.map_or(32, |p| u32::from(p.prefix_len.min(32)));
        let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
        u32::from_ne_bytes(mask.to_be_bytes())
    }
}

fn prefix_len(key: &ServiceKey, netmask: u32) -> u8 {
    if key.is_ipv6() {
        netmask.min(128) as u8
    } else {
        u32::from_be_bytes(netmask.to_ne_bytes()).leading_ones() as u8
    }
}

fn service_entry(key: &ServiceKey, attrs: &ServiceAttrs) -> ServiceEntry {
    let mut flags = attrs.sched_flags & sched_flags::ALL;
    if attrs.persistence.is_some() {
        flags |= SVC_F_PERSISTENT;
    }
    if attrs.one_packet {
        flags |= SVC_F_ONEPACKET;
    }
    ServiceEntry {
        id: service_id(key),
        sched_name: attrs.scheduler.clone(),
        pe_name: String::new(),
        flags,
        timeout: attrs.persistence.map_or(0, |p| p.timeout_secs),
        netmask: netmask(key, attrs.persistence),
        stats: Stats::default(),
    }
}

fn attrs_of(key: &ServiceKey, s: &ServiceEntry) -> ServiceAttrs {
    ServiceAttrs {
        backend: BackendKind::Ipvs,
        scheduler: s.sched_name.clone(),
        persistence: (s.flags & SVC_F_PERSISTENT != 0).then(|| Persistence {
            timeout_secs: s.timeout,
            prefix_len: prefix_len(key, s.netmask),
        }),
        sched_flags: s.flags & sched_flags::ALL,
        one_packet: s.flags & SVC_F_ONEPACKET != 0,
    }
}

fn fwd_method(forward: Forwarding) -> u32 {
    match forward {
        Forwarding::Gate => FWD_DROUTE,
        Forwarding::Masq => FWD_MASQ,
        Forwarding::Ipip => FWD_TUNNEL,
    }
}

/// ipvsadm's word for a destination's forwarding method.
fn fwd_name(method: u32) -> &'static str {
    match method {
        FWD_MASQ => "Masq",
        FWD_LOCALNODE => "Local",
        FWD_TUNNEL => "Tunnel",
        _ => "Route",
    }
}

fn dest_entry(key: &ServiceKey, real: &Real) -> DestEntry {
    DestEntry {
        af: family(real.addr.is_ipv6()),
        addr: addr16(real.addr),
        port: key.dest_port(real.forward, real.port),
        fwd_method: fwd_method(real.forward),
        weight: real.weight,
        u_threshold: real.upper_threshold,
        l_threshold: real.lower_threshold,
        active_conns: 0,
        inact_conns: 0,
        persist_conns: 0,
        stats: Stats::default(),
    }
}

fn real_of(d: &DestEntry) -> Real {
    Real {
        addr: addr_of(d.af, &d.addr),
        port: d.port,
        // Current kernels never make a real Local themselves; ipvsadm saves one as -g.
        forward: match d.fwd_method {
            FWD_MASQ => Forwarding::Masq,
            FWD_TUNNEL => Forwarding::Ipip,
            _ => Forwarding::Gate,
        },
        weight: d.weight,
        upper_threshold: d.u_threshold,
        lower_threshold: d.l_threshold,
    }
}

fn traffic(s: &Stats) -> Traffic {
    Traffic {
        conns: s.conns,
        in_packets: s.inpkts,
        out_packets: s.outpkts,
        in_bytes: s.inbytes,
        out_bytes: s.outbytes,
    }
}

fn rates(s: &Stats) -> Rates {
    Rates {
        cps: s.cps,
        in_pps: s.inpps,
        out_pps: s.outpps,
        in_bps: s.inbps,
        out_bps: s.outbps,
    }
}

/// The IPVS table as the kernel holds it, with counters.
pub struct IpvsTable {
    pub info: Info,
    pub services: Vec<(ServiceEntry, Vec<DestEntry>)>,
}

impl IpvsTable {
    /// The live table, sorted as ipvsadm sorts it.
    pub fn live(&self) -> Vec<LiveService> {
        let mut services: Vec<LiveService> = self
            .services
            .iter()
            .filter_map(|(s, dests)| {
                let key = service_key(&s.id)?;
                let attrs = attrs_of(&key, s);
                Some(LiveService {
                    key,
                    backend: BackendKind::Ipvs,
                    scheduler: attrs.scheduler,
                    sched_flags: attrs.sched_flags,
                    persistence: attrs.persistence,
                    one_packet: attrs.one_packet,
                    pe_name: s.pe_name.clone(),
                    reals: dests
                        .iter()
                        .map(|d| LiveReal {
                            addr: addr_of(d.af, &d.addr),
                            port: d.port,
                            forward: fwd_name(d.fwd_method),
                            weight: d.weight,
                            fallback: false,
                            resolved: true,
                            unsupported: false,
                            upper_threshold: d.u_threshold,
                            lower_threshold: d.l_threshold,
                            active_conns: d.active_conns.into(),
                            inactive_conns: d.inact_conns.into(),
                            persist_conns: d.persist_conns.into(),
                            stats: traffic(&d.stats),
                            rates: Some(rates(&d.stats)),
                        })
                        .collect(),
                    stats: traffic(&s.stats),
                    rates: Some(rates(&s.stats)),
                })
            })
            .collect();
        crate::live::sort(&mut services);
        services
    }
}

/// Reads the kernel's whole IPVS table (every service, every destination, counters).
pub fn read_table(socket: &mut IpvsSocket) -> Result<IpvsTable, IpvsError> {
    let info = socket
        .get(IpvsMessage::get_info(), "reading IPVS information")?
        .map(|m| m.parse_info())
        .unwrap_or_default();
    let mut services = Vec::new();
    for reply in socket.dump(IpvsMessage::get_services(), "listing virtual services")? {
        let Some(service) = reply.parse_service() else {
            continue;
        };
        let af = match service.id {
            ServiceId::Inet { af, .. } | ServiceId::Fwmark { af, .. } => af,
        };
        let dests = socket
            .dump(IpvsMessage::get_dests(&service.id), "listing real servers")?
            .iter()
            .filter_map(|m| m.parse_dest(af))
            .collect();
        services.push((service, dests));
    }
    Ok(IpvsTable { info, services })
}

/// The kernel's IPVS, as one backend of the agent.
pub struct IpvsBackend {
    /// Behind a lock so that [`Backend::held`], a read, can use it.
    socket: std::sync::Mutex<IpvsSocket>,
    /// The services this backend manages: those the configuration names, and those it added.
    scope: BTreeSet<ServiceKey>,
    /// What the kernel holds of ours, as this backend last left it (the attributes of a
    /// service, sent with each of its destination commands as libipvs sends them).
    model: DesiredTable,
    /// The ops the kernel refused when last tried (a scheduler it lacks…): [`Backend::refresh`]
    /// does not try them again each second, which would log the refusal each second; the
    /// director's retry of a failed apply does, with its backoff.
    refused: Vec<Op>,
}

impl IpvsBackend {
    /// Opens IPVS (loading `ip_vs` if needed) to manage the services `scope` names.
    pub fn open(scope: BTreeSet<ServiceKey>) -> Result<IpvsBackend, BackendError> {
        let socket = std::sync::Mutex::new(IpvsSocket::open()?);
        let mut backend = IpvsBackend {
            socket,
            scope,
            model: DesiredTable::default(),
            refused: Vec::new(),
        };
        backend.model = backend.held()?;
        Ok(backend)
    }

    /// IPVS where the kernel has it already, without loading `ip_vs` (which hooks every packet
    /// into netfilter): for a director whose virtuals are all on XDP, to take over what an
    /// earlier configuration left on IPVS.
    pub fn open_if_loaded(scope: BTreeSet<ServiceKey>) -> Option<IpvsBackend> {
        let socket = IpvsSocket::open_existing().ok()??;
        let mut backend = IpvsBackend {
            socket: std::sync::Mutex::new(socket),
            scope,
            model: DesiredTable::default(),
            refused: Vec::new(),
        };
        backend.model = backend.held().ok()?;
        Some(backend)
    }

    /// The whole kernel table with counters, for `show`.
    pub fn table(&mut self) -> Result<IpvsTable, BackendError> {
        Ok(read_table(self.socket.get_mut().expect("not poisoned"))?)
    }

    /// One op, as the ipvsadm command it stands for, made idempotent as keepalived makes it.
    fn execute(&mut self, op: &Op) -> Result<(), IpvsError> {
        let what = op_text(op);
        let socket = self.socket.get_mut().expect("not poisoned");
        let ok_if = |result: Result<(), IpvsError>, errno: i32| match result {
            Err(e) if e.errno() == Some(errno) => Ok(()),
            other => other,
        };
        match op {
            Op::AddVirtual { key, attrs } | Op::EditVirtual { key, attrs } => {
                let entry = service_entry(key, attrs);
                let (first, second, missing) = match op {
                    Op::AddVirtual { .. } => (cmd::NEW_SERVICE, cmd::SET_SERVICE, libc::EEXIST),
                    _ => (cmd::SET_SERVICE, cmd::NEW_SERVICE, libc::ESRCH),
                };
                match socket.command(IpvsMessage::service(first, &entry), &what) {
                    Err(e) if e.errno() == Some(missing) => {
                        socket.command(IpvsMessage::service(second, &entry), &what)
                    }
                    other => other,
                }
            }
            Op::DeleteVirtual { key } => {
                let result = socket.command(
                    IpvsMessage::service(cmd::DEL_SERVICE, &entry_for(&self.model, key)),
                    &what,
                );
                ok_if(result, libc::ESRCH)
            }
            Op::AddReal { key, real, .. } | Op::EditReal { key, real, .. } => {
                let (service, dest) = (entry_for(&self.model, key), dest_entry(key, real));
                let (first, second, missing) = match op {
                    Op::AddReal { .. } => (cmd::NEW_DEST, cmd::SET_DEST, libc::EEXIST),
                    _ => (cmd::SET_DEST, cmd::NEW_DEST, libc::ENOENT),
                };
                match socket.command(IpvsMessage::dest(first, &service, &dest), &what) {
                    Err(e) if e.errno() == Some(missing) => {
                        socket.command(IpvsMessage::dest(second, &service, &dest), &what)
                    }
                    other => other,
                }
            }
            Op::DeleteReal { key, real, .. } => {
                let (service, dest) = (entry_for(&self.model, key), dest_entry(key, real));
                let result =
                    socket.command(IpvsMessage::dest(cmd::DEL_DEST, &service, &dest), &what);
                // Gone already, or its service with it.
                ok_if(ok_if(result, libc::ENOENT), libc::ESRCH)
            }
        }
    }
}

/// The full service entry of `key` as `model` last had it, sent with its destination commands
/// as libipvs sends it (the kernel reads only its identity).
fn entry_for(model: &DesiredTable, key: &ServiceKey) -> ServiceEntry {
    let attrs = model
        .services
        .get(key)
        .map(|s| s.attrs.clone())
        .unwrap_or_default();
    service_entry(key, &attrs)
}

/// The ipvsadm command an op stands for (`-a -t 10.0.0.1:80 -r 10.0.0.2:80 -g -w 1`): how the
/// errors and corrections of this backend name what they did.
pub fn op_text(op: &Op) -> String {
    let service = |key: &ServiceKey| match *key {
        ServiceKey::Inet {
            protocol,
            addr,
            port,
        } => format!(
            "{} {}",
            match protocol {
                Protocol::Tcp => "-t",
                Protocol::Udp => "-u",
            },
            SocketText(addr, port)
        ),
        ServiceKey::Fwmark { mark, ipv6 } => {
            format!("-f {mark}{}", if ipv6 { " -6" } else { "" })
        }
    };
    let attrs_text = |attrs: &ServiceAttrs| {
        let mut text = format!("-s {}", attrs.scheduler);
        if let Some(p) = attrs.persistence {
            text.push_str(&format!(" -p {}", p.timeout_secs));
        }
        if attrs.one_packet {
            text.push_str(" -o");
        }
        let flags = sched_flags::names(&attrs.scheduler, attrs.sched_flags);
        if !flags.is_empty() {
            text.push_str(&format!(" -b {flags}"));
        }
        text
    };
    let real_text = |key: &ServiceKey, real: &Real| {
        let method = match real.forward {
            Forwarding::Gate => "-g",
            Forwarding::Masq => "-m",
            Forwarding::Ipip => "-i",
        };
        format!(
            "-r {} {method} -w {}",
            SocketText(real.addr, key.dest_port(real.forward, real.port)),
            real.weight
        )
    };
    match op {
        Op::AddVirtual { key, attrs } => {
            format!("ipvsadm -A {} {}", service(key), attrs_text(attrs))
        }
        Op::EditVirtual { key, attrs } => {
            format!("ipvsadm -E {} {}", service(key), attrs_text(attrs))
        }
        Op::DeleteVirtual { key } => format!("ipvsadm -D {}", service(key)),
        Op::AddReal { key, real, .. } => {
            format!("ipvsadm -a {} {}", service(key), real_text(key, real))
        }
        Op::EditReal { key, real, .. } => {
            format!("ipvsadm -e {} {}", service(key), real_text(key, real))
        }
        Op::DeleteReal { key, real, .. } => format!(
            "ipvsadm -d {} -r {}",
            service(key),
            SocketText(real.addr, key.dest_port(real.forward, real.port))
        ),
    }
}

impl Backend for IpvsBackend {
    /// Every op is tried, also after one fails (ldirectord runs one ipvsadm per change, and one
    /// refused real does not hold the others back); the errors are reported together.
    fn apply(&mut self, ops: &[Op]) -> Result<Notes, BackendError> {
        let mut errors = Vec::new();
        for op in ops {
            if let Op::AddVirtual { key, .. } = op {
                self.scope.insert(*key);
            }
            self.refused.retain(|r| r != op);
            match self.execute(op) {
                Ok(()) => self.model.apply_ops(std::slice::from_ref(op)),
                Err(e) => {
                    errors.push(e.to_string());
                    self.refused.push(op.clone());
                }
            }
        }
        if errors.is_empty() {
            Ok(Notes::new())
        } else {
            Err(BackendError::Unsupported(errors.join("; ")))
        }
    }

    /// The services of ours the kernel holds, with every attribute IPVS keeps.
    fn held(&self) -> Result<DesiredTable, BackendError> {
        let table = read_table(&mut self.socket.lock().expect("not poisoned"))?;
        let mut held = DesiredTable::default();
        for (s, dests) in &table.services {
            let Some(key) = service_key(&s.id).filter(|k| self.scope.contains(k)) else {
                continue;
            };
            held.services.insert(
                key,
                Service {
                    attrs: attrs_of(&key, s),
                    reals: dests.iter().map(real_of).collect(),
                    fallback: None,
                },
            );
        }
        Ok(held)
    }

    /// Puts right what changed behind the agent's back (`ipvsadm -d` by hand, a flush): the
    /// kernel's services of the table in force are compared with it, and what differs is
    /// done again, with a line saying what.
    fn refresh(&mut self, desired: Option<&DesiredTable>) -> Result<Notes, BackendError> {
        let Some(desired) = desired else {
            return Ok(Notes::new());
        };
        let ours = desired.on(BackendKind::Ipvs);
        let mut kernel = self.held()?;
        kernel.services.retain(|k, _| ours.services.contains_key(k));
        for (key, service) in kernel.services.iter_mut() {
            let wanted = &ours.services[key];
            let also_a_real = wanted
                .fallback
                .is_some_and(|f| wanted.reals.iter().any(|r| r.dest(key) == f.dest(key)));
            service.claim_fallback(key, wanted.fallback.as_ref(), also_a_real);
        }
        let mut ops = diff::diff(&kernel, &ours);
        ops.retain(|op| !self.refused.contains(op));
        if ops.is_empty() {
            return Ok(Notes::new());
        }
        self.model = kernel;
        let notes = ops
            .iter()
            .map(|op| {
                format!(
                    "IPVS table differs from the configuration in force (changed outside xdirectord?): putting it right: {}",
                    op_text(op)
                )
            })
            .collect();
        self.apply(&ops)?;
        Ok(notes)
    }
}
