//! Property test: user space's model of the scheduling decision (`backend::xdp::model`) and the
//! real XDP program agree on a large random corpus of packets, weight changes, reals coming and
//! going, scheduler and persistence changes and clock steps; the packets include ICMP errors
//! about the flows, first fragments and later fragments (with and without their first), and a
//! third of the reals are `ipip` (the tunnel program sends their packets). On a mismatch the seed
//! and step are printed; rerun one seed with `MODEL_SEED=<seed>`.

use std::{collections::HashMap, net::IpAddr};

use xdirectord::{
    backend::xdp::{
        RealPath,
        model::{Decision, Model, ModelPacket},
    },
    table::{
        DesiredTable, Forwarding, Persistence, Protocol, Real, Service, ServiceAttrs, ServiceKey,
    },
};
use xdirectord_tests::{
    harness::{Harness, XDP_DROP, XDP_PASS, XDP_REDIRECT, XDP_TX},
    packet::{ACK, DIRECTOR_MAC, FIN, Frame, L4, PSH, RST, SYN},
    table::{key, mac_of, real},
};

/// xorshift64*: a small deterministic generator, so a failing seed replays exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const SCHEDULERS: [&str; 9] = ["wrr", "rr", "sh", "dh", "mh", "lc", "wlc", "sed", "nq"];
const REAL4: [&str; 5] = ["10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.1.4", "10.0.1.5"];
const REAL6: [&str; 3] = ["fd00::1:1", "fd00::1:2", "fd00::1:3"];
const CLIENTS4: [&str; 6] = [
    "192.0.2.1",
    "192.0.2.2",
    "192.0.2.130",
    "198.51.100.7",
    "203.0.113.9",
    "203.0.113.10",
];
const CLIENTS6: [&str; 3] = ["2001:db8::1", "2001:db8::2", "2001:db8:1::1"];

/// A real of `weight`, reached by direct routing or, one time in three, through a tunnel: the
/// decision is the same, the packet leaves another way.
fn random_real(rng: &mut Rng, addr: &str, weight: u32) -> Real {
    let forward = if rng.below(3) == 0 {
        Forwarding::Ipip
    } else {
        Forwarding::Gate
    };
    Real {
        forward,
        ..real(addr, weight)
    }
}

/// A random virtual service over `pool`.
fn random_service(rng: &mut Rng, pool: &[&str]) -> Service {
    let mut reals = Vec::new();
    for addr in pool {
        if rng.below(4) != 0 {
            let weight = rng.below(5) as u32;
            reals.push(random_real(rng, addr, weight));
        }
    }
    Service {
        attrs: ServiceAttrs {
            scheduler: rng.pick(&SCHEDULERS).to_string(),
            persistence: (rng.below(3) == 0).then(|| Persistence {
                timeout_secs: 1 + rng.below(5) as u32,
                prefix_len: *rng.pick(&[32, 24, 16]),
            }),
            ..ServiceAttrs::default()
        },
        reals,
        fallback: (rng.below(3) == 0).then(|| real(pool[pool.len() - 1], 1)),
    }
}

fn random_table(rng: &mut Rng) -> DesiredTable {
    let mut t = DesiredTable::default();
    t.services.insert(
        key(Protocol::Tcp, "10.0.0.100", 80),
        random_service(rng, &REAL4),
    );
    t.services.insert(
        key(Protocol::Udp, "10.0.0.100", 53),
        random_service(rng, &REAL4[..3]),
    );
    t.services.insert(
        key(Protocol::Tcp, "fd00::100", 80),
        random_service(rng, &REAL6),
    );
    if rng.below(2) == 0 {
        t.services.insert(
            key(Protocol::Tcp, "10.0.0.101", 443),
            random_service(rng, &REAL4[2..]),
        );
    }
    t
}

/// Small edits: a weight, a real in or out, a scheduler, persistence, the fallback.
fn mutate(rng: &mut Rng, t: &mut DesiredTable) {
    let keys: Vec<ServiceKey> = t.services.keys().copied().collect();
    let k = *rng.pick(&keys);
    let pool: &[&str] = match k {
        ServiceKey::Inet {
            addr: IpAddr::V6(_),
            ..
        } => &REAL6,
        _ => &REAL4,
    };
    let s = t.services.get_mut(&k).unwrap();
    match rng.below(6) {
        0 | 1 if !s.reals.is_empty() => {
            let i = rng.below(s.reals.len());
            s.reals[i].weight = rng.below(5) as u32;
        }
        2 if !s.reals.is_empty() => {
            s.reals.remove(rng.below(s.reals.len()));
        }
        2 | 3 => {
            let addr = *rng.pick(pool);
            if !s.reals.iter().any(|r| r.addr.to_string() == addr) {
                let weight = 1 + rng.below(4) as u32;
                s.reals.push(random_real(rng, addr, weight));
            }
        }
        4 => s.attrs.scheduler = rng.pick(&SCHEDULERS).to_string(),
        _ => {
            if rng.below(2) == 0 {
                s.fallback = s.fallback.is_none().then(|| real(pool[0], 1));
            } else {
                s.attrs.persistence = s.attrs.persistence.is_none().then_some(Persistence {
                    timeout_secs: 2,
                    prefix_len: 24,
                });
            }
        }
    }
}

fn random_packet(rng: &mut Rng, table: &DesiredTable) -> ModelPacket {
    let keys: Vec<ServiceKey> = table.services.keys().copied().collect();
    let ServiceKey::Inet {
        protocol,
        addr,
        port,
    } = *rng.pick(&keys)
    else {
        unreachable!()
    };
    let src: IpAddr = if addr.is_ipv4() {
        rng.pick(&CLIENTS4).parse().unwrap()
    } else {
        rng.pick(&CLIENTS6).parse().unwrap()
    };
    let (proto, tcp_flags) = match protocol {
        Protocol::Udp => (17, 0),
        Protocol::Tcp => (
            6,
            *rng.pick(&[SYN, SYN, ACK, ACK | PSH, FIN | ACK, RST, SYN | ACK]),
        ),
    };
    // Sometimes a port or address that is no VIP.
    let (dst, dport) = match rng.below(20) {
        0 => (addr, port + 1),
        _ => (addr, port),
    };
    ModelPacket {
        proto,
        tcp_flags,
        src,
        dst,
        sport: 1000 + rng.below(12) as u16,
        dport,
    }
}

fn frame(p: &ModelPacket) -> Vec<u8> {
    let (src, dst) = (p.src.to_string(), p.dst.to_string());
    if p.proto == 17 {
        Frame::udp(&src, p.sport, &dst, p.dport).bytes()
    } else {
        Frame::tcp(&src, p.sport, &dst, p.dport, p.tcp_flags).bytes()
    }
}

/// What a random input is, besides a packet with ports.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Ports,
    /// An ICMP error (fragmentation needed / packet too big) quoting a real's reply in the flow
    /// of the packet.
    IcmpError,
    /// The packet as the first fragment of datagram `id`.
    FirstFragment(u32),
    /// A later fragment of datagram `id` between the packet's addresses.
    LaterFragment(u32),
}

fn random_kind(rng: &mut Rng) -> Kind {
    // Few datagram ids, so that later fragments often find their first, and often not.
    let id = 1 + rng.below(4) as u32;
    match rng.below(12) {
        0 | 1 => Kind::IcmpError,
        2 => Kind::FirstFragment(id),
        3 | 4 => Kind::LaterFragment(id),
        _ => Kind::Ports,
    }
}

fn frame_of(kind: Kind, p: &ModelPacket) -> Vec<u8> {
    let (src, dst) = (p.src.to_string(), p.dst.to_string());
    let v4 = p.src.is_ipv4();
    match kind {
        Kind::Ports => frame(p),
        Kind::IcmpError => {
            let reply = if p.proto == 17 {
                Frame::udp(&dst, p.dport, &src, p.sport)
            } else {
                Frame::tcp(&dst, p.dport, &src, p.sport, ACK)
            };
            let (router, kind, quote) = if v4 {
                ("198.51.100.1", 3, 28)
            } else {
                ("2001:db8:ff::1", 2, 48)
            };
            Frame::new(router, &dst, L4::Icmp { kind, code: 4 })
                .payload(&reply.ip_bytes()[..quote])
                .bytes()
        }
        Kind::FirstFragment(id) => {
            let whole = if p.proto == 17 {
                Frame::udp(&src, p.sport, &dst, p.dport)
            } else {
                Frame::tcp(&src, p.sport, &dst, p.dport, p.tcp_flags)
            };
            if v4 {
                whole.ip_id(id as u16).frag(0x2000).bytes()
            } else {
                whole.ipv6_frag(0, true, id).bytes()
            }
        }
        Kind::LaterFragment(id) => {
            let later = Frame::new(&src, &dst, L4::Other(p.proto)).payload(&[0x77; 16]);
            if v4 {
                later.ip_id(id as u16).frag(9).bytes()
            } else {
                later.ipv6_frag(72, false, id).bytes()
            }
        }
    }
}

/// Keeps the test thread on one CPU: the program's round-robin cursors are per CPU, the model
/// has one.
fn pin_to_one_cpu() {
    // SAFETY: a zeroed cpu_set_t with one bit set, for the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set),
            0
        );
    }
}

fn run_seed(seed: u64, steps: usize) {
    pin_to_one_cpu();
    let mut rng = Rng(seed | 1);
    let mut h = Harness::new();
    let mut by_mac: HashMap<[u8; 6], IpAddr> = HashMap::new();
    for addr in REAL4.iter().chain(&REAL6) {
        let ip: IpAddr = addr.parse().unwrap();
        by_mac.insert(mac_of(ip), ip);
        h.paths.set(
            addr,
            RealPath::Neighbour {
                ifindex: 1,
                mac: mac_of(ip),
                src_mac: DIRECTOR_MAC,
                vlan: 0,
                mtu: 1500,
                source: Some(
                    if ip.is_ipv4() { "10.0.0.2" } else { "fd00::2" }
                        .parse()
                        .unwrap(),
                ),
            },
        );
    }
    let mut table = random_table(&mut rng);
    let mut model = Model::default();
    let mut now: u64 = 1_000_000_000;
    h.set_clock(now);
    h.apply(&table);
    model.sync_tables(&h.dataplane).unwrap();

    for step in 0..steps {
        match rng.below(100) {
            0..=5 => {
                mutate(&mut rng, &mut table);
                h.apply(&table);
                model.sync_tables(&h.dataplane).unwrap();
            }
            6..=8 => {
                now += rng.below(4) as u64 * 1_000_000_000;
                h.set_clock(now);
            }
            _ => {
                let packet = random_packet(&mut rng, &table);
                let kind = random_kind(&mut rng);
                let outcome = h.run(&frame_of(kind, &packet));
                let program = match outcome.action {
                    XDP_PASS => Seen::Pass,
                    XDP_DROP => Seen::Drop,
                    XDP_TX | XDP_REDIRECT => {
                        Seen::To(by_mac[&<[u8; 6]>::try_from(&outcome.frame[..6]).unwrap()])
                    }
                    other => panic!("seed {seed} step {step}: verdict {other}"),
                };
                let decision = match kind {
                    Kind::Ports => model.decide(&packet, now),
                    Kind::IcmpError => model.decide_icmp_error(&packet, now),
                    Kind::FirstFragment(id) => model.decide_first_fragment(&packet, id, now),
                    Kind::LaterFragment(id) => model.decide_later_fragment(&packet, id, now),
                };
                let expected = seen_by_model(&h, decision);
                if program != expected {
                    for p in h.dataplane.programmed().unwrap().values() {
                        for (id, def, w) in &p.reals {
                            eprintln!(
                                "{:?} real {id} {} w{w}: program {:?} model {:?}",
                                p.key,
                                xdirectord::backend::xdp::dataplane::real_addr(def),
                                h.dataplane.conns(*id).unwrap(),
                                model.conns.get(id)
                            );
                        }
                    }
                }
                assert_eq!(
                    program, expected,
                    "seed {seed} step {step}: {kind:?} {packet:?}\nprogram and model disagree (table {table:#?})"
                );
            }
        }
    }
    // The program's connection counts are the model's.
    for (id, (active, inactive)) in &model.conns {
        let (a, i) = h.dataplane.conns(*id).unwrap();
        assert_eq!(
            (a as i64, i as i64),
            (*active.max(&0), *inactive.max(&0)),
            "seed {seed}: real {id} counts"
        );
    }
}

/// What happened to a packet, in terms both sides can state: passed, dropped, or sent to an
/// address (a real and the fallback may share one; their ids differ, their MAC does not).
#[derive(Debug, PartialEq)]
enum Seen {
    Pass,
    Drop,
    To(IpAddr),
}

fn seen_by_model(h: &Harness, decision: Decision) -> Seen {
    match decision {
        Decision::Pass => Seen::Pass,
        Decision::NoReal => Seen::Drop,
        Decision::Real(id) => {
            let def = h.dataplane.maps.reals.get(&id, 0).unwrap();
            Seen::To(xdirectord::backend::xdp::dataplane::real_addr(&def))
        }
    }
}

#[test]
fn model_and_program_agree() {
    // Reading a slot's tables back copies 128 KiB values: more stack than a test thread has.
    let worker = std::thread::Builder::new().stack_size(64 << 20).spawn(|| {
        if let Ok(seed) = std::env::var("MODEL_SEED") {
            run_seed(seed.parse().expect("MODEL_SEED"), 4000);
            return;
        }
        for seed in 1..=6u64 {
            run_seed(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15), 2500);
        }
    });
    if let Err(panic) = worker.expect("thread").join() {
        std::panic::resume_unwind(panic);
    }
}
