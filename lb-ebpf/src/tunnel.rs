//! IPIP and IP6IP6 towards a real (LVS's `ipip`, Katran's only mode): an outer IP header from the
//! director to the real goes in front of the client's packet; the real takes it off and answers
//! the client directly. The real may sit in another subnet: the agent puts the MAC of the kernel's
//! next hop towards it in [`RealDef::mac`], as for direct routing.
//!
//! A packet that would not fit the egress MTU once encapsulated is not sent: an IPv4 packet with
//! "don't fragment" and every IPv6 packet are answered with ICMP "fragmentation needed" / ICMPv6
//! "packet too big" carrying the MTU left inside the tunnel, so that the client sends smaller
//! packets (katran's `send_icmp_too_big`); an IPv4 packet that may be fragmented goes to the
//! kernel.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_csum_diff, bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    macros::xdp,
    programs::XdpContext,
};
use lb_common::{AF_INET6, values::RealDef};

use crate::{
    forward::{self, Counted},
    maps::{REALS, TUNNEL_JOB},
    parse::{self, ETH_P_IP, ETH_P_IPV6, IPPROTO_ICMP, IPPROTO_ICMPV6, Network, ptr_at},
    stats,
};

const IPV4_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
const ICMP_HLEN: usize = 8;
const IPPROTO_IPIP: u8 = 4;
const IPPROTO_IPV6: u8 = 41;
/// TTL / hop limit of the headers the program writes.
const TTL: u8 = 64;
/// How much of the client's packet an ICMP "fragmentation needed" quotes: its IP header and the
/// start of its payload (RFC 792 asks for 8 bytes; these are katran's 56). A multiple of 4, as
/// `bpf_csum_diff` needs.
const ICMP4_QUOTE: usize = 56;
/// How much an ICMPv6 "packet too big" quotes (katran's 200; RFC 4443 allows up to the 1,280-byte
/// minimum MTU).
const ICMP6_QUOTE: usize = 200;

/// Why a packet was not encapsulated: the verdict to return instead.
struct NotSent(u32);

/// The tunnel program: the balancer tail-calls it (TUNNEL_PROG) with the packet's real in
/// TUNNEL_JOB. A program of its own so that the verifier checks this code once: inlined into the
/// balancer, it was checked on every path that ends in forwarding, past the verifier's million
/// instructions.
#[xdp]
pub fn xdirectord_tunnel(ctx: XdpContext) -> u32 {
    let Some(job) = TUNNEL_JOB.get(0) else {
        return xdp_action::XDP_DROP;
    };
    let job = *job;
    let Some(real) = REALS.get(job.real_id) else {
        stats::global(|s| s.tunnel_failed += 1);
        return xdp_action::XDP_DROP;
    };
    if let Err(NotSent(action)) = encapsulate(&ctx, real) {
        return action;
    }
    let counted = Counted {
        vip_index: job.vip_index,
        real_id: job.real_id,
        len: job.len as u64,
        new_flow: job.new_flow != 0,
    };
    // The outer header went in after the tags: the frame has the tags it arrived with, and the
    // real's tag is given as for any frame.
    forward::transmit(&ctx, real, counted, job.ingress_tags)
}

/// Puts the outer header in front of the packet, moving the Ethernet header (and any VLAN tags)
/// in front of it; the caller writes the MACs.
#[inline(always)]
fn encapsulate(ctx: &XdpContext, real: &RealDef) -> Result<(), NotSent> {
    let l3 = match parse::ethernet(ctx) {
        Ok(Network::V4(l3) | Network::V6(l3)) => l3,
        Err(_) => return Err(NotSent(xdp_action::XDP_PASS)),
    };
    // The parser read these bytes already.
    let Ok(ip) = ptr_at::<[u8; 20]>(ctx, l3) else {
        return Err(NotSent(xdp_action::XDP_PASS));
    };
    // SAFETY: 20 bytes checked.
    let inner = read_inner(unsafe { &*ip });
    let entropy = entropy(ctx, l3, &inner);
    let outer_v6 = real.family == AF_INET6;
    let hlen = if outer_v6 { IPV6_HLEN } else { IPV4_HLEN };
    let inner_len = ctx.data_end() - ctx.data() - l3;
    if inner_len + hlen > real.mtu as usize {
        let mtu = (real.mtu as usize).saturating_sub(hlen);
        return Err(NotSent(too_big(ctx, &inner, l3, inner_len, mtu)));
    }
    // SAFETY: the context pointer is the program's argument.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(hlen as i32)) } != 0 {
        stats::global(|s| s.tunnel_failed += 1);
        return Err(NotSent(xdp_action::XDP_DROP));
    }
    // The frame is now `hlen` bytes of headroom, then the Ethernet header and the packet. Move
    // what follows the MACs (tags, ethertype) forward; the MACs themselves are written later.
    let Ok(frame) = ptr_at::<[u8; 22]>(ctx, 0) else {
        return Err(NotSent(xdp_action::XDP_DROP));
    };
    let Ok(header) = ptr_at::<[u8; IPV6_HLEN]>(ctx, l3) else {
        return Err(NotSent(xdp_action::XDP_DROP));
    };
    let frame = frame as *mut u8;
    // SAFETY: the ethertype and tags (bytes 12..l3, l3 at most 22) of the old Ethernet header
    // lie at `hlen` further on, before the packet, which is checked to hold `l3 + 40` bytes.
    unsafe {
        let from = frame.add(hlen);
        copy2(from.add(12), frame.add(12));
        if l3 >= 18 {
            copy4(from.add(14), frame.add(14));
        }
        if l3 >= 22 {
            copy4(from.add(18), frame.add(18));
        }
        let ethertype = if outer_v6 { ETH_P_IPV6 } else { ETH_P_IP };
        (frame.add(l3 - 2) as *mut [u8; 2]).write(ethertype.to_be_bytes());
    }
    let header = header as *mut u8;
    let proto = if inner.v6 { IPPROTO_IPV6 } else { IPPROTO_IPIP };
    if outer_v6 {
        // SAFETY: 40 bytes checked above.
        unsafe { write_ipv6(header, real, inner.tos, proto, inner_len as u16, entropy) };
    } else {
        // SAFETY: 20 bytes checked above.
        unsafe { write_ipv4(header, real, &inner, proto, inner_len as u16, entropy) };
    }
    stats::global(|s| s.tunnelled += 1);
    Ok(())
}

/// A number that is the same for every packet of a flow and differs between flows: the low bits
/// of a per-flow outer source (so that the real's NIC spreads the tunnel over its queues) and
/// the IPv6 flow label (so that routers spread it over their paths). From the client's address
/// and port, as katran's `create_encap_ipv4_src`; a later fragment has no port and goes without
/// (the real reassembles the datagram whatever queue its fragments arrive on). Read here from
/// the frame rather than handed down from the flow's hash: handed through every path of the
/// balancer, that hash took the verifier past its million instructions.
#[inline(always)]
fn entropy(ctx: &XdpContext, l3: usize, inner: &Inner) -> u32 {
    let (hlen, src_at) = if inner.v6 {
        (IPV6_HLEN, 8)
    } else {
        (inner.hlen, 12)
    };
    let mut e = 0u32;
    if let Ok(src) = ptr_at::<[u8; 16]>(ctx, l3 + src_at) {
        let src = src as *const u8;
        let words = if inner.v6 { 4 } else { 1 };
        for i in 0..4 {
            if i < words {
                // SAFETY: 16 bytes checked.
                e ^= unsafe { (src.add(i * 4) as *const u32).read_unaligned() };
            }
        }
    }
    if inner.ports_follow
        && let Ok(ports) = ptr_at::<[u8; 2]>(ctx, l3 + hlen)
    {
        // SAFETY: 2 bytes checked.
        let port = unsafe { *ports };
        e ^= u32::from_ne_bytes([port[0], port[1], port[1], port[0]]);
    }
    // Spread into the low bits, which are the ones used.
    let e = e.wrapping_mul(0x9e37_79b1);
    e ^ (e >> 15)
}

/// What the outer header copies of the inner one, and what a "too big" answer needs.
struct Inner {
    v6: bool,
    /// IPv4 TOS or IPv6 traffic class: DSCP and ECN carry over to the outer header (RFC 6040).
    tos: u8,
    /// IPv4 "don't fragment".
    df: bool,
    /// IPv4 protocol or IPv6 next header.
    proto: u8,
    /// IPv4 header length in bytes.
    hlen: usize,
    /// The TCP or UDP ports follow the IP header (not a later fragment, no IPv6 extension
    /// header in between).
    ports_follow: bool,
}

#[inline(always)]
fn read_inner(ip: &[u8; 20]) -> Inner {
    if ip[0] >> 4 == 6 {
        Inner {
            v6: true,
            tos: (ip[0] << 4) | (ip[1] >> 4),
            df: true,
            proto: ip[6],
            hlen: IPV6_HLEN,
            // Behind extension headers (a fragment header among them) the entropy makes do
            // with the addresses: the same for each fragment.
            ports_follow: matches!(ip[6], 6 | 17),
        }
    } else {
        Inner {
            v6: false,
            tos: ip[1],
            df: ip[6] & 0x40 != 0,
            proto: ip[9],
            hlen: ((ip[0] & 0x0f) as usize) * 4,
            ports_follow: u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff == 0,
        }
    }
}

/// The outer source: the configured address, its low `tunnel_src_bits` bits (at most 32) taken
/// from the flow's entropy when a per-flow source is configured. Returns the last 32-bit word
/// (network order), the one the bits replace.
#[inline(always)]
fn source_tail(real: &RealDef, tail: [u8; 4], entropy: u32) -> [u8; 4] {
    let bits = real.tunnel_src_bits as u32;
    if bits == 0 {
        return tail;
    }
    let mask = if bits >= 32 {
        u32::MAX
    } else {
        (1u32 << bits) - 1
    };
    ((u32::from_be_bytes(tail) & !mask) | (entropy & mask)).to_be_bytes()
}

/// # Safety
/// `at` points at 20 writable bytes of the frame.
#[inline(always)]
unsafe fn write_ipv4(
    at: *mut u8,
    real: &RealDef,
    inner: &Inner,
    proto: u8,
    inner_len: u16,
    entropy: u32,
) {
    let s = &real.tunnel_src;
    let src = source_tail(real, [s[0], s[1], s[2], s[3]], entropy);
    let d = &real.addr;
    let total = (inner_len + IPV4_HLEN as u16).to_be_bytes();
    // The outer header may not be fragmented when the inner one may not be (Linux's ipip
    // with pmtudisc does the same).
    let frag = if inner.df { 0x40 } else { 0 };
    let mut header: [u8; IPV4_HLEN] = [
        0x45, inner.tos, total[0], total[1], 0, 0, frag, 0, TTL, proto, 0, 0, src[0], src[1],
        src[2], src[3], d[0], d[1], d[2], d[3],
    ];
    let check = checksum(sum_words(&header));
    header[10] = check[0];
    header[11] = check[1];
    // SAFETY: the caller's.
    unsafe { (at as *mut [u8; IPV4_HLEN]).write_unaligned(header) };
}

/// # Safety
/// `at` points at 40 writable bytes of the frame.
#[inline(always)]
unsafe fn write_ipv6(
    at: *mut u8,
    real: &RealDef,
    traffic_class: u8,
    next: u8,
    inner_len: u16,
    entropy: u32,
) {
    // SAFETY: the caller's; written a word at a time (a 16-byte copy would become a byte loop).
    unsafe {
        let first = (6u32 << 28) | ((traffic_class as u32) << 20) | (entropy & 0xfffff);
        (at as *mut [u8; 4]).write_unaligned(first.to_be_bytes());
        let len = inner_len.to_be_bytes();
        (at.add(4) as *mut [u8; 4]).write_unaligned([len[0], len[1], next, TTL]);
        let s = &real.tunnel_src;
        for i in 0..3 {
            copy4(s.as_ptr().add(i * 4), at.add(8 + i * 4));
        }
        let tail = source_tail(real, [s[12], s[13], s[14], s[15]], entropy);
        (at.add(20) as *mut [u8; 4]).write_unaligned(tail);
        let d = real.addr.as_ptr();
        for i in 0..4 {
            copy4(d.add(i * 4), at.add(24 + i * 4));
        }
    }
}

/// Answers a packet that does not fit the tunnel: ICMP "fragmentation needed" or ICMPv6 "packet
/// too big" back to the client, sent from the VIP (the packet's destination), with `mtu`, the
/// largest packet the tunnel carries. A packet that may be fragmented, an ICMP message (no error
/// about an error), or one too short to quote goes to the kernel.
#[inline(always)]
fn too_big(ctx: &XdpContext, inner: &Inner, l3: usize, inner_len: usize, mtu: usize) -> u32 {
    let answered = if inner.v6 {
        inner.proto != IPPROTO_ICMPV6 && inner_len >= ICMP6_QUOTE && packet_too_big(ctx, l3, mtu)
    } else {
        inner.df
            && inner.proto != IPPROTO_ICMP
            && inner_len >= ICMP4_QUOTE
            && fragmentation_needed(ctx, l3, mtu)
    };
    if answered {
        stats::global(|s| s.tunnel_too_big += 1);
        xdp_action::XDP_TX
    } else {
        stats::global(|s| s.tunnel_too_big_passed += 1);
        xdp_action::XDP_PASS
    }
}

/// Cuts the frame to its L2 header and `quote` bytes of the packet, then makes `room` bytes in
/// front for the answer's headers and puts the L2 header, its MACs turned around, back at the
/// front. False when the kernel refuses to resize the frame (it is then left as it came, or
/// too short to be anything but dropped: the caller passes it).
#[inline(always)]
fn make_answer_room(ctx: &XdpContext, l3: usize, quote: usize, room: usize) -> bool {
    let cut = ctx.data_end() - ctx.data() - (l3 + quote);
    // SAFETY: the context pointer is the program's argument.
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, -(cut as i32)) } != 0 {
        return false;
    }
    // SAFETY: as above.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(room as i32)) } != 0 {
        return false;
    }
    let (Ok(to), Ok(from)) = (ptr_at::<[u8; 22]>(ctx, 0), ptr_at::<[u8; 22]>(ctx, room)) else {
        return false;
    };
    let (to, from) = (to as *mut u8, from as *const u8);
    // SAFETY: the old L2 header (at most 22 bytes, checked) lies `room` bytes on; `room` is at
    // least 22, so the new one (at the start) does not overlap it.
    unsafe {
        // Back where the packet came from: the destination MAC is its source.
        copy4(from.add(6), to);
        copy2(from.add(10), to.add(4));
        copy4(from, to.add(6));
        copy2(from.add(4), to.add(10));
        copy2(from.add(12), to.add(12));
        if l3 >= 18 {
            copy4(from.add(14), to.add(14));
        }
        if l3 >= 22 {
            copy4(from.add(18), to.add(18));
        }
    }
    true
}

#[inline(always)]
fn fragmentation_needed(ctx: &XdpContext, l3: usize, mtu: usize) -> bool {
    const ROOM: usize = IPV4_HLEN + ICMP_HLEN;
    if !make_answer_room(ctx, l3, ICMP4_QUOTE, ROOM) {
        return false;
    }
    let Ok(answer) = ptr_at::<[u8; ROOM + ICMP4_QUOTE]>(ctx, l3) else {
        return false;
    };
    let at = answer as *mut u8;
    // SAFETY (below): the answer's headers and the quote are checked to lie in the frame.
    let (client, vip) = unsafe {
        let quoted = at.add(ROOM);
        (
            (quoted.add(12) as *const [u8; 4]).read_unaligned(),
            (quoted.add(16) as *const [u8; 4]).read_unaligned(),
        )
    };
    let total = ((ROOM + ICMP4_QUOTE) as u16).to_be_bytes();
    let mut ip: [u8; IPV4_HLEN] = [
        0x45,
        0,
        total[0],
        total[1],
        0,
        0,
        0,
        0,
        TTL,
        IPPROTO_ICMP,
        0,
        0,
        vip[0],
        vip[1],
        vip[2],
        vip[3],
        client[0],
        client[1],
        client[2],
        client[3],
    ];
    let check = checksum(sum_words(&ip));
    ip[10] = check[0];
    ip[11] = check[1];
    let mtu = (mtu as u16).to_be_bytes();
    // Destination unreachable, code 4: fragmentation needed and DF set; the next-hop MTU in
    // the low 16 bits of the second word (RFC 1191).
    let icmp: [u8; ICMP_HLEN] = [3, 4, 0, 0, 0, 0, mtu[0], mtu[1]];
    unsafe {
        (at as *mut [u8; IPV4_HLEN]).write_unaligned(ip);
        let message = at.add(IPV4_HLEN);
        (message as *mut [u8; ICMP_HLEN]).write_unaligned(icmp);
        let sum = csum_diff(message, ICMP_HLEN + ICMP4_QUOTE, 0);
        (message.add(2) as *mut [u8; 2]).write_unaligned(checksum(sum));
    }
    true
}

#[inline(always)]
fn packet_too_big(ctx: &XdpContext, l3: usize, mtu: usize) -> bool {
    const ROOM: usize = IPV6_HLEN + ICMP_HLEN;
    const LEN: usize = ICMP_HLEN + ICMP6_QUOTE;
    if !make_answer_room(ctx, l3, ICMP6_QUOTE, ROOM) {
        return false;
    }
    let Ok(answer) = ptr_at::<[u8; ROOM + ICMP6_QUOTE]>(ctx, l3) else {
        return false;
    };
    let at = answer as *mut u8;
    let len = (LEN as u16).to_be_bytes();
    let mtu = (mtu as u32).to_be_bytes();
    // SAFETY (below): the answer's headers and the quote are checked to lie in the frame.
    unsafe {
        let quoted = at.add(ROOM);
        (at as *mut [u8; 4]).write_unaligned([0x60, 0, 0, 0]);
        (at.add(4) as *mut [u8; 4]).write_unaligned([len[0], len[1], IPPROTO_ICMPV6, TTL]);
        // From the VIP (the quoted packet's destination) to the client (its source).
        for i in 0..4 {
            copy4(quoted.add(24 + i * 4), at.add(8 + i * 4));
            copy4(quoted.add(8 + i * 4), at.add(24 + i * 4));
        }
        let message = at.add(IPV6_HLEN);
        // Packet too big, code 0, the MTU in the second word.
        (message as *mut [u8; ICMP_HLEN])
            .write_unaligned([2, 0, 0, 0, mtu[0], mtu[1], mtu[2], mtu[3]]);
        // The pseudo-header: both addresses, the length and the next header (RFC 8200 §8.1).
        let pseudo = sum_words(&[0, 0, len[0], len[1], 0, 0, 0, IPPROTO_ICMPV6]);
        let sum = csum_diff(at.add(8), 32, pseudo);
        let sum = csum_diff(message, LEN, sum);
        (message.add(2) as *mut [u8; 2]).write_unaligned(checksum(sum));
    }
    true
}

/// The one's-complement sum of `bytes` taken as 16-bit words in memory order (RFC 1071: the
/// byte order of the words does not matter as long as the result is stored the same way).
#[inline(always)]
fn sum_words<const N: usize>(bytes: &[u8; N]) -> u64 {
    let mut sum = 0u64;
    let mut i = 0;
    while i + 1 < N {
        sum += u16::from_ne_bytes([bytes[i], bytes[i + 1]]) as u64;
        i += 2;
    }
    sum
}

/// Adds `len` bytes of the frame at `at` to `seed`, with the kernel's `bpf_csum_diff`.
///
/// # Safety
/// `len` bytes (a multiple of 4, at most 512) at `at` lie in the frame.
#[inline(always)]
unsafe fn csum_diff(at: *mut u8, len: usize, seed: u64) -> u64 {
    // Fold the seed first: the helper takes a 32-bit partial sum.
    let seed = fold32(seed);
    // SAFETY: the caller's.
    let sum = unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, at as *mut u32, len as u32, seed) };
    sum as u64 & 0xffff_ffff
}

#[inline(always)]
fn fold32(sum: u64) -> u32 {
    let sum = (sum & 0xffff_ffff) + (sum >> 32);
    ((sum & 0xffff_ffff) + (sum >> 32)) as u32
}

/// The checksum field for a one's-complement sum, in memory order.
#[inline(always)]
fn checksum(sum: u64) -> [u8; 2] {
    let mut sum = fold32(sum) as u64;
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    (!(sum as u16)).to_ne_bytes()
}

/// Copies two bytes (a word at a time: a byte-array copy becomes a call to a byte-loop memmove).
///
/// # Safety
/// Two bytes at `from` and `to`.
#[inline(always)]
unsafe fn copy2(from: *const u8, to: *mut u8) {
    // SAFETY: the caller's.
    unsafe { (to as *mut u16).write_unaligned((from as *const u16).read_unaligned()) }
}

/// Copies four bytes, as [`copy2`].
///
/// # Safety
/// Four bytes at `from` and `to`.
#[inline(always)]
unsafe fn copy4(from: *const u8, to: *mut u8) {
    // SAFETY: the caller's.
    unsafe { (to as *mut u32).write_unaligned((from as *const u32).read_unaligned()) }
}
