//! What keeps a test from reaching anything beyond itself, and the runner
//! whole whatever a test does (see docs/design.md, "Tests are untrusted
//! code"):
//!
//! - `hardening`: the runner is non-dumpable and a child subreaper; its
//!   token comes from a file and is wiped from its environment block.
//! - `users`: a uid per slot where the runner may switch users.
//! - `cgroups`: a cgroup per test where the runner may create them, for
//!   exact membership, `cgroup.kill` and memory and pids limits.
//! - `procs`: finding and killing leftovers without cgroups, and reaping
//!   the orphans a subreaper inherits.
//! - `limits`: rlimits where no cgroup bounds a test, and the work
//!   directory's size.
//!
//! `exec` sees only `Isolation::sandbox` and the `Sandbox` it returns.

pub mod cgroups;
pub mod hardening;
pub mod limits;
pub mod procs;
pub mod users;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::process::{Child, Command};

use self::cgroups::{Cgroups, Limits, TestGroups};
use self::limits::Rlimits;
use self::users::{TestUser, UidPool};
use testrunner_content::size::format_size;

/// The runner's isolation settings (from its flags).
#[derive(Debug, Clone)]
pub struct IsolationSettings {
    pub test_user: TestUser,
    pub uid_base: u32,
    pub memory: Option<u64>,
    pub pids: Option<u64>,
    pub max_workdir_bytes: Option<u64>,
    /// Whether to use cgroups where writable (`--test-cgroups auto`).
    pub cgroups: bool,
}

/// Environment variable marking a test's processes, used to find them in
/// `/proc` only where neither a cgroup nor a uid of its own does.
const MARKER: &str = "TESTRUNNER_SANDBOX";
/// Orphan zombies are looked for after every this many tests (and after
/// every test that left processes).
const REAP_EVERY: u64 = 32;

/// How this runner isolates its tests, decided once at start.
#[derive(Debug)]
pub struct Isolation {
    uids: Option<UidPool>,
    cgroups: Cgroups,
    limits: Limits,
    max_workdir_bytes: Option<u64>,
    /// Pids of the tests' own processes that tokio has not reaped yet:
    /// never reaped as orphans.
    roots: Mutex<HashSet<i32>>,
    next: AtomicU64,
    finished: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Isolation {
    /// Decides how tests are isolated; `work_root` holds their work
    /// directories (made traversable, not listable, for per-slot users).
    pub fn new(settings: &IsolationSettings, work_root: &Path) -> anyhow::Result<Self> {
        use std::os::unix::fs::PermissionsExt as _;
        let uids = users::resolve(settings.test_user, settings.uid_base)?.map(UidPool::new);
        if uids.is_some() {
            std::fs::set_permissions(work_root, std::fs::Permissions::from_mode(0o711))
                .map_err(|e| anyhow::anyhow!("{}: {e}", work_root.display()))?;
        }
        let limits = Limits {
            memory: settings.memory,
            pids: settings.pids,
        };
        let cgroups = if settings.cgroups {
            // The controllers are wanted even with no limit of our own: a
            // Testrun may ask for one (`Assign.memory_bytes` / `pids`).
            Cgroups::detect(Limits {
                memory: Some(limits.memory.unwrap_or(u64::MAX)),
                pids: Some(limits.pids.unwrap_or(u64::MAX)),
            })
        } else {
            Cgroups::default()
        };
        let (memory_by_group, pids_by_group) = cgroups.bounds();
        tracing::info!(
            test_users = %uids.as_ref().map_or("the runner's user".to_owned(), |_| format!("a uid per slot from {}", settings.uid_base)),
            cgroups = %cgroups.describe(),
            leftovers = if cgroups.tracks_membership() { "cgroup" } else if uids.is_some() { "uid" } else { "/proc scan" },
            // Without a limit of our own, a Testrun's applies (and how).
            memory = %settings.memory.map_or("per-Testrun".to_owned(), format_size) + if memory_by_group { " by cgroup" } else { " by RLIMIT_AS" },
            pids = %settings.pids.map_or("per-Testrun".to_owned(), |n| n.to_string()) + if pids_by_group { " by cgroup" } else { " by RLIMIT_NPROC" },
            "test isolation"
        );
        Ok(Self {
            uids,
            cgroups,
            limits,
            max_workdir_bytes: settings.max_workdir_bytes,
            roots: Mutex::new(HashSet::new()),
            next: AtomicU64::new(0),
            finished: AtomicU64::new(0),
        })
    }

    /// Whether tests run as uids of their own.
    pub fn per_slot_users(&self) -> bool {
        self.uids.is_some()
    }

    /// A sandbox for one test: its uid, its cgroups and its limits, the
    /// lower of the runner's and those its Testrun `asked` for.
    pub fn sandbox(self: &Arc<Self>, asked: Limits) -> Result<Sandbox, String> {
        let (memory_by_group, pids_by_group) = self.cgroups.bounds();
        let limits = self.limits.lower(asked);
        let groups = if self.cgroups.tracks_membership() {
            Some(
                self.cgroups
                    .create(limits)
                    .map_err(|e| format!("cannot create the test's cgroup: {e}"))?,
            )
        } else {
            None
        };
        let uid = self.uids.as_ref().map(UidPool::take);
        Ok(Sandbox {
            isolation: Arc::clone(self),
            uid,
            groups,
            rlimits: Rlimits {
                address_space: limits.memory.filter(|_| !memory_by_group),
                processes: limits.pids.filter(|_| !pids_by_group),
            },
            limits,
            marker: format!(
                "{MARKER}={}-{}",
                std::process::id(),
                self.next.fetch_add(1, Ordering::Relaxed)
            ),
            root: None,
            done: false,
        })
    }

    fn is_root(&self, pid: i32) -> bool {
        lock(&self.roots).contains(&pid)
    }
}

/// One test's isolation, from before its process starts until every
/// process it started is gone.
#[derive(Debug)]
pub struct Sandbox {
    isolation: Arc<Isolation>,
    uid: Option<u32>,
    groups: Option<TestGroups>,
    rlimits: Rlimits,
    /// The limits this test runs under.
    limits: Limits,
    marker: String,
    root: Option<i32>,
    done: bool,
}

/// What `Sandbox::finish` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cleanup {
    /// Processes still running after the test's own process ended, killed.
    pub leftovers: usize,
    /// `killed: out of memory (limit 2 GiB)` when the OOM killer struck.
    pub out_of_memory: Option<String>,
}

impl Sandbox {
    /// The uid the test runs as, if not the runner's.
    pub fn uid(&self) -> Option<u32> {
        self.uid
    }

    /// Gives the test's work directory and file to its uid.
    pub fn own(&self, dir: &Path, file: &Path) -> std::io::Result<()> {
        if let Some(uid) = self.uid {
            std::os::unix::fs::chown(dir, Some(uid), Some(uid))?;
            std::os::unix::fs::chown(file, Some(uid), Some(uid))?;
        }
        Ok(())
    }

    /// Gives the test's work directory alone to its uid (a workspace test
    /// runs from its copy, with no file of its own).
    pub fn own_dir(&self, dir: &Path) -> std::io::Result<()> {
        if let Some(uid) = self.uid {
            std::os::unix::fs::chown(dir, Some(uid), Some(uid))?;
        }
        Ok(())
    }

    /// Makes `cmd` start the test inside the sandbox: as its uid, in its
    /// cgroups, under its rlimits.
    #[allow(unsafe_code)]
    pub fn apply(&self, cmd: &mut Command) {
        if let Some(uid) = self.uid {
            // std drops supplementary groups too (setgroups(0)) when
            // switching from root.
            cmd.uid(uid).gid(uid);
        }
        if self.groups.is_none() && self.uid.is_none() {
            let (name, value) = self.marker.split_once('=').unwrap_or_default();
            cmd.env(name, value);
        }
        let fds = self
            .groups
            .as_ref()
            .map(TestGroups::join_fds)
            .unwrap_or_default();
        let rlimits = self.rlimits;
        if fds.is_empty() && rlimits.address_space.is_none() && rlimits.processes.is_none() {
            return;
        }
        // SAFETY: the closure runs in the forked child before `exec` and
        // only makes async-signal-safe calls (write, setrlimit) on data
        // prepared before the fork; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                for fd in &fds {
                    // "0": the writing process itself joins the group.
                    if nix::libc::write(*fd, c"0".as_ptr().cast(), 1) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                rlimits.apply()
            });
        }
    }

    /// Starts `cmd`; its pid is recorded before any orphan reaping can
    /// see it.
    pub fn spawn(&mut self, cmd: &mut Command) -> std::io::Result<Child> {
        let mut roots = lock(&self.isolation.roots);
        let child = cmd.spawn()?;
        if let Some(pid) = child.id() {
            roots.insert(pid as i32);
            self.root = Some(pid as i32);
        }
        Ok(child)
    }

    /// Resolves with a message when the test breaks a limit that is only
    /// watched, not enforced by the kernel: the work directory's size.
    pub fn exceeded(&self, work_dir: &Path) -> impl Future<Output = String> + use<> {
        limits::workdir_exceeded(PathBuf::from(work_dir), self.isolation.max_workdir_bytes)
    }

    /// Once the test's own process has been waited for: kills and reaps
    /// everything it left running, and frees its uid and cgroups.
    pub async fn finish(mut self) -> Cleanup {
        self.done = true;
        let isolation = Arc::clone(&self.isolation);
        if let Some(root) = self.root.take() {
            lock(&isolation.roots).remove(&root);
        }
        let is_root = |pid| isolation.is_root(pid);
        let (leftovers, all_gone) = if let Some(groups) = &self.groups
            && groups.members().is_empty()
        {
            // The usual case: the test left nothing running.
            (0, true)
        } else if let Some(groups) = &self.groups {
            let seen = groups
                .members()
                .into_iter()
                .filter(|pid| !procs::dying(*pid))
                .count();
            groups.kill_all();
            let (killed, gone) = procs::kill_until_gone(|| groups.members(), is_root).await;
            (seen.max(killed), gone)
        } else {
            // As a subreaper the runner inherits every orphan below it, so
            // whatever a test started stays among the runner's descendants
            // (and another runner's tests, even under the same uid, never
            // are).
            let me = std::process::id() as i32;
            let uid = self.uid;
            let marker = self.marker.clone();
            procs::kill_until_gone(
                || {
                    procs::subtree(me)
                        .iter()
                        .filter(|p| !p.zombie)
                        .filter(|p| match uid {
                            Some(uid) => p.uid == uid,
                            None => procs::has_marker(p.pid, &marker),
                        })
                        .map(|p| p.pid)
                        .collect()
                },
                is_root,
            )
            .await
        };
        let out_of_memory = self
            .groups
            .as_ref()
            .filter(|g| g.oom_killed())
            .and(self.limits.memory)
            .map(|m| format!("killed: out of memory (limit {})", format_size(m)));
        if let Some(groups) = self.groups.take() {
            groups.remove().await;
        }
        if let (Some(uid), Some(pool)) = (self.uid.take(), &isolation.uids) {
            if all_gone {
                pool.give_back(uid);
            } else {
                tracing::warn!(
                    uid,
                    "a test's processes survived every kill; its uid is not reused"
                );
            }
        }
        // A killed process leaves its group before it turns zombie: reap
        // those that were not zombies yet at the last scan a moment later.
        // Orphans that exited on their own while their test ran are
        // zombies too: reaped now and then, a scan of /proc being too
        // costly for every short test.
        let finished = isolation.finished.fetch_add(1, Ordering::Relaxed);
        if leftovers > 0 || finished.is_multiple_of(REAP_EVERY) {
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                procs::reap_orphans(&|pid| isolation.is_root(pid));
            });
        }
        Cleanup {
            leftovers,
            out_of_memory,
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Not finished: the test never started, or its runner task ended
        // early. Kill what may run; keep the uid out of use if anything
        // started.
        if let Some(root) = self.root {
            lock(&self.isolation.roots).remove(&root);
        }
        if let Some(groups) = &self.groups {
            groups.kill_all();
        }
        if let (Some(uid), None, Some(pool)) = (self.uid, self.root, &self.isolation.uids) {
            pool.give_back(uid);
        }
    }
}
