//! Scenario 5, many watchers: W concurrent WatchTestrun streams (one
//! process, one connection and one task each) of one busy Testrun printing
//! L lines.
//! Every watcher must receive every line exactly once, and ingestion with
//! the watchers must be less than 20% slower than without them.
//!
//! Baseline: the same Testrun on the same coordinator, without watchers,
//! measured just before. Ingestion rate = L / (the test's finished_at −
//! started_at), so both runs are timed the same way: the Testrun is created
//! with no runner attached, the watchers (if any) attach and get their
//! snapshot, and only then does a runner start.
//!
//! The watchers stand in for 500 clients on other machines, but here they
//! share the coordinator's two cores. So they run on their own runtime whose
//! threads are under `SCHED_IDLE` (nice 19 where refused), and they read
//! each event in place (`LogWalk`: no allocation per line). They accept
//! gzip, as the `testrunner` CLI does. The coordinator's whole fan-out
//! (framing, compression, sockets) still runs on the same cores and is what
//! the ratio measures; the details record both processes' CPU.
//!
//! Longer than 500 lines on purpose: the scenario, its baseline and the
//! watcher processes' wire-level reader are one measurement, kept together.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use prost::bytes::{Buf as _, Bytes};
use serde_json::json;
use testrunner_proto::v1::WatchTestrunRequest;
use tokio::sync::Semaphore;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;

use super::{Ctx, Stack, limit_for};
use crate::api;
use crate::procs::{Backend, cpu_seconds};
use crate::report::{Row, Verdict};

const NAME: &str = "5. many watchers";
const USER: &str = "bench-watchers";
const MAX_DROP: f64 = 0.20;
/// The watchers' nice value where `SCHED_IDLE` is refused.
const WATCHER_NICE: i32 = 19;

/// Puts the calling thread under `SCHED_IDLE`: it runs only when a core
/// would otherwise idle. The watchers stand in for clients on other
/// machines, yet their own work (reading 100 million lines for the
/// exactly-once check) is several times the coordinator's whole fan-out;
/// at nice 19 each of their threads still kept a weight of its own against
/// the coordinator and Postgres.
#[allow(unsafe_code)] // no safe wrapper for sched_setscheduler in nix or rustix
fn idle_policy() -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain syscall on the calling thread (pid 0) with a valid
    // parameter struct.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) == 0 }
}

/// Sends `WatchTestrunRequest`s, receives each event as its raw bytes.
#[derive(Debug, Default, Clone, Copy)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = WatchTestrunRequest;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = WatchTestrunRequest;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        prost::Message::encode(&item, buf).map_err(|e| Status::internal(e.to_string()))
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining())))
    }
}

/// The log part of one encoded `TestrunEvent`, read in place.
#[derive(Debug, Default)]
struct LogWalk<'a> {
    first_line: u64,
    /// The `LogLines` message (field 4), if the event is one.
    body: Option<&'a [u8]>,
}

/// Reads a varint from the front of `buf`.
fn varint(buf: &mut &[u8]) -> anyhow::Result<u64> {
    prost::encoding::decode_varint(buf).map_err(|e| anyhow::anyhow!("bad varint: {e}"))
}

/// Splits the next field off `buf`: (field number, varint value, bytes).
fn field<'a>(buf: &mut &'a [u8]) -> anyhow::Result<(u64, u64, &'a [u8])> {
    let key = varint(buf)?;
    let (number, wire) = (key >> 3, key & 7);
    let take = |buf: &mut &'a [u8], n: usize| -> anyhow::Result<&'a [u8]> {
        if buf.len() < n {
            bail!("field {number} runs past the message");
        }
        let (head, tail) = buf.split_at(n);
        *buf = tail;
        Ok(head)
    };
    match wire {
        0 => Ok((number, varint(buf)?, &[])),
        1 => Ok((number, 0, take(buf, 8)?)),
        2 => {
            let len = varint(buf)? as usize;
            Ok((number, 0, take(buf, len)?))
        }
        5 => Ok((number, 0, take(buf, 4)?)),
        other => bail!("field {number} has wire type {other}"),
    }
}

impl<'a> LogWalk<'a> {
    /// Finds `TestrunEvent.log` (field 4) and its `first_line` (field 4).
    fn of(mut event: &'a [u8]) -> anyhow::Result<Self> {
        let mut walk = LogWalk::default();
        while !event.is_empty() {
            if let (4, _, body) = field(&mut event)? {
                walk.body = Some(body);
            }
        }
        if let Some(mut body) = walk.body {
            while !body.is_empty() {
                if let (4, value, _) = field(&mut body)? {
                    walk.first_line = value;
                }
            }
        }
        Ok(walk)
    }

    /// Calls `each` with every line (field 5) in order.
    fn lines(&self, mut each: impl FnMut(&[u8]) -> anyhow::Result<()>) -> anyhow::Result<()> {
        let mut body = self.body.unwrap_or_default();
        while !body.is_empty() {
            if let (5, _, line) = field(&mut body)? {
                each(line)?;
            }
        }
        Ok(())
    }
}

async fn watch_raw(channel: Channel, id: i64) -> anyhow::Result<tonic::codec::Streaming<Bytes>> {
    // Like the `testrunner` CLI: gzip if the coordinator offers it.
    let mut grpc = tonic::client::Grpc::new(channel)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    grpc.ready()
        .await
        .map_err(|e| anyhow::anyhow!("channel not ready: {e}"))?;
    let path = http::uri::PathAndQuery::from_static("/testrunner.v1.TestrunService/WatchTestrun");
    Ok(grpc
        .server_streaming(
            tonic::Request::new(WatchTestrunRequest {
                id,
                after: 0,
                from_end: false,
            }),
            path,
            RawCodec,
        )
        .await?
        .into_inner())
}

/// A runtime that may be dropped from async code (plain `Runtime`s panic).
struct BackgroundRuntime(Option<tokio::runtime::Runtime>);

impl std::ops::Deref for BackgroundRuntime {
    type Target = tokio::runtime::Runtime;

    fn deref(&self) -> &Self::Target {
        self.0.as_ref().expect("present until dropped")
    }
}

impl Drop for BackgroundRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// A runtime for the watchers whose threads run only on CPU time nothing
/// else on the machine wants.
fn low_priority_runtime() -> anyhow::Result<BackgroundRuntime> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-watcher")
        .on_thread_start(|| {
            // A policy belongs to the thread, not the process, so the
            // coordinator and runners this process spawns from its main
            // runtime keep normal priority. Best effort: without it the
            // watchers only compete harder.
            if !idle_policy() {
                let _ = rustix::process::setpriority_process(None, WATCHER_NICE);
            }
        })
        .enable_all()
        .build()
        .context("starting the watchers' runtime")?;
    Ok(BackgroundRuntime(Some(rt)))
}

fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 19 {
        return None;
    }
    b.iter().try_fold(0u64, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u64::from(c - b'0'))
    })
}

/// What one watcher saw.
#[derive(Debug)]
struct Seen {
    lines: u64,
    error: Option<String>,
}

/// Follows the Testrun to its end, checking line k (0-based) is `k + 1`,
/// and that each batch starts right after the previous one.
async fn watcher(url: String, id: i64, ready: Arc<AtomicUsize>, gate: Arc<Semaphore>) -> Seen {
    let mut seen = Seen {
        lines: 0,
        error: None,
    };
    let result: anyhow::Result<()> = async {
        let permit = gate.acquire().await?;
        let mut stream = watch_raw(api::channel(&url).await?, id).await?;
        drop(permit);
        let mut first = true;
        while let Some(event) = stream.message().await? {
            if first {
                first = false;
                ready.fetch_add(1, Ordering::SeqCst);
            }
            let log = LogWalk::of(&event)?;
            if log.body.is_none() {
                continue;
            }
            if log.first_line != seen.lines {
                bail!(
                    "batch starts at line {} after {} lines ({})",
                    log.first_line,
                    seen.lines,
                    if log.first_line < seen.lines {
                        "duplicate"
                    } else {
                        "gap"
                    }
                );
            }
            log.lines(|line| {
                seen.lines += 1;
                if parse_u64(line) != Some(seen.lines) {
                    bail!(
                        "line {} reads {:?}",
                        seen.lines,
                        String::from_utf8_lossy(line)
                    );
                }
                Ok(())
            })?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        seen.error = Some(format!("{e:#}"));
    }
    seen
}

/// One ingestion run; returns (lines/s, seconds) from the test's timestamps.
async fn ingest(
    ctx: &Ctx,
    stack: &mut Stack,
    client: &mut api::Client,
    id: i64,
    name: &str,
    runner: &str,
) -> anyhow::Result<(f64, f64)> {
    let n = ctx.sizes.watch_lines;
    stack.runner(ctx, runner, 1)?;
    let limit = limit_for(n, Duration::from_millis(1), Duration::from_secs(60));
    api::wait_success(client, USER, id, limit).await?;
    let run = api::get(client, id).await?;
    let test = run
        .tests
        .iter()
        .find(|t| t.name == name)
        .context("the test")?;
    let started = api::ts_secs(test.started_at.as_ref()).context("started_at")?;
    let finished = api::ts_secs(test.finished_at.as_ref()).context("finished_at")?;
    if test.log_lines != n as u64 {
        bail!("{} lines stored, expected {n}", test.log_lines);
    }
    // The runner is idle now; stop it so the next run starts the same way.
    if let Some(mut r) = stack.runners.pop() {
        r.terminate(Duration::from_secs(10)).await;
    }
    let seconds = (finished - started).max(1e-6);
    Ok((n as f64 / seconds, seconds))
}

pub async fn measure(ctx: &Ctx, backend: Backend) -> anyhow::Result<Vec<Row>> {
    let mut stack = Stack::start(ctx, backend, "watchers", &[]).await?;
    let result = run(ctx, &mut stack).await;
    stack.shutdown(result).await
}

/// Rounds per backend; the round with the median ratio is reported (one
/// ingestion lasts a fraction of a second, so a single one is noisy).
const ROUNDS: usize = 5;

async fn run(ctx: &Ctx, stack: &mut Stack) -> anyhow::Result<Vec<Row>> {
    let (w, n) = (ctx.sizes.watchers, ctx.sizes.watch_lines);
    let mut client = api::client(&stack.coord.url()).await?;
    let mut rounds = Vec::with_capacity(ROUNDS);
    for i in 0..ROUNDS {
        rounds.push(round(ctx, stack, &mut client, i).await?);
    }
    let ratios: Vec<f64> = rounds.iter().map(Round::ratio).collect();
    let mut sorted: Vec<&Round> = rounds.iter().collect();
    sorted.sort_by(|a, b| a.ratio().total_cmp(&b.ratio()));
    let median = sorted.get(sorted.len() / 2).context("no round")?;
    let exact = rounds.iter().map(|r| r.exact).min().unwrap_or(0);
    let (rate_alone, rate_watched) = (median.rate_alone, median.rate_watched);
    let ratio = rate_watched / rate_alone;
    let details = json!({
        "watchers": w,
        "lines": n,
        "rounds": rounds.iter().map(Round::to_json).collect::<Vec<_>>(),
        "ratios": ratios,
        "reported": "the round with the median ratio; exactly-once is the worst round",
        "watcher_threads": "SCHED_IDLE (nice 19 where refused)",
        "baseline": "the same Testrun on the same coordinator, without watchers, just before",
    });
    let backend = stack.backend.name();
    Ok(vec![
        Row::new(
            NAME,
            backend,
            &format!("lines/s ingested with {w} watchers, `seq 1 {n}` (median of {ROUNDS})"),
        )
        .measured(rate_watched, "lines/s")
        .baseline(rate_alone, "lines/s")
        .target("drop < 20% (≥ 0.80×)", Verdict::of(ratio >= 1.0 - MAX_DROP))
        .details(details.clone()),
        Row::new(NAME, backend, "watchers with every line exactly once")
            .measured(exact as f64, "watchers")
            .baseline(w as f64, "watchers")
            .target(format!("all {w}"), Verdict::of(exact == w))
            .details(details),
    ])
}

/// What one round (ingestion without, then with, the watchers) saw.
#[derive(Debug)]
struct Round {
    rate_alone: f64,
    rate_watched: f64,
    secs_alone: f64,
    secs_watched: f64,
    /// Watchers that got every line exactly once.
    exact: usize,
    problems: Vec<String>,
    deliver_seconds: f64,
    cpu_alone: f64,
    cpu_watched: f64,
    watcher_cpu: f64,
}

impl Round {
    fn ratio(&self) -> f64 {
        self.rate_watched / self.rate_alone
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "ratio": self.ratio(),
            "rate_without_watchers": self.rate_alone,
            "rate_with_watchers": self.rate_watched,
            "ingest_seconds_without": self.secs_alone,
            "ingest_seconds_with": self.secs_watched,
            "watchers_exactly_once": self.exact,
            "watcher_problems": self.problems.iter().take(5).collect::<Vec<_>>(),
            "seconds_until_every_watcher_had_every_line": self.deliver_seconds,
            "coordinator_cpu_seconds_without": self.cpu_alone,
            "coordinator_cpu_seconds_with": self.cpu_watched,
            "watcher_process_cpu_seconds": self.watcher_cpu,
        })
    }
}

/// Ingestion without, then with, the watchers.
async fn round(
    ctx: &Ctx,
    stack: &mut Stack,
    client: &mut api::Client,
    i: usize,
) -> anyhow::Result<Round> {
    let (w, n) = (ctx.sizes.watchers, ctx.sizes.watch_lines);
    let script = format!("seq 1 {n}\n");
    let pid = stack.coord.pid();

    // Without watchers.
    let cpu0 = cpu_seconds(pid).unwrap_or(0.0);
    let alone = format!("alone-{i}.sh");
    let (id, _) = api::create(client, USER, vec![api::file(&alone, &script)]).await?;
    let (rate_alone, secs_alone) =
        ingest(ctx, stack, client, id, &alone, &format!("r-alone-{i}")).await?;
    let cpu_alone = cpu_seconds(pid).unwrap_or(0.0) - cpu0;

    // With W watchers, attached before the runner starts.
    let watched = format!("watched-{i}.sh");
    let (id, _) = api::create(client, USER, vec![api::file(&watched, &script)]).await?;
    let ready = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(50));
    let watchers_rt = low_priority_runtime()?;
    let tasks: Vec<_> = (0..w)
        .map(|_| {
            watchers_rt.spawn(watcher(
                stack.coord.url(),
                id,
                Arc::clone(&ready),
                Arc::clone(&gate),
            ))
        })
        .collect();
    let attach_limit = limit_for(w, Duration::from_millis(100), Duration::from_secs(30));
    let start = Instant::now();
    while ready.load(Ordering::SeqCst) < w {
        if start.elapsed() > attach_limit || tasks.iter().all(|t| t.is_finished()) {
            bail!(
                "{} of {w} watchers attached within {}s",
                ready.load(Ordering::SeqCst),
                attach_limit.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu0 = cpu_seconds(pid).unwrap_or(0.0);
    let me = std::process::id();
    let my_cpu0 = cpu_seconds(me).unwrap_or(0.0);
    let delivery_start = Instant::now();
    let (rate_watched, secs_watched) =
        ingest(ctx, stack, client, id, &watched, &format!("r-watched-{i}")).await?;
    let deliver_limit = limit_for(w * n, Duration::from_micros(20), Duration::from_secs(60));
    let seen = tokio::time::timeout(deliver_limit, futures::future::join_all(tasks))
        .await
        .with_context(|| {
            format!(
                "watchers still receiving after {}s",
                deliver_limit.as_secs()
            )
        })?;
    let deliver_seconds = delivery_start.elapsed().as_secs_f64();
    let cpu_watched = cpu_seconds(pid).unwrap_or(0.0) - cpu0;
    let my_cpu = cpu_seconds(me).unwrap_or(0.0) - my_cpu0;

    let mut exact = 0;
    let mut problems = Vec::new();
    for s in seen {
        match s {
            Ok(Seen { lines, error: None }) if lines == n as u64 => exact += 1,
            Ok(Seen { lines, error }) => problems.push(format!(
                "{lines} lines{}",
                error.map_or(String::new(), |e| format!(": {e}"))
            )),
            Err(e) => problems.push(format!("task: {e}")),
        }
    }
    Ok(Round {
        rate_alone,
        rate_watched,
        secs_alone,
        secs_watched,
        exact,
        problems,
        deliver_seconds,
        cpu_alone,
        cpu_watched,
        watcher_cpu: my_cpu,
    })
}
