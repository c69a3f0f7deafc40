//! Keys of the hash maps, 4-byte aligned so the program builds and copies them a word at a time.
//! Addresses are in network byte order (as on the wire); ports and
//! everything else in host byte order, so that `bpftool map dump` prints them as people read them.

/// A virtual service, IPv4.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Vip4Key {
    /// Network byte order.
    pub addr: [u8; 4],
    pub port: u16,
    /// IPPROTO_TCP or IPPROTO_UDP (a whole u16: no padding byte for the program to zero).
    pub proto: u16,
}

/// A virtual service, IPv6.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Vip6Key {
    /// Network byte order.
    pub addr: [u8; 16],
    pub port: u16,
    pub proto: u16,
}

/// A flow (client → VIP), IPv4.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flow4Key {
    /// Client address, network byte order.
    pub src: [u8; 4],
    /// VIP, network byte order.
    pub dst: [u8; 4],
    pub sport: u16,
    pub dport: u16,
    /// IPPROTO_TCP or IPPROTO_UDP (a whole u32: no padding bytes for the program to zero).
    pub proto: u32,
}

/// A flow (client → VIP), IPv6.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flow6Key {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    /// IPPROTO_TCP or IPPROTO_UDP (a whole u32: no padding bytes for the program to zero).
    pub proto: u32,
}

/// A persistence template: the client address under the VIP's netmask, and the VIP.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Persist4Key {
    /// Masked client address, network byte order.
    pub client: [u8; 4],
    /// [`crate::values::VipMeta::index`] of the virtual service.
    pub vip_index: u32,
}

/// A persistence template, IPv6.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Persist6Key {
    pub client: [u8; 16],
    pub vip_index: u32,
}

/// A fragmented datagram, IPv4: what every fragment of it carries.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Frag4Key {
    /// Network byte order.
    pub src: [u8; 4],
    /// Network byte order.
    pub dst: [u8; 4],
    /// The IP header's identification (16 bits, host byte order).
    pub id: u32,
    /// The IP header's protocol (a whole u32: no padding bytes for the program to zero).
    pub proto: u32,
}

/// A fragmented datagram, IPv6.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Frag6Key {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// The fragment header's identification (host byte order).
    pub id: u32,
    /// The fragment header's next header.
    pub proto: u32,
}
