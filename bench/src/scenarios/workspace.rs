//! Scenario 7, workspaces: what a private copy of the workspace costs each
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
//! The upload and fetch parts run against the real coordinator in
//! `measure_e2e`; the real suite against pytest-xdist is in `super::suite`.

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
        let mut copy = base.take(None)?;
        first += started.elapsed();
        copy.discard();
        copy.give_back();
    }
    for i in 0..=reps {
        let copy = base.take(None)?;
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
    let label = "7. workspace copy";
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

/// Upload and fetch against the real coordinator, CLI and runner on
/// `backend`, with a tree of `files` files plus one test:
///
/// - upload cold, unchanged, and with one file changed (`testrunner run
///   --workspace`: hashing, `FindMissingBlobs`, sending what is missing,
///   `CreateTestrun`), against `tar c` of the same tree piped to `cat`;
/// - a runner's preparation of it cold (empty cache: fetch everything and
///   write it out), warm (a new runner process on the same cache: nothing
///   fetched) and after the one-file change, as `Setup.duration`.
pub async fn measure_e2e(
    ctx: &Ctx,
    backend: crate::procs::Backend,
    quick: bool,
) -> anyhow::Result<Vec<Row>> {
    use anyhow::Context as _;
    let files = if quick { 1_000 } else { 10_000 };
    let label = "7. workspace";
    let tree = ctx.work.join(format!("ws-tree-{}", backend.name()));
    let _ = fs::remove_dir_all(&tree);
    fs::create_dir_all(tree.join("tests"))?;
    make_tree(&tree.join("src"), files)?;
    fs::write(tree.join("tests/t.sh"), "test -f src/d0000/f0.py\n")?;
    let cache = ctx.work.join(format!("ws-cache-{}", backend.name()));
    let _ = fs::remove_dir_all(&cache);

    // Baseline: reading the whole tree once.
    let started = Instant::now();
    let tar = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar cf - -C {} . | cat > /dev/null",
            tree.display()
        ))
        .status()?;
    anyhow::ensure!(tar.success(), "tar failed");
    let tar_ms = started.elapsed().as_secs_f64() * 1e3;

    let stack = super::Stack::start(ctx, backend, "workspace", &[]).await?;
    let cli = ctx.bins.coordinator.with_file_name("testrunner");
    let url = stack.coord.url();
    let upload = |what: &str| -> anyhow::Result<(f64, String, i64)> {
        let started = Instant::now();
        let out = std::process::Command::new(&cli)
            .args([
                "--coordinator",
                &url,
                "run",
                "--detach",
                "--user",
                "bench",
                "--workspace",
            ])
            .arg(&tree)
            .arg("tests/t.sh")
            .env_remove("TESTRUNNER_API_TOKEN")
            .output()
            .with_context(|| format!("running {}", cli.display()))?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        anyhow::ensure!(out.status.success(), "upload {what}: {stderr}");
        let id = String::from_utf8_lossy(&out.stdout).trim().parse()?;
        let sent = stderr
            .lines()
            .find(|l| l.contains("sent "))
            .unwrap_or_default()
            .trim()
            .to_owned();
        Ok((ms, sent, id))
    };
    let result = async {
        let mut client = crate::api::client(&url).await?;
        let limit = Duration::from_secs(600);
        let prep_ms = |run: &testrunner_proto::v1::Testrun| {
            run.setups
                .first()
                .and_then(|s| s.duration)
                .map_or(f64::NAN, |d| {
                    d.seconds as f64 * 1e3 + f64::from(d.nanos) / 1e6
                })
        };
        let runner = |name: &str| -> anyhow::Result<crate::procs::Proc> {
            let mut cmd = std::process::Command::new(&ctx.bins.runner);
            cmd.args([
                "--coordinator",
                &stack.coord.runner_url(),
                "--token",
                crate::procs::TOKEN,
            ])
            .args(["--name", name, "--slots", "1", "--cache-dir"])
            .arg(&cache);
            crate::procs::spawn(cmd, ctx.log("workspace", backend, name))
        };

        let (cold_ms, cold_sent, cold_id) = upload("cold")?;
        let mut r1 = runner("r1")?;
        let run = crate::api::wait_success(&mut client, "bench", cold_id, limit).await?;
        let run = crate::api::get(&mut client, run.id).await?;
        let fetch_cold = prep_ms(&run);
        r1.terminate(Duration::from_secs(10)).await;

        let (same_ms, same_sent, same_id) = upload("unchanged")?;
        let _r2 = runner("r2")?;
        crate::api::wait_success(&mut client, "bench", same_id, limit).await?;
        let fetch_warm = prep_ms(&crate::api::get(&mut client, same_id).await?);

        fs::write(tree.join("src/d0000/f0.py"), "changed\n")?;
        let (one_ms, one_sent, one_id) = upload("one file changed")?;
        crate::api::wait_success(&mut client, "bench", one_id, limit).await?;
        let fetch_one = prep_ms(&crate::api::get(&mut client, one_id).await?);

        let row = |metric: &str, ms: f64, details: serde_json::Value| {
            Row::new(label, backend.name(), &format!("{metric}, {files} files"))
                .measured(ms, "ms")
                .baseline(tar_ms, "ms")
                .target("reported", Verdict::Info)
                .details(details)
        };
        Ok(vec![
            row("upload cold", cold_ms, json!({"cli": cold_sent})),
            row("upload unchanged", same_ms, json!({"cli": same_sent})),
            row("upload, one file changed", one_ms, json!({"cli": one_sent})),
            row("runner prepares cold (fetch all)", fetch_cold, json!({})),
            row(
                "runner prepares warm (cache, new process)",
                fetch_warm,
                json!({}),
            ),
            row(
                "runner prepares after one file changed",
                fetch_one,
                json!({}),
            ),
        ])
    }
    .await;
    let result = stack.shutdown(result).await;
    let _ = fs::remove_dir_all(&tree);
    let _ = fs::remove_dir_all(&cache);
    result
}
