//! The IPVS generic-netlink family's messages (`include/uapi/linux/ip_vs.h`), encoded as libipvs
//! (ipvsadm) and keepalived encode them: addresses always 16 bytes, ports in network order,
//! flags as `{flags, mask}`, the IPv4 persistence netmask in network order and the IPv6 one as
//! a prefix length.

use netlink_packet_core::{
    DecodeError, DefaultNla, Emitable, Nla, NlasIterator, Parseable, ParseableParametrized,
    emit_u16, emit_u16_be, emit_u32, parse_u16, parse_u16_be, parse_u32, parse_u64,
};
use netlink_packet_generic::{GenlFamily, GenlHeader};

/// `IPVS_GENL_VERSION`.
const VERSION: u8 = 1;

/// `enum ipvs_cmds`.
pub mod cmd {
    pub const NEW_SERVICE: u8 = 1;
    pub const SET_SERVICE: u8 = 2;
    pub const DEL_SERVICE: u8 = 3;
    pub const GET_SERVICE: u8 = 4;
    pub const NEW_DEST: u8 = 5;
    pub const SET_DEST: u8 = 6;
    pub const DEL_DEST: u8 = 7;
    pub const GET_DEST: u8 = 8;
    /// GET_INFO's answer.
    pub const SET_INFO: u8 = 14;
    pub const GET_INFO: u8 = 15;
}

/// `IPVS_CMD_ATTR_*`.
const CMD_ATTR_SERVICE: u16 = 1;
const CMD_ATTR_DEST: u16 = 2;

/// `IPVS_SVC_ATTR_*`.
mod svc {
    pub const AF: u16 = 1;
    pub const PROTOCOL: u16 = 2;
    pub const ADDR: u16 = 3;
    pub const PORT: u16 = 4;
    pub const FWMARK: u16 = 5;
    pub const SCHED_NAME: u16 = 6;
    pub const FLAGS: u16 = 7;
    pub const TIMEOUT: u16 = 8;
    pub const NETMASK: u16 = 9;
    pub const STATS: u16 = 10;
    pub const PE_NAME: u16 = 11;
    pub const STATS64: u16 = 12;
}

/// `IPVS_DEST_ATTR_*`.
mod dest {
    pub const ADDR: u16 = 1;
    pub const PORT: u16 = 2;
    pub const FWD_METHOD: u16 = 3;
    pub const WEIGHT: u16 = 4;
    pub const U_THRESH: u16 = 5;
    pub const L_THRESH: u16 = 6;
    pub const ACTIVE_CONNS: u16 = 7;
    pub const INACT_CONNS: u16 = 8;
    pub const PERSIST_CONNS: u16 = 9;
    pub const STATS: u16 = 10;
    pub const ADDR_FAMILY: u16 = 11;
    pub const STATS64: u16 = 12;
    pub const TUN_TYPE: u16 = 13;
}

/// `IPVS_INFO_ATTR_*`.
const INFO_VERSION: u16 = 1;
const INFO_CONN_TAB_SIZE: u16 = 2;

/// Service flags: `IP_VS_SVC_F_*`.
pub const SVC_F_PERSISTENT: u32 = 0x1;
pub const SVC_F_HASHED: u32 = 0x2;
pub const SVC_F_ONEPACKET: u32 = 0x4;

/// Forwarding methods: `IP_VS_CONN_F_*` & `IP_VS_CONN_F_FWD_MASK`.
pub const FWD_MASQ: u32 = 0;
pub const FWD_LOCALNODE: u32 = 1;
pub const FWD_TUNNEL: u32 = 2;
pub const FWD_DROUTE: u32 = 3;

/// `IP_VS_CONN_F_TUNNEL_TYPE_IPIP`.
pub const TUN_TYPE_IPIP: u8 = 0;

pub const AF_INET: u16 = libc::AF_INET as u16;
pub const AF_INET6: u16 = libc::AF_INET6 as u16;

/// A service's identity as IPVS takes it: a firewall mark, or protocol, address and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceId {
    Inet {
        af: u16,
        protocol: u16,
        addr: [u8; 16],
        /// Host order (sent in network order).
        port: u16,
    },
    Fwmark {
        af: u16,
        mark: u32,
    },
}

/// IPVS's traffic counters of a service or destination (STATS64, or STATS widened).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub conns: u64,
    pub inpkts: u64,
    pub outpkts: u64,
    pub inbytes: u64,
    pub outbytes: u64,
    pub cps: u64,
    pub inpps: u64,
    pub outpps: u64,
    pub inbps: u64,
    pub outbps: u64,
}

/// A virtual service as IPVS holds it (or as it is sent: counters are only read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEntry {
    pub id: ServiceId,
    pub sched_name: String,
    /// The persistence engine (`--pe`); empty for none.
    pub pe_name: String,
    /// `IP_VS_SVC_F_*`, HASHED masked out.
    pub flags: u32,
    /// Persistence timeout, seconds.
    pub timeout: u32,
    /// IPv4: the mask, in network order (as the bytes of the address); IPv6: the prefix length.
    pub netmask: u32,
    pub stats: Stats,
}

/// A real server (destination) of a service as IPVS holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestEntry {
    pub af: u16,
    pub addr: [u8; 16],
    /// Host order.
    pub port: u16,
    pub fwd_method: u32,
    pub weight: u32,
    pub u_threshold: u32,
    pub l_threshold: u32,
    pub active_conns: u32,
    pub inact_conns: u32,
    pub persist_conns: u32,
    pub stats: Stats,
}

/// `IPVS_CMD_GET_INFO`'s answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Info {
    /// `IP_VS_VERSION_CODE`, 0x010201 for 1.2.1.
    pub version: u32,
    pub conn_tab_size: u32,
}

/// One attribute of an IPVS message: nested service or destination attributes, or one this
/// module does not need.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Attr {
    Service(Vec<Field>),
    Dest(Vec<Field>),
    Other(DefaultNla),
}

/// An attribute inside a service, destination or info nest. Integers are host order unless
/// noted; `Be16` is sent in network order.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Field {
    U8(u16, u8),
    U16(u16, u16),
    Be16(u16, u16),
    U32(u16, u32),
    /// Raw bytes: addresses, the flags pair, strings with their NUL, and every attribute as
    /// received (typed when read, by [`Fields`]).
    Bytes(u16, Vec<u8>),
}

impl Nla for Field {
    fn value_len(&self) -> usize {
        match self {
            Field::U8(..) => 1,
            Field::U16(..) | Field::Be16(..) => 2,
            Field::U32(..) => 4,
            Field::Bytes(_, v) => v.len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            Field::U8(k, _)
            | Field::U16(k, _)
            | Field::Be16(k, _)
            | Field::U32(k, _)
            | Field::Bytes(k, _) => *k,
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            Field::U8(_, v) => buffer[0] = *v,
            Field::U16(_, v) => emit_u16(buffer, *v).expect("2 bytes"),
            Field::Be16(_, v) => emit_u16_be(buffer, *v).expect("2 bytes"),
            Field::U32(_, v) => emit_u32(buffer, *v).expect("4 bytes"),
            Field::Bytes(_, v) => buffer[..v.len()].copy_from_slice(v),
        }
    }
}

impl Nla for Attr {
    fn value_len(&self) -> usize {
        match self {
            Attr::Service(fields) | Attr::Dest(fields) => fields.as_slice().buffer_len(),
            Attr::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            Attr::Service(_) => CMD_ATTR_SERVICE | netlink_packet_core::NLA_F_NESTED,
            Attr::Dest(_) => CMD_ATTR_DEST | netlink_packet_core::NLA_F_NESTED,
            Attr::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            Attr::Service(fields) | Attr::Dest(fields) => fields.as_slice().emit(buffer),
            Attr::Other(nla) => nla.emit_value(buffer),
        }
    }
}

/// One IPVS message: a command and its top-level attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpvsMessage {
    cmd: u8,
    attrs: Vec<Attr>,
}

impl GenlFamily for IpvsMessage {
    fn family_name() -> &'static str {
        "IPVS"
    }

    fn command(&self) -> u8 {
        self.cmd
    }

    fn version(&self) -> u8 {
        VERSION
    }
}

impl Emitable for IpvsMessage {
    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        self.attrs.as_slice().emit(buffer)
    }
}

impl ParseableParametrized<[u8], GenlHeader> for IpvsMessage {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        // Only service and destination messages nest; the info (and config) answers' attributes
        // are top-level, and share their numbers (version is 1, as SERVICE is).
        let nests = (cmd::NEW_SERVICE..=cmd::GET_DEST).contains(&header.cmd);
        let mut attrs = Vec::new();
        for nla in NlasIterator::new(buf) {
            let nla = nla?;
            let kind = nla.kind();
            attrs.push(match kind {
                CMD_ATTR_SERVICE if nests => Attr::Service(fields(nla.value())?),
                CMD_ATTR_DEST if nests => Attr::Dest(fields(nla.value())?),
                _ => Attr::Other(DefaultNla::parse(&nla)?),
            });
        }
        Ok(IpvsMessage {
            cmd: header.cmd,
            attrs,
        })
    }
}

/// The attributes of a nest, kept raw: typed when read ([`Fields`]).
fn fields(buf: &[u8]) -> Result<Vec<Field>, DecodeError> {
    NlasIterator::new(buf)
        .map(|nla| {
            let nla = nla?;
            Ok(Field::Bytes(nla.kind(), nla.value().to_vec()))
        })
        .collect()
}

/// Typed reads of a received nest. A missing or short attribute reads as absent.
struct Fields<'a>(&'a [Field]);

impl Fields<'_> {
    fn raw(&self, kind: u16) -> Option<&[u8]> {
        self.0.iter().find_map(|f| match f {
            Field::Bytes(k, v) if *k == kind => Some(v.as_slice()),
            _ => None,
        })
    }

    fn u16(&self, kind: u16) -> Option<u16> {
        self.raw(kind).and_then(|v| parse_u16(v).ok())
    }

    fn be16(&self, kind: u16) -> Option<u16> {
        self.raw(kind).and_then(|v| parse_u16_be(v).ok())
    }

    fn u32(&self, kind: u16) -> Option<u32> {
        self.raw(kind).and_then(|v| parse_u32(v).ok())
    }

    fn addr(&self, kind: u16) -> [u8; 16] {
        let mut addr = [0; 16];
        if let Some(v) = self.raw(kind) {
            let n = v.len().min(16);
            addr[..n].copy_from_slice(&v[..n]);
        }
        addr
    }

    fn string(&self, kind: u16) -> String {
        let v = self.raw(kind).unwrap_or_default();
        let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
        String::from_utf8_lossy(&v[..end]).into_owned()
    }

    /// STATS64 when present, else STATS (32-bit connection and packet counts).
    fn stats(&self, stats64: u16, stats32: u16) -> Stats {
        let (nest, wide) = match (self.raw(stats64), self.raw(stats32)) {
            (Some(n), _) => (n, true),
            (None, Some(n)) => (n, false),
            (None, None) => return Stats::default(),
        };
        let mut counters = [0u64; 10];
        for nla in NlasIterator::new(nest).flatten() {
            let i = nla.kind() as usize;
            if !(1..=10).contains(&i) {
                continue;
            }
            // In STATS, the byte counters (4, 5) are 64-bit and the others 32-bit.
            let v = nla.value();
            counters[i - 1] = if wide || i == 4 || i == 5 {
                parse_u64(v).unwrap_or(0)
            } else {
                parse_u32(v).map(u64::from).unwrap_or(0)
            };
        }
        let [
            conns,
            inpkts,
            outpkts,
            inbytes,
            outbytes,
            cps,
            inpps,
            outpps,
            inbps,
            outbps,
        ] = counters;
        Stats {
            conns,
            inpkts,
            outpkts,
            inbytes,
            outbytes,
            cps,
            inpps,
            outpps,
            inbps,
            outbps,
        }
    }
}

/// The fields that name a service, in libipvs's order: AF, then FWMARK or PROTOCOL + ADDR +
/// PORT.
fn service_id_fields(id: &ServiceId) -> Vec<Field> {
    match *id {
        ServiceId::Fwmark { af, mark } => {
            vec![Field::U16(svc::AF, af), Field::U32(svc::FWMARK, mark)]
        }
        ServiceId::Inet {
            af,
            protocol,
            addr,
            port,
        } => vec![
            Field::U16(svc::AF, af),
            Field::U16(svc::PROTOCOL, protocol),
            Field::Bytes(svc::ADDR, addr.to_vec()),
            Field::Be16(svc::PORT, port),
        ],
    }
}

/// Every field of a service, in libipvs's `ipvs_nl_fill_service_attr` order, which it sends for
/// every service command (deletes and the destination commands included).
fn service_fields(service: &ServiceEntry) -> Vec<Field> {
    let mut fields = service_id_fields(&service.id);
    let mut name = service.sched_name.clone().into_bytes();
    name.push(0);
    fields.push(Field::Bytes(svc::SCHED_NAME, name));
    if !service.pe_name.is_empty() {
        let mut pe = service.pe_name.clone().into_bytes();
        pe.push(0);
        fields.push(Field::Bytes(svc::PE_NAME, pe));
    }
    let mut flags = service.flags.to_ne_bytes().to_vec();
    flags.extend_from_slice(&u32::MAX.to_ne_bytes());
    fields.push(Field::Bytes(svc::FLAGS, flags));
    fields.push(Field::U32(svc::TIMEOUT, service.timeout));
    fields.push(Field::U32(svc::NETMASK, service.netmask));
    fields
}

/// A destination's fields in libipvs's order (`ipvs_nl_fill_dest_attr`); the tunnel type only
/// for tunnelled reals, as keepalived sends it.
fn dest_fields(dest: &DestEntry) -> Vec<Field> {
    let mut fields = vec![
        Field::U16(dest::ADDR_FAMILY, dest.af),
        Field::Bytes(dest::ADDR, dest.addr.to_vec()),
        Field::Be16(dest::PORT, dest.port),
        Field::U32(dest::FWD_METHOD, dest.fwd_method),
        Field::U32(dest::WEIGHT, dest.weight),
    ];
    if dest.fwd_method == FWD_TUNNEL {
        fields.push(Field::U8(dest::TUN_TYPE, TUN_TYPE_IPIP));
    }
    fields.push(Field::U32(dest::U_THRESH, dest.u_threshold));
    fields.push(Field::U32(dest::L_THRESH, dest.l_threshold));
    fields
}

impl IpvsMessage {
    /// NEW_SERVICE, SET_SERVICE or DEL_SERVICE of `service`.
    pub fn service(cmd: u8, service: &ServiceEntry) -> IpvsMessage {
        IpvsMessage {
            cmd,
            attrs: vec![Attr::Service(service_fields(service))],
        }
    }

    /// NEW_DEST, SET_DEST or DEL_DEST of `dest` in `service`.
    pub fn dest(cmd: u8, service: &ServiceEntry, dest: &DestEntry) -> IpvsMessage {
        IpvsMessage {
            cmd,
            attrs: vec![
                Attr::Service(service_fields(service)),
                Attr::Dest(dest_fields(dest)),
            ],
        }
    }

    /// GET_SERVICE (as a dump: every service).
    pub fn get_services() -> IpvsMessage {
        IpvsMessage {
            cmd: cmd::GET_SERVICE,
            attrs: Vec::new(),
        }
    }

    /// GET_DEST (a dump) of the service `id`.
    pub fn get_dests(id: &ServiceId) -> IpvsMessage {
        IpvsMessage {
            cmd: cmd::GET_DEST,
            attrs: vec![Attr::Service(service_id_fields(id))],
        }
    }

    pub fn get_info() -> IpvsMessage {
        IpvsMessage {
            cmd: cmd::GET_INFO,
            attrs: Vec::new(),
        }
    }

    fn nest(&self, which: fn(&Attr) -> Option<&Vec<Field>>) -> Option<Fields<'_>> {
        self.attrs.iter().find_map(which).map(|f| Fields(f))
    }

    /// The service a GET_SERVICE reply describes.
    pub fn parse_service(&self) -> Option<ServiceEntry> {
        let f = self.nest(|a| match a {
            Attr::Service(f) => Some(f),
            _ => None,
        })?;
        let af = f.u16(svc::AF)?;
        let id = match f.u32(svc::FWMARK) {
            Some(mark) if mark != 0 => ServiceId::Fwmark { af, mark },
            _ => ServiceId::Inet {
                af,
                protocol: f.u16(svc::PROTOCOL)?,
                addr: f.addr(svc::ADDR),
                port: f.be16(svc::PORT)?,
            },
        };
        let flags = f
            .raw(svc::FLAGS)
            .and_then(|v| parse_u32(v.get(..4)?).ok())
            .unwrap_or(0);
        Some(ServiceEntry {
            id,
            sched_name: f.string(svc::SCHED_NAME),
            pe_name: f.string(svc::PE_NAME),
            flags: flags & !SVC_F_HASHED,
            timeout: f.u32(svc::TIMEOUT).unwrap_or(0),
            netmask: f.u32(svc::NETMASK).unwrap_or(0),
            stats: f.stats(svc::STATS64, svc::STATS),
        })
    }

    /// The destination a GET_DEST reply describes; `service_af` is its family when the kernel
    /// sends none.
    pub fn parse_dest(&self, service_af: u16) -> Option<DestEntry> {
        let f = self.nest(|a| match a {
            Attr::Dest(f) => Some(f),
            _ => None,
        })?;
        Some(DestEntry {
            af: f
                .u16(dest::ADDR_FAMILY)
                .filter(|&af| af != 0)
                .unwrap_or(service_af),
            addr: f.addr(dest::ADDR),
            port: f.be16(dest::PORT)?,
            fwd_method: f.u32(dest::FWD_METHOD)? & 7,
            weight: f.u32(dest::WEIGHT).unwrap_or(0),
            u_threshold: f.u32(dest::U_THRESH).unwrap_or(0),
            l_threshold: f.u32(dest::L_THRESH).unwrap_or(0),
            active_conns: f.u32(dest::ACTIVE_CONNS).unwrap_or(0),
            inact_conns: f.u32(dest::INACT_CONNS).unwrap_or(0),
            persist_conns: f.u32(dest::PERSIST_CONNS).unwrap_or(0),
            stats: f.stats(dest::STATS64, dest::STATS),
        })
    }

    /// GET_INFO's answer: its attributes are top-level.
    pub fn parse_info(&self) -> Info {
        let mut info = Info::default();
        for attr in &self.attrs {
            if let Attr::Other(nla) = attr {
                let mut value = vec![0; nla.value_len()];
                nla.emit_value(&mut value);
                let v = parse_u32(&value).unwrap_or(0);
                match nla.kind() {
                    INFO_VERSION => info.version = v,
                    INFO_CONN_TAB_SIZE => info.conn_tab_size = v,
                    _ => {}
                }
            }
        }
        info
    }

    /// The message's command (replies to GET_SERVICE say NEW_SERVICE, …).
    pub fn cmd(&self) -> u8 {
        self.cmd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emitted(message: &IpvsMessage) -> Vec<u8> {
        let mut buffer = vec![0; message.buffer_len()];
        message.emit(&mut buffer);
        buffer
    }

    fn web() -> ServiceEntry {
        ServiceEntry {
            id: ServiceId::Inet {
                af: AF_INET,
                protocol: libc::IPPROTO_TCP as u16,
                addr: [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                port: 80,
            },
            sched_name: "wrr".into(),
            pe_name: String::new(),
            flags: SVC_F_PERSISTENT,
            timeout: 300,
            netmask: u32::from_ne_bytes([255, 255, 255, 0]),
            stats: Stats::default(),
        }
    }

    /// The bytes libipvs sends for `ipvsadm -A -t 10.0.0.1:80 -s wrr -p 300 -M 255.255.255.0`
    /// (attribute order, sizes, byte order), read off ipvs_nl_fill_service_attr.
    #[test]
    fn a_service_is_encoded_as_libipvs_encodes_it() {
        let bytes = emitted(&IpvsMessage::service(cmd::NEW_SERVICE, &web()));
        #[rustfmt::skip]
        let expected: Vec<u8> = [
            &[84, 0, 0x01, 0x80][..],           // SERVICE, nested, 84 bytes
            &[6, 0, 1, 0, 2, 0, 0, 0],           // AF = AF_INET (host order), padded
            &[6, 0, 2, 0, 6, 0, 0, 0],           // PROTOCOL = TCP
            &[20, 0, 3, 0, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], // ADDR, 16 bytes
            &[6, 0, 4, 0, 0, 80, 0, 0],          // PORT, network order
            &[8, 0, 6, 0, b'w', b'r', b'r', 0],  // SCHED_NAME with its NUL
            &[12, 0, 7, 0, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff], // FLAGS {persistent, ~0}
            &[8, 0, 8, 0, 44, 1, 0, 0],          // TIMEOUT = 300
            &[8, 0, 9, 0, 255, 255, 255, 0],     // NETMASK, network order
        ]
        .concat();
        assert_eq!(bytes, expected);
    }

    #[test]
    fn a_tunnelled_dest_says_its_tunnel_type() {
        let d = DestEntry {
            af: AF_INET,
            addr: [10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            port: 80,
            fwd_method: FWD_TUNNEL,
            weight: 5,
            u_threshold: 100,
            l_threshold: 10,
            active_conns: 0,
            inact_conns: 0,
            persist_conns: 0,
            stats: Stats::default(),
        };
        let bytes = emitted(&IpvsMessage::dest(cmd::NEW_DEST, &web(), &d));
        let dest_nest = &bytes[84..];
        #[rustfmt::skip]
        let expected: Vec<u8> = [
            &[80, 0, 0x02, 0x80][..],
            &[6, 0, 11, 0, 2, 0, 0, 0],          // ADDR_FAMILY
            &[20, 0, 1, 0, 10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[6, 0, 2, 0, 0, 80, 0, 0],          // PORT, network order
            &[8, 0, 3, 0, 2, 0, 0, 0],           // FWD_METHOD = tunnel
            &[8, 0, 4, 0, 5, 0, 0, 0],           // WEIGHT
            &[5, 0, 13, 0, 0, 0, 0, 0],          // TUN_TYPE = ipip
            &[8, 0, 5, 0, 100, 0, 0, 0],         // U_THRESH
            &[8, 0, 6, 0, 10, 0, 0, 0],          // L_THRESH
        ]
        .concat();
        assert_eq!(dest_nest, expected);
    }

    /// A reply as the kernel's ip_vs_genl_fill_service writes it reads back as the entry
    /// (HASHED masked out, STATS64 preferred).
    #[test]
    fn a_kernel_reply_reads_back() {
        let mut service = web();
        service.flags |= SVC_F_HASHED;
        let mut fields = service_fields(&service);
        let mut stats = Vec::new();
        for (kind, value) in [(1u16, 7u64), (2, 1000), (4, 123_456_789_012)] {
            let nla = Field::Bytes(kind, value.to_ne_bytes().to_vec());
            let mut b = vec![0; nla.buffer_len()];
            nla.emit(&mut b);
            stats.extend(b);
        }
        fields.push(Field::Bytes(svc::STATS64, stats));
        let reply = IpvsMessage {
            cmd: cmd::NEW_SERVICE,
            attrs: vec![Attr::Service(fields)],
        };
        let bytes = emitted(&reply);
        let parsed = IpvsMessage::parse_with_param(
            &bytes,
            GenlHeader {
                cmd: cmd::NEW_SERVICE,
                version: 1,
            },
        )
        .unwrap();
        let read = parsed.parse_service().unwrap();
        assert_eq!(read.flags, SVC_F_PERSISTENT);
        assert_eq!(read.id, web().id);
        assert_eq!(read.sched_name, "wrr");
        assert_eq!(read.netmask, web().netmask);
        assert_eq!(
            (read.stats.conns, read.stats.inpkts, read.stats.inbytes),
            (7, 1000, 123_456_789_012)
        );
    }

    /// GET_INFO's answer as ip_vs_genl_get_cmd writes it (SET_INFO, top-level attributes whose
    /// numbers are SERVICE's and DEST's): it once failed to parse, as a service nest.
    #[test]
    fn the_info_answer_reads_back() {
        #[rustfmt::skip]
        let bytes: Vec<u8> = [
            &[8, 0, 1, 0][..], &0x0001_0201u32.to_ne_bytes(), // VERSION 1.2.1
            &[8, 0, 2, 0], &4096u32.to_ne_bytes(),            // CONN_TAB_SIZE
        ]
        .concat();
        let parsed = IpvsMessage::parse_with_param(
            &bytes,
            GenlHeader {
                cmd: cmd::SET_INFO,
                version: 1,
            },
        )
        .unwrap();
        assert_eq!(
            parsed.parse_info(),
            Info {
                version: 0x0001_0201,
                conn_tab_size: 4096
            }
        );
    }
}
