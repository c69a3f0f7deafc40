//! Where each real is, from the kernel's own routing and neighbour tables (rtnetlink): the egress
//! interface, the MAC to send to (the real's, or its gateway's, exactly as the kernel would), and
//! the interface's MAC. An unknown neighbour is resolved by the kernel on our request; the
//! backend asks again on its next refresh.
//!
//! A route through an 802.1Q VLAN device (`trunk.10`) is sent by the program out of the device's
//! parent (the trunk, where it is attached) with the VLAN's tag; the neighbour and the source
//! MAC are the VLAN device's, as the kernel's own frames to the real would have them. Paths the
//! program cannot send (stacked VLANs, 802.1ad, a parent in another namespace) leave the real
//! unused, with the reason in the log, rather than sent without its tags.

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
    link::{
        InfoData, InfoKind, InfoVlan, LinkAttribute, LinkInfo, LinkMessage, LinkXdp, VlanProtocol,
        XdpAttached,
    },
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
    /// ifindex → what we need of the interface.
    links: HashMap<u32, Link>,
    /// Interfaces the program is attached to: a route through one of them leaves as it is, even
    /// when it is a VLAN device (its frames are untagged there).
    attached: Vec<u32>,
}

/// What the paths need of an interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Link {
    mac: Option<[u8; 6]>,
    mtu: Option<u32>,
    /// Set for a VLAN device.
    vlan: Option<VlanLink>,
}

/// A VLAN device: where it sends, with which tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct VlanLink {
    /// The device its tagged frames go out of (IFLA_LINK).
    parent: u32,
    id: u16,
    /// An 802.1ad (service) tag rather than 802.1Q.
    ad: bool,
    /// The parent is in another network namespace (IFLA_LINK_NETNSID): its ifindex means
    /// nothing here.
    parent_elsewhere: bool,
}

/// What `message` (an RTM_NEWLINK) says about its interface.
fn link_of(message: &LinkMessage) -> Link {
    let mut link = Link::default();
    let (mut is_vlan, mut parent, mut id, mut ad, mut parent_elsewhere) =
        (false, None, None, false, false);
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::Address(a) if a.len() == 6 => {
                link.mac = Some([a[0], a[1], a[2], a[3], a[4], a[5]]);
            }
            LinkAttribute::Mtu(mtu) => link.mtu = Some(*mtu),
            LinkAttribute::Link(p) => parent = Some(*p),
            LinkAttribute::LinkNetNsId(_) => parent_elsewhere = true,
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(InfoKind::Vlan) => is_vlan = true,
                        LinkInfo::Data(InfoData::Vlan(data)) => {
                            for d in data {
                                match d {
                                    InfoVlan::Id(v) => id = Some(*v),
                                    InfoVlan::Protocol(p) => ad = *p == VlanProtocol::Ieee8021Ad,
                                    _ => {}
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if let (true, Some(parent), Some(id)) = (is_vlan, parent, id) {
        link.vlan = Some(VlanLink {
            parent,
            id,
            ad,
            parent_elsewhere,
        });
    }
    link
}

/// The interface and VLAN id the program sends on for a route out of `oif`, or why it cannot.
fn egress(
    links: &HashMap<u32, Link>,
    attached: &[u32],
    oif: u32,
) -> Result<(u32, u16), &'static str> {
    if attached.contains(&oif) {
        return Ok((oif, 0));
    }
    let Some(vlan) = links.get(&oif).and_then(|l| l.vlan) else {
        return Ok((oif, 0));
    };
    if vlan.ad {
        return Err(
            "its route leaves through an 802.1ad VLAN device, and the XDP program sends only 802.1Q tags",
        );
    }
    if vlan.parent_elsewhere {
        return Err(
            "its route leaves through a VLAN device whose parent is in another network namespace",
        );
    }
    if links.get(&vlan.parent).is_some_and(|p| p.vlan.is_some()) {
        return Err(
            "its route leaves through a VLAN device on another VLAN device (stacked tags), and the XDP program sends one tag at most",
        );
    }
    Ok((vlan.parent, vlan.id))
}

impl KernelPaths {
    /// `attached`: the interfaces the program is attached to.
    pub fn new(attached: Vec<u32>) -> io::Result<KernelPaths> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&NetlinkAddr::new(0, 0))?;
        let mut paths = KernelPaths {
            socket,
            sequence: 0,
            neighbours: HashMap::new(),
            links: HashMap::new(),
            attached,
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
        let mut links = HashMap::new();
        for message in self.request(RouteNetlinkMessage::GetLink(LinkMessage::default()), true)? {
            if let RouteNetlinkMessage::NewLink(l) = message {
                links.insert(l.header.index, link_of(&l));
            }
        }
        self.neighbours = neighbours;
        self.links = links;
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

/// Any address and port of `addr`'s family, to bind a socket that talks to it.
fn any_port_of_family(addr: IpAddr) -> SocketAddr {
    match addr {
        IpAddr::V4(_) => "0.0.0.0:0".parse().expect("literal"),
        IpAddr::V6(_) => "[::]:0".parse().expect("literal"),
    }
}

/// The address the kernel sends from towards `addr` (its route's preferred source, or its
/// choice among the egress interface's addresses): a connected UDP socket knows it without
/// sending anything.
fn source_towards(addr: IpAddr) -> Option<IpAddr> {
    let socket = UdpSocket::bind(any_port_of_family(addr)).ok()?;
    socket.connect(SocketAddr::new(addr, DISCARD_PORT)).ok()?;
    Some(socket.local_addr().ok()?.ip())
}

/// Makes the kernel resolve `next_hop`'s MAC: any datagram towards it starts ARP or neighbour
/// discovery, and the reply fills the neighbour table we read.
fn trigger_resolution(next_hop: IpAddr) {
    if let Ok(socket) = UdpSocket::bind(any_port_of_family(next_hop)) {
        let _ = socket.send_to(&[], SocketAddr::new(next_hop, DISCARD_PORT));
    }
}

impl Paths for KernelPaths {
    fn path(&mut self, addr: IpAddr) -> RealPath {
        match self.route(addr) {
            Ok(Route::Local) => RealPath::Local,
            Ok(Route::Via {
                ifindex: oif,
                next_hop,
            }) => {
                let (ifindex, vlan) = match egress(&self.links, &self.attached, oif) {
                    Ok(egress) => egress,
                    Err(why) => return RealPath::Unsupported(why),
                };
                // The neighbour and source MAC of the route's own interface (a VLAN device's,
                // not its parent's), as the kernel would send.
                match (
                    self.neighbours.get(&(oif, next_hop)),
                    self.links.get(&oif).and_then(|l| l.mac),
                ) {
                    (Some(&mac), Some(src_mac)) => RealPath::Neighbour {
                        ifindex,
                        mac,
                        src_mac,
                        vlan,
                        // An unknown MTU is Ethernet's; no link carries more than 64 KiB.
                        mtu: self
                            .links
                            .get(&oif)
                            .and_then(|l| l.mtu)
                            .map_or(1500, |m| m.min(65535) as u16),
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

#[cfg(test)]
mod tests {
    use super::*;

    const TRUNK: u32 = 2;
    const VLAN10: u32 = 10;
    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 10];

    fn vlan_message(index: u32, parent: u32, id: u16, protocol: VlanProtocol) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes.push(LinkAttribute::Address(MAC.to_vec()));
        m.attributes.push(LinkAttribute::Link(parent));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Vlan),
            LinkInfo::Data(InfoData::Vlan(vec![
                InfoVlan::Id(id),
                InfoVlan::Protocol(protocol),
            ])),
        ]));
        m
    }

    fn vlan(parent: u32, id: u16) -> Link {
        Link {
            mac: Some(MAC),
            mtu: None,
            vlan: Some(VlanLink {
                parent,
                id,
                ad: false,
                parent_elsewhere: false,
            }),
        }
    }

    #[test]
    fn a_vlan_device_is_read_with_its_parent_and_id() {
        let link = link_of(&vlan_message(VLAN10, TRUNK, 10, VlanProtocol::Ieee8021Q));
        assert_eq!(link, vlan(TRUNK, 10));
        let ad = link_of(&vlan_message(VLAN10, TRUNK, 10, VlanProtocol::Ieee8021Ad));
        assert!(ad.vlan.is_some_and(|v| v.ad));
    }

    #[test]
    fn a_plain_interface_has_no_vlan() {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::Address(MAC.to_vec()));
        m.attributes.push(LinkAttribute::Mtu(9000));
        // A veth names its peer in IFLA_LINK too: only the kind makes a VLAN.
        m.attributes.push(LinkAttribute::Link(7));
        m.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Veth,
            )]));
        assert_eq!(
            link_of(&m),
            Link {
                mac: Some(MAC),
                mtu: Some(9000),
                vlan: None
            }
        );
    }

    #[test]
    fn a_route_through_a_vlan_device_leaves_from_its_parent_with_its_tag() {
        let links = HashMap::from([(TRUNK, Link::default()), (VLAN10, vlan(TRUNK, 10))]);
        assert_eq!(egress(&links, &[TRUNK], VLAN10), Ok((TRUNK, 10)));
        assert_eq!(egress(&links, &[TRUNK], TRUNK), Ok((TRUNK, 0)));
    }

    #[test]
    fn a_vlan_device_the_program_is_attached_to_sends_untagged() {
        let links = HashMap::from([(TRUNK, Link::default()), (VLAN10, vlan(TRUNK, 10))]);
        assert_eq!(egress(&links, &[VLAN10], VLAN10), Ok((VLAN10, 0)));
    }

    #[test]
    fn paths_the_program_cannot_tag_are_refused() {
        let stacked = HashMap::from([
            (TRUNK, Link::default()),
            (VLAN10, vlan(TRUNK, 100)),
            (11, vlan(VLAN10, 10)),
        ]);
        assert!(egress(&stacked, &[TRUNK], 11).is_err_and(|why| why.contains("stacked")));
        let mut ad = vlan(TRUNK, 10);
        ad.vlan.as_mut().unwrap().ad = true;
        let links = HashMap::from([(TRUNK, Link::default()), (VLAN10, ad)]);
        assert!(egress(&links, &[TRUNK], VLAN10).is_err_and(|why| why.contains("802.1ad")));
        let mut elsewhere = vlan(TRUNK, 10);
        elsewhere.vlan.as_mut().unwrap().parent_elsewhere = true;
        let links = HashMap::from([(VLAN10, elsewhere)]);
        assert!(egress(&links, &[], VLAN10).is_err_and(|why| why.contains("namespace")));
    }
}
