//! End to end on the lab (docs/lab.md): `persistent = N` keeps a client (its address under
//! `netmask`) on one real for N seconds after its last new connection, even while that real is
//! quiescent, as IPVS's persistence templates do; once the template expires the client is
//! scheduled afresh.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use xdirectord_tests::e2e::{self, GLOBALS, from_client, lab, virtual_service, web};
use xtask::lab::agent::wait_for;
use xtask::lab::client::Connection;
use xtask::lab::{CLIENT, REALS, VIP};

/// The persistence timeout of the test's virtual, in seconds.
const PERSISTENT: u64 = 2;

/// Which server answers `n` new connections from `from` (any port), one after the other.
fn servers_from(from: std::net::IpAddr, n: usize) -> Vec<String> {
    from_client(|| {
        (0..n)
            .map(|_| {
                Connection::open_from(SocketAddr::new(from, 0), web(VIP))
                    .and_then(|c| c.get_and_close("/"))
                    .unwrap_or_else(|e| panic!("from {from}: {e}"))
                    .server
            })
            .collect()
    })
}

#[test]
fn persistence_keeps_a_client_on_one_real_until_its_template_expires() {
    let Some(lab) = lab() else { return };
    let neighbour = lab.client_addresses(1)[0];
    let agent = lab.agent(
        "e2e-persistence",
        &format!(
            "{GLOBALS}quiescent=yes\n{}",
            virtual_service(
                VIP.into(),
                &format!("scheduler=wrr\npersistent={PERSISTENT}\nnetmask=255.255.255.0")
            )
        ),
    );
    agent.wait_for_reals(VIP, &[(0, 10), (1, 20), (2, 30)]);

    // Without persistence 20 connections would visit every real (wrr 10/20/30); with it, one.
    let client = CLIENT.ipv4.into();
    let first: BTreeSet<String> = servers_from(client, 20).into_iter().collect();
    assert_eq!(first.len(), 1, "{first:?}");
    let chosen = first.into_iter().next().unwrap();
    // The netmask makes the whole /24 one client: the neighbour address joins it.
    let neighbours: BTreeSet<String> = servers_from(neighbour, 5).into_iter().collect();
    assert_eq!(neighbours, BTreeSet::from([chosen.clone()]));

    // The chosen real fails its check and goes quiescent; the client's template still holds it
    // there (kept fresh by a new connection every 200 ms while the agent decides).
    let index = (0..3).find(|&i| e2e::real_name(i) == chosen).unwrap();
    xtask::lab::set_sick(&REALS[index], true).unwrap();
    let mut weights: Vec<(usize, u32)> = vec![(0, 10), (1, 20), (2, 30)];
    weights[index].1 = 0;
    let want: Vec<(std::net::IpAddr, u32)> = weights
        .iter()
        .map(|&(i, w)| (e2e::real_addr(i, false), w))
        .collect();
    let mut seen = Vec::new();
    wait_for("the chosen real to go quiescent", e2e::PATIENCE, || {
        seen.extend(servers_from(client, 1));
        let service = agent.agent.service(VIP)?;
        Ok(service.is_some_and(|s| s.weights() == want).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", agent.log_text()));
    seen.extend(servers_from(client, 10));
    assert!(seen.iter().all(|s| *s == chosen), "{seen:?}");

    // Idle past the timeout: the template expires, and the next connection goes to a real
    // that is up; the new template keeps the client there.
    std::thread::sleep(Duration::from_secs(PERSISTENT + 1));
    let after: BTreeSet<String> = servers_from(client, 10).into_iter().collect();
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(!after.contains(&chosen), "still on {chosen} after expiry");
}
