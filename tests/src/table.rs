//! Desired tables for tests: reals, services and keys in a line each, and a MAC per real address
//! so that a frame's destination MAC names the real it went to.

use std::net::IpAddr;

use xdirectord::backend::{Backend, Notes};
use xdirectord::table::{
    DesiredTable, Forwarding, Protocol, Real, Service, ServiceAttrs, ServiceKey,
};

/// A direct-routing real on port 80.
pub fn real(addr: &str, weight: u32) -> Real {
    Real {
        addr: addr.parse().expect("real address"),
        port: 80,
        forward: Forwarding::Gate,
        weight,
        upper_threshold: 0,
        lower_threshold: 0,
    }
}

/// A service without persistence or fallback.
pub fn service(scheduler: &str, reals: &[(&str, u32)]) -> Service {
    Service {
        attrs: ServiceAttrs {
            scheduler: scheduler.into(),
            persistence: None,
            ..ServiceAttrs::default()
        },
        reals: reals.iter().map(|(a, w)| real(a, *w)).collect(),
        fallback: None,
    }
}

pub fn key(protocol: Protocol, addr: &str, port: u16) -> ServiceKey {
    ServiceKey::Inet {
        protocol,
        addr: addr.parse().expect("virtual address"),
        port,
    }
}

/// A real's MAC, made from (the last four bytes of) its address.
pub fn mac_of(addr: IpAddr) -> [u8; 6] {
    let o = match addr {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(a) => {
            let b = a.octets();
            [b[12], b[13], b[14], b[15]]
        }
    };
    [0x02, 0x00, o[0], o[1], o[2], o[3]]
}

/// Makes `backend` hold `table`: the ops between what it holds and `table`, as the agent sends
/// them.
pub fn apply(backend: &mut dyn Backend, table: &DesiredTable) -> Notes {
    let held = backend.held().expect("held");
    backend
        .apply(&xdirectord::table::diff::diff(&held, table))
        .expect("apply")
}
