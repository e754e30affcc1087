//! Processes as `/proc` shows them: finding a test's leftovers, killing
//! them until none is left, and reaping the orphans the runner inherits as
//! a child subreaper without taking the exit status of a test process
//! that tokio waits for.

use std::collections::HashSet;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// One process, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    /// Real uid: what `kill` permissions and RLIMIT_NPROC count.
    pub uid: u32,
    pub zombie: bool,
}

/// Every process visible in `/proc` (those that vanish meanwhile are
/// skipped).
pub fn scan() -> Vec<Proc> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(read)
        .collect()
}

/// Children of `pid`, from `/proc/<pid>/task/*/children` (each thread's
/// own); `None` when the kernel does not offer that file.
fn children(pid: i32) -> Option<Vec<i32>> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut found = Vec::new();
    let mut any = false;
    for task in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            any = true;
            found.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    any.then_some(found)
}

/// Every descendant of `root` (not `root`), zombies included: walked down
/// from `root` through the `children` files, so the cost follows the size
/// of the subtree, not of the machine; a full scan where those files are
/// missing.
pub fn subtree(root: i32) -> Vec<Proc> {
    if children(root).is_none() {
        let all = scan();
        let below = descendants_with_zombies(&all, root);
        return all.into_iter().filter(|p| below.contains(&p.pid)).collect();
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    let mut seen = HashSet::from([root]);
    while let Some(pid) = stack.pop() {
        for child in children(pid).unwrap_or_default() {
            if seen.insert(child) {
                stack.push(child);
                if let Some(p) = read(child) {
                    out.push(p);
                }
            }
        }
    }
    out
}

fn read(pid: i32) -> Option<Proc> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    Some(Proc {
        pid,
        ppid: field("PPid:")?.parse().ok()?,
        uid: field("Uid:")?.split_whitespace().next()?.parse().ok()?,
        zombie: field("State:")?.starts_with('Z'),
    })
}

/// Whether `pid` is gone or on its way out: a zombie, exiting, or with a
/// SIGKILL pending. Such a process is not counted as a leftover: the
/// test's own kill (its process group, on a timeout or cancel) got it.
pub fn dying(pid: i32) -> bool {
    const SIGKILL_BIT: u64 = 1 << (9 - 1);
    const PF_EXITING: u64 = 0x4;
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return true;
    };
    let pending = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .is_some_and(|bits| bits & SIGKILL_BIT != 0)
    };
    let exiting = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let after = stat.rsplit_once(')')?.1;
            after.split_whitespace().nth(6)?.parse::<u64>().ok()
        })
        .is_none_or(|flags| flags & PF_EXITING != 0);
    status
        .lines()
        .any(|l| l.starts_with("State:") && (l.contains('Z') || l.contains('X')))
        || pending("SigPnd:")
        || pending("ShdPnd:")
        || exiting
}

/// Pids of the live (not zombie) descendants of `root` in `procs`.
pub fn descendants(procs: &[Proc], root: i32) -> HashSet<i32> {
    let mut found = descendants_with_zombies(procs, root);
    let live: HashSet<i32> = procs.iter().filter(|p| !p.zombie).map(|p| p.pid).collect();
    found.retain(|pid| live.contains(pid));
    found
}

fn descendants_with_zombies(procs: &[Proc], root: i32) -> HashSet<i32> {
    let mut found = HashSet::from([root]);
    // Parents may appear after their children in `/proc` order: repeat
    // until a pass adds nothing.
    loop {
        let before = found.len();
        for p in procs {
            if found.contains(&p.ppid) {
                found.insert(p.pid);
            }
        }
        if found.len() == before {
            break;
        }
    }
    found.remove(&root);
    found
}

/// Whether `/proc/<pid>/environ` holds `marker` (`NAME=value`). Readable
/// for processes of the runner's own user (and all of them as root).
pub fn has_marker(pid: i32, marker: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == marker.as_bytes()))
}

/// SIGKILLs what `find` returns until it returns nothing (a process may
/// fork between a scan and its kill: the next round finds the child),
/// reaping orphans meanwhile. Returns how many distinct processes were
/// killed; `None` in place of a count when some survived every round.
pub async fn kill_until_gone(
    mut find: impl FnMut() -> HashSet<i32>,
    is_test_root: impl Fn(i32) -> bool,
) -> (usize, bool) {
    let mut killed = HashSet::new();
    for round in 0..400u32 {
        let found: HashSet<i32> = find().into_iter().filter(|pid| !dying(*pid)).collect();
        if found.is_empty() {
            reap_orphans(&is_test_root);
            return (killed.len(), true);
        }
        for pid in found {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            killed.insert(pid);
        }
        reap_orphans(&is_test_root);
        // Give the kills a moment to land; a fork bomb needs more rounds.
        tokio::time::sleep(Duration::from_millis(if round < 20 { 2 } else { 20 })).await;
    }
    reap_orphans(&is_test_root);
    (killed.len(), false)
}

/// Reaps every zombie child of the runner that is not a test's own
/// process (those are tokio's to wait for): orphans re-parented to the
/// runner as a subreaper. `waitpid` on each specific pid, never `-1`, so
/// no exit status tokio waits for is stolen.
pub fn reap_orphans(is_test_root: &impl Fn(i32) -> bool) {
    let me = std::process::id() as i32;
    let mine: Vec<Proc> = match children(me) {
        Some(pids) => pids.into_iter().filter_map(read).collect(),
        None => scan(),
    };
    for p in mine {
        if p.ppid == me && p.zombie && !is_test_root(p.pid) {
            let _ = nix::sys::wait::waitpid(
                Pid::from_raw(p.pid),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: i32, ppid: i32) -> Proc {
        Proc {
            pid,
            ppid,
            uid: 0,
            zombie: false,
        }
    }

    #[test]
    fn descendants_follow_the_parent_chain_in_any_order() {
        let procs = [p(30, 20), p(20, 10), p(10, 1), p(40, 1), p(50, 30)];
        let found = descendants(&procs, 10);
        assert_eq!(found, HashSet::from([20, 30, 50]));
    }

    #[test]
    fn a_subtree_holds_a_child_and_its_grandchild() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & echo $!; wait"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        let grandchild: i32 = line.trim().parse().unwrap();
        let below: Vec<i32> = subtree(std::process::id() as i32)
            .iter()
            .map(|p| p.pid)
            .collect();
        let _ = child.kill();
        let _ = kill(Pid::from_raw(grandchild), Signal::SIGKILL);
        let _ = child.wait();
        assert!(below.contains(&(child.id() as i32)), "{below:?}");
        assert!(below.contains(&grandchild), "{below:?}");
    }

    #[test]
    fn this_process_is_found_with_its_parent_and_uid() {
        let me = read(std::process::id() as i32).expect("own status");
        assert_eq!(me.uid, nix::unistd::getuid().as_raw());
        assert_eq!(me.ppid, nix::unistd::getppid().as_raw());
        assert!(!me.zombie);
    }
}
