//! `cargo xtask lab up|status|down` for real: namespaces, veths, the bridge, the web servers, and
//! curl from the client. Needs root (CI runs tests as root); skipped without it.

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use xtask::lab::{
    self, CHECK_PATH, CLIENT, DIRECTOR, FALLBACK_BODY, HOSTS, REALS, RUN_DIR, SWITCH_NS, VIP, VIP6,
};

const XTASK: &str = env!("CARGO_BIN_EXE_xtask");

/// Takes the lab down when the test ends, also when an assertion fails.
struct Teardown;

impl Drop for Teardown {
    fn drop(&mut self) {
        let _ = Command::new(XTASK).args(["lab", "down"]).status();
    }
}

/// Runs `xtask ARGS` and returns its standard output; panics with its output if it fails.
fn xtask(args: &[&str]) -> String {
    let out = Command::new(XTASK).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "xtask {args:?} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// curl from the client namespace.
fn curl(args: &[&str]) -> String {
    let mut argv = vec!["curl", "--silent", "--show-error", "--max-time", "5"];
    argv.extend_from_slice(args);
    lab::exec_in(CLIENT.ns, &argv).unwrap_or_else(|e| panic!("{e:#}"))
}

#[test]
fn lab_up_serves_the_site_and_down_removes_it() {
    if !lab::is_root() {
        eprintln!("skipped: the lab needs root");
        return;
    }
    let existing = lab::existing_namespaces().unwrap();
    assert!(
        existing.is_empty(),
        "a lab is up ({existing:?}) and this test would take it down: run `cargo xtask lab down` \
         first"
    );
    let teardown = Teardown;
    xtask(&["lab", "up"]);

    // Every real, on both address families, by its own address.
    for real in REALS {
        let web = real.web.unwrap();
        for addr in [IpAddr::from(real.ipv4), IpAddr::from(real.ipv6)] {
            let check = curl(&[&lab::http_url(addr, CHECK_PATH)]);
            assert_eq!(check.trim_end(), web.check_body, "{addr}");
            assert_eq!(check.trim_end(), format!("OK {}", web.name));
            assert_eq!(curl(&[&lab::http_url(addr, "/")]).trim_end(), web.name);
        }
    }
    // No balancer yet: the VIP belongs to the director on the wire, and its own stack answers.
    for vip in [IpAddr::from(VIP), IpAddr::from(VIP6)] {
        for path in ["/", CHECK_PATH] {
            let body = curl(&[&lab::http_url(vip, path)]);
            assert_eq!(body.trim_end(), FALLBACK_BODY, "{vip}{path}");
        }
        // The reals hold the VIP too, on lo; only the director may answer ARP/ND for it.
        let neigh = lab::exec_in(CLIENT.ns, &["ip", "neigh", "show", &vip.to_string()]).unwrap();
        assert!(neigh.contains(DIRECTOR.mac), "{vip} resolves to {neigh}");
    }

    // Keep-alive: two requests, one connection; the server sees the client's own address.
    let url = lab::http_url(REALS[1].ipv4, "/");
    let connects = curl(&[
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
        "-w",
        "%{num_connects} ",
        &url,
        &url,
    ]);
    assert_eq!(connects.trim(), "1 0");
    let head = curl(&["-o", "/dev/null", "-D", "-", &url]);
    assert!(
        head.contains(&format!("X-Client: {}:", CLIENT.ipv4)),
        "{head}"
    );

    let status = xtask(&["lab", "status"]);
    assert!(status.starts_with("lab: up\n"), "{status}");
    assert!(status.contains("XDP on eth0: none"), "{status}");
    for host in HOSTS {
        if let Some(web) = host.web {
            assert!(
                status.contains(&format!("web server {} up", web.name)),
                "{status}"
            );
        }
        // Every switch port runs xdp-pass, so XDP_TX from any host is delivered.
        let xdp = lab::xdp_on(SWITCH_NS, host.peer).unwrap();
        assert!(
            xdp.as_deref().is_some_and(|x| x.contains("xdp_pass")),
            "{}: {xdp:?}",
            host.peer
        );
    }

    // A server made sick fails its check and keeps serving; a stopped one refuses; it starts
    // again.
    let real = REALS[0];
    let check_url = lab::http_url(real.ipv4, CHECK_PATH);
    lab::set_sick(&real, true).unwrap();
    let code = curl(&["-o", "/dev/null", "-w", "%{http_code}", &check_url]);
    assert_eq!(code, "503");
    assert_eq!(curl(&[&lab::http_url(real.ipv4, "/")]).trim_end(), "web1");
    lab::set_sick(&real, false).unwrap();
    assert_eq!(curl(&[&check_url]).trim_end(), "OK web1");
    lab::stop_server(&real).unwrap();
    assert_eq!(lab::server_pid(&real), None);
    assert!(lab::exec_in(CLIENT.ns, &["curl", "-sS", "--max-time", "5", &check_url]).is_err());
    lab::start_server(Path::new(XTASK), &real).unwrap();
    assert_eq!(curl(&[&check_url]).trim_end(), "OK web1");

    // Another VIP, held by the director (whose stack answers it) and on the reals' lo.
    let vip2: IpAddr = "10.200.0.101".parse().unwrap();
    lab::add_vip(vip2).unwrap();
    assert_eq!(curl(&[&lab::http_url(vip2, "/")]).trim_end(), FALLBACK_BODY);
    for real in REALS {
        let lo = lab::addresses(real.ns).unwrap();
        assert!(
            lo.iter()
                .any(|(dev, a)| dev == "lo" && a.contains(&"10.200.0.101/32".to_owned())),
            "{lo:?}"
        );
    }

    // Pins a lab agent left (a configuration named xdlab-*) are listed, and `down` removes them.
    let pins = Path::new(lab::PIN_ROOT).join("xdlab-labtest_cf");
    std::fs::create_dir_all(&pins).unwrap();
    assert!(xtask(&["lab", "status"]).contains("xdlab-labtest_cf"));

    // A second `up` leaves the running lab alone.
    assert!(xtask(&["lab", "up"]).contains("already up"));
    let servers: Vec<u32> = HOSTS.iter().filter_map(lab::server_pid).collect();
    assert_eq!(servers.len(), 4);

    xtask(&["lab", "down"]);
    assert_eq!(lab::existing_namespaces().unwrap(), Vec::<String>::new());
    assert!(!Path::new(RUN_DIR).exists());
    assert!(!pins.exists());
    for pid in servers {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z "),
            "server {pid} survived down: {stat}"
        );
    }
    // And once more, as the guard does: nothing left is not an error.
    assert!(xtask(&["lab", "down"]).contains("nothing to remove"));
    drop(teardown);
}
