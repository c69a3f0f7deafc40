//! The command line's documentation: the one source of `--help`, of the usage printed on a bad
//! command line, of the man page xdirectord(8) and of the bash completion in the Debian package.
//!
//! Plain data and string rendering, with nothing but `std`: `cargo xtask package` compiles this
//! file into itself (`#[path]`), because xtask must build on a machine that has no BPF tool chain
//! yet, and so cannot depend on lb-userspace.

/// pod2usage's synopsis, one entry per form of the command line (a form may span lines).
pub const SYNOPSIS: &[&str] = &[
    "xdirectord [-d|--debug] [--backend auto|xdp|ipvs] [--interface IF[,IF...]]\n\
     [--metrics ADDR:PORT] [--]\n\
     [configfile] start | stop | restart | try-restart | reload | force-reload | status",
    "xdirectord -t [configfile]",
    "xdirectord show [configfile] [--stats|--rate] [--json]",
    "xdirectord [-h|-?|--help|-v|--version]",
];

/// The instance commands, as the command line spells them (`cli::Command::from_arg`).
pub const COMMANDS: &[&str] = &[
    "start",
    "stop",
    "restart",
    "try-restart",
    "reload",
    "force-reload",
    "status",
];

/// The options of `show` (after its name).
pub const SHOW_OPTIONS: &[&str] = &["--stats", "--rate", "--json", "--help"];

/// What an option takes after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takes {
    Nothing,
    /// One of these words.
    OneOf(&'static [&'static str]),
    /// A comma-separated list of network interfaces.
    Interfaces,
    /// An address and a port (`127.0.0.1:9100`, `[::1]:9100`).
    SocketAddress,
}

/// What an [`Item`] documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A positional argument.
    Argument,
    /// An option; its flags are the first word of the term, split at `|`.
    Option(Takes),
    /// A command (an instance command, or `show`).
    Command,
}

/// One entry of the option and command lists: a term and what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    pub kind: Kind,
    pub term: &'static str,
    pub text: &'static str,
}

const fn item(kind: Kind, term: &'static str, text: &'static str) -> Item {
    Item { kind, term, text }
}

/// `--help`'s lists, in order.
pub const ITEMS: &[Item] = &[
    item(
        Kind::Argument,
        "configfile",
        "The configuration, looked up as /etc/ha.d/configfile, then /etc/ha.d/conf/configfile, \
         then configfile itself (default: ldirectord.cf). It is an ldirectord configuration file; \
         every ldirectord directive works. Its file name names the pid file and the data plane's \
         pins.",
    ),
    item(
        Kind::Option(Takes::Nothing),
        "-d|--debug",
        "Don't start as daemon and log to standard error.",
    ),
    item(
        Kind::Option(Takes::OneOf(&["auto", "xdp", "ipvs"])),
        "--backend auto|xdp|ipvs",
        "Use this data plane for every virtual service (default: each virtual's backend, else \
         the file's, else auto: XDP where the XDP program can serve the virtual, IPVS for the \
         rest).",
    ),
    item(
        Kind::Option(Takes::Interfaces),
        "--interface IF[,IF...]",
        "Attach the XDP program to these interfaces (default: the file's interface).",
    ),
    item(
        Kind::Option(Takes::SocketAddress),
        "--metrics ADDR:PORT",
        "Serve Prometheus metrics over HTTP on this address, e.g. 127.0.0.1:9100 or [::1]:9100 \
         (default: the file's metrics directive; without either, none are served). The address \
         must be free at start, or the start fails naming it.",
    ),
    item(
        Kind::Option(Takes::Nothing),
        "-t",
        "Check the configuration, print its errors and warnings, exit 0 or 2.",
    ),
    item(
        Kind::Option(Takes::Nothing),
        "-h|-?|--help",
        "Print this help and exit.",
    ),
    item(
        Kind::Option(Takes::Nothing),
        "-v|--version",
        "Print version and exit.",
    ),
    item(
        Kind::Command,
        "start",
        "Start the daemon for the configuration. Returns once the daemon has opened its data \
         plane (exit 0), or with its error (exit 1); exit 0 at once if it runs already.",
    ),
    item(
        Kind::Command,
        "stop",
        "Stop the daemon for the configuration: send it TERM and wait until it has exited. \
         Exit 0, also when it was not running.",
    ),
    item(
        Kind::Command,
        "restart|try-restart",
        "Stop the daemon and start it again. try-restart does nothing when it is not running.",
    ),
    item(
        Kind::Command,
        "reload|force-reload",
        "Send the daemon HUP: it reads the configuration again; changed, added and removed \
         virtual services take effect and unchanged real servers keep their state. A bad file is \
         logged and changes nothing. Exit 1 when the daemon is not running.",
    ),
    item(
        Kind::Command,
        "status",
        "Whether the daemon runs: exit 0 (running), 3 (stopped) or 1 (a stale pid file).",
    ),
    item(
        Kind::Command,
        "show",
        "Print the table the data planes hold, as ipvsadm -L -n prints it (--stats: with \
         counters; --rate: rates per second; --json: as JSON), and what forwards it. Read from \
         the data planes (the pinned maps, the kernel's IPVS), so it works while no daemon runs \
         (xdirectord show --help).",
    ),
];

/// A block of man page text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    Para(&'static str),
    /// A tagged paragraph.
    Tagged(&'static str, &'static str),
    /// Lines shown as they are (commands, file excerpts).
    Example(&'static str),
}

/// The man page's sections besides NAME, SYNOPSIS, OPTIONS and COMMANDS, in order.
pub const MAN_SECTIONS: &[(&str, &[Block])] = &[
    (
        "DESCRIPTION",
        &[
            Block::Para(
                "xdirectord is a layer-4 load balancer (a director) whose control plane is a \
                 drop-in replacement for ldirectord(8): it reads the same configuration files, \
                 runs the same health checks, adds and removes real servers as ldirectord does, and \
                 answers the same commands with the same messages and exit codes. Packets are \
                 balanced by an XDP program attached to the network interfaces named by the \
                 configuration's interface directive or --interface, which keeps forwarding from \
                 its pinned state while no daemon runs.",
            ),
            Block::Para(
                "Options come before the positional arguments; single-letter options bundle (-dt) \
                 and -- ends them. With two positional arguments the first is the configuration \
                 and the second the command; with one, it is the command and the configuration is \
                 ldirectord.cf.",
            ),
        ],
    ),
    (
        "EXIT STATUS",
        &[
            Block::Tagged("0", "Success; status: the daemon runs."),
            Block::Tagged(
                "1",
                "The configuration was not found, the daemon could not start, reload found no \
                 daemon, or status found a stale pid file.",
            ),
            Block::Tagged("2", "The configuration is invalid (any command, and -t)."),
            Block::Tagged("3", "status: the daemon is stopped."),
            Block::Tagged("255", "A bad command line; the usage is printed."),
        ],
    ),
    (
        "SIGNALS",
        &[
            Block::Tagged("HUP", "Reload the configuration."),
            Block::Tagged(
                "TERM, INT, QUIT, ABRT, SYS, XCPU, XFSZ",
                "Stop: with cleanstop = yes (the default) the virtual services are removed from \
                 the data plane first; with cleanstop = no they keep forwarding, and the next \
                 start takes them over without dropping a connection.",
            ),
        ],
    ),
    (
        "FILES",
        &[
            Block::Tagged(
                "/etc/ha.d/ldirectord.cf",
                "The default configuration (looked up in /etc/ha.d, then /etc/ha.d/conf).",
            ),
            Block::Tagged(
                "/var/run/xdirectord.NAME.pid",
                "The pid file of the daemon for configuration NAME (the file name of the \
                 configuration). Not written with -d or supervised = yes.",
            ),
            Block::Tagged(
                "/sys/fs/bpf/xdirectord/NAME/",
                "The data plane's pinned program, links and maps (dots in NAME written _).",
            ),
            Block::Tagged(
                "/var/log/ldirectord.log",
                "The log when the configuration names no logfile.",
            ),
            Block::Tagged(
                "/lib/systemd/system/xdirectord@.service",
                "The systemd unit: one instance per configuration.",
            ),
            Block::Tagged(
                "/etc/ha.d/resource.d/xdirectord",
                "The heartbeat resource script (a link to the binary).",
            ),
        ],
    ),
    (
        "SYSTEMD",
        &[
            Block::Para(
                "The unit xdirectord@.service runs xdirectord CONFIG start, reload and stop for the \
                 configuration named by its instance, which is looked up as on the command line \
                 (so it must be in /etc/ha.d or /etc/ha.d/conf). It is Type=forking with the pid \
                 file above, as ldirectord's own unit, so xdirectord CONFIG status, reload and \
                 stop keep working beside systemctl.",
            ),
            Block::Example(
                "systemctl enable --now xdirectord@ldirectord.cf\n\
                 systemctl reload xdirectord@ldirectord.cf",
            ),
        ],
    ),
    (
        "CLUSTER MANAGERS",
        &[
            Block::Para(
                "Pacemaker's ocf:heartbeat:ldirectord resource agent drives xdirectord when its \
                 ldirectord parameter names it:",
            ),
            Block::Example(
                "pcs resource create lvs ocf:heartbeat:ldirectord \\\n    \
                 configfile=/etc/ha.d/ldirectord.cf ldirectord=/usr/sbin/xdirectord",
            ),
            Block::Para(
                "In heartbeat's haresources, name the resource script xdirectord instead of \
                 ldirectord:",
            ),
            Block::Example("node1 192.0.2.100 xdirectord::ldirectord.cf"),
        ],
    ),
    (
        "SEE ALSO",
        &[Block::Para(
            "ldirectord(8), ipvsadm(8), ocf_heartbeat_ldirectord(7), systemd.service(5)",
        )],
    ),
];

/// The usage printed on a bad command line (exit 255), as pod2usage prints ldirectord's.
pub fn usage_text() -> String {
    let mut out = String::from("Usage:\n");
    for form in SYNOPSIS {
        for line in form.lines() {
            out += &format!("    {line}\n");
        }
        out.push('\n');
    }
    out
}

/// `-h`: the usage, then the options and commands.
pub fn help_text() -> String {
    let mut out = usage_text();
    let section = |out: &mut String, title: &str, commands: bool| {
        out.push_str(title);
        out.push('\n');
        for item in ITEMS
            .iter()
            .filter(|i| (i.kind == Kind::Command) == commands)
        {
            out.push_str(&format!("    {}\n", item.term));
            for line in wrap(item.text, 80 - 8) {
                out.push_str(&format!("        {line}\n"));
            }
            out.push('\n');
        }
    };
    section(&mut out, "Options:", false);
    section(&mut out, "Commands:", true);
    out.pop();
    out
}

/// Greedy word wrap to `width` columns.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Text for roff: backslashes and hyphens escaped, no line starting with a control character.
fn roff(text: &str) -> String {
    text.lines()
        .map(|line| {
            let escaped = line.replace('\\', "\\e").replace('-', "\\-");
            if escaped.starts_with('.') || escaped.starts_with('\'') {
                format!("\\&{escaped}")
            } else {
                escaped
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The man page xdirectord(8), in roff (man macros).
pub fn man_page(version: &str) -> String {
    let mut out = format!(
        ".TH XDIRECTORD 8 \"\" \"xdirectord {version}\" \"System Administration\"\n\
         .nh\n\
         .ad l\n\
         .SH NAME\n\
         xdirectord \\- an XDP load balancer with ldirectord's control plane\n\
         .SH SYNOPSIS\n"
    );
    for form in SYNOPSIS {
        out += &format!(".nf\n{}\n.fi\n.PP\n", roff(form));
    }
    let list = |out: &mut String, title: &str, commands: bool| {
        *out += &format!(".SH {title}\n");
        for item in ITEMS
            .iter()
            .filter(|i| (i.kind == Kind::Command) == commands)
        {
            *out += &format!(".TP\n.B {}\n{}\n", roff(item.term), roff(item.text));
        }
    };
    let (description, rest) = MAN_SECTIONS.split_first().expect("a description");
    section(&mut out, description);
    list(&mut out, "OPTIONS", false);
    list(&mut out, "COMMANDS", true);
    for s in rest {
        section(&mut out, s);
    }
    out
}

fn section(out: &mut String, (title, blocks): &(&str, &[Block])) {
    *out += &format!(".SH {title}\n");
    for block in *blocks {
        match block {
            Block::Para(text) => *out += &format!(".PP\n{}\n", roff(text)),
            Block::Tagged(tag, text) => *out += &format!(".TP\n.B {}\n{}\n", roff(tag), roff(text)),
            Block::Example(text) => *out += &format!(".PP\n.RS\n.nf\n{}\n.fi\n.RE\n", roff(text)),
        }
    }
}

/// The options' flags (`-d`, `--debug`, …) and what each takes.
fn flags() -> Vec<(&'static str, Takes)> {
    ITEMS
        .iter()
        .filter_map(|item| match item.kind {
            Kind::Option(takes) => Some((item.term, takes)),
            _ => None,
        })
        .flat_map(|(term, takes)| {
            let names = term.split_whitespace().next().unwrap_or(term);
            names.split('|').map(move |flag| (flag, takes))
        })
        .collect()
}

/// The bash completion: options, their values, configurations (in /etc/ha.d, /etc/ha.d/conf,
/// or a path), then commands; `show` completes its options and a configuration.
pub fn bash_completion() -> String {
    let flags = flags();
    let words = |list: &[&str]| list.join(" ");
    let all_flags: Vec<&str> = flags
        .iter()
        .map(|(f, _)| *f)
        .filter(|f| *f != "-?")
        .collect();
    let mut value_cases = String::new();
    for (flag, takes) in &flags {
        let reply = match takes {
            Takes::Nothing => continue,
            Takes::OneOf(values) => format!("compgen -W '{}' -- \"$cur\"", words(values)),
            Takes::Interfaces => {
                "compgen -W \"$(ls /sys/class/net 2>/dev/null)\" -- \"${cur##*,}\"".to_string()
            }
            // Nothing to offer: an address is typed.
            Takes::SocketAddress => String::new(),
        };
        value_cases += &format!("        {flag}) COMPREPLY=($({reply})); return ;;\n");
    }
    let takes_value: Vec<&str> = flags
        .iter()
        .filter(|(_, t)| *t != Takes::Nothing)
        .map(|(f, _)| *f)
        .collect();
    format!(
        r#"# bash completion for xdirectord(8), generated from lb-userspace/src/usage.rs.

_xdirectord_configs() {{
    local dir f
    for dir in /etc/ha.d /etc/ha.d/conf; do
        for f in "$dir"/*; do
            [[ -f $f ]] && printf '%s\n' "${{f##*/}}"
        done
    done
}}

_xdirectord() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}}
    case $prev in
{value_cases}    esac
    # The words before this one: options first (until `--` or a positional), then positionals.
    local i word in_options=1 test=0 positionals=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${{COMP_WORDS[i]}}
        if ((in_options)); then
            case $word in
                --) in_options=0; continue ;;
                {takes_value}) ((i++)); continue ;;
                --*=*) continue ;;
                --*) continue ;;
                -*) [[ $word == *t* ]] && test=1; continue ;;
            esac
            in_options=0
        fi
        positionals+=("$word")
    done
    if ((in_options)) && [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W '{all_flags}' -- "$cur"))
        return
    fi
    if [[ ${{positionals[0]}} == show ]]; then
        COMPREPLY=($(compgen -W "{show_options} $(_xdirectord_configs)" -- "$cur") $(compgen -f -- "$cur"))
        return
    fi
    if ((test)); then
        ((${{#positionals[@]}} == 0)) &&
            COMPREPLY=($(compgen -W "$(_xdirectord_configs)" -- "$cur") $(compgen -f -- "$cur"))
        return
    fi
    case ${{#positionals[@]}} in
        0) COMPREPLY=($(compgen -W "{commands} show $(_xdirectord_configs)" -- "$cur") $(compgen -f -- "$cur")) ;;
        1) COMPREPLY=($(compgen -W '{commands}' -- "$cur")) ;;
    esac
}}
complete -F _xdirectord xdirectord
"#,
        takes_value = takes_value.join("|"),
        all_flags = words(&all_flags),
        show_options = words(SHOW_OPTIONS),
        commands = words(COMMANDS),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_pod2usage_shaped() {
        let usage = usage_text();
        assert!(usage.starts_with("Usage:\n    xdirectord [-d|--debug] "));
        assert!(usage.contains(
            "\n    [configfile] start | stop | restart | try-restart | reload | force-reload | \
             status\n\n"
        ));
        assert!(usage.ends_with("    xdirectord [-h|-?|--help|-v|--version]\n\n"));
    }

    #[test]
    fn help_lists_every_item_wrapped() {
        let help = help_text();
        for item in ITEMS {
            assert!(
                help.contains(&format!("\n    {}\n        ", item.term)),
                "{item:?}"
            );
        }
        let (_, lists) = help.split_once("\nOptions:\n").expect("options");
        assert!(lists.lines().all(|l| l.len() <= 80), "{help}");
        assert!(help.contains("\nCommands:\n    start\n"));
    }

    #[test]
    fn the_man_page_escapes_and_has_every_section() {
        let page = man_page("1.2.3");
        assert!(page.starts_with(".TH XDIRECTORD 8 \"\" \"xdirectord 1.2.3\""));
        for title in [
            "NAME",
            "SYNOPSIS",
            "DESCRIPTION",
            "OPTIONS",
            "COMMANDS",
            "FILES",
        ] {
            assert!(page.contains(&format!("\n.SH {title}\n")), "{title}");
        }
        assert!(page.contains(".B \\-d|\\-\\-debug\n"));
        // Only macros start lines with a dot.
        for line in page.lines().filter(|l| l.starts_with('.')) {
            let ok = [
                ".TH", ".nh", ".ad l", ".SH", ".PP", ".TP", ".B ", ".nf", ".fi", ".RS", ".RE",
            ];
            assert!(ok.iter().any(|m| line.starts_with(m)), "{line}");
        }
    }

    #[test]
    fn flags_come_from_the_terms() {
        let flags: Vec<&str> = flags().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            flags,
            [
                "-d",
                "--debug",
                "--backend",
                "--interface",
                "--metrics",
                "-t",
                "-h",
                "-?",
                "--help",
                "-v",
                "--version"
            ]
        );
    }
}
