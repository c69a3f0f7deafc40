//! What the data plane was told, in ldirectord's words: each [`Op`] of the one diff becomes the
//! line ldirectord logs (and mails) for the same ipvsadm command. The wording depends on why
//! the op happens (a real added because it came up, or added quiescent because it is down), so
//! the director says what it knows of each real. Pure.

use std::net::IpAddr;

use crate::table::{
    Real, ServiceKey, SocketText,
    diff::{Op, Role},
};

/// ldirectord's `get_virtual`: `ip:port` (IPv6 in brackets) or the firewall mark.
pub fn virtual_text(key: &ServiceKey) -> String {
    match key {
        ServiceKey::Inet { addr, port, .. } => SocketText(*addr, *port).to_string(),
        ServiceKey::Fwmark { mark, .. } => mark.to_string(),
    }
}

/// A real as ldirectord names it in messages: `ip:port` (IPv6 in brackets).
pub fn real_text(addr: IpAddr, port: u16) -> String {
    SocketText(addr, port).to_string()
}

/// One thing that changed in the data plane, as ldirectord logs (and mails) it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// `Added virtual server: V`.
    AddedVirtual,
    /// `Changed virtual server: V` (scheduler, persistence, flags changed on reload).
    ChangedVirtual,
    /// `Purged virtual server (<tag>): V`: removed on reload (`start`) or stop (`stop`).
    PurgedVirtual { tag: &'static str },
    /// `Added real server: R (V) (Weight set to W)`.
    Added { real: Real },
    /// `Restored real server: R (V) (Weight set to W)`.
    Restored { real: Real },
    /// `Quiescent real server: R (V) (Weight set to 0)`, or with `readd` (the real was not in
    /// the data plane) `Readd Quiescent real server: …`.
    Quiescent { real: Real, readd: bool },
    /// `Deleted real server: R (V)`.
    Deleted { real: Real },
    /// `Purged real server (<tag>): R (V)`: gone from the configuration, or stopping.
    Purged { real: Real, tag: &'static str },
    /// `Added fallback server: F (V) (Weight set to 1)`.
    FallbackAdded { fallback: Real },
    /// `Deleted fallback server: F (V)`.
    FallbackDeleted { fallback: Real },
}

impl Change {
    /// The log line, ldirectord's text.
    pub fn message(&self, key: &ServiceKey) -> String {
        let v = virtual_text(key);
        let r = |real: &Real| real_text(real.addr, real.port);
        match self {
            Change::AddedVirtual => format!("Added virtual server: {v}"),
            Change::ChangedVirtual => format!("Changed virtual server: {v}"),
            Change::PurgedVirtual { tag } => format!("Purged virtual server ({tag}): {v}"),
            Change::Added { real } => {
                format!(
                    "Added real server: {} ({v}) (Weight set to {})",
                    r(real),
                    real.weight
                )
            }
            Change::Restored { real } => {
                format!(
                    "Restored real server: {} ({v}) (Weight set to {})",
                    r(real),
                    real.weight
                )
            }
            Change::Quiescent { real, readd: false } => {
                format!("Quiescent real server: {} ({v}) (Weight set to 0)", r(real))
            }
            Change::Quiescent { real, readd: true } => {
                format!(
                    "Readd Quiescent real server: {} ({v}) (Weight set to 0)",
                    r(real)
                )
            }
            Change::Deleted { real } => format!("Deleted real server: {} ({v})", r(real)),
            Change::Purged { real, tag } => {
                format!("Purged real server ({tag}): {} ({v})", r(real))
            }
            Change::FallbackAdded { fallback } => {
                format!(
                    "Added fallback server: {} ({v}) (Weight set to 1)",
                    r(fallback)
                )
            }
            Change::FallbackDeleted { fallback } => {
                format!("Deleted fallback server: {} ({v})", r(fallback))
            }
        }
    }

    /// The e-mail subject ldirectord sends for it, if any (a re-added quiescent real is
    /// mailed as plain `Quiescent`).
    pub fn mail_subject(&self, key: &ServiceKey) -> Option<String> {
        match self {
            Change::AddedVirtual | Change::ChangedVirtual | Change::PurgedVirtual { .. } => None,
            Change::Quiescent { real, .. } => Some(
                Change::Quiescent {
                    real: *real,
                    readd: false,
                }
                .message(key),
            ),
            other => Some(other.message(key)),
        }
    }

    /// ldirectord's `EMAILSTATUS` bookkeeping: `Some(true)` starts the repeated
    /// `Inaccessible real server` alerts for this real, `Some(false)` stops them.
    pub fn repeats(&self) -> Option<(Real, bool)> {
        match self {
            Change::Quiescent { real, .. } | Change::Deleted { real } => Some((*real, true)),
            Change::Added { real } | Change::Restored { real } | Change::Purged { real, .. } => {
                Some((*real, false))
            }
            Change::FallbackAdded { fallback } | Change::FallbackDeleted { fallback } => {
                Some((*fallback, false))
            }
            Change::AddedVirtual | Change::ChangedVirtual | Change::PurgedVirtual { .. } => None,
        }
    }
}

/// Why the ops happen, as far as their wording needs it.
pub struct Wording<'a> {
    /// Whether a real (as configured) is up; down reals are in the table only quiescent.
    pub up: &'a dyn Fn(&ServiceKey, &Real) -> bool,
    /// Whether the configuration lists the real: one that left the data plane but is still
    /// listed went down (`Deleted`), one that is no longer listed is `Purged`.
    pub configured: &'a dyn Fn(&ServiceKey, &Real) -> bool,
    /// `readdquiescent`: a down real added at weight 0 is a `Readd Quiescent` one.
    pub readdquiescent: bool,
    /// Purge tag: `start` (start and reload), `stop`.
    pub tag: &'static str,
}

/// The changes `ops` make, in their order, each with its virtual. A real deleted with its
/// virtual is reported only when stopping, and only if it was up (`ld_stop` purges the reals
/// it tracks as up, then the virtual).
pub fn changes(ops: &[Op], wording: &Wording<'_>) -> Vec<(ServiceKey, Change)> {
    let goes = |key: &ServiceKey| {
        ops.iter()
            .any(|op| matches!(op, Op::DeleteVirtual { key: k } if k == key))
    };
    let mut out = Vec::new();
    for op in ops {
        let key = *op.key();
        let mut push = |change| out.push((key, change));
        match op {
            Op::AddVirtual { .. } => push(Change::AddedVirtual),
            Op::EditVirtual { .. } => push(Change::ChangedVirtual),
            Op::DeleteVirtual { .. } => push(Change::PurgedVirtual { tag: wording.tag }),
            Op::AddReal {
                role: Role::Real,
                real,
                ..
            } => push(if (wording.up)(&key, real) {
                Change::Added { real: *real }
            } else {
                Change::Quiescent {
                    real: *real,
                    readd: wording.readdquiescent,
                }
            }),
            Op::EditReal {
                role: Role::Real,
                real,
                ..
            } => push(if (wording.up)(&key, real) {
                Change::Restored { real: *real }
            } else {
                Change::Quiescent {
                    real: *real,
                    readd: false,
                }
            }),
            Op::DeleteReal {
                role: Role::Real,
                real,
                ..
            } => {
                if goes(&key) {
                    if wording.tag == "stop" && (wording.up)(&key, real) {
                        push(Change::Purged {
                            real: *real,
                            tag: "stop",
                        });
                    }
                } else if (wording.configured)(&key, real) {
                    push(Change::Deleted { real: *real });
                } else {
                    push(Change::Purged {
                        real: *real,
                        tag: "start",
                    });
                }
            }
            Op::AddReal {
                role: Role::Fallback,
                real,
                ..
            } => push(Change::FallbackAdded { fallback: *real }),
            Op::DeleteReal {
                role: Role::Fallback,
                real,
                ..
            } => push(Change::FallbackDeleted { fallback: *real }),
            Op::EditReal {
                role: Role::Fallback,
                real,
                ..
            } => {
                push(Change::FallbackDeleted { fallback: *real });
                push(Change::FallbackAdded { fallback: *real });
            }
        }
    }
    out
}
