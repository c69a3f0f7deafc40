//! End to end on the lab (docs/lab.md), over IPv6: a `virtual6` with `real6`s balances real
//! connections by weight, keeps established ones through a failover, drops a failed real, and
//! falls back to `fallback6` on the director while every real is down.

use xdirectord_tests::e2e::{GLOBALS, find, from_client, get, lab, tally, virtual_service, web};
use xtask::lab::client::Connection;
use xtask::lab::{FALLBACK_BODY, REALS, VIP6};

#[test]
fn virtual6_balances_fails_over_and_falls_back() {
    let Some(lab) = lab() else { return };
    let agent = lab.agent(
        "e2e-ipv6",
        &format!(
            "{GLOBALS}quiescent=no\n{}",
            virtual_service(VIP6.into(), "scheduler=wrr\nfallback6=[::1]:80 gate")
        ),
    );
    agent.wait_for_reals(VIP6, &[(0, 10), (1, 20), (2, 30)]);

    let n = 120;
    let counts = tally(web(VIP6), n);
    for (name, expected) in [("web1", 20), ("web2", 40), ("web3", 60)] {
        let got = counts.get(name).copied().unwrap_or(0);
        assert!(
            got.abs_diff(expected) <= 4,
            "{name} served {got} of {n}, expected {expected}: {counts:?}"
        );
    }
    // Direct routing leaves the client's address as it is: the real sees the client itself.
    let (local, reply) = from_client(|| {
        let mut c = Connection::open(web(VIP6)).unwrap();
        (c.local, c.get("/").unwrap())
    });
    assert_eq!(reply.client, local.to_string(), "{reply:?}");

    // web3 fails its check: out of the table, and no new connection reaches it.
    xtask::lab::set_sick(&REALS[2], true).unwrap();
    agent.wait_for_log(
        "Deleted real server: [fd00:200::13]:80 ([fd00:200::100]:80)",
        1,
    );
    agent.wait_for_reals(VIP6, &[(0, 10), (1, 20)]);
    let counts = tally(web(VIP6), 30);
    assert_eq!(
        counts.keys().collect::<Vec<_>>(),
        ["web1", "web2"],
        "{counts:?}"
    );

    // Every real down: the fallback on the director ([::1]) serves.
    xtask::lab::set_sick(&REALS[0], true).unwrap();
    xtask::lab::set_sick(&REALS[1], true).unwrap();
    agent.wait_for_log("Added fallback server: [::1]:80 ([fd00:200::100]:80)", 1);
    agent.wait_for_fallback(VIP6);
    let counts = tally(web(VIP6), 10);
    assert_eq!(counts.get("fallback"), Some(&10), "{counts:?}");
    assert_eq!(get(web(VIP6)).unwrap().body, FALLBACK_BODY);

    // One back: it takes every new connection, the fallback leaves.
    xtask::lab::set_sick(&REALS[2], false).unwrap();
    agent.wait_for_reals(VIP6, &[(2, 30)]);
    let counts = tally(web(VIP6), 10);
    assert_eq!(counts.get("web3"), Some(&10), "{counts:?}");
    let table = agent.agent.table().unwrap();
    assert!(
        find(&table, VIP6.into()).is_some_and(|s| !s.has_fallback()),
        "{table:?}"
    );
}
