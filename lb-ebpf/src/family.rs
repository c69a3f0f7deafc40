//! The per-address-family parts of the balancer: key layouts, their maps and hashes. IPv4 and
//! IPv6 keep separate maps so IPv4 keys stay small (cheaper to hash on every packet).

use lb_common::{
    hash,
    keys::{Flow4Key, Flow6Key, Persist4Key, Persist6Key, Vip4Key, Vip6Key},
    values::{FlowEntry, PersistEntry, VipMeta},
};

use crate::{
    maps::{FLOWS4, FLOWS6, PERSIST4, PERSIST6, VIPS4, VIPS6},
    parse::Packet,
};

pub trait Family {
    type FlowKey;
    type PersistKey;

    fn vip(packet: &Packet) -> Option<*const VipMeta>;
    fn flow_key(packet: &Packet) -> Self::FlowKey;
    fn flow(key: &Self::FlowKey) -> Option<*mut FlowEntry>;
    fn insert_flow(key: &Self::FlowKey, entry: &FlowEntry);
    fn flow_hash(key: &Self::FlowKey) -> u32;
    fn addr_hash(addr: &[u8; 16]) -> u32;
    fn persist_key(packet: &Packet, mask: &[u8; 16], vip_index: u32) -> Self::PersistKey;
    fn persist(key: &Self::PersistKey) -> Option<*mut PersistEntry>;
    fn insert_persist(key: &Self::PersistKey, entry: &PersistEntry);
}

pub struct V4;
pub struct V6;

#[inline(always)]
fn addr4(a: &[u8; 16]) -> [u8; 4] {
    [a[0], a[1], a[2], a[3]]
}

impl Family for V4 {
    type FlowKey = Flow4Key;
    type PersistKey = Persist4Key;

    #[inline(always)]
    fn vip(p: &Packet) -> Option<*const VipMeta> {
        let key = Vip4Key {
            addr: addr4(&p.dst),
            port: p.dport,
            proto: p.proto,
            _pad: 0,
        };
        VIPS4.get_ptr(key)
    }

    #[inline(always)]
    fn flow_key(p: &Packet) -> Flow4Key {
        Flow4Key {
            src: addr4(&p.src),
            dst: addr4(&p.dst),
            sport: p.sport,
            dport: p.dport,
            proto: p.proto,
            _pad: [0; 3],
        }
    }

    #[inline(always)]
    fn flow(key: &Flow4Key) -> Option<*mut FlowEntry> {
        FLOWS4.get_ptr_mut(key)
    }

    #[inline(always)]
    fn insert_flow(key: &Flow4Key, entry: &FlowEntry) {
        // A full table evicts its least recently used flow; an error leaves this flow to be
        // placed again by the consistent-hash table on its next packet.
        let _ = FLOWS4.insert(key, entry, 0);
    }

    #[inline(always)]
    fn flow_hash(key: &Flow4Key) -> u32 {
        hash::flow4(key)
    }

    #[inline(always)]
    fn addr_hash(addr: &[u8; 16]) -> u32 {
        hash::addr4(addr4(addr))
    }

    #[inline(always)]
    fn persist_key(p: &Packet, mask: &[u8; 16], vip_index: u32) -> Persist4Key {
        Persist4Key {
            client: [
                p.src[0] & mask[0],
                p.src[1] & mask[1],
                p.src[2] & mask[2],
                p.src[3] & mask[3],
            ],
            vip_index,
        }
    }

    #[inline(always)]
    fn persist(key: &Persist4Key) -> Option<*mut PersistEntry> {
        PERSIST4.get_ptr_mut(key)
    }

    #[inline(always)]
    fn insert_persist(key: &Persist4Key, entry: &PersistEntry) {
        let _ = PERSIST4.insert(key, entry, 0);
    }
}

impl Family for V6 {
    type FlowKey = Flow6Key;
    type PersistKey = Persist6Key;

    #[inline(always)]
    fn vip(p: &Packet) -> Option<*const VipMeta> {
        let key = Vip6Key {
            addr: p.dst,
            port: p.dport,
            proto: p.proto,
            _pad: 0,
        };
        VIPS6.get_ptr(key)
    }

    #[inline(always)]
    fn flow_key(p: &Packet) -> Flow6Key {
        Flow6Key {
            src: p.src,
            dst: p.dst,
            sport: p.sport,
            dport: p.dport,
            proto: p.proto,
            _pad: [0; 3],
        }
    }

    #[inline(always)]
    fn flow(key: &Flow6Key) -> Option<*mut FlowEntry> {
        FLOWS6.get_ptr_mut(key)
    }

    #[inline(always)]
    fn insert_flow(key: &Flow6Key, entry: &FlowEntry) {
        let _ = FLOWS6.insert(key, entry, 0);
    }

    #[inline(always)]
    fn flow_hash(key: &Flow6Key) -> u32 {
        hash::flow6(key)
    }

    #[inline(always)]
    fn addr_hash(addr: &[u8; 16]) -> u32 {
        hash::addr6(addr)
    }

    #[inline(always)]
    fn persist_key(p: &Packet, mask: &[u8; 16], vip_index: u32) -> Persist6Key {
        let mut client = [0u8; 16];
        for i in 0..16 {
            client[i] = p.src[i] & mask[i];
        }
        Persist6Key { client, vip_index }
    }

    #[inline(always)]
    fn persist(key: &Persist6Key) -> Option<*mut PersistEntry> {
        PERSIST6.get_ptr_mut(key)
    }

    #[inline(always)]
    fn insert_persist(key: &Persist6Key, entry: &PersistEntry) {
        let _ = PERSIST6.insert(key, entry, 0);
    }
}
