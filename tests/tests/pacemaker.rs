//! Pacemaker and heartbeat driving xdirectord as they drive ldirectord, with their real scripts:
//! resource-agents' `ocf:heartbeat:ldirectord` (its `ldirectord` parameter naming xdirectord)
//! and `ocf-tester`, and heartbeat's ResourceManager running `/etc/ha.d/resource.d/xdirectord`.
//!
//! What the resource agent answers is what its script makes of xdirectord's exit codes and
//! messages (`status`: 0 running; 3 stopped; 1 with "ldirectord stale pid file" is not running;
//! any other 1 or a 2 for a bad configuration is an error; `stop` falls back to
//! `pgrep -f "<binary> <config> start"` when `status` errs). Each test has its own director
//! (`xdirectord_tests::director`, namespaces `xdops-*`) and configuration, and stops its daemons
//! and removes their pins and pid files on drop, also when it fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use xdirectord_tests::director::{self, Director, PATIENCE, VIP};
use xtask::lab::agent::Agent;

const RA: &str = "/usr/lib/ocf/resource.d/heartbeat/ldirectord";
const OCF_TESTER: &str = "/usr/sbin/ocf-tester";
const RESOURCE_MANAGER: &str = "/usr/share/heartbeat/ResourceManager";

// The OCF return codes (ocf-returncodes).
const OCF_SUCCESS: i32 = 0;
const OCF_ERR_GENERIC: i32 = 1;
const OCF_NOT_RUNNING: i32 = 7;

/// The xdirectord under test, built once per test binary.
fn xdirectord() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        for tool in [RA, OCF_TESTER, RESOURCE_MANAGER] {
            assert!(
                Path::new(tool).exists(),
                "{tool} is missing: run `cargo xtask setup`"
            );
        }
        xdirectord_tests::e2e::build()
            .expect("build xdirectord")
            .xdirectord
    })
}

/// A director, a configuration on it in a directory of the test's, and the agent of that
/// configuration, stopped (and its pins and pid file removed) on drop.
struct Site {
    director: Director,
    dir: PathBuf,
    config: PathBuf,
    log: PathBuf,
    agent: Agent,
}

impl Site {
    fn new(test: &str) -> Site {
        let director = Director::new(&format!("xdops-{test}"));
        // A directory name of our own, not a random one: heartbeat reads "running" or "OK" in a
        // status line as "we own it" (see `heartbeat_takes_and_gives_back_the_resource`).
        let dir = std::env::temp_dir().join(format!("xdops-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join(format!("xdops-{test}-{}.cf", std::process::id()));
        let log = dir.join("log");
        let agent = Agent::new(xdirectord(), &config);
        agent.kill();
        let site = Site {
            director,
            dir,
            config,
            log,
            agent,
        };
        // cleanstop = no: a stop leaves the table forwarding, as a cluster that restarts the
        // agent wants it.
        site.write("cleanstop=no\n");
        site
    }

    fn write(&self, globals: &str) {
        std::fs::write(&self.config, self.director.config(&self.log, globals, "")).unwrap();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.agent.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Runs the resource agent's `action` as Pacemaker's executor does.
    fn ra_output(&self, action: &str) -> Output {
        let mut command = self.director.command(RA);
        command
            .arg(action)
            .env("OCF_ROOT", "/usr/lib/ocf")
            .env("OCF_RESOURCE_INSTANCE", "xdops-lvs")
            .env("OCF_RESKEY_configfile", &self.config)
            .env("OCF_RESKEY_ldirectord", xdirectord())
            .env("OCF_RESKEY_CRM_meta_timeout", "20000")
            .stdin(Stdio::null());
        command.output().expect("run the resource agent")
    }

    /// Asserts the resource agent's answer to `action`.
    fn expect(&self, action: &str, code: i32) {
        let out = self.ra_output(action);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{action}: {}{}\n--- log ---\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.agent.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `sleep` killed when the test ends, passed or not.
struct Sleeper(std::process::Child);

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn ocf_tester_passes() {
    let site = Site::new("ocft");
    let out = site
        .director
        .command(OCF_TESTER)
        .args(["-n", "xdops-lvs", "-o"])
        .arg(format!("ldirectord={}", xdirectord().display()))
        .arg("-o")
        .arg(format!("configfile={}", site.config.display()))
        .arg(RA)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.contains(&format!("{RA} passed all tests")),
        "{said}\n--- log ---\n{}",
        site.log()
    );
    assert!(
        site.pid().is_none(),
        "ocf-tester ends with the agent stopped"
    );
}

#[test]
fn a_configuration_error_is_a_generic_error_and_stop_still_stops_the_agent() {
    let site = Site::new("ocfbad");
    // A file broken before the start: nothing starts, and stop succeeds.
    site.write("quiescent=maybe\n");
    site.expect("monitor", OCF_ERR_GENERIC);
    site.expect("start", OCF_ERR_GENERIC);
    assert!(site.pid().is_none(), "started on a bad configuration");
    site.expect("stop", OCF_SUCCESS);

    // A running agent whose file goes bad: monitor errs, and stop, which cannot trust status,
    // finds the agent by its command line (pgrep) and stops it.
    site.write("");
    site.expect("start", OCF_SUCCESS);
    let pid = site.pid().expect("a pid file");
    site.write("quiescent=maybe\n");
    let out = site.ra_output("monitor");
    assert_eq!(out.status.code(), Some(OCF_ERR_GENERIC));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("quiescent must be 'yes' or 'no'"),
        "the agent shows xdirectord's message: {out:?}"
    );
    site.expect("stop", OCF_SUCCESS);
    assert!(!director::is_xdirectord(pid), "stop left the agent running");
    // Mended: not running (whether the agent's TERM ended it cleanly or its KILL left a stale
    // pid file), and it starts again.
    site.write("cleanstop=no\n");
    site.expect("monitor", OCF_NOT_RUNNING);
    site.expect("start", OCF_SUCCESS);
    site.expect("stop", OCF_SUCCESS);
}

#[test]
fn a_stale_pid_file_is_not_running_and_start_takes_over() {
    let site = Site::new("ocfstale");
    // A live process that is not xdirectord, as after a reboot that reused the pid.
    let sleeper = Sleeper(Command::new("sleep").arg("600").spawn().unwrap());
    std::fs::write(site.agent.pid_file(), format!("{}\n", sleeper.0.id())).unwrap();
    site.expect("monitor", OCF_NOT_RUNNING);
    site.expect("stop", OCF_SUCCESS);
    assert!(
        Path::new(&format!("/proc/{}", sleeper.0.id())).exists(),
        "stop killed a process that is not xdirectord"
    );
    site.expect("start", OCF_SUCCESS);
    let pid = site.pid().expect("a pid file");
    assert_ne!(pid, sleeper.0.id(), "the pid file names the new agent");
    site.expect("monitor", OCF_SUCCESS);
    site.expect("stop", OCF_SUCCESS);
    site.expect("monitor", OCF_NOT_RUNNING);
    assert!(!site.agent.pid_file().exists());
}

/// Frames sent to the VIP in the background, counted by phase: how many came back towards the
/// real, and every one that did not.
struct Traffic {
    phase: AtomicUsize,
    forwarded: [AtomicUsize; 4],
    lost: Mutex<Vec<String>>,
    stop: AtomicBool,
}

impl Traffic {
    /// Waits until `n` frames have been forwarded in the current phase.
    fn wait(&self, n: usize, context: impl Fn() -> String) {
        let phase = self.phase.load(Ordering::SeqCst);
        let deadline = Instant::now() + PATIENCE;
        while self.forwarded[phase].load(Ordering::SeqCst) < n {
            assert!(
                Instant::now() < deadline,
                "phase {phase}: {} frames forwarded, lost: {:?}\n{}",
                self.forwarded[phase].load(Ordering::SeqCst),
                self.lost.lock().unwrap(),
                context()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn next_phase(&self) {
        self.phase.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_killed_agent_is_not_running_and_the_table_forwards_while_pacemaker_restarts_it() {
    let site = Site::new("ocfkill");
    site.expect("start", OCF_SUCCESS);
    site.director.wait_until_forwarding(VIP, || site.log());
    let traffic = Traffic {
        phase: AtomicUsize::new(0),
        forwarded: Default::default(),
        lost: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
    };
    let phases = [
        "agent running",
        "agent killed",
        "agent stopped by Pacemaker",
        "agent restarted",
    ];
    std::thread::scope(|s| {
        let sender = s.spawn(|| {
            while !traffic.stop.load(Ordering::SeqCst) {
                let phase = traffic.phase.load(Ordering::SeqCst);
                match site.director.send_syn(VIP) {
                    Some(mac) if mac == director::REAL_MAC => {
                        traffic.forwarded[phase].fetch_add(1, Ordering::SeqCst);
                    }
                    other => traffic.lost.lock().unwrap().push(format!(
                        "{}: {}",
                        phases[phase],
                        other.map_or("not forwarded".into(), |m| format!("sent to {m:02x?}"))
                    )),
                }
            }
        });
        let stop_traffic = || traffic.stop.store(true, Ordering::SeqCst);
        // A panic below must end the sender too, or the scope would wait for it forever.
        let guard = Guard(stop_traffic);
        traffic.wait(3, || site.log());

        // SIGKILL: no clean stop, the pid file stays behind and names a dead process.
        let pid = site.pid().expect("a pid file");
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        while director::is_xdirectord(pid) {
            std::thread::sleep(Duration::from_millis(10));
        }
        traffic.next_phase();
        traffic.wait(3, || site.log());

        // Pacemaker's recurring monitor sees it gone; recovery is stop, then start.
        site.expect("monitor", OCF_NOT_RUNNING);
        site.expect("stop", OCF_SUCCESS);
        traffic.next_phase();
        traffic.wait(3, || site.log());
        // Meanwhile the real's weight changed in the file: the new agent's first apply, once
        // its check has spoken, says so, and the table it takes over keeps forwarding across it.
        let text = std::fs::read_to_string(&site.config).unwrap();
        std::fs::write(&site.config, text.replace(" gate\n", " gate 2\n")).unwrap();
        site.expect("start", OCF_SUCCESS);
        site.expect("monitor", OCF_SUCCESS);
        traffic.next_phase();
        let restored = format!(
            "Restored real server: {}:80 ({VIP}:80) (Weight set to 2)",
            director::REAL
        );
        let deadline = Instant::now() + PATIENCE;
        while !site.log().contains(&restored) {
            assert!(
                Instant::now() < deadline,
                "no {restored:?} in\n{}",
                site.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let before = traffic.forwarded[3].load(Ordering::SeqCst);
        traffic.wait(before + 3, || site.log());
        drop(guard);
        sender.join().expect("the sender");
    });
    let lost = traffic.lost.into_inner().unwrap();
    assert!(lost.is_empty(), "frames not forwarded: {lost:?}");
    site.expect("stop", OCF_SUCCESS);
    site.expect("monitor", OCF_NOT_RUNNING);
}

/// Runs a closure on drop.
struct Guard<F: Fn()>(F);

impl<F: Fn()> Drop for Guard<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

#[test]
fn heartbeat_takes_and_gives_back_the_resource() {
    let site = Site::new("hb");
    // heartbeat reads /etc/ha.d/haresources, which this machine's heartbeat may own: the test
    // gives ResourceManager an /etc/ha.d of its own in a private mount namespace, holding what a
    // site has there: heartbeat's shellfuncs, the resource script as the package installs it (a
    // link to the binary, here the one under test), and the haresources line.
    let ha = site.dir.join("ha.d");
    std::fs::create_dir_all(ha.join("resource.d")).unwrap();
    std::fs::copy("/etc/ha.d/shellfuncs", ha.join("shellfuncs")).expect("heartbeat's shellfuncs");
    std::os::unix::fs::symlink(xdirectord(), ha.join("resource.d/xdirectord")).unwrap();
    let resource = format!("xdirectord::{}", site.config.display());
    std::fs::write(ha.join("haresources"), format!("node1 {resource}\n")).unwrap();
    let debug_log = site.dir.join("ha-debug.log");
    // ResourceManager reboots the machine when a stop fails and status says the resource still
    // runs ("running" or "OK" on standard output); xdirectord's status prints neither there.
    let resource_manager = |args: &[&str]| -> i32 {
        let script = format!(
            "mount --bind {} /etc/ha.d && exec nsenter --net={} {RESOURCE_MANAGER} {}",
            ha.display(),
            site.director.netns_path().display(),
            args.join(" ")
        );
        let out = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .env("HA_DEBUGLOG", &debug_log)
            .env("HA_LOGFILE", site.dir.join("ha.log"))
            .env("HA_STOPRETRYMAX", "1")
            .stdin(Stdio::null())
            .output()
            .expect("run ResourceManager");
        out.status.code().expect("ResourceManager exited")
    };
    let context = || {
        format!(
            "--- heartbeat ---\n{}\n--- log ---\n{}",
            std::fs::read_to_string(&debug_log).unwrap_or_default(),
            site.log()
        )
    };

    assert_eq!(
        resource_manager(&["takegroup", &resource]),
        0,
        "{}",
        context()
    );
    let pid = site
        .pid()
        .unwrap_or_else(|| panic!("not started\n{}", context()));
    assert!(director::is_xdirectord(pid));
    site.director.wait_until_forwarding(VIP, context);
    // As for ldirectord, whose running status goes to standard error, heartbeat never reads
    // the resource as held: it starts it again on every takeover, which does nothing.
    assert_eq!(resource_manager(&["status", &resource]), 3, "{}", context());
    assert_eq!(
        resource_manager(&["takegroup", &resource]),
        0,
        "{}",
        context()
    );
    assert_eq!(
        site.pid(),
        Some(pid),
        "a second takeover started another agent"
    );

    assert_eq!(
        resource_manager(&["givegroup", &resource]),
        0,
        "{}",
        context()
    );
    assert!(
        !director::is_xdirectord(pid),
        "still running\n{}",
        context()
    );
    assert!(site.pid().is_none(), "pid file left\n{}", context());
    // cleanstop = no: the table stays for the node that takes over, or the next takeover here.
    assert!(site.director.forwards(VIP));
}
