//! The workspace, set-up and env each Assign carries (runner contract rule
//! 11). A Testrun's are fixed at creation, so the dispatcher caches them
//! per Testrun instead of reading them for every test it hands out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use testrunner_proto::v1::{Assign, Digest};

use crate::domain::workspace::{TestrunWorkspace, parse_blob_key};
use crate::error::Result;
use crate::store::Store;

/// Entries kept before the cache starts over (a Testrun's entry is tiny;
/// this bounds memory on a coordinator that lives for months).
const MAX_ENTRIES: usize = 4096;

/// Testrun id -> its workspace settings (`None`: a plain Testrun).
#[derive(Debug, Default)]
pub struct WorkspaceCache {
    entries: Mutex<HashMap<i64, Option<Arc<TestrunWorkspace>>>>,
}

impl WorkspaceCache {
    /// The settings of a Testrun, read once.
    pub async fn get(
        &self,
        store: &dyn Store,
        testrun_id: i64,
    ) -> Result<Option<Arc<TestrunWorkspace>>> {
        if let Some(hit) = self.entries.lock().expect("cache lock").get(&testrun_id) {
            return Ok(hit.clone());
        }
        let loaded = store.testrun_workspace(testrun_id).await?.map(Arc::new);
        let mut entries = self.entries.lock().expect("cache lock");
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(testrun_id, loaded.clone());
        Ok(loaded)
    }
}

/// Fills the workspace fields (9-12) of an Assign.
pub fn fill(assign: &mut Assign, ws: &TestrunWorkspace) {
    if let Some(w) = &ws.workspace {
        let (hash, size_bytes) = parse_blob_key(&w.digest);
        assign.workspace = Some(Digest { hash, size_bytes });
    }
    assign.setup = ws.setup.clone().unwrap_or_default();
    assign.env = ws.env.clone().into_iter().collect();
    if ws.setup.is_some() {
        assign.setup_timeout = Some(testrunner_proto::millis(ws.setup_timeout_ms));
    }
}
