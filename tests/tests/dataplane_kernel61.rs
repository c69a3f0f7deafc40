//! The XDP program on the oldest kernel the project supports: Debian 12's 6.1, in the test guest
//! (docs/ipvs-vm.md). Its verifier predates much of this machine's (bounds through XOR, callback
//! handling, state pruning), so a program this machine accepts may still be refused there. The
//! test runs its own binary in the guest, which loads the balancer through the real backend code
//! and sends it a SYN, an ICMP error about the flow, and a fragmented datagram.

use std::time::Duration;

use xdirectord::{
    backend::xdp::RealPath,
    table::{DesiredTable, Protocol},
};
use xdirectord_tests::{
    harness::{Harness, XDP_PASS, XDP_TX},
    packet::{ACK, DIRECTOR_MAC, Frame, L4, SYN},
    table::{key, mac_of, service},
    vm::Vm,
};

/// Set in the guest: the test binary is running there, and does the packet work.
const IN_GUEST: &str = "XDIRECTORD_IN_GUEST";
const TEST: &str = "the_balancer_verifies_and_forwards_on_linux_6_1";

#[test]
fn the_balancer_verifies_and_forwards_on_linux_6_1() {
    if std::env::var_os(IN_GUEST).is_some() {
        in_the_guest();
        return;
    }
    let exe = std::env::current_exe().expect("the test binary");
    let vm = Vm::boot();
    let out = vm.run_timeout(
        &format!(
            "uname -r; {IN_GUEST}=1 {0} --exact {TEST} --nocapture --test-threads 1",
            exe.display()
        ),
        Duration::from_secs(1200),
    );
    assert!(out.success(), "in the 6.1 guest: {out:#?}");
    assert!(
        out.stdout.contains("6.1."),
        "not the 6.1 guest: {}",
        out.stdout
    );
    assert!(
        out.stdout.contains("test result: ok. 1 passed"),
        "{}",
        out.stdout
    );
}

/// What the guest runs: load (the verifier's verdict), then one packet per new path.
fn in_the_guest() {
    let (vip, client, reals) = ("10.0.0.100", "192.0.2.10", ["10.0.1.1", "10.0.1.2"]);
    let mut table = DesiredTable::default();
    table.services.insert(
        key(Protocol::Tcp, vip, 80),
        service("wrr", &[(reals[0], 1), (reals[1], 1)]),
    );
    table.services.insert(
        key(Protocol::Udp, vip, 53),
        service("rr", &[(reals[0], 1), (reals[1], 1)]),
    );
    let mut h = Harness::new();
    for r in reals {
        h.paths.set(
            r,
            RealPath::Neighbour {
                ifindex: 1,
                mac: mac_of(r.parse().unwrap()),
                src_mac: DIRECTOR_MAC,
                vlan: 0,
                mtu: 1500,
                source: None,
            },
        );
    }
    h.apply(&table);
    let to = |frame: &Frame| {
        let out = h.run(&frame.bytes());
        assert_eq!(out.action, XDP_TX, "{frame:?}");
        out.frame[..6].to_vec()
    };
    let syn = Frame::tcp(client, 1000, vip, 80, SYN);
    let real = to(&syn);
    assert_eq!(to(&Frame::tcp(client, 1000, vip, 80, ACK)), real);
    let reply = Frame::tcp(vip, 80, client, 1000, ACK).ip_bytes();
    let error =
        Frame::new("198.51.100.1", vip, L4::Icmp { kind: 3, code: 4 }).payload(&reply[..28]);
    assert_eq!(to(&error), real, "the ICMP error went elsewhere");
    let first = Frame::udp(client, 5000, vip, 53)
        .payload(&[0; 64])
        .ip_id(9)
        .frag(0x2000);
    let later = Frame::new(client, vip, L4::Other(17))
        .payload(&[0; 16])
        .ip_id(9)
        .frag(9);
    let orphan = later.clone().ip_id(10);
    assert_eq!(h.run(&orphan.bytes()).action, XDP_PASS);
    let real = to(&first);
    assert_eq!(to(&later), real, "the later fragment went elsewhere");
    let g = h.global();
    assert_eq!(
        (g.icmp_to_flow, g.frag_first, g.frag_later, g.frag_unknown),
        (1, 1, 1, 1),
        "{g:?}"
    );
}
