//! The corpus in tests/corpus/ through the real ldirectord and through lb-config: the same
//! verdict for every file, and for bad files the same line and message.
//!
//! `ldirectord CONFIG status` parses the file before anything else: it exits 2 after printing
//! the error when the file is bad, and 3 ("stopped") when it is good and no daemon runs for
//! it. It also appends to /var/log/ldirectord.log, so it runs in a private mount namespace
//! with a tmpfs there when the machine allows it. Each file gets its own directory, and
//! `@TMP@` in a corpus file stands for it (monitor files, log files).
//!
//! Perl spends some 0.2 s of CPU compiling ldirectord and its modules, which for two hundred
//! files is most of a minute. So ldirectord is compiled once: a small module loaded with `-M`
//! runs in an INIT block, after the program is compiled and before its main code starts, and
//! forks once per file; each child sets `@ARGV = (CONFIG, "status")` and lets ldirectord's
//! unmodified main code run, exactly as the command line would. A few files also go through
//! the plain command, and both ways must print the same.
//!
//! Files named `ext-ok-*.cf` and `ext-bad-*.cf` use xdirectord's own directives: ldirectord
//! must call a line an unknown command, and lb-config must accept, or reject, the file.
//! Files named `quirk-*.cf` are ones ldirectord accepts while reading something other than
//! what they seem to say: lb-config must accept them too, with a warning of its own.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use lb_config::{ConfigError, Origin, Severity};

const LDIRECTORD: &str = "/usr/sbin/ldirectord";
const PID: u32 = 4242;

/// Every message of ldirectord's `read_config` that a file can provoke. `(text, exact)`:
/// exact messages must appear as such, the others as a prefix (they quote the input).
/// Left out because no file reaches them: "invalid virtualhost" and "invalid fallback server"
/// (their patterns always match), "Invalid IP address" (range ends are resolved to dotted
/// quads first) and "can not open file" (the file was found; as root it can be read).
const ERRORS: &[(&str, bool)] = &[
    ("Unknown command \"", false),
    ("Unknown command ", false),
    ("invalid check timeout value", true),
    ("invalid negotiate timeout value", true),
    (
        "connecttimeout directive deprecated in favour of negotiatetimeout",
        true,
    ),
    (
        "timeout directive deprecated in favour of checktimeout and negotiatetimeout",
        true,
    ),
    ("invalid check interval value", true),
    ("invalid check count value", true),
    ("invalid failure count value", true),
    ("invalid fallback command", true),
    ("autoreload must be 'yes' or 'no'", true),
    ("unable to open logfile: ", false),
    ("fork must be 'yes' or 'no'", true),
    ("supervised must be 'yes' or 'no'", true),
    ("quiescent must be 'yes' or 'no'", true),
    ("readdquiescent must be 'yes' or 'no'", true),
    ("no email address specified", true),
    ("invalid email alert frequency", true),
    ("invalid email alert status at: ", false),
    ("invalid email alert status: ", false),
    ("no email from address specified", true),
    ("cleanstop must be 'yes' or 'no'", true),
    ("invalid SMTP server address", true),
    ("maintenance directory not specified", true),
    (
        "cannot specify an IPv6 address here. please use \"virtual6\" instead.",
        true,
    ),
    ("invalid ipv6 address for virtual server", true),
    ("invalid address for virtual server", true),
    ("invalid address for virtual service", true),
    ("duplicate virtual server", true),
    (
        "cannot specify \"real6\" here.  please use \"real\" instead",
        true,
    ),
    (
        "cannot specify \"real\" here.  please use \"real6\" instead",
        true,
    ),
    (
        "cannot specify \"fallback6\" here.  please use \"fallback\" instead",
        true,
    ),
    (
        "cannot specify \"fallback\" here.  please use \"fallback6\" instead",
        true,
    ),
    ("no request string specified", true),
    ("invalid receive string", true),
    (
        "checktype must be \"connect\", \"negotiate\", \"on\", \"off\", \"ping\", \"external\", \"external-perl\" or a positive number",
        true,
    ),
    ("invalid check command", true),
    ("invalid check timeout", true),
    ("invalid negotiate timeout", true),
    ("invalid check count", true),
    ("invalid failure count", true),
    ("invalid checkinterval", true),
    ("invalid port", true),
    ("checkport must be in range 1..65536", true),
    ("invalid login string", true),
    ("invalid password", true),
    ("invalid database", true),
    ("invalid secret", true),
    ("invalid string for load testing", true),
    (
        "invalid scheduler, should be only lowercase letters (a-z)",
        true,
    ),
    ("invalid persistent timeout", true),
    ("invalid sched-flags", true),
    (
        "invalid netmask: a prefix length between 1 and 128 is required",
        true,
    ),
    ("invalid netmask: dotted quad notation is required", true),
    (
        "protocol must be fwm if the virtual service is a fwmark (a number)",
        true,
    ),
    (
        "protocol must be tcp or udp if the virtual service is an address and port",
        true,
    ),
    ("invalid protocol", true),
    ("ops must be 'yes' or 'no'", true),
    (
        "service must be dns, ftp, http, https, http_proxy, imap, imaps, ldap, ldaps, mysql, nntp, none, oracle, pop, pops, radius, pgsql, simpletcp, sip, smtp or submission",
        true,
    ),
    ("httpmethod must be GET or HEAD", true),
    ("unable to open monitorfile ", false),
    ("invalid address for real server (wrong format)", true),
    ("invalid port (", false),
    ("Address range for IPv6 is not supported yet", true),
    ("Invalid Range: ", false),
    ("forward method must be gate, masq or ipip", true),
    ("Invalid real server line, around \"", false),
    (
        "invalid IPv4 address or could not resolve for fallback server: ",
        false,
    ),
    (
        "invalid IPv6 address or could not resolve for fallback server: ",
        false,
    ),
    ("invalid port for fallback server", true),
];

/// Message fragments that must also be covered (both ends of a range, the two host errors).
const ERROR_SUFFIXES: &[&str] = &["(could not resolve host)", "(could not resolve end host)"];

const WARNINGS: &[&str] = &[
    "checkcount option is deprecated and slated for removal.  please see 'failurecount'",
    "please update your config not to use a bare supervised directive",
    "maintenance directory does not exist",
    "ignored when fork=no",
];

struct Outcome {
    name: String,
    problems: Vec<String>,
    ld_errors: Vec<String>,
    ld_warnings: Vec<String>,
    good: bool,
}

#[test]
fn corpus_agrees_with_ldirectord() {
    ensure_ldirectord();
    let isolate = private_var_log_works();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .expect("tests/corpus exists")
        .map(|e| e.expect("readable corpus directory").path())
        .filter(|p| p.extension().is_some_and(|e| e == "cf"))
        .collect();
    files.sort();

    let work = tempfile::Builder::new()
        .prefix("xdirectord-differential-")
        .tempdir()
        .unwrap();
    let configs: Vec<(String, PathBuf)> = files
        .iter()
        .enumerate()
        .map(|(i, file)| prepare(file, work.path(), i))
        .collect();
    let runs = run_ldirectord_forked(work.path(), &configs, isolate);
    let mut outcomes: Vec<Outcome> = configs
        .iter()
        .zip(&runs)
        .map(|((stem, config), ld)| compare(stem, config, ld))
        .collect();
    outcomes.sort_by(|a, b| a.name.cmp(&b.name));
    let mut report = cross_check(&configs, &runs, isolate);
    if files.len() < 80 {
        report.push_str(&format!(
            "the corpus has {} files, at least 80 are wanted\n",
            files.len()
        ));
    }
    for o in &outcomes {
        for p in &o.problems {
            report.push_str(&format!("{}: {p}\n", o.name));
        }
    }
    let good = outcomes.iter().filter(|o| o.good).count();
    eprintln!(
        "corpus: {} files, {good} good, {} bad",
        outcomes.len(),
        outcomes.len() - good
    );

    let seen_errors: BTreeSet<&str> = outcomes
        .iter()
        .flat_map(|o| o.ld_errors.iter().map(String::as_str))
        .collect();
    for (message, exact) in ERRORS {
        let covered = seen_errors.iter().any(|m| {
            if *exact {
                m == message
            } else {
                m.starts_with(message)
            }
        });
        if !covered {
            report.push_str(&format!("no corpus file makes ldirectord say: {message}\n"));
        }
    }
    for suffix in ERROR_SUFFIXES {
        if !seen_errors.iter().any(|m| m.ends_with(suffix)) {
            report.push_str(&format!(
                "no corpus file makes ldirectord say: ...{suffix}\n"
            ));
        }
    }
    let seen_warnings: Vec<&str> = outcomes
        .iter()
        .flat_map(|o| o.ld_warnings.iter().map(String::as_str))
        .collect();
    for w in WARNINGS {
        if !seen_warnings.iter().any(|m| m.contains(w)) {
            report.push_str(&format!("no corpus file makes ldirectord warn: {w}\n"));
        }
    }
    if good < 20 || outcomes.len() - good < 20 {
        report.push_str("the corpus needs at least 20 good and 20 bad files\n");
    }
    assert!(
        report.is_empty(),
        "lb-config and ldirectord disagree:\n{report}"
    );
}

/// Files made up from plausible lines with a few strange values among them (a fixed seed, so
/// every run sees the same ones), through both readers. This found nothing the corpus had not;
/// it stays to catch what a new corpus file would not think of.
#[test]
fn generated_files_agree_with_ldirectord() {
    ensure_ldirectord();
    let isolate = private_var_log_works();
    let work = tempfile::Builder::new()
        .prefix("xdirectord-generated-")
        .tempdir()
        .unwrap();
    let mut random = Random(0x5eed_1dd1_4ec7_0bd5);
    let configs: Vec<(String, PathBuf)> = (0..400)
        .map(|i| {
            let name = format!("generated-{i:03}");
            let dir = work.path().join(&name);
            std::fs::create_dir(&dir).unwrap();
            let config = dir.join(format!("xdt-{}-{name}.cf", std::process::id()));
            std::fs::write(&config, generate(&mut random, &dir)).unwrap();
            (name, config)
        })
        .collect();
    let runs = run_ldirectord_forked(work.path(), &configs, isolate);
    let mut report = String::new();
    let mut good = 0;
    for ((stem, config), ld) in configs.iter().zip(&runs) {
        let outcome = compare(stem, config, ld);
        good += usize::from(outcome.good);
        for p in outcome.problems {
            let text = String::from_utf8_lossy(&std::fs::read(config).unwrap()).into_owned();
            report.push_str(&format!("{stem}: {p}\n--- the file:\n{text}---\n"));
        }
    }
    assert!(
        good > 100 && good < 350,
        "the generator should make good and bad files: {good} good"
    );
    assert!(
        report.is_empty(),
        "lb-config and ldirectord disagree:\n{report}"
    );
}

/// xorshift64*: enough to pick lines, and the same on every machine.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// One configuration: a few global lines, one to three blocks of plausible directives, and
/// now and then a strange value, a blank line or a comment.
fn generate(r: &mut Random, dir: &Path) -> String {
    const JUNK: &[&str] = &[
        "",
        "x",
        "0",
        "00",
        "\"",
        "\" x\"",
        "5 # c",
        "yes ",
        "\r",
        "4294967296",
        "1m",
        "a#b",
        "WRR",
        "-",
    ];
    const PORTS: &[&str] = &[
        "80", "http", "53", "domain", "443", "8080", "0", "3128", "21", "5060", "080", "https",
    ];
    const GLOBAL: &[(&str, &[&str])] = &[
        ("checktimeout", &["3", "5", "10"]),
        ("negotiatetimeout", &["7", "20"]),
        ("checkinterval", &["1", "5", "5 # five"]),
        ("checkcount", &["2"]),
        ("failurecount", &["1", "3"]),
        (
            "fallback",
            &[
                "127.0.0.1",
                "127.0.0.1:80 masq",
                "localhost:8080 gate",
                "127.0.0.1:http",
            ],
        ),
        ("fallback6", &["[::1]", "[::1]:80"]),
        ("fallbackcommand", &["/bin/fb", "\"/bin/fb x\""]),
        ("autoreload", &["yes", "no"]),
        ("callback", &["\"/bin/cb\""]),
        ("logfile", &["\"local0\"", "\"@DIR@/l.log\""]),
        ("execute", &["a.cf"]),
        ("fork", &["yes", "no"]),
        ("supervised", &["yes", "no"]),
        ("quiescent", &["yes", "no"]),
        ("readdquiescent", &["yes", "no"]),
        ("emailalert", &["a@b", "\"a@b, c@d\""]),
        ("emailalertfreq", &["0", "60"]),
        ("emailalertstatus", &["all", "none", "starting,running", ""]),
        ("emailalertfrom", &["x@y"]),
        ("cleanstop", &["yes", "no"]),
        ("smtp", &["mail", "127.0.0.1"]),
        ("maintenancedir", &["@DIR@", "/nonexistent"]),
    ];
    const BLOCK: &[(&str, &[&str])] = &[
        ("request", &["\"/\"", "\"index.html\"", "\"/x y\""]),
        ("receive", &["\"ok\"", "\"Test Page\""]),
        (
            "checktype",
            &[
                "connect",
                "negotiate",
                "ping",
                "off",
                "on",
                "external",
                "external-perl",
                "3",
                "0",
            ],
        ),
        ("checkcommand", &["/bin/true", "\"/bin/c x\""]),
        ("checktimeout", &["3", "5"]),
        ("negotiatetimeout", &["7"]),
        ("checkcount", &["2"]),
        ("failurecount", &["3"]),
        ("checkinterval", &["4"]),
        ("checkport", &["80", "8080", "65535"]),
        ("login", &["\"u\""]),
        ("passwd", &["\"p\""]),
        ("database", &["\"db\""]),
        ("secret", &["\"s\""]),
        ("load", &["\"cpu\""]),
        ("scheduler", &["rr", "wlc", "sh", "mh"]),
        ("persistent", &["0", "300"]),
        ("schedflags", &["sh-port"]),
        ("ops", &["yes", "no"]),
        (
            "service",
            &[
                "http",
                "https",
                "ftp",
                "sip",
                "dns",
                "none",
                "simpletcp",
                "http_proxy",
                "mysql",
                "ldap",
            ],
        ),
        ("httpmethod", &["GET", "head"]),
        ("virtualhost", &["www.x", "\"www.x\"", ""]),
        ("fallbackcommand", &["/bin/fb"]),
        ("quiescent", &["yes", "no"]),
        ("emailalert", &["a@b"]),
        ("emailalertfreq", &["60"]),
        ("emailalertstatus", &["all", "none,running"]),
        ("monitorfile", &["@DIR@/m.log"]),
        ("cleanstop", &["yes", "no"]),
        ("smtp", &["mail"]),
        ("servicename", &["Web"]),
        ("comment", &["c"]),
    ];
    let mut lines: Vec<String> = Vec::new();
    for _ in 0..r.below(5) {
        let (name, values) = GLOBAL[r.below(GLOBAL.len())];
        let value = if r.chance(8) {
            r.pick(JUNK)
        } else {
            r.pick(values)
        };
        let sep = r.pick(&["=", " = "]);
        lines.push(format!("{name}{sep}{value}"));
    }
    for _ in 0..1 + r.below(3) {
        let six = r.chance(25);
        let fwm = r.chance(20);
        let hosts: &[&str] = if six {
            &["[2001:db8::1]", "[::1]", "[2001:DB8::0:2]", "[fe80::1]"]
        } else {
            &[
                "192.0.2.1",
                "198.51.100.2",
                "127.0.0.1",
                "localhost",
                "0.0.0.9",
                "010.1.1.1",
                "1",
            ]
        };
        let virtual_ = if fwm {
            format!("{}", 1 + r.below(3))
        } else if six {
            format!("{}:{}", r.pick(&["[2001:db8::5]", "[::1]"]), r.pick(PORTS))
        } else {
            format!("192.0.2.{}:{}", 1 + r.below(3), r.pick(PORTS))
        };
        lines.push(format!("virtual{}={virtual_}", if six { "6" } else { "" }));
        for _ in 0..1 + r.below(7) {
            let indent = r.pick(&["\t", "    ", "\t"]);
            let sep = r.pick(&["=", " = "]);
            let six_suffix = if six { "6" } else { "" };
            let line = match r.below(6) {
                0..=2 => {
                    let mut host = r.pick(hosts).to_string();
                    if !six && r.chance(15) {
                        host = r
                            .pick(&[
                                "192.0.2.1->192.0.2.5",
                                "0.0.0.9->0.0.0.12",
                                "198.51.100.2->198.51.100.9",
                                "127.0.0.1->localhost",
                                "0.0.0.8->0.0.0.9",
                                "192.0.2.9->192.0.2.1",
                            ])
                            .to_string();
                    }
                    let port = if fwm || r.chance(20) {
                        String::new()
                    } else {
                        format!(":{}", r.pick(PORTS))
                    };
                    let mut flags = vec![r.pick(&["gate", "masq", "ipip"])];
                    if r.chance(40) {
                        flags.push(r.pick(&["1", "0", "10", "3"]));
                    }
                    if r.chance(30) {
                        flags.push(r.pick(&[
                            "\"/a\", \"b\"",
                            "\"a\" \"b\"",
                            "\"a\", \"b c\"",
                            "\"/c\" \"d\" l:3",
                            "\"l:5\" \"u:9\"",
                            "\"x 2\" \"y\" \"z\" \"w\"",
                        ]));
                    }
                    if r.chance(30) {
                        flags.push(r.pick(&["l:3", "u:9", "l:3 u:9"]));
                    }
                    let value = if r.chance(8) {
                        r.pick(JUNK).to_string()
                    } else {
                        format!("{host}{port} {}", flags.join(" "))
                    };
                    format!("{indent}real{six_suffix}{sep}{value}")
                }
                3 => {
                    let value = format!(
                        "{}{}{}",
                        r.pick(hosts),
                        r.pick(&["", ":80", ":8080", ":http"]),
                        r.pick(&["", " gate", " masq"])
                    );
                    format!("{indent}fallback{six_suffix}{sep}{value}")
                }
                _ => {
                    let (name, values) = BLOCK[r.below(BLOCK.len())];
                    let value = if r.chance(8) {
                        r.pick(JUNK)
                    } else {
                        r.pick(values)
                    };
                    format!("{indent}{name}{sep}{value}")
                }
            };
            lines.push(line);
        }
        if r.chance(10) {
            lines.push(format!(
                "\tprotocol={}",
                if fwm { "fwm" } else { r.pick(&["tcp", "udp"]) }
            ));
        }
        if r.chance(10) {
            lines.push(format!(
                "\tnetmask={}",
                if six {
                    r.pick(&["64", "128"])
                } else {
                    r.pick(&["255.255.255.0", "255.255.0.0"])
                }
            ));
        }
        match r.below(10) {
            0 => lines.push(String::new()),
            1 => lines.push("# comment".into()),
            _ => {}
        }
    }
    let mut text = lines.join("\n");
    text.push_str(r.pick(&["\n", "\n", "\n\n"]));
    text.replace("@DIR@", dir.to_str().unwrap())
}

/// A configuration that is nowhere: ldirectord's message and status.
#[test]
fn missing_config_agrees_with_ldirectord() {
    ensure_ldirectord();
    let missing = "/nonexistent/xdirectord-missing.cf";
    let script = format!("exec {LDIRECTORD} \"$0\" status");
    let mut command = ldirectord_command(&script, private_var_log_works());
    let output = command.arg(missing).output().expect("ldirectord runs");
    let mut ours = Vec::new();
    let status = lb_config::check_config_with(
        Some(missing.as_ref()),
        &lb_config::SystemEnvironment,
        &mut ours,
        PID,
    );
    assert_eq!(output.status.code(), Some(status));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&ours)
    );
}

/// Copies a corpus file into a directory of its own, `@TMP@` replaced by that directory.
fn prepare(file: &Path, work: &Path, index: usize) -> (String, PathBuf) {
    let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
    let dir = work.join(format!("{index:03}"));
    std::fs::create_dir(&dir).unwrap();
    let text = std::fs::read(file).unwrap();
    let text = replace(&text, b"@TMP@", dir.to_str().unwrap().as_bytes());
    // The name becomes ldirectord's CFGNAME, so its pid file name: keep it our own.
    let config = dir.join(format!("xdt-{}-{stem}.cf", std::process::id()));
    std::fs::write(&config, &text).unwrap();
    (stem, config)
}

fn compare(stem: &str, config: &Path, ld: &LdRun) -> Outcome {
    let stem = stem.to_string();
    let config = config.to_path_buf();
    let ours = lb_config::load(&config);
    let mut problems = Vec::new();
    let ld_stderr = normalise(&ld.stderr);

    let ld_errors = messages(&ld_stderr, "Error [PID]");
    let ld_warnings = messages(&ld_stderr, "Warning [PID]");
    let ours_rendered = |d: &lb_config::Diagnostic, path: &Path| {
        d.render(PID, path).replace(&format!("[{PID}]"), "[PID]")
    };

    let extension = stem.starts_with("ext-");
    match (ld.status, &ours) {
        (Some(3), Ok(config_ok)) if !extension => {
            check_warnings(
                &mut problems,
                &ld_warnings,
                &config_ok.warnings,
                &ld_stderr,
                |d| ours_rendered(d, &config),
            );
            // A quirk file is one ldirectord reads silently in a surprising way.
            if stem.starts_with("quirk-")
                && !config_ok
                    .warnings
                    .iter()
                    .any(|w| w.origin == Origin::Xdirectord)
            {
                problems.push("a quirk file without a warning from xdirectord".to_string());
            }
        }
        (
            Some(2),
            Err(ConfigError::Invalid {
                error, warnings, ..
            }),
        ) if !extension => {
            let rendered = ours_rendered(error, &config);
            if ld_errors.len() != 1 || !ld_stderr.contains(&rendered) {
                problems.push(format!(
                    "ldirectord says\n{ld_stderr}\nlb-config says\n{rendered}"
                ));
            }
            check_warnings(&mut problems, &ld_warnings, warnings, &ld_stderr, |d| {
                ours_rendered(d, &config)
            });
        }
        (Some(2), result) if extension => {
            if !ld_stderr.contains("Unknown command") {
                problems.push(format!(
                    "ldirectord should not know the extension:\n{ld_stderr}"
                ));
            }
            let expect_ok = stem.starts_with("ext-ok-");
            match result {
                Ok(_) if expect_ok => {}
                Err(ConfigError::Invalid { error, .. }) if !expect_ok => {
                    let rendered = ours_rendered(error, &config);
                    if error.origin == Origin::Ldirectord && !ld_stderr.contains(&rendered) {
                        problems.push(format!(
                            "ldirectord says\n{ld_stderr}\nlb-config says\n{rendered}"
                        ));
                    }
                }
                Ok(_) => problems.push("lb-config accepts a file named ext-bad-*".to_string()),
                Err(e) => problems.push(format!(
                    "lb-config rejects a file named ext-ok-*: {}",
                    e.render(PID)
                )),
            }
        }
        // ldirectord never finishes expanding a huge range; xdirectord refuses it.
        (None, Err(ConfigError::Invalid { error, .. }))
            if error.origin == Origin::Xdirectord && error.message.contains("real servers") => {}
        (status, result) => problems.push(format!(
            "verdicts differ: ldirectord exit {status:?}\n{ld_stderr}\nlb-config: {}",
            match result {
                Ok(_) => "valid".to_string(),
                Err(e) => e.render(PID),
            }
        )),
    }
    Outcome {
        name: stem,
        problems,
        ld_errors: ld_errors.into_iter().map(|m| message_text(&m)).collect(),
        ld_warnings: ld_warnings.into_iter().map(|m| message_text(&m)).collect(),
        good: ld.status == Some(3),
    }
}

/// ldirectord's warnings are exactly ours of ldirectord's origin, each printed the same way.
fn check_warnings(
    problems: &mut Vec<String>,
    ld_warnings: &[String],
    ours: &[lb_config::Diagnostic],
    ld_stderr: &str,
    render: impl Fn(&lb_config::Diagnostic) -> String,
) {
    let native: Vec<&lb_config::Diagnostic> = ours
        .iter()
        .filter(|w| w.origin == Origin::Ldirectord && w.severity == Severity::Warning)
        .collect();
    if native.len() != ld_warnings.len() {
        problems.push(format!(
            "ldirectord printed {} warnings, lb-config has {}:\n{ld_stderr}",
            ld_warnings.len(),
            native.len()
        ));
    }
    for w in native {
        let rendered = render(w);
        if !ld_stderr.contains(&rendered) {
            problems.push(format!(
                "ldirectord did not print our warning {rendered:?}:\n{ld_stderr}"
            ));
        }
    }
}

/// The messages starting with `prefix`, each up to the next message or Perl diagnostic.
fn messages(stderr: &str, prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = stderr;
    while let Some(start) = rest.find(prefix) {
        let tail = &rest[start..];
        let end = [
            "\nError [PID]",
            "\nWarning [PID]",
            "\nUse of ",
            "\nsetlogsock",
        ]
        .iter()
        .filter_map(|m| tail[1..].find(m).map(|i| i + 1))
        .min()
        .unwrap_or(tail.len());
        found.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    found
}

/// The text after `...: `.
fn message_text(message: &str) -> String {
    message
        .split_once(": ")
        .map_or(message, |(_, m)| m)
        .trim_end_matches('\n')
        .to_string()
}

fn normalise(stderr: &[u8]) -> String {
    let pid = regex::Regex::new(r"(Error|Warning) \[[0-9]+\]").unwrap();
    pid.replace_all(&String::from_utf8_lossy(stderr), "$1 [PID]")
        .into_owned()
}

fn replace(text: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    out
}

struct LdRun {
    status: Option<i32>,
    stderr: Vec<u8>,
}

/// The Perl module that forks ldirectord once per configuration (see the top of this file).
const FORK_DRIVER: &str = r#"package XdtFork;
INIT {
	my $child = 0;
	for my $cfg (split /\n/, $ENV{XDT_CONFIGS}) {
		my $pid = fork();
		die "fork: $!" unless defined $pid;
		if ($pid == 0) {
			open(STDERR, ">", "$cfg.stderr") or die "$cfg.stderr: $!";
			open(STDOUT, ">", "/dev/null") or die "/dev/null: $!";
			@ARGV = ($cfg, "status");
			# A range of millions of addresses keeps ldirectord busy for hours.
			alarm(20);
			$child = 1;
			last;
		}
		waitpid($pid, 0);
		open(my $out, ">", "$cfg.status") or die "$cfg.status: $!";
		print $out (($? & 127) ? "signal" : ($? >> 8)), "\n";
		close($out);
	}
	CORE::exit(0) unless $child;
}
1;
"#;

/// Every configuration through ldirectord, a few processes side by side.
fn run_ldirectord_forked(work: &Path, configs: &[(String, PathBuf)], isolate: bool) -> Vec<LdRun> {
    std::fs::write(work.join("XdtFork.pm"), FORK_DRIVER).unwrap();
    let processes = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 4);
    let chunk = configs.len().div_ceil(processes).max(1);
    let children: Vec<_> = configs
        .chunks(chunk)
        .map(|part| {
            let list: Vec<&str> = part.iter().map(|(_, c)| c.to_str().unwrap()).collect();
            let perl = format!("exec perl -I{} -MXdtFork {LDIRECTORD}", work.display());
            let mut command = ldirectord_command(&perl, isolate);
            command.env("XDT_CONFIGS", list.join("\n"));
            command.spawn().expect("perl runs")
        })
        .collect();
    for mut child in children {
        let status = child.wait().unwrap();
        assert!(
            status.success(),
            "the ldirectord fork driver failed: {status}"
        );
    }
    configs
        .iter()
        .map(|(_, config)| {
            let mut status = config.clone().into_os_string();
            status.push(".status");
            let mut stderr = config.clone().into_os_string();
            stderr.push(".stderr");
            let status = std::fs::read_to_string(&status).expect("the driver wrote a status");
            LdRun {
                status: status.trim().parse().ok(),
                stderr: std::fs::read(&stderr).expect("the driver wrote stderr"),
            }
        })
        .collect()
}

/// `sh -c SCRIPT` with ldirectord's environment, in a private /var/log when possible.
fn ldirectord_command(script: &str, isolate: bool) -> Command {
    let mut command = if isolate {
        let mut c = Command::new("unshare");
        c.args([
            "--mount",
            "sh",
            "-c",
            &format!("mount -t tmpfs tmpfs /var/log && {script}"),
        ]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    };
    // PERLIO is what ldirectord re-executes itself to set; setting it first saves the exec.
    command
        .env("PERLIO", "perlio")
        .env("HOSTNAME", "xdirectord-test")
        .env("LC_ALL", "C");
    command
}

/// The plain `ldirectord CONFIG status` for a few files (the first good one, the first bad
/// one, the first with warnings) must print what the forked run printed.
fn cross_check(configs: &[(String, PathBuf)], runs: &[LdRun], isolate: bool) -> String {
    let mut picks: Vec<usize> = Vec::new();
    let wanted: [&dyn Fn(&LdRun) -> bool; 3] =
        [&|r| r.status == Some(3), &|r| r.status == Some(2), &|r| {
            normalise(&r.stderr).contains("Warning [PID]")
        }];
    for want in wanted {
        if let Some(i) = runs.iter().position(want) {
            picks.push(i);
        }
    }
    let mut report = String::new();
    for i in picks {
        let (stem, config) = &configs[i];
        let script = format!("exec {LDIRECTORD} \"$0\" status");
        let mut command = ldirectord_command(&script, isolate);
        // `sh -c SCRIPT NAME` sets $0 to NAME.
        command.arg(config);
        let output = command.output().expect("ldirectord runs");
        let direct = normalise(&output.stderr);
        let forked = normalise(&runs[i].stderr);
        if output.status.code() != runs[i].status || direct != forked {
            report.push_str(&format!(
                "{stem}: the plain command and the forked run differ:\n{:?} {direct}\n{:?} {forked}\n",
                output.status.code(),
                runs[i].status
            ));
        }
    }
    report
}

/// Keeps ldirectord's log lines out of the machine's /var/log.
fn private_var_log_works() -> bool {
    Command::new("unshare")
        .args(["--mount", "sh", "-c", "mount -t tmpfs tmpfs /var/log"])
        .status()
        .is_ok_and(|s| s.success())
}

/// The reference implementation, installed as CI installs it when it is missing (once: the
/// tests of this file run side by side, and dpkg takes one installer at a time).
fn ensure_ldirectord() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(install_ldirectord);
    assert!(Path::new(LDIRECTORD).exists(), "{LDIRECTORD} is missing");
}

fn install_ldirectord() {
    if Path::new(LDIRECTORD).exists() {
        return;
    }
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "ldirectord"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        let updated = Command::new("apt-get")
            .arg("update")
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            updated && install(),
            "ldirectord is missing and `apt-get install -y ldirectord` failed (this test needs root)"
        );
    }
    assert!(
        Path::new(LDIRECTORD).exists(),
        "ldirectord installed but {LDIRECTORD} is missing"
    );
}
