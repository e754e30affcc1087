//! Scenario 6, workspaces: what a private copy of the workspace costs each
//! test, against today's empty work directory.
//!
//! In-process, with the runner's own code (`runner::workspace::copies`,
//! `runner::workdir`) on a generated tree of N files (10 per directory,
//! 1 KiB each) in the bench's work directory:
//!
//! - baseline: a test's empty work directory as today (take, write the
//!   test file, give back);
//! - first copy: a full copy of the tree (a new slot's first test);
//! - reset: a used copy put back as the tree is, after a test that
//!   changed one file and wrote a `__pycache__` (every later test on the
//!   slot; done after the test, off the runner's thread).
//!
//! The upload, fetch and real-suite parts need the coordinator's
//! ContentService and are measured by `measure_e2e` once it is there.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::Ctx;
use crate::report::{Row, Verdict};

/// Tree sizes measured.
pub fn sizes(quick: bool) -> Vec<usize> {
    if quick {
        vec![1_000]
    } else {
        vec![1_000, 10_000]
    }
}

/// Writes `files` files of 1 KiB, 10 per directory, under `dir`.
pub fn make_tree(dir: &Path, files: usize) -> anyhow::Result<()> {
    let content = vec![b'x'; 1024];
    for i in 0..files {
        let sub = dir.join(format!("d{:04}", i / 10));
        if i % 10 == 0 {
            fs::create_dir_all(&sub)?;
        }
        fs::write(sub.join(format!("f{i}.py")), &content)?;
    }
    Ok(())
}

/// The per-test cost rows for every size.
pub async fn measure(ctx: &Ctx, quick: bool) -> anyhow::Result<Vec<Row>> {
    let work = ctx.work.clone();
    tokio::task::spawn_blocking(move || {
        let mut rows = Vec::new();
        for files in sizes(quick) {
            rows.extend(copy_cost(&work, files)?);
        }
        Ok(rows)
    })
    .await?
}

fn copy_cost(work: &Path, files: usize) -> anyhow::Result<Vec<Row>> {
    use runner::workspace::copies::Base;
    let root = work.join(format!("copies-{files}"));
    let tree = root.join("base");
    fs::create_dir_all(&tree)?;
    make_tree(&tree, files)?;
    let reps = if files >= 10_000 { 3 } else { 10 };

    // Today: an empty directory with the test's file.
    let dirs = Arc::new(runner::workdir::WorkDirs::new(Some(&root))?);
    let started = Instant::now();
    for _ in 0..reps * 10 {
        let mut dir = dirs.take()?;
        dir.write_file("t.sh", b"exit 0\n", 0o644)?;
        drop(dir);
    }
    let empty = started.elapsed() / (reps as u32 * 10);

    let base = Arc::new(Base::new(
        "bench".into(),
        tree.clone(),
        root.join("copies"),
    )?);
    let mut first = Duration::ZERO;
    let mut reset = Duration::ZERO;
    for _ in 0..reps {
        // A new copy each time: the fresh ones are deleted, not reset.
        let started = Instant::now();
        let mut copy = base.take()?;
        first += started.elapsed();
        copy.discard();
        copy.give_back();
    }
    for i in 0..=reps {
        let copy = base.take()?;
        // What a test might leave behind.
        let path = copy.path();
        fs::write(path.join("d0000/f0.py"), format!("changed {i}"))?;
        fs::create_dir_all(path.join("d0000/__pycache__"))?;
        fs::write(path.join("d0000/__pycache__/f0.pyc"), b"junk")?;
        let started = Instant::now();
        copy.give_back();
        // The first round made the copy; the rest reset it.
        if i > 0 {
            reset += started.elapsed();
        }
    }
    let first = first / reps as u32;
    let reset = reset / reps as u32;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let label = "6. workspace copy";
    let row = |metric: String, value: Duration| {
        Row::new(label, "runner", &metric)
            .measured(ms(value), "ms/test")
            .baseline(ms(empty), "ms/test")
            .target("reported", Verdict::Info)
            .details(json!({"files": files, "reps": reps}))
    };
    let rows = vec![
        row(format!("first copy of {files} files"), first),
        row(format!("reset of a used copy, {files} files"), reset),
    ];
    fs::remove_dir_all(&root).ok();
    Ok(rows)
}
