//! Sizes as people write them, and the limits that need no cgroup: rlimits
//! set in the test's process before `exec`, and a watch on the size of its
//! work directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

const UNITS: &[(&str, u64)] = &[
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("K", 1 << 10),
    ("M", 1 << 20),
    ("G", 1 << 30),
    ("T", 1 << 40),
    ("KB", 1000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
    ("B", 1),
];

/// Parses `2GiB`, `512M`, `1 GB` or a plain byte count (flag values).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?}: expected a size such as 2GiB, 512MiB or 1000000"))?;
    let unit = unit.trim();
    let factor = if unit.is_empty() {
        1
    } else {
        UNITS
            .iter()
            .find(|(u, _)| u.eq_ignore_ascii_case(unit))
            .map(|(_, f)| *f)
            .ok_or_else(|| format!("{text:?}: unknown unit {unit:?} (use KiB, MiB, GiB, ...)"))?
    };
    n.checked_mul(factor)
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{text:?}: must be more than 0 and fit in 64 bits"))
}

/// `2 GiB`, `512 MiB`, or `1234 bytes`.
pub fn format_size(bytes: u64) -> String {
    for (unit, factor) in [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ] {
        if bytes >= factor && bytes.is_multiple_of(factor) {
            return format!("{} {unit}", bytes / factor);
        }
    }
    format!("{bytes} bytes")
}

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
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("512 M").unwrap(), 512 << 20);
        assert_eq!(parse_size("1GB").unwrap(), 1_000_000_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("0").is_err());
        assert!(
            parse_size("2 parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn sizes_print_in_the_largest_exact_unit() {
        assert_eq!(format_size(2 << 30), "2 GiB");
        assert_eq!(format_size(1536 << 20), "1536 MiB");
        assert_eq!(format_size(1000), "1000 bytes");
    }

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
