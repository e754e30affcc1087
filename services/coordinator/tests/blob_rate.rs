//! How fast blobs go into and out of each store, against a plain file
//! write of the same bytes: the measurement behind "blobs as chunked rows"
//! in docs/design.md. Prints rates; asserts only that the bytes come back.
//!
//! `cargo nextest run -p coordinator --test blob_rate --run-ignored only --no-capture`

use std::time::Instant;

use coordinator::domain::workspace::blob_key;
use coordinator::store;
use testkit::{Backend, TestDb};
use testrunner_content::digest_of;

const MIB: usize = 1 << 20;
const BLOB_MIB: usize = 64;

async fn measure(backend: Backend) {
    let db = TestDb::new(backend).await.unwrap();
    let store = store::connect(&db.url).await.unwrap();
    let data: Vec<u8> = (0..BLOB_MIB * MIB).map(|i| (i * 31 % 251) as u8).collect();
    let d = digest_of(&data);
    let key = blob_key(&d.hash, d.size_bytes);

    let t = Instant::now();
    for (i, chunk) in data.chunks(MIB).enumerate() {
        store
            .write_chunk(&key, d.size_bytes, (i * MIB) as i64, chunk, 0)
            .await
            .unwrap();
    }
    store.mark_complete(&key, 0).await.unwrap();
    let write = t.elapsed();

    let t = Instant::now();
    let mut back = Vec::with_capacity(data.len());
    while back.len() < data.len() {
        let (start, bytes) = store
            .read_chunk(&key, back.len() as i64, false)
            .await
            .unwrap()
            .unwrap();
        back.extend_from_slice(&bytes[back.len() - start as usize..]);
    }
    let read = t.elapsed();
    assert!(back == data);

    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    std::fs::write(dir.path().join("blob"), &data).unwrap();
    let file = t.elapsed();
    let rate = |e: std::time::Duration| BLOB_MIB as f64 / e.as_secs_f64();
    println!(
        "{backend:?}: {BLOB_MIB} MiB in 1 MiB chunks: write {:.0} MiB/s, read {:.0} MiB/s; plain file write {:.0} MiB/s",
        rate(write),
        rate(read),
        rate(file)
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement, run by hand"]
async fn blob_rates_on_both_stores_against_a_file() {
    measure(Backend::Sqlite).await;
    measure(Backend::Postgres).await;
}
