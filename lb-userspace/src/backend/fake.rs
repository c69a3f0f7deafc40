//! A backend that records what it is told, for tests of the director's decisions (the data
//! planes themselves are tested against the real XDP program and the real IPVS).

use super::{Backend, BackendError, Notes};
use crate::table::{DesiredTable, diff::Op};
use std::sync::{Arc, Mutex};

/// The table after every apply, oldest first, and every op; clone it to watch from a test.
#[derive(Clone, Default)]
pub struct FakeBackend {
    pub applied: Arc<Mutex<Vec<DesiredTable>>>,
    pub ops: Arc<Mutex<Vec<Op>>>,
}

impl FakeBackend {
    /// The table the data plane holds (empty before the first apply).
    pub fn current(&self) -> DesiredTable {
        self.applied
            .lock()
            .expect("poisoned")
            .last()
            .cloned()
            .unwrap_or_default()
    }
}

impl Backend for FakeBackend {
    fn apply(&mut self, ops: &[Op]) -> Result<Notes, BackendError> {
        let mut table = self.current();
        table.apply_ops(ops);
        self.applied.lock().expect("poisoned").push(table);
        self.ops.lock().expect("poisoned").extend_from_slice(ops);
        Ok(Notes::new())
    }

    fn held(&self) -> Result<DesiredTable, BackendError> {
        Ok(self.current())
    }
}
