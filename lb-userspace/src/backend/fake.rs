//! A backend that records the tables it is given, for tests of the director's decisions (the
//! data plane itself is tested against the real XDP program).

use super::{Backend, BackendError};
use crate::table::DesiredTable;
use std::sync::{Arc, Mutex};

/// Every table applied, oldest first; clone it to watch from a test.
#[derive(Clone, Default)]
pub struct FakeBackend {
    pub applied: Arc<Mutex<Vec<DesiredTable>>>,
}

impl FakeBackend {
    /// The last table applied (empty before the first).
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
    fn apply(&mut self, table: &DesiredTable) -> Result<(), BackendError> {
        self.applied.lock().expect("poisoned").push(table.clone());
        Ok(())
    }
}
