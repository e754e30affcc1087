//! Control groups per test, where the runner may create them.
//!
//! - cgroup v2 (the unified hierarchy), when the runner's own cgroup is
//!   writable: one child per test. Membership is exact and inherited by
//!   every process the test starts, whatever session or parent it has,
//!   and `cgroup.kill` kills them all at once (no race with `fork`).
//!   Where the `memory` and `pids` controllers are delegated, `memory.max`
//!   and `pids.max` bound the test.
//! - cgroup v1 `memory` and `pids` hierarchies (hybrid hosts, such as this
//!   project's CI machine, where v2 is mounted without controllers), when
//!   writable: used for the limits the v2 group cannot set, and for
//!   membership when there is no v2 group.
//!
//! A test joins its groups between `fork` and `exec` (the child writes
//! `0`, meaning itself, to descriptors the runner opened), so it never
//! runs a single instruction of its own outside them.

use std::fs;
use std::io::Write as _;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Our own groups, found at start.
#[derive(Debug, Default)]
pub struct Cgroups {
    /// Our subtree in the unified hierarchy (`<own>/testrunner-<pid>`).
    v2: Option<PathBuf>,
    v2_memory: bool,
    v2_pids: bool,
    /// Our subtrees in the v1 `memory` and `pids` hierarchies.
    v1_memory: Option<PathBuf>,
    v1_pids: Option<PathBuf>,
    next: AtomicU64,
}

/// What the groups of one test bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory: Option<u64>,
    pub pids: Option<u64>,
}

impl Limits {
    /// The lower of each limit (`None` is no limit).
    pub fn lower(self, other: Limits) -> Limits {
        let min = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Limits {
            memory: min(self.memory, other.memory),
            pids: min(self.pids, other.pids),
        }
    }
}

/// A hierarchy's mount: (mount root within the hierarchy, mount point,
/// filesystem type, super options).
type Mount = (String, PathBuf, String, String);

fn mounts() -> Vec<Mount> {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            Some((
                (*left.get(3)?).to_owned(),
                PathBuf::from(*left.get(4)?),
                (*right.first()?).to_owned(),
                (*right.get(2)?).to_owned(),
            ))
        })
        .collect()
}

/// The directory of this process's cgroup in the hierarchy whose
/// `/proc/self/cgroup` line matches `controllers` ("" for v2).
fn own_dir(mounts: &[Mount], controller: Option<&str>) -> Option<PathBuf> {
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    let own = text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
        match controller {
            None => (list.is_empty()).then_some(path),
            Some(c) => list.split(',').any(|l| l == c).then_some(path),
        }
    })?;
    let (root, point, _, _) = mounts
        .iter()
        .find(|(_, _, fstype, options)| match controller {
            None => fstype == "cgroup2",
            Some(c) => fstype == "cgroup" && options.split(',').any(|o| o == c),
        })?;
    let relative = own.strip_prefix(root.as_str()).unwrap_or(own);
    Some(point.join(relative.trim_start_matches('/')))
}

/// Makes `<dir>/testrunner-<pid>`, after removing ones left by runners
/// that are gone; `None` when the hierarchy is not writable for us.
fn subtree(dir: &Path) -> Option<PathBuf> {
    remove_stale(dir);
    let mine = dir.join(format!("testrunner-{}", std::process::id()));
    match fs::create_dir(&mine) {
        Ok(()) => Some(mine),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Some(mine),
        Err(_) => None,
    }
}

fn remove_stale(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("testrunner-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            remove_tree(&entry.path());
        }
    }
}

/// Removes a cgroup directory and its child groups (files in a cgroup
/// directory are not removable and need not be).
fn remove_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&entry.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

fn write(path: &Path, value: &str) -> std::io::Result<()> {
    fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .write_all(value.as_bytes())
}

fn listed(file: &str, word: &str) -> bool {
    file.split_whitespace().any(|w| w == word)
}

impl Cgroups {
    /// Finds and prepares our groups; v1 hierarchies only for the limits
    /// asked for, or for membership when there is no v2 group.
    pub fn detect(limits: Limits) -> Self {
        let mounts = mounts();
        let mut groups = Self::default();
        if let Some(own) = own_dir(&mounts, None)
            && let Some(mine) = subtree(&own)
        {
            if mine.join("cgroup.kill").exists() {
                let want = |c: &str| {
                    let available = fs::read_to_string(own.join("cgroup.controllers"))
                        .is_ok_and(|t| listed(&t, c));
                    let mut enabled = fs::read_to_string(own.join("cgroup.subtree_control"))
                        .is_ok_and(|t| listed(&t, c));
                    if available && !enabled {
                        // Fails (EBUSY) when our own group holds processes
                        // and is not a root: then v1 or rlimits stand in.
                        enabled =
                            write(&own.join("cgroup.subtree_control"), &format!("+{c}")).is_ok();
                    }
                    enabled && write(&mine.join("cgroup.subtree_control"), &format!("+{c}")).is_ok()
                };
                groups.v2_memory = limits.memory.is_some() && want("memory");
                groups.v2_pids = limits.pids.is_some() && want("pids");
                groups.v2 = Some(mine);
            } else {
                // Before Linux 5.14: no cgroup.kill; v1 or /proc scans.
                let _ = fs::remove_dir(&mine);
            }
        }
        let v1 = |c: &str| own_dir(&mounts, Some(c)).and_then(|own| subtree(&own));
        if limits.memory.is_some() && !groups.v2_memory {
            groups.v1_memory = v1("memory");
        }
        if (limits.pids.is_some() && !groups.v2_pids)
            || (groups.v2.is_none() && groups.v1_memory.is_none())
        {
            groups.v1_pids = v1("pids");
        }
        groups
    }

    /// Whether any group tracks the tests' processes.
    pub fn tracks_membership(&self) -> bool {
        self.v2.is_some() || self.v1_memory.is_some() || self.v1_pids.is_some()
    }

    /// Whether memory / pids are bounded by a group (else by an rlimit).
    pub fn bounds(&self) -> (bool, bool) {
        (
            self.v2_memory || self.v1_memory.is_some(),
            self.v2_pids || self.v1_pids.is_some(),
        )
    }

    /// One line for the runner's start-up log.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(v2) = &self.v2 {
            parts.push(format!("v2 {} (cgroup.kill", v2.display()));
            if self.v2_memory {
                parts.push("memory.max".into());
            }
            if self.v2_pids {
                parts.push("pids.max".into());
            }
            let last = parts.pop().unwrap_or_default();
            parts.push(format!("{last})"));
        }
        if let Some(m) = &self.v1_memory {
            parts.push(format!("v1 memory {}", m.display()));
        }
        if let Some(p) = &self.v1_pids {
            parts.push(format!("v1 pids {}", p.display()));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }

    /// Groups for one test, with `limits` set.
    pub fn create(&self, limits: Limits) -> std::io::Result<TestGroups> {
        let name = format!("test-{}", self.next.fetch_add(1, Ordering::Relaxed));
        let mut groups = TestGroups::default();
        let result = (|| {
            if let Some(v2) = &self.v2 {
                let dir = v2.join(&name);
                fs::create_dir(&dir)?;
                groups.dirs.push(dir.clone());
                if let (true, Some(bytes)) = (self.v2_memory, limits.memory) {
                    write(&dir.join("memory.max"), &bytes.to_string())?;
                    // Swap would let a hog exceed the limit slowly instead
                    // of being stopped.
                    let _ = write(&dir.join("memory.swap.max"), "0");
                    groups.oom = Some(dir.join("memory.events"));
                }
                if let (true, Some(n)) = (self.v2_pids, limits.pids) {
                    write(&dir.join("pids.max"), &n.to_string())?;
                }
                groups.kill = Some(dir.join("cgroup.kill"));
            }
            if let (Some(root), Some(bytes)) = (&self.v1_memory, limits.memory) {
                let dir = root.join(&name);
                fs::create_dir(&dir)?;
                groups.dirs.push(dir.clone());
                write(&dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
                let _ = write(&dir.join("memory.memsw.limit_in_bytes"), &bytes.to_string());
                groups.oom = Some(dir.join("memory.oom_control"));
            }
            if let Some(root) = &self.v1_pids {
                let dir = root.join(&name);
                fs::create_dir(&dir)?;
                groups.dirs.push(dir.clone());
                if let Some(n) = limits.pids {
                    write(&dir.join("pids.max"), &n.to_string())?;
                }
            }
            for dir in &groups.dirs {
                groups.joins.push(
                    fs::OpenOptions::new()
                        .write(true)
                        .open(dir.join("cgroup.procs"))?,
                );
            }
            Ok(())
        })();
        result.map(|()| groups)
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for dir in [&self.v2, &self.v1_memory, &self.v1_pids]
            .into_iter()
            .flatten()
        {
            remove_tree(dir);
        }
    }
}

/// The groups of one test.
#[derive(Debug, Default)]
pub struct TestGroups {
    dirs: Vec<PathBuf>,
    /// `cgroup.procs` of each, opened by the runner (the kernel checks the
    /// opener's rights, so the test may join after switching users).
    joins: Vec<fs::File>,
    kill: Option<PathBuf>,
    /// `memory.events` (v2) or `memory.oom_control` (v1).
    oom: Option<PathBuf>,
}

impl TestGroups {
    /// Descriptors the test's process writes `0` to before `exec`.
    pub fn join_fds(&self) -> Vec<i32> {
        self.joins.iter().map(|f| f.as_raw_fd()).collect()
    }

    /// Pids in the groups (zombies are no longer members).
    pub fn members(&self) -> std::collections::HashSet<i32> {
        self.dirs
            .iter()
            .filter_map(|d| fs::read_to_string(d.join("cgroup.procs")).ok())
            .flat_map(|t| {
                t.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<i32>>()
            })
            .collect()
    }

    /// Kills every member at once (v2 `cgroup.kill`); v1 members are
    /// killed one by one by the caller.
    pub fn kill_all(&self) {
        if let Some(kill) = &self.kill
            && let Err(error) = write(kill, "1")
        {
            tracing::warn!(%error, path = %kill.display(), "cannot write cgroup.kill");
        }
    }

    /// Whether the kernel's OOM killer killed a member.
    pub fn oom_killed(&self) -> bool {
        self.oom
            .as_ref()
            .and_then(|p| fs::read_to_string(p).ok())
            .and_then(|t| {
                t.lines().find_map(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse::<u64>().ok())
                })
            })
            .is_some_and(|n| n > 0)
    }

    /// Removes the groups (they are empty once every member is reaped).
    pub async fn remove(self) {
        drop(self.joins);
        for dir in self.dirs.iter().rev() {
            let mut tries = 0;
            while let Err(error) = fs::remove_dir(dir) {
                tries += 1;
                if tries > 100 {
                    tracing::warn!(%error, dir = %dir.display(), "cannot remove a test's cgroup");
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
