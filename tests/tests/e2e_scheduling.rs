//! End to end on the lab (docs/lab.md): the schedulers place real TCP connections from the client
//! on the real web servers as docs/dataplane.md says: `wrr` in proportion to the weights, `sh` by
//! source address, `dh` by destination address, `mh` by the whole flow tuple.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use xdirectord_tests::e2e::{self, GLOBALS, from_client, lab, tally, virtual_service, web};
use xtask::lab::VIP;
use xtask::lab::client::Connection;

/// Which server answers one request on a new connection from `from` (port 0: any) to `to`.
fn served(from: SocketAddr, to: SocketAddr) -> String {
    let reply = Connection::open_from(from, to)
        .and_then(|c| c.get_and_close("/"))
        .unwrap_or_else(|e| panic!("{from} -> {to}: {e}"));
    assert_eq!(reply.status, 200, "{from} -> {to}: {reply:?}");
    reply.server
}

#[test]
fn wrr_gives_each_real_its_weights_share_of_600_connections() {
    let Some(lab) = lab() else { return };
    let agent = lab.agent(
        "e2e-wrr",
        &format!("{GLOBALS}{}", virtual_service(VIP.into(), "scheduler=wrr")),
    );
    agent.wait_for_reals(VIP, &[(0, 10), (1, 20), (2, 30)]);

    let n = 600;
    let counts = tally(web(VIP), n);
    // Within 5% of each real's share: wrr follows IPVS's sequence on each CPU, so only the ends
    // of the per-CPU runs stray from the exact shares.
    for (i, weight) in [10, 20, 30].into_iter().enumerate() {
        let expected = n * weight / 60;
        let got = counts.get(e2e::real_name(i)).copied().unwrap_or(0);
        assert!(
            got.abs_diff(expected) * 20 <= expected,
            "{} served {got} of {n} connections, expected {expected} ± 5%: {counts:?}",
            e2e::real_name(i)
        );
    }
    assert_eq!(counts.values().sum::<usize>(), n, "{counts:?}");
    // The data plane counted the same connections.
    let service = agent.agent.service(VIP).unwrap().unwrap();
    for (i, real) in service.reals.iter().enumerate() {
        assert_eq!(
            real.conns as usize,
            counts[e2e::real_name(i)],
            "{service:?}"
        );
    }
}

#[test]
fn sh_keeps_each_source_address_on_one_real_and_spreads_the_sources() {
    let Some(lab) = lab() else { return };
    let sources = lab.client_addresses(60);
    let agent = lab.agent(
        "e2e-sh",
        &format!("{GLOBALS}{}", virtual_service(VIP.into(), "scheduler=sh")),
    );
    agent.wait_for_reals(VIP, &[(0, 10), (1, 20), (2, 30)]);

    let placed: BTreeMap<IpAddr, BTreeSet<String>> = from_client(|| {
        sources
            .iter()
            .map(|&src| {
                let servers = (0..4)
                    .map(|_| served(SocketAddr::new(src, 0), web(VIP)))
                    .collect();
                (src, servers)
            })
            .collect()
    });
    for (src, servers) in &placed {
        assert_eq!(servers.len(), 1, "{src}'s connections went to {servers:?}");
    }
    let used: BTreeSet<&String> = placed.values().flatten().collect();
    assert_eq!(
        used.len(),
        3,
        "60 sources should reach all three reals: {placed:?}"
    );
}

#[test]
fn dh_keeps_each_destination_on_one_real_and_spreads_the_destinations() {
    let Some(lab) = lab() else { return };
    let vips: Vec<IpAddr> = (101..113)
        .map(|last| IpAddr::V4(Ipv4Addr::new(10, 200, 0, last)))
        .collect();
    lab.add_vips(&vips);
    let sources = lab.client_addresses(4);
    let config = vips.iter().fold(GLOBALS.to_owned(), |config, &vip| {
        config + &virtual_service(vip, "scheduler=dh")
    });
    let agent = lab.agent("e2e-dh", &config);
    for &vip in &vips {
        agent.wait_for_reals(vip, &[(0, 10), (1, 20), (2, 30)]);
    }

    let placed: BTreeMap<IpAddr, BTreeSet<String>> = from_client(|| {
        vips.iter()
            .map(|&vip| {
                // From several sources and ports: only the destination counts.
                let servers = sources
                    .iter()
                    .flat_map(|&src| [src, src])
                    .map(|src| served(SocketAddr::new(src, 0), web(vip)))
                    .collect();
                (vip, servers)
            })
            .collect()
    });
    for (vip, servers) in &placed {
        assert_eq!(servers.len(), 1, "connections to {vip} went to {servers:?}");
    }
    let used: BTreeSet<&String> = placed.values().flatten().collect();
    assert!(
        used.len() >= 2,
        "12 destinations should not all go to one real: {placed:?}"
    );
}

#[test]
fn mh_spreads_one_clients_connections_and_keeps_each_flow_tuple_on_its_real() {
    let Some(lab) = lab() else { return };
    let agent = lab.agent(
        "e2e-mh",
        &format!("{GLOBALS}{}", virtual_service(VIP.into(), "scheduler=mh")),
    );
    agent.wait_for_reals(VIP, &[(0, 10), (1, 20), (2, 30)]);

    // One client, many source ports: spread roughly by weight (a hash of random ports, so
    // loosely: within half of each share either way).
    let n = 300;
    let counts = tally(web(VIP), n);
    for (i, weight) in [10, 20, 30].into_iter().enumerate() {
        let expected = n * weight / 60;
        let got = counts.get(e2e::real_name(i)).copied().unwrap_or(0);
        assert!(
            got * 2 >= expected && got * 2 <= expected * 3,
            "{} served {got} of {n}, expected about {expected}: {counts:?}",
            e2e::real_name(i)
        );
    }

    // The same tuple again and again (each connection closed by the server first, so the port
    // is free at once) lands on the same real: the hash, not a cursor, chooses.
    let client = xtask::lab::CLIENT.ipv4;
    let runs: Vec<(u16, Vec<String>)> = from_client(|| {
        (0..8)
            .map(|k| {
                let port = 41_000 + k * 7;
                let from = SocketAddr::new(client.into(), port);
                (port, (0..3).map(|_| served(from, web(VIP))).collect())
            })
            .collect()
    });
    for (port, servers) in &runs {
        assert!(
            servers.iter().all(|s| s == &servers[0]),
            "port {port}: {servers:?}"
        );
    }
}
