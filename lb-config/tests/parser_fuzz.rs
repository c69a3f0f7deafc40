//! The parser on hostile input: arbitrary bytes, mangled configuration lines, huge lines and
//! deep nesting of quotes. Nothing may panic or hang; what is accepted must serialise and
//! read back equal, and every line number must exist. Bounded by a case count, never a clock.

use lb_config::testing::StaticEnvironment;
use lb_config::{Config, ConfigError, parse};
use proptest::prelude::*;

/// Runs the parser and checks what it says about the input.
fn check(text: &[u8]) {
    let lines = text.split_inclusive(|&b| b == b'\n').count();
    match parse(text, "fuzz.cf".as_ref(), &StaticEnvironment::default()) {
        Ok(config) => {
            for w in &config.warnings {
                assert!(
                    w.line.is_none_or(|l| l >= 1 && l <= lines),
                    "warning line {w:?} of {lines}"
                );
            }
            let json = serde_json::to_string(&config).expect("serialisable");
            let back: Config = serde_json::from_str(&json).expect("deserialisable");
            assert_eq!(back, config);
        }
        Err(ConfigError::Invalid { error, .. }) => {
            assert!(
                error.line.is_none_or(|l| l >= 1 && l <= lines),
                "error line {error:?} of {lines}"
            );
        }
        Err(e) => panic!("parse cannot fail to find a file: {e}"),
    }
}

/// Pieces people (and typos) put in these files.
const FRAGMENTS: &[&str] = &[
    "virtual=",
    "virtual6=",
    "real=",
    "real6=",
    "fallback=",
    "fallback6=",
    "request=",
    "receive=",
    "checktype=",
    "service=",
    "scheduler=",
    "netmask=",
    "protocol=",
    "checkport=",
    "login=",
    "emailalertstatus=",
    "logfile=",
    "supervised",
    "quiescent=",
    "checktimeout=",
    "interface=",
    "monitorfile=",
    "backend=",
    "xdpmode=",
    "metrics=",
    "192.0.2.1",
    ":80",
    ":http",
    "[2001:db8::1]",
    "[::1]",
    "->",
    "192.0.2.9",
    "localhost",
    "web1",
    " gate",
    " masq",
    " ipip",
    " 5",
    " 0",
    "\"",
    "\"/x\"",
    ", ",
    "\"ok\"",
    " l:3",
    " u:9",
    "#",
    " # c",
    "yes",
    "no",
    "none,all",
    "\t",
    "    ",
    "  ",
    "00",
    "4294967296",
    "255.255.255.0",
    "64",
    "\r",
    "\\",
    "=",
    ":",
    "fwm",
    "udp",
    "ftp",
    "sip",
    "0.0.0.8->0.0.0.9",
    "10.0.0.0->10.0.255.255",
    "\u{e9}",
    "\0",
];

fn fragment_line() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(prop::sample::select(FRAGMENTS), 0..8),
        any::<bool>(),
    )
        .prop_map(|(parts, indent)| {
            let mut line: Vec<u8> = if indent { b"\t".to_vec() } else { Vec::new() };
            for p in parts {
                line.extend_from_slice(p.as_bytes());
            }
            line.push(b'\n');
            line
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(text in prop::collection::vec(any::<u8>(), 0..2048)) {
        check(&text);
    }

    #[test]
    fn configuration_shaped_lines(lines in prop::collection::vec(fragment_line(), 0..40)) {
        check(&lines.concat());
    }

}

proptest! {
    // Long lines: fewer cases, each one costs more.
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn quotes_nested_deep(depth in 0usize..4000, inner in "[a-z /0-9#,]{0,12}") {
        let quotes = "\"".repeat(depth);
        for line in [
            format!("virtual=192.0.2.1:80\n\treal=192.0.2.2:80 gate {quotes}{inner}{quotes}\n"),
            format!("virtual=192.0.2.1:80\n\trequest={quotes}{inner}{quotes}\n"),
            format!("callback={quotes}{inner}{quotes}\n"),
            format!("virtual=192.0.2.1:80\n\treal=192.0.2.2:80 gate {}\n", format!("\"{inner}\", ").repeat(depth)),
        ] {
            check(line.as_bytes());
        }
    }
}

#[test]
fn huge_lines() {
    let big = 1 << 20;
    for line in [
        format!(
            "virtual=192.0.2.1:80\n\treal=192.0.2.2:80 gate {}\n",
            "\"".repeat(big)
        ),
        format!("virtual=192.0.2.1:80\n\treal={}\n", "1.".repeat(big / 2)),
        format!("virtual=192.0.2.1:80\n\t{}\n", " ".repeat(big)),
        format!("virtual={}:80\n", "a".repeat(big)),
        format!("checkinterval={}\n", "9".repeat(big)),
        format!("emailalertstatus={}\n", ",".repeat(big)),
        format!(
            "virtual=192.0.2.1:80\n\treal=192.0.2.2:80 gate{}\n",
            " 1".repeat(big / 2)
        ),
        format!("fallback={}\n", "a:".repeat(big / 2)),
        "#".repeat(big),
    ] {
        check(line.as_bytes());
    }
}

#[test]
fn many_range_lines_stay_bounded() {
    let mut text = String::new();
    for i in 0..20 {
        text.push_str(&format!("virtual=192.0.2.{i}:80\n"));
        for j in 0..4 {
            text.push_str(&format!(
                "\treal=10.{i}.{j}.0->10.{i}.{}.255:80 gate\n",
                j + 63
            ));
        }
    }
    match parse(
        text.as_bytes(),
        "big.cf".as_ref(),
        &StaticEnvironment::default(),
    ) {
        Err(ConfigError::Invalid { error, .. }) => {
            assert_eq!(error.message, "more than 1048576 real servers in the file");
        }
        other => panic!("{:?}", other.map(|c| c.virtuals.len())),
    }
}
