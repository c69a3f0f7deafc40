//! The command line, read as ldirectord reads its own (Getopt::Long with `bundling`,
//! `no_auto_abbrev`, `require_order`: options first, single-letter options bundle, `--` ends
//! them), plus xdirectord's `--backend`, `--interface`, `-t` and `show`:
//!
//! ```text
//! xdirectord [-d] [--backend auto|xdp|ipvs] [--interface IF[,IF…]] [CONFIG] start|stop|restart|try-restart|reload|force-reload|status
//! xdirectord -t [CONFIG]
//! xdirectord show [CONFIG] [--stats|--rate] [--json]
//! xdirectord -h | -v
//! ```
//!
//! With two positional arguments the first is the configuration; with one it is the command
//! and the configuration is `ldirectord.cf`; further ones are ignored, as ldirectord does. An
//! unknown option or command prints the usage and exits 255.
//!
//! The usage and `--help` texts come from [`crate::usage`], which also makes the man page and the
//! bash completion; its tables and this parser are checked against each other below.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt as _;

use lb_config::BackendKind;

use crate::daemon::BackendOverrides;

/// `Starting xdirectord v… as daemon`: ldirectord's `$VERSION_STR` is `Linux Director v…`.
pub const VERSION_STR: &str = concat!("xdirectord v", env!("CARGO_PKG_VERSION"));

/// An instance command (ldirectord's `$CMD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Start,
    Stop,
    Restart,
    TryRestart,
    Reload,
    ForceReload,
    Status,
}

impl Command {
    pub fn from_arg(arg: &OsStr) -> Option<Command> {
        Some(match arg.as_bytes() {
            b"start" => Command::Start,
            b"stop" => Command::Stop,
            b"restart" => Command::Restart,
            b"try-restart" => Command::TryRestart,
            b"reload" => Command::Reload,
            b"force-reload" => Command::ForceReload,
            b"status" => Command::Status,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Start => "start",
            Command::Stop => "stop",
            Command::Restart => "restart",
            Command::TryRestart => "try-restart",
            Command::Reload => "reload",
            Command::ForceReload => "force-reload",
            Command::Status => "status",
        }
    }
}

/// `[-d] [--backend …] [--interface …] [CONFIG] COMMAND`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceArgs {
    pub debug: bool,
    pub overrides: BackendOverrides,
    /// `None`: ldirectord's default, `ldirectord.cf`.
    pub config: Option<OsString>,
    pub command: Command,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    Help,
    Version,
    /// Print `error` (if any) to standard error and the usage to standard output; exit 255.
    Usage {
        error: Option<String>,
    },
    /// `-t [CONFIG]`.
    Test {
        overrides: BackendOverrides,
        config: Option<OsString>,
    },
    /// `show [CONFIG] [--stats|--rate] [--json]`.
    Show {
        config: Option<String>,
        view: crate::show::View,
        json: bool,
    },
    /// `show --help`.
    ShowHelp,
    Instance(InstanceArgs),
}

fn usage(error: impl Into<String>) -> Invocation {
    Invocation::Usage {
        error: Some(error.into()),
    }
}

/// Reads the arguments (without the program name).
pub fn parse(args: &[OsString]) -> Invocation {
    let (mut debug, mut help, mut version, mut test) = (false, false, false, false);
    let mut overrides = BackendOverrides::default();
    let mut rest = args.iter().peekable();
    while let Some(arg) = rest.peek() {
        let bytes = arg.as_bytes();
        if bytes == b"--" {
            rest.next();
            break;
        }
        if let Some(long) = bytes.strip_prefix(b"--") {
            rest.next();
            let long = String::from_utf8_lossy(long).into_owned();
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (long.clone(), None),
            };
            match name.as_str() {
                "debug" | "help" | "version" if inline.is_some() => {
                    return usage(format!("Option {name} does not take an argument"));
                }
                "debug" => debug = true,
                "help" => help = true,
                "version" => version = true,
                "backend" | "interface" | "metrics" => {
                    let Some(value) =
                        inline.or_else(|| rest.next().map(|v| v.to_string_lossy().into_owned()))
                    else {
                        return usage(format!("Option {name} requires an argument"));
                    };
                    if name == "metrics" {
                        // As the file's `metrics` takes it: an address and a port.
                        match value.trim().parse() {
                            Ok(addr) => overrides.metrics = Some(addr),
                            Err(_) => {
                                return usage(format!(
                                    "Value \"{value}\" invalid for option metrics (ADDR:PORT, e.g. 127.0.0.1:9100 or [::1]:9100)"
                                ));
                            }
                        }
                    } else if name == "backend" {
                        overrides.backend = Some(match value.as_str() {
                            "auto" => BackendKind::Auto,
                            "xdp" => BackendKind::Xdp,
                            "ipvs" => BackendKind::Ipvs,
                            _ => {
                                return usage(format!(
                                    "Value \"{value}\" invalid for option backend (auto, xdp or ipvs)"
                                ));
                            }
                        });
                    } else {
                        overrides.interfaces = value
                            .split(',')
                            .map(str::trim)
                            .filter(|i| !i.is_empty())
                            .map(String::from)
                            .collect();
                        if overrides.interfaces.is_empty() {
                            return usage(format!(
                                "Value \"{value}\" invalid for option interface"
                            ));
                        }
                    }
                }
                _ => return usage(format!("Unknown option: {name}")),
            }
            continue;
        }
        if bytes.len() > 1 && bytes[0] == b'-' {
            rest.next();
            for &c in &bytes[1..] {
                match c {
                    b'd' => debug = true,
                    b'h' | b'?' => help = true,
                    b'v' => version = true,
                    b't' => test = true,
                    other => return usage(format!("Unknown option: {}", char::from(other))),
                }
            }
            continue;
        }
        break;
    }
    // ldirectord looks at -h, then -v, before anything else.
    if help {
        return Invocation::Help;
    }
    if version {
        return Invocation::Version;
    }
    let positional: Vec<&OsString> = rest.collect();
    if test {
        return match positional.as_slice() {
            [] => Invocation::Test {
                overrides,
                config: None,
            },
            [config] => Invocation::Test {
                overrides,
                config: Some((*config).clone()),
            },
            _ => usage("-t takes one configuration"),
        };
    }
    if positional.first().is_some_and(|p| p.as_bytes() == b"show") {
        return parse_show(&positional[1..]);
    }
    let (config, command) = match positional.as_slice() {
        [] => return Invocation::Usage { error: None },
        [command] => (None, *command),
        [config, command, ..] => (Some((*config).clone()), *command),
    };
    match Command::from_arg(command) {
        Some(command) => Invocation::Instance(InstanceArgs {
            debug,
            overrides,
            config,
            command,
        }),
        None => Invocation::Usage { error: None },
    }
}

fn parse_show(args: &[&OsString]) -> Invocation {
    use crate::show::View;
    let (mut config, mut view, mut json) = (None, View::Table, false);
    for arg in args {
        match arg.as_bytes() {
            b"--stats" | b"--rate" if view != View::Table => {
                return usage("show takes one of --stats and --rate");
            }
            b"--stats" => view = View::Stats,
            b"--rate" => view = View::Rate,
            b"--json" => json = true,
            b"-h" | b"--help" | b"-?" => return Invocation::ShowHelp,
            a if a.starts_with(b"-") => {
                return usage(format!("Unknown option: {}", arg.to_string_lossy()));
            }
            _ if config.is_some() => return usage("show takes one configuration"),
            _ => config = Some(arg.to_string_lossy().into_owned()),
        }
    }
    Invocation::Show { config, view, json }
}

/// `-v`.
pub fn version_text() -> String {
    format!(
        "{VERSION_STR}\n\
         An XDP load balancer with ldirectord's control plane\n\
         \n\
         xdirectord comes with ABSOLUTELY NO WARRANTY.\n\
         This is free software, licensed under MIT OR Apache-2.0.\n"
    )
}

/// The binary's entry: reads the command line, does what it asks, returns the exit status.
pub fn main() -> i32 {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match parse(&args) {
        Invocation::Help => {
            print!("{}", crate::usage::help_text());
            0
        }
        Invocation::Version => {
            print!("{}", version_text());
            0
        }
        Invocation::Usage { error } => {
            if let Some(error) = error {
                eprintln!("{error}");
            }
            print!("{}", crate::usage::usage_text());
            255
        }
        Invocation::Test { overrides, config } => crate::daemon::check_config(
            config.as_deref(),
            &overrides,
            &mut std::io::stderr().lock(),
        ),
        Invocation::Show { config, view, json } => {
            crate::control::show(config.as_deref(), view, json)
        }
        Invocation::ShowHelp => {
            print!("{}", crate::show::HELP);
            0
        }
        Invocation::Instance(args) => crate::control::run(&args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Invocation {
        parse(&args.iter().map(OsString::from).collect::<Vec<_>>())
    }

    fn instance(config: Option<&str>, command: Command) -> Invocation {
        Invocation::Instance(InstanceArgs {
            debug: false,
            overrides: BackendOverrides::default(),
            config: config.map(OsString::from),
            command,
        })
    }

    #[test]
    fn one_or_two_positionals() {
        assert_eq!(p(&["status"]), instance(None, Command::Status));
        assert_eq!(
            p(&["web.cf", "start"]),
            instance(Some("web.cf"), Command::Start)
        );
        assert_eq!(
            p(&["web.cf", "stop", "extra"]),
            instance(Some("web.cf"), Command::Stop)
        );
        assert_eq!(p(&["web.cf", "foo"]), Invocation::Usage { error: None });
        assert_eq!(p(&["status", "web.cf"]), Invocation::Usage { error: None });
        assert_eq!(p(&[]), Invocation::Usage { error: None });
    }

    #[test]
    fn options_come_first_and_bundle() {
        let Invocation::Instance(a) = p(&[
            "-d",
            "--backend",
            "ipvs",
            "--interface=eth0, eth1",
            "x.cf",
            "start",
        ]) else {
            panic!()
        };
        assert!(a.debug);
        assert_eq!(a.overrides.backend, Some(BackendKind::Ipvs));
        assert_eq!(a.overrides.interfaces, ["eth0", "eth1"]);
        // require_order: an option after a positional is a positional.
        assert_eq!(p(&["x.cf", "-d"]), Invocation::Usage { error: None });
        assert_eq!(p(&["-dv"]), Invocation::Version);
        assert_eq!(p(&["-d", "--", "x.cf", "status"]), {
            let mut i = instance(Some("x.cf"), Command::Status);
            if let Invocation::Instance(a) = &mut i {
                a.debug = true;
            }
            i
        });
    }

    #[test]
    fn errors_are_usage() {
        assert_eq!(p(&["-x", "status"]), usage("Unknown option: x"));
        assert_eq!(p(&["--nope", "status"]), usage("Unknown option: nope"));
        assert_eq!(
            p(&["--backend"]),
            usage("Option backend requires an argument")
        );
        assert_eq!(
            p(&["--backend", "dpdk", "status"]),
            usage("Value \"dpdk\" invalid for option backend (auto, xdp or ipvs)")
        );
    }

    #[test]
    fn help_and_version_win() {
        assert_eq!(p(&["-h", "nonsense"]), Invocation::Help);
        assert_eq!(p(&["-?"]), Invocation::Help);
        assert_eq!(p(&["--version"]), Invocation::Version);
        assert_eq!(p(&["-vh"]), Invocation::Help);
    }

    #[test]
    fn the_documented_commands_and_options_are_the_parsed_ones() {
        use crate::usage::{COMMANDS, ITEMS, Kind, SHOW_OPTIONS, Takes};
        for word in COMMANDS {
            let command = Command::from_arg(OsStr::new(word)).expect(word);
            assert_eq!(command.as_str(), *word);
        }
        for flag in ITEMS.iter().filter_map(|i| match i.kind {
            Kind::Option(_) => i.term.split_whitespace().next(),
            _ => None,
        }) {
            for flag in flag.split('|') {
                let args: &[&str] = match flag {
                    "--backend" => &[flag, "xdp", "status"],
                    "--interface" => &[flag, "eth0", "status"],
                    "--metrics" => &[flag, "127.0.0.1:9100", "status"],
                    _ => &[flag, "status"],
                };
                assert!(
                    !matches!(p(args), Invocation::Usage { error: Some(_) }),
                    "{flag} is documented but refused"
                );
            }
        }
        let Some(Kind::Option(Takes::OneOf(backends))) = ITEMS
            .iter()
            .find(|i| i.term.starts_with("--backend"))
            .map(|i| i.kind)
        else {
            panic!("--backend is documented");
        };
        for backend in backends {
            assert!(matches!(
                p(&["--backend", backend, "status"]),
                Invocation::Instance(_)
            ));
        }
        for option in SHOW_OPTIONS {
            assert!(matches!(
                p(&["show", option]),
                Invocation::Show { .. } | Invocation::ShowHelp
            ));
        }
    }

    #[test]
    fn test_and_show() {
        assert_eq!(
            p(&["-t", "web.cf"]),
            Invocation::Test {
                overrides: BackendOverrides::default(),
                config: Some("web.cf".into())
            }
        );
        assert_eq!(
            p(&["-t"]),
            Invocation::Test {
                overrides: BackendOverrides::default(),
                config: None
            }
        );
        assert_eq!(p(&["-t", "a", "b"]), usage("-t takes one configuration"));
        assert_eq!(
            p(&["show"]),
            Invocation::Show {
                config: None,
                view: crate::show::View::Table,
                json: false
            }
        );
        assert_eq!(
            p(&["show", "--json", "web.cf", "--stats"]),
            Invocation::Show {
                config: Some("web.cf".into()),
                view: crate::show::View::Stats,
                json: true
            }
        );
        assert_eq!(
            p(&["show", "--rate"]),
            Invocation::Show {
                config: None,
                view: crate::show::View::Rate,
                json: false
            }
        );
        assert_eq!(p(&["show", "--help"]), Invocation::ShowHelp);
        assert_eq!(
            p(&["show", "--stats", "--rate"]),
            usage("show takes one of --stats and --rate")
        );
        assert_eq!(p(&["show", "--bad"]), usage("Unknown option: --bad"));
    }
}
