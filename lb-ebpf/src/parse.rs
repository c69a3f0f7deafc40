//! Header parsing: Ethernet (up to two 802.1Q/802.1ad tags), IPv4 (options allowed), IPv6 (a
//! bounded walk over extension headers), TCP and UDP, into what the packet is ([`Parsed`]): a
//! packet with ports (whole, or the first fragment of a datagram), a later fragment, or an ICMP
//! error about a TCP or UDP packet (its quoted header read by [`crate::icmp`]). Anything else ends
//! with a [`NotForUs`] saying why, and the packet goes to the kernel unchanged.

use core::marker::PhantomData;

use aya_ebpf::programs::XdpContext;
use lb_common::{IPPROTO_TCP, IPPROTO_UDP};

const ETH_HLEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_FRAGMENT: u8 = 44;
/// The largest IP datagram: a fragment's offset plus its length must stay within it.
const MAX_DATAGRAM: u32 = 65535;
/// IPv6 extension headers walked before giving up; real traffic rarely carries more than two.
const MAX_IPV6_EXT_HEADERS: usize = 4;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// What the balancer needs of a TCP or UDP packet. `A` is the family's address type (`u32` for
/// IPv4, `[u32; 4]` for IPv6); the addresses stay in the frame, read where they are needed
/// ([`crate::family::Family::src`]), so that they do not tie up registers and stack slots. (The
/// flow an ICMP error is about has its addresses turned around in an aligned copy on the stack,
/// [`crate::icmp::to_owner`].)
#[derive(Clone, Copy)]
pub struct Packet<A> {
    /// The IP header's source address, followed by its destination address (network order).
    /// The parser checked that both are within the frame (or they are the ICMP step's copy).
    pub addrs: *const u8,
    /// IPPROTO_TCP or IPPROTO_UDP.
    pub proto: u8,
    /// TCP flags (0 for UDP).
    pub tcp_flags: u8,
    /// VLAN tags the frame arrived with (0 to 2): forwarding puts the real's in their place.
    pub vlan_tags: u8,
    /// Host byte order.
    pub sport: u16,
    pub dport: u16,
    /// Frame length in bytes.
    pub len: u32,
    /// The datagram's identification when this is its first fragment (the IPv4 header's 16
    /// bits, the IPv6 fragment header's 32): the later fragments will follow it.
    pub first_fragment: Option<u32>,
    pub family: PhantomData<A>,
}

/// A fragment after the first: no ports, only what every fragment of its datagram carries.
#[derive(Clone, Copy)]
pub struct Fragment {
    /// The IP header's source address, followed by its destination address (network order),
    /// within the frame.
    pub addrs: *const u8,
    /// The datagram's identification (host order).
    pub id: u32,
    /// The IP protocol (IPv4) or the fragment header's next header (IPv6).
    pub proto: u8,
    /// VLAN tags the frame arrived with (0 to 2): forwarding puts the real's in their place.
    pub vlan_tags: u8,
    /// Frame length in bytes.
    pub len: u32,
}

/// The packet an ICMP error quotes: one sent from a VIP to a client, whose flow (turned around:
/// client first) is the one the error is about.
#[derive(Clone, Copy)]
pub struct Quoted<A> {
    /// The quoted IP header's source address (the VIP), followed by its destination address
    /// (the client), network order, within the frame. (Left in the frame rather than copied:
    /// the verifier refuses the misaligned stack reads LLVM makes of copied IPv6 addresses.)
    pub addrs: *const u8,
    /// IPPROTO_TCP or IPPROTO_UDP.
    pub proto: u8,
    /// VLAN tags the ICMP error arrived with (0 to 2).
    pub vlan_tags: u8,
    /// Host byte order: the quoted packet's source port (the VIP's).
    pub vport: u16,
    /// Host byte order: the quoted packet's destination port (the client's).
    pub cport: u16,
    /// The ICMP error's frame length in bytes.
    pub len: u32,
    pub family: PhantomData<A>,
}

/// What a packet is, as far as the balancer cares.
pub enum Parsed<A> {
    /// TCP or UDP with its ports: a whole packet, or a datagram's first fragment.
    Ports(Packet<A>),
    /// A fragment after the first.
    LaterFragment(Fragment),
    /// An ICMP or ICMPv6 error about a TCP or UDP packet.
    IcmpError(Quoted<A>),
}

/// Why a packet is not balanced.
pub enum NotForUs {
    /// Not TCP or UDP over IP (ARP, ICMP echo, redirects, other protocols, too many headers).
    Other,
    /// The headers end beyond the frame.
    Malformed,
    /// A fragment whose offset and length reach beyond 65,535 bytes, or whose lengths contradict
    /// its headers.
    FragmentAbsurd,
    /// An ICMP error about a packet no VIP can have sent (not TCP or UDP).
    IcmpNotVip,
    /// An ICMP error whose quoted packet is cut short, lies, or shows no ports.
    IcmpBadInner,
}

/// Where the IP header starts, and which IP.
pub enum Network {
    V4(usize),
    V6(usize),
}

// A one-byte check (`p + 1 > end`) becomes `p >= end` in LLVM, which the verifier does not turn
// into a readable range: read at least two bytes.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Result<*const T, NotForUs> {
    let start = ctx.data();
    if start + offset + core::mem::size_of::<T>() > ctx.data_end() {
        return Err(NotForUs::Malformed);
    }
    Ok((start + offset) as *const T)
}

#[inline(always)]
pub fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

/// A word of the packet as it lies in memory (the verifier allows unaligned packet reads on
/// machines with efficient unaligned access; x86 is one).
///
/// # Safety
/// The `at + 4` bytes from `p` are in the frame.
#[inline(always)]
pub unsafe fn word(p: *const u8, at: usize) -> u32 {
    // SAFETY: the caller's.
    unsafe { (p.add(at) as *const u32).read_unaligned() }
}

/// Eight bytes of the packet as a 64-bit word, as [`word`].
///
/// # Safety
/// The `at + 8` bytes from `p` are in the frame.
#[inline(always)]
pub unsafe fn dword(p: *const u8, at: usize) -> u64 {
    // SAFETY: the caller's.
    unsafe { (p.add(at) as *const u64).read_unaligned() }
}

/// The Ethernet header and up to two VLAN tags.
#[inline(always)]
pub fn ethernet(ctx: &XdpContext) -> Result<Network, NotForUs> {
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
    match ethertype {
        ETH_P_IP => Ok(Network::V4(l3)),
        ETH_P_IPV6 => Ok(Network::V6(l3)),
        _ => Err(NotForUs::Other),
    }
}

/// How many VLAN tags lie before an IP header at `l3`.
#[inline(always)]
fn vlan_tags(l3: usize) -> u8 {
    ((l3 - ETH_HLEN) / 4) as u8
}

#[inline(always)]
pub fn frame_len(ctx: &XdpContext) -> u32 {
    (ctx.data_end() - ctx.data()) as u32
}

#[inline(always)]
pub fn ipv4(ctx: &XdpContext, l3: usize) -> Result<Parsed<u32>, NotForUs> {
    let ip = ptr_at::<[u8; 20]>(ctx, l3)?;
    // SAFETY: 20 bytes checked.
    let header = unsafe { &*ip };
    let ihl = (header[0] & 0x0f) as usize;
    if header[0] >> 4 != 4 || ihl < 5 {
        return Err(NotForUs::Malformed);
    }
    let proto = header[9];
    let l4 = l3 + ihl * 4;
    // SAFETY: the addresses lie within the 20 bytes checked.
    let addrs = unsafe { (ip as *const u8).add(12) };
    // More-fragments flag or a fragment offset: part of a datagram.
    let frag = be16([header[6], header[7]]);
    let mut first_fragment = None;
    if frag & 0x3fff != 0 {
        let offset = (frag & 0x1fff) as u32 * 8;
        let total = be16([header[2], header[3]]) as u32;
        let header_len = ihl as u32 * 4;
        if total < header_len || offset + (total - header_len) > MAX_DATAGRAM {
            return Err(NotForUs::FragmentAbsurd);
        }
        let id = be16([header[4], header[5]]) as u32;
        if offset != 0 {
            return Ok(Parsed::LaterFragment(Fragment {
                addrs,
                id,
                proto,
                vlan_tags: vlan_tags(l3),
                len: frame_len(ctx),
            }));
        }
        first_fragment = Some(id);
    }
    if proto == IPPROTO_ICMP && first_fragment.is_none() {
        return crate::icmp::ipv4_error(ctx, addrs, l4, vlan_tags(l3)).map(Parsed::IcmpError);
    }
    transport(ctx, l4, proto, addrs, first_fragment, vlan_tags(l3)).map(Parsed::Ports)
}

#[inline(always)]
pub fn ipv6(ctx: &XdpContext, l3: usize) -> Result<Parsed<[u32; 4]>, NotForUs> {
    let ip = ptr_at::<[u8; 40]>(ctx, l3)?;
    // SAFETY: 40 bytes checked.
    let header = unsafe { &*ip };
    if header[0] >> 4 != 6 {
        return Err(NotForUs::Malformed);
    }
    // SAFETY: the addresses lie within the 40 bytes checked.
    let addrs = unsafe { (ip as *const u8).add(8) };
    let mut next = header[6];
    let mut offset = l3 + 40;
    let mut first_fragment = None;
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
            _ => break,
        }
    }
    // The fragment header, after the headers above (RFC 8200's order): walked once, outside the
    // loop, so that the verifier does not meet it at every step of the walk.
    if next == IPPROTO_FRAGMENT {
        let ext = unsafe { &*ptr_at::<[u8; 8]>(ctx, offset)? };
        next = ext[0];
        offset += 8;
        let at = (be16([ext[2], ext[3]]) & 0xfff8) as u32;
        // The fragmentable part: what the payload length leaves after the headers so far.
        let end = be16([header[4], header[5]]) as usize + l3 + 40;
        if end < offset || at + (end - offset) as u32 > MAX_DATAGRAM {
            return Err(NotForUs::FragmentAbsurd);
        }
        let id = u32::from_be_bytes([ext[4], ext[5], ext[6], ext[7]]);
        if at != 0 {
            return Ok(Parsed::LaterFragment(Fragment {
                addrs,
                id,
                proto: next,
                vlan_tags: vlan_tags(l3),
                len: frame_len(ctx),
            }));
        }
        // Offset 0 without more fragments is an atomic fragment (RFC 6946): a whole packet.
        if ext[3] & 1 != 0 {
            first_fragment = Some(id);
        }
    }
    if next == IPPROTO_ICMPV6 && first_fragment.is_none() {
        return crate::icmp::ipv6_error(ctx, addrs, offset, vlan_tags(l3)).map(Parsed::IcmpError);
    }
    transport(ctx, offset, next, addrs, first_fragment, vlan_tags(l3)).map(Parsed::Ports)
}

#[inline(always)]
fn transport<A>(
    ctx: &XdpContext,
    l4: usize,
    proto: u8,
    addrs: *const u8,
    first_fragment: Option<u32>,
    vlan_tags: u8,
) -> Result<Packet<A>, NotForUs> {
    let (ports, tcp_flags) = match proto {
        IPPROTO_TCP => {
            let tcp = unsafe { &*ptr_at::<[u8; 20]>(ctx, l4)? };
            ([tcp[0], tcp[1], tcp[2], tcp[3]], tcp[13])
        }
        IPPROTO_UDP => {
            let udp = unsafe { &*ptr_at::<[u8; 8]>(ctx, l4)? };
            ([udp[0], udp[1], udp[2], udp[3]], 0)
        }
        _ => return Err(NotForUs::Other),
    };
    Ok(Packet {
        addrs,
        proto,
        tcp_flags,
        vlan_tags,
        sport: be16([ports[0], ports[1]]),
        dport: be16([ports[2], ports[3]]),
        len: frame_len(ctx),
        first_fragment,
        family: PhantomData,
    })
}
