//! Where each real is, from the kernel's own routing and neighbour tables (rtnetlink): the egress
//! interface, the MAC to send to (the real's, or its gateway's, exactly as the kernel would), and
//! the interface's MAC. An unknown neighbour is resolved by the kernel on our request; the
//! backend asks again on its next refresh.

use std::{
    collections::HashMap,
    io,
    net::{IpAddr, SocketAddr, UdpSocket},
};

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    link::{LinkAttribute, LinkMessage, LinkXdp, XdpAttached},
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState},
    route::{RouteAddress, RouteAttribute, RouteMessage, RouteType},
};
use netlink_sys::{Socket, SocketAddr as NetlinkAddr, protocols::NETLINK_ROUTE};

use super::dataplane::{Paths, RealPath};

/// Port of the datagram that makes the kernel resolve a neighbour: "discard".
const DISCARD_PORT: u16 = 9;

/// An XDP program attached to an interface, as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct XdpAttachment {
    pub interface: String,
    /// `native`, `generic`, `offload` or `multiple`.
    pub mode: &'static str,
    /// The program's id (`bpftool prog show id N`).
    pub program: u32,
}

/// The kernel's view of where reals are, read over rtnetlink.
pub struct KernelPaths {
    socket: Socket,
    sequence: u32,
    /// (ifindex, address) → MAC, usable entries only.
    neighbours: HashMap<(u32, IpAddr), [u8; 6]>,
    /// ifindex → the interface's MAC.
    link_macs: HashMap<u32, [u8; 6]>,
    /// ifindex → the interface's MTU.
    link_mtus: HashMap<u32, u32>,
}

impl KernelPaths {
    pub fn new() -> io::Result<KernelPaths> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&NetlinkAddr::new(0, 0))?;
        let mut paths = KernelPaths {
            socket,
            sequence: 0,
            neighbours: HashMap::new(),
            link_macs: HashMap::new(),
            link_mtus: HashMap::new(),
        };
        paths.refresh()?;
        Ok(paths)
    }

    /// Reads the neighbour and link tables again (call before an apply).
    pub fn refresh(&mut self) -> io::Result<()> {
        let mut neighbours = HashMap::new();
        for message in self.request(
            RouteNetlinkMessage::GetNeighbour(NeighbourMessage::default()),
            true,
        )? {
            let RouteNetlinkMessage::NewNeighbour(n) = message else {
                continue;
            };
            let usable = matches!(
                n.header.state,
                NeighbourState::Reachable
                    | NeighbourState::Stale
                    | NeighbourState::Delay
                    | NeighbourState::Probe
                    | NeighbourState::Permanent
                    | NeighbourState::Noarp
            );
            let mut addr = None;
            let mut mac = None;
            for attribute in &n.attributes {
                match attribute {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                        addr = Some(IpAddr::V4(*a))
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                        addr = Some(IpAddr::V6(*a))
                    }
                    NeighbourAttribute::LinkLayerAddress(l) if l.len() == 6 => {
                        mac = Some([l[0], l[1], l[2], l[3], l[4], l[5]]);
                    }
                    _ => {}
                }
            }
            if let (true, Some(addr), Some(mac)) = (usable, addr, mac) {
                neighbours.insert((n.header.ifindex, addr), mac);
            }
        }
        let mut link_macs = HashMap::new();
        let mut link_mtus = HashMap::new();
        for message in self.request(RouteNetlinkMessage::GetLink(LinkMessage::default()), true)? {
            let RouteNetlinkMessage::NewLink(l) = message else {
                continue;
            };
            for attribute in &l.attributes {
                match attribute {
                    LinkAttribute::Address(a) if a.len() == 6 => {
                        link_macs.insert(l.header.index, [a[0], a[1], a[2], a[3], a[4], a[5]]);
                    }
                    LinkAttribute::Mtu(mtu) => {
                        link_mtus.insert(l.header.index, *mtu);
                    }
                    _ => {}
                }
            }
        }
        self.neighbours = neighbours;
        self.link_macs = link_macs;
        self.link_mtus = link_mtus;
        Ok(())
    }

    /// Every interface with an XDP program: its name, how the program is attached, and the
    /// program's id.
    pub fn xdp_attachments(&mut self) -> io::Result<Vec<XdpAttachment>> {
        let mut found = Vec::new();
        for message in self.request(RouteNetlinkMessage::GetLink(LinkMessage::default()), true)? {
            let RouteNetlinkMessage::NewLink(l) = message else {
                continue;
            };
            let mut name = None;
            let (mut mode, mut program) = (None, 0);
            for attribute in &l.attributes {
                match attribute {
                    LinkAttribute::IfName(n) => name = Some(n.clone()),
                    LinkAttribute::Xdp(xdp) => {
                        for x in xdp {
                            match x {
                                LinkXdp::Attached(XdpAttached::Driver) => mode = Some("native"),
                                LinkXdp::Attached(XdpAttached::SocketBuffer) => {
                                    mode = Some("generic")
                                }
                                LinkXdp::Attached(XdpAttached::Hardware) => mode = Some("offload"),
                                LinkXdp::Attached(XdpAttached::Multiple) => mode = Some("multiple"),
                                LinkXdp::ProgId(id) => program = *id,
                                _ => {}
                            }
                        }
                    }
                    _ => {}
                }
            }
            if let (Some(interface), Some(mode)) = (name, mode) {
                found.push(XdpAttachment {
                    interface,
                    mode,
                    program,
                });
            }
        }
        Ok(found)
    }

    /// The kernel's route to `addr`: whether it is local, else the interface and gateway.
    fn route(&mut self, addr: IpAddr) -> io::Result<Route> {
        let mut message = RouteMessage::default();
        message.header.address_family = match addr {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        message.header.destination_prefix_length = if addr.is_ipv4() { 32 } else { 128 };
        message
            .attributes
            .push(RouteAttribute::Destination(RouteAddress::from(addr)));
        let replies = self.request(RouteNetlinkMessage::GetRoute(message), false)?;
        let Some(RouteNetlinkMessage::NewRoute(route)) = replies.into_iter().next() else {
            return Ok(Route::None);
        };
        if route.header.kind == RouteType::Local {
            return Ok(Route::Local);
        }
        let mut oif = None;
        let mut gateway = None;
        for attribute in &route.attributes {
            match attribute {
                RouteAttribute::Oif(i) => oif = Some(*i),
                RouteAttribute::Gateway(RouteAddress::Inet(a)) => gateway = Some(IpAddr::V4(*a)),
                RouteAttribute::Gateway(RouteAddress::Inet6(a)) => gateway = Some(IpAddr::V6(*a)),
                _ => {}
            }
        }
        Ok(match (route.header.kind, oif) {
            (RouteType::Unicast, Some(ifindex)) => Route::Via {
                ifindex,
                next_hop: gateway.unwrap_or(addr),
            },
            _ => Route::None,
        })
    }

    fn request(
        &mut self,
        message: RouteNetlinkMessage,
        dump: bool,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { 0 };
        header.sequence_number = self.sequence;
        let mut request = NetlinkMessage::new(header, NetlinkPayload::from(message));
        request.finalize();
        let mut buffer = vec![0; request.header.length as usize];
        request.serialize(&mut buffer);
        self.socket.send(&buffer, 0)?;

        let mut replies = Vec::new();
        let mut receive = vec![0u8; 1 << 16];
        loop {
            let size = self.socket.recv(&mut &mut receive[..], 0)?;
            let mut offset = 0;
            while offset < size {
                let reply: NetlinkMessage<RouteNetlinkMessage> =
                    NetlinkMessage::deserialize(&receive[offset..size])
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let length = reply.header.length as usize;
                if reply.header.sequence_number == self.sequence {
                    match reply.payload {
                        NetlinkPayload::Done(_) => return Ok(replies),
                        NetlinkPayload::Error(e) => {
                            return match e.code {
                                // A route lookup for an unreachable address fails; that is an
                                // answer, not an error.
                                Some(code) if !dump => {
                                    let _ = code;
                                    Ok(replies)
                                }
                                Some(_) => Err(e.to_io()),
                                None => Ok(replies),
                            };
                        }
                        NetlinkPayload::InnerMessage(inner) => {
                            replies.push(inner);
                            if !dump {
                                return Ok(replies);
                            }
                        }
                        _ => {}
                    }
                }
                if length == 0 {
                    break;
                }
                offset += length;
            }
        }
    }
}

enum Route {
    Local,
    Via { ifindex: u32, next_hop: IpAddr },
    None,
}

/// The address the kernel sends from towards `addr` (its route's preferred source, or its
/// choice among the egress interface's addresses): a connected UDP socket knows it without
/// sending anything.
fn source_towards(addr: IpAddr) -> Option<IpAddr> {
    let bind: SocketAddr = match addr {
        IpAddr::V4(_) => "0.0.0.0:0".parse().expect("literal"),
        IpAddr::V6(_) => "[::]:0".parse().expect("literal"),
    };
    let socket = UdpSocket::bind(bind).ok()?;
    socket.connect(SocketAddr::new(addr, DISCARD_PORT)).ok()?;
    Some(socket.local_addr().ok()?.ip())
}

/// Makes the kernel resolve `next_hop`'s MAC: any datagram towards it starts ARP or neighbour
/// discovery, and the reply fills the neighbour table we read.
fn trigger_resolution(next_hop: IpAddr) {
    let bind: SocketAddr = match next_hop {
        IpAddr::V4(_) => "0.0.0.0:0".parse().expect("literal"),
        IpAddr::V6(_) => "[::]:0".parse().expect("literal"),
    };
    if let Ok(socket) = UdpSocket::bind(bind) {
        let _ = socket.send_to(&[], SocketAddr::new(next_hop, DISCARD_PORT));
    }
}

impl Paths for KernelPaths {
    fn path(&mut self, addr: IpAddr) -> RealPath {
        match self.route(addr) {
            Ok(Route::Local) => RealPath::Local,
            Ok(Route::Via { ifindex, next_hop }) => {
                match (
                    self.neighbours.get(&(ifindex, next_hop)),
                    self.link_macs.get(&ifindex),
                ) {
                    (Some(&mac), Some(&src_mac)) => RealPath::Neighbour {
                        ifindex,
                        mac,
                        src_mac,
                        // Jumbo frames beyond 64 KiB do not exist; an unknown MTU is Ethernet's.
                        mtu: self.link_mtus.get(&ifindex).map_or(1500, |&m| m.min(65535) as u16),
                        source: source_towards(addr),
                    },
                    _ => {
                        trigger_resolution(next_hop);
                        RealPath::Unresolved
                    }
                }
            }
            Ok(Route::None) | Err(_) => RealPath::Unresolved,
        }
    }
}
