//! Backends: what makes a data plane hold a [`DesiredTable`], by executing the ops of the one
//! diff ([`crate::table::diff`]). The XDP backend programs the BPF maps of `lb-ebpf`; the IPVS
//! backend speaks IPVS generic netlink; the hybrid sends each virtual's ops to the one it runs
//! on, as `placement` chose. The director owns one and calls [`Backend::apply`] with the ops of
//! every change.

pub mod fake;
pub mod hybrid;
pub mod ipvs;
pub mod placement;
pub mod xdp;

use std::collections::BTreeSet;

use crate::table::{BackendKind, DesiredTable, diff::Op};

/// Why a backend could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The table asks for something this backend cannot do (a scheduler it does not know, a
    /// forwarding method it does not implement, too many reals…). The message names it.
    #[error("{0}")]
    Unsupported(String),
    /// A system call or map operation failed.
    #[error("{context}: {source}")]
    System {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl BackendError {
    pub fn system(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        BackendError::System {
            context: context.into(),
            source: Box::new(source),
        }
    }
}

/// Lines a backend has to say about what it did (a real whose path it cannot resolve, a table
/// changed behind its back that it put right): the director logs them.
pub type Notes = Vec<String>;

/// A data plane that can be made to hold a desired table.
pub trait Backend: Send {
    /// Carries out `ops` (the diff between what the data plane holds and what it should hold),
    /// in order. On error, what was done before the failing op stays done; the director then
    /// reads back [`Backend::held`] and applies the difference again.
    fn apply(&mut self, ops: &[Op]) -> Result<Notes, BackendError>;

    /// What the data plane holds now: at start, what a previous agent (or ldirectord) left, so
    /// that reals already there as configured are not reported as added again; after a failed
    /// apply, what to diff against. Attributes a data plane does not keep read back as their
    /// defaults.
    fn held(&self) -> Result<DesiredTable, BackendError>;

    /// Called about once a second, with the table in force (`None` while the agent starts and
    /// has applied nothing): follows what the backend watches itself (for XDP, where the reals
    /// are as the kernel's neighbour and routing tables change, and idle flows) and puts right
    /// what was changed behind its back (for IPVS, `ipvsadm` by hand).
    fn refresh(&mut self, desired: Option<&DesiredTable>) -> Result<Notes, BackendError> {
        let _ = desired;
        Ok(Notes::new())
    }

    /// Before a reload puts virtuals on the data planes `kinds`: opens those not open yet. `Err`
    /// names the one that cannot be opened (the reload is then refused).
    fn prepare(
        &mut self,
        kinds: &BTreeSet<BackendKind>,
    ) -> Result<(), (BackendKind, BackendError)> {
        let _ = kinds;
        Ok(())
    }

    /// The agent is exiting, after its last `apply`. A backend whose data plane then holds
    /// nothing may remove it entirely; one that still holds services (`cleanstop = no`) leaves
    /// them forwarding for the next agent.
    fn shutdown(&mut self) -> Result<(), BackendError> {
        Ok(())
    }
}
