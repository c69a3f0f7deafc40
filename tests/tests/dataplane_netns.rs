//! The XDP backend on a real interface, in network namespaces: the balancer attached in native
//! mode to the director's veth, real paths resolved from the kernel's neighbour table, a frame
//! to the VIP entering the director and leaving towards the chosen real's MAC; and a restarted
//! backend that reuses the pinned program and maps, so an established flow keeps its real.

use std::{path::PathBuf, time::Duration};

use aya::{
    maps::{Array, Map, MapData},
    programs::{Xdp, XdpMode},
};
use lb_common::values::{VIP_FILTER_WORDS, VipFilter};
use xdirectord::{
    backend::{
        Backend,
        xdp::{Capacity, XdpBackend, XdpMode as Mode, XdpOptions, pin_dir},
    },
    objects,
    table::{DesiredTable, Forwarding, Protocol, Real, Service, ServiceAttrs, ServiceKey},
};
use xdirectord_tests::{
    netns::{NetNs, PacketSocket},
    packet::{ACK, Frame, SYN},
};

const VIP: &str = "10.99.0.100";
const REAL_A: &str = "10.99.0.11";
const REAL_B: &str = "10.99.0.12";
const MAC_A: [u8; 6] = [0x02, 0, 0x0a, 0x63, 0, 0x0b];
const MAC_B: [u8; 6] = [0x02, 0, 0x0a, 0x63, 0, 0x0c];

/// Removes the pins of a test's configuration even when the test fails.
struct Pins(PathBuf);

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn mac(ns: &NetNs, interface: &str) -> [u8; 6] {
    let text = ns.ip(&["-br", "link", "show", interface]);
    let field = text.split_whitespace().nth(2).expect("MAC field");
    let bytes: Vec<u8> = field
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    bytes.try_into().unwrap()
}

fn table(weights: [u32; 2]) -> DesiredTable {
    let real = |addr: &str, weight| Real {
        addr: addr.parse().unwrap(),
        port: 80,
        forward: Forwarding::Gate,
        weight,
        upper_threshold: 0,
        lower_threshold: 0,
    };
    let mut t = DesiredTable::default();
    t.services.insert(
        ServiceKey::Inet {
            protocol: Protocol::Tcp,
            addr: VIP.parse().unwrap(),
            port: 80,
        },
        Service {
            attrs: ServiceAttrs {
                scheduler: "wrr".into(),
                persistence: None,
                ..ServiceAttrs::default()
            },
            reals: vec![real(REAL_A, weights[0]), real(REAL_B, weights[1])],
            fallback: None,
        },
    );
    t
}

#[test]
fn a_frame_to_the_vip_leaves_towards_the_real_in_native_mode_and_survives_a_restart() {
    let director = NetNs::new("xdt-dir");
    let wire = NetNs::new("xdt-wire");
    let config_name = format!("xdt-netns-{}", std::process::id());
    let _pins = Pins(pin_dir(&config_name).unwrap());

    director.ip(&[
        "link", "add", "d0", "type", "veth", "peer", "name", "w0", "netns", &wire.name,
    ]);
    director.ip(&["addr", "add", "10.99.0.2/24", "dev", "d0"]);
    director.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "d0"]);
    director.ip(&["link", "set", "d0", "up"]);
    wire.ip(&["link", "set", "w0", "up"]);
    for (addr, mac) in [(REAL_A, MAC_A), (REAL_B, MAC_B)] {
        let mac = mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        director.ip(&[
            "neigh",
            "add",
            addr,
            "lladdr",
            &mac,
            "dev",
            "d0",
            "nud",
            "permanent",
        ]);
    }
    let d0_mac = mac(&director, "d0");

    // The far end must run XDP to receive what the balancer transmits (a veth rule).
    wire.enter();
    let mut pass = aya::Ebpf::load(objects::PASS).unwrap();
    let prog: &mut Xdp = pass
        .program_mut(objects::PASS_PROGRAM)
        .unwrap()
        .try_into()
        .unwrap();
    prog.load().unwrap();
    prog.attach("w0", XdpMode::Driver).unwrap();
    let socket = PacketSocket::open("w0");

    director.enter();
    let options = XdpOptions {
        config_name: config_name.clone(),
        interfaces: vec!["d0".into()],
        mode: Mode::Native,
        tunnel_source: Vec::new(),
        capacity: Capacity {
            flows: xdirectord_tests::harness::TEST_FLOWS,
            ..Capacity::default()
        },
    };
    let mut backend = XdpBackend::open(&options).expect("open");
    xdirectord_tests::table::apply(&mut backend, &table([1, 1]));
    let link = director.ip(&["link", "show", "d0"]);
    assert!(
        link.contains(" xdp ") || link.contains("prog/xdp"),
        "not native: {link}"
    );
    assert!(!link.contains("xdpgeneric"), "generic: {link}");

    wire.enter();
    let send_and_catch = |flags: u8, sport: u16| -> [u8; 6] {
        let mut frame = Frame::tcp("10.99.0.50", sport, VIP, 80, flags);
        frame.dst_mac = d0_mac;
        let bytes = frame.bytes();
        socket.send(&bytes);
        let out = socket
            .receive(Duration::from_secs(5), |f| {
                f.len() == bytes.len() && f[12..] == bytes[12..]
            })
            .expect("the frame did not come back from the director");
        assert_eq!(&out[6..12], &d0_mac, "source MAC is the director's");
        out[..6].try_into().unwrap()
    };
    // wrr with equal weights: the first real, then the second.
    assert_eq!(send_and_catch(SYN, 40000), MAC_A);
    assert_eq!(send_and_catch(SYN, 40001), MAC_B);
    assert_eq!(send_and_catch(ACK, 40000), MAC_A);

    // Restart: drop the backend without a clean stop and open it again. The pinned program
    // keeps running and the flow table is reused (whatever maxflows now says): the established
    // flow stays on REAL_A even though REAL_A now takes no new flows.
    director.enter();
    let program_before = director.ip(&["link", "show", "d0"]);
    drop(backend);
    // A VIP filter from a build that hashes another way, as far as this one can tell: empty.
    let pinned = pin_dir(&config_name).unwrap().join("VIP_FILTER");
    let mut filter: Array<MapData, VipFilter> =
        Array::try_from(Map::Array(MapData::from_pin(&pinned).expect("VIP_FILTER"))).unwrap();
    filter
        .set(
            0,
            VipFilter {
                bits: [0; VIP_FILTER_WORDS],
            },
            0,
        )
        .unwrap();
    // Larger capacities: the pinned maps (and the flows they hold) are kept, at their size.
    let larger = XdpOptions {
        capacity: Capacity {
            flows: options.capacity.flows * 4,
            templates: options.capacity.templates * 2,
            virtuals: options.capacity.virtuals * 2,
            reals: options.capacity.reals * 2,
        },
        ..options.clone()
    };
    let mut backend = XdpBackend::open(&larger).expect("reopen");
    let tables = backend.dataplane().flow_tables().unwrap();
    assert_eq!(tables.ipv4.capacity, u64::from(options.capacity.flows));
    assert_eq!(
        tables.ipv4.entries, 2,
        "the two flows are still in the table"
    );
    // What the previous agent left reads back as what it applied.
    assert_eq!(backend.held().expect("held"), table([1, 1]));
    // The agent refreshes every second from its start, also while it holds off its first apply
    // until its reals are checked: meanwhile what the previous agent left keeps forwarding.
    backend.refresh(None).expect("refresh");
    let live = backend.dataplane().live().unwrap();
    assert_eq!(
        live.iter().map(|s| s.reals.len()).collect::<Vec<_>>(),
        [2],
        "a refresh before the first apply changed the table: {live:?}"
    );
    wire.enter();
    assert_eq!(
        send_and_catch(ACK, 40000),
        MAC_A,
        "before the first apply, with the VIP filter rebuilt at start"
    );
    director.enter();
    xdirectord_tests::table::apply(&mut backend, &table([0, 1]));
    assert_eq!(
        director.ip(&["link", "show", "d0"]),
        program_before,
        "the same program stays attached"
    );
    wire.enter();
    assert_eq!(send_and_catch(ACK, 40000), MAC_A, "established flow moved");
    assert_eq!(
        send_and_catch(SYN, 40002),
        MAC_B,
        "a new flow went to a quiescent real"
    );

    // The counters come back from the maps.
    director.enter();
    let live = backend.dataplane().live().unwrap();
    assert_eq!(live[0].stats.in_packets, 6);
    assert_eq!(live[0].stats.conns, 3);

    // A clean stop: nothing left to forward, then the agent exits.
    xdirectord_tests::table::apply(&mut backend, &DesiredTable::default());
    backend.shutdown().expect("shutdown");
    assert!(
        !pin_dir(&config_name).unwrap().exists(),
        "pins left after a clean stop"
    );
    let link = director.ip(&["link", "show", "d0"]);
    assert!(
        !link.contains("prog/xdp"),
        "still attached after a clean stop: {link}"
    );
}

/// A link pinned for an interface that was deleted and made again (a lab torn down and built
/// again, a NIC re-probed) no longer works: a new agent attaches afresh instead of failing.
#[test]
fn a_pinned_link_whose_interface_was_made_again_is_replaced() {
    let director = NetNs::new("xdt-relink");
    let config_name = format!("xdt-relink-{}", std::process::id());
    let _pins = Pins(pin_dir(&config_name).unwrap());
    let make_veth = || {
        director.ip(&["link", "add", "d0", "type", "veth", "peer", "name", "d1"]);
        director.ip(&["link", "set", "d0", "up"]);
    };
    make_veth();
    director.enter();
    let options = XdpOptions {
        config_name: config_name.clone(),
        interfaces: vec!["d0".into()],
        mode: Mode::Native,
        tunnel_source: Vec::new(),
        capacity: Capacity {
            flows: xdirectord_tests::harness::TEST_FLOWS,
            ..Capacity::default()
        },
    };
    drop(XdpBackend::open(&options).expect("open"));
    director.ip(&["link", "del", "d0"]);
    make_veth();
    let mut backend = XdpBackend::open(&options).expect("open after the interface came back");
    let link = director.ip(&["link", "show", "d0"]);
    assert!(link.contains("prog/xdp"), "not attached: {link}");
    xdirectord_tests::table::apply(&mut backend, &DesiredTable::default());
    backend.shutdown().expect("shutdown");
}
