//! The desired table from the configuration and the reals' health, and what changed between
//! two tables in ldirectord's words. Pure: no clock, no I/O.
//!
//! * An up real is in with its configured weight. A real that is down (or not checked yet)
//!   is in with weight 0 when its virtual is `quiescent`, out otherwise.
//! * The fallback is in while no real of the virtual is up, out as soon as one is; it is never
//!   quiesced (ldirectord always deletes it).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use lb_config::{Config, Family, Forwarding, Netmask, VirtualAddress, VirtualService};

use super::state::Health;
use crate::table::{self, DesiredTable, Persistence, Service, ServiceKey, SocketText};

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
            protocol: match protocol {
                lb_config::Protocol::Tcp => table::Protocol::Tcp,
                lb_config::Protocol::Udp => table::Protocol::Udp,
            },
            addr: address.ip(),
            port: address.port(),
        },
        VirtualAddress::Fwmark { mark, family } => ServiceKey::Fwmark {
            mark,
            ipv6: family == Family::Inet6,
        },
    }
}

/// ldirectord's `get_virtual`: `ip:port` (IPv6 in brackets) or the firewall mark.
pub fn virtual_text(key: &ServiceKey) -> String {
    match key {
        ServiceKey::Inet { addr, port, .. } => SocketText(*addr, *port).to_string(),
        ServiceKey::Fwmark { mark, .. } => mark.to_string(),
    }
}

/// A real as ldirectord names it in messages: `ip:port` (IPv6 in brackets).
pub fn real_text(addr: IpAddr, port: u16) -> String {
    SocketText(addr, port).to_string()
}

fn forward(f: Forwarding) -> table::Forward {
    match f {
        Forwarding::Gate => table::Forward::Gate,
        Forwarding::Masq => table::Forward::Masq,
        Forwarding::Ipip => table::Forward::Ipip,
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

/// The virtual's fallback as the data plane holds it (weight 1, no thresholds).
pub fn fallback_entry(vs: &VirtualService) -> Option<table::Real> {
    vs.fallback.as_ref().map(|f| table::Real {
        addr: f.address,
        port: f.port,
        forward: forward(f.forwarding),
        weight: 1,
        upper_threshold: 0,
        lower_threshold: 0,
    })
}

/// `vs` as the data plane should hold it, given each real's health.
pub fn service(vs: &VirtualService, health: impl Fn(&RealKey) -> Health) -> Service {
    let key = service_key(vs);
    let mut reals: Vec<table::Real> = Vec::with_capacity(vs.reals.len());
    let mut any_up = false;
    for real in &vs.reals {
        let (addr, port) = (real.address, real.port);
        // The data plane can hold a real once per virtual: the first line wins.
        if reals.iter().any(|r| r.addr == addr && r.port == port) {
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
            forward: forward(real.forwarding),
            weight,
            upper_threshold: real.upper_threshold.unwrap_or(0),
            lower_threshold: real.lower_threshold.unwrap_or(0),
        });
    }
    let one_packet = vs.ops
        && matches!(
            vs.address,
            VirtualAddress::Socket {
                protocol: lb_config::Protocol::Udp,
                ..
            }
        );
    Service {
        scheduler: vs.scheduler.clone(),
        persistence: persistence(vs),
        sched_flags: vs.schedflags.clone(),
        one_packet,
        reals,
        fallback: if any_up { None } else { fallback_entry(vs) },
    }
}

/// The whole table.
pub fn table(config: &Config, health: impl Fn(&RealKey) -> Health) -> DesiredTable {
    DesiredTable {
        services: config
            .virtuals
            .iter()
            .map(|vs| (service_key(vs), service(vs, &health)))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// A service read back from a data plane that does not keep every attribute, completed from the
/// service as configured (`new`): thresholds of the same real, scheduler flags and one-packet
/// scheduling are taken as configured, so that only what the data plane does show can differ.
pub fn as_held(held: &Service, new: Option<&Service>) -> Service {
    let mut held = held.clone();
    let Some(new) = new else {
        return held;
    };
    held.sched_flags.clone_from(&new.sched_flags);
    held.one_packet = new.one_packet;
    let same = |a: &table::Real, b: &table::Real| a.addr == b.addr && a.port == b.port;
    for real in held.reals.iter_mut().chain(held.fallback.as_mut()) {
        if let Some(configured) = new
            .reals
            .iter()
            .chain(new.fallback.as_ref())
            .find(|c| same(c, real))
        {
            real.upper_threshold = configured.upper_threshold;
            real.lower_threshold = configured.lower_threshold;
            real.forward = configured.forward;
        }
    }
    held
}

/// Whether two versions of a service differ in what `ipvsadm -E` would change.
pub fn attributes_differ(a: &Service, b: &Service) -> bool {
    a.scheduler != b.scheduler
        || a.persistence != b.persistence
        || a.sched_flags != b.sched_flags
        || a.one_packet != b.one_packet
}

/// One thing that changed in the data plane, as ldirectord logs (and mails) it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// `Added virtual server: V`.
    AddedVirtual,
    /// `Changed virtual server: V` (scheduler, persistence, flags changed on reload).
    ChangedVirtual,
    /// `Purged virtual server (<tag>): V`: removed on reload (`start`) or stop (`stop`).
    PurgedVirtual { tag: &'static str },
    /// `Added real server: R (V) (Weight set to W)`.
    Added { real: table::Real },
    /// `Restored real server: R (V) (Weight set to W)`.
    Restored { real: table::Real },
    /// `Quiescent real server: R (V) (Weight set to 0)`, or with `readd` (the real was not in
    /// the data plane) `Readd Quiescent real server: …`.
    Quiescent { real: table::Real, readd: bool },
    /// `Deleted real server: R (V)`.
    Deleted { real: table::Real },
    /// `Purged real server (<tag>): R (V)`: gone from the configuration, or stopping.
    Purged {
        real: table::Real,
        tag: &'static str,
    },
    /// `Added fallback server: F (V) (Weight set to 1)`.
    FallbackAdded { fallback: table::Real },
    /// `Deleted fallback server: F (V)`.
    FallbackDeleted { fallback: table::Real },
}

impl Change {
    /// The log line, ldirectord's text.
    pub fn message(&self, key: &ServiceKey) -> String {
        let v = virtual_text(key);
        let r = |real: &table::Real| real_text(real.addr, real.port);
        match self {
            Change::AddedVirtual => format!("Added virtual server: {v}"),
            Change::ChangedVirtual => format!("Changed virtual server: {v}"),
            Change::PurgedVirtual { tag } => format!("Purged virtual server ({tag}): {v}"),
            Change::Added { real } => {
                format!(
                    "Added real server: {} ({v}) (Weight set to {})",
                    r(real),
                    real.weight
                )
            }
            Change::Restored { real } => {
                format!(
                    "Restored real server: {} ({v}) (Weight set to {})",
                    r(real),
                    real.weight
                )
            }
            Change::Quiescent { real, readd: false } => {
                format!("Quiescent real server: {} ({v}) (Weight set to 0)", r(real))
            }
            Change::Quiescent { real, readd: true } => {
                format!(
                    "Readd Quiescent real server: {} ({v}) (Weight set to 0)",
                    r(real)
                )
            }
            Change::Deleted { real } => format!("Deleted real server: {} ({v})", r(real)),
            Change::Purged { real, tag } => {
                format!("Purged real server ({tag}): {} ({v})", r(real))
            }
            Change::FallbackAdded { fallback } => {
                format!(
                    "Added fallback server: {} ({v}) (Weight set to 1)",
                    r(fallback)
                )
            }
            Change::FallbackDeleted { fallback } => {
                format!("Deleted fallback server: {} ({v})", r(fallback))
            }
        }
    }

    /// The e-mail subject ldirectord sends for it, if any (a re-added quiescent real is
    /// mailed as plain `Quiescent`).
    pub fn mail_subject(&self, key: &ServiceKey) -> Option<String> {
        match self {
            Change::AddedVirtual | Change::ChangedVirtual | Change::PurgedVirtual { .. } => None,
            Change::Quiescent { real, .. } => Some(
                Change::Quiescent {
                    real: *real,
                    readd: false,
                }
                .message(key),
            ),
            other => Some(other.message(key)),
        }
    }

    /// ldirectord's `EMAILSTATUS` bookkeeping: `Some(true)` starts the repeated
    /// `Inaccessible real server` alerts for this real, `Some(false)` stops them.
    pub fn repeats(&self) -> Option<(table::Real, bool)> {
        match self {
            Change::Quiescent { real, .. } | Change::Deleted { real } => Some((*real, true)),
            Change::Added { real } | Change::Restored { real } | Change::Purged { real, .. } => {
                Some((*real, false))
            }
            Change::FallbackAdded { fallback } | Change::FallbackDeleted { fallback } => {
                Some((*fallback, false))
            }
            Change::AddedVirtual | Change::ChangedVirtual | Change::PurgedVirtual { .. } => None,
        }
    }
}

/// What changed in one service between what the data plane held (`old`) and what it should
/// hold (`new`), reals first, then the fallback, as ldirectord's `_restore_service` /
/// `_remove_service` and `fallback_on` / `fallback_off` order them.
///
/// `health` and `configured` answer for the reals of the new configuration: a real that left
/// the data plane because it left the configuration is purged, one that went down is deleted.
pub fn service_changes(
    key: &ServiceKey,
    old: Option<&Service>,
    new: Option<&Service>,
    health: impl Fn(&RealKey) -> Health,
    configured: impl Fn(&RealKey) -> bool,
    readdquiescent: bool,
) -> Vec<Change> {
    let mut changes = Vec::new();
    let (old, new) = match (old, new) {
        (None, None) => return changes,
        (Some(_), None) => {
            changes.push(Change::PurgedVirtual { tag: "start" });
            return changes;
        }
        (None, Some(new)) => {
            changes.push(Change::AddedVirtual);
            (None, new)
        }
        (Some(old), Some(new)) => {
            if attributes_differ(old, new) {
                changes.push(Change::ChangedVirtual);
            }
            (Some(old), new)
        }
    };
    let empty = Vec::new();
    let old_reals = old.map_or(&empty, |s| &s.reals);
    let rkey = |r: &table::Real| RealKey {
        service: *key,
        real: SocketAddr::new(r.addr, r.port),
    };
    for real in &new.reals {
        let up = health(&rkey(real)) == Health::Up;
        match old_reals
            .iter()
            .find(|o| o.addr == real.addr && o.port == real.port)
        {
            None if up => changes.push(Change::Added { real: *real }),
            None => changes.push(Change::Quiescent {
                real: *real,
                readd: readdquiescent,
            }),
            Some(o) if o == real => {}
            Some(_) if up => changes.push(Change::Restored { real: *real }),
            Some(_) => changes.push(Change::Quiescent {
                real: *real,
                readd: false,
            }),
        }
    }
    for o in old_reals {
        if new
            .reals
            .iter()
            .any(|r| r.addr == o.addr && r.port == o.port)
        {
            continue;
        }
        if configured(&rkey(o)) {
            changes.push(Change::Deleted { real: *o });
        } else {
            changes.push(Change::Purged {
                real: *o,
                tag: "start",
            });
        }
    }
    let old_fallback = old.and_then(|s| s.fallback);
    if old_fallback != new.fallback {
        if let Some(fallback) = old_fallback {
            changes.push(Change::FallbackDeleted { fallback });
        }
        if let Some(fallback) = new.fallback {
            changes.push(Change::FallbackAdded { fallback });
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_config::testing::StaticEnvironment;
    use std::collections::HashMap;

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
        assert_eq!(s.scheduler, "wrr");
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
                forward: table::Forward::Gate,
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
            s.persistence,
            Some(Persistence {
                timeout_secs: 300,
                prefix_len: 24
            })
        );
        assert!(s.one_packet);
        assert_eq!(s.scheduler, "sh");
        assert_eq!(s.sched_flags.as_deref(), Some("sh-port"));
        let r = s.reals[0];
        assert_eq!(
            (r.forward, r.lower_threshold, r.upper_threshold),
            (table::Forward::Ipip, 10, 20)
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
            s.persistence,
            Some(Persistence {
                timeout_secs: 60,
                prefix_len: 32
            })
        );
        assert!(!s.one_packet);
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
