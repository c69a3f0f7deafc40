//! The xdirectord binary's command line without a running daemon: exit codes and messages,
//! compared with the real ldirectord's where ldirectord has the same command (its texts with
//! "ldirectord" read as "xdirectord"), and xdirectord's own `-t`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const XDIRECTORD: &str = env!("CARGO_BIN_EXE_xdirectord");
const LDIRECTORD: &str = "/usr/sbin/ldirectord";

/// A configuration in its own directory, logging there, with a name no other test uses (the
/// pid file is named after it).
struct Site {
    dir: tempfile::TempDir,
    config: PathBuf,
    name: String,
}

impl Site {
    fn new(test: &str, body: &str) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let name = format!("xdt-cli-{test}-{}.cf", std::process::id());
        let config = dir.path().join(&name);
        let log = dir.path().join("log");
        std::fs::write(&config, format!("logfile=\"{}\"\n{body}", log.display())).unwrap();
        Site { dir, config, name }
    }

    fn good(test: &str) -> Site {
        Site::new(
            test,
            "checktimeout=3\nvirtual=192.0.2.1:80\n\treal=192.0.2.11:80 gate\n\tchecktype=connect\n",
        )
    }

    fn arg(&self) -> &str {
        self.config.to_str().unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    fn pid_file(&self, program: &str) -> PathBuf {
        PathBuf::from(format!("/var/run/{program}.{}.pid", self.name))
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        for program in ["xdirectord", "ldirectord"] {
            let _ = std::fs::remove_file(self.pid_file(program));
        }
    }
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        // ldirectord re-executes itself to set PERLIO; setting it saves the exec.
        .env("PERLIO", "perlio")
        .env("LC_ALL", "C")
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn xdirectord(args: &[&str]) -> Output {
    run(XDIRECTORD, args)
}

/// ldirectord's output as xdirectord words it: its name replaced and pids masked.
fn as_xdirectord(text: &[u8]) -> String {
    mask_pids(&String::from_utf8_lossy(text).replace("ldirectord", "xdirectord"))
}

fn mask_pids(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('[') {
        out.push_str(&rest[..=i]);
        rest = &rest[i + 1..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 && rest[digits..].starts_with(']') {
            out.push_str("PID");
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
    out
}

fn text(bytes: &[u8]) -> String {
    mask_pids(&String::from_utf8_lossy(bytes))
}

/// Runs both with the same arguments; both exit codes, standard output and standard error
/// must match (`compare_stdout = false` for the usage text, which names the options).
fn same_as_ldirectord(args: &[&str], compare_stdout: bool) -> Output {
    assert!(
        Path::new(LDIRECTORD).exists(),
        "{LDIRECTORD} is missing: run `cargo xtask setup`"
    );
    let ours = xdirectord(args);
    let theirs = run(LDIRECTORD, args);
    assert_eq!(
        ours.status.code(),
        theirs.status.code(),
        "exit status of {args:?}"
    );
    assert_eq!(
        text(&ours.stderr),
        as_xdirectord(&theirs.stderr),
        "standard error of {args:?}"
    );
    if compare_stdout {
        assert_eq!(
            text(&ours.stdout),
            as_xdirectord(&theirs.stdout),
            "standard output of {args:?}"
        );
    }
    ours
}

#[test]
fn status_of_a_stopped_instance_is_3() {
    let site = Site::good("status");
    let out = same_as_ldirectord(&[site.arg(), "status"], true);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("xdirectord is stopped for {}\n", site.arg())
    );
    assert!(
        site.log()
            .contains("Exiting with exit_status 3: Exiting from xdirectord status"),
        "{}",
        site.log()
    );
}

/// A child killed when the test ends, passed or not.
struct Sleeper(std::process::Child);

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_stale_pid_file_is_status_1() {
    let site = Site::good("stale");
    // A live process that is not xdirectord (nor ldirectord).
    let sleeper = Sleeper(Command::new("sleep").arg("60").spawn().unwrap());
    for program in ["xdirectord", "ldirectord"] {
        std::fs::write(site.pid_file(program), format!("{}\n", sleeper.0.id())).unwrap();
    }
    let args = [site.arg(), "status"];
    let (ours, theirs) = (xdirectord(&args), run(LDIRECTORD, &args));
    drop(sleeper);
    assert_eq!(ours.status.code(), Some(1));
    assert_eq!(ours.status.code(), theirs.status.code());
    assert_eq!(text(&ours.stdout), as_xdirectord(&theirs.stdout));
    // ldirectord's own words, with xdirectord's pid file: Pacemaker's resource agent looks for
    // "ldirectord stale pid file" to tell a dead daemon from an error (tests/tests/pacemaker.rs).
    assert_eq!(
        String::from_utf8_lossy(&theirs.stderr),
        format!(
            "ldirectord stale pid file {} for {}\n",
            site.pid_file("ldirectord").display(),
            site.arg()
        )
    );
    assert_eq!(
        String::from_utf8_lossy(&ours.stderr),
        format!(
            "ldirectord stale pid file {} for {}\n",
            site.pid_file("xdirectord").display(),
            site.arg()
        )
    );
    // A pid that names no process at all is stale too.
    std::fs::write(site.pid_file("xdirectord"), "999999999\n").unwrap();
    assert_eq!(xdirectord(&[site.arg(), "status"]).status.code(), Some(1));
}

#[test]
fn reload_of_a_stopped_instance_is_1_and_logged() {
    let site = Site::good("reload");
    let out = same_as_ldirectord(&[site.arg(), "reload"], true);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
    let log = site.log();
    assert!(
        log.contains(&format!("] xdirectord is stopped for {}\n", site.arg())),
        "{log}"
    );
    assert!(
        log.contains("Exiting with exit_status 1: Exiting from xdirectord reload"),
        "{log}"
    );
    assert!(
        log.contains(&format!("|{}|", site.name)),
        "file lines carry the configuration's name: {log}"
    );
    assert_eq!(
        same_as_ldirectord(&[site.arg(), "force-reload"], true)
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn stop_and_try_restart_of_a_stopped_instance_are_0() {
    let site = Site::good("stop");
    assert_eq!(
        same_as_ldirectord(&[site.arg(), "stop"], true)
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        same_as_ldirectord(&[site.arg(), "try-restart"], true)
            .status
            .code(),
        Some(0)
    );
}

#[test]
fn a_missing_configuration_is_1() {
    let out = same_as_ldirectord(&["xdt-cli-no-such-file.cf", "status"], true);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Config file xdt-cli-no-such-file.cf not found\n"
    );
}

#[test]
fn a_bad_configuration_is_2_for_every_command() {
    let site = Site::new("bad", "quiescent=maybe\n");
    for command in ["status", "start", "stop", "reload"] {
        let out = same_as_ldirectord(&[site.arg(), command], true);
        assert_eq!(out.status.code(), Some(2), "{command}");
        assert_eq!(
            text(&out.stderr),
            format!(
                "Error [PID] reading file {} at line 2: quiescent must be 'yes' or 'no'\n",
                site.arg()
            )
        );
    }
    assert!(!site.pid_file("xdirectord").exists());
}

#[test]
fn unknown_commands_and_options_are_usage_255() {
    let site = Site::good("usage");
    for args in [
        vec![site.arg(), "bogus"],
        vec![],
        vec!["-x", "status"],
        vec!["status", site.arg()],
    ] {
        let out = same_as_ldirectord(&args, false);
        assert_eq!(out.status.code(), Some(255), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).starts_with("Usage:\n    xdirectord "),
            "{args:?}"
        );
    }
    let out = xdirectord(&["--backend", "dpdk", "status"]);
    assert_eq!(out.status.code(), Some(255));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Value \"dpdk\" invalid for option backend (auto, xdp or ipvs)\n"
    );
}

#[test]
fn version_and_help_are_0() {
    let out = xdirectord(&["-v"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .starts_with(&format!("xdirectord v{}\n", env!("CARGO_PKG_VERSION")))
    );
    let out = xdirectord(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--interface IF[,IF...]"));
}

#[test]
fn dash_t_checks_the_file() {
    let site = Site::good("t-good");
    let out = xdirectord(&["-t", site.arg()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty() && out.stderr.is_empty());

    let bad = Site::new("t-bad", "quiescent=maybe\n");
    let out = xdirectord(&["-t", bad.arg()]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        format!(
            "Error [PID] reading file {} at line 2: quiescent must be 'yes' or 'no'\n",
            bad.arg()
        )
    );

    let out = xdirectord(&["-t", "xdt-cli-no-such-file.cf"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Config file xdt-cli-no-such-file.cf not found\n"
    );
}

#[test]
fn checks_xdirectord_cannot_run_are_refused_by_dash_t_and_at_start() {
    let site = Site::new(
        "proxy",
        "virtual=192.0.2.1:3128\n\treal=192.0.2.11:3128 gate\n\tservice=http_proxy\n",
    );
    let expected = format!(
        "Error [PID] reading file {} at line 2: virtual service tcp:192.0.2.1:3128: \
         service http_proxy needs request to be an absolute URL (http://host/path), not \"/\"\n",
        site.arg()
    );
    let out = xdirectord(&["-t", site.arg()]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stderr), expected);
    let out = xdirectord(&[site.arg(), "start"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stderr), expected);
    assert!(!site.pid_file("xdirectord").exists());
    // Status is not refused: it must work for a daemon started before the file changed.
    assert_eq!(xdirectord(&[site.arg(), "status"]).status.code(), Some(3));
}

/// Every service ldirectord documents is accepted by `-t`, with the settings its check reads.
#[test]
fn every_ldirectord_service_is_accepted_by_dash_t() {
    let services = [
        (
            "ftp",
            21,
            "\trequest=\"welcome.msg\"\n\treceive=\"Welcome\"\n",
        ),
        ("smtp", 25, ""),
        ("submission", 587, ""),
        ("pop", 110, "\tlogin=\"u\"\n\tpasswd=\"p\"\n"),
        ("pops", 995, "\tlogin=\"u\"\n\tpasswd=\"p\"\n"),
        ("imap", 143, "\tlogin=\"u\"\n\tpasswd=\"p\"\n"),
        ("imaps", 993, ""),
        ("nntp", 119, ""),
        (
            "ldap",
            389,
            "\trequest=\"dc=example,dc=com\"\n\treceive=\"example\"\n",
        ),
        ("ldaps", 636, ""),
        (
            "mysql",
            3306,
            "\tlogin=\"u\"\n\tpasswd=\"p\"\n\tdatabase=\"d\"\n\trequest=\"SELECT 1\"\n",
        ),
        (
            "pgsql",
            5432,
            "\tlogin=\"u\"\n\tpasswd=\"p\"\n\tdatabase=\"d\"\n\trequest=\"SELECT 1\"\n",
        ),
        (
            "oracle",
            1521,
            "\tlogin=\"u\"\n\tpasswd=\"p\"\n\tdatabase=\"ORCL\"\n\trequest=\"SELECT 1 FROM DUAL\"\n",
        ),
        ("sip", 5060, "\tlogin=\"probe@example.com\"\n"),
        (
            "radius",
            1812,
            "\tlogin=\"u\"\n\tpasswd=\"p\"\n\tsecret=\"s\"\n",
        ),
    ];
    let mut text_of_file = String::new();
    for (i, (service, port, settings)) in services.iter().enumerate() {
        let protocol = if matches!(*service, "radius" | "sip") {
            "udp"
        } else {
            "tcp"
        };
        text_of_file.push_str(&format!(
            "virtual=192.0.2.{}:{port}\n\treal=192.0.2.11:{port} gate\n\tservice={service}\n\
             \tprotocol={protocol}\n\tchecktype=negotiate\n{settings}\n",
            i + 1
        ));
    }
    let site = Site::new("services", &text_of_file);
    let out = xdirectord(&["-t", site.arg()]);
    assert_eq!(text(&out.stderr), "");
    assert_eq!(out.status.code(), Some(0));
}

/// By default (`auto`) `-t` accepts every virtual ldirectord accepts: what XDP cannot serve
/// runs on IPVS. Asked for XDP (`--backend xdp`, or `backend = xdp` in the file), what the XDP
/// backend cannot hold is refused with its reason, naming the virtual and its line.
#[test]
fn virtuals_the_xdp_backend_cannot_hold_are_refused_by_dash_t_when_xdp_is_asked_for() {
    let xdp = "virtual service tcp:192.0.2.1:80: backend xdp:";
    let cases = [
        (
            "sched",
            "virtual=192.0.2.1:80\n\treal=192.0.2.11:80 gate\n\tchecktype=on\n\tscheduler=lblc\n",
            format!(
                "{xdp} scheduler \"lblc\" is not supported by the XDP backend (supported: wrr, \
                 rr, sh, dh, mh, lc, wlc, sed, nq)"
            ),
        ),
        (
            "fwmark",
            "virtual=7\n\treal=192.0.2.11 gate\n\tchecktype=on\n",
            "virtual service fwm:7: backend xdp: firewall marks need the IPVS backend".into(),
        ),
        (
            "masq",
            "virtual=192.0.2.1:80\n\treal=192.0.2.11:8080 masq\n\tchecktype=on\n",
            format!(
                "{xdp} real server 192.0.2.11:8080: forwarding method masq needs the IPVS backend"
            ),
        ),
        (
            "thresholds",
            "virtual=192.0.2.1:80\n\treal=192.0.2.11:80 gate 1 u:100\n\tchecktype=on\n",
            format!(
                "{xdp} real server 192.0.2.11:80: connection thresholds (l:/u:) need the IPVS \
                 backend"
            ),
        ),
        (
            "schedflags",
            "virtual=192.0.2.1:80\n\treal=192.0.2.11:80 gate\n\tchecktype=on\n\tscheduler=sh\n\
             \tschedflags=sh-port\n",
            format!("{xdp} scheduler flags (schedflags) need the IPVS backend"),
        ),
    ];
    for (name, body, message) in cases {
        let site = Site::new(name, &format!("interface=eth0\n{body}"));
        let out = xdirectord(&["-t", site.arg()]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stderr));
        let out = xdirectord(&["--backend", "xdp", "-t", site.arg()]);
        assert_eq!(out.status.code(), Some(2), "{name}");
        let expected = format!(
            "Error [PID] reading file {} at line 3: {message}\n",
            site.arg()
        );
        assert_eq!(text(&out.stderr), expected, "{name}");
    }
}

/// What ipvsadm would refuse in the kernel is not a configuration error (ldirectord accepts the
/// file, and its virtual or real then never appears): `-t` warns.
#[test]
fn what_ipvsadm_refuses_is_a_warning_of_dash_t() {
    let site = Site::new(
        "ipvsadm",
        "virtual=192.0.2.1:0\n\treal=192.0.2.11 masq 1 l:10\n\tchecktype=on\n",
    );
    let out = xdirectord(&["-t", site.arg()]);
    assert_eq!(out.status.code(), Some(0));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("at line 2: virtual service tcp:192.0.2.1:0: ipvsadm refuses it: Zero port specified for non-persistent service"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "at line 3: real server 192.0.2.11:0: a lower threshold (l:10) above the upper one"
        ),
        "{stderr}"
    );
    let site = Site::new(
        "flags",
        "virtual=192.0.2.1:80\n\treal=192.0.2.11 masq\n\tchecktype=on\n\tschedflags=sh-port\n",
    );
    let out = xdirectord(&["-t", site.arg()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).ends_with(
            "at line 2: virtual service tcp:192.0.2.1:80: incompatible scheduler flag `sh-port'\n"
        ),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn warnings_are_printed_for_every_command() {
    let site = Site::new(
        "warn",
        "checkcount=2\nvirtual=192.0.2.1:80\n\treal=192.0.2.11:80 gate\n",
    );
    let out = same_as_ldirectord(&[site.arg(), "status"], true);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).starts_with("Warning [PID] reading file"),
        "{}",
        text(&out.stderr)
    );
    let out = xdirectord(&["-t", site.arg()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("checkcount option is deprecated"),
        "{}",
        text(&out.stderr)
    );
}

/// `[<localtime>] ` (Perl's scalar localtime: `Sat Nov  1 23:05:09 2026`) masked as `[TIME] `.
fn mask_times(text: &str) -> String {
    text.lines()
        .map(|line| match line.split_once("] ") {
            Some((stamp, rest)) if stamp.starts_with('[') && stamp.len() == 25 => {
                format!("[TIME] {rest}\n")
            }
            _ => format!("{line}\n"),
        })
        .collect()
}

#[test]
fn supervised_logs_go_to_stdout_with_the_time() {
    let site = Site::new(
        "supervised",
        "supervised=yes\nvirtual=192.0.2.1:80\n\treal=192.0.2.11:80 gate\n",
    );
    let ours = xdirectord(&[site.arg(), "status"]);
    let theirs = run(LDIRECTORD, &[site.arg(), "status"]);
    assert_eq!(ours.status.code(), Some(3));
    assert_eq!(ours.status.code(), theirs.status.code());
    // The invocation line names each program's own path.
    let ours = mask_times(&String::from_utf8_lossy(&ours.stdout)).replace(XDIRECTORD, "PROGRAM");
    let theirs =
        mask_times(&as_xdirectord(&theirs.stdout)).replace("/usr/sbin/xdirectord", "PROGRAM");
    assert_eq!(ours, theirs);
    assert!(
        ours.starts_with("[TIME] Invoking xdirectord invoked as: PROGRAM "),
        "{ours}"
    );
}
