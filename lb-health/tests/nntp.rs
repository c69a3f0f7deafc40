//! The nntp check against INN's nnrpd (standalone, as the user news, its run directory
//! private, on loopback), with ldirectord's own check run against the same server.

mod common;
mod servers;

use std::net::SocketAddr;
use std::time::Duration;

use common::{check_once, negotiate};
use lb_health::Service;
use servers::{Sends, Stall, V4, V6, free_port, ldirectord_says, nnrpd};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nntp_against_nnrpd() {
    let (_ready, port) = nnrpd(None);
    let (_refusing, refusing) = nnrpd(Some("down for maintenance"));
    let at = SocketAddr::new(V4, port);

    let up = check_once(negotiate(at, Service::Nntp)).await;
    assert!(up.up && up.reason.starts_with("200 "), "{up:?}");
    assert_eq!(ldirectord_says("nntp", at, &[]).await, Some(true));

    let refused_at = SocketAddr::new(V4, refusing);
    let refused = check_once(negotiate(refused_at, Service::Nntp)).await;
    assert!(!refused.up && refused.reason.contains("400"), "{refused:?}");
    assert_eq!(ldirectord_says("nntp", refused_at, &[]).await, Some(false));

    // ldirectord's nntp check is one of those it documents for IPv6.
    let v6_at = SocketAddr::new(V6, port);
    let v6 = check_once(negotiate(v6_at, Service::Nntp)).await;
    assert!(v6.up, "{v6:?}");
    assert_eq!(ldirectord_says("nntp", v6_at, &[]).await, Some(true));

    let closed = check_once(negotiate(SocketAddr::new(V4, free_port()), Service::Nntp)).await;
    assert!(
        !closed.up && closed.reason.contains("refused"),
        "{closed:?}"
    );

    let stall = Stall::on(V4);
    let mut stalled = negotiate(stall.tcp, Service::Nntp);
    stalled.negotiate_timeout = Duration::from_secs(1);
    let outcome = check_once(stalled).await;
    assert_eq!(
        (outcome.up, outcome.reason.as_ref()),
        (false, "timed out after 1s")
    );

    // Only the first 64 bytes are read, whatever follows.
    let endless = Sends::on(V4, [b"200 ".as_slice(), &[b'x'; 1024 * 1024]].concat());
    let outcome = check_once(negotiate(endless.addr, Service::Nntp)).await;
    assert!(outcome.up && outcome.reason.len() <= 64, "{outcome:?}");
}
