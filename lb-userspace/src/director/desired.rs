//! The desired table from the configuration, the reals' health and where each virtual runs.
//! Pure: no clock, no I/O.
//!
//! * An up real is in with its configured weight. A real that is down (or not checked yet)
//!   is in with weight 0 when its virtual is `quiescent`, out otherwise.
//! * The fallback is in while no real of the virtual is up, out as soon as one is; it is never
//!   quiesced (ldirectord always deletes it).
//! * A data plane holds a real once: of two lines naming the same real (the same address and
//!   data-plane port, [`ServiceKey::dest_port`]), the first wins, as ipvsadm refuses the second.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use lb_config::{Config, Family, Netmask, VirtualAddress, VirtualService};

use super::state::Health;
use crate::table::{
    self, BackendKind, DesiredTable, Persistence, Service, ServiceAttrs, ServiceKey, sched_flags,
};

/// One real of one virtual: what the director keeps health for and lb-health reports on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RealKey {
    pub service: ServiceKey,
    pub real: SocketAddr,
}

impl RealKey {
    pub fn new(service: ServiceKey, real: &lb_config::Real) -> RealKey {
        RealKey {
            service,
            real: SocketAddr::new(real.address, real.port),
        }
    }
}

/// The data plane's name for a virtual service.
pub fn service_key(vs: &VirtualService) -> ServiceKey {
    match vs.address {
        VirtualAddress::Socket { protocol, address } => ServiceKey::Inet {
            protocol,
            addr: address.ip(),
            port: address.port(),
        },
        VirtualAddress::Fwmark { mark, family } => ServiceKey::Fwmark {
            mark,
            ipv6: family == Family::Inet6,
        },
    }
}

/// `persistent` and `netmask`; IPVS's default granularity is the whole address.
fn persistence(vs: &VirtualService) -> Option<Persistence> {
    let timeout_secs = vs.persistent?;
    let full = match vs.address.family() {
        Family::Inet => 32,
        Family::Inet6 => 128,
    };
    let prefix_len = match vs.netmask {
        None => full,
        // ipvsadm takes a dotted quad; IPVS uses it as a mask, so count its leading ones.
        Some(Netmask::V4(mask)) => u32::from(mask).leading_ones() as u8,
        Some(Netmask::V6(len)) => len,
    };
    Some(Persistence {
        timeout_secs,
        prefix_len,
    })
}

/// The virtual's `schedflags` as IPVS flag bits. The agent refuses a configuration whose flags
/// ipvsadm would refuse (see `daemon::preflight`), so none is lost here.
pub fn schedflags(vs: &VirtualService) -> Result<u32, String> {
    match &vs.schedflags {
        None => Ok(0),
        Some(text) => sched_flags::parse(&vs.scheduler, text),
    }
}

/// What `ipvsadm -A` would set for `vs`, on `backend`.
pub fn attrs(vs: &VirtualService, backend: BackendKind) -> ServiceAttrs {
    let one_packet = vs.ops
        && matches!(
            vs.address,
            VirtualAddress::Socket {
                protocol: lb_config::Protocol::Udp,
                ..
            }
        );
    ServiceAttrs {
        backend,
        scheduler: vs.scheduler.clone(),
        persistence: persistence(vs),
        sched_flags: schedflags(vs).unwrap_or(0),
        one_packet,
    }
}

/// The virtual's fallback as the data plane holds it (weight 1, no thresholds).
pub fn fallback_entry(vs: &VirtualService) -> Option<table::Real> {
    vs.fallback.as_ref().map(|f| table::Real {
        addr: f.address,
        port: f.port,
        forward: f.forwarding,
        weight: 1,
        upper_threshold: 0,
        lower_threshold: 0,
    })
}

/// `vs` as the data plane `backend` should hold it, given each real's health.
pub fn service(
    vs: &VirtualService,
    backend: BackendKind,
    health: impl Fn(&RealKey) -> Health,
) -> Service {
    let key = service_key(vs);
    let mut reals: Vec<table::Real> = Vec::with_capacity(vs.reals.len());
    let mut any_up = false;
    for real in &vs.reals {
        let (addr, port) = (real.address, real.port);
        if reals
            .iter()
            .any(|r| r.dest(&key) == (addr, key.dest_port(real.forwarding, port)))
        {
            continue;
        }
        let up = health(&RealKey::new(key, real)) == Health::Up;
        any_up |= up;
        let weight = match (up, vs.quiescent) {
            (true, _) => real.weight,
            (false, true) => 0,
            (false, false) => continue,
        };
        reals.push(table::Real {
            addr,
            port,
            forward: real.forwarding,
            weight,
            upper_threshold: real.upper_threshold.unwrap_or(0),
            lower_threshold: real.lower_threshold.unwrap_or(0),
        });
    }
    Service {
        attrs: attrs(vs, backend),
        reals,
        fallback: if any_up { None } else { fallback_entry(vs) },
    }
}

/// Where each virtual runs: the agent's choice (see `backend::placement`).
pub type Placement = BTreeMap<ServiceKey, BackendKind>;

/// The data plane a virtual runs on; XDP for one the placement does not name (a test's).
pub fn backend_of(placement: &Placement, key: &ServiceKey) -> BackendKind {
    placement.get(key).copied().unwrap_or(BackendKind::Xdp)
}

/// The whole table.
pub fn table(
    config: &Config,
    placement: &Placement,
    health: impl Fn(&RealKey) -> Health,
) -> DesiredTable {
    DesiredTable {
        services: config
            .virtuals
            .iter()
            .map(|vs| {
                let key = service_key(vs);
                (key, service(vs, backend_of(placement, &key), &health))
            })
            .collect::<BTreeMap<_, _>>(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::director::changes::{Change, Wording, changes, real_text, virtual_text};
    use crate::table::diff::diff_service;
    use lb_config::testing::StaticEnvironment;
    use std::collections::HashMap;

    /// What changed between two versions of a service, in ldirectord's words.
    fn service_changes(
        key: &ServiceKey,
        old: Option<&Service>,
        new: Option<&Service>,
        health: impl Fn(&RealKey) -> Health,
        configured: impl Fn(&RealKey) -> bool,
        readdquiescent: bool,
    ) -> Vec<Change> {
        let rkey = |k: &ServiceKey, r: &table::Real| RealKey {
            service: *k,
            real: SocketAddr::new(r.addr, r.port),
        };
        let wording = Wording {
            up: &|k, r| health(&rkey(k, r)) == Health::Up,
            configured: &|k, r| configured(&rkey(k, r)),
            readdquiescent,
            tag: "start",
        };
        changes(&diff_service(key, old, new), &wording)
            .into_iter()
            .map(|(_, c)| c)
            .collect()
    }

    fn service(vs: &VirtualService, health: impl Fn(&RealKey) -> Health) -> Service {
        super::service(vs, BackendKind::Xdp, health)
    }

    fn parse(text: &str) -> Config {
        lb_config::parse(
            text.as_bytes(),
            "t.cf".as_ref(),
            &StaticEnvironment::default(),
        )
        .expect("valid")
    }

    fn health_of(states: &[(&str, Health)]) -> impl Fn(&RealKey) -> Health {
        let map: HashMap<SocketAddr, Health> = states
            .iter()
            .map(|(a, h)| (a.parse().unwrap(), *h))
            .collect();
        move |k: &RealKey| map.get(&k.real).copied().unwrap_or_default()
    }

    const TWO: &str = "virtual=192.0.2.1:80\n\treal=192.0.2.11:80 gate 3\n\treal=192.0.2.12:80 gate\n\
                       \tfallback=127.0.0.1:80\n";

    fn weights(s: &Service) -> Vec<(String, u32)> {
        s.reals
            .iter()
            .map(|r| (real_text(r.addr, r.port), r.weight))
            .collect()
    }

    #[test]
    fn up_reals_carry_their_weight_and_the_fallback_is_out() {
        let config = parse(TWO);
        let s = service(
            &config.virtuals[0],
            health_of(&[
                ("192.0.2.11:80", Health::Up),
                ("192.0.2.12:80", Health::Down),
            ]),
        );
        assert_eq!(weights(&s), [("192.0.2.11:80".to_string(), 3)]);
        assert_eq!(s.fallback, None);
        assert_eq!(s.attrs.scheduler, "wrr");
    }

    #[test]
    fn quiescent_down_reals_stay_with_weight_zero() {
        let config = parse(&format!("quiescent=yes\n{TWO}"));
        let s = service(
            &config.virtuals[0],
            health_of(&[("192.0.2.11:80", Health::Up)]),
        );
        assert_eq!(
            weights(&s),
            [
                ("192.0.2.11:80".to_string(), 3),
                ("192.0.2.12:80".to_string(), 0)
            ]
        );
    }

    #[test]
    fn the_fallback_is_in_only_while_no_real_is_up() {
        let config = parse(&format!("quiescent=yes\n{TWO}"));
        let s = service(&config.virtuals[0], health_of(&[]));
        assert_eq!(s.reals.len(), 2, "quiescent, unchecked");
        assert_eq!(
            s.fallback,
            Some(table::Real {
                addr: "127.0.0.1".parse().unwrap(),
                port: 80,
                forward: lb_config::Forwarding::Gate,
                weight: 1,
                upper_threshold: 0,
                lower_threshold: 0
            })
        );
    }

    #[test]
    fn persistence_udp_ops_thresholds_and_flags() {
        let config = parse(
            "virtual=192.0.2.1:53\n\treal=192.0.2.11:53 ipip 2 l:10 u:20\n\tpersistent=300\n\
             \tnetmask=255.255.255.0\n\tops=yes\n\tscheduler=sh\n\tschedflags=sh-port\n",
        );
        let s = service(&config.virtuals[0], |_| Health::Up);
        assert_eq!(
            s.attrs.persistence,
            Some(Persistence {
                timeout_secs: 300,
                prefix_len: 24
            })
        );
        assert!(s.attrs.one_packet);
        assert_eq!(s.attrs.scheduler, "sh");
        assert_eq!(s.attrs.sched_flags, sched_flags::SCHED2);
        let r = s.reals[0];
        assert_eq!(
            (r.forward, r.lower_threshold, r.upper_threshold),
            (lb_config::Forwarding::Ipip, 10, 20)
        );
        let key = service_key(&config.virtuals[0]);
        assert_eq!(
            key,
            ServiceKey::Inet {
                protocol: table::Protocol::Udp,
                addr: "192.0.2.1".parse().unwrap(),
                port: 53
            }
        );
    }

    #[test]
    fn persistence_defaults_to_the_whole_address() {
        let config = parse("virtual=192.0.2.1:80\n\treal=192.0.2.11:80 gate\n\tpersistent=60\n");
        let s = service(&config.virtuals[0], |_| Health::Up);
        assert_eq!(
            s.attrs.persistence,
            Some(Persistence {
                timeout_secs: 60,
                prefix_len: 32
            })
        );
        assert!(!s.attrs.one_packet);
    }

    #[test]
    fn fwmark_virtuals_are_keyed_by_mark() {
        let config = parse("virtual=12\n\treal=192.0.2.11 gate\n");
        assert_eq!(
            service_key(&config.virtuals[0]),
            ServiceKey::Fwmark {
                mark: 12,
                ipv6: false
            }
        );
        assert_eq!(virtual_text(&service_key(&config.virtuals[0])), "12");
    }

    #[test]
    fn changes_read_as_ldirectord_logs_them() {
        let config = parse(TWO);
        let vs = &config.virtuals[0];
        let key = service_key(vs);
        let all_down = service(vs, |_| Health::Down);
        let one_up = service(vs, health_of(&[("192.0.2.11:80", Health::Up)]));
        let h = health_of(&[("192.0.2.11:80", Health::Up)]);
        let texts = |c: Vec<Change>| c.iter().map(|c| c.message(&key)).collect::<Vec<_>>();
        assert_eq!(
            texts(service_changes(
                &key,
                Some(&all_down),
                Some(&one_up),
                &h,
                |_| true,
                false
            )),
            [
                "Added real server: 192.0.2.11:80 (192.0.2.1:80) (Weight set to 3)",
                "Deleted fallback server: 127.0.0.1:80 (192.0.2.1:80)",
            ]
        );
        let down = health_of(&[]);
        assert_eq!(
            texts(service_changes(
                &key,
                Some(&one_up),
                Some(&all_down),
                &down,
                |_| true,
                false
            )),
            [
                "Deleted real server: 192.0.2.11:80 (192.0.2.1:80)",
                "Added fallback server: 127.0.0.1:80 (192.0.2.1:80) (Weight set to 1)",
            ]
        );
        assert_eq!(
            texts(service_changes(
                &key,
                Some(&one_up),
                Some(&all_down),
                &down,
                |_| false,
                false
            )),
            [
                "Purged real server (start): 192.0.2.11:80 (192.0.2.1:80)",
                "Added fallback server: 127.0.0.1:80 (192.0.2.1:80) (Weight set to 1)",
            ]
        );
        assert_eq!(
            texts(service_changes(
                &key,
                None,
                Some(&all_down),
                &down,
                |_| true,
                false
            )),
            [
                "Added virtual server: 192.0.2.1:80",
                "Added fallback server: 127.0.0.1:80 (192.0.2.1:80) (Weight set to 1)",
            ]
        );
        assert_eq!(
            texts(service_changes(
                &key,
                Some(&all_down),
                None,
                &down,
                |_| true,
                false
            )),
            ["Purged virtual server (start): 192.0.2.1:80"]
        );
    }

    #[test]
    fn quiescent_changes() {
        let config = parse(&format!("quiescent=yes\n{TWO}"));
        let vs = &config.virtuals[0];
        let key = service_key(vs);
        let up = health_of(&[("192.0.2.11:80", Health::Up), ("192.0.2.12:80", Health::Up)]);
        let one_down = health_of(&[("192.0.2.11:80", Health::Up)]);
        let before = service(vs, &up);
        let after = service(vs, &one_down);
        let texts = |c: Vec<Change>| c.iter().map(|c| c.message(&key)).collect::<Vec<_>>();
        assert_eq!(
            texts(service_changes(
                &key,
                Some(&before),
                Some(&after),
                &one_down,
                |_| true,
                false
            )),
            ["Quiescent real server: 192.0.2.12:80 (192.0.2.1:80) (Weight set to 0)"]
        );
        assert_eq!(
            texts(service_changes(
                &key,
                Some(&after),
                Some(&before),
                &up,
                |_| true,
                false
            )),
            ["Restored real server: 192.0.2.12:80 (192.0.2.1:80) (Weight set to 1)"]
        );
        // Never in the data plane: ldirectord's readd path.
        let fresh = service_changes(&key, None, Some(&after), &one_down, |_| true, true);
        assert_eq!(
            texts(fresh.clone()),
            [
                "Added virtual server: 192.0.2.1:80",
                "Added real server: 192.0.2.11:80 (192.0.2.1:80) (Weight set to 3)",
                "Readd Quiescent real server: 192.0.2.12:80 (192.0.2.1:80) (Weight set to 0)",
            ]
        );
        assert_eq!(
            fresh[2].mail_subject(&key).unwrap(),
            "Quiescent real server: 192.0.2.12:80 (192.0.2.1:80) (Weight set to 0)"
        );
        assert_eq!(fresh[2].repeats().map(|(_, on)| on), Some(true));
        assert_eq!(fresh[1].repeats().map(|(_, on)| on), Some(false));
    }

    #[test]
    fn changed_attributes_and_weights_on_reload() {
        let a = parse(TWO);
        let b = parse(
            "virtual=192.0.2.1:80\n\treal=192.0.2.11:80 gate 5\n\treal=192.0.2.12:80 gate\n\
             \tfallback=127.0.0.1:80\n\tscheduler=rr\n",
        );
        let h = health_of(&[("192.0.2.11:80", Health::Up)]);
        let key = service_key(&a.virtuals[0]);
        let changes = service_changes(
            &key,
            Some(&service(&a.virtuals[0], &h)),
            Some(&service(&b.virtuals[0], &h)),
            &h,
            |_| true,
            false,
        );
        let texts: Vec<String> = changes.iter().map(|c| c.message(&key)).collect();
        assert_eq!(
            texts,
            [
                "Changed virtual server: 192.0.2.1:80",
                "Restored real server: 192.0.2.11:80 (192.0.2.1:80) (Weight set to 5)",
            ]
        );
    }

    #[test]
    fn ipv6_texts_use_brackets() {
        let key = ServiceKey::Inet {
            protocol: table::Protocol::Tcp,
            addr: "2001:db8::1".parse().unwrap(),
            port: 80,
        };
        assert_eq!(virtual_text(&key), "[2001:db8::1]:80");
        assert_eq!(
            real_text("2001:db8::11".parse().unwrap(), 8080),
            "[2001:db8::11]:8080"
        );
    }
}
