//! Backends: what makes a data plane hold a [`DesiredTable`]. The XDP backend programs the BPF
//! maps of `lb-ebpf`; an IPVS backend (later) speaks IPVS generic netlink. The director owns one
//! and calls [`Backend::apply`] whenever the desired table changes.

pub mod fake;
pub mod xdp;

use crate::table::DesiredTable;

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

/// A data plane that can be made to hold a desired table.
pub trait Backend: Send {
    /// Makes the data plane hold `table`, changing only what differs from what it holds now.
    /// Services the data plane holds that `table` lacks are removed. On error, what was applied
    /// before the failing service stays applied; calling again with the same table retries.
    fn apply(&mut self, table: &DesiredTable) -> Result<(), BackendError>;

    /// What the data plane holds now, as far as this backend can read it back: at start, what
    /// a previous agent left (so that reals it finds as configured are not reported as added
    /// again). Attributes the backend does not keep read back as their defaults. `None` when the
    /// backend cannot tell.
    fn held(&self) -> Result<Option<DesiredTable>, BackendError> {
        Ok(None)
    }

    /// Called about once a second: follows what the backend watches itself (for XDP, where the
    /// reals are as the kernel's neighbour and routing tables change, and idle flows).
    fn refresh(&mut self) -> Result<(), BackendError> {
        Ok(())
    }

    /// The agent is exiting, after its last `apply`. A backend whose data plane then holds
    /// nothing may remove it entirely; one that still holds services (`cleanstop = no`) leaves
    /// them forwarding for the next agent.
    fn shutdown(&mut self) -> Result<(), BackendError> {
        Ok(())
    }
}
