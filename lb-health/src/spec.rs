//! What to check: the input the agent builds from ldirectord's settings.
//!
//! A [`CheckSpec`] holds the *resolved* values ldirectord's `ld_setup` would compute for one
//! real of one virtual (timeouts already defaulted, check port already chosen, per-real request
//! and receive already preferred over the virtual's). It holds only what changes the probe, so
//! two virtuals that check the same real in the same way produce equal specs, and the runner
//! probes them once (ldirectord's `real_id` string plays this role; see [`CheckSpec`]).
//!
//! The vocabulary (`Service`, `Protocol`, `CheckType`, `HttpMethod`, `VirtualAddress`) is
//! lb-config's: one definition for the configuration and the checks.
//!
//! What a negotiate round speaks is a [`Negotiate`]: one variant per protocol, carrying only
//! the settings ldirectord's check of that service reads (its credentials, its request).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use lb_config::{CheckSettings, RealCheck, check_port};
pub use lb_config::{CheckType, Family, HttpMethod, Protocol, Service, VirtualAddress};

use crate::error::CheckError;

/// One check of one real, with ldirectord's resolved settings.
///
/// Equality is the deduplication identity: everything here changes the probe or its
/// schedule, and nothing else is here (no weight, no forwarding method). ldirectord's
/// `real_id` also holds weight and forwarding; leaving them out merges checks ldirectord
/// would run twice, which changes nothing but the load on the real.
///
/// [`CheckSpec::from_config`] builds one from lb-config's model:
///
/// | field | ldirectord |
/// |---|---|
/// | `check_type` | `checktype` (`N` = [`CheckType::Combined`]) |
/// | `virtual_address` | the virtual's protocol and resolved address and port, or its fwmark |
/// | `real` | the real's resolved address and port (port 0 when omitted) |
/// | `check_port` | `ld_checkport`: `checkport`, else the real's port, else the service's; 0 when none |
/// | `negotiate` | `service` and the settings its check reads ([`Negotiate::from_config`]) |
/// | `check_command` | `checkcommand` (default `/bin/true`) |
/// | `check_timeout`, `negotiate_timeout` | as `ld_setup` resolves them (each defaults to the other, then the globals, then 5 s and 30 s); zero (`00` in the file) means no timeout, as ldirectord's `alarm 0`, except for ping, which refuses it |
/// | `check_count` | `checkcount` (virtual, else global; default 1) |
/// | `check_interval` | `checkinterval` (virtual, else global; default 10 s) |
/// | `maintenance_dir` | the global `maintenancedir` |
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CheckSpec {
    pub check_type: CheckType,
    pub virtual_address: VirtualAddress,
    pub real: SocketAddr,
    pub check_port: u16,
    pub negotiate: Negotiate,
    pub check_command: String,
    pub check_timeout: Duration,
    pub negotiate_timeout: Duration,
    pub check_count: u32,
    pub check_interval: Duration,
    pub maintenance_dir: Option<PathBuf>,
}

/// What a negotiate round speaks (ldirectord's `service`), with the settings that service's
/// check reads. Requests keep ldirectord's leading `/`; each check strips it where ldirectord
/// does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Negotiate {
    /// `none`: always up.
    None,
    /// `http`, `https`, `http_proxy`.
    Http(Http),
    /// `simpletcp`: send the request, a line must match receive.
    SimpleTcp(Exchange),
    /// `dns`: ask for the request, an answer must match receive.
    Dns(Exchange),
    Ftp(Ftp),
    /// `smtp` and `submission` read no settings.
    Smtp {
        submission: bool,
    },
    /// `pop` and `pops`.
    Pop(Mailbox),
    /// `imap` and `imaps`.
    Imap(Mailbox),
    /// `nntp` reads no settings.
    Nntp,
    /// `ldap` and `ldaps`.
    Ldap(Ldap),
    /// `mysql`, `pgsql` and `oracle`.
    Sql(Sql),
    Sip(Sip),
    Radius(Radius),
}

/// `http`, `https` or `http_proxy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HttpKind {
    Http,
    Https,
    Proxy,
}

/// The HTTP checks' settings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Http {
    pub kind: HttpKind,
    pub request: String,
    pub receive: String,
    pub virtualhost: Option<String>,
    pub method: HttpMethod,
}

/// A request and what must come back (simpletcp, dns).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Exchange {
    pub request: String,
    pub receive: String,
}

/// `login` and `passwd`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Login {
    pub user: String,
    pub password: String,
}

/// `ftp`: log in (lb-config fills in ldirectord's anonymous login), fetch the request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ftp {
    pub login: Login,
    pub request: String,
    pub receive: String,
}

/// `pop`, `pops`, `imap`, `imaps`: the greeting, and a login when `login` is set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mailbox {
    pub tls: bool,
    pub login: Option<Login>,
}

/// `ldap`, `ldaps`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ldap {
    pub tls: bool,
    /// A simple bind when both `login` and `passwd` are set (Perl-true), else anonymous.
    pub bind: Option<Login>,
    /// The request: the search base after its first character.
    pub request: String,
    pub receive: String,
}

/// Which SQL server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SqlEngine {
    Mysql,
    Pgsql,
    Oracle,
}

/// `mysql`, `pgsql`, `oracle`: as written; the check refuses to probe without a login and a
/// query, as ldirectord does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sql {
    pub engine: SqlEngine,
    pub login: Login,
    /// `database`: the database (mysql, pgsql) or SID (oracle).
    pub database: String,
    /// The request, with ldirectord's leading `/`.
    pub request: String,
}

/// `sip`: `OPTIONS sip:<login>` (lb-config fills in `ldirectord@<hostname>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sip {
    pub user: String,
}

/// `radius`: an Access-Request for `login` / `passwd`, signed with `secret`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Radius {
    pub login: Login,
    pub secret: String,
}

/// Perl's truth of a string: empty and `"0"` are false (`$$v{login} && ...`).
fn perl_true(text: &str) -> bool {
    !(text.is_empty() || text == "0")
}

impl Negotiate {
    /// The negotiate check of `service` as ldirectord runs it with `check` (the virtual's
    /// settings) for one real (`real`: its request and receive).
    pub fn from_config(service: Service, check: &CheckSettings, real: &RealCheck) -> Negotiate {
        let login = || Login {
            user: check.login.clone(),
            password: check.passwd.clone(),
        };
        // pop and imap log in when `login` is non-empty (`ne ""`).
        let mailbox = |tls| Mailbox {
            tls,
            login: (!check.login.is_empty()).then(login),
        };
        let exchange = || Exchange {
            request: real.request.clone(),
            receive: real.receive.clone(),
        };
        let http = |kind| {
            Negotiate::Http(Http {
                kind,
                request: real.request.clone(),
                receive: real.receive.clone(),
                virtualhost: check.virtualhost.clone(),
                method: check.httpmethod,
            })
        };
        let sql = |engine| {
            Negotiate::Sql(Sql {
                engine,
                login: login(),
                database: check.database.clone(),
                request: real.request.clone(),
            })
        };
        match service {
            Service::None => Negotiate::None,
            Service::Http => http(HttpKind::Http),
            Service::Https => http(HttpKind::Https),
            Service::HttpProxy => http(HttpKind::Proxy),
            Service::Simpletcp => Negotiate::SimpleTcp(exchange()),
            Service::Dns => Negotiate::Dns(exchange()),
            Service::Ftp => Negotiate::Ftp(Ftp {
                login: login(),
                request: real.request.clone(),
                receive: real.receive.clone(),
            }),
            Service::Smtp => Negotiate::Smtp { submission: false },
            Service::Submission => Negotiate::Smtp { submission: true },
            Service::Pop => Negotiate::Pop(mailbox(false)),
            Service::Pops => Negotiate::Pop(mailbox(true)),
            Service::Imap => Negotiate::Imap(mailbox(false)),
            Service::Imaps => Negotiate::Imap(mailbox(true)),
            Service::Nntp => Negotiate::Nntp,
            Service::Ldap | Service::Ldaps => Negotiate::Ldap(Ldap {
                tls: service == Service::Ldaps,
                bind: (perl_true(&check.login) && perl_true(&check.passwd)).then(login),
                request: real.request.clone(),
                receive: real.receive.clone(),
            }),
            Service::Mysql => sql(SqlEngine::Mysql),
            Service::Pgsql => sql(SqlEngine::Pgsql),
            Service::Oracle => sql(SqlEngine::Oracle),
            Service::Sip => Negotiate::Sip(Sip {
                user: check.login.clone(),
            }),
            Service::Radius => Negotiate::Radius(Radius {
                login: login(),
                secret: check.secret.clone(),
            }),
        }
    }

    /// The check of `service` with ldirectord's per-virtual defaults (request `/`, empty
    /// receive, `GET`, no login, no database, no secret), for tests and tools; set what the
    /// configuration names.
    pub fn defaults(service: Service) -> Negotiate {
        let check = CheckSettings {
            checktype: CheckType::Negotiate,
            service,
            checkport: None,
            checktimeout: 5,
            negotiatetimeout: 30,
            failurecount: 1,
            checkcount: 1,
            checkinterval: 10,
            request: "/".into(),
            receive: String::new(),
            virtualhost: None,
            httpmethod: HttpMethod::Get,
            login: String::new(),
            passwd: String::new(),
            database: String::new(),
            secret: String::new(),
            checkcommand: "/bin/true".into(),
            load: None,
        };
        let real = RealCheck {
            port: None,
            request: "/".into(),
            receive: String::new(),
            url: String::new(),
        };
        Negotiate::from_config(service, &check, &real)
    }

    /// ldirectord's name for it.
    pub fn service(&self) -> Service {
        match self {
            Negotiate::None => Service::None,
            Negotiate::Http(h) => match h.kind {
                HttpKind::Http => Service::Http,
                HttpKind::Https => Service::Https,
                HttpKind::Proxy => Service::HttpProxy,
            },
            Negotiate::SimpleTcp(_) => Service::Simpletcp,
            Negotiate::Dns(_) => Service::Dns,
            Negotiate::Ftp(_) => Service::Ftp,
            Negotiate::Smtp { submission: false } => Service::Smtp,
            Negotiate::Smtp { submission: true } => Service::Submission,
            Negotiate::Pop(m) if m.tls => Service::Pops,
            Negotiate::Pop(_) => Service::Pop,
            Negotiate::Imap(m) if m.tls => Service::Imaps,
            Negotiate::Imap(_) => Service::Imap,
            Negotiate::Nntp => Service::Nntp,
            Negotiate::Ldap(l) if l.tls => Service::Ldaps,
            Negotiate::Ldap(_) => Service::Ldap,
            Negotiate::Sql(s) => match s.engine {
                SqlEngine::Mysql => Service::Mysql,
                SqlEngine::Pgsql => Service::Pgsql,
                SqlEngine::Oracle => Service::Oracle,
            },
            Negotiate::Sip(_) => Service::Sip,
            Negotiate::Radius(_) => Service::Radius,
        }
    }
}

impl CheckSpec {
    /// A spec with ldirectord's per-virtual defaults (`checktype = negotiate`, `/bin/true`,
    /// timeouts 5 s / 30 s, one attempt, 10 s interval) speaking `negotiate`; set the fields
    /// that the configuration names.
    pub fn new(virtual_address: VirtualAddress, real: SocketAddr, negotiate: Negotiate) -> Self {
        CheckSpec {
            check_type: CheckType::Negotiate,
            virtual_address,
            real,
            check_port: check_port(None, real.port(), negotiate.service()).unwrap_or(0),
            negotiate,
            check_command: "/bin/true".to_owned(),
            check_timeout: Duration::from_secs(5),
            negotiate_timeout: Duration::from_secs(30),
            check_count: 1,
            check_interval: Duration::from_secs(10),
            maintenance_dir: None,
        }
    }

    /// The check of `real` in `vs`, as ldirectord would run it, from the values lb-config
    /// derived (`ld_setup`).
    pub fn from_config(
        config: &lb_config::Config,
        vs: &lb_config::VirtualService,
        real: &lb_config::Real,
    ) -> CheckSpec {
        let check = &vs.check;
        CheckSpec {
            check_type: check.checktype,
            virtual_address: vs.address,
            real: SocketAddr::new(real.address, real.port),
            // None at all (port 0, service without a port) makes a connecting probe fail, as
            // ldirectord's does.
            check_port: real.check.port.unwrap_or(0),
            negotiate: Negotiate::from_config(check.service, check, &real.check),
            check_command: check.checkcommand.clone(),
            check_timeout: Duration::from_secs(check.checktimeout.into()),
            negotiate_timeout: Duration::from_secs(check.negotiatetimeout.into()),
            check_count: check.checkcount,
            check_interval: Duration::from_secs(check.checkinterval.into()),
            maintenance_dir: config.global.maintenancedir.clone(),
        }
    }

    /// The virtual's transport protocol; `None` for a firewall mark.
    pub fn protocol(&self) -> Option<Protocol> {
        self.virtual_address.protocol()
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
            CheckType::Negotiate | CheckType::Combined(_) => {}
            CheckType::External | CheckType::ExternalPerl => {
                if self.check_command.trim().is_empty() {
                    return Err(CheckError::EmptyCommand);
                }
            }
            CheckType::Ping => self.validate_ping()?,
            CheckType::Connect if self.protocol() == Some(Protocol::Udp) => self.validate_ping()?,
            CheckType::Connect => {}
            CheckType::On | CheckType::Off => {}
        }
        Ok(())
    }

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

    pub(crate) fn tcp_virtual() -> VirtualAddress {
        VirtualAddress::Socket {
            protocol: Protocol::Tcp,
            address: "192.0.2.1:80".parse().unwrap(),
        }
    }

    fn spec() -> CheckSpec {
        CheckSpec::new(
            tcp_virtual(),
            "10.0.0.1:80".parse().unwrap(),
            Negotiate::defaults(Service::Http),
        )
    }

    #[test]
    fn every_service_round_trips_through_its_negotiate_check() {
        for service in Service::ALL {
            assert_eq!(Negotiate::defaults(service).service(), service);
        }
    }

    #[test]
    fn credentials_reach_the_protocols_that_read_them() {
        let mut check = match Negotiate::defaults(Service::Mysql) {
            Negotiate::Sql(sql) => sql,
            other => panic!("{other:?}"),
        };
        assert_eq!(check.engine, SqlEngine::Mysql);
        assert!(check.login.user.is_empty());
        check.database = "db".into();
        assert_ne!(Negotiate::Sql(check), Negotiate::defaults(Service::Mysql));
        match Negotiate::defaults(Service::Pops) {
            Negotiate::Pop(m) => assert!(m.tls && m.login.is_none()),
            other => panic!("{other:?}"),
        }
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
    fn check_port_is_the_real_port_else_the_service_port() {
        let mut s = spec();
        assert_eq!(s.check_port, 80);
        s = CheckSpec::new(
            tcp_virtual(),
            "10.0.0.1:0".parse().unwrap(),
            Negotiate::defaults(Service::Imaps),
        );
        assert_eq!(s.check_port, 993);
    }

    #[test]
    fn identity_ignores_nothing_that_changes_the_probe() {
        let a = spec();
        let mut b = spec();
        assert_eq!(a, b);
        if let Negotiate::Http(http) = &mut b.negotiate {
            http.virtualhost = Some("www.example.com".into());
        }
        assert_ne!(a, b);
    }

    #[test]
    fn perl_truth_of_strings() {
        assert!(!perl_true(""));
        assert!(!perl_true("0"));
        assert!(perl_true("00"));
        assert!(perl_true("admin"));
    }

    #[test]
    fn bracketed_writes_v6_in_brackets() {
        assert_eq!(bracketed("10.1.2.3".parse().unwrap()), "10.1.2.3");
        assert_eq!(bracketed("2001:db8::1".parse().unwrap()), "[2001:db8::1]");
    }
}
