//! Workspaces on the runner (protocol rule 12): the tree a Testrun's tests
//! run in, fetched into an on-disk cache, prepared once per (workspace,
//! set-up, env), and copied privately for every test.
//!
//! - `cache`: blobs on disk by digest, LRU-bounded by `--cache-bytes`.
//! - `fetch`: what the cache lacks, from the coordinator's ContentService.
//! - `materialise`: a tree out of the cache into a directory, verified.
//! - `setup`: the Testrun's set-up command in the prepared directory.
//! - `copies`: each test's private copy of a prepared directory.
//! - `env`: the Testrun's variables, never the runner's own.
//!
//! [`Workspaces::prepare`] does the slow part (fetch, materialise, set-up)
//! on the [`Preparer`]'s own thread, so the session loop, its heartbeats
//! and its tests' output never wait on it; the loop learns the outcome as
//! an event.

pub mod cache;
pub mod command;
pub mod copies;
pub mod digest;
pub mod env;
pub mod fetch;
pub mod materialise;
pub mod setup;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use testrunner_proto::v1 as pb;

use self::cache::Cache;
use self::copies::Base;
use self::digest::{BlobId, Hasher};
use self::fetch::{Fetched, Fetcher};
use crate::isolation::Isolation;
use crate::isolation::cgroups::Limits;

/// The set-up timeout when an `Assign` sets none.
pub const DEFAULT_SETUP_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Prepared directories kept while no held Testrun uses them.
const MAX_IDLE_BASES: usize = 4;

/// What a Testrun's tests run in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub workspace: BlobId,
    pub setup: String,
    pub env: BTreeMap<String, String>,
    pub setup_timeout: Duration,
}

impl Spec {
    /// The spec of an `Assign` with a workspace; an error for a malformed
    /// digest.
    pub fn of(assign: &pb::Assign) -> Option<Result<Self, String>> {
        let digest = assign.workspace.as_ref()?;
        Some(BlobId::of(digest).map(|workspace| {
            Self {
                workspace,
                setup: assign.setup.clone(),
                env: assign.env.clone().into_iter().collect(),
                setup_timeout: assign
                    .setup_timeout
                    .and_then(|d| Duration::try_from(d).ok())
                    .filter(|d| !d.is_zero())
                    .unwrap_or(DEFAULT_SETUP_TIMEOUT),
            }
        }))
    }

    /// (workspace, set-up, env) as one name: what a prepared directory is
    /// reused for.
    pub fn key(&self) -> String {
        let mut h = Hasher::default();
        for part in [
            self.workspace.hash.as_str(),
            &self.workspace.size.to_string(),
            &self.setup,
        ] {
            h.update(part.as_bytes());
            h.update(b"\0");
        }
        for (k, v) in &self.env {
            h.update(k.as_bytes());
            h.update(b"=");
            h.update(v.as_bytes());
            h.update(b"\0");
        }
        h.finish().hash[..32].to_owned()
    }
}

/// A prepared workspace as a test sees it (compared by key).
pub type Prepared = Arc<Base>;

/// How a preparation ended, for `SetupFinished`.
#[derive(Debug, Clone)]
pub struct Preparation {
    pub base: Option<Prepared>,
    pub report: pb::SetupFinished,
}

/// The runner's workspaces: the cache, the prepared directories, and
/// which preparation runs.
#[derive(Debug)]
pub struct Workspaces {
    cache: Arc<Cache>,
    fetcher: Fetcher,
    /// `bases/`, `copies/`, `homes/` below it.
    root: PathBuf,
    test_path: String,
    kill_grace: Duration,
    bases: Mutex<Vec<(Instant, Prepared)>>,
    /// One preparation per key at a time.
    busy: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    seq: AtomicU64,
    /// Set-ups run in a sandbox of their own: as a test uid (with
    /// per-slot users), like any untrusted code.
    isolation: Option<Arc<Isolation>>,
}

impl Workspaces {
    /// Workspaces prepared under `root` (emptied first: prepared
    /// directories are not kept across runner restarts; cached blobs are).
    pub fn new(
        cache: Arc<Cache>,
        fetcher: Fetcher,
        root: &Path,
        test_path: String,
        kill_grace: Duration,
        isolation: Option<Arc<Isolation>>,
    ) -> std::io::Result<Self> {
        if root.exists() {
            copies::delete(root);
        }
        for sub in ["bases", "copies", "homes"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        Ok(Self {
            cache,
            fetcher,
            root: root.to_owned(),
            test_path,
            kill_grace,
            bases: Mutex::new(Vec::new()),
            busy: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
            isolation,
        })
    }

    pub fn cache(&self) -> &Arc<Cache> {
        &self.cache
    }

    /// The prepared directory for `spec`: reused, or fetched, materialised
    /// and set up now.
    pub async fn prepare(&self, testrun_id: i64, spec: &Spec) -> Preparation {
        let started = Instant::now();
        let key = spec.key();
        let gate = Arc::clone(lock(&self.busy).entry(key.clone()).or_default());
        let _turn = gate.lock().await;
        let mut report = pb::SetupFinished {
            testrun_id,
            ..Default::default()
        };
        if let Some(base) = self.find(&key) {
            report.ok = true;
            report.reused = true;
            report.duration = started.elapsed().try_into().ok();
            return Preparation {
                base: Some(base),
                report,
            };
        }
        let outcome = self.build(&key, spec, &mut report).await;
        report.duration = started.elapsed().try_into().ok();
        match outcome {
            Ok(base) => {
                report.ok = true;
                Preparation {
                    base: Some(base),
                    report,
                }
            }
            Err(error) => {
                tracing::warn!(testrun_id, %error, "workspace preparation failed");
                report.ok = false;
                report.error = error;
                Preparation { base: None, report }
            }
        }
    }

    fn find(&self, key: &str) -> Option<Prepared> {
        let mut bases = lock(&self.bases);
        let (used, base) = bases.iter_mut().find(|(_, b)| b.key == key)?;
        *used = Instant::now();
        Some(Arc::clone(base))
    }

    async fn build(
        &self,
        key: &str,
        spec: &Spec,
        report: &mut pb::SetupFinished,
    ) -> Result<Prepared, String> {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        // Built where it stays: what the set-up writes may name its own
        // directory (`pip install -e .` records it), so it is never moved.
        let staging = self.root.join("bases").join(format!("{key}.{n}"));
        let result = self.build_in(&staging, key, spec, report).await;
        if result.is_err() {
            let staging = staging.clone();
            let _ = tokio::task::spawn_blocking(move || copies::delete(&staging)).await;
        }
        result
    }

    async fn build_in(
        &self,
        staging: &Path,
        key: &str,
        spec: &Spec,
        report: &mut pb::SetupFinished,
    ) -> Result<Prepared, String> {
        let mut fetched = Fetched::default();
        let tree = self.fetcher.tree(&spec.workspace, &mut fetched).await?;
        let ids: Vec<BlobId> = tree.files.iter().map(|f| f.blob.clone()).collect();
        let _pin = self.cache.pin(ids.iter().cloned());
        fetched = add(fetched, self.fetcher.fetch_missing(&ids).await?);
        let files = tree.files.len();
        tracing::info!(workspace = %spec.workspace, files, fetched_blobs = fetched.blobs, fetched_bytes = fetched.bytes, "workspace fetched");

        // Out of the cache into the staging directory, verified; what no
        // longer verifies is fetched again, once.
        let cache = Arc::clone(&self.cache);
        let dest = staging.to_owned();
        let tree = Arc::new(tree);
        let t = Arc::clone(&tree);
        let corrupted: Vec<usize> = blocking(move || {
            materialise::dirs(&t, &dest)?;
            let all: Vec<_> = t.files.iter().collect();
            let bad = materialise::files(&cache, &all, &dest)?;
            Ok(bad
                .iter()
                .map(|f| {
                    t.files
                        .iter()
                        .position(|g| std::ptr::eq(g, *f))
                        .unwrap_or(0)
                })
                .collect())
        })
        .await
        .map_err(|e| digest::describe(&e, "writing the workspace"))?;
        if !corrupted.is_empty() {
            let ids: Vec<BlobId> = corrupted
                .iter()
                .map(|i| tree.files[*i].blob.clone())
                .collect();
            self.fetcher.fetch_missing(&ids).await?;
            let cache = Arc::clone(&self.cache);
            let dest = staging.to_owned();
            let t = Arc::clone(&tree);
            let still = blocking(move || {
                let again: Vec<_> = corrupted.iter().map(|i| &t.files[*i]).collect();
                Ok(materialise::files(&cache, &again, &dest)?.len())
            })
            .await
            .map_err(|e| digest::describe(&e, "writing the workspace"))?;
            if still > 0 {
                return Err(format!(
                    "{still} files of the workspace do not verify after fetching them again"
                ));
            }
        }

        if !spec.setup.trim().is_empty() {
            let home = self.root.join("homes").join(format!(
                "{key}.{}",
                self.seq.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&home)
                .map_err(|e| digest::describe(&e, "creating the set-up's home"))?;
            let (vars, skipped) = env::usable(&spec.env);
            // A test uid runs the set-up (the lowest free one: a slot's);
            // the tree and its home are that uid's while it runs.
            let mut sandbox = match &self.isolation {
                Some(isolation) => Some(
                    isolation
                        .sandbox(Limits::default())
                        .map_err(|e| format!("set-up: {e}"))?,
                ),
                None => None,
            };
            if let Some(sandbox) = &sandbox {
                let (tree, home) = (staging.to_owned(), home.clone());
                let owned = sandbox.uid();
                blocking(move || match owned {
                    Some(uid) => {
                        crate::isolation::users::chown_tree(&tree, uid, uid)?;
                        crate::isolation::users::chown_tree(&home, uid, uid)
                    }
                    None => Ok(()),
                })
                .await
                .map_err(|e| digest::describe(&e, "giving the workspace to the set-up's user"))?;
            }
            let run = setup::run(
                &spec.setup,
                staging,
                &setup::SetupEnv {
                    path: &self.test_path,
                    home: &home,
                    vars: &vars,
                    kill_grace: self.kill_grace,
                },
                spec.setup_timeout,
                sandbox.as_mut(),
            )
            .await;
            let as_test_user = sandbox.as_ref().and_then(|s| s.uid()).is_some();
            if let Some(sandbox) = sandbox {
                let cleanup = sandbox.finish().await;
                if cleanup.leftovers > 0 {
                    tracing::info!(
                        leftovers = cleanup.leftovers,
                        "killed what the set-up left running"
                    );
                }
            }
            if as_test_user {
                // Back to the runner's user, readable by every slot's uid
                // and writable by none: a test that later gets the set-up's
                // uid cannot change what the others import.
                let tree = staging.to_owned();
                blocking(move || crate::isolation::users::hand_back_tree(&tree))
                    .await
                    .map_err(|e| digest::describe(&e, "handing the set-up's products back"))?;
            }
            let _ = tokio::task::spawn_blocking(move || copies::delete(&home)).await;
            let mut output = String::new();
            for note in skipped {
                output.push_str(&format!("[testrunner] {note}\n"));
            }
            output.push_str(&run.output);
            report.output = output;
            report.exit_code = run.exit_code;
            if !run.ok {
                return Err(run.error);
            }
        }

        let copies = self
            .root
            .join("copies")
            .join(staging.file_name().unwrap_or_default());
        let base = Arc::new(
            Base::new(key.to_owned(), staging.to_owned(), copies)
                .map_err(|e| digest::describe(&e, "preparing copies"))?,
        );
        self.keep(Arc::clone(&base));
        Ok(base)
    }

    /// Keeps a new base, dropping the least recently used ones that no
    /// test holds beyond [`MAX_IDLE_BASES`].
    fn keep(&self, base: Prepared) {
        let mut bases = lock(&self.bases);
        bases.push((Instant::now(), base));
        bases.sort_by_key(|(used, _)| std::cmp::Reverse(*used));
        let mut idle = 0;
        let mut gone = Vec::new();
        bases.retain(|(_, b)| {
            // Held by a Testrun's state or a running test: keep.
            if Arc::strong_count(b) > 1 {
                return true;
            }
            idle += 1;
            if idle <= MAX_IDLE_BASES {
                return true;
            }
            gone.push(Arc::clone(b));
            false
        });
        drop(bases);
        for base in gone {
            base.clear();
            let dir = base.dir.clone();
            std::thread::spawn(move || copies::delete(&dir));
        }
    }
}

fn add(a: Fetched, b: Fetched) -> Fetched {
    Fetched {
        blobs: a.blobs + b.blobs,
        bytes: a.bytes + b.bytes,
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A thread of its own with its own runtime, where preparations run: their
/// file work (hashing, copying, renaming) never holds up the session loop
/// on the runner's one thread.
#[derive(Debug, Clone)]
pub struct Preparer {
    handle: tokio::runtime::Handle,
}

impl Preparer {
    pub fn start() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("workspaces".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
        Ok(Self { handle })
    }

    /// Runs `work` on the preparer's thread.
    pub fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        self.handle.spawn(work);
    }
}
