//! Header parsing: Ethernet (up to two 802.1Q/802.1ad tags), IPv4 (options allowed), IPv6 (a
//! bounded walk over extension headers), TCP and UDP, into a [`Packet`]. Anything else ends with
//! a [`NotForUs`] saying why, and the packet goes to the kernel unchanged.

use aya_ebpf::programs::XdpContext;
use lb_common::{AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP};

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;
/// IPv6 extension headers walked before giving up; real traffic rarely carries more than two.
const MAX_IPV6_EXT_HEADERS: usize = 4;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// What the balancer needs of a TCP or UDP packet.
pub struct Packet {
    /// AF_INET or AF_INET6.
    pub family: u8,
    /// IPPROTO_TCP or IPPROTO_UDP.
    pub proto: u8,
    /// TCP flags (0 for UDP).
    pub tcp_flags: u8,
    /// Network byte order; IPv4 uses the first 4 bytes.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// Host byte order.
    pub sport: u16,
    pub dport: u16,
    /// Frame length in bytes.
    pub len: u64,
}

/// Why a packet is not balanced.
pub enum NotForUs {
    /// Not TCP or UDP over IP (ARP, ICMP echo, other protocols, too many headers).
    Other,
    /// The headers end beyond the frame.
    Malformed,
    /// An IPv4 or IPv6 fragment.
    Fragment,
    /// An ICMP or ICMPv6 error message.
    IcmpError,
}

// A one-byte check (`p + 1 > end`) becomes `p >= end` in LLVM, which the verifier does not turn
// into a readable range: read at least two bytes.
#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Result<*const T, NotForUs> {
    let start = ctx.data();
    if start + offset + core::mem::size_of::<T>() > ctx.data_end() {
        return Err(NotForUs::Malformed);
    }
    Ok((start + offset) as *const T)
}

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

pub fn parse(ctx: &XdpContext) -> Result<Packet, NotForUs> {
    // SAFETY (all dereferences below): `ptr_at` has checked that the bytes lie in the frame.
    let eth = unsafe { &*ptr_at::<[u8; ETH_HLEN]>(ctx, 0)? };
    let mut ethertype = be16([eth[12], eth[13]]);
    let mut l3 = ETH_HLEN;
    for _ in 0..2 {
        if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
            let tag = unsafe { &*ptr_at::<[u8; 4]>(ctx, l3)? };
            ethertype = be16([tag[2], tag[3]]);
            l3 += 4;
        }
    }
    let len = (ctx.data_end() - ctx.data()) as u64;
    match ethertype {
        ETH_P_IP => parse_ipv4(ctx, l3, len),
        ETH_P_IPV6 => parse_ipv6(ctx, l3, len),
        _ => Err(NotForUs::Other),
    }
}

#[inline(always)]
fn parse_ipv4(ctx: &XdpContext, l3: usize, len: u64) -> Result<Packet, NotForUs> {
    let ip = unsafe { &*ptr_at::<[u8; 20]>(ctx, l3)? };
    let ihl = (ip[0] & 0x0f) as usize;
    if ip[0] >> 4 != 4 || ihl < 5 {
        return Err(NotForUs::Malformed);
    }
    // More-fragments flag or a fragment offset: not the first fragment alone, can't balance.
    if be16([ip[6], ip[7]]) & 0x3fff != 0 {
        return Err(NotForUs::Fragment);
    }
    let mut packet = Packet {
        family: AF_INET,
        proto: ip[9],
        tcp_flags: 0,
        src: [0; 16],
        dst: [0; 16],
        sport: 0,
        dport: 0,
        len,
    };
    packet.src[..4].copy_from_slice(&ip[12..16]);
    packet.dst[..4].copy_from_slice(&ip[16..20]);
    let l4 = l3 + ihl * 4;
    if packet.proto == IPPROTO_ICMP {
        let icmp = unsafe { &*ptr_at::<[u8; 4]>(ctx, l4)? };
        // Destination unreachable, source quench, redirect, time exceeded, parameter problem.
        return Err(match icmp[0] {
            3 | 4 | 5 | 11 | 12 => NotForUs::IcmpError,
            _ => NotForUs::Other,
        });
    }
    parse_l4(ctx, l4, packet)
}

#[inline(always)]
fn parse_ipv6(ctx: &XdpContext, l3: usize, len: u64) -> Result<Packet, NotForUs> {
    let ip = unsafe { &*ptr_at::<[u8; 40]>(ctx, l3)? };
    if ip[0] >> 4 != 6 {
        return Err(NotForUs::Malformed);
    }
    let mut next = ip[6];
    let mut packet = Packet {
        family: AF_INET6,
        proto: 0,
        tcp_flags: 0,
        src: [0; 16],
        dst: [0; 16],
        sport: 0,
        dport: 0,
        len,
    };
    packet.src.copy_from_slice(&ip[8..24]);
    packet.dst.copy_from_slice(&ip[24..40]);
    let mut offset = l3 + 40;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        match next {
            // Hop-by-hop, routing, destination options: length in 8-octet units after the first.
            0 | 43 | 60 => {
                let ext = unsafe { &*ptr_at::<[u8; 2]>(ctx, offset)? };
                next = ext[0];
                offset += (ext[1] as usize + 1) * 8;
            }
            // Authentication header: length in 4-octet units, minus 2.
            51 => {
                let ext = unsafe { &*ptr_at::<[u8; 2]>(ctx, offset)? };
                next = ext[0];
                offset += (ext[1] as usize + 2) * 4;
            }
            44 => return Err(NotForUs::Fragment),
            _ => break,
        }
    }
    packet.proto = next;
    if next == IPPROTO_ICMPV6 {
        let icmp = unsafe { &*ptr_at::<[u8; 4]>(ctx, offset)? };
        // Types below 128 are errors; informational ones (echo, neighbour discovery) pass.
        return Err(if icmp[0] < 128 {
            NotForUs::IcmpError
        } else {
            NotForUs::Other
        });
    }
    parse_l4(ctx, offset, packet)
}

#[inline(always)]
fn parse_l4(ctx: &XdpContext, l4: usize, mut packet: Packet) -> Result<Packet, NotForUs> {
    match packet.proto {
        IPPROTO_TCP => {
            let tcp = unsafe { &*ptr_at::<[u8; 20]>(ctx, l4)? };
            packet.sport = be16([tcp[0], tcp[1]]);
            packet.dport = be16([tcp[2], tcp[3]]);
            packet.tcp_flags = tcp[13];
        }
        IPPROTO_UDP => {
            let udp = unsafe { &*ptr_at::<[u8; 8]>(ctx, l4)? };
            packet.sport = be16([udp[0], udp[1]]);
            packet.dport = be16([udp[2], udp[3]]);
        }
        _ => return Err(NotForUs::Other),
    }
    Ok(packet)
}
