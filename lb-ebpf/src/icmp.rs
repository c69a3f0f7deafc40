//! ICMP and ICMPv6 errors about VIP flows: reading the packet an error quotes (one a real sent
//! from the VIP to a client), and sending the error to the real that owns that flow, so that
//! path-MTU discovery and connection errors reach the server that holds the connection.
//!
//! The quoted packet is never trusted: cut short, lying about its version or header length,
//! without ports, or not sent by the address the error is sent to, it is counted and passed.

use core::marker::PhantomData;

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use lb_common::{IPPROTO_TCP, IPPROTO_UDP, values::flow_clock};

use crate::{
    clock::now,
    family::Family,
    filter::maybe_vip,
    flows,
    forward::{self, Counted},
    maps::REALS,
    parse::{NotForUs, Packet, Quoted, be16, dword, frame_len, ptr_at, word},
    schedule, stats,
};

/// The bytes of the ICMP header before the quoted packet.
const ICMP_HLEN: usize = 8;

/// A pointer into the quoted packet: a header that ends beyond the frame is the quote's fault,
/// not the frame's.
#[inline(always)]
fn quoted_at<T>(ctx: &XdpContext, offset: usize) -> Result<*const T, NotForUs> {
    ptr_at(ctx, offset).map_err(|_| NotForUs::IcmpBadInner)
}

/// An ICMP message at `l4`, in an IPv4 packet whose addresses are at `outer`, in a frame that
/// arrived with `vlan_tags` tags.
#[inline(always)]
pub fn ipv4_error(
    ctx: &XdpContext,
    outer: *const u8,
    l4: usize,
    vlan_tags: u8,
) -> Result<Quoted<u32>, NotForUs> {
    // SAFETY (all dereferences below): `ptr_at` has checked that the bytes lie in the frame.
    let icmp = unsafe { &*ptr_at::<[u8; 4]>(ctx, l4)? };
    // Destination unreachable (fragmentation needed among them), time exceeded, parameter
    // problem: about a packet that went out. Echo, redirects, source quench are the director's.
    if !matches!(icmp[0], 3 | 11 | 12) {
        return Err(NotForUs::Other);
    }
    let quoted = l4 + ICMP_HLEN;
    let ip = quoted_at::<[u8; 20]>(ctx, quoted)?;
    let inner = unsafe { &*ip };
    let ihl = (inner[0] & 0x0f) as usize;
    if inner[0] >> 4 != 4 || ihl < 5 {
        return Err(NotForUs::IcmpBadInner);
    }
    // A fragment after the first quotes no ports.
    if be16([inner[6], inner[7]]) & 0x1fff != 0 {
        return Err(NotForUs::IcmpBadInner);
    }
    let proto = inner[9];
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return Err(NotForUs::IcmpNotVip);
    }
    // RFC 792: the quote holds the IP header and at least 8 bytes of what follows.
    let ports = unsafe { &*quoted_at::<[u8; 8]>(ctx, quoted + ihl * 4)? };
    // SAFETY: the outer addresses were checked by the parser, the quoted ones above.
    let (addrs, to) = unsafe { ((ip as *const u8).add(12), word(outer, 4)) };
    // The quoted packet was sent by whoever the error goes to: anything else is forged.
    // SAFETY: as above.
    if unsafe { word(addrs, 0) } != to {
        return Err(NotForUs::IcmpBadInner);
    }
    Ok(Quoted {
        addrs,
        proto,
        vlan_tags,
        vport: be16([ports[0], ports[1]]),
        cport: be16([ports[2], ports[3]]),
        len: frame_len(ctx),
        family: PhantomData,
    })
}

/// An ICMPv6 message at `l4`, in an IPv6 packet whose addresses are at `outer`, in a frame that
/// arrived with `vlan_tags` tags.
#[inline(always)]
pub fn ipv6_error(
    ctx: &XdpContext,
    outer: *const u8,
    l4: usize,
    vlan_tags: u8,
) -> Result<Quoted<[u32; 4]>, NotForUs> {
    // SAFETY (all dereferences below): `ptr_at` has checked that the bytes lie in the frame.
    let icmp = unsafe { &*ptr_at::<[u8; 4]>(ctx, l4)? };
    // Destination unreachable, packet too big, time exceeded, parameter problem. The other
    // types below 128 are unassigned; 128 and above are informational (echo, neighbour
    // discovery): the director's.
    if !matches!(icmp[0], 1..=4) {
        return Err(NotForUs::Other);
    }
    let quoted = l4 + ICMP_HLEN;
    let ip = quoted_at::<[u8; 40]>(ctx, quoted)?;
    let inner = unsafe { &*ip };
    if inner[0] >> 4 != 6 {
        return Err(NotForUs::IcmpBadInner);
    }
    let proto = inner[6];
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        // Extension headers in the quote are not walked: no ports to be had.
        return Err(if matches!(proto, 0 | 43 | 44 | 51 | 60) {
            NotForUs::IcmpBadInner
        } else {
            NotForUs::IcmpNotVip
        });
    }
    let ports = unsafe { &*quoted_at::<[u8; 8]>(ctx, quoted + 40)? };
    // SAFETY: the quoted addresses lie in the 40 bytes checked above.
    let addrs = unsafe { (ip as *const u8).add(8) };
    // SAFETY: the outer addresses were checked by the parser, the quoted ones above.
    let differ =
        unsafe { (dword(addrs, 0) ^ dword(outer, 16)) | (dword(addrs, 8) ^ dword(outer, 24)) };
    // The quoted packet was sent by whoever the error goes to: anything else is forged.
    if differ != 0 {
        return Err(NotForUs::IcmpBadInner);
    }
    Ok(Quoted {
        addrs,
        proto,
        vlan_tags,
        vport: be16([ports[0], ports[1]]),
        cport: be16([ports[2], ports[3]]),
        len: frame_len(ctx),
        family: PhantomData,
    })
}

/// A flow's addresses, the client's first, where a [`Packet`] can point at them (8-byte aligned:
/// the verifier refuses misaligned stack reads, and IPv6 hashes read 64-bit words).
#[repr(C, align(8))]
struct Addrs<A>([A; 2]);

/// Sends an ICMP error to the real of the flow it is about: the flow table's, or where
/// persistence or the consistent-hash table would place the flow. An error changes no flow,
/// template or connection count: anyone can send one.
#[inline(always)]
pub fn to_owner<F: Family>(ctx: &XdpContext, quoted: &Quoted<F::Addr>) -> u32 {
    let as_sent = Packet::<F::Addr> {
        addrs: quoted.addrs,
        proto: quoted.proto,
        tcp_flags: 0,
        vlan_tags: quoted.vlan_tags,
        sport: quoted.vport,
        dport: quoted.cport,
        len: quoted.len,
        first_fragment: None,
        family: PhantomData,
    };
    // The client's packets of the flow: the quoted one turned around.
    let addrs = Addrs([F::dst(&as_sent), F::src(&as_sent)]);
    let packet = Packet::<F::Addr> {
        addrs: (&raw const addrs).cast(),
        sport: quoted.cport,
        dport: quoted.vport,
        ..as_sent
    };
    let len = quoted.len as u64;
    let vip_fold = F::vip_fold(&packet);
    if !maybe_vip(vip_fold) {
        stats::global(|s| s.icmp_not_vip += 1);
        return xdp_action::XDP_PASS;
    }
    let flow_key = F::flow_key(&packet);
    let now = now();
    let clock = flow_clock(now);
    let tag_hash = F::cache_hash(vip_fold, &packet);
    // (`settled` only matters to a new flow's room: an error places none.)
    let flow_hash = F::flow_hash(&flow_key);
    let bucket = flows::bucket::<F>(flow_hash, tag_hash, clock, false);
    if let Some(flow) = bucket.found::<F>() {
        // SAFETY: read before any other operation on the flow table.
        let flow = unsafe { &*flow };
        if flow.live(clock)
            && let Some(real) = schedule::flow_real(flow.real_id, flow.real_generation, vip_fold)
        {
            let counted = Counted {
                vip_index: real.vip_index,
                real_id: flow.real_id as u32,
                len,
                new_flow: false,
            };
            let action = forward::forward(ctx, real, counted, quoted.vlan_tags);
            if action != xdp_action::XDP_DROP {
                stats::global(|s| s.icmp_to_flow += 1);
            }
            return action;
        }
    }
    let Some(meta) = F::vip(&packet) else {
        stats::global(|s| s.icmp_not_vip += 1);
        return xdp_action::XDP_PASS;
    };
    // SAFETY: VIPS maps are BPF_F_NO_PREALLOC: the element stays valid for this program run.
    let meta = unsafe { &*meta };
    let placed = schedule::for_lost_flow::<F>(meta, &packet, flow_hash, now)
        .and_then(|id| Some((id, REALS.get(id)?)));
    let Some((real_id, real)) = placed else {
        stats::global(|s| s.no_real += 1);
        return xdp_action::XDP_DROP;
    };
    let counted = Counted {
        vip_index: meta.index,
        real_id,
        len,
        new_flow: false,
    };
    let action = forward::forward(ctx, real, counted, quoted.vlan_tags);
    if action != xdp_action::XDP_DROP {
        stats::global(|s| s.icmp_hashed += 1);
    }
    action
}
