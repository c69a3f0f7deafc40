//! The Debian package, as `cargo xtask package` builds it (here around the debug binary the tests
//! already built, to spare a release build), installed on this machine with dpkg and purged at the
//! end, also when the test fails (a package of that name installed before is purged too).
//!
//! There is no systemd as PID 1 here, so the unit is checked with `systemd-analyze verify`, and
//! its ExecStart, ExecReload and ExecStop lines are read from the installed file and run as
//! systemd runs them for `Type=forking`: `%i` replaced, no shell, a clean environment, `/` as
//! the working directory, the main pid read from `PIDFile=` once ExecStart has returned. The
//! daemon runs in a network namespace of the test's (`nsenter --net`, as `NetworkNamespacePath=`
//! would), on a veth there (`xdirectord_tests::director`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use xdirectord_tests::director::{self, Director, PATIENCE, VIP, VIP2};
use xtask::package::{
    BINARY_PATH, COMPLETION_PATH, Compression, EXAMPLE_PATH, HA_RESOURCE_PATH, MAN_PATH, UNIT_PATH,
};

/// The package while installed; purged on drop.
struct Installed;

impl Installed {
    fn install(deb: &Path) -> Installed {
        let out = run(Command::new("dpkg").arg("--install").arg(deb));
        assert!(out.status.success(), "dpkg --install: {}", both(&out));
        Installed
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg")
            .args(["--purge", "xdirectord"])
            .stdout(Stdio::null())
            .status();
    }
}

/// A file removed on drop.
struct Removed(PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"))
}

fn both(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The value of `key=` in the unit's `[Service]` section.
fn service_line<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .skip_while(|l| l.trim() != "[Service]")
        .take_while(|l| !l.starts_with('[') || l.trim() == "[Service]")
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in [Service]:\n{unit}"))
}

/// An Exec line as systemd reads it: specifiers replaced, split into words. Only the syntax the
/// unit uses is accepted (no prefixes, quotes or variables), so nothing is read differently here.
fn exec_argv(line: &str, instance: &str) -> Vec<String> {
    assert!(
        !line.contains(['"', '\'', '$', '\\', ';']) && !line.starts_with(['-', '@', '+', '!', ':']),
        "unit syntax this test does not read as systemd would: {line}"
    );
    let line = line.replace("%i", instance);
    assert!(!line.contains('%'), "an unhandled specifier: {line}");
    line.split_whitespace().map(str::to_owned).collect()
}

/// Runs an Exec line as systemd runs a service's command, in the director's network namespace.
fn exec(director: &Director, argv: &[String]) -> Output {
    let mut command = director.command(&argv[0]);
    command
        .args(&argv[1..])
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .current_dir("/")
        .stdin(Stdio::null());
    run(&mut command)
}

fn wait_for(what: &str, context: impl Fn() -> String, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "{what}\n{}", context());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_package_installs_its_unit_runs_the_daemon_and_it_purges() {
    let binaries = xdirectord_tests::e2e::build().expect("build xdirectord");
    let out_dir = tempfile::tempdir().unwrap();
    let deb = xtask::package::build_deb(&binaries.xdirectord, out_dir.path(), Compression::None)
        .expect("package");
    let info = run(Command::new("dpkg-deb").arg("--field").arg(&deb));
    let info = String::from_utf8_lossy(&info.stdout).into_owned();
    assert!(info.contains("\nDepends: libc6 (>= "), "{info}");

    let installed = Installed::install(&deb);
    let shipped = [
        BINARY_PATH,
        UNIT_PATH,
        MAN_PATH,
        COMPLETION_PATH,
        HA_RESOURCE_PATH,
        EXAMPLE_PATH,
    ];
    let listed = run(Command::new("dpkg").args(["--listfiles", "xdirectord"]));
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    for path in shipped {
        assert!(
            listed.lines().any(|l| l == path),
            "{path} not in:\n{listed}"
        );
        assert!(Path::new(path).exists(), "{path} not installed");
    }
    let version = run(Command::new(BINARY_PATH).arg("-v"));
    assert!(
        String::from_utf8_lossy(&version.stdout).starts_with(&format!(
            "xdirectord v{}\n",
            xtask::package::version().unwrap()
        )),
        "{}",
        both(&version)
    );
    // heartbeat's resource script (haresources `xdirectord::CONFIG`) is the binary itself, as
    // /etc/ha.d/resource.d/ldirectord is ldirectord.
    assert_eq!(
        std::fs::read_link(HA_RESOURCE_PATH).unwrap(),
        Path::new(BINARY_PATH)
    );
    let example = run(Command::new(BINARY_PATH).args(["-t", EXAMPLE_PATH]));
    assert!(example.status.success(), "{}", both(&example));

    // The man page: found by man, and groff has nothing to say about it.
    let found = run(Command::new("man").args(["-w", "xdirectord"]));
    assert_eq!(String::from_utf8_lossy(&found.stdout).trim(), MAN_PATH);
    let page = run(Command::new("man")
        .args(["--warnings", "-E", "UTF-8", "-l", MAN_PATH])
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80"));
    assert!(page.status.success(), "{}", both(&page));
    assert!(page.stderr.is_empty(), "{}", both(&page));
    let text = String::from_utf8_lossy(&page.stdout);
    assert!(
        text.contains("--interface IF[,IF...]") && text.contains("xdirectord@.service"),
        "{text}"
    );

    // The completion, sourced as bash-completion sources it.
    let complete = |words: &str| {
        let script = format!(
            "source {COMPLETION_PATH}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
             _xdirectord; printf '%s\\n' \"${{COMPREPLY[@]}}\""
        );
        let out = run(Command::new("bash").args(["-c", &script]));
        assert!(out.status.success(), "{}", both(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(
        complete("xdirectord web.cf ''"),
        "start\nstop\nrestart\ntry-restart\nreload\nforce-reload\nstatus\n"
    );
    assert_eq!(complete("xdirectord --backend ''"), "auto\nxdp\nipvs\n");
    assert_eq!(complete("xdirectord -d --de"), "--debug\n");
    assert_eq!(complete("xdirectord show --s"), "--stats\n");

    // The unit.
    let instance = format!("xdops-unit-{}.cf", std::process::id());
    let verify = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("xdirectord@{instance}.service")));
    let said = both(&verify);
    assert!(verify.status.success(), "{said}");
    assert!(
        !said.contains("xdirectord"),
        "systemd-analyze verify has something to say about the unit:\n{said}"
    );
    let unit = std::fs::read_to_string(UNIT_PATH).unwrap();
    assert_eq!(service_line(&unit, "Type"), "forking");
    let pid_file = PathBuf::from(service_line(&unit, "PIDFile").replace("%i", &instance));
    let [start, reload, stop] = ["ExecStart", "ExecReload", "ExecStop"]
        .map(|k| exec_argv(service_line(&unit, k), &instance));

    // The configuration where the instance name finds it, as the command line looks it up.
    let director = Director::new("xdops-unit");
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("log");
    let config = Path::new("/etc/ha.d").join(&instance);
    let _config = Removed(config.clone());
    std::fs::write(&config, director.config(&log, "", "")).unwrap();
    let agent = xtask::lab::agent::Agent::new(BINARY_PATH, &config);
    let _daemon = Daemon(agent.clone());
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    // ExecStart: returns once the daemon runs; the pid file names it (systemd's main pid).
    let out = exec(&director, &start);
    assert!(
        out.status.success(),
        "{start:?}: {}{}",
        both(&out),
        log_text()
    );
    let main_pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap_or_else(|e| panic!("{}: {e} after ExecStart", pid_file.display()))
        .trim()
        .parse()
        .expect("a pid");
    assert!(director::is_xdirectord(main_pid));
    assert_eq!(
        std::fs::read(format!("/proc/{main_pid}/cmdline")).unwrap(),
        format!("{BINARY_PATH}\0{instance}\0start\0").into_bytes(),
        "the daemon keeps the command line the resource agent's pgrep looks for"
    );
    director.wait_until_forwarding(VIP, log_text);
    assert!(!director.forwards(VIP2), "{VIP2} before it is configured");

    // ExecReload: HUP; the daemon reads the file again and its new virtual service forwards.
    std::fs::write(
        &config,
        director.config(&log, "", &Director::virtual_service(VIP2)),
    )
    .unwrap();
    let out = exec(&director, &reload);
    assert!(out.status.success(), "{reload:?}: {}", both(&out));
    director.wait_until_forwarding(VIP2, log_text);
    assert!(log_text().contains("Reloading xdirectord daemon config on signal"));
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        main_pid.to_string(),
        "a reload keeps the daemon"
    );

    // ExecStop: returns once the daemon has exited (systemd would wait for the main pid), its
    // pid file removed and, with cleanstop = yes, its virtual services with it.
    let out = exec(&director, &stop);
    assert!(out.status.success(), "{stop:?}: {}", both(&out));
    assert!(
        !director::is_xdirectord(main_pid),
        "still running after ExecStop"
    );
    assert!(!pid_file.exists(), "{} left", pid_file.display());
    wait_for(
        "the stopped daemon's pins are still there",
        log_text,
        || !agent.pin_dir().exists(),
    );
    assert!(!director.forwards(VIP));
    assert!(
        log_text().contains("xdirectord daemon terminated on signal: TERM"),
        "{}",
        log_text()
    );

    // Purge: nothing of the package is left.
    drop(installed);
    let status = run(Command::new("dpkg-query").args(["-W", "-f=${Status}", "xdirectord"]));
    assert!(
        !String::from_utf8_lossy(&status.stdout).contains("installed"),
        "{}",
        both(&status)
    );
    for path in shipped {
        assert!(
            std::fs::symlink_metadata(path).is_err(),
            "{path} left after purge"
        );
    }
}

/// Stops the test's daemon (if one still runs) and removes its pins and pid file on drop.
struct Daemon(xtask::lab::agent::Agent);

impl Drop for Daemon {
    fn drop(&mut self) {
        self.0.kill();
    }
}
