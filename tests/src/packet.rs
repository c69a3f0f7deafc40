//! Building test frames byte by byte: Ethernet with VLAN tags, IPv4 with options and fragment
//! fields, IPv6 with extension headers, TCP, UDP, ICMP. Checksums are computed so frames are
//! valid on a real wire too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

/// Layer 4 of a test frame.
#[derive(Clone, Debug)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    /// ICMP (IPv4) or ICMPv6 by the address family.
    Icmp {
        kind: u8,
        code: u8,
    },
    /// Any other protocol number, with no header.
    Other(u8),
}

/// A test frame.
#[derive(Clone, Debug)]
pub struct Frame {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    /// (TPID, VLAN id), outermost first.
    pub vlans: Vec<(u16, u16)>,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv4 options (padded to 4 bytes).
    pub ip_options: Vec<u8>,
    /// IPv4 flags and fragment offset field (e.g. 0x2000 = more fragments).
    pub frag: u16,
    /// IPv6 extension headers: (type, body length in 8-octet units beyond the first).
    pub ipv6_ext: Vec<(u8, u8)>,
    /// An IPv6 fragment header after the other extension headers: (offset in bytes, more
    /// fragments, identification).
    pub ipv6_frag: Option<(u16, bool, u32)>,
    /// The IPv4 identification.
    pub ip_id: u16,
    pub l4: L4,
    pub payload: Vec<u8>,
}

pub const CLIENT_MAC: [u8; 6] = [0x02, 0xc1, 0, 0, 0, 0x01];
pub const DIRECTOR_MAC: [u8; 6] = [0x02, 0xd1, 0, 0, 0, 0x01];

impl Frame {
    pub fn tcp(src: &str, sport: u16, dst: &str, dport: u16, flags: u8) -> Frame {
        Frame::new(
            src,
            dst,
            L4::Tcp {
                sport,
                dport,
                flags,
            },
        )
    }

    pub fn udp(src: &str, sport: u16, dst: &str, dport: u16) -> Frame {
        Frame::new(src, dst, L4::Udp { sport, dport })
    }

    pub fn new(src: &str, dst: &str, l4: L4) -> Frame {
        Frame {
            dst_mac: DIRECTOR_MAC,
            src_mac: CLIENT_MAC,
            vlans: Vec::new(),
            src: src.parse().expect("source address"),
            dst: dst.parse().expect("destination address"),
            ip_options: Vec::new(),
            frag: 0,
            ipv6_ext: Vec::new(),
            ipv6_frag: None,
            ip_id: 0x1234,
            l4,
            payload: b"xdirectord test payload".to_vec(),
        }
    }

    pub fn vlan(mut self, tpid: u16, id: u16) -> Frame {
        self.vlans.push((tpid, id));
        self
    }

    pub fn ip_options(mut self, options: &[u8]) -> Frame {
        self.ip_options = options.to_vec();
        self
    }

    pub fn frag(mut self, field: u16) -> Frame {
        self.frag = field;
        self
    }

    pub fn ipv6_ext(mut self, kind: u8, len: u8) -> Frame {
        self.ipv6_ext.push((kind, len));
        self
    }

    pub fn ipv6_frag(mut self, offset: u16, more: bool, id: u32) -> Frame {
        self.ipv6_frag = Some((offset, more, id));
        self
    }

    pub fn ip_id(mut self, id: u16) -> Frame {
        self.ip_id = id;
        self
    }

    /// The frame without its Ethernet header: the IP packet, as an ICMP error quotes it.
    pub fn ip_bytes(&self) -> Vec<u8> {
        self.bytes()[self.l3_offset()..].to_vec()
    }

    pub fn payload(mut self, payload: &[u8]) -> Frame {
        self.payload = payload.to_vec();
        self
    }

    /// Offset of the IP header.
    pub fn l3_offset(&self) -> usize {
        14 + 4 * self.vlans.len()
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.dst_mac);
        out.extend_from_slice(&self.src_mac);
        let ethertype: u16 = if self.src.is_ipv4() { 0x0800 } else { 0x86dd };
        for (tpid, id) in &self.vlans {
            out.extend_from_slice(&tpid.to_be_bytes());
            out.extend_from_slice(&id.to_be_bytes());
        }
        out.extend_from_slice(&ethertype.to_be_bytes());
        let (proto, l4) = self.l4_bytes();
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => out.extend(self.ipv4(s, d, proto, &l4)),
            (IpAddr::V6(s), IpAddr::V6(d)) => out.extend(self.ipv6(s, d, proto, &l4)),
            _ => panic!("mixed address families"),
        }
        out
    }

    fn l4_bytes(&self) -> (u8, Vec<u8>) {
        let mut l4 = Vec::new();
        let proto = match self.l4 {
            L4::Tcp {
                sport,
                dport,
                flags,
            } => {
                l4.extend_from_slice(&sport.to_be_bytes());
                l4.extend_from_slice(&dport.to_be_bytes());
                l4.extend_from_slice(&1000u32.to_be_bytes()); // sequence
                l4.extend_from_slice(&(if flags & ACK != 0 { 2000u32 } else { 0 }).to_be_bytes());
                l4.push(5 << 4); // data offset
                l4.push(flags);
                l4.extend_from_slice(&64240u16.to_be_bytes()); // window
                l4.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent
                l4.extend_from_slice(&self.payload);
                6
            }
            L4::Udp { sport, dport } => {
                l4.extend_from_slice(&sport.to_be_bytes());
                l4.extend_from_slice(&dport.to_be_bytes());
                l4.extend_from_slice(&((8 + self.payload.len()) as u16).to_be_bytes());
                l4.extend_from_slice(&[0, 0]);
                l4.extend_from_slice(&self.payload);
                17
            }
            L4::Icmp { kind, code } => {
                l4.extend_from_slice(&[kind, code, 0, 0, 0, 0, 0, 0]);
                l4.extend_from_slice(&self.payload);
                if self.src.is_ipv4() { 1 } else { 58 }
            }
            L4::Other(proto) => {
                l4.extend_from_slice(&self.payload);
                proto
            }
        };
        (proto, l4)
    }

    fn ipv4(&self, src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut options = self.ip_options.clone();
        while !options.len().is_multiple_of(4) {
            options.push(0);
        }
        let header_len = 20 + options.len();
        let mut ip = vec![0x40 | (header_len / 4) as u8, 0];
        ip.extend_from_slice(&((header_len + l4.len()) as u16).to_be_bytes());
        ip.extend_from_slice(&self.ip_id.to_be_bytes());
        ip.extend_from_slice(&self.frag.to_be_bytes());
        ip.extend_from_slice(&[64, proto, 0, 0]);
        ip.extend_from_slice(&src.octets());
        ip.extend_from_slice(&dst.octets());
        ip.extend_from_slice(&options);
        let sum = checksum(&ip, 0);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        let mut l4 = l4.to_vec();
        let pseudo = pseudo_sum(&src.octets(), &dst.octets(), proto, l4.len());
        fill_l4_checksum(&mut l4, proto, pseudo);
        ip.extend(l4);
        ip
    }

    fn ipv6(&self, src: Ipv6Addr, dst: Ipv6Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut ext = Vec::new();
        let mut kinds: Vec<u8> = self.ipv6_ext.iter().map(|e| e.0).collect();
        if self.ipv6_frag.is_some() {
            kinds.push(44);
        }
        kinds.push(proto);
        for (i, (_, len)) in self.ipv6_ext.iter().enumerate() {
            let mut h = vec![kinds[i + 1], *len];
            h.resize((*len as usize + 1) * 8, 0);
            ext.extend(h);
        }
        if let Some((offset, more, id)) = self.ipv6_frag {
            ext.extend_from_slice(&[proto, 0]);
            ext.extend_from_slice(&((offset & 0xfff8) | u16::from(more)).to_be_bytes());
            ext.extend_from_slice(&id.to_be_bytes());
        }
        let first = kinds[0];
        let mut ip = vec![0x60, 0, 0, 0];
        ip.extend_from_slice(&((ext.len() + l4.len()) as u16).to_be_bytes());
        ip.push(first);
        ip.push(64);
        ip.extend_from_slice(&src.octets());
        ip.extend_from_slice(&dst.octets());
        ip.extend(ext);
        let mut l4 = l4.to_vec();
        let pseudo = pseudo_sum(&src.octets(), &dst.octets(), proto, l4.len());
        fill_l4_checksum(&mut l4, proto, pseudo);
        ip.extend(l4);
        ip
    }
}

fn pseudo_sum(src: &[u8], dst: &[u8], proto: u8, len: usize) -> u32 {
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(src);
    pseudo.extend_from_slice(dst);
    pseudo.extend_from_slice(&[0, proto]);
    pseudo.extend_from_slice(&(len as u16).to_be_bytes());
    sum_words(&pseudo, 0)
}

fn fill_l4_checksum(l4: &mut [u8], proto: u8, pseudo: u32) {
    let at = match proto {
        6 => 16,
        17 => 6,
        58 => 2,
        1 => 2,
        _ => return,
    };
    if l4.len() < at + 2 {
        return;
    }
    // ICMPv4's checksum does not cover a pseudo header.
    let seed = if proto == 1 { 0 } else { pseudo };
    let sum = checksum(l4, seed);
    l4[at..at + 2].copy_from_slice(&sum.to_be_bytes());
}

fn sum_words(bytes: &[u8], mut sum: u32) -> u32 {
    for chunk in bytes.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += word as u32;
    }
    sum
}

fn checksum(bytes: &[u8], seed: u32) -> u16 {
    let mut sum = sum_words(bytes, seed);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
