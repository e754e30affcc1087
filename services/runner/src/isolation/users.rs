//! Which user a test runs as: the runner's own, or one unprivileged uid
//! per slot, so that a test can neither read the runner's files nor the
//! work directory of a test running beside it.

use std::sync::Mutex;

use clap::ValueEnum;

/// `--test-user`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TestUser {
    /// A uid per slot when the runner may switch users (it is root or has
    /// CAP_SETUID, CAP_SETGID and CAP_CHOWN), else the runner's user.
    Auto,
    /// A uid per slot (`--test-uid-base` + slot); refused at start when
    /// the runner may not switch users.
    PerSlot,
    /// The runner's own user: tests can read whatever the runner's user
    /// can (the behaviour before per-slot users).
    Runner,
}

/// Capabilities needed to run tests as other users, by bit number.
const CAP_CHOWN: u32 = 0;
const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;

/// Whether this process may switch to other uids and give them files.
pub fn may_switch_users() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    [CAP_CHOWN, CAP_SETGID, CAP_SETUID]
        .iter()
        .all(|bit| effective & (1 << bit) != 0)
}

/// Resolves `--test-user`: `Some(base uid)` when tests get a uid per slot.
pub fn resolve(mode: TestUser, base: u32) -> anyhow::Result<Option<u32>> {
    let may = may_switch_users();
    match mode {
        TestUser::Runner => Ok(None),
        TestUser::Auto => Ok(may.then_some(base)),
        TestUser::PerSlot => {
            anyhow::ensure!(
                may,
                "--test-user per-slot: the runner is not root and lacks CAP_SETUID, \
                 CAP_SETGID or CAP_CHOWN; use --test-user runner"
            );
            Ok(Some(base))
        }
    }
}

/// Uids handed to running tests, one per running test: the lowest free
/// slot index is taken, so a runner with N slots uses base..base+N.
#[derive(Debug)]
pub struct UidPool {
    base: u32,
    taken: Mutex<Vec<bool>>,
}

impl UidPool {
    pub fn new(base: u32) -> Self {
        Self {
            base,
            taken: Mutex::new(Vec::new()),
        }
    }

    /// A free uid (also used as the gid).
    pub fn take(&self) -> u32 {
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        let index = match taken.iter().position(|t| !t) {
            Some(i) => i,
            None => {
                taken.push(false);
                taken.len() - 1
            }
        };
        taken[index] = true;
        self.base + index as u32
    }

    /// Gives `uid` back: only once none of its processes is left.
    pub fn give_back(&self, uid: u32) {
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = taken.get_mut((uid - self.base) as usize) {
            *t = false;
        }
    }
}

/// Gives every entry of `dir` (symbolic links themselves, never what they
/// lead to) to `uid`:`gid`.
pub fn chown_tree(dir: &std::path::Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
    if std::fs::symlink_metadata(dir)?.is_dir() {
        for entry in std::fs::read_dir(dir)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Takes a tree a set-up's uid made back for the runner's user, and lets
/// every test uid read it (and enter its directories, and run what its
/// maker could run): no test uid can then change it, and every slot's can
/// use it.
pub fn hand_back_tree(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let (uid, gid) = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    let meta = std::fs::symlink_metadata(dir)?;
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = meta.permissions().mode() & 0o7777 & !0o7000;
    let open = if meta.is_dir() || mode & 0o100 != 0 {
        0o555
    } else {
        0o444
    };
    // No other bits widened: what the set-up kept private from others
    // becomes readable, never writable.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode((mode & !0o022) | open))?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(dir)? {
            hand_back_tree(&entry?.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_tests_get_distinct_uids_and_freed_ones_are_reused() {
        let pool = UidPool::new(100_000);
        let (a, b) = (pool.take(), pool.take());
        assert_eq!((a, b), (100_000, 100_001));
        pool.give_back(a);
        assert_eq!(pool.take(), 100_000);
        assert_eq!(pool.take(), 100_002);
    }

    #[test]
    fn the_runner_mode_never_switches_users() {
        assert_eq!(resolve(TestUser::Runner, 5).unwrap(), None);
    }
}
