//! [`StaticEnvironment`]: a machine described by tables, for tests here and in the crates
//! that consume the model, and [`config`], a file's text parsed on it. No DNS, no file is
//! created.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use crate::environment::Environment;
use crate::model::{Config, Family};

/// `text` parsed as the file `t.cf` on [`StaticEnvironment::default`]; a test's file must be
/// valid (the panic shows the diagnostic).
pub fn config(text: &str) -> Config {
    match crate::parse(
        text.as_bytes(),
        "t.cf".as_ref(),
        &StaticEnvironment::default(),
    ) {
        Ok(config) => config,
        Err(e) => panic!("{}", e.render(1)),
    }
}

/// Name lookups answered from tables, numeric addresses as glibc answers them.
#[derive(Debug, Clone)]
pub struct StaticEnvironment {
    /// Host names (matched without regard to case, as /etc/hosts is) and their addresses,
    /// first match per family wins.
    pub hosts: Vec<(String, IpAddr)>,
    /// Service name, protocol, port.
    pub services: Vec<(String, String, u16)>,
    pub hostname: String,
    /// Files under these directories can be opened; [`Environment::is_dir`] is true for them.
    pub dirs: Vec<PathBuf>,
}

impl Default for StaticEnvironment {
    fn default() -> Self {
        let services = [
            ("ftp", "tcp", 21),
            ("ssh", "tcp", 22),
            ("smtp", "tcp", 25),
            ("domain", "tcp", 53),
            ("domain", "udp", 53),
            ("http", "tcp", 80),
            ("www", "tcp", 80),
            ("pop3", "tcp", 110),
            ("ntp", "udp", 123),
            ("https", "tcp", 443),
            ("https", "udp", 443),
            ("mysql", "tcp", 3306),
            ("sip", "tcp", 5060),
            ("sip", "udp", 5060),
        ];
        StaticEnvironment {
            hosts: vec![
                ("localhost".into(), IpAddr::V4(Ipv4Addr::LOCALHOST)),
                ("localhost".into(), IpAddr::V6(Ipv6Addr::LOCALHOST)),
                ("web1".into(), "192.0.2.11".parse().expect("literal")),
                ("web2".into(), "192.0.2.12".parse().expect("literal")),
                ("web6".into(), "2001:db8::11".parse().expect("literal")),
            ],
            services: services
                .iter()
                .map(|(n, p, port)| ((*n).to_string(), (*p).to_string(), *port))
                .collect(),
            hostname: "director".into(),
            dirs: vec![PathBuf::from("/tmp")],
        }
    }
}

impl Environment for StaticEnvironment {
    fn resolve_host(&self, name: &[u8], family: Family) -> Option<String> {
        let name = std::str::from_utf8(name).ok()?;
        if name.is_empty() {
            return Some(match family {
                Family::Inet => "127.0.0.1".into(),
                Family::Inet6 => "::1".into(),
            });
        }
        let numeric = match family {
            Family::Inet => inet_aton(name).map(IpAddr::V4),
            Family::Inet6 => name.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        };
        // Either numeric form of the other family fails without a lookup, as in glibc.
        let other_numeric = match family {
            Family::Inet => name.parse::<Ipv6Addr>().is_ok(),
            Family::Inet6 => inet_aton(name).is_some(),
        };
        let found = numeric.or_else(|| {
            if other_numeric {
                return None;
            }
            self.hosts
                .iter()
                .filter(|(host, _)| host.eq_ignore_ascii_case(name))
                .map(|(_, a)| *a)
                .find(|a| {
                    matches!(
                        (a, family),
                        (IpAddr::V4(_), Family::Inet) | (IpAddr::V6(_), Family::Inet6)
                    )
                })
        })?;
        Some(found.to_string())
    }

    fn resolve_service(&self, name: &[u8], protocol: &str) -> Option<u16> {
        self.services
            .iter()
            .find(|(n, p, _)| n.as_bytes() == name && (protocol.is_empty() || p == protocol))
            .map(|(_, _, port)| *port)
    }

    fn hostname(&self) -> String {
        self.hostname.clone()
    }

    fn open_append(&self, path: &Path) -> Result<(), String> {
        let inside = path
            .parent()
            .is_some_and(|parent| self.dirs.iter().any(|d| d == parent));
        if inside {
            Ok(())
        } else {
            Err("No such file or directory".into())
        }
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.dirs.iter().any(|d| d == path)
    }
}

/// glibc's `inet_aton` (exact form, as getaddrinfo uses it): one to four parts, each decimal,
/// octal (leading 0) or hexadecimal (0x); the last part fills the remaining bytes.
pub fn inet_aton(text: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = text.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut values = Vec::with_capacity(parts.len());
    for part in &parts {
        let (digits, radix) =
            if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
                (hex, 16)
            } else if part.len() > 1 && part.starts_with('0') {
                (&part[1..], 8)
            } else {
                (*part, 10)
            };
        if part.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
            return None;
        }
        let value = if digits.is_empty() {
            0
        } else {
            u64::from_str_radix(digits, radix).ok()?
        };
        values.push(value);
    }
    let (last, leading) = values.split_last()?;
    if leading.iter().any(|&v| v > 255) {
        return None;
    }
    let last_bits = 8 * (4 - leading.len() as u32);
    if last_bits < 64 && *last >> last_bits != 0 {
        return None;
    }
    let mut address = *last;
    for (i, &v) in leading.iter().enumerate() {
        address |= v << (24 - 8 * i);
    }
    Some(Ipv4Addr::from(address as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inet_aton_forms() {
        assert_eq!(inet_aton("1.2.3.4"), Some(Ipv4Addr::new(1, 2, 3, 4)));
        assert_eq!(inet_aton("010.1.1.1"), Some(Ipv4Addr::new(8, 1, 1, 1)));
        assert_eq!(inet_aton("0x7f.1"), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(inet_aton("5060"), Some(Ipv4Addr::new(0, 0, 19, 196)));
        assert_eq!(inet_aton("1.2.3"), Some(Ipv4Addr::new(1, 2, 0, 3)));
        assert_eq!(inet_aton("0"), Some(Ipv4Addr::new(0, 0, 0, 0)));
        assert_eq!(inet_aton("1.2.3.4."), None);
        assert_eq!(inet_aton("256.1.1.1"), None);
        assert_eq!(inet_aton("1.2.3.256"), None);
        assert_eq!(inet_aton("09"), None);
        assert_eq!(inet_aton("host"), None);
        assert_eq!(inet_aton(""), None);
        assert_eq!(inet_aton("4294967296"), None);
    }

    #[test]
    fn names_follow_the_family() {
        let env = StaticEnvironment::default();
        assert_eq!(
            env.resolve_host(b"LOCALHOST", Family::Inet).as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(
            env.resolve_host(b"localhost", Family::Inet6).as_deref(),
            Some("::1")
        );
        assert_eq!(env.resolve_host(b"web6", Family::Inet), None);
        assert_eq!(env.resolve_host(b"::1", Family::Inet), None);
        assert_eq!(env.resolve_service(b"ntp", ""), Some(123));
        assert_eq!(env.resolve_service(b"ntp", "tcp"), None);
    }
}
