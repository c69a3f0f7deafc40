//! xdirectord on IPVS leaves the table ldirectord leaves: both run on the same configuration in
//! the IPVS test guest (docs/ipvs-vm.md), each in a network namespace of its own (IPVS is per
//! namespace), and their tables (`ipvsadm -S -n`, sorted, and `ipvsadm -L -n --thresholds`, which
//! `-S` leaves out) are compared after every event: the start, a real failing, every real
//! failing (the fallback), every real back, a reload, and the stop.
//!
//! Health is driven the same way for both: they ping IPv4 reals, which live on lo of a third
//! namespace (a real is down while its address is gone from there), and run an external check
//! for IPv6 reals (down while `/tmp/xdvm/down/<its address>` exists). Each configuration uses
//! addresses of its own, so cases share a pair of directors and pairs run side by side.

use std::time::Duration;

use xdirectord_tests::vm::Vm;

/// The check both directors run: down while the real's file exists.
/// (An IPv6 real may come in brackets.)
const CHECK: &str =
    "#!/bin/sh\nr=${3#[}\nr=${r%]}\n[ -e \"/tmp/xdvm/down/$r\" ] && exit 1\nexit 0\n";

/// One configuration, and what a reload changes it to (`None`: the same file; in each group,
/// one case without a reload of its own gets one more virtual, a masquerading one).
struct Case {
    name: &'static str,
    config: &'static str,
    reload: Option<&'static str>,
}

const fn case(name: &'static str, config: &'static str) -> Case {
    Case {
        name,
        config,
        reload: None,
    }
}

const fn reloaded(name: &'static str, config: &'static str, reload: &'static str) -> Case {
    Case {
        name,
        config,
        reload: Some(reload),
    }
}

/// The corpus. Every virtual gets the external check (added by [`prepare`]) unless it sets its
/// own check type; global directives come first. Case N uses 10.N.0.0/16 and fd00:N::/32 for
/// its virtuals and reals (N from 101).
const CASES: &[Case] = &[
    case(
        "gate-wrr",
        "virtual=10.101.0.1:80\n\treal=10.101.1.1:80 gate 10\n\treal=10.101.1.2:80 gate 20\n\treal=10.101.1.3:80 gate 30\n",
    ),
    case(
        "masq-rr-ports",
        "virtual=10.102.0.1:80\n\treal=10.102.1.1:8080 masq\n\treal=10.102.1.2:8081 masq 3\n\tscheduler=rr\n",
    ),
    case(
        "ipip-wlc",
        "virtual=10.103.0.1:443\n\treal=10.103.1.1:443 ipip 5\n\treal=10.103.1.2:443 ipip\n\tscheduler=wlc\n",
    ),
    case(
        "gate-port-rewritten",
        "virtual=10.104.0.1:80\n\treal=10.104.1.1:8080 gate\n\treal=10.104.1.2 gate 2\n",
    ),
    case(
        "masq-no-port",
        "virtual=10.105.0.1:80\n\treal=10.105.1.1 masq\n\treal=10.105.1.2:80 masq\n",
    ),
    case(
        "quiescent-yes",
        "quiescent=yes\nvirtual=10.106.0.1:80\n\treal=10.106.1.1:80 gate\n\treal=10.106.1.2:80 gate 4\n",
    ),
    case(
        "quiescent-per-virtual",
        "virtual=10.107.0.1:80\n\treal=10.107.1.1:80 gate\n\treal=10.107.1.2:80 gate\n\tquiescent=yes\n\
         virtual=10.107.0.2:80\n\treal=10.107.1.3:80 gate\n\treal=10.107.1.4:80 gate\n\tquiescent=no\n",
    ),
    case(
        "readdquiescent",
        "quiescent=yes\nreaddquiescent=yes\nvirtual=10.108.0.1:80\n\treal=10.108.1.1:80 gate\n\treal=10.108.1.2:80 gate\n",
    ),
    case(
        "weight-zero",
        "virtual=10.109.0.1:80\n\treal=10.109.1.1:80 gate 0\n\treal=10.109.1.2:80 gate 1\n",
    ),
    case(
        "fallback-local",
        "virtual=10.110.0.1:80\n\treal=10.110.1.1:80 gate\n\treal=10.110.1.2:80 gate\n\tfallback=127.0.0.1:80 gate\n",
    ),
    case(
        "fallback-masq",
        "virtual=10.111.0.1:80\n\treal=10.111.1.1:80 masq\n\tfallback=10.111.9.9:8080 masq\n",
    ),
    case(
        "global-fallback",
        "fallback=10.112.9.9 gate\nvirtual=10.112.0.1:80\n\treal=10.112.1.1:80 gate\n\
         virtual=10.112.0.2:443\n\treal=10.112.1.2:443 gate\n",
    ),
    case(
        "global-fallback-masq-port",
        "fallback=10.113.9.9:8080 masq\nvirtual=10.113.0.1:80\n\treal=10.113.1.1:80 masq\n",
    ),
    case(
        "persistent",
        "virtual=10.114.0.1:443\n\treal=10.114.1.1:443 gate\n\treal=10.114.1.2:443 gate\n\tpersistent=600\n",
    ),
    case(
        "persistent-netmask",
        "virtual=10.115.0.1:443\n\treal=10.115.1.1:443 gate\n\tpersistent=300\n\tnetmask=255.255.255.0\n",
    ),
    case(
        "port-zero-persistent",
        "virtual=10.116.0.1:0\n\treal=10.116.1.1 gate\n\treal=10.116.1.2 gate\n\tpersistent=60\n",
    ),
    case(
        "udp-dns-ops",
        "virtual=10.117.0.1:53\n\treal=10.117.1.1:53 gate\n\treal=10.117.1.2:53 gate\n\tprotocol=udp\n\tops=yes\n",
    ),
    case(
        "tcp-ops-ignored",
        "virtual=10.118.0.1:80\n\treal=10.118.1.1:80 gate\n\tops=yes\n",
    ),
    case(
        "udp-masq",
        "virtual=10.119.0.1:5060\n\treal=10.119.1.1:5061 masq\n\tprotocol=udp\n\tscheduler=sh\n",
    ),
    case(
        "fwmark",
        "virtual=7\n\treal=10.120.1.1 gate\n\treal=10.120.1.2 gate 2\n\tscheduler=rr\n",
    ),
    case(
        "fwmark-persistent-masq",
        "virtual=8\n\treal=10.121.1.1:80 masq\n\treal=10.121.1.2:80 masq\n\tpersistent=300\n\tnetmask=255.255.0.0\n",
    ),
    case(
        "fwmark6",
        "virtual6=9\n\treal6=[fd00:122::11] gate\n\treal6=[fd00:122::12] gate\n",
    ),
    case(
        "ipv6-gate",
        "virtual6=[fd00:123::1]:80\n\treal6=[fd00:123::11]:80 gate\n\treal6=[fd00:123::12]:80 gate 3\n",
    ),
    case(
        "ipv6-masq-persistent",
        "virtual6=[fd00:124::1]:443\n\treal6=[fd00:124::11]:8443 masq\n\tpersistent=100\n\tnetmask=64\n",
    ),
    case(
        "ipv6-fallback",
        "virtual6=[fd00:125::1]:80\n\treal6=[fd00:125::11]:80 gate\n\tfallback6=[::1]:80 gate\n",
    ),
    case(
        "thresholds",
        "virtual=10.126.0.1:80\n\treal=10.126.1.1:80 gate 1 l:10 u:100\n\treal=10.126.1.2:80 gate 1 u:50\n",
    ),
    case(
        "threshold-lower-only",
        "virtual=10.127.0.1:80\n\treal=10.127.1.1:80 gate 1 l:10\n\treal=10.127.1.2:80 gate\n",
    ),
    case(
        "range",
        "virtual=10.128.0.1:80\n\treal=10.128.1.1->10.128.1.4:80 gate 2\n",
    ),
    case(
        "sched-lc",
        "virtual=10.129.0.1:80\n\treal=10.129.1.1:80 gate\n\treal=10.129.1.2:80 gate\n\tscheduler=lc\n",
    ),
    case(
        "sched-lblc",
        "virtual=10.130.0.1:80\n\treal=10.130.1.1:80 gate\n\treal=10.130.1.2:80 gate\n\tscheduler=lblc\n",
    ),
    case(
        "sched-lblcr",
        "virtual=10.131.0.1:80\n\treal=10.131.1.1:80 gate\n\tscheduler=lblcr\n",
    ),
    case(
        "sched-dh",
        "virtual=10.132.0.1:80\n\treal=10.132.1.1:80 gate\n\treal=10.132.1.2:80 gate\n\tscheduler=dh\n",
    ),
    case(
        "sched-sh-flags",
        "virtual=10.133.0.1:80\n\treal=10.133.1.1:80 gate\n\treal=10.133.1.2:80 gate\n\tscheduler=sh\n\tschedflags=sh-fallback,sh-port\n",
    ),
    case(
        "sched-sed",
        "virtual=10.134.0.1:80\n\treal=10.134.1.1:80 gate 2\n\treal=10.134.1.2:80 gate\n\tscheduler=sed\n",
    ),
    case(
        "sched-nq",
        "virtual=10.135.0.1:80\n\treal=10.135.1.1:80 gate\n\treal=10.135.1.2:80 gate\n\tscheduler=nq\n",
    ),
    case(
        "sched-fo",
        "virtual=10.136.0.1:80\n\treal=10.136.1.1:80 gate 10\n\treal=10.136.1.2:80 gate 5\n\tscheduler=fo\n",
    ),
    case(
        "sched-ovf",
        "virtual=10.137.0.1:80\n\treal=10.137.1.1:80 gate 10 u:20\n\treal=10.137.1.2:80 gate 5\n\tscheduler=ovf\n",
    ),
    case(
        "sched-mh-flags",
        "virtual=10.138.0.1:80\n\treal=10.138.1.1:80 gate\n\treal=10.138.1.2:80 gate\n\tscheduler=mh\n\tschedflags=mh-port\n",
    ),
    case(
        "sched-flag-1",
        "virtual=10.139.0.1:80\n\treal=10.139.1.1:80 gate\n\tscheduler=wrr\n\tschedflags=flag-1,flag-3\n",
    ),
    case(
        "cleanstop-no",
        "cleanstop=no\nvirtual=10.140.0.1:80\n\treal=10.140.1.1:80 gate\n\treal=10.140.1.2:80 gate 2\n",
    ),
    case(
        "cleanstop-per-virtual",
        "virtual=10.141.0.1:80\n\treal=10.141.1.1:80 gate\n\tcleanstop=no\n\
         virtual=10.141.0.2:80\n\treal=10.141.1.2:80 gate\n\tcleanstop=yes\n",
    ),
    case(
        "same-real-two-virtuals",
        "virtual=10.142.0.1:80\n\treal=10.142.1.1:80 gate\n\
         virtual=10.142.0.1:443\n\treal=10.142.1.1:443 gate\n",
    ),
    case(
        "mixed-methods",
        "virtual=10.143.0.1:80\n\treal=10.143.1.1:80 gate\n\treal=10.143.1.2:80 masq\n\treal=10.143.1.3:80 ipip\n",
    ),
    case(
        "failurecount",
        "failurecount=2\nvirtual=10.144.0.1:80\n\treal=10.144.1.1:80 gate\n\treal=10.144.1.2:80 gate\n",
    ),
    case(
        "checktype-on",
        "virtual=10.145.0.1:80\n\treal=10.145.1.1:80 gate\n\treal=10.145.1.2:80 masq\n\tchecktype=on\n",
    ),
    reloaded(
        "reload-weights-scheduler-persistence",
        "virtual=10.146.0.1:80\n\treal=10.146.1.1:80 gate 1\n\treal=10.146.1.2:80 gate 2\n\tscheduler=wrr\n",
        "virtual=10.146.0.1:80\n\treal=10.146.1.1:80 gate 5\n\treal=10.146.1.2:80 gate 2\n\tscheduler=lc\n\tpersistent=300\n",
    ),
    reloaded(
        "reload-adds-and-removes-virtuals",
        "virtual=10.147.0.1:80\n\treal=10.147.1.1:80 gate\n\
         virtual=10.147.0.2:80\n\treal=10.147.1.2:80 masq\n",
        "virtual=10.147.0.2:80\n\treal=10.147.1.2:80 masq\n\treal=10.147.1.3:80 masq\n\
         virtual=10.147.0.3:80\n\treal=10.147.1.4:80 ipip\n\tscheduler=sh\n",
    ),
    reloaded(
        "reload-methods-and-reals",
        "virtual=10.148.0.1:80\n\treal=10.148.1.1:80 gate\n\treal=10.148.1.2:80 gate\n",
        "virtual=10.148.0.1:80\n\treal=10.148.1.1:80 masq\n\treal=10.148.1.3:80 gate 7\n\tpersistent=60\n\tnetmask=255.255.255.0\n",
    ),
    reloaded(
        "reload-drops-persistence-and-ops",
        "virtual=10.149.0.1:53\n\treal=10.149.1.1:53 gate\n\tprotocol=udp\n\tops=yes\n\tpersistent=100\n",
        "virtual=10.149.0.1:53\n\treal=10.149.1.1:53 gate\n\tprotocol=udp\n\tscheduler=rr\n",
    ),
    reloaded(
        "reload-quiescent-and-fallback",
        "virtual=10.150.0.1:80\n\treal=10.150.1.1:80 gate\n\treal=10.150.1.2:80 gate\n",
        "quiescent=yes\nvirtual=10.150.0.1:80\n\treal=10.150.1.1:80 gate\n\treal=10.150.1.2:80 gate\n\tfallback=127.0.0.1:80\n",
    ),
];

/// The job that prints a namespace's table as read: `ipvsadm -S -n`, a line `@@`, then
/// `ipvsadm -L -n --thresholds` (which `-S` leaves out). nsenter, not `ip netns exec`: lighter.
fn table_script(ns: &str) -> String {
    format!(
        "nsenter --net=/run/netns/{ns} sh -c 'ipvsadm -S -n; echo @@; ipvsadm -L -n --thresholds'"
    )
}

/// A table as compared: the rules sorted, then the thresholds (without ipvsadm's header).
fn as_compared(read: &str) -> String {
    let (rules, listing) = read.split_once("@@\n").expect("the separator");
    let mut rules: Vec<&str> = rules.lines().collect();
    rules.sort_unstable();
    let mut out = String::new();
    for line in rules.into_iter().chain(listing.lines().skip(3)) {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The case's file for one director: its log, the checks, then the case's own directives.
/// IPv4 reals are pinged (no process per check: the guest has one vCPU); IPv6 ones, which
/// ldirectord cannot ping, get the external check.
fn prepare(text: &str, log: &str) -> String {
    let mut out = format!("checktimeout=3\ncheckinterval=2\nlogfile=\"{log}\"\n");
    for line in text.lines() {
        out.push_str(line);
        out.push('\n');
        if line.starts_with("virtual6") || line.starts_with("virtual=[") {
            out.push_str("\tchecktype=external\n\tcheckcommand=\"/tmp/xdvm/check\"\n");
        } else if line.starts_with("virtual") {
            out.push_str("\tchecktype=ping\n");
        }
    }
    out
}

/// How many cases without global directives share one pair of directors.
const GROUP_SIZE: usize = 8;
/// How many guests run groups.
const GUESTS: usize = 2;
/// How many groups run at once on each guest.
const WORKERS_PER_GUEST: usize = 2;

/// The reload of a case without one: one more virtual, masquerading.
fn with_one_more(case: &Case, n: usize) -> String {
    format!(
        "{}virtual=10.{n}.0.99:8099\n\treal=10.{n}.1.99:80 masq 3\n\tscheduler=rr\n",
        case.config
    )
}

/// What a group's file becomes at its reload: each case's own reload, and one more virtual, a
/// masquerading one, after the first case that has none.
fn reload(members: &[(usize, &Case)]) -> String {
    let mut added = false;
    members
        .iter()
        .map(|&(n, c)| match c.reload {
            Some(text) => text.to_string(),
            None if !added => {
                added = true;
                with_one_more(c, n)
            }
            None => c.config.to_string(),
        })
        .collect()
}

/// A case's global directives (the lines before its first virtual), of its file and of its
/// reload.
fn globals(case: &Case) -> Vec<&'static str> {
    let first = |text: &'static str| text.lines().take_while(|l| !l.starts_with("virtual"));
    first(case.config)
        .chain(case.reload.into_iter().flat_map(first))
        .collect()
}

/// Cases run together by one pair of directors: the same events reach every case of the group
/// at once, so a group costs about what one case costs. A case with global directives runs
/// alone; the others, whose virtuals and reals use addresses of their own, share a file.
struct Group {
    name: String,
    config: String,
    reload: String,
    /// Each case's reals, in the order of its file.
    reals: Vec<Vec<String>>,
    /// Every real of the file and of its reload.
    every_real: Vec<String>,
}

fn groups(cases: &[(usize, &Case)], size: usize) -> Vec<Group> {
    let group = |name: String, members: &[(usize, &Case)]| Group {
        name,
        config: members.iter().map(|(_, c)| c.config).collect(),
        reload: reload(members),
        reals: members.iter().map(|(_, c)| reals(c.config)).collect(),
        every_real: members
            .iter()
            .flat_map(|&(n, c)| {
                let mut all = reals(c.config);
                all.extend(reals(&reload(&[(n, c)])));
                all
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect(),
    };
    let (alone, shared): (Vec<_>, Vec<_>) = cases.iter().partition(|(_, c)| !globals(c).is_empty());
    let mut out: Vec<Group> = alone
        .iter()
        .map(|&&(n, c)| group(c.name.to_string(), &[(n, c)]))
        .collect();
    for chunk in shared.chunks(size) {
        let members: Vec<(usize, &Case)> = chunk.iter().map(|&&(n, c)| (n, c)).collect();
        let name = if members.len() == 1 {
            members[0].1.name.to_string()
        } else {
            format!("group{}", members[0].0)
        };
        out.push(group(name, &members));
    }
    out
}

/// The real addresses of a configuration (ranges expanded as lb-config expands them).
fn reals(text: &str) -> Vec<String> {
    let config = lb_config::parse(
        text.as_bytes(),
        "x.cf".as_ref(),
        &lb_config::testing::StaticEnvironment::default(),
    )
    .expect("a valid case");
    let mut reals: Vec<String> = config
        .virtuals
        .iter()
        .flat_map(|vs| vs.reals.iter().map(|r| r.address.to_string()))
        .collect();
    reals.dedup();
    reals
}

/// Both directors' namespaces, files and processes for one case; everything goes on drop.
struct Pair<'a> {
    vm: &'a Vm,
    name: String,
    xdirectord: String,
}

impl<'a> Pair<'a> {
    fn ns(&self, who: &str) -> String {
        format!("{who}-{}", self.name)
    }

    fn file(&self, who: &str) -> String {
        format!("/tmp/xdvm/{who}/{}.cf", self.name)
    }

    fn log(&self, who: &str) -> String {
        format!("/tmp/xdvm/{who}/{}.log", self.name)
    }

    /// The pair's namespaces: `ld-NAME` and `xd-NAME`, each with a veth into `rs-NAME`, which
    /// holds every IPv4 real of `reals` on lo (a real is up while it answers pings there) and
    /// answers for a missing one with an ICMP error at once.
    fn new(vm: &'a Vm, name: &str, xdirectord: &str, reals: &[String]) -> Pair<'a> {
        let pair = Pair {
            vm,
            name: name.to_string(),
            xdirectord: xdirectord.to_string(),
        };
        let rs = format!("rs-{name}");
        let mut script = format!(
            "set -e
             ip netns add {rs}
             ip -n {rs} link set lo up
             ip netns exec {rs} sysctl -qw net.ipv4.ip_forward=1 net.ipv4.icmp_ratelimit=0\n"
        );
        for (k, who) in [(1, "ld"), (2, "xd")] {
            let ns = pair.ns(who);
            // IPVS takes only unicast destinations: the namespace routes 10/8 (to the reals'
            // namespace) and fd00::/8.
            script.push_str(&format!(
                "ip netns add {ns}
                 ip -n {ns} link set lo up
                 ip link add d0 netns {ns} type veth peer name {who} netns {rs}
                 ip -n {ns} link set d0 up
                 ip -n {rs} link set {who} up
                 ip -n {ns} address add 192.168.{k}.1/24 dev d0
                 ip -n {rs} address add 192.168.{k}.2/24 dev {who}
                 ip -n {ns} route add 10.0.0.0/8 via 192.168.{k}.2
                 ip -n {ns} address add fd00::fe/8 dev d0 nodad\n"
            ));
        }
        for real in reals.iter().filter(|r| !r.contains(':')) {
            script.push_str(&format!("ip -n {rs} address add {real}/32 dev lo\n"));
        }
        vm.run_ok(&script);
        pair
    }

    fn write(&self, text: &str) {
        for who in ["ld", "xd"] {
            let path = self.file(who);
            let content = prepare(text, &self.log(who));
            let staged = self
                .vm
                .write_file(&format!("{who}-{}.cf", self.name), content);
            self.vm.run_ok(&format!("cp {staged} {path}"));
        }
    }

    fn ldirectord(&self, command: &str) -> xdirectord_tests::vm::Output {
        self.vm.run(&format!(
            "ip netns exec {} /usr/sbin/ldirectord {} {command}",
            self.ns("ld"),
            self.file("ld")
        ))
    }

    fn xdirectord(&self, command: &str) -> xdirectord_tests::vm::Output {
        self.vm.run(&format!(
            "ip netns exec {} {} {} {command}",
            self.ns("xd"),
            self.xdirectord,
            self.file("xd")
        ))
    }

    /// `ldirectord FILE command` and `xdirectord FILE command`, side by side; both must succeed.
    fn both(&self, command: &str) {
        let (ld, xd) = std::thread::scope(|scope| {
            let ld = scope.spawn(|| self.ldirectord(command));
            let xd = self.xdirectord(command);
            (ld.join().expect("ldirectord's job"), xd)
        });
        for (who, out) in [("ldirectord", ld), ("xdirectord", xd)] {
            assert!(
                out.success(),
                "{}: {who} {command}: {out:?}\n{}",
                self.name,
                self.logs()
            );
        }
    }

    /// A namespace's table as compared: `ipvsadm -S -n` sorted, and the thresholds.
    fn table(&self, who: &str) -> String {
        as_compared(&self.vm.run_ok(&table_script(&self.ns(who))))
    }

    /// Both tables, read in one job.
    fn tables(&self) -> (String, String) {
        let out = self.vm.run_ok(&format!(
            "{}; echo '%%'; {}",
            table_script(&self.ns("ld")),
            table_script(&self.ns("xd"))
        ));
        let (ld, xd) = out.split_once("%%\n").expect("two tables");
        (as_compared(ld), as_compared(xd))
    }

    fn logs(&self) -> String {
        let read = |who| self.vm.run(&format!("cat {}", self.log(who))).stdout;
        format!(
            "--- ldirectord's log ---\n{}\n--- xdirectord's log ---\n{}",
            read("ld"),
            read("xd")
        )
    }

    /// Waits until ldirectord has reacted to an event (its table is no longer `before`, if
    /// the event changes it at all) and both tables have agreed, unchanged, for two seconds.
    fn converge(&self, event: &str, before: &str) {
        let started = std::time::Instant::now();
        let deadline = std::time::Instant::now() + Duration::from_secs(240);
        let reacted_by = std::time::Instant::now() + Duration::from_secs(20);
        let mut agreed_since: Option<(std::time::Instant, String)> = None;
        loop {
            let (ld, xd) = self.tables();
            let now = std::time::Instant::now();
            let reacted = ld != before || now > reacted_by;
            if reacted && ld == xd {
                match &agreed_since {
                    Some((since, table)) if *table == ld => {
                        if now.duration_since(*since) >= Duration::from_secs(2) {
                            eprintln!(
                                "ipvs_differential: {}: {event}, agreed after {:.0?}",
                                self.name,
                                started.elapsed()
                            );
                            return;
                        }
                    }
                    _ => agreed_since = Some((now, ld.clone())),
                }
            } else {
                agreed_since = None;
            }
            if now > deadline {
                panic!(
                    "{}: after {event}, the tables differ\n{}--- ldirectord ---\n{ld}\n--- xdirectord ---\n{xd}\n{}",
                    self.name,
                    difference(&ld, &xd),
                    self.logs()
                );
            }
            // Each look is a job of several processes in the guest, whose one vCPU the
            // directors need.
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// Takes `reals` down (or back up): an IPv4 real leaves the reals' namespace, an IPv6
    /// real's file for the external check appears.
    fn set_down(&self, reals: &[String], down: bool) {
        let rs = format!("rs-{}", self.name);
        // Idempotent: every real failing includes the first, which already has.
        let script: String = std::iter::once("set -e\n".to_string())
            .chain(reals.iter().map(|r| match (r.contains(':'), down) {
                (false, true) => format!(
                    "! ip -n {rs} -o address show dev lo to {r}/32 | grep -q . || \
                     ip -n {rs} address del {r}/32 dev lo\n"
                ),
                (false, false) => format!("ip -n {rs} address replace {r}/32 dev lo\n"),
                (true, true) => format!("touch /tmp/xdvm/down/{r}\n"),
                (true, false) => format!("rm -f /tmp/xdvm/down/{r}\n"),
            }))
            .collect();
        self.vm.run_ok(&script);
    }

    /// Waits until both daemons are gone (their pid files removed).
    fn wait_stopped(&self) {
        self.vm.run_ok(&format!(
            "for i in $(seq 300); do
                 [ -e /run/ldirectord.{n}.cf.pid ] || [ -e /run/xdirectord.{n}.cf.pid ] || exit 0
                 sleep 0.2
             done
             echo a director did not stop >&2; exit 1",
            n = self.name
        ));
    }
}

impl Drop for Pair<'_> {
    fn drop(&mut self) {
        // Only what still runs (a failed case) is stopped: a stop costs seconds in the guest.
        let _ = self.vm.run(&format!(
            "[ -e /run/ldirectord.{n}.cf.pid ] && ip netns exec ld-{n} /usr/sbin/ldirectord {ld} stop
             [ -e /run/xdirectord.{n}.cf.pid ] && ip netns exec xd-{n} {xd} {xdf} stop
             for i in $(seq 100); do
                 [ -e /run/ldirectord.{n}.cf.pid ] || [ -e /run/xdirectord.{n}.cf.pid ] || break
                 sleep 0.2
             done
             for who in ld xd; do ip netns exec $who-{n} ipvsadm -C; ip netns del $who-{n}; done
             ip netns del rs-{n}
             rm -f /tmp/xdvm/*/{n}.*",
            n = self.name,
            ld = self.file("ld"),
            xd = self.xdirectord,
            xdf = self.file("xd"),
        ));
    }
}

/// One group through every event.
fn run_group(vm: &Vm, xdirectord: &str, group: &Group) {
    let started = std::time::Instant::now();
    let pair = Pair::new(vm, &group.name, xdirectord, &group.every_real);
    pair.write(&group.config);
    let empty = pair.table("ld");

    pair.both("start");
    eprintln!(
        "ipvs_differential: {}: start at {:.0?}",
        group.name,
        started.elapsed()
    );
    pair.converge("the start", &empty);

    let first: Vec<String> = group.reals.iter().map(|r| r[0].clone()).collect();
    let every: Vec<String> = group
        .reals
        .concat()
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let before = pair.table("ld");
    pair.set_down(&first, true);
    pair.converge("the first real failing", &before);

    let before = pair.table("ld");
    pair.set_down(&every, true);
    pair.converge("every real failing", &before);

    let before = pair.table("ld");
    pair.set_down(&every, false);
    pair.converge("every real back", &before);

    let before = pair.table("ld");
    pair.write(&group.reload);
    pair.both("reload");
    eprintln!(
        "ipvs_differential: {}: reload at {:.0?}",
        group.name,
        started.elapsed()
    );
    pair.converge("the reload", &before);

    pair.both("stop");
    eprintln!(
        "ipvs_differential: {}: stop at {:.0?}",
        group.name,
        started.elapsed()
    );
    pair.wait_stopped();
    let (ld, xd) = (pair.table("ld"), pair.table("xd"));
    assert!(
        ld == xd,
        "{}: after the stop, the tables differ\n{}\n{}",
        group.name,
        difference(&ld, &xd),
        pair.logs()
    );
}

/// The lines only one of two tables has.
fn difference(ld: &str, xd: &str) -> String {
    let only = |a: &str, b: &str, who: &str| -> String {
        a.lines()
            .filter(|line| !b.lines().any(|other| other == *line))
            .map(|line| format!("only {who}: {line}\n"))
            .collect()
    };
    format!(
        "{}{}",
        only(ld, xd, "ldirectord"),
        only(xd, ld, "xdirectord")
    )
}

#[test]
fn xdirectord_leaves_the_table_ldirectord_leaves() {
    assert!(
        CASES.len() >= 40,
        "the issue asks for at least 40 configurations"
    );
    let binaries = xdirectord_tests::e2e::build().expect("build xdirectord");
    let xdirectord = binaries.xdirectord.display().to_string();
    // The guests' one vCPU each is what limits this test, and QEMU's TCG runs a vCPU on one
    // host core: one guest per core of a two-core machine, booted side by side.
    let vms: Vec<Vm> = std::thread::scope(|scope| {
        let booting: Vec<_> = (0..GUESTS).map(|_| scope.spawn(Vm::boot)).collect();
        booting
            .into_iter()
            .map(|b| b.join().expect("a guest"))
            .collect()
    });
    for vm in &vms {
        vm.run_ok("mkdir -p /tmp/xdvm/ld /tmp/xdvm/xd /tmp/xdvm/down");
        let check = vm.write_file("check", CHECK);
        vm.run_ok(&format!(
            "cp {check} /tmp/xdvm/check && chmod +x /tmp/xdvm/check"
        ));
    }
    // XD_IPVS_CASES=a,b runs only those (when looking into a difference).
    let only = std::env::var("XD_IPVS_CASES").ok();
    let cases: Vec<(usize, &Case)> = CASES
        .iter()
        .enumerate()
        .map(|(i, c)| (101 + i, c))
        .filter(|(_, c)| {
            only.as_deref()
                .is_none_or(|o| o.split(',').any(|name| name == c.name))
        })
        .collect();
    // The largest groups first, a few at a time on each guest: the directors' work (an ipvsadm
    // process for each change ldirectord makes, a few seconds of Perl for each of its
    // commands) keeps a guest's vCPU busy.
    let mut groups = groups(&cases, GROUP_SIZE);
    groups.sort_by_key(|g| std::cmp::Reverse(g.reals.iter().map(Vec::len).sum::<usize>()));
    let queue = std::sync::Mutex::new(groups.iter());
    let started = std::time::Instant::now();
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for worker in 0..WORKERS_PER_GUEST * GUESTS {
            let vm = &vms[worker % GUESTS];
            let (queue, xdirectord, failures) = (&queue, &xdirectord, &failures);
            scope.spawn(move || {
                // The queue's lock is held only while taking a group.
                let next = || queue.lock().unwrap().next();
                while let Some(group) = next() {
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        run_group(vm, xdirectord, group)
                    }));
                    eprintln!(
                        "ipvs_differential: {} {} at {:.0?}",
                        group.name,
                        if outcome.is_ok() { "agrees" } else { "DIFFERS" },
                        started.elapsed()
                    );
                    if let Err(e) = outcome {
                        let message = e
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        failures.lock().unwrap().push(message);
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} groups ({} cases) differ:\n\n{}",
        failures.len(),
        groups.len(),
        cases.len(),
        failures.join("\n\n")
    );
}
