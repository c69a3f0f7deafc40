//! The IPVS backend on a real kernel, in the test guest (docs/ipvs-vm.md): real HTTP requests
//! through IPVS for each forwarding method (masq, gate, ipip), XDP and IPVS side by side in one
//! agent, a table changed behind the agent's back, a virtual the kernel refuses, and stopping
//! with `cleanstop` yes and no followed by a restart over the table left behind.
//!
//! All tests share one guest and run at once: each has namespaces of its own (`pk-*`), addresses
//! of its own (10.250–254.*) and a configuration name of its own, and a [`Site`] that takes all
//! of it down when dropped, also when the test fails. Nothing waits a fixed time: the guest polls
//! for each outcome with a generous deadline ([`PATIENCE`]), so a slow guest makes the tests
//! slower, not flaky.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use xdirectord_tests::vm::{Output, Vm};

/// How long, in seconds, the agent may take to do what it should (checks run every second; the
/// guest is emulated and shared by every test of this binary).
const PATIENCE: u32 = 120;

/// The xdirectord binary, by the path the guest runs it by; built before the guest boots (the
/// guest may see a file that changes later stale).
fn xdirectord() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        let binaries = xdirectord_tests::e2e::build().expect("build xdirectord");
        binaries.xdirectord.display().to_string()
    })
}

fn vm() -> &'static Vm {
    xdirectord();
    Vm::shared()
}

/// `text` as one shell word.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// One test's piece of the guest: its namespaces (`<name>-c`, `<name>-d`, `<name>-r`, or only
/// the director's), its configuration `/exchange/files/<name>.cf`, its log `/tmp/<name>.log`.
/// Dropping it stops the agent and everything that runs in its namespaces and deletes them
/// (which takes their IPVS tables with them).
struct Site {
    vm: &'static Vm,
    name: &'static str,
    namespaces: Vec<String>,
    config: String,
}

impl Site {
    /// A director's namespace alone: enough for tables, not for packets.
    fn director_only(name: &'static str) -> Site {
        let vm = vm();
        let site = Site {
            vm,
            name,
            namespaces: vec![format!("{name}-d")],
            config: format!("/exchange/files/{name}.cf"),
        };
        let d = site.director();
        vm.run_ok(&format!(
            "ip netns add {d} && ip -n {d} link set lo up && ip netns exec {d} ipvsadm -L -n >/dev/null"
        ));
        site
    }

    /// A client, a director and a real, each in its own namespace:
    /// client `to-dir` 10.N.1.2/24 — 10.N.1.1/24 `to-client` director `to-real` 10.N.2.1/24 —
    /// 10.N.2.2/24 `to-dir` real. The client and the real route everything through the director,
    /// which forwards. The real serves `/index.html` on each of `ports` (busybox httpd), a page
    /// that names it and the port it was asked on.
    fn three_namespaces(name: &'static str, net: u8, ports: &[u16]) -> Site {
        let vm = vm();
        let site = Site {
            vm,
            name,
            namespaces: ["c", "d", "r"]
                .iter()
                .map(|n| format!("{name}-{n}"))
                .collect(),
            config: format!("/exchange/files/{name}.cf"),
        };
        let (c, d, r) = (site.client(), site.director(), site.real());
        let mut script = format!(
            "set -e
             ip netns add {c}; ip netns add {d}; ip netns add {r}
             ip link add to-dir netns {c} type veth peer name to-client netns {d}
             ip link add to-real netns {d} type veth peer name to-dir netns {r}
             ip -n {c} address add 10.{net}.1.2/24 dev to-dir
             ip -n {d} address add 10.{net}.1.1/24 dev to-client
             ip -n {d} address add 10.{net}.2.1/24 dev to-real
             ip -n {r} address add 10.{net}.2.2/24 dev to-dir
             for l in {c}:to-dir {d}:to-client {d}:to-real {r}:to-dir; do
                 ns=${{l%%:*}}; dev=${{l#*:}}
                 ip -n $ns link set lo up
                 ip -n $ns link set $dev up
                 ip netns exec $ns ethtool -K $dev tx off >/dev/null
             done
             ip -n {c} route add default via 10.{net}.1.1
             ip -n {r} route add default via 10.{net}.2.1
             ip netns exec {d} sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 \
                 net.ipv4.conf.to-real.rp_filter=0 net.ipv4.conf.to-client.rp_filter=0
             ip netns exec {r} sysctl -qw net.ipv4.conf.all.rp_filter=0 \
                 net.ipv4.conf.to-dir.rp_filter=0 \
                 net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
             "
        );
        for port in ports {
            script.push_str(&format!(
                "mkdir -p /tmp/{name}-www/{port}
                 echo 'real 10.{net}.2.2 port {port}' > /tmp/{name}-www/{port}/index.html
                 ip netns exec {r} busybox httpd -p {port} -h /tmp/{name}-www/{port}
                 "
            ));
        }
        vm.run_ok(&script);
        site
    }

    fn client(&self) -> String {
        format!("{}-c", self.name)
    }
    fn director(&self) -> String {
        format!("{}-d", self.name)
    }
    fn real(&self) -> String {
        format!("{}-r", self.name)
    }
    fn log(&self) -> String {
        format!("/tmp/{}.log", self.name)
    }

    /// `cmd` in the director's namespace.
    fn in_director(&self, cmd: &str) -> String {
        format!("ip netns exec {} {cmd}", self.director())
    }

    /// Writes the configuration: `body` after the globals every site has (checks every second,
    /// the site's log file).
    fn write_config(&self, body: &str) {
        let text = format!(
            "checkinterval=1\nchecktimeout=5\nfailurecount=1\nlogfile=\"{}\"\n{body}",
            self.log()
        );
        self.vm.write_file(&format!("{}.cf", self.name), text);
    }

    /// `xdirectord ARGS` in the director's namespace.
    fn xdirectord(&self, args: &str) -> Output {
        self.vm
            .run(&self.in_director(&format!("{} {args}", xdirectord())))
    }

    fn start(&self) {
        let out = self.xdirectord(&format!("{} start", self.config));
        assert!(
            out.success(),
            "start failed: {out:?}\n{}",
            self.diagnostics()
        );
    }

    fn stop(&self) {
        let out = self.xdirectord(&format!("{} stop", self.config));
        assert!(
            out.success(),
            "stop failed: {out:?}\n{}",
            self.diagnostics()
        );
    }

    /// `ipvsadm ARGS` in the director's namespace.
    fn ipvsadm(&self, args: &str) -> String {
        self.vm
            .run_ok(&self.in_director(&format!("ipvsadm {args}")))
    }

    /// The agent's log and the director's IPVS table, for failure messages.
    fn diagnostics(&self) -> String {
        let out = self.vm.run(&format!(
            "echo '--- {log}:'; cat {log}; echo '--- ipvsadm -L -n:'; {table}",
            log = self.log(),
            table = self.in_director("ipvsadm -L -n"),
        ));
        format!("{}{}", out.stdout, out.stderr)
    }

    /// Waits until the output of `cmd` (a shell command line, run in the guest's root
    /// namespace) contains every one of `needles`; that output. Panics, saying `what` was
    /// awaited, when it never does.
    #[track_caller]
    fn wait_for(&self, what: &str, cmd: &str, needles: &[&str]) -> String {
        let tests: String = needles
            .iter()
            .map(|n| {
                format!(
                    " && case \"$out\" in *{}*) true ;; *) false ;; esac",
                    quote(n)
                )
            })
            .collect();
        let script = format!(
            "i=0
             while :; do
                 out=$({cmd} 2>&1)
                 if true{tests}; then printf '%s\\n' \"$out\"; exit 0; fi
                 i=$((i + 1)); [ $i -lt {tries} ] || break
                 sleep 0.2
             done
             printf '%s\\n' \"$out\"; exit 1",
            tries = PATIENCE * 5
        );
        let out = self.vm.run(&script);
        assert!(
            out.success(),
            "never saw {what}: {needles:?} in the output of {cmd}:\n{}\n{}",
            out.stdout,
            self.diagnostics()
        );
        out.stdout
    }

    /// Waits until the agent's log has every one of `lines`; the log.
    #[track_caller]
    fn wait_for_log(&self, what: &str, lines: &[&str]) -> String {
        self.wait_for(what, &format!("cat {}", self.log()), lines)
    }

    /// Waits until `ipvsadm -S -n` in the director's namespace has every one of `rules`.
    #[track_caller]
    fn wait_for_table(&self, what: &str, rules: &[&str]) -> String {
        self.wait_for(what, &self.in_director("ipvsadm -S -n"), rules)
    }

    /// `curl` from the client's namespace: the page.
    fn fetch(&self, url: &str) -> Output {
        self.vm.run(&format!(
            "ip netns exec {} curl -sS --max-time 20 {url}",
            self.client()
        ))
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let namespaces = self.namespaces.join(" ");
        // Everything that runs in the site's namespaces is the site's: the agent, its checks, the
        // web servers. TERM first (the agent cleans up), then KILL whatever is left.
        let cleanup = format!(
            "pids() {{ for ns in {namespaces}; do ip netns pids $ns 2>/dev/null; done; }}
             pids | xargs -r kill 2>/dev/null
             i=0; while [ -n \"$(pids)\" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
             pids | xargs -r kill -9 2>/dev/null
             for ns in {namespaces}; do ip netns del $ns 2>/dev/null; done
             rm -rf /tmp/{name}-www /tmp/{name}.log /run/xdirectord.{name}.pid \
                 /run/xdirectord.{name}.applied /sys/fs/bpf/xdirectord/{name}
             ip netns list | grep -E '^({pattern})( |$)' && exit 1 || exit 0",
            name = self.name,
            pattern = self.namespaces.join("|"),
        );
        // A guest that no longer answers panics here: not again while a failure unwinds.
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.vm.run(&cleanup)));
        if std::thread::panicking() {
            return;
        }
        match out {
            Ok(out) if out.success() => {}
            Ok(out) => panic!("the site {} was not taken down: {out:?}", self.name),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

/// The IPVS block of `xdirectord show`'s output: from ipvsadm's header to the XDP table (or the
/// end).
fn ipvs_block(show: &str) -> &str {
    let start = show
        .find("IP Virtual Server version")
        .unwrap_or_else(|| panic!("no IPVS table in show's output:\n{show}"));
    let rest = &show[start..];
    match rest.find("xdirectord XDP data plane") {
        Some(end) => &rest[..end],
        None => rest,
    }
}

/// `xdirectord show CONFIG FLAGS` (in the director's namespace, or in the guest's first one when
/// `from_outside`: show then reads the agent's) and `ipvsadm -L -n FLAGS` in the director's
/// namespace, read in one job: show's IPVS block and ipvsadm's output, until they are the same
/// (counters may move between the two reads) or a few tries have passed; the last pair.
fn show_and_ipvsadm(site: &Site, flags: &str, from_outside: bool) -> (String, String) {
    let show = format!("{} show {} {flags}", xdirectord(), site.config);
    let show = if from_outside {
        show
    } else {
        site.in_director(&show)
    };
    let ipvsadm = site.in_director(&format!("ipvsadm -L -n {flags}"));
    let mut last = (String::new(), String::new());
    for _ in 0..5 {
        let out = site.vm.run_ok(&format!("{show}; echo @@@; {ipvsadm}"));
        let (show, ipvsadm) = out.split_once("@@@\n").expect("the separator");
        last = (ipvs_block(show).to_string(), ipvsadm.to_string());
        if last.0 == last.1 {
            break;
        }
    }
    last
}

/// A line's layout: its length and its words, numbers replaced by `#` (for `--rate`, whose
/// figures move between two reads).
fn layout(text: &str) -> Vec<(usize, Vec<String>)> {
    text.lines()
        .map(|line| {
            let words = line
                .split_whitespace()
                .map(|w| {
                    let number = w.trim_end_matches(['K', 'M', 'G', 'T']);
                    if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) {
                        "#".to_string()
                    } else {
                        w.to_string()
                    }
                })
                .collect();
            (line.len(), words)
        })
        .collect()
}

/// `ipvsadm -L -n --stats`: the connections column of the service line of `service`.
fn conns(stats: &str, service: &str) -> u64 {
    stats
        .lines()
        .find_map(|line| {
            let mut words = line.split_whitespace();
            let (protocol, addr) = (words.next()?, words.next()?);
            (format!("{protocol}  {addr}") == service).then(|| words.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no {service:?} in\n{stats}"))
}

/// One real HTTP request through IPVS per forwarding method, from a client namespace to a real
/// namespace behind the director: NAT (the real serves another port), direct routing (the real
/// holds the VIP on lo and answers the client itself) and IPIP (the real decapsulates on
/// tunl0). Then `show` is ipvsadm's `-L -n`, `--stats` and `--rate` for that table, and the
/// agent's metrics count each IPVS real's connections as IPVS does.
#[test]
fn one_request_through_ipvs_per_forwarding_method() {
    let site = Site::three_namespaces("pk-paths", 250, &[8080, 81, 82]);
    let (d, r) = (site.director(), site.real());
    let vip = "10.250.0.1";
    site.vm.run_ok(&format!(
        "set -e
         ip -n {d} address add {vip}/32 dev lo
         # Replies of direct routing and tunnelling come back through the director from the VIP,
         # an address of its own.
         ip netns exec {d} sysctl -qw net.ipv4.conf.to-real.accept_local=1
         # Direct routing: the VIP on lo, never announced.
         ip -n {r} address add {vip}/32 dev lo
         # Tunnelling: decapsulated on tunl0, whose source the real would not route back there.
         ip -n {r} link set tunl0 up
         ip -n {r} address add {vip}/32 dev tunl0
         ip netns exec {r} sysctl -qw net.ipv4.conf.tunl0.rp_filter=0"
    ));
    let virtual_ = |port: u16, real_port: u16, method: &str| {
        format!(
            "virtual={vip}:{port}\n\
             \treal=10.250.2.2:{real_port} {method}\n\
             \tchecktype=negotiate\n\
             \tservice=http\n\
             \trequest=\"index.html\"\n\
             \treceive=\"port {real_port}\"\n\
             \tscheduler=wrr\n\
             \tprotocol=tcp\n"
        )
    };
    site.write_config(&format!(
        "quiescent=no\nmetrics=127.0.0.1:9180\n{}{}{}",
        virtual_(80, 8080, "masq"),
        virtual_(81, 81, "gate"),
        virtual_(82, 82, "ipip"),
    ));
    site.start();
    // The reals are in once their checks pass.
    site.wait_for_table(
        "the three reals, checked",
        &[
            "-a -t 10.250.0.1:80 -r 10.250.2.2:8080 -m -w 1",
            "-a -t 10.250.0.1:81 -r 10.250.2.2:81 -g -w 1",
            "-a -t 10.250.0.1:82 -r 10.250.2.2:82 -i -w 1",
        ],
    );
    let log = site.wait_for_log(
        "the placement lines",
        &[
            "Virtual service tcp:10.250.0.1:80 runs on IPVS",
            "Virtual service tcp:10.250.0.1:81 runs on IPVS",
            "Virtual service tcp:10.250.0.1:82 runs on IPVS",
        ],
    );
    assert!(
        !log.contains("runs on XDP"),
        "nothing here can run on XDP (no interface):\n{log}"
    );

    // NAT: asked on port 80, served by the real on 8080. Direct routing and tunnelling keep
    // the port.
    for (port, served, method) in [(80, 8080, "masq"), (81, 81, "gate"), (82, 82, "ipip")] {
        let out = site.fetch(&format!("http://{vip}:{port}/index.html"));
        assert_eq!(
            (out.status, out.stdout.as_str()),
            (0, format!("real 10.250.2.2 port {served}\n").as_str()),
            "{method}: {out:?}\n{}",
            site.diagnostics()
        );
    }

    let table = site.ipvsadm("-L -n");
    for line in [
        "  -> 10.250.2.2:8080              Masq    1",
        "  -> 10.250.2.2:81                Route   1",
        "  -> 10.250.2.2:82                Tunnel  1",
    ] {
        assert!(table.contains(line), "no {line:?} in\n{table}");
    }

    // The 6.1 kernel's IPVS sums its per-CPU counters into what it reports in the estimator's
    // timer, every 2 s: until then the last request is not counted. Wait for every request to
    // be, so that the comparisons below read counters that no longer move.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stats = site.ipvsadm("-L -n --stats");
        if [80, 81, 82]
            .iter()
            .all(|port| conns(&stats, &format!("TCP  {vip}:{port}")) >= 1)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a request not counted by IPVS after 30 s:\n{stats}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let (show, ipvsadm) = show_and_ipvsadm(&site, "", false);
    assert_eq!(show, ipvsadm, "show is not ipvsadm -L -n");
    let (show, ipvsadm) = show_and_ipvsadm(&site, "", true);
    assert_eq!(
        show, ipvsadm,
        "show, outside the agent's namespace, does not read the agent's IPVS"
    );
    let (show, ipvsadm) = show_and_ipvsadm(&site, "--stats", false);
    assert_eq!(show, ipvsadm, "show --stats is not ipvsadm -L -n --stats");
    // The metrics read IPVS's counters at scrape time, under node_exporter's labels.
    let metrics = site
        .vm
        .run_ok(&site.in_director("curl -sS --max-time 20 http://127.0.0.1:9180/metrics"));
    for (port, served) in [(80, 8080), (81, 81), (82, 82)] {
        let series = format!(
            "xdirectord_real_connections_total{{local_address=\"{vip}\",local_port=\"{port}\",\
             proto=\"TCP\",local_mark=\"\",remote_address=\"10.250.2.2\",\
             remote_port=\"{served}\",backend=\"ipvs\"}} "
        );
        let counted: Option<u64> = metrics
            .lines()
            .find_map(|line| line.strip_prefix(&series)?.trim().parse().ok());
        let service = format!("TCP  {vip}:{port}");
        assert_eq!(
            counted,
            Some(conns(&ipvsadm, &service)),
            "{series}against ipvsadm --stats:\n{ipvsadm}\n{metrics}"
        );
    }

    let (show, ipvsadm) = show_and_ipvsadm(&site, "--rate", false);
    assert_eq!(
        layout(&show),
        layout(&ipvsadm),
        "show --rate is not laid out as ipvsadm -L -n --rate:\n{show}\n---\n{ipvsadm}"
    );
}

/// `show`'s line for a real, as ipvsadm lays it out, up to its weight.
fn real_line(real: &str, forward: &str, weight: u32) -> String {
    format!("  -> {real:<28} {forward:<7} {weight:<6} ")
}

/// The keys (`addr:port`) of the services of one data plane in `show --json`.
fn json_services(shown: &serde_json::Value, plane: &str) -> Vec<String> {
    shown[plane]["services"]
        .as_array()
        .unwrap_or_else(|| panic!("no {plane} services in\n{shown:#}"))
        .iter()
        .map(|s| {
            format!(
                "{}:{}",
                s["key"]["addr"].as_str().unwrap_or("?"),
                s["key"]["port"]
            )
        })
        .collect()
}

/// One agent, one file: a direct-routing virtual the XDP program serves (generic XDP on both of
/// the director's interfaces, redirecting to the real's), and a NAT virtual on IPVS. Each takes
/// a real request; `show` lists each in its own data plane's block, and IPVS holds only its own.
#[test]
fn one_agent_serves_a_dr_virtual_on_xdp_and_a_masq_virtual_on_ipvs() {
    let site = Site::three_namespaces("pk-hybrid", 252, &[80, 8080]);
    let (d, r) = (site.director(), site.real());
    // The XDP virtual's address is nobody's on the director (the program takes its packets
    // before the stack does); the IPVS one's must be the director's own.
    site.vm.run_ok(&format!(
        "ip -n {d} address add 10.252.0.2/32 dev lo && ip -n {r} address add 10.252.0.1/32 dev lo"
    ));
    let virtual_ = |vip: &str, real: &str, method: &str, port: u16| {
        format!(
            "virtual={vip}:80\n\
             \treal={real} {method}\n\
             \tchecktype=negotiate\n\
             \tservice=http\n\
             \trequest=\"index.html\"\n\
             \treceive=\"port {port}\"\n"
        )
    };
    site.write_config(&format!(
        "interface=to-client,to-real\nxdpmode=generic\nquiescent=no\n{}{}",
        virtual_("10.252.0.1", "10.252.2.2:80", "gate", 80),
        virtual_("10.252.0.2", "10.252.2.2:8080", "masq", 8080),
    ));
    site.start();
    site.wait_for_log(
        "each virtual's data plane, and both reals up",
        &[
            "Virtual service tcp:10.252.0.1:80 runs on XDP on to-client,to-real",
            "Virtual service tcp:10.252.0.2:80 runs on IPVS: real server 10.252.2.2:8080: forwarding method masq needs the IPVS backend",
            "Added real server: 10.252.2.2:80 (10.252.0.1:80) (Weight set to 1)",
            "Added real server: 10.252.2.2:8080 (10.252.0.2:80) (Weight set to 1)",
        ],
    );
    // The XDP real takes flows once the director knows its MAC address (its check made the
    // director ask).
    let show = format!("{} show {}", xdirectord(), site.config);
    site.wait_for(
        "the XDP real resolved",
        &site.in_director(&show),
        &[&real_line("10.252.2.2:80", "Route", 1)],
    );

    for (vip, served) in [("10.252.0.1", 80), ("10.252.0.2", 8080)] {
        let out = site.fetch(&format!("http://{vip}/index.html"));
        assert_eq!(
            (out.status, out.stdout.as_str()),
            (0, format!("real 10.252.2.2 port {served}\n").as_str()),
            "{vip}: {out:?}\n{}",
            site.diagnostics()
        );
    }

    let text = site.vm.run_ok(&site.in_director(&show));
    let ipvs = ipvs_block(&text);
    let (_, xdp) = text
        .split_once("xdirectord XDP data plane\n")
        .unwrap_or_else(|| panic!("no XDP table in\n{text}"));
    assert!(
        ipvs.contains("TCP  10.252.0.2:80 wrr\n")
            && ipvs.contains(&real_line("10.252.2.2:8080", "Masq", 1))
            && !ipvs.contains("10.252.0.1"),
        "the IPVS block holds the NAT virtual alone:\n{text}"
    );
    assert!(
        xdp.contains("TCP  10.252.0.1:80 wrr\n")
            && xdp.contains(&real_line("10.252.2.2:80", "Route", 1))
            && !xdp.contains("10.252.0.2"),
        "the XDP block holds the DR virtual alone:\n{text}"
    );
    let table = site.ipvsadm("-L -n");
    assert!(
        table.contains("TCP  10.252.0.2:80") && !table.contains("10.252.0.1"),
        "IPVS holds the NAT virtual and not the XDP one:\n{table}"
    );
    let (show_ipvs, ipvsadm) = show_and_ipvsadm(&site, "", false);
    assert_eq!(show_ipvs, ipvsadm, "show's IPVS block is not ipvsadm -L -n");

    let json = site.vm.run_ok(&site.in_director(&format!("{show} --json")));
    let shown: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("show --json: {e}\n{json}"));
    assert_eq!(
        json_services(&shown, "ipvs"),
        ["10.252.0.2:80"],
        "{shown:#}"
    );
    assert_eq!(json_services(&shown, "xdp"), ["10.252.0.1:80"], "{shown:#}");
    let mut attached: Vec<(String, String)> = shown["xdp"]["attached"]
        .as_array()
        .expect("attached interfaces")
        .iter()
        .map(|a| {
            (
                a["interface"].as_str().unwrap_or("?").to_string(),
                a["mode"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect();
    attached.sort();
    assert_eq!(
        attached,
        [
            ("to-client".to_string(), "generic".to_string()),
            ("to-real".to_string(), "generic".to_string())
        ],
        "{shown:#}"
    );
    // The request to the XDP virtual went through the program, not the stack.
    let xdp_conns = shown["xdp"]["services"][0]["stats"]["conns"]
        .as_u64()
        .unwrap_or(0);
    assert!(xdp_conns >= 1, "no flow counted by XDP:\n{shown:#}");
}

/// The configuration of the tests that only need a table: reals that are always up.
const TWO_VIRTUALS: &str = "virtual=10.N.0.1:80\n\
     \treal=10.N.2.2:80 gate\n\
     \treal=10.N.2.3:80 gate 2\n\
     \tchecktype=on\n\
     virtual=10.N.0.2:80\n\
     \treal=10.N.2.2:8080 masq\n\
     \tchecktype=on\n\
     \tscheduler=rr\n";

/// `ipvsadm -S -n` of [`TWO_VIRTUALS`], sorted.
fn two_virtuals_saved(net: u8) -> Vec<String> {
    let mut rules: Vec<String> = [
        "-A -t 10.N.0.1:80 -s wrr",
        "-a -t 10.N.0.1:80 -r 10.N.2.2:80 -g -w 1",
        "-a -t 10.N.0.1:80 -r 10.N.2.3:80 -g -w 2",
        "-A -t 10.N.0.2:80 -s rr",
        "-a -t 10.N.0.2:80 -r 10.N.2.2:8080 -m -w 1",
    ]
    .iter()
    .map(|r| r.replace("10.N.", &format!("10.{net}.")))
    .collect();
    rules.sort();
    rules
}

fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

const PUT_RIGHT: &str = "IPVS table differs from the configuration in force (changed outside xdirectord?): putting it right: ";

/// A real deleted, a weight edited and a whole virtual deleted by hand with ipvsadm, in the
/// agent's namespace: each time the agent says what it redoes, in ipvsadm's words, and the table
/// is back as the configuration has it. A service that is not the agent's is left alone.
#[test]
fn a_table_changed_behind_the_agents_back_is_put_right() {
    let site = Site::director_only("pk-fix");
    site.write_config(&TWO_VIRTUALS.replace("10.N.", "10.253."));
    site.start();
    let wanted = two_virtuals_saved(253);
    let rules: Vec<&str> = wanted.iter().map(String::as_str).collect();
    site.wait_for_table("the configured table", &rules);
    site.ipvsadm("-A -t 10.253.9.9:80 -s rr");
    let mut with_foreign = wanted.clone();
    with_foreign.push("-A -t 10.253.9.9:80 -s rr".into());
    with_foreign.sort();

    let cases = [
        (
            "-d -t 10.253.0.1:80 -r 10.253.2.3:80",
            vec!["ipvsadm -a -t 10.253.0.1:80 -r 10.253.2.3:80 -g -w 2"],
        ),
        (
            "-e -t 10.253.0.1:80 -r 10.253.2.2:80 -g -w 7",
            vec!["ipvsadm -e -t 10.253.0.1:80 -r 10.253.2.2:80 -g -w 1"],
        ),
        (
            "-D -t 10.253.0.2:80",
            vec![
                "ipvsadm -A -t 10.253.0.2:80 -s rr",
                "ipvsadm -a -t 10.253.0.2:80 -r 10.253.2.2:8080 -m -w 1",
            ],
        ),
    ];
    for (by_hand, redone) in &cases {
        site.ipvsadm(by_hand);
        let lines: Vec<String> = redone.iter().map(|r| format!("{PUT_RIGHT}{r}")).collect();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        site.wait_for_log(
            &format!("the agent redoing what ipvsadm {by_hand} undid"),
            &lines,
        );
        let mut restored = Vec::new();
        for _ in 0..50 {
            restored = sorted_lines(&site.ipvsadm("-S -n"));
            if restored == with_foreign {
                break;
            }
        }
        assert_eq!(
            restored,
            with_foreign,
            "the table after ipvsadm {by_hand}\n{}",
            site.diagnostics()
        );
    }
    // Each change put right once, and nothing else.
    let log = site.vm.run_ok(&format!("cat {}", site.log()));
    let corrections: Vec<&str> = log.lines().filter(|l| l.contains(PUT_RIGHT)).collect();
    assert_eq!(corrections.len(), 4, "{corrections:#?}");
}

/// A scheduler the kernel does not have: `-t` warns, the agent's log names the ipvsadm command
/// the kernel refused and says why in ipvsadm's words, and the other virtual of the file runs.
#[test]
fn a_virtual_the_kernel_refuses_is_reported_and_the_others_run() {
    let site = Site::director_only("pk-bad");
    site.write_config(
        "virtual=10.254.0.1:80\n\
         \treal=10.254.2.2:80 gate\n\
         \tchecktype=on\n\
         \tscheduler=nonsense\n\
         virtual=10.254.0.2:80\n\
         \treal=10.254.2.2:80 gate\n\
         \tchecktype=on\n",
    );
    let check = site.xdirectord(&format!("-t {}", site.config));
    assert_eq!(check.status, 0, "only warnings: {check:?}");
    assert!(
        check
            .stderr
            .contains("virtual service tcp:10.254.0.1:80: scheduler nonsense is not one IPVS has"),
        "{check:?}"
    );
    site.start();
    site.wait_for_table(
        "the other virtual",
        &[
            "-A -t 10.254.0.2:80 -s wrr",
            "-a -t 10.254.0.2:80 -r 10.254.2.2:80 -g -w 1",
        ],
    );
    site.wait_for_log(
        "the kernel's refusal",
        &["ipvsadm -A -t 10.254.0.1:80 -s nonsense: Scheduler or persistence engine not found"],
    );
    let table = site.ipvsadm("-S -n");
    assert!(!table.contains("10.254.0.1"), "{table}");
    // Said once, not again at each refresh (about once a second): a few seconds' look. (The
    // agent retries a failed apply, with a backoff, silently while it fails the same way.)
    let log = site.vm.run_ok(&format!("sleep 4; cat {}", site.log()));
    let refusals = log
        .lines()
        .filter(|l| l.contains("Scheduler or persistence engine not found"))
        .count();
    assert_eq!(refusals, 1, "{log}");
}

/// `cleanstop = yes` (the default) leaves nothing in IPVS; `cleanstop = no` leaves the table,
/// and an agent started over it takes it over as ldirectord does: the reals already there as
/// configured are not added again, and one whose weight changed in the file meanwhile is
/// restored with its new weight.
#[test]
fn cleanstop_and_a_restart_over_the_table_left_behind() {
    let site = Site::director_only("pk-stop");
    let config = TWO_VIRTUALS.replace("10.N.", "10.251.");
    let wanted = two_virtuals_saved(251);
    let rules: Vec<&str> = wanted.iter().map(String::as_str).collect();

    site.write_config(&config);
    site.start();
    site.wait_for_table("the configured table", &rules);
    site.stop();
    let left = site.ipvsadm("-S -n");
    assert_eq!(left, "", "cleanstop=yes left this behind");

    site.write_config(&format!("cleanstop=no\n{config}"));
    site.start();
    site.wait_for_table("the configured table", &rules);
    site.stop();
    assert_eq!(
        sorted_lines(&site.ipvsadm("-S -n")),
        wanted,
        "cleanstop=no keeps the table"
    );

    // The next agent: one real's weight changed while none ran.
    site.vm.run_ok(&format!(": > {}", site.log()));
    site.write_config(&format!(
        "cleanstop=no\n{}",
        config.replace("real=10.251.2.3:80 gate 2", "real=10.251.2.3:80 gate 5")
    ));
    site.start();
    let log = site.wait_for_log(
        "the changed real restored",
        &["Restored real server: 10.251.2.3:80 (10.251.0.1:80) (Weight set to 5)"],
    );
    site.wait_for_table(
        "the new weight",
        &["-a -t 10.251.0.1:80 -r 10.251.2.3:80 -g -w 5"],
    );
    assert!(
        !log.contains("Added real server")
            && !log.contains("Added virtual server")
            && !log.contains("10.251.2.2"),
        "what was there as configured is taken over as it is, without a word:\n{log}"
    );
}
