//! Blob collection on both stores: a Testrun pins its tree's blobs for as
//! long as it exists; blobs nobody pins go after the grace period; deleting
//! a Testrun frees what only it used and keeps what another still pins.

use std::collections::BTreeMap;
use std::sync::Arc;

use coordinator::domain::workspace::{NewWorkspace, TestrunWorkspace, WorkspaceRef, blob_key};
use coordinator::domain::{NewTest, NewTestrun};
use coordinator::store::{self, Collected, Store};
use testkit::{Backend, TestDb, on_both_stores};
use testrunner_content::digest_of;

async fn open(backend: Backend) -> (TestDb, Arc<dyn Store>) {
    let db = TestDb::new(backend).await.unwrap();
    let store = store::connect(&db.url).await.unwrap();
    (db, store)
}

/// Stores `data` as a blob at time `now`; returns its key.
async fn put(store: &dyn Store, data: &[u8], now: i64) -> String {
    let d = digest_of(data);
    let key = blob_key(&d.hash, d.size_bytes);
    store.put_blob(&key, data, now).await.unwrap();
    key
}

/// A Testrun pinning a tree whose blobs are `blobs` (the first is its root).
fn pinning(blobs: &[&String]) -> NewTestrun {
    NewTestrun {
        username: "u".into(),
        suite: "u".into(),
        command: None,
        timeout_ms: 60_000,
        tests: vec![NewTest {
            name: "t.py".into(),
            content: String::new(),
        }],
        workspace: Some(NewWorkspace {
            settings: TestrunWorkspace {
                workspace: Some(WorkspaceRef {
                    digest: blobs[0].clone(),
                    files: 1,
                    bytes: 1,
                }),
                setup: None,
                env: BTreeMap::new(),
                setup_timeout_ms: 0,
            },
            blobs: blobs.iter().map(|b| (*b).clone()).collect(),
        }),
        limits: Default::default(),
        selector: Default::default(),
    }
}

async fn present(store: &dyn Store, keys: &[&String]) -> Vec<bool> {
    let keys: Vec<String> = keys.iter().map(|k| (*k).clone()).collect();
    let missing = store.find_missing(&keys, 0).await.unwrap();
    keys.iter().map(|k| !missing.contains(k)).collect()
}

on_both_stores! {
    unreferenced_blobs_go_after_the_grace_and_pinned_ones_stay(backend) {
        let (_db, store) = open(backend).await;
        let root_a = put(&*store, b"root a", 1_000).await;
        let root_b = put(&*store, b"root b", 1_000).await;
        let only_a = put(&*store, b"only in a", 1_000).await;
        let shared = put(&*store, b"in both", 1_000).await;
        let loose = put(&*store, b"nobody's", 1_000).await;
        // An upload cut midway, abandoned.
        let partial = digest_of(b"0123456789");
        let partial_key = blob_key(&partial.hash, partial.size_bytes);
        store.write_chunk(&partial_key, 10, 0, b"01234", 1_000).await.unwrap();

        let a = store.create_testrun(&pinning(&[&root_a, &only_a, &shared]), 2_000).await.unwrap();
        let b = store.create_testrun(&pinning(&[&root_b, &shared]), 2_000).await.unwrap();

        // Within the grace (cutoff before the last touch) nothing goes.
        assert_eq!(store.collect_garbage(500).await.unwrap(), Collected::default());
        assert_eq!(present(&*store, &[&loose]).await, vec![true]);

        // After it, only what no Testrun pins goes (the abandoned upload too).
        let c = store.collect_garbage(10_000).await.unwrap();
        assert_eq!(c, Collected { workspaces: 0, blobs: 2 });
        assert_eq!(
            present(&*store, &[&root_a, &root_b, &only_a, &shared, &loose]).await,
            vec![true, true, true, true, false]
        );
        assert!(store.read_chunk(&partial_key, 0, true).await.unwrap().is_none());

        // Deleting A frees what only A used; B's blobs stay.
        store.delete_testrun(a.id).await.unwrap();
        let c = store.collect_garbage(10_000).await.unwrap();
        assert_eq!(c, Collected { workspaces: 1, blobs: 2 });
        assert_eq!(
            present(&*store, &[&root_a, &root_b, &only_a, &shared]).await,
            vec![false, true, false, true]
        );
        let ws = store.testrun_workspace(b.id).await.unwrap().unwrap();
        assert_eq!(ws.workspace.unwrap().digest, root_b);

        // And deleting B frees the rest.
        store.delete_testrun(b.id).await.unwrap();
        store.collect_garbage(10_000).await.unwrap();
        assert_eq!(present(&*store, &[&root_b, &shared]).await, vec![false, false]);
    }
}
