//! One real's check, prepared once and run round after round: ldirectord's `_check_real`.
//!
//! [`Checker`] turns a [`CheckSpec`] into the probe ldirectord would run (connect over UDP
//! becomes ping, `service = none` is always up, combined checks alternate), applies the
//! maintenance directory first, and bounds each probe by its timeout. [`Probes`] holds what
//! all checks share. Scheduling is the runner's job, not this module's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;

use crate::combined::{Combined, Phase};
use crate::dns::Query;
use crate::error::CheckError;
use crate::external::CheckCommand;
use crate::ftp::FtpCheck;
use crate::http::HttpCheck;
use crate::ldap::LdapCheck;
use crate::outcome::{CheckOutcome, Outcome};
use crate::ping::Pinger;
use crate::receive::{Receive, is_blank};
use crate::spec::{
    CheckSpec, CheckType, Mailbox, Negotiate, Protocol, Radius, Sql, SqlEngine, VirtualAddress,
    bracketed,
};
use crate::tls::TrustedCas;
use crate::{
    dns, external, imap, maintenance, nntp, oracle, pop, radius, sip, smtp, sql, tcp, tls,
};

/// Resources every check shares: the TLS client configuration (with the trusted CAs), the
/// ICMP sockets, the limit on concurrently running check commands and the maintenance
/// directories' listings. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Probes {
    inner: Arc<ProbesInner>,
}

struct ProbesInner {
    /// https: the chain is verified, not the name.
    tls: TlsConnector,
    /// pops, imaps: the chain and the name (the real's address).
    tls_named: TlsConnector,
    pinger: Pinger,
    /// Check commands fork and exec; 10,000 of them at once would exhaust the process table
    /// and the CPU before any timed out. Commands wait for a slot, outside their timeout.
    processes: Semaphore,
    /// The maintenance directories' listings, read once for all checks.
    maintenance: maintenance::Listings,
}

impl std::fmt::Debug for ProbesInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probes")
            .field("processes_available", &self.processes.available_permits())
            .finish_non_exhaustive()
    }
}

impl Probes {
    /// `max_processes`: how many external check commands may run at once. https, pops and
    /// imaps checks trust the system's CA store.
    pub fn new(max_processes: usize) -> Probes {
        Probes::with_trusted_cas(max_processes, &TrustedCas::System)
    }

    /// As [`Probes::new`], with https, pops and imaps checks trusting `trusted` instead.
    pub fn with_trusted_cas(max_processes: usize, trusted: &TrustedCas) -> Probes {
        let configs = tls::client_configs(trusted);
        Probes {
            inner: Arc::new(ProbesInner {
                tls: TlsConnector::from(configs.chain_only),
                tls_named: TlsConnector::from(configs.chain_and_name),
                pinger: Pinger::default(),
                processes: Semaphore::new(max_processes.max(1)),
                maintenance: maintenance::Listings::default(),
            }),
        }
    }
}

impl Default for Probes {
    fn default() -> Probes {
        Probes::new(DEFAULT_MAX_PROCESSES)
    }
}

/// Default for [`Probes::new`]: enough for scripts that take a second, few enough that a
/// storm of them cannot starve the machine.
pub const DEFAULT_MAX_PROCESSES: usize = 64;

/// What a round runs, decided once from the spec.
#[derive(Debug)]
enum Plan {
    Connect(SocketAddr),
    Ping,
    Negotiate(Negotiator),
    Combined {
        negotiator: Negotiator,
        sequence: Combined,
    },
    External(CheckCommand),
    On,
    Off,
}

/// A negotiate check, prepared once: patterns compiled, requests built.
#[derive(Debug)]
enum Negotiator {
    /// `service = none`: ldirectord's `check_none`, always up.
    AlwaysUp,
    Http(Box<HttpCheck>),
    SimpleTcp {
        payload: Vec<u8>,
        receive: Receive,
        udp: bool,
    },
    Dns {
        query: Query,
        receive: Receive,
        receive_is_empty: bool,
        tcp: bool,
    },
    Ftp(Box<FtpCheck>),
    Smtp,
    Pop(Mailbox),
    Imap(Mailbox),
    Nntp,
    Ldap(Box<LdapCheck>),
    Sql(Sql),
    Oracle {
        sid: String,
    },
    Sip {
        user: String,
        udp: bool,
    },
    Radius(Radius),
    /// A check ldirectord refuses to run for want of a setting: down, every round, with
    /// ldirectord's message.
    Refused(String),
}

/// One real's check with its state between rounds (the combined-check counter).
#[derive(Debug)]
pub struct Checker {
    spec: CheckSpec,
    plan: Plan,
}

impl Checker {
    /// Prepares the check; refuses what [`CheckSpec::validate`] refuses and patterns or
    /// requests that cannot be compiled.
    pub fn new(spec: CheckSpec) -> Result<Checker, CheckError> {
        spec.validate()?;
        let check_addr = SocketAddr::new(spec.real.ip(), spec.check_port);
        let plan = match spec.check_type {
            CheckType::Connect if spec.protocol() == Some(Protocol::Udp) => Plan::Ping,
            CheckType::Connect => Plan::Connect(check_addr),
            CheckType::Negotiate => Plan::Negotiate(Negotiator::new(&spec)?),
            CheckType::Combined(every) => Plan::Combined {
                negotiator: Negotiator::new(&spec)?,
                sequence: Combined::new(every),
            },
            CheckType::Ping => Plan::Ping,
            CheckType::External => {
                Plan::External(CheckCommand::external(&spec.check_command, args(&spec)))
            }
            CheckType::ExternalPerl => {
                Plan::External(CheckCommand::perl(&spec.check_command, args(&spec)))
            }
            CheckType::On => Plan::On,
            CheckType::Off => Plan::Off,
        };
        Ok(Checker { spec, plan })
    }

    pub fn spec(&self) -> &CheckSpec {
        &self.spec
    }

    /// Runs one round. `None` when there is nothing to report: `checktype = off` outside
    /// maintenance.
    pub async fn check(&mut self, probes: &Probes) -> Option<CheckOutcome> {
        let spec = &self.spec;
        if let Some(dir) = &spec.maintenance_dir {
            let found = Box::pin(probes.inner.maintenance.find(
                dir,
                spec.real.ip(),
                spec.real.port(),
                spec.check_timeout,
            ))
            .await;
            if let Some(file) = found {
                return Some(CheckOutcome {
                    up: false,
                    maintenance: true,
                    reason: Arc::from(format!("in maintenance: {}", file.display())),
                    failure: None,
                });
            }
        }
        let outcome = match &mut self.plan {
            Plan::Off => return None,
            Plan::On => Outcome::up("checktype on"),
            Plan::Connect(addr) => bounded(spec.check_timeout, tcp::connect(*addr)).await,
            Plan::Ping => {
                // Boxed for the reason given at `bounded`, as the other probes.
                Box::pin(probes.inner.pinger.check(
                    spec.real.ip(),
                    spec.check_count,
                    spec.check_timeout,
                ))
                .await
            }
            Plan::Negotiate(negotiator) => negotiator.run(spec, probes).await,
            Plan::Combined {
                negotiator,
                sequence,
            } => {
                let phase = sequence.next_phase();
                let outcome = match phase {
                    Phase::Negotiate => negotiator.run(spec, probes).await,
                    Phase::Connect => combined_connect(spec).await,
                };
                sequence.record(phase, outcome.up);
                outcome
            }
            Plan::External(command) => {
                // The semaphore is never closed, so acquiring only waits.
                let _slot = probes.inner.processes.acquire().await.ok();
                Box::pin(external::run(command, spec.check_timeout)).await
            }
        };
        Some(outcome.into())
    }
}

/// The connect round of a combined check: ldirectord calls `check_connect` whatever the
/// protocol, so over UDP it is a datagram-socket connect, not a ping.
async fn combined_connect(spec: &CheckSpec) -> Outcome {
    let addr = SocketAddr::new(spec.real.ip(), spec.check_port);
    let probe = async {
        let mut outcome = if spec.protocol() == Some(Protocol::Udp) {
            tcp::connect_udp(addr).await
        } else {
            tcp::connect(addr).await
        };
        if outcome.up {
            outcome.reason = "connected (combined check, connect round)".into();
        }
        outcome
    };
    bounded(spec.check_timeout, probe).await
}

impl Negotiator {
    fn new(spec: &CheckSpec) -> Result<Negotiator, CheckError> {
        let udp = spec.protocol() == Some(Protocol::Udp);
        Ok(match &spec.negotiate {
            Negotiate::None => Negotiator::AlwaysUp,
            Negotiate::Http(http) => Negotiator::Http(Box::new(HttpCheck::new(spec, http)?)),
            Negotiate::SimpleTcp(exchange) => Negotiator::SimpleTcp {
                payload: tcp::simpletcp_payload(&exchange.request),
                receive: Receive::new(&exchange.receive)?,
                udp,
            },
            Negotiate::Dns(exchange) => Negotiator::Dns {
                query: Query::for_request(&exchange.request),
                receive: Receive::new(&exchange.receive)?,
                receive_is_empty: exchange.receive.is_empty(),
                tcp: spec.protocol() == Some(Protocol::Tcp),
            },
            Negotiate::Ftp(ftp) => Negotiator::Ftp(Box::new(FtpCheck {
                login: ftp.login.clone(),
                request: ftp.request.clone(),
                receive: optional_receive(&ftp.receive)?,
            })),
            Negotiate::Smtp { .. } => Negotiator::Smtp,
            Negotiate::Pop(mailbox) => {
                if mailbox.login.is_none() {
                    warn_pop_without_login();
                }
                Negotiator::Pop(mailbox.clone())
            }
            Negotiate::Imap(mailbox) => Negotiator::Imap(mailbox.clone()),
            Negotiate::Nntp => Negotiator::Nntp,
            Negotiate::Ldap(ldap) => Negotiator::Ldap(Box::new(LdapCheck {
                tls: ldap.tls,
                bind: ldap.bind.clone(),
                base: ldap.request.chars().skip(1).collect(),
                receive: if is_blank(&ldap.receive) {
                    None
                } else {
                    Some(Receive::new(&ldap.receive)?)
                },
            })),
            Negotiate::Sql(sql) => match sql::missing(sql, spec.real) {
                Some(refusal) => Negotiator::Refused(refusal),
                None if sql.engine == SqlEngine::Oracle => Negotiator::Oracle {
                    sid: sql.database.clone(),
                },
                None => Negotiator::Sql(sql.clone()),
            },
            Negotiate::Sip(sip) => Negotiator::Sip {
                user: sip.user.clone(),
                udp,
            },
            Negotiate::Radius(radius) => Negotiator::Radius(radius.clone()),
        })
    }

    async fn run(&self, spec: &CheckSpec, probes: &Probes) -> Outcome {
        let addr = SocketAddr::new(spec.real.ip(), spec.check_port);
        // ldirectord bounds ldap and radius with `alarm checktimeout`, the others with
        // negotiatetimeout (sql has no bound there at all; negotiatetimeout here).
        let timeout = spec.negotiate_timeout;
        let tls = &probes.inner.tls_named;
        match self {
            Negotiator::AlwaysUp => Outcome::up("service none"),
            Negotiator::Refused(reason) => Outcome::down(reason.clone()),
            Negotiator::Http(http) => bounded(timeout, http.run(&probes.inner.tls)).await,
            Negotiator::SimpleTcp {
                payload,
                receive,
                udp: false,
            } => bounded(timeout, tcp::simpletcp(addr, payload, receive)).await,
            Negotiator::SimpleTcp {
                payload,
                receive,
                udp: true,
            } => bounded(timeout, tcp::simpletcp_udp(addr, payload, receive)).await,
            Negotiator::Dns {
                query,
                receive,
                receive_is_empty,
                tcp,
            } => {
                bounded(
                    timeout,
                    dns::check(addr, query, receive, *receive_is_empty, *tcp),
                )
                .await
            }
            Negotiator::Ftp(ftp) => bounded(timeout, ftp.run(addr)).await,
            Negotiator::Smtp => bounded(timeout, smtp::check(addr)).await,
            Negotiator::Pop(mailbox) => {
                let tls = mailbox.tls.then_some(tls);
                let probe = bounded(timeout, pop::check(addr, tls, mailbox.login.as_ref())).await;
                if mailbox.login.is_some() {
                    probe
                } else {
                    // Mail::POP3Client hands ldirectord an object whatever happened.
                    Outcome::up(format!(
                        "{} (pop without login: up whatever happens, as in ldirectord)",
                        probe.reason
                    ))
                }
            }
            Negotiator::Imap(mailbox) => {
                let tls = mailbox.tls.then_some(tls);
                bounded(timeout, imap::check(addr, tls, mailbox.login.as_ref())).await
            }
            Negotiator::Nntp => bounded(timeout, nntp::check(addr)).await,
            Negotiator::Ldap(ldap) => bounded(spec.check_timeout, ldap.run(addr)).await,
            Negotiator::Sql(sql) => bounded(timeout, sql::check(addr, sql)).await,
            Negotiator::Oracle { sid } => bounded(timeout, oracle::check(addr, sid)).await,
            Negotiator::Sip { user, udp } => bounded(timeout, sip::check(addr, user, *udp)).await,
            Negotiator::Radius(radius) => {
                bounded(
                    spec.check_timeout,
                    radius::check(addr, &radius.login, &radius.secret),
                )
                .await
            }
        }
    }
}

/// `receive` for checks where an empty one asks nothing of the answer.
fn optional_receive(receive: &str) -> Result<Option<Receive>, CheckError> {
    if receive.is_empty() {
        Ok(None)
    } else {
        Receive::new(receive).map(Some)
    }
}

/// ldirectord's pop check without `login` is up whatever the server does; say so once.
fn warn_pop_without_login() {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            "service pop or pops without login: the check is up whatever the server answers \
             (as in ldirectord, whose Mail::POP3Client reports success without logging in); \
             set login and passwd to have the real checked"
        );
    });
}

/// Bounds a probe's total time: whatever it is doing at the deadline, it is dropped (its
/// sockets closed) and the check is down. A zero timeout is ldirectord's `alarm 0`: none.
///
/// The probe is boxed at once, before the returned future is stored anywhere: probe futures
/// range from a few hundred bytes to several KiB (TLS, DNS), and only probes in flight
/// should hold that memory, not every idle check task.
fn bounded(
    timeout: Duration,
    probe: impl Future<Output = Outcome>,
) -> impl Future<Output = Outcome> {
    let probe = Box::pin(probe);
    async move {
        if timeout.is_zero() {
            return probe.await;
        }
        match tokio::time::timeout(timeout, probe).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::timeout(format!("timed out after {}s", timeout.as_secs_f64())),
        }
    }
}

/// ldirectord's external-check arguments: `<vip-or-fwmark> <vport> <rip> <rport>`.
fn args(spec: &CheckSpec) -> [String; 4] {
    let (virtual_server, virtual_port) = match spec.virtual_address {
        VirtualAddress::Socket { address, .. } => (bracketed(address.ip()), address.port()),
        VirtualAddress::Fwmark { mark, .. } => (mark.to_string(), 0),
    };
    [
        virtual_server,
        virtual_port.to_string(),
        bracketed(spec.real.ip()),
        spec.real.port().to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Service;

    fn virtual_at(address: &str, protocol: Protocol) -> VirtualAddress {
        VirtualAddress::Socket {
            protocol,
            address: address.parse().unwrap(),
        }
    }

    #[test]
    fn external_arguments_match_ldirectord() {
        let mut spec = CheckSpec::new(
            virtual_at("[2001:db8::1]:443", Protocol::Tcp),
            "[2001:db8::10]:8443".parse().unwrap(),
            Negotiate::defaults(Service::Https),
        );
        assert_eq!(
            args(&spec),
            ["[2001:db8::1]", "443", "[2001:db8::10]", "8443"]
        );
        spec.virtual_address = VirtualAddress::Fwmark {
            mark: 7,
            family: lb_config::Family::Inet6,
        };
        assert_eq!(args(&spec)[..2], ["7", "0"]);
    }

    #[test]
    fn connect_over_udp_pings() {
        let mut spec = CheckSpec::new(
            virtual_at("192.0.2.1:53", Protocol::Udp),
            "10.0.0.1:53".parse().unwrap(),
            Negotiate::defaults(Service::Dns),
        );
        spec.check_type = CheckType::Connect;
        assert!(matches!(Checker::new(spec).unwrap().plan, Plan::Ping));
    }

    #[test]
    fn sql_without_login_is_down_with_ldirectords_message() {
        let spec = CheckSpec::new(
            virtual_at("192.0.2.1:3306", Protocol::Tcp),
            "10.0.0.1:3306".parse().unwrap(),
            Negotiate::defaults(Service::Mysql),
        );
        let checker = Checker::new(spec).unwrap();
        match &checker.plan {
            Plan::Negotiate(Negotiator::Refused(message)) => assert_eq!(
                message,
                "Error: Must specify a login and request string for MySQL, Oracle and \
                 PostgreSQL checks. Not adding 10.0.0.1."
            ),
            other => panic!("{other:?}"),
        }
    }
}
