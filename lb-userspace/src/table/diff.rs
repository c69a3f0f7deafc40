//! The one diff: what to change so that a data plane holding one table holds another, as a list
//! of [`Op`]s in the order ldirectord makes the same changes through ipvsadm. The director
//! reports the ops in ldirectord's words; every backend executes them. Pure.
//!
//! Reals are matched by how the data plane knows them ([`Real::dest`]), so a table read back
//! from a data plane (ports as the data plane holds them) compares with a desired one (ports as
//! configured).

use std::net::IpAddr;

use super::{DesiredTable, Real, Service, ServiceAttrs, ServiceKey};

/// Whether a real is one of the virtual's reals or its fallback server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Real,
    Fallback,
}

/// One change to a data plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `ipvsadm -A`: a virtual service, with no reals yet.
    AddVirtual {
        key: ServiceKey,
        attrs: ServiceAttrs,
    },
    /// `ipvsadm -E`: the scheduler, persistence, flags or data plane changed.
    EditVirtual {
        key: ServiceKey,
        attrs: ServiceAttrs,
    },
    /// `ipvsadm -D`: the virtual and whatever reals it still has.
    DeleteVirtual { key: ServiceKey },
    /// `ipvsadm -a`.
    AddReal {
        key: ServiceKey,
        role: Role,
        real: Real,
    },
    /// `ipvsadm -e`: weight, thresholds or forwarding method changed.
    EditReal {
        key: ServiceKey,
        role: Role,
        real: Real,
    },
    /// `ipvsadm -d`.
    DeleteReal {
        key: ServiceKey,
        role: Role,
        real: Real,
    },
}

impl Op {
    /// The virtual service the op changes.
    pub fn key(&self) -> &ServiceKey {
        match self {
            Op::AddVirtual { key, .. }
            | Op::EditVirtual { key, .. }
            | Op::DeleteVirtual { key }
            | Op::AddReal { key, .. }
            | Op::EditReal { key, .. }
            | Op::DeleteReal { key, .. } => key,
        }
    }
}

/// The ops that turn `held` into `desired`, service after service in key order.
pub fn diff(held: &DesiredTable, desired: &DesiredTable) -> Vec<Op> {
    let mut keys: Vec<&ServiceKey> = held
        .services
        .keys()
        .chain(desired.services.keys())
        .collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .flat_map(|key| diff_service(key, held.services.get(key), desired.services.get(key)))
        .collect()
}

/// The ops that turn one service as held into the service as desired (`None`: absent).
///
/// The order is ldirectord's: the virtual first; then its reals in configuration order (added or
/// edited), those that left, and last the fallback (`_restore_service`/`_remove_service`, then
/// `fallback_off`/`fallback_on`). A virtual that goes loses its reals one by one before it goes
/// itself, as `ld_stop` purges them.
pub fn diff_service(
    key: &ServiceKey,
    held: Option<&Service>,
    desired: Option<&Service>,
) -> Vec<Op> {
    let mut ops = Vec::new();
    let key = *key;
    match (held, desired) {
        (None, None) => {}
        (Some(held), None) => {
            for real in &held.reals {
                ops.push(Op::DeleteReal {
                    key,
                    role: Role::Real,
                    real: *real,
                });
            }
            ops.push(Op::DeleteVirtual { key });
        }
        (held, Some(desired)) => {
            match held {
                None => ops.push(Op::AddVirtual {
                    key,
                    attrs: desired.attrs.clone(),
                }),
                Some(h) if h.attrs != desired.attrs => ops.push(Op::EditVirtual {
                    key,
                    attrs: desired.attrs.clone(),
                }),
                Some(_) => {}
            }
            let held_reals = held.map_or(&[][..], |h| &h.reals[..]);
            for real in &desired.reals {
                match held_reals.iter().find(|h| h.dest(&key) == real.dest(&key)) {
                    None => ops.push(Op::AddReal {
                        key,
                        role: Role::Real,
                        real: *real,
                    }),
                    Some(h) if !same_settings(h, real) => ops.push(Op::EditReal {
                        key,
                        role: Role::Real,
                        real: *real,
                    }),
                    Some(_) => {}
                }
            }
            for h in held_reals {
                if !desired.reals.iter().any(|r| r.dest(&key) == h.dest(&key)) {
                    ops.push(Op::DeleteReal {
                        key,
                        role: Role::Real,
                        real: *h,
                    });
                }
            }
            let role = Role::Fallback;
            match (held.and_then(|h| h.fallback), desired.fallback) {
                (None, None) => {}
                (Some(real), None) => ops.push(Op::DeleteReal { key, role, real }),
                (None, Some(real)) => ops.push(Op::AddReal { key, role, real }),
                (Some(h), Some(real)) if h.dest(&key) != real.dest(&key) => {
                    ops.push(Op::DeleteReal { key, role, real: h });
                    ops.push(Op::AddReal { key, role, real });
                }
                (Some(h), Some(real)) if !same_settings(&h, &real) => {
                    ops.push(Op::EditReal { key, role, real });
                }
                (Some(_), Some(_)) => {}
            }
        }
    }
    ops
}

/// Equal in what the data plane keeps of a real it already holds (the port it knows the real by
/// is the same on both sides).
fn same_settings(a: &Real, b: &Real) -> bool {
    a.forward == b.forward
        && a.weight == b.weight
        && a.upper_threshold == b.upper_threshold
        && a.lower_threshold == b.lower_threshold
}

impl DesiredTable {
    /// Carries out `ops` on this table, as a data plane would: afterwards it holds what the ops
    /// lead to. An op on something absent (a real of a virtual that is not there) does nothing,
    /// and an add of something present changes it, as the IPVS backend treats `EEXIST`.
    pub fn apply_ops(&mut self, ops: &[Op]) {
        for op in ops {
            self.apply_op(op);
        }
    }

    fn apply_op(&mut self, op: &Op) {
        let key = *op.key();
        match op {
            Op::AddVirtual { attrs, .. } | Op::EditVirtual { attrs, .. } => {
                let service = self.services.entry(key).or_insert_with(|| Service {
                    attrs: attrs.clone(),
                    reals: Vec::new(),
                    fallback: None,
                });
                service.attrs = attrs.clone();
            }
            Op::DeleteVirtual { .. } => {
                self.services.remove(&key);
            }
            Op::AddReal { role, real, .. } | Op::EditReal { role, real, .. } => {
                let Some(service) = self.services.get_mut(&key) else {
                    return;
                };
                match role {
                    Role::Fallback => service.fallback = Some(*real),
                    Role::Real => match find(&service.reals, &key, real.dest(&key)) {
                        Some(i) => service.reals[i] = *real,
                        None => service.reals.push(*real),
                    },
                }
            }
            Op::DeleteReal { role, real, .. } => {
                let Some(service) = self.services.get_mut(&key) else {
                    return;
                };
                match role {
                    Role::Fallback => {
                        if service
                            .fallback
                            .is_some_and(|f| f.dest(&key) == real.dest(&key))
                        {
                            service.fallback = None;
                        }
                    }
                    Role::Real => {
                        if let Some(i) = find(&service.reals, &key, real.dest(&key)) {
                            service.reals.remove(i);
                        }
                    }
                }
            }
        }
    }
}

fn find(reals: &[Real], key: &ServiceKey, dest: (IpAddr, u16)) -> Option<usize> {
    reals.iter().position(|r| r.dest(key) == dest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{BackendKind, Forwarding, Persistence, Protocol};

    fn key(port: u16) -> ServiceKey {
        ServiceKey::Inet {
            protocol: Protocol::Tcp,
            addr: "192.0.2.1".parse().unwrap(),
            port,
        }
    }

    fn real(last: u8, port: u16, forward: Forwarding, weight: u32) -> Real {
        Real {
            addr: IpAddr::from([192, 0, 2, last]),
            port,
            forward,
            weight,
            upper_threshold: 0,
            lower_threshold: 0,
        }
    }

    fn service(reals: Vec<Real>, fallback: Option<Real>) -> Service {
        Service {
            attrs: ServiceAttrs::default(),
            reals,
            fallback,
        }
    }

    fn table(services: Vec<(ServiceKey, Service)>) -> DesiredTable {
        DesiredTable {
            services: services.into_iter().collect(),
        }
    }

    #[test]
    fn a_new_virtual_comes_with_its_reals_then_its_fallback() {
        let k = key(80);
        let r1 = real(11, 80, Forwarding::Gate, 3);
        let fb = real(1, 80, Forwarding::Gate, 1);
        let ops = diff(
            &DesiredTable::default(),
            &table(vec![(k, service(vec![r1], Some(fb)))]),
        );
        assert_eq!(
            ops,
            [
                Op::AddVirtual {
                    key: k,
                    attrs: ServiceAttrs::default()
                },
                Op::AddReal {
                    key: k,
                    role: Role::Real,
                    real: r1
                },
                Op::AddReal {
                    key: k,
                    role: Role::Fallback,
                    real: fb
                },
            ]
        );
    }

    #[test]
    fn a_virtual_that_goes_loses_its_reals_first() {
        let k = key(80);
        let r1 = real(11, 80, Forwarding::Gate, 3);
        let ops = diff(
            &table(vec![(k, service(vec![r1], None))]),
            &DesiredTable::default(),
        );
        assert_eq!(
            ops,
            [
                Op::DeleteReal {
                    key: k,
                    role: Role::Real,
                    real: r1
                },
                Op::DeleteVirtual { key: k },
            ]
        );
    }

    #[test]
    fn reals_are_matched_by_the_port_the_data_plane_gives_them() {
        let k = key(80);
        // Configured on 8080; a direct-routing real is held on the virtual's port.
        let configured = real(11, 8080, Forwarding::Gate, 3);
        let held = real(11, 80, Forwarding::Gate, 3);
        let ops = diff(
            &table(vec![(k, service(vec![held], None))]),
            &table(vec![(k, service(vec![configured], None))]),
        );
        assert_eq!(ops, []);
        // Masquerading keeps the real's port: 8080 is another real than 80.
        let masq = real(11, 8080, Forwarding::Masq, 3);
        let ops = diff(
            &table(vec![(k, service(vec![held], None))]),
            &table(vec![(k, service(vec![masq], None))]),
        );
        assert_eq!(ops.len(), 2, "{ops:?}");
        assert!(matches!(ops[0], Op::AddReal { .. }));
        assert!(matches!(ops[1], Op::DeleteReal { .. }));
    }

    #[test]
    fn weights_thresholds_and_attributes_are_edits() {
        let k = key(80);
        let before = service(vec![real(11, 80, Forwarding::Gate, 3)], None);
        let mut after = before.clone();
        after.reals[0].weight = 0;
        after.reals[0].upper_threshold = 100;
        after.attrs.persistence = Some(Persistence {
            timeout_secs: 300,
            prefix_len: 24,
        });
        after.attrs.backend = BackendKind::Ipvs;
        let ops = diff(
            &table(vec![(k, before.clone())]),
            &table(vec![(k, after.clone())]),
        );
        assert_eq!(
            ops,
            [
                Op::EditVirtual {
                    key: k,
                    attrs: after.attrs.clone()
                },
                Op::EditReal {
                    key: k,
                    role: Role::Real,
                    real: after.reals[0]
                },
            ]
        );
    }

    #[test]
    fn a_fallback_that_moves_is_deleted_then_added() {
        let k = key(80);
        let old = real(1, 80, Forwarding::Gate, 1);
        let new = real(2, 80, Forwarding::Masq, 1);
        let ops = diff(
            &table(vec![(k, service(vec![], Some(old)))]),
            &table(vec![(k, service(vec![], Some(new)))]),
        );
        assert_eq!(
            ops,
            [
                Op::DeleteReal {
                    key: k,
                    role: Role::Fallback,
                    real: old
                },
                Op::AddReal {
                    key: k,
                    role: Role::Fallback,
                    real: new
                },
            ]
        );
    }

    /// Tiny deterministic generator (xorshift), so the property runs the same every time.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    fn random_table(rng: &mut Rng) -> DesiredTable {
        let forwards = [Forwarding::Gate, Forwarding::Masq, Forwarding::Ipip];
        let schedulers = ["wrr", "rr", "sh", "lc"];
        let mut services = Vec::new();
        for port in [80, 443, 53] {
            if rng.below(4) == 0 {
                continue;
            }
            let mut reals: Vec<Real> = Vec::new();
            for _ in 0..rng.below(5) {
                let r = real(
                    10 + rng.below(4) as u8,
                    [80, 8080][rng.below(2) as usize],
                    forwards[rng.below(3) as usize],
                    rng.below(3) as u32,
                );
                // A data plane holds a real once (the director keeps the first line).
                if !reals
                    .iter()
                    .any(|o| o.dest(&key(port)) == r.dest(&key(port)))
                {
                    reals.push(r);
                }
            }
            let fallback =
                (rng.below(2) == 0).then(|| real(1, 80, forwards[rng.below(3) as usize], 1));
            let mut s = service(reals, fallback);
            s.attrs.scheduler = schedulers[rng.below(4) as usize].into();
            s.attrs.one_packet = rng.below(2) == 0;
            services.push((key(port), s));
        }
        table(services)
    }

    /// What a data plane holds after executing the diff is what was desired (up to the order
    /// of reals, which only a fresh virtual takes from the desired table).
    #[test]
    fn executing_the_diff_reaches_the_desired_table() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        // As a data plane holds it: ports it gives the reals, in address order.
        let sorted = |t: &DesiredTable| {
            let mut t = t.clone();
            for (k, s) in t.services.iter_mut() {
                for r in s.reals.iter_mut().chain(s.fallback.as_mut()) {
                    r.port = r.dest(k).1;
                }
                s.reals.sort_by_key(|r| (r.addr, r.port));
            }
            t
        };
        for _ in 0..2000 {
            let held = random_table(&mut rng);
            let desired = random_table(&mut rng);
            let ops = diff(&held, &desired);
            let mut reached = held.clone();
            reached.apply_ops(&ops);
            assert_eq!(sorted(&reached), sorted(&desired), "ops {ops:?}");
            assert_eq!(diff(&desired, &desired), []);
        }
    }
}
