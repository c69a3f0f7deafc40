//! The IPVS test guest can do what the IPVS tests need (docs/ipvs-vm.md): IPVS with every
//! scheduler, namespaces joined by veths, IPIP, the real ldirectord, this workspace's binaries.
//! All tests share one guest; each uses addresses and names of its own.

use std::time::Duration;

use xdirectord_tests::vm::Vm;

fn vm() -> &'static Vm {
    let vm = Vm::shared();
    eprintln!("vm: booted in {:.1?}", vm.boot_time);
    vm
}

#[test]
fn ipvsadm_programs_the_guests_ipvs() {
    let vm = vm();
    vm.run_ok("ipvsadm -A -t 10.0.0.1:80 -s wrr -p 30");
    vm.run_ok("ipvsadm -a -t 10.0.0.1:80 -r 10.0.0.11:80 -g -w 10");
    let table = vm.run_ok("ipvsadm -L -n");
    assert!(
        table.contains("TCP  10.0.0.1:80 wrr persistent 30"),
        "{table}"
    );
    assert!(table.contains("10.0.0.11:80"), "{table}");
    vm.run_ok("ipvsadm -D -t 10.0.0.1:80");
}

#[test]
fn every_scheduler_loads() {
    const SCHEDULERS: &[&str] = &[
        "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh",
    ];
    let vm = vm();
    let script: String = SCHEDULERS
        .iter()
        .enumerate()
        .map(|(i, s)| format!("ipvsadm -A -u 10.0.1.{}:53 -s {s} &&\n", i + 1))
        .collect();
    vm.run_ok(&(script + "true"));
    let table = vm.run_ok("ipvsadm -L -n");
    for (i, scheduler) in SCHEDULERS.iter().enumerate() {
        let line = format!("UDP  10.0.1.{}:53 {scheduler}", i + 1);
        assert!(
            table.lines().any(|l| l.trim_end() == line),
            "no {line:?} in\n{table}"
        );
    }
    let cleanup: Vec<String> = (1..=SCHEDULERS.len())
        .map(|i| format!("ipvsadm -D -u 10.0.1.{i}:53"))
        .collect();
    vm.run_ok(&cleanup.join(" && "));
}

#[test]
fn namespaces_joined_by_a_veth_ping() {
    let vm = vm();
    let out = vm.run(
        "set -e
         ip netns add smoke-a
         ip netns add smoke-b
         ip link add va netns smoke-a type veth peer name vb netns smoke-b
         ip -n smoke-a address add 10.9.1.1/24 dev va
         ip -n smoke-b address add 10.9.1.2/24 dev vb
         ip -n smoke-a link set va up
         ip -n smoke-b link set vb up
         ip netns exec smoke-a ping -c 1 -W 10 10.9.1.2",
    );
    vm.run("ip netns del smoke-a; ip netns del smoke-b");
    assert!(out.success(), "{out:?}");
    assert!(out.stdout.contains("1 received"), "{out:?}");
}

#[test]
fn ipip_tunnels_exist() {
    let vm = vm();
    vm.run_ok("ip link add smoke-ipip type ipip local 10.9.2.1 remote 10.9.2.2");
    let links = vm.run_ok("ip -d link show");
    vm.run_ok("ip link del smoke-ipip");
    assert!(links.contains("tunl0"), "{links}");
    assert!(links.contains("smoke-ipip"), "{links}");
    assert!(
        links.contains("link/ipip 10.9.2.1 peer 10.9.2.2"),
        "{links}"
    );
}

#[test]
fn ldirectord_programs_ipvs_in_the_guest() {
    let vm = vm();
    let config = vm.write_file(
        "smoke-ldirectord.cf",
        "checktimeout=3\n\
         checkinterval=1\n\
         quiescent=no\n\
         logfile=\"/tmp/smoke-ldirectord.log\"\n\
         virtual=10.0.2.1:80\n\
         \treal=10.0.2.11:80 gate 10\n\
         \treal=10.0.2.12:80 gate 20\n\
         \tscheduler=wrr\n\
         \tprotocol=tcp\n\
         \tchecktype=on\n",
    );
    vm.run_ok(&format!("/usr/sbin/ldirectord {config} start"));
    // The daemon programs the table after `start` returns, and with checktype=on it adds each
    // real, deletes it and adds it back: wait until both are in.
    let table = vm.run(
        "for i in $(seq 1200); do
             table=$(ipvsadm -S -n)
             case $table in *10.0.2.11:80*10.0.2.12:80*) break ;; esac
             sleep 0.1
         done
         ipvsadm -S -n",
    );
    let log = vm.run("cat /tmp/smoke-ldirectord.log").stdout;
    let stop = vm.run(&format!("/usr/sbin/ldirectord {config} stop"));
    assert!(stop.success(), "{stop:?}\n{log}");
    for line in [
        "-A -t 10.0.2.1:80 -s wrr",
        "-a -t 10.0.2.1:80 -r 10.0.2.11:80 -g -w 10",
        "-a -t 10.0.2.1:80 -r 10.0.2.12:80 -g -w 20",
    ] {
        assert!(
            table.stdout.lines().any(|l| l == line),
            "no {line:?} in {table:?}\n{log}"
        );
    }
    // A clean stop takes the virtual service away.
    let after = vm.run_ok(
        "for i in $(seq 1200); do
             ipvsadm -S -n | grep -q 10.0.2.1:80 || break
             sleep 0.1
         done
         ipvsadm -S -n",
    );
    assert!(!after.contains("10.0.2.1:80"), "{after}");
}

#[test]
fn this_workspaces_binary_runs_in_the_guest() {
    let binaries = xdirectord_tests::e2e::build().expect("build xdirectord");
    let vm = vm();
    let version = vm.run_ok(&format!("{} -v", binaries.xdirectord.display()));
    assert!(version.contains("xdirectord"), "{version}");
}

#[test]
fn jobs_run_concurrently_and_time_out() {
    let vm = vm();
    // Each job waits for the other's file: they finish only if they run at the same time.
    std::thread::scope(|scope| {
        let wait_for = |mine: &'static str, other: &'static str| {
            let cmd = format!("touch {mine}; while [ ! -e {other} ]; do sleep 0.05; done");
            move || vm.run_timeout(&cmd, Duration::from_secs(120))
        };
        let a = scope.spawn(wait_for("/tmp/smoke-a", "/tmp/smoke-b"));
        let b = scope.spawn(wait_for("/tmp/smoke-b", "/tmp/smoke-a"));
        for job in [a, b] {
            let out = job.join().unwrap();
            assert!(out.success(), "{out:?}");
        }
    });
    let out = vm.run_timeout("echo started; sleep 600", Duration::from_secs(1));
    assert_eq!(out.status, 124, "{out:?}");
    assert_eq!(out.stdout, "started\n");
    let out = vm.run("echo out; echo err >&2; exit 3");
    assert_eq!(
        (out.status, out.stdout.as_str(), out.stderr.as_str()),
        (3, "out\n", "err\n")
    );
}
