//! The xdirectord binary with a running daemon: start, status, reload, restart, stop and the
//! foreground modes, with ldirectord's exit codes and messages. The daemon runs in a network
//! namespace made by the test, on a veth pair there (the configuration's `interface`), as it
//! would under `ip netns exec` on a real director.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const XDIRECTORD: &str = env!("CARGO_BIN_EXE_xdirectord");
const PATIENCE: Duration = Duration::from_secs(30);

/// A network namespace with a veth pair `xdt0`/`xdt1`, removed on drop.
struct Netns {
    name: String,
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("ip runs");
    assert!(status.success(), "ip {args:?} failed");
}

impl Netns {
    fn new(test: &str) -> Netns {
        let name = format!("xdt-{test}-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        ip(&["netns", "add", &name]);
        let netns = Netns { name };
        let n = netns.name.as_str();
        ip(&["-n", n, "link", "set", "lo", "up"]);
        ip(&[
            "-n", n, "link", "add", "xdt0", "type", "veth", "peer", "name", "xdt1",
        ]);
        ip(&["-n", n, "link", "set", "xdt0", "up"]);
        ip(&["-n", n, "link", "set", "xdt1", "up"]);
        ip(&["-n", n, "addr", "add", "10.200.0.1/24", "dev", "xdt0"]);
        netns
    }

    /// `ip netns exec <ns> xdirectord ARGS`.
    fn xdirectord(&self, args: &[&str]) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.name, XDIRECTORD])
            .args(args);
        command
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A configuration for the namespace's veth; stops whatever daemon it started on drop.
struct Site {
    dir: tempfile::TempDir,
    config: PathBuf,
    name: String,
    interface: &'static str,
}

impl Site {
    fn new(test: &str, extra: &str) -> Site {
        Site::on("xdt0", test, extra)
    }

    /// A site on `interface` (each instance attaches to its own), VIP 10.200.0.10 on xdt0
    /// and 10.200.0.11 on xdt1.
    fn on(interface: &'static str, test: &str, extra: &str) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let name = format!("xdt-daemon-{test}-{}.cf", std::process::id());
        let config = dir.path().join(&name);
        let site = Site {
            dir,
            config,
            name,
            interface,
        };
        site.write(extra);
        site
    }

    fn write(&self, extra: &str) {
        let log = self.dir.path().join("log");
        let vip = if self.interface == "xdt0" {
            "10.200.0.10"
        } else {
            "10.200.0.11"
        };
        std::fs::write(
            &self.config,
            format!(
                "logfile=\"{}\"\ninterface={}\ncheckinterval=1\n{extra}\
                 virtual={vip}:80\n\treal=10.200.0.2:80 gate\n\tchecktype=on\n",
                log.display(),
                self.interface,
            ),
        )
        .unwrap();
    }

    fn arg(&self) -> &str {
        self.config.to_str().unwrap()
    }

    fn pid_file(&self) -> PathBuf {
        PathBuf::from(format!("/var/run/xdirectord.{}.pid", self.name))
    }

    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    fn wait_for_log(&self, text: &str) {
        let deadline = Instant::now() + PATIENCE;
        while !self.log().contains(text) {
            assert!(
                Instant::now() < deadline,
                "no {text:?} in the log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_until_gone(&self) {
        let deadline = Instant::now() + PATIENCE;
        while self.pid_file().exists() {
            assert!(
                Instant::now() < deadline,
                "the daemon did not stop:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.pid_file().exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = std::fs::remove_file(self.pid_file());
    }
}

fn output(mut command: Command) -> Output {
    command.output().expect("xdirectord runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn start_status_reload_restart_stop() {
    let netns = Netns::new("life");
    let site = Site::new("life", "");
    let out = output(netns.xdirectord(&[site.arg(), "start"]));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stderr(&out),
        site.log()
    );
    let pid = site.pid().expect("a pid file");
    assert!(
        site.log().contains("Starting xdirectord v"),
        "{}",
        site.log()
    );

    let out = output(netns.xdirectord(&[site.arg(), "status"]));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stderr(&out),
        format!("xdirectord for {} is running with pid: {pid}\n", site.arg())
    );
    assert!(out.stdout.is_empty());

    let out = output(netns.xdirectord(&[site.arg(), "start"]));
    assert_eq!(
        out.status.code(),
        Some(0),
        "start of a running instance does nothing"
    );
    assert_eq!(site.pid(), Some(pid));

    let out = output(netns.xdirectord(&[site.arg(), "reload"]));
    assert_eq!(out.status.code(), Some(0));
    site.wait_for_log("Reloading xdirectord daemon config on signal");
    assert_eq!(site.pid(), Some(pid));

    let out = output(netns.xdirectord(&[site.arg(), "restart"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let new_pid = site.pid().expect("a pid file after restart");
    assert_ne!(new_pid, pid);
    assert!(
        site.log()
            .contains("xdirectord daemon terminated on signal: TERM"),
        "{}",
        site.log()
    );

    let out = output(netns.xdirectord(&[site.arg(), "stop"]));
    assert_eq!(out.status.code(), Some(0));
    // Unlike ldirectord's, stop returns once the daemon has exited (a resource agent's monitor
    // or start follows at once).
    // (A daemon that exited has no command line, also while a zombie.)
    assert!(
        std::fs::read(format!("/proc/{new_pid}/cmdline")).map_or(true, |c| c.is_empty()),
        "the daemon still runs after stop returned"
    );
    assert!(
        !site.pid_file().exists(),
        "the pid file outlived the daemon"
    );
    let out = output(netns.xdirectord(&[site.arg(), "status"]));
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("xdirectord is stopped for {}\n", site.arg())
    );
}

#[test]
fn a_bad_reload_keeps_the_daemon_serving() {
    let netns = Netns::new("badreload");
    let site = Site::new("badreload", "");
    assert_eq!(
        output(netns.xdirectord(&[site.arg(), "start"]))
            .status
            .code(),
        Some(0)
    );
    let pid = site.pid().unwrap();
    site.write("quiescent=maybe\n");
    let error = format!(
        "reading file {} at line 4: quiescent must be 'yes' or 'no'",
        site.arg()
    );
    // The command reads the file first, as ldirectord's does: it refuses, signals nothing.
    let out = output(netns.xdirectord(&[site.arg(), "reload"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains(&error), "{}", stderr(&out));
    assert_eq!(
        output(netns.xdirectord(&[site.arg(), "status"]))
            .status
            .code(),
        Some(2)
    );
    // A HUP straight to the daemon: it logs the error and keeps its configuration.
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    site.wait_for_log(&error);
    site.write("");
    let out = output(netns.xdirectord(&[site.arg(), "status"]));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(site.pid(), Some(pid));
}

#[test]
fn foreground_with_dash_d_logs_to_stderr_and_stops_on_term() {
    let netns = Netns::new("fg");
    let site = Site::new("fg", "");
    let mut child = netns
        .xdirectord(&["-d", site.arg(), "start"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut pid = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.split_once("with pid: ").map(|(_, p)| p.to_string()) {
            pid = rest.trim().parse::<i32>().ok();
        }
        if line.starts_with("Added virtual server: 10.200.0.10:80") {
            break;
        }
    }
    let pid = pid.expect("Starting xdirectord v… with pid: N");
    assert!(!site.pid_file().exists(), "-d writes no pid file");
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        rest.iter()
            .any(|l| l == "Purged virtual server (stop): 10.200.0.10:80"),
        "{rest:#?}"
    );
    assert!(
        rest.iter()
            .any(|l| l == "xdirectord daemon terminated on signal: TERM"),
        "{rest:#?}"
    );
}

#[test]
fn supervised_stays_in_the_foreground_and_logs_to_stdout() {
    let netns = Netns::new("sup");
    let site = Site::new("sup", "supervised=yes\n");
    let mut child = netns
        .xdirectord(&[site.arg(), "start"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    // `[<localtime>] msg`, the first being the invocation.
    assert!(
        first.starts_with('[') && first.contains("] Invoking xdirectord invoked as: "),
        "{first}"
    );
    let starting = lines.next().unwrap().unwrap();
    let pid: i32 = starting
        .rsplit_once("with pid: ")
        .unwrap()
        .1
        .parse()
        .unwrap();
    // Signals are handled from this line on.
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(
        rest.iter()
            .any(|l| l.ends_with("] xdirectord daemon terminated on signal: INT")),
        "{rest:#?}"
    );
}

#[test]
fn execute_starts_and_stops_further_instances() {
    let netns = Netns::new("exec");
    let other = Site::on("xdt1", "exec-other", "");
    let site = Site::new("exec", &format!("execute = {}\n", other.arg()));
    assert_eq!(
        output(netns.xdirectord(&[site.arg(), "start"]))
            .status
            .code(),
        Some(0)
    );
    let deadline = Instant::now() + PATIENCE;
    while other.pid().is_none() {
        assert!(
            Instant::now() < deadline,
            "the execute instance did not start:\n{}",
            site.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = output(netns.xdirectord(&[site.arg(), "status"]));
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains(&format!("xdirectord for {} is running", other.arg())),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        output(netns.xdirectord(&[site.arg(), "stop"]))
            .status
            .code(),
        Some(0)
    );
    site.wait_until_gone();
    other.wait_until_gone();
}

#[test]
fn a_configuration_named_relative_to_the_shell_is_reread_after_daemonising() {
    let netns = Netns::new("relative");
    let site = Site::new("relative", "");
    let relative = format!("./{}", site.name);
    let mut start = netns.xdirectord(&[&relative, "start"]);
    start.current_dir(site.dir.path());
    assert_eq!(output(start).status.code(), Some(0));
    // The daemon works in `/`; a reload must still find the file the shell named.
    let text = std::fs::read_to_string(&site.config).unwrap() + "\treal=10.200.0.3:80 gate\n";
    std::fs::write(&site.config, text).unwrap();
    let mut reload = netns.xdirectord(&[&relative, "reload"]);
    reload.current_dir(site.dir.path());
    assert_eq!(output(reload).status.code(), Some(0));
    site.wait_for_log("Added real server: 10.200.0.3:80 (10.200.0.10:80) (Weight set to 1)");
    assert!(!site.log().contains("can not open file"), "{}", site.log());
}

/// This machine's kernel has no IPVS (and loads no modules): a virtual only IPVS can serve
/// fails the start, and a reload that adds one is refused, each with a message naming the
/// virtual and the missing module. The XDP virtual keeps serving.
#[test]
fn a_virtual_that_needs_ipvs_on_a_kernel_without_it() {
    assert!(
        !std::path::Path::new("/proc/net/ip_vs").exists(),
        "this test needs a kernel without IPVS (the project's machines have none; the IPVS \
         tests run in a VM)"
    );
    let netns = Netns::new("noipvs");
    let masq = "virtual=10.200.0.20:80\n\treal=10.200.0.2:8080 masq\n\tchecktype=on\n";
    let site = Site::new("noipvs", masq);
    let out = output(netns.xdirectord(&[site.arg(), "start"]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let why = "virtual service tcp:10.200.0.20:80 needs IPVS (IPVS: real server 10.200.0.2:8080: \
               forwarding method masq needs the IPVS backend), but this kernel has no IPVS: the \
               ip_vs module is not loaded and `modprobe ip_vs`";
    assert!(stderr(&out).contains(why), "{}", stderr(&out));
    assert!(site.pid().is_none());

    // Started without it, the agent refuses a reload that brings it, and keeps serving.
    site.write("");
    let out = output(netns.xdirectord(&[site.arg(), "start"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let pid = site.pid().expect("running");
    site.write(masq);
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    site.wait_for_log(why);
    assert_eq!(site.pid(), Some(pid));
    assert!(
        site.log()
            .contains("Virtual service tcp:10.200.0.10:80 runs on XDP on xdt0"),
        "{}",
        site.log()
    );
}
