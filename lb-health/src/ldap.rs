//! The `ldap` and `ldaps` negotiate checks, as ldirectord's Net::LDAP session.
//!
//! * A simple bind as `login` / `passwd` when both are set, else an anonymous bind; a bind
//!   error is down ("Bind failed").
//! * A search with base `request` after its first character (ldirectord's
//!   `substr($$r{request}, 1)`), scope base, filter `(objectClass=*)`, asking for no
//!   attributes. Up iff exactly one entry comes back and, when `receive` is not blank, its DN
//!   matches `receive`.
//! * ldaps: TLS from the start, **not verified**: Net::LDAP's default `verify => 'none'`.
//!
//! Entries are counted as they arrive, so a server that sends thousands costs no memory.

use std::net::SocketAddr;

use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry, StdStream};

use crate::line;
use crate::outcome::Outcome;
use crate::receive::Receive;
use crate::spec::{Login, bracketed};

/// A prepared ldap check.
#[derive(Debug)]
pub(crate) struct LdapCheck {
    pub(crate) tls: bool,
    pub(crate) bind: Option<Login>,
    pub(crate) base: String,
    /// `None` when receive is blank.
    pub(crate) receive: Option<Receive>,
}

impl LdapCheck {
    pub(crate) async fn run(&self, addr: SocketAddr) -> Outcome {
        let scheme = if self.tls { "ldaps" } else { "ldap" };
        let url = format!("{scheme}://{}:{}", bracketed(addr.ip()), addr.port());
        // The connection is ours, handed to ldap3; the URL it gets only chooses plain or TLS
        // and the TLS server name. An IPv4 literal there sends no SNI, as for any address
        // (ldap3 cannot take an IPv6 literal as a TLS name).
        let stream = match line::connect(addr)
            .await
            .and_then(|s| s.into_std().map_err(|e| format!("connect {url}: {e}")))
        {
            Ok(stream) => stream,
            Err(e) => return Outcome::down(e),
        };
        let settings = LdapConnSettings::new()
            .set_no_tls_verify(true)
            .set_std_stream(StdStream::Tcp(stream));
        let placeholder = format!("{scheme}://0.0.0.0:{}", addr.port());
        let (connection, mut ldap) =
            match LdapConnAsync::with_settings(settings, &placeholder).await {
                Ok(pair) => pair,
                Err(e) => return Outcome::down(format!("{url}: {e}")),
            };
        // The connection does the I/O beside the session, in this task: the check's deadline
        // drops both.
        let session = async {
            let outcome = self.session(&mut ldap).await;
            let _ = ldap.unbind().await;
            outcome
        };
        tokio::pin!(session);
        let drive = connection.drive();
        tokio::pin!(drive);
        let mut driving = true;
        loop {
            tokio::select! {
                outcome = &mut session => return outcome,
                ended = &mut drive, if driving => {
                    driving = false;
                    if let Err(e) = ended {
                        return Outcome::down(format!("ldap {url}: {e}"));
                    }
                    // Closed by the server: the session sees it next.
                }
            }
        }
    }

    async fn session(&self, ldap: &mut ldap3::Ldap) -> Outcome {
        let (dn, password) = match &self.bind {
            Some(login) => (login.user.as_str(), login.password.as_str()),
            None => ("", ""),
        };
        match ldap
            .simple_bind(dn, password)
            .await
            .and_then(|r| r.success())
        {
            Ok(_) => {}
            Err(e) => return Outcome::down(format!("Bind failed: {e}")),
        }
        let mut search = match ldap
            .streaming_search(&self.base, Scope::Base, "(objectClass=*)", vec!["1.1"])
            .await
        {
            Ok(search) => search,
            Err(e) => return Outcome::down(format!("search {:?}: {e}", self.base)),
        };
        let mut count = 0usize;
        let mut first_dn = None;
        loop {
            match search.next().await {
                Ok(Some(entry)) => {
                    count += 1;
                    if count > 1 {
                        // Base scope: a second entry is already a wrong answer.
                        break;
                    }
                    first_dn = Some(SearchEntry::construct(entry).dn);
                }
                Ok(None) => break,
                Err(e) => return Outcome::down(format!("search {:?}: {e}", self.base)),
            }
        }
        if count <= 1 {
            let result = search.finish().await;
            if result.rc != 0 {
                return Outcome::bad_answer(format!("No answer received: {result}"));
            }
        }
        let Some(dn) = first_dn.filter(|_| count == 1) else {
            return Outcome::bad_answer(format!("No answer received: {count} entries"));
        };
        match &self.receive {
            Some(receive) if !receive.is_match(&dn) => {
                Outcome::bad_answer(format!("Response mismatch: {dn}"))
            }
            _ => Outcome::up(format!("Success: {dn}")),
        }
    }
}
