//! E-mail alerts (`emailalert`, `emailalertfrom`, `smtp`), composed as ldirectord composes
//! them and sent with lettre: over SMTP to the `smtp` server (port 25, no TLS, as Net::SMTP
//! does), or without `smtp` through the local mailer, `/usr/sbin/sendmail`, where ldirectord's
//! Mail::Send would look too.
//!
//! Alerts go out one after the other on their own task ([`Alerts`]), so a slow or dead mail
//! server never delays the director.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::address::{Address, Envelope};
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSendmailTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

use crate::director::Mail;
use crate::log::Logger;

/// Why an alert was not sent. The texts start as ldirectord's log lines do.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("failed to send email message: invalid address {address:?}: {reason}")]
    Address { address: String, reason: String },
    #[error("failed to send email message: {0}")]
    Compose(#[from] lettre::error::Error),
    #[error("failed to send SMTP email message: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("failed to send email message: {0}")]
    Sendmail(#[from] lettre::transport::sendmail::Error),
    #[error("failed to send email message: no smtp server is set and there is no {}", .0.display())]
    NoMailer(PathBuf),
}

/// What every alert shares: who sends it, and how.
#[derive(Debug, Clone)]
pub struct Mailer {
    hostname: String,
    username: String,
    smtp_port: u16,
    sendmail: PathBuf,
    timeout: Duration,
}

impl Default for Mailer {
    fn default() -> Mailer {
        Mailer::new()
    }
}

impl Mailer {
    /// This machine's host name and this process's user, SMTP port 25, `/usr/sbin/sendmail`.
    pub fn new() -> Mailer {
        use lb_config::Environment as _;
        Mailer {
            hostname: lb_config::SystemEnvironment.hostname(),
            username: user_name(),
            smtp_port: 25,
            sendmail: PathBuf::from("/usr/sbin/sendmail"),
            timeout: Duration::from_secs(30),
        }
    }

    /// SMTP servers are reached on this port (`smtp` names a host only).
    pub fn with_smtp_port(mut self, port: u16) -> Mailer {
        self.smtp_port = port;
        self
    }

    /// The local mailer used without `smtp`.
    pub fn with_sendmail(mut self, path: impl Into<PathBuf>) -> Mailer {
        self.sendmail = path.into();
        self
    }

    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// ldirectord's body: `ldirectord host`, `Log-Message`, `Daemon-Status`, then the
    /// service details (with xdirectord's name in the first line).
    pub fn body(&self, mail: &Mail) -> String {
        let mut body = format!(
            "xdirectord host: {}\nLog-Message: {}\nDaemon-Status: {}\n",
            self.hostname,
            mail.subject,
            mail.status.as_str()
        );
        if let Some(details) = &mail.details {
            body.push('\n');
            body.push_str(details);
            body.push('\n');
        }
        body
    }

    /// The message: From is `emailalertfrom` or `<user>@<host>` (also the envelope sender,
    /// as Net::SMTP's `mail` is given), To is every address of `emailalert`.
    pub fn message(&self, mail: &Mail) -> Result<Message, AlertError> {
        let sender = format!("{}@{}", self.username, self.hostname);
        let sender_address: Address = parse_address(&sender)?;
        let from: Mailbox = match &mail.from {
            Some(from) => parse_mailbox(from)?,
            None => Mailbox::new(None, sender_address.clone()),
        };
        let mut builder = Message::builder().from(from).subject(mail.subject.clone());
        let mut recipients = Vec::new();
        for to in mail.to.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let mailbox = parse_mailbox(to)?;
            recipients.push(mailbox.email.clone());
            builder = builder.to(mailbox);
        }
        let envelope = Envelope::new(Some(sender_address), recipients)?;
        Ok(builder
            .envelope(envelope)
            .header(ContentType::TEXT_PLAIN)
            .body(self.body(mail))?)
    }

    /// Sends one alert and waits for the server (or sendmail) to take it.
    pub async fn send(&self, mail: &Mail) -> Result<(), AlertError> {
        let message = self.message(mail)?;
        match &mail.smtp {
            Some(server) => {
                let transport =
                    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(server.as_str())
                        .port(self.smtp_port)
                        .hello_name(ClientId::Domain(self.hostname.clone()))
                        .timeout(Some(self.timeout))
                        .build();
                transport.send(message).await?;
            }
            None => {
                if !Path::new(&self.sendmail).exists() {
                    return Err(AlertError::NoMailer(self.sendmail.clone()));
                }
                let transport =
                    AsyncSendmailTransport::<Tokio1Executor>::new_with_command(&self.sendmail);
                transport.send(message).await?;
            }
        }
        Ok(())
    }
}

fn parse_mailbox(text: &str) -> Result<Mailbox, AlertError> {
    text.trim()
        .parse()
        .map_err(|e: lettre::address::AddressError| AlertError::Address {
            address: text.to_string(),
            reason: e.to_string(),
        })
}

fn parse_address(text: &str) -> Result<Address, AlertError> {
    text.parse()
        .map_err(|e: lettre::address::AddressError| AlertError::Address {
            address: text.to_string(),
            reason: e.to_string(),
        })
}

/// The name of this process's user (`getpwuid($<)`), `root` if there is none.
fn user_name() -> String {
    // SAFETY: getpwuid_r writes into the buffers we own and sets result to null or to pwd.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 1024];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        if libc::getpwuid_r(
            libc::getuid(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        ) == 0
            && !result.is_null()
            && !pwd.pw_name.is_null()
        {
            return std::ffi::CStr::from_ptr(pwd.pw_name)
                .to_string_lossy()
                .into_owned();
        }
    }
    "root".to_string()
}

enum Job {
    Mail(Box<Mail>),
    Flush(oneshot::Sender<()>),
}

/// The alert queue: alerts are sent in order on one task; failures are logged with
/// ldirectord's `failed to send … email message` text.
#[derive(Clone)]
pub struct Alerts {
    tx: mpsc::UnboundedSender<Job>,
}

impl Alerts {
    /// Starts the sending task on `tracker`; it ends when every [`Alerts`] is dropped.
    pub fn spawn(mailer: Mailer, logger: Logger, tracker: &TaskTracker) -> Alerts {
        let (tx, mut rx) = mpsc::unbounded_channel();
        tracker.spawn(async move {
            while let Some(job) = rx.recv().await {
                match job {
                    Job::Mail(mail) => {
                        if let Err(e) = mailer.send(&mail).await {
                            logger.log(e.to_string());
                        }
                    }
                    Job::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        Alerts { tx }
    }

    pub fn send(&self, mail: Mail) {
        // The task lives as long as any sender; a send fails only after a panic there.
        let _ = self.tx.send(Job::Mail(Box::new(mail)));
    }

    /// Waits until every alert queued before has been sent (or has failed).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Job::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::director::DaemonStatus;

    fn mail() -> Mail {
        Mail {
            to: "ops@example.com, Admin <admin@example.com>".into(),
            from: None,
            smtp: Some("127.0.0.1".into()),
            subject: "[Web] Deleted real server: 10.0.0.1:80 (192.0.2.1:80)".into(),
            details: Some("Service name: Web\nComment: main site\n".into()),
            status: DaemonStatus::Running,
        }
    }

    #[test]
    fn body_is_ldirectords() {
        let mut mailer = Mailer::new();
        mailer.hostname = "director".into();
        assert_eq!(
            mailer.body(&mail()),
            "xdirectord host: director\n\
             Log-Message: [Web] Deleted real server: 10.0.0.1:80 (192.0.2.1:80)\n\
             Daemon-Status: running\n\
             \nService name: Web\nComment: main site\n\n"
        );
    }

    #[test]
    fn message_has_every_recipient_and_the_sender() {
        let mut mailer = Mailer::new();
        mailer.hostname = "director.example.com".into();
        mailer.username = "root".into();
        let message = mailer.message(&mail()).unwrap();
        let envelope = message.envelope();
        assert_eq!(
            envelope.from().unwrap().to_string(),
            "root@director.example.com"
        );
        let to: Vec<String> = envelope.to().iter().map(ToString::to_string).collect();
        assert_eq!(to, ["ops@example.com", "admin@example.com"]);
        let text = String::from_utf8(message.formatted()).unwrap();
        assert!(text.contains("From: root@director.example.com"), "{text}");
        assert!(
            text.contains("Subject: [Web] Deleted real server"),
            "{text}"
        );
        let mut with_from = mail();
        with_from.from = Some("LB Alerts <lb@example.com>".into());
        let text = String::from_utf8(mailer.message(&with_from).unwrap().formatted()).unwrap();
        assert!(
            text.contains("From: \"LB Alerts\" <lb@example.com>"),
            "{text}"
        );
    }

    #[test]
    fn bad_addresses_are_reported() {
        let mut bad = mail();
        bad.to = "not an address".into();
        let e = Mailer::new().message(&bad).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("failed to send email message: invalid address"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn without_smtp_or_sendmail_the_failure_is_clear() {
        let mut local = mail();
        local.smtp = None;
        let mailer = Mailer::new().with_sendmail("/nonexistent/sendmail");
        let e = mailer.send(&local).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "failed to send email message: no smtp server is set and there is no /nonexistent/sendmail"
        );
    }
}
