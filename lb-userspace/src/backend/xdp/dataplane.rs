//! Making the maps hold a desired table, changing only what differs, and reading back what they
//! hold (for the next change, and for `show`).
//!
//! The maps are the only state: what is programmed is read back from them, so an agent that
//! restarts on pinned maps carries on exactly where the last one stopped, with the same VIP
//! indexes and real ids, and established flows keep their real.
//!
//! A change to a virtual service is written into the VIP's spare table slot (its reals, Maglev
//! table and round-robin sequence), then the VIP entry is replaced by one naming that slot: one
//! hash element replaced, so a packet sees the old set of reals and weights or the new one.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use lb_common::{
    AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP,
    keys::{Vip4Key, Vip6Key},
    maps::{MAX_REALS_PER_VIP, MAX_VIPS},
    values::{
        FORWARD_LOCAL, FORWARD_ROUTE, FORWARD_TUNNEL, REAL_F_RESOLVED, REAL_F_UNSUPPORTED, RealDef,
        Ring, Scheduler, SlotReal, SlotReals, VIP_F_PERSISTENT, VipFilter, VipMeta, WrrSeq,
    },
};

use super::{maps::Maps, tables};
use crate::{
    backend::{BackendError, Notes},
    director::changes::{real_text, virtual_text},
    table::{
        BackendKind, DesiredTable, Forwarding, Persistence, Protocol, Real, Service, ServiceAttrs,
        ServiceKey, diff::Op,
    },
};

/// How a real's packets leave the director.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RealPath {
    /// An address of this host: packets go to the local stack ("Local" in ipvsadm).
    Local,
    /// Through interface `ifindex` to `mac` (the real's, or its next hop's); `src_mac` is the
    /// MAC the kernel would send from. `vlan` is the 802.1Q VLAN id the frame leaves with (0:
    /// untagged): a real behind a VLAN device goes out of its parent (the trunk) with its tag.
    /// `mtu` is the route's interface's MTU, `source` the address the kernel would send from to
    /// the real (a tunnel's outer source).
    Neighbour {
        ifindex: u32,
        mac: [u8; 6],
        src_mac: [u8; 6],
        vlan: u16,
        mtu: u16,
        source: Option<IpAddr>,
    },
    /// Not known yet (resolution has been asked for): the real takes no new flows meanwhile.
    Unresolved,
    /// Reached in a way the XDP program cannot send (why, for the log): the real takes no new
    /// flows, rather than be sent somewhere else.
    Unsupported(&'static str),
}

/// Where reals are: the kernel's routing and neighbour tables in the agent, a fixed table in
/// tests.
pub trait Paths {
    fn path(&mut self, addr: IpAddr) -> RealPath;
}

/// The map key of a virtual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VipKey {
    V4(Vip4KeyOrd),
    V6(Vip6KeyOrd),
}

/// `Vip4Key` with an order, for maps keyed by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Vip4KeyOrd(pub [u8; 4], pub u16, pub u8);
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Vip6KeyOrd(pub [u8; 16], pub u16, pub u8);

impl VipKey {
    pub fn from_service(key: &ServiceKey) -> Result<VipKey, BackendError> {
        match *key {
            ServiceKey::Inet {
                protocol,
                addr,
                port,
            } => {
                let proto = match protocol {
                    Protocol::Tcp => IPPROTO_TCP,
                    Protocol::Udp => IPPROTO_UDP,
                };
                Ok(match addr {
                    IpAddr::V4(a) => VipKey::V4(Vip4KeyOrd(a.octets(), port, proto)),
                    IpAddr::V6(a) => VipKey::V6(Vip6KeyOrd(a.octets(), port, proto)),
                })
            }
            ServiceKey::Fwmark { mark, .. } => Err(BackendError::Unsupported(format!(
                "virtual service fwmark {mark}: firewall marks need the IPVS backend"
            ))),
        }
    }

    pub fn service_key(&self) -> ServiceKey {
        let (addr, port, proto) = match *self {
            VipKey::V4(Vip4KeyOrd(a, port, proto)) => (IpAddr::from(a), port, proto),
            VipKey::V6(Vip6KeyOrd(a, port, proto)) => (IpAddr::from(a), port, proto),
        };
        let protocol = if proto == IPPROTO_UDP {
            Protocol::Udp
        } else {
            Protocol::Tcp
        };
        ServiceKey::Inet {
            protocol,
            addr,
            port,
        }
    }

    /// This VIP's fold ([`lb_common::hash::vip_fold`]), as the program computes it from a
    /// packet's destination.
    pub fn fold(&self) -> u64 {
        use lb_common::hash::{addr_words, vip_fold};
        let (addr, port, proto) = match self {
            VipKey::V4(Vip4KeyOrd(a, port, proto)) => (&a[..], *port, *proto),
            VipKey::V6(Vip6KeyOrd(a, port, proto)) => (&a[..], *port, *proto),
        };
        let (words, n) = addr_words(addr);
        vip_fold(&words[..n], port, proto)
    }

    /// This VIP's bit in the VIP filter.
    fn filter_bit(&self) -> u32 {
        lb_common::hash::vip_filter_bit(self.fold())
    }

    fn v4(&self) -> Option<Vip4Key> {
        match *self {
            VipKey::V4(Vip4KeyOrd(addr, port, proto)) => Some(Vip4Key {
                addr,
                port,
                proto: proto as u16,
            }),
            VipKey::V6(_) => None,
        }
    }

    fn v6(&self) -> Option<Vip6Key> {
        match *self {
            VipKey::V6(Vip6KeyOrd(addr, port, proto)) => Some(Vip6Key {
                addr,
                port,
                proto: proto as u16,
            }),
            VipKey::V4(_) => None,
        }
    }
}

/// What the XDP backend can do with a virtual service; `Err` says what it cannot, in words an
/// operator can act on (the caller names the service). What it cannot honour it refuses: it
/// never holds a virtual while ignoring part of its configuration.
pub fn validate(key: &ServiceKey, service: &Service) -> Result<(), String> {
    if let ServiceKey::Fwmark { .. } = key {
        return Err("firewall marks need the IPVS backend".into());
    }
    let attrs = &service.attrs;
    if Scheduler::from_name(&attrs.scheduler).is_none() {
        let known: Vec<&str> = Scheduler::ALL.iter().map(|s| s.name()).collect();
        return Err(format!(
            "scheduler \"{}\" is not supported by the XDP backend (supported: {})",
            attrs.scheduler,
            known.join(", ")
        ));
    }
    if attrs.sched_flags != 0 {
        return Err("scheduler flags (schedflags) need the IPVS backend".into());
    }
    if attrs.one_packet {
        return Err("one-packet scheduling (ops) needs the IPVS backend".into());
    }
    for real in service.reals.iter().chain(&service.fallback) {
        let name = crate::table::SocketText(real.addr, real.port);
        match real.forward {
            Forwarding::Gate => {}
            Forwarding::Masq => {
                return Err(format!(
                    "real server {name}: forwarding method masq needs the IPVS backend"
                ));
            }
            Forwarding::Ipip => {}
        }
        if real.upper_threshold != 0 || real.lower_threshold != 0 {
            return Err(format!(
                "real server {name}: connection thresholds (l:/u:) need the IPVS backend"
            ));
        }
        if real.forward == Forwarding::Gate && real.addr.is_ipv6() != key.is_ipv6() {
            return Err(format!(
                "real server {name}: direct routing needs the real in the virtual's address family"
            ));
        }
    }
    if service.reals.len() > MAX_REALS_PER_VIP as usize {
        return Err(format!(
            "{} real servers, the XDP backend takes at most {MAX_REALS_PER_VIP}",
            service.reals.len()
        ));
    }
    Ok(())
}

/// A virtual service as the maps hold it.
#[derive(Clone, Debug)]
pub struct Programmed {
    pub key: VipKey,
    pub meta: VipMeta,
    /// The live slot's reals: id, definition, the weight the schedulers use.
    pub reals: Vec<(u32, RealDef, u32)>,
    pub fallback: Option<(u32, RealDef)>,
}

/// A real as this apply wants it, before it has an id.
#[derive(Clone, Copy)]
struct Wanted {
    def: RealDef,
    effective_weight: u32,
    /// Why the real's path cannot be used, when that is known for good (not waiting for a
    /// neighbour).
    unsupported: Option<&'static str>,
}

fn addr_bytes(addr: IpAddr) -> ([u8; 16], u8) {
    match addr {
        IpAddr::V4(a) => {
            let mut b = [0; 16];
            b[..4].copy_from_slice(&a.octets());
            (b, AF_INET)
        }
        IpAddr::V6(a) => (a.octets(), AF_INET6),
    }
}

/// The address a `RealDef` holds.
pub fn real_addr(def: &RealDef) -> IpAddr {
    if def.family == AF_INET6 {
        IpAddr::from(def.addr)
    } else {
        IpAddr::from([def.addr[0], def.addr[1], def.addr[2], def.addr[3]])
    }
}

/// Same real (address and port), whatever its generation, MAC or weight.
fn same_real(a: &RealDef, b: &RealDef) -> bool {
    a.addr == b.addr && a.port == b.port && a.family == b.family
}

/// Equal but for the generation, which only the allocation of ids decides.
fn same_definition(a: &RealDef, b: &RealDef) -> bool {
    RealDef {
        generation: 0,
        ..*a
    } == RealDef {
        generation: 0,
        ..*b
    }
}

fn persist_mask(persistence: &Option<Persistence>, ipv6: bool) -> [u8; 16] {
    let bits = match persistence {
        Some(p) => p.prefix_len as u32,
        None => 128,
    }
    .min(if ipv6 { 128 } else { 32 });
    let mut mask = [0u8; 16];
    for (i, byte) in mask.iter_mut().enumerate() {
        let from = (i as u32) * 8;
        *byte = match bits.saturating_sub(from) {
            0 => 0,
            n if n >= 8 => 0xff,
            n => 0xffu8 << (8 - n),
        };
    }
    if !ipv6 {
        mask[4..].fill(0);
    }
    mask
}

/// The prefix length a persistence mask stands for.
pub fn mask_prefix_len(mask: &[u8; 16], ipv6: bool) -> u8 {
    let bytes = if ipv6 { &mask[..] } else { &mask[..4] };
    bytes.iter().map(|b| b.count_ones() as u8).sum()
}

/// A zeroed table on the heap, never on the stack (a slot's tables are 8 KiB to 128 KiB).
fn zeroed_box<T: aya::Pod>() -> Box<T> {
    // SAFETY: map values are Pod: all-zero bytes are a valid value.
    unsafe { Box::<T>::new_zeroed().assume_init() }
}

/// The maps, and how to change them.
pub struct Dataplane {
    pub maps: Maps,
    /// Virtual services and real ids the maps hold (`maxvirtuals`, `maxreals`).
    virtuals: u32,
    reals: u32,
    /// `tunnelsource`: per-flow outer sources of `ipip` reals, by family.
    pub tunnel_source: Vec<lb_config::TunnelPrefix>,
}

impl Dataplane {
    pub fn new(maps: Maps) -> Dataplane {
        use aya::maps::IterableMap as _;
        let virtuals = maps
            .vips4
            .map()
            .info()
            .map_or(MAX_VIPS, |i| i.max_entries());
        Dataplane {
            virtuals,
            reals: maps.reals.len(),
            maps,
            tunnel_source: Vec::new(),
        }
    }

    /// Every virtual service the maps hold, with its live slot's reals.
    pub fn programmed(&self) -> Result<BTreeMap<VipKey, Programmed>, BackendError> {
        let mut metas = Vec::new();
        for entry in self.maps.vips4.iter() {
            let (k, meta) = entry.map_err(|e| BackendError::system("reading VIPS4", e))?;
            metas.push((VipKey::V4(Vip4KeyOrd(k.addr, k.port, k.proto as u8)), meta));
        }
        for entry in self.maps.vips6.iter() {
            let (k, meta) = entry.map_err(|e| BackendError::system("reading VIPS6", e))?;
            metas.push((VipKey::V6(Vip6KeyOrd(k.addr, k.port, k.proto as u8)), meta));
        }
        let mut programmed = BTreeMap::new();
        for (key, meta) in metas {
            let slot = self
                .maps
                .slot_reals
                .get(&meta.slot, 0)
                .map_err(|e| BackendError::system("reading SLOT_REALS", e))?;
            let mut reals = Vec::new();
            for s in slot.reals.iter().take(meta.n_reals as usize) {
                reals.push((s.real_id, self.real(s.real_id)?, s.weight));
            }
            let fallback = match meta.fallback {
                0 => None,
                id => Some((id, self.real(id)?)),
            };
            programmed.insert(
                key,
                Programmed {
                    key,
                    meta,
                    reals,
                    fallback,
                },
            );
        }
        Ok(programmed)
    }

    fn real(&self, id: u32) -> Result<RealDef, BackendError> {
        self.maps
            .reals
            .get(&id, 0)
            .map_err(|e| BackendError::system(format!("reading real {id}"), e))
    }

    /// What the maps hold, as a table: every real as the data plane knows it (on the virtual's
    /// port), without what the program does not keep (thresholds, scheduler flags, one-packet
    /// scheduling are refused by [`validate`]).
    pub fn held(&self) -> Result<DesiredTable, BackendError> {
        let real = |def: &RealDef| Real {
            addr: real_addr(def),
            port: def.port,
            forward: match def.forward {
                lb_common::values::FORWARD_TUNNEL => Forwarding::Ipip,
                lb_common::values::FORWARD_MASQ => Forwarding::Masq,
                _ => Forwarding::Gate,
            },
            weight: def.weight,
            upper_threshold: 0,
            lower_threshold: 0,
        };
        let services = self
            .programmed()?
            .into_values()
            .map(|p| {
                let ipv6 = matches!(p.key, VipKey::V6(_));
                let attrs = ServiceAttrs {
                    backend: BackendKind::Xdp,
                    scheduler: Scheduler::from_u32(p.meta.scheduler)
                        .map_or("?", |s| s.name())
                        .to_owned(),
                    persistence: (p.meta.flags & VIP_F_PERSISTENT != 0).then(|| Persistence {
                        timeout_secs: p.meta.persist_timeout_secs,
                        prefix_len: mask_prefix_len(&p.meta.persist_mask, ipv6),
                    }),
                    sched_flags: 0,
                    one_packet: false,
                };
                let service = Service {
                    attrs,
                    reals: p.reals.iter().map(|(_, def, _)| real(def)).collect(),
                    fallback: p.fallback.map(|(_, def)| real(&def)),
                };
                (p.key.service_key(), service)
            })
            .collect();
        Ok(DesiredTable { services })
    }

    /// Carries out `ops`: every virtual service they touch is written again from what the maps
    /// hold with the ops applied (a service is written whole, through its spare slot, so that
    /// packets see it before or after, never half-way); the others are left alone.
    pub fn execute(&mut self, ops: &[Op], paths: &mut dyn Paths) -> Result<Notes, BackendError> {
        let mut table = self.held()?;
        table.apply_ops(ops);
        let touched: BTreeSet<ServiceKey> = ops.iter().map(|op| *op.key()).collect();
        self.write(&table, &touched, paths)
    }

    /// Writes the services `touched` names as `table` has them (those it lacks are removed),
    /// leaving the others alone; a service whose maps already say the same is not written. Says
    /// which reals cannot take new flows for want of a link-layer address, and when they can.
    pub fn write(
        &mut self,
        table: &DesiredTable,
        touched: &BTreeSet<ServiceKey>,
        paths: &mut dyn Paths,
    ) -> Result<Notes, BackendError> {
        for key in touched {
            if let Some(service) = table.services.get(key) {
                validate(key, service).map_err(|e| {
                    BackendError::Unsupported(format!("virtual service {key}: {e}"))
                })?;
            }
        }
        let programmed = self.programmed()?;
        let mut wanted_keys: BTreeSet<VipKey> = programmed.keys().copied().collect();
        let mut gone = Vec::new();
        let mut written = Vec::new();
        for key in touched {
            let vip = VipKey::from_service(key)?;
            match table.services.get(key) {
                Some(service) => {
                    wanted_keys.insert(vip);
                    written.push((vip, key, service));
                }
                None => {
                    wanted_keys.remove(&vip);
                    if let Some(old) = programmed.get(&vip) {
                        gone.push(old);
                    }
                }
            }
        }
        if wanted_keys.len() > self.virtuals as usize {
            return Err(BackendError::Unsupported(format!(
                "{} virtual services, the XDP backend takes at most {} (maxvirtuals)",
                wanted_keys.len(),
                self.virtuals,
            )));
        }
        let mut used_ids: BTreeSet<u32> = programmed
            .values()
            .flat_map(|p| p.reals.iter().map(|r| r.0).chain(p.fallback.map(|f| f.0)))
            .collect();
        let mut used_indexes: BTreeSet<u32> = programmed.values().map(|p| p.meta.index).collect();

        // The filter lets every old and new VIP through while the VIPs change, then only the new.
        self.write_filter(programmed.keys().chain(&wanted_keys))?;
        for old in gone {
            self.remove_vip(old)?;
            for id in old
                .reals
                .iter()
                .map(|r| r.0)
                .chain(old.fallback.map(|f| f.0))
            {
                used_ids.remove(&id);
            }
            used_indexes.remove(&old.meta.index);
        }
        let mut notes = Notes::new();
        for (vip, key, service) in written {
            self.apply_service(
                vip,
                key,
                service,
                programmed.get(&vip),
                paths,
                &mut used_ids,
                &mut used_indexes,
                &mut notes,
            )?;
        }
        self.write_filter(wanted_keys.iter())?;
        Ok(notes)
    }

    /// Sets every bit of the VIP filter: every packet goes on to the VIP lookup, whatever
    /// hash the running program computes.
    pub fn open_filter(&mut self) -> Result<(), BackendError> {
        let mut filter = zeroed_box::<VipFilter>();
        filter.bits.fill(u64::MAX);
        self.set_filter(&filter)
    }

    /// Makes the VIP filter hold exactly the VIPs in the maps.
    pub fn rebuild_filter(&mut self) -> Result<(), BackendError> {
        let programmed = self.programmed()?;
        self.write_filter(programmed.keys())
    }

    fn write_filter<'a>(
        &mut self,
        keys: impl Iterator<Item = &'a VipKey>,
    ) -> Result<(), BackendError> {
        let mut filter = zeroed_box::<VipFilter>();
        for key in keys {
            let bit = key.filter_bit() as usize;
            filter.bits[bit / 64] |= 1 << (bit % 64);
        }
        self.set_filter(&filter)
    }

    /// Writes the filter in place: a packet may see a mix of the old and new words, so every
    /// change goes through a superset of both (see `apply`).
    fn set_filter(&mut self, filter: &VipFilter) -> Result<(), BackendError> {
        self.maps
            .vip_filter
            .set(0, filter, 0)
            .map_err(|e| BackendError::system("writing VIP_FILTER", e))
    }

    fn wanted(
        &self,
        service_port: u16,
        real: &Real,
        (vip_index, vip_fold): (u32, u64),
        paths: &mut dyn Paths,
    ) -> Wanted {
        let (addr, family) = addr_bytes(real.addr);
        let path = paths.path(real.addr);
        let tunnel = real.forward == Forwarding::Ipip;
        let method = if tunnel {
            FORWARD_TUNNEL
        } else {
            FORWARD_ROUTE
        };
        let (forward, ifindex, mac, src_mac, vlan, mtu, source, mut flags) = match path {
            RealPath::Local => (
                FORWARD_LOCAL,
                0,
                [0; 6],
                [0; 6],
                0,
                0,
                None,
                REAL_F_RESOLVED,
            ),
            RealPath::Neighbour {
                ifindex,
                mac,
                src_mac,
                vlan,
                mtu,
                source,
            } => (
                method,
                ifindex,
                mac,
                src_mac,
                vlan,
                mtu,
                source,
                REAL_F_RESOLVED,
            ),
            RealPath::Unresolved => (method, 0, [0; 6], [0; 6], 0, 0, None, 0),
            RealPath::Unsupported(_) => (method, 0, [0; 6], [0; 6], 0, 0, None, REAL_F_UNSUPPORTED),
        };
        // A tunnel's outer source: a per-flow one from `tunnelsource`, else the address the
        // kernel itself would send from. Without either the real cannot be reached yet.
        let per_flow = self
            .tunnel_source
            .iter()
            .find(|p| p.addr.is_ipv4() == real.addr.is_ipv4());
        let (tunnel_src, tunnel_src_bits) = match (tunnel, per_flow, source) {
            (false, _, _) => ([0; 16], 0),
            (true, Some(prefix), _) => (addr_bytes(prefix.addr).0, prefix.flow_bits()),
            (true, None, Some(source)) => (addr_bytes(source).0, 0),
            (true, None, None) => {
                if forward == FORWARD_TUNNEL {
                    flags &= !REAL_F_RESOLVED;
                }
                ([0; 16], 0)
            }
        };
        let unsupported = match path {
            RealPath::Unsupported(why) => Some(why),
            _ => None,
        };
        let def = RealDef {
            addr,
            // Neither direct routing nor a tunnel can change the port: ipvsadm sets such a
            // real's port to the virtual's, and so do we.
            port: service_port,
            family,
            forward,
            generation: 0,
            vip_index,
            ifindex,
            mac,
            src_mac,
            flags,
            weight: real.weight,
            vlan,
            mtu,
            tunnel_src,
            tunnel_src_bits,
            _pad: [0; 7],
            vip_fold,
        };
        let effective_weight = if flags & REAL_F_RESOLVED == 0 {
            0
        } else {
            real.weight
        };
        Wanted {
            def,
            effective_weight,
            unsupported,
        }
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one service's apply, with the allocators it shares"
    )]
    fn apply_service(
        &mut self,
        key: VipKey,
        skey: &ServiceKey,
        service: &Service,
        old: Option<&Programmed>,
        paths: &mut dyn Paths,
        used_ids: &mut BTreeSet<u32>,
        used_indexes: &mut BTreeSet<u32>,
        notes: &mut Notes,
    ) -> Result<(), BackendError> {
        let ServiceKey::Inet {
            port: service_port,
            addr: vip_addr,
            ..
        } = *skey
        else {
            unreachable!("validated above");
        };
        let index = match old {
            Some(o) => o.meta.index,
            None => (0..self.virtuals)
                .find(|i| !used_indexes.contains(i))
                .ok_or_else(|| {
                    BackendError::Unsupported(format!(
                        "more than {} virtual services (maxvirtuals)",
                        self.virtuals
                    ))
                })?,
        };

        let vip = (index, key.fold());
        let wanted: Vec<Wanted> = service
            .reals
            .iter()
            .map(|r| self.wanted(service_port, r, vip, paths))
            .collect();
        let wanted_fallback = service
            .fallback
            .as_ref()
            .map(|r| self.wanted(service_port, r, vip, paths));

        // Ids: a real keeps its id (and so its flows and counters) while it stays in the service.
        let mut reals = Vec::with_capacity(wanted.len());
        for w in &wanted {
            let kept = old.and_then(|o| o.reals.iter().find(|(_, def, _)| same_real(def, &w.def)));
            reals.push((kept.map(|k| (k.0, k.1.generation)), *w));
        }
        let fallback = wanted_fallback.map(|w| {
            let kept = old.and_then(|o| o.fallback.filter(|(_, def)| same_real(def, &w.def)));
            (kept.map(|k| (k.0, k.1.generation)), w)
        });
        // A real that cannot take new flows for want of a MAC address, or that can again: said
        // once, when it changes (the table says "Weight set to N" when it is added).
        for ((kept, w), real) in reals.iter().zip(&service.reals) {
            let resolved = w.def.flags & REAL_F_RESOLVED != 0;
            let was = kept
                .and_then(|(id, _)| old?.reals.iter().find(|r| r.0 == id))
                .map(|(_, def, _)| def.flags & REAL_F_RESOLVED != 0);
            let name = format!(
                "Real server {} ({})",
                real_text(real.addr, real.port),
                virtual_text(skey)
            );
            match (was, resolved) {
                (Some(true) | None, false) if real.weight > 0 => notes.push(match w.unsupported {
                    Some(why) => format!(
                        "{name}: {why}: it takes no new connections (weight 0 in force)"
                    ),
                    None => format!(
                        "{name}: no link-layer address for it yet: it takes no new connections (weight 0 in force) until its neighbour entry resolves"
                    ),
                }),
                (Some(false), true) if real.weight > 0 => notes.push(format!(
                    "{name}: link-layer address resolved: weight {} in force",
                    real.weight
                )),
                _ => {}
            }
        }
        // Two reals with the same address (ports rewritten to the virtual's) are one IPVS dest.
        let mut seen = BTreeSet::new();
        reals.retain(|(_, w)| seen.insert((w.def.addr, w.def.port)));

        let attrs = &service.attrs;
        let persistent = attrs.persistence.is_some();
        let scheduler = Scheduler::from_name(&attrs.scheduler).expect("validated");
        let n_live = reals.iter().filter(|(_, w)| w.effective_weight > 0).count() as u32;

        if let Some(o) = old {
            let same_meta = o.meta.scheduler == scheduler as u32
                && (o.meta.flags & VIP_F_PERSISTENT != 0) == persistent
                && o.meta.persist_timeout_secs == attrs.persistence.map_or(0, |p| p.timeout_secs)
                && o.meta.persist_mask == persist_mask(&attrs.persistence, vip_addr.is_ipv6());
            let same_reals = o.reals.len() == reals.len()
                && o.reals
                    .iter()
                    .zip(&reals)
                    .all(|((id, def, eff), (kept, w))| {
                        kept.map(|k| k.0) == Some(*id)
                            && same_definition(def, &w.def)
                            && *eff == w.effective_weight
                    });
            let same_fallback = match (&o.fallback, &fallback) {
                (None, None) => true,
                (Some((id, def)), Some((kept, w))) => {
                    kept.map(|k| k.0) == Some(*id) && same_definition(def, &w.def)
                }
                _ => false,
            };
            if same_meta && same_reals && same_fallback {
                return Ok(());
            }
        }

        // Write the reals (new ones get a fresh id and generation, with zeroed counters).
        let mut slot = zeroed_box::<SlotReals>();
        let mut ids = Vec::with_capacity(reals.len());
        for (i, (kept, w)) in reals.iter().enumerate() {
            let id = self.write_real(*kept, w.def, used_ids)?;
            slot.reals[i] = SlotReal {
                real_id: id,
                weight: w.effective_weight,
            };
            ids.push(id);
        }
        let fallback_id = match fallback {
            Some((kept, w)) => self.write_real(kept, w.def, used_ids)?,
            None => 0,
        };

        let slot_index = match old {
            Some(o) => o.meta.slot ^ 1,
            None => {
                Maps::zero_traffic(&mut self.maps.vip_stats, index)?;
                index * 2
            }
        };
        self.maps
            .slot_reals
            .set(slot_index, slot.as_ref(), 0)
            .map_err(|e| BackendError::system("writing SLOT_REALS", e))?;

        let weights: Vec<u32> = reals.iter().map(|(_, w)| w.effective_weight).collect();
        if n_live > 0 {
            let ring_input: Vec<(Vec<u8>, u32)> = reals
                .iter()
                .map(|(_, w)| {
                    (
                        tables::ring_identity(real_addr(&w.def), w.def.port),
                        w.effective_weight,
                    )
                })
                .collect();
            let mut ring = zeroed_box::<Ring>();
            ring.entries.copy_from_slice(&tables::maglev(&ring_input));
            self.maps
                .rings
                .set(slot_index, ring.as_ref(), 0)
                .map_err(|e| BackendError::system("writing RINGS", e))?;
        }
        let sequence = match scheduler {
            Scheduler::Wrr => tables::wrr_sequence(&weights),
            Scheduler::Rr => tables::rr_sequence(&weights),
            _ => Vec::new(),
        };
        if !sequence.is_empty() {
            let mut seq = zeroed_box::<WrrSeq>();
            seq.entries[..sequence.len()].copy_from_slice(&sequence);
            self.maps
                .wrr_seqs
                .set(slot_index, seq.as_ref(), 0)
                .map_err(|e| BackendError::system("writing WRR_SEQS", e))?;
            let cpus = aya::util::nr_cpus().map_err(|(_, e)| BackendError::system("nr_cpus", e))?;
            let zeros = aya::maps::PerCpuValues::try_from(vec![0u32; cpus])
                .map_err(|e| BackendError::system("per-CPU values", e))?;
            self.maps
                .wrr_cursors
                .set(slot_index, zeros, 0)
                .map_err(|e| BackendError::system("writing WRR_CURSORS", e))?;
        }

        let meta = VipMeta {
            index,
            slot: slot_index,
            scheduler: scheduler as u32,
            flags: if persistent { VIP_F_PERSISTENT } else { 0 },
            persist_timeout_secs: attrs.persistence.map_or(0, |p| p.timeout_secs),
            n_reals: reals.len() as u32,
            n_live,
            wrr_len: sequence.len() as u32,
            fallback: fallback_id,
            _pad: 0,
            persist_mask: persist_mask(&attrs.persistence, vip_addr.is_ipv6()),
        };
        self.write_vip(&key, &meta)?;
        used_indexes.insert(index);

        // Reals that left the service: their flows are placed again on their next packet.
        if let Some(o) = old {
            let kept: BTreeSet<u32> = ids
                .iter()
                .copied()
                .chain((fallback_id != 0).then_some(fallback_id))
                .collect();
            for id in o.reals.iter().map(|r| r.0).chain(o.fallback.map(|f| f.0)) {
                if !kept.contains(&id) {
                    self.free_real(id)?;
                    used_ids.remove(&id);
                }
            }
        }
        Ok(())
    }

    /// Writes a real under its kept id, or under a fresh one; returns the id.
    fn write_real(
        &mut self,
        kept: Option<(u32, u32)>,
        mut def: RealDef,
        used_ids: &mut BTreeSet<u32>,
    ) -> Result<u32, BackendError> {
        let id = match kept {
            Some((id, generation)) => {
                def.generation = generation;
                id
            }
            None => {
                let id = (1..self.reals)
                    .find(|i| !used_ids.contains(i))
                    .ok_or_else(|| {
                        BackendError::Unsupported(format!(
                            "more than {} real servers (maxreals)",
                            self.reals - 1
                        ))
                    })?;
                def.generation = self.real(id)?.generation.wrapping_add(1);
                Maps::zero_traffic(&mut self.maps.real_stats, id)?;
                let zero = lb_common::values::ConnCounts::default();
                for map in [&mut self.maps.conns, &mut self.maps.conns_expired] {
                    map.set(id, zero, 0)
                        .map_err(|e| BackendError::system("zeroing connection counts", e))?;
                }
                used_ids.insert(id);
                id
            }
        };
        if kept.is_none() || !same_definition(&self.real(id)?, &def) {
            self.maps
                .reals
                .set(id, def, 0)
                .map_err(|e| BackendError::system("writing REALS", e))?;
        }
        Ok(id)
    }

    /// Retires a real id: a new generation nobody remembers, so flows and persistence templates
    /// that named it are placed again.
    fn free_real(&mut self, id: u32) -> Result<(), BackendError> {
        let old = self.real(id)?;
        let retired = RealDef {
            generation: old.generation.wrapping_add(1),
            vip_index: u32::MAX,
            flags: 0,
            ..old
        };
        self.maps
            .reals
            .set(id, retired, 0)
            .map_err(|e| BackendError::system("writing REALS", e))
    }

    fn write_vip(&mut self, key: &VipKey, meta: &VipMeta) -> Result<(), BackendError> {
        let result = match (key.v4(), key.v6()) {
            (Some(k), _) => self.maps.vips4.insert(k, meta, 0),
            (_, Some(k)) => self.maps.vips6.insert(k, meta, 0),
            _ => unreachable!(),
        };
        result.map_err(|e| BackendError::system("writing VIPS", e))
    }

    fn remove_vip(&mut self, old: &Programmed) -> Result<(), BackendError> {
        let result = match (old.key.v4(), old.key.v6()) {
            (Some(k), _) => self.maps.vips4.remove(&k),
            (_, Some(k)) => self.maps.vips6.remove(&k),
            _ => unreachable!(),
        };
        result.map_err(|e| BackendError::system("removing VIP", e))?;
        for id in old
            .reals
            .iter()
            .map(|r| r.0)
            .chain(old.fallback.map(|f| f.0))
        {
            self.free_real(id)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        let m = persist_mask(
            &Some(Persistence {
                timeout_secs: 1,
                prefix_len: 24,
            }),
            false,
        );
        assert_eq!(&m[..5], &[255, 255, 255, 0, 0]);
        assert_eq!(mask_prefix_len(&m, false), 24);
        let m = persist_mask(&None, false);
        assert_eq!(&m[..5], &[255, 255, 255, 255, 0]);
        let m = persist_mask(
            &Some(Persistence {
                timeout_secs: 1,
                prefix_len: 60,
            }),
            true,
        );
        assert_eq!(m[7], 0xf0);
        assert_eq!(m[8], 0);
        assert_eq!(mask_prefix_len(&m, true), 60);
    }
}
