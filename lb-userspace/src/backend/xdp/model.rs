//! User space's model of the XDP program's decision for a packet to a VIP: flow table, TCP state,
//! persistence, the schedulers, the fallback. It reads the same tables the program reads (synced
//! from the maps after each change) and keeps its own flow, persistence, cursor and connection
//! state; a property test runs random packets and weight changes through both and requires the
//! same real for every packet. It mirrors `lb-ebpf/src/{main,schedule,conns,icmp,frag}.rs` rule
//! by rule: packets with ports, ICMP errors about VIP flows, first and later fragments.

use std::{collections::HashMap, net::IpAddr};

use lb_common::{
    IPPROTO_TCP, hash,
    keys::{Flow4Key, Flow6Key},
    values::{
        FLOW_CLOSING, FLOW_ESTABLISHED, FLOW_SYN_RECV, FLOW_UDP, FORWARD_LOCAL, FORWARD_ROUTE,
        FORWARD_TUNNEL, FRAG_TIMEOUT_NS, FlowSlot, REAL_F_RESOLVED, RealDef, Scheduler, SlotReals,
        VIP_F_PERSISTENT, VipMeta, flow_clock,
    },
};

use super::dataplane::{Dataplane, Vip4KeyOrd, Vip6KeyOrd, VipKey};
use crate::backend::BackendError;

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;
const NS_PER_SEC: u64 = 1_000_000_000;

/// A TCP or UDP packet, as the program parses it.
#[derive(Clone, Copy, Debug)]
pub struct ModelPacket {
    pub proto: u8,
    pub tcp_flags: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
}

/// What the program does with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Not for a VIP.
    Pass,
    /// For a VIP with no usable real and no fallback.
    NoReal,
    /// Sent to this real id.
    Real(u32),
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum FlowKey {
    V4(Flow4Key),
    V6(Flow6Key),
}

#[derive(Clone, Copy)]
struct Flow {
    real_id: u32,
    generation: u32,
    state: u8,
    /// Flow clock of its last packet, refreshed as the program does.
    last_seen: u32,
}

impl Flow {
    /// The program's slot of the flow, for the program's rules ([`FlowSlot::live`],
    /// [`FlowSlot::refresh_due`]).
    fn slot(&self) -> FlowSlot {
        FlowSlot {
            tag: 1,
            state: self.state,
            last_seen: self.last_seen,
            ..FlowSlot::default()
        }
    }

    /// Not over at `now` (ns).
    fn live(&self, now: u64) -> bool {
        self.slot().live(flow_clock(now))
    }
}

/// Where a first fragment went, as the program's FRAGS maps hold it.
#[derive(Clone, Copy)]
struct Datagram {
    real_id: u32,
    generation: u32,
    vip_index: u32,
    first_seen_ns: u64,
}

#[derive(Clone, Copy)]
struct Template {
    real_id: u32,
    generation: u32,
    last_new_ns: u64,
}

/// The model's state.
#[derive(Default)]
pub struct Model {
    vips: HashMap<VipKey, VipMeta>,
    slots: HashMap<u32, Box<SlotReals>>,
    rings: HashMap<u32, Vec<u16>>,
    sequences: HashMap<u32, Vec<u16>>,
    reals: HashMap<u32, RealDef>,
    flows: HashMap<FlowKey, Flow>,
    templates: HashMap<(Vec<u8>, u32), Template>,
    cursors: HashMap<u32, u32>,
    previous_slots: HashMap<VipKey, u32>,
    /// (source, destination, identification, protocol) of fragmented datagrams.
    datagrams: HashMap<(IpAddr, IpAddr, u32, u8), Datagram>,
    /// (active, inactive) per real id, as the program's CONNS.
    pub conns: HashMap<u32, (i64, i64)>,
}

fn octets(addr: IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn addr16(addr: IpAddr) -> [u8; 16] {
    let mut b = [0; 16];
    let o = octets(addr);
    b[..o.len()].copy_from_slice(&o);
    b
}

impl Model {
    /// Reads the tables the program reads (call after every change to the maps).
    pub fn sync_tables(&mut self, dataplane: &Dataplane) -> Result<(), BackendError> {
        let programmed = dataplane.programmed()?;
        self.vips.clear();
        for (key, p) in &programmed {
            let slot = p.meta.slot;
            self.vips.insert(*key, p.meta);
            let maps = &dataplane.maps;
            let read = |e: aya::maps::MapError| BackendError::system("reading tables", e);
            self.slots
                .insert(slot, Box::new(maps.slot_reals.get(&slot, 0).map_err(read)?));
            self.rings.insert(
                slot,
                maps.rings.get(&slot, 0).map_err(read)?.entries.to_vec(),
            );
            self.sequences.insert(
                slot,
                maps.wrr_seqs.get(&slot, 0).map_err(read)?.entries.to_vec(),
            );
            // Writing a slot resets its cursors (on every CPU); a slot is written on every change.
            if self.previous_slots.insert(*key, slot) != Some(slot) {
                self.cursors.insert(slot, 0);
            }
        }
        for id in 1..dataplane.maps.reals.len() {
            let def = dataplane
                .maps
                .reals
                .get(&id, 0)
                .map_err(|e| BackendError::system("reading REALS", e))?;
            if def.generation == 0 {
                continue;
            }
            // An id given to a new real starts with zeroed connection counts.
            if self
                .reals
                .insert(id, def)
                .is_some_and(|old| old.generation != def.generation)
                && def.vip_index != u32::MAX
            {
                self.conns.remove(&id);
            }
        }
        Ok(())
    }

    fn usable(&self, real_id: u32, generation: u32, vip_index: u32) -> Option<&RealDef> {
        let real = self.reals.get(&real_id)?;
        (real_id != 0 && real.generation == generation && real.vip_index == vip_index)
            .then_some(real)
    }

    /// The program's decision for `packet` at program time `now`.
    pub fn decide(&mut self, p: &ModelPacket, now: u64) -> Decision {
        match self.choose(p, now) {
            Ok(real_id) => self.forwarded(real_id),
            Err(decision) => decision,
        }
    }

    /// The first fragment `p` of datagram `id`: placed as any packet, its real remembered.
    pub fn decide_first_fragment(&mut self, p: &ModelPacket, id: u32, now: u64) -> Decision {
        match self.choose(p, now) {
            Ok(real_id) => {
                let real = self.reals[&real_id];
                self.datagrams.insert(
                    (p.src, p.dst, id, p.proto),
                    Datagram {
                        real_id,
                        generation: real.generation,
                        vip_index: real.vip_index,
                        first_seen_ns: now,
                    },
                );
                self.forwarded(real_id)
            }
            Err(decision) => decision,
        }
    }

    /// A later fragment of datagram `id` (`p`'s ports are not read): where its first went, while
    /// remembered and its real is current; otherwise to the kernel.
    pub fn decide_later_fragment(&mut self, p: &ModelPacket, id: u32, now: u64) -> Decision {
        match self.datagrams.get(&(p.src, p.dst, id, p.proto)).copied() {
            Some(d)
                if now.wrapping_sub(d.first_seen_ns) <= FRAG_TIMEOUT_NS
                    && self.usable(d.real_id, d.generation, d.vip_index).is_some() =>
            {
                self.forwarded(d.real_id)
            }
            _ => Decision::Pass,
        }
    }

    /// An ICMP error about the flow whose client packets are `p` (the quoted packet turned
    /// around): the flow's real, or where persistence or the consistent-hash table place the
    /// flow. It changes no flow, template or count.
    pub fn decide_icmp_error(&mut self, p: &ModelPacket, now: u64) -> Decision {
        let Some(meta) = self.vips.get(&Self::vip_key(p)).copied() else {
            // The program looks the flow up first; a flow of no VIP was never placed.
            return Decision::Pass;
        };
        let flow_key = Self::flow_key(p);
        if let Some(flow) = self.flows.get(&flow_key).copied()
            && flow.live(now)
            && self
                .usable(flow.real_id, flow.generation, meta.index)
                .is_some()
        {
            return self.forwarded(flow.real_id);
        }
        match self.for_lost_flow(&meta, p, &flow_key, now) {
            Some(real_id) if self.reals.contains_key(&real_id) => self.forwarded(real_id),
            _ => Decision::NoReal,
        }
    }

    fn vip_key(p: &ModelPacket) -> VipKey {
        match p.dst {
            IpAddr::V4(d) => VipKey::V4(Vip4KeyOrd(d.octets(), p.dport, p.proto)),
            IpAddr::V6(d) => VipKey::V6(Vip6KeyOrd(d.octets(), p.dport, p.proto)),
        }
    }

    fn flow_key(p: &ModelPacket) -> FlowKey {
        match (p.src, p.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => FlowKey::V4(Flow4Key {
                src: s.octets(),
                dst: d.octets(),
                sport: p.sport,
                dport: p.dport,
                proto: p.proto as u32,
            }),
            _ => FlowKey::V6(Flow6Key {
                src: addr16(p.src),
                dst: addr16(p.dst),
                sport: p.sport,
                dport: p.dport,
                proto: p.proto as u32,
            }),
        }
    }

    /// The real the program chooses for `p` (before forwarding, which may still fail), or what
    /// it does instead.
    fn choose(&mut self, p: &ModelPacket, now: u64) -> Result<u32, Decision> {
        let Some(meta) = self.vips.get(&Self::vip_key(p)).copied() else {
            return Err(Decision::Pass);
        };
        let flow_key = Self::flow_key(p);
        let is_tcp = p.proto == IPPROTO_TCP;
        let flags = p.tcp_flags;
        let syn = is_tcp && flags & TCP_SYN != 0 && flags & TCP_ACK == 0;

        let clock = flow_clock(now);
        if let Some(flow) = self.flows.get(&flow_key).copied()
            && flow.live(now)
            && self
                .usable(flow.real_id, flow.generation, meta.index)
                .is_some()
        {
            if !(syn && flow.state == FLOW_CLOSING) {
                let state = if is_tcp {
                    self.track(flow, flags)
                } else {
                    flow.state
                };
                let kept = self.flows.get_mut(&flow_key).expect("present");
                kept.state = state;
                if kept.slot().refresh_due(clock) {
                    kept.last_seen = clock;
                }
                return Ok(flow.real_id);
            }
            self.closed(flow.real_id, flow.state);
        }

        let real_id = if is_tcp && !syn {
            self.for_lost_flow(&meta, p, &flow_key, now)
        } else {
            self.for_new_flow(&meta, p, &flow_key, now)
        };
        let Some(real_id) = real_id else {
            return Err(Decision::NoReal);
        };
        let Some(real) = self.reals.get(&real_id).copied() else {
            return Err(Decision::NoReal);
        };
        let state = if !is_tcp {
            FLOW_UDP
        } else if flags & (TCP_FIN | TCP_RST) != 0 {
            FLOW_CLOSING
        } else if flags & TCP_SYN != 0 {
            FLOW_SYN_RECV
        } else {
            FLOW_ESTABLISHED
        };
        self.flows.insert(
            flow_key,
            Flow {
                real_id,
                generation: real.generation,
                state,
                last_seen: clock,
            },
        );
        self.add(
            real_id,
            (state == FLOW_ESTABLISHED) as i64,
            (state != FLOW_ESTABLISHED) as i64,
        );
        Ok(real_id)
    }

    fn forwarded(&self, real_id: u32) -> Decision {
        let real = &self.reals[&real_id];
        if real.forward == FORWARD_LOCAL
            || ((real.forward == FORWARD_ROUTE || real.forward == FORWARD_TUNNEL)
                && real.flags & REAL_F_RESOLVED != 0)
        {
            Decision::Real(real_id)
        } else {
            Decision::NoReal
        }
    }

    fn add(&mut self, real_id: u32, active: i64, inactive: i64) {
        let c = self.conns.entry(real_id).or_default();
        c.0 += active;
        c.1 += inactive;
    }

    fn closed(&mut self, real_id: u32, state: u8) {
        if state == FLOW_ESTABLISHED {
            self.add(real_id, -1, 0);
        } else {
            self.add(real_id, 0, -1);
        }
    }

    fn track(&mut self, flow: Flow, flags: u8) -> u8 {
        let closing = flags & (TCP_FIN | TCP_RST) != 0;
        match flow.state {
            FLOW_SYN_RECV if closing => FLOW_CLOSING,
            FLOW_SYN_RECV if flags & TCP_ACK != 0 && flags & TCP_SYN == 0 => {
                self.add(flow.real_id, 1, -1);
                FLOW_ESTABLISHED
            }
            FLOW_ESTABLISHED if closing => {
                self.add(flow.real_id, -1, 1);
                FLOW_CLOSING
            }
            s => s,
        }
    }

    fn template_key(meta: &VipMeta, p: &ModelPacket) -> (Vec<u8>, u32) {
        let src = octets(p.src);
        let masked = src
            .iter()
            .zip(meta.persist_mask.iter())
            .map(|(a, m)| a & m)
            .collect();
        (masked, meta.index)
    }

    fn persistent_real(
        &mut self,
        meta: &VipMeta,
        key: &(Vec<u8>, u32),
        now: u64,
        refresh: bool,
    ) -> Option<u32> {
        let t = *self.templates.get(key)?;
        if now.wrapping_sub(t.last_new_ns) > meta.persist_timeout_secs as u64 * NS_PER_SEC {
            return None;
        }
        self.usable(t.real_id, t.generation, meta.index)?;
        if refresh {
            self.templates.get_mut(key).expect("present").last_new_ns = now;
        }
        Some(t.real_id)
    }

    fn for_new_flow(
        &mut self,
        meta: &VipMeta,
        p: &ModelPacket,
        flow: &FlowKey,
        now: u64,
    ) -> Option<u32> {
        if meta.flags & VIP_F_PERSISTENT == 0 {
            return self.by_scheduler(meta, p, flow);
        }
        let key = Self::template_key(meta, p);
        if let Some(id) = self.persistent_real(meta, &key, now, true) {
            return Some(id);
        }
        let id = self.by_scheduler(meta, p, flow)?;
        if id != meta.fallback {
            let generation = self.reals.get(&id)?.generation;
            self.templates.insert(
                key,
                Template {
                    real_id: id,
                    generation,
                    last_new_ns: now,
                },
            );
        }
        Some(id)
    }

    fn for_lost_flow(
        &mut self,
        meta: &VipMeta,
        p: &ModelPacket,
        flow: &FlowKey,
        now: u64,
    ) -> Option<u32> {
        if meta.n_live == 0 {
            return (meta.fallback != 0).then_some(meta.fallback);
        }
        if meta.flags & VIP_F_PERSISTENT != 0 {
            let key = Self::template_key(meta, p);
            if let Some(id) = self.persistent_real(meta, &key, now, false) {
                return Some(id);
            }
        }
        self.ring(meta, Self::ring_hash(meta, p, flow))
    }

    fn addr_hash(addr: IpAddr) -> u32 {
        match addr {
            IpAddr::V4(a) => hash::addr4(a.octets()),
            IpAddr::V6(a) => hash::addr6(&a.octets()),
        }
    }

    fn ring_hash(meta: &VipMeta, p: &ModelPacket, flow: &FlowKey) -> u32 {
        if meta.scheduler == Scheduler::Sh as u32 {
            Self::addr_hash(p.src)
        } else if meta.scheduler == Scheduler::Dh as u32 {
            Self::addr_hash(p.dst)
        } else {
            match flow {
                FlowKey::V4(k) => hash::flow4(k),
                FlowKey::V6(k) => hash::flow6(k),
            }
        }
    }

    fn ring(&self, meta: &VipMeta, h: u32) -> Option<u32> {
        let index = *self
            .rings
            .get(&meta.slot)?
            .get(hash::ring_index(h) as usize)?;
        Some(
            self.slots
                .get(&meta.slot)?
                .reals
                .get(index as usize)?
                .real_id,
        )
    }

    fn by_scheduler(&mut self, meta: &VipMeta, p: &ModelPacket, flow: &FlowKey) -> Option<u32> {
        if meta.n_live == 0 {
            return (meta.fallback != 0).then_some(meta.fallback);
        }
        match Scheduler::from_u32(meta.scheduler)? {
            Scheduler::Wrr | Scheduler::Rr => {
                let cursor = self.cursors.entry(meta.slot).or_insert(0);
                let position = if *cursor >= meta.wrr_len { 0 } else { *cursor };
                *cursor = position + 1;
                let index = *self.sequences.get(&meta.slot)?.get(position as usize)?;
                Some(
                    self.slots
                        .get(&meta.slot)?
                        .reals
                        .get(index as usize)?
                        .real_id,
                )
            }
            Scheduler::Sh | Scheduler::Dh | Scheduler::Mh => {
                self.ring(meta, Self::ring_hash(meta, p, flow))
            }
            s => self.least_connections(meta, s),
        }
    }

    fn least_connections(&self, meta: &VipMeta, s: Scheduler) -> Option<u32> {
        let slot = self.slots.get(&meta.slot)?;
        let mut best: Option<(u32, u64, u64)> = None;
        for real in slot.reals.iter().take(meta.n_reals as usize) {
            if real.weight == 0 {
                continue;
            }
            let (a, i) = self.conns.get(&real.real_id).copied().unwrap_or_default();
            let (active, inactive) = (a.max(0) as u64, i.max(0) as u64);
            if s == Scheduler::Nq && active == 0 {
                return Some(real.real_id);
            }
            let overhead = if matches!(s, Scheduler::Sed | Scheduler::Nq) {
                active + 1
            } else {
                (active << 8) + inactive
            };
            let weight = real.weight as u64;
            let better = match best {
                None => true,
                Some((_, bo, bw)) => {
                    if s == Scheduler::Lc {
                        overhead < bo
                    } else {
                        bo * weight > overhead * bw
                    }
                }
            };
            if better {
                best = Some((real.real_id, overhead, weight));
            }
        }
        best.map(|b| b.0)
    }
}
