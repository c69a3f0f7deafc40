//! What to check: the input the agent builds from ldirectord's settings.
//!
//! A [`CheckSpec`] holds the *resolved* values ldirectord's `ld_setup` would compute for one
//! real of one virtual (timeouts already defaulted, check port already chosen, per-real request
//! and receive already preferred over the virtual's). It holds only what changes the probe, so
//! two virtuals that check the same real in the same way produce equal specs, and the runner
//! probes them once (ldirectord's `real_id` string plays this role; see [`CheckSpec`]).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::error::CheckError;

/// ldirectord's `checktype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckType {
    /// TCP connect, then close. With `protocol = udp` ldirectord runs [`CheckType::Ping`]
    /// instead, and so does the runner.
    Connect,
    /// The service's own negotiate check ([`Service`]).
    Negotiate,
    /// `checktype = N`: connect checks, with a negotiate check after every N successful
    /// connects; the first check is a negotiate and a failed connect forces one.
    Combined(u32),
    /// ICMP echo, up to `checkcount` attempts of `checktimeout` each.
    Ping,
    /// Run `checkcommand <vip-or-fwmark> <vport> <rip> <rport>`; exit status 0 means up.
    External,
    /// As `External`, but the command file is a Perl script run by `perl`.
    ExternalPerl,
    /// Always up, no probe.
    On,
    /// Never checked and never up: ldirectord does nothing on each pass, so reals (and the
    /// fallback) are never activated by a check. The runner reports nothing for it, except a
    /// forced-down result while the real is in maintenance, as ldirectord does.
    Off,
}

/// ldirectord's `service`: what a negotiate check speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    None,
    Http,
    Https,
    HttpProxy,
    SimpleTcp,
    Dns,
    Ftp,
    Smtp,
    Submission,
    Pop,
    Pops,
    Imap,
    Imaps,
    Nntp,
    Ldap,
    Ldaps,
    Mysql,
    Pgsql,
    Oracle,
    Sip,
    Radius,
}

impl Service {
    /// Every service ldirectord accepts, in its configuration spelling.
    pub const ALL: [Service; 21] = [
        Service::None,
        Service::Http,
        Service::Https,
        Service::HttpProxy,
        Service::SimpleTcp,
        Service::Dns,
        Service::Ftp,
        Service::Smtp,
        Service::Submission,
        Service::Pop,
        Service::Pops,
        Service::Imap,
        Service::Imaps,
        Service::Nntp,
        Service::Ldap,
        Service::Ldaps,
        Service::Mysql,
        Service::Pgsql,
        Service::Oracle,
        Service::Sip,
        Service::Radius,
    ];

    /// The configuration spelling (`service = NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Service::None => "none",
            Service::Http => "http",
            Service::Https => "https",
            Service::HttpProxy => "http_proxy",
            Service::SimpleTcp => "simpletcp",
            Service::Dns => "dns",
            Service::Ftp => "ftp",
            Service::Smtp => "smtp",
            Service::Submission => "submission",
            Service::Pop => "pop",
            Service::Pops => "pops",
            Service::Imap => "imap",
            Service::Imaps => "imaps",
            Service::Nntp => "nntp",
            Service::Ldap => "ldap",
            Service::Ldaps => "ldaps",
            Service::Mysql => "mysql",
            Service::Pgsql => "pgsql",
            Service::Oracle => "oracle",
            Service::Sip => "sip",
            Service::Radius => "radius",
        }
    }

    /// Parses the configuration spelling; `None` for a name ldirectord rejects.
    pub fn from_name(name: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether this crate implements the service's negotiate check. The agent must refuse a
    /// virtual whose negotiate (or combined) check needs an unsupported service: such a check
    /// is never treated as up.
    pub fn is_supported(self) -> bool {
        matches!(
            self,
            Service::None
                | Service::Http
                | Service::Https
                | Service::HttpProxy
                | Service::SimpleTcp
                | Service::Dns
        )
    }

    /// ldirectord's `ld_service_to_port`: the port a check uses when neither `checkport` nor
    /// the real's port is set. `None` for `none` and `simpletcp`, which have no port.
    pub fn well_known_port(self) -> Option<u16> {
        Some(match self {
            Service::Ftp => 21,
            Service::Smtp => 25,
            Service::Dns => 53,
            Service::Http => 80,
            Service::Pop => 110,
            Service::Nntp => 119,
            Service::Imap => 143,
            Service::Ldap => 389,
            Service::Https => 443,
            Service::Submission => 587,
            Service::Ldaps => 636,
            Service::Imaps => 993,
            Service::Pops => 995,
            Service::Oracle => 1521,
            Service::Radius => 1812,
            Service::HttpProxy => 3128,
            Service::Mysql => 3306,
            Service::Sip => 5060,
            Service::Pgsql => 5432,
            Service::None | Service::SimpleTcp => return None,
        })
    }

    /// ldirectord's `ld_port_to_service`: the service a virtual gets from its port when no
    /// `service =` is given.
    pub fn from_port(port: u16) -> Service {
        Service::ALL
            .into_iter()
            .find(|s| s.well_known_port() == Some(port))
            .unwrap_or(Service::None)
    }
}

/// The virtual service's `protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    /// A firewall-mark virtual. Probes behave as for TCP (ldirectord opens a stream socket),
    /// except that `dns` asks over UDP (it only switches to TCP for `protocol = tcp`).
    Fwm,
}

/// `httpmethod`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HttpMethod {
    #[default]
    Get,
    Head,
}

/// The virtual service, as external checks see it in their first two arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VirtualServer {
    /// `virtual = ip:port` / `virtual6 = [ip]:port`.
    Addr(SocketAddr),
    /// `virtual = mark`: the command gets the mark and port 0.
    Fwmark(u32),
}

/// One check of one real, with ldirectord's resolved settings.
///
/// Equality is the deduplication identity: everything here changes the probe or its
/// schedule, and nothing else is here (no weight, no forwarding method). ldirectord's
/// `real_id` also holds weight and forwarding; leaving them out merges checks ldirectord
/// would run twice, which changes nothing but the load on the real.
///
/// # Building one from ldirectord's settings
///
/// | field | ldirectord |
/// |---|---|
/// | `check_type` | `checktype` (`N` = [`CheckType::Combined`]) |
/// | `service` | `service`, else derived from the virtual's port ([`Service::from_port`]); `none` for fwmark virtuals |
/// | `protocol` | the virtual's `protocol` |
/// | `virtual_server` | the virtual's resolved address and port, or its fwmark |
/// | `real` | the real's resolved address and port (port 0 when omitted) |
/// | `check_port` | [`check_port`]`(checkport, real port, service)` |
/// | `request` / `receive` | the real's own pair if it has one, else the virtual's (request `"/"` and receive `""` by default) |
/// | `virtualhost` | `virtualhost` |
/// | `http_method` | `httpmethod` |
/// | `check_command` | `checkcommand` (default `/bin/true`) |
/// | `check_timeout`, `negotiate_timeout` | as `ld_setup` resolves them (§1.6: each defaults to the other, then the globals, then 5 s and 30 s); zero (`00` in the file) means no timeout, as ldirectord's `alarm 0`, except for ping, which refuses it |
/// | `check_count` | `checkcount` (virtual, else global; default 1) |
/// | `check_interval` | `checkinterval` (virtual, else global; default 10 s) |
/// | `maintenance_dir` | the global `maintenancedir` |
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CheckSpec {
    pub check_type: CheckType,
    pub service: Service,
    pub protocol: Protocol,
    pub virtual_server: VirtualServer,
    pub real: SocketAddr,
    pub check_port: u16,
    pub request: String,
    pub receive: String,
    pub virtualhost: Option<String>,
    pub http_method: HttpMethod,
    pub check_command: String,
    pub check_timeout: Duration,
    pub negotiate_timeout: Duration,
    pub check_count: u32,
    pub check_interval: Duration,
    pub maintenance_dir: Option<PathBuf>,
}

impl CheckSpec {
    /// A spec with ldirectord's per-virtual defaults (`checktype = negotiate`, request `/`,
    /// empty receive, `GET`, `/bin/true`, timeouts 5 s / 30 s, one attempt, 10 s interval) for
    /// a TCP virtual; set the fields that the configuration names.
    pub fn new(virtual_server: VirtualServer, real: SocketAddr, service: Service) -> CheckSpec {
        CheckSpec {
            check_type: CheckType::Negotiate,
            service,
            protocol: Protocol::Tcp,
            virtual_server,
            real,
            check_port: check_port(None, real.port(), service),
            request: "/".to_owned(),
            receive: String::new(),
            virtualhost: None,
            http_method: HttpMethod::Get,
            check_command: "/bin/true".to_owned(),
            check_timeout: Duration::from_secs(5),
            negotiate_timeout: Duration::from_secs(30),
            check_count: 1,
            check_interval: Duration::from_secs(10),
            maintenance_dir: None,
        }
    }

    /// Whether this check ever runs the service's negotiate check.
    pub fn uses_negotiate(&self) -> bool {
        matches!(
            self.check_type,
            CheckType::Negotiate | CheckType::Combined(_)
        )
    }

    /// Refuses specifications the runner would not run correctly. The runner calls it too;
    /// the agent calls it at configuration time to refuse the virtual with this message.
    pub fn validate(&self) -> Result<(), CheckError> {
        if self.check_interval.is_zero() {
            return Err(CheckError::ZeroDuration {
                what: "checkinterval",
            });
        }
        match self.check_type {
            CheckType::Negotiate | CheckType::Combined(_) => {
                if !self.service.is_supported() {
                    return Err(CheckError::UnsupportedService(self.service));
                }
            }
            CheckType::External | CheckType::ExternalPerl => {
                if self.check_command.trim().is_empty() {
                    return Err(CheckError::EmptyCommand);
                }
            }
            CheckType::Ping => self.validate_ping()?,
            CheckType::Connect if self.protocol == Protocol::Udp => self.validate_ping()?,
            CheckType::Connect => {}
            CheckType::On | CheckType::Off => {}
        }
        Ok(())
    }
}

impl CheckSpec {
    fn validate_ping(&self) -> Result<(), CheckError> {
        if self.check_count == 0 {
            return Err(CheckError::ZeroCheckCount);
        }
        // Net::Ping croaks on a zero timeout, so ldirectord never completes such a check.
        if self.check_timeout.is_zero() {
            return Err(CheckError::ZeroDuration {
                what: "checktimeout (of a ping check)",
            });
        }
        Ok(())
    }
}

/// ldirectord's `ld_checkport`: `checkport` if set, else the real's port if non-zero, else the
/// service's well-known port (0 when it has none, which makes connecting probes fail).
pub fn check_port(checkport: Option<u16>, real_port: u16, service: Service) -> u16 {
    match checkport {
        Some(port) => port,
        None if real_port > 0 => real_port,
        None => service.well_known_port().unwrap_or(0),
    }
}

/// An address as ldirectord writes it in URLs, external-check arguments and maintenance file
/// names: IPv6 in brackets.
pub(crate) fn bracketed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> CheckSpec {
        CheckSpec::new(
            VirtualServer::Addr("192.0.2.1:80".parse().unwrap()),
            "10.0.0.1:80".parse().unwrap(),
            Service::Http,
        )
    }

    #[test]
    fn service_names_round_trip() {
        for s in Service::ALL {
            assert_eq!(Service::from_name(s.name()), Some(s));
        }
        assert_eq!(Service::from_name("gopher"), None);
    }

    #[test]
    fn service_from_port_matches_ldirectord() {
        assert_eq!(Service::from_port(80), Service::Http);
        assert_eq!(Service::from_port(53), Service::Dns);
        assert_eq!(Service::from_port(3128), Service::HttpProxy);
        assert_eq!(Service::from_port(8080), Service::None);
    }

    #[test]
    fn check_port_prefers_checkport_then_real_then_service() {
        assert_eq!(check_port(Some(8080), 80, Service::Http), 8080);
        assert_eq!(check_port(None, 81, Service::Http), 81);
        assert_eq!(check_port(None, 0, Service::Https), 443);
        assert_eq!(check_port(None, 0, Service::None), 0);
    }

    #[test]
    fn unsupported_service_is_refused_only_when_negotiated() {
        let mut s = spec();
        s.service = Service::Ftp;
        assert_eq!(
            s.validate(),
            Err(CheckError::UnsupportedService(Service::Ftp))
        );
        s.check_type = CheckType::Combined(3);
        assert!(s.validate().is_err());
        s.check_type = CheckType::Connect;
        assert_eq!(s.validate(), Ok(()));
        assert!(!Service::Mysql.is_supported());
        assert!(Service::SimpleTcp.is_supported());
    }

    #[test]
    fn zero_timeout_means_none_except_for_ping() {
        let mut s = spec();
        s.check_timeout = Duration::ZERO;
        s.negotiate_timeout = Duration::ZERO;
        assert_eq!(s.validate(), Ok(()));
        s.check_type = CheckType::Ping;
        assert!(matches!(s.validate(), Err(CheckError::ZeroDuration { .. })));
        s.check_interval = Duration::ZERO;
        s.check_type = CheckType::On;
        assert!(s.validate().is_err(), "a zero interval would spin");
    }

    #[test]
    fn identity_ignores_nothing_that_changes_the_probe() {
        let a = spec();
        let mut b = spec();
        assert_eq!(a, b);
        b.virtualhost = Some("www.example.com".into());
        assert_ne!(a, b);
    }

    #[test]
    fn bracketed_writes_v6_in_brackets() {
        assert_eq!(bracketed("10.1.2.3".parse().unwrap()), "10.1.2.3");
        assert_eq!(bracketed("2001:db8::1".parse().unwrap()), "[2001:db8::1]");
    }
}
