//! What every service shares: the store, the commit thread, the CA, the live
//! sessions and the counters.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Config;
use crate::hub::Hub;
use crate::pki::Ca;
use crate::store::{CommitHandle, Store};

/// Shared coordinator state.
pub struct State {
    pub store: Store,
    pub commit: CommitHandle,
    pub ca: Ca,
    pub admin_fingerprint: String,
    pub hub: Hub,
    pub config: Config,
    pub data_dir: PathBuf,
}

pub type Shared = Arc<State>;

impl State {
    /// Increments a persisted counter (rejections, refusals); failures to
    /// count are logged, never fatal.
    pub fn count(&self, name: &str) {
        if let Err(e) = self.store.add_counter(name, 1) {
            tracing::warn!("cannot update counter {name}: {e}");
        }
    }
}
