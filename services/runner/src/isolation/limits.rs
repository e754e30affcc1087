//! The limits that need no cgroup: rlimits set in the test's process
//! before `exec`, and a watch on the size of its work directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use testrunner_content::size::format_size;

/// rlimits for a test's process, applied between `fork` and `exec`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rlimits {
    /// RLIMIT_AS: the nearest to a memory limit without a cgroup (it
    /// bounds address space, so a test fails to allocate instead of being
    /// OOM-killed, and counts per process, not for the whole test).
    pub address_space: Option<u64>,
    /// RLIMIT_NPROC: counts every process of the test's real uid, so it
    /// bounds one test exactly with per-slot users; with the runner's user
    /// it counts the runner's other processes too, and root ignores it.
    pub processes: Option<u64>,
}

impl Rlimits {
    /// Sets the limits on the calling process. Async-signal-safe: runs in
    /// the forked child.
    pub fn apply(&self) -> std::io::Result<()> {
        use nix::sys::resource::{Resource, setrlimit};
        for (resource, value) in [
            (Resource::RLIMIT_AS, self.address_space),
            (Resource::RLIMIT_NPROC, self.processes),
        ] {
            if let Some(v) = value {
                setrlimit(resource, v, v)?;
            }
        }
        Ok(())
    }
}

/// How often a work directory's size is checked.
const DISK_CHECK: Duration = Duration::from_millis(200);
/// Most entries counted in one check: a test making more is over any
/// sensible size anyway and is stopped for that.
const MAX_ENTRIES: u64 = 1_000_000;

/// Resolves with an error message once `dir` holds more than `limit`
/// bytes (or `MAX_ENTRIES` entries); never when `limit` is `None`.
pub async fn workdir_exceeded(dir: PathBuf, limit: Option<u64>) -> String {
    let Some(limit) = limit else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(DISK_CHECK).await;
        let d = dir.clone();
        let (bytes, entries) = tokio::task::spawn_blocking(move || usage(&d))
            .await
            .unwrap_or((0, 0));
        if bytes > limit || entries > MAX_ENTRIES {
            return format!(
                "stopped: the work directory grew past --max-workdir-bytes ({}; it held {} in {entries} entries)",
                format_size(limit),
                format_size(bytes)
            );
        }
    }
}

/// Bytes allocated on disk (sparse files count what they use) and entries
/// under `dir`, not following symbolic links.
fn usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt as _;
    let mut bytes = 0;
    let mut entries = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(list) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in list.flatten() {
            entries += 1;
            if entries > MAX_ENTRIES {
                return (bytes, entries);
            }
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            bytes += meta.blocks() * 512;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    (bytes, entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_what_a_directory_holds() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![1u8; 64 << 10]).unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/b"), vec![1u8; 64 << 10]).unwrap();
        let (bytes, entries) = usage(dir.path());
        assert!(bytes >= 128 << 10, "{bytes}");
        assert_eq!(entries, 3);
    }
}
