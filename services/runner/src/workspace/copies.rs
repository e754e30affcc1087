//! Each test's private copy of its prepared workspace.
//!
//! A prepared workspace (the tree plus whatever its set-up made) is a
//! [`Base`] directory that no test runs in. A test gets a [`TestCopy`] of
//! it: a full copy, made once and then kept for the next test and reset
//! between tests, so that no test's writes reach the cache, the base or
//! another test, and the cost per test is a `stat` walk rather than a copy
//! (docs/design.md, "Workspaces on the runner", has the measurements).
//!
//! Reset: the copy remembers, for every entry it made, its inode number,
//! type, mode and change time (`ctime`). A test cannot write, truncate,
//! chmod, rename or replace a file without changing its `ctime` or inode,
//! and cannot set a `ctime` back (only the kernel sets it). After the
//! test, the copy is walked: an entry the copy did not make is deleted, a
//! file whose stamp changed is copied again from the base, a directory is
//! walked into (its own stamp changes whenever entries come and go), and
//! an entry that went missing is copied again. A copy that cannot be reset
//! (a directory the test made unreadable, say) is deleted, and the next
//! test gets a fresh one. Reset runs off the runner's thread once the test
//! ended; a test that starts meanwhile gets another copy.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Copies kept per base for reuse (one per slot is the steady state).
const MAX_FREE: usize = 64;

/// A prepared workspace: the directory tests' copies are made from.
#[derive(Debug)]
pub struct Base {
    /// (workspace, set-up, env) as one key.
    pub key: String,
    /// The prepared tree.
    pub dir: PathBuf,
    /// Where copies go.
    copies: PathBuf,
    free: Mutex<Vec<Copy>>,
    made: AtomicU64,
}

/// What a copy looked like when it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    ctime: (i64, i64),
    mode: u32,
    dir: bool,
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Self {
        Self {
            ino: meta.ino(),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            mode: meta.mode(),
            dir: meta.is_dir(),
        }
    }
}

/// One copy and its stamps, by path relative to its root.
#[derive(Debug)]
struct Copy {
    dir: PathBuf,
    /// The uid (and gid) every entry is given to: the test's user, when
    /// tests run as users of their own. Set before stamping, so the
    /// `chown`'s new `ctime` is the stamp and a reset recopies nothing.
    owner: Option<u32>,
    stamps: HashMap<PathBuf, Stamp>,
    children: HashMap<PathBuf, Vec<OsString>>,
}

impl Base {
    /// A base in `dir` (complete), with copies made under `copies`.
    pub fn new(key: String, dir: PathBuf, copies: PathBuf) -> io::Result<Self> {
        fs::create_dir_all(&copies)?;
        Ok(Self {
            key,
            dir,
            copies,
            free: Mutex::new(Vec::new()),
            made: AtomicU64::new(0),
        })
    }

    /// A copy for one test running as `owner` (None: the runner's user):
    /// a reset one if there is (one already `owner`'s first), else a new
    /// one (blocking: call off the runner's thread). Only `owner` may
    /// write in it.
    pub fn take(self: &Arc<Self>, owner: Option<u32>) -> io::Result<TestCopy> {
        let free = {
            let mut free = lock(&self.free);
            match free.iter().rposition(|c| c.owner == owner) {
                Some(i) => Some(free.remove(i)),
                None => free.pop(),
            }
        };
        let copy = match free {
            Some(mut copy) if copy.owner != owner => {
                if let Err(e) = give_to(&mut copy, owner) {
                    delete(&copy.dir);
                    return Err(e);
                }
                copy
            }
            Some(copy) => copy,
            None => {
                let n = self.made.fetch_add(1, Ordering::Relaxed);
                let dir = self.copies.join(format!("c{n}"));
                let mut copy = Copy {
                    dir: dir.clone(),
                    owner,
                    stamps: HashMap::new(),
                    children: HashMap::new(),
                };
                if let Err(e) = copy_entry(&self.dir, &dir, Path::new(""), &mut copy) {
                    delete(&copy.dir);
                    return Err(e);
                }
                copy
            }
        };
        Ok(TestCopy {
            base: Arc::clone(self),
            copy: Some(copy),
            discard: false,
        })
    }

    /// Copies kept for reuse.
    pub fn free_copies(&self) -> usize {
        lock(&self.free).len()
    }

    /// Deletes every kept copy (the base is going away).
    pub fn clear(&self) {
        for copy in lock(&self.free).drain(..) {
            delete(&copy.dir);
        }
    }
}

impl PartialEq for Base {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for Base {}

/// A test's copy; reset and kept, or deleted, when dropped.
#[derive(Debug)]
pub struct TestCopy {
    base: Arc<Base>,
    copy: Option<Copy>,
    discard: bool,
}

impl TestCopy {
    pub fn path(&self) -> &Path {
        &self.copy.as_ref().expect("held").dir
    }

    /// Deletes the copy instead of reusing it (something the test started
    /// may still be writing into it).
    pub fn discard(&mut self) {
        self.discard = true;
    }

    /// Resets the copy now and keeps it for the next test (blocking); what
    /// `Drop` does off the runner's thread.
    pub fn give_back(mut self) {
        if let Some(copy) = self.copy.take() {
            give_back(&self.base, copy, self.discard);
        }
    }
}

impl Drop for TestCopy {
    fn drop(&mut self) {
        let Some(copy) = self.copy.take() else {
            return;
        };
        let base = Arc::clone(&self.base);
        let discard = self.discard;
        let work = move || give_back(&base, copy, discard);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(work)),
            Err(_) => work(),
        }
    }
}

fn give_back(base: &Base, mut copy: Copy, discard: bool) {
    if discard || lock(&base.free).len() >= MAX_FREE {
        delete(&copy.dir);
        return;
    }
    match reset(&base.dir, &mut copy) {
        Ok(()) => lock(&base.free).push(copy),
        Err(error) => {
            tracing::debug!(dir = %copy.dir.display(), %error, "workspace copy not resettable; deleting it");
            delete(&copy.dir);
        }
    }
}

/// Gives every entry of a reset copy to `owner` and stamps it anew.
fn give_to(copy: &mut Copy, owner: Option<u32>) -> io::Result<()> {
    let uid = owner.unwrap_or_else(|| nix::unistd::getuid().as_raw());
    let gid = owner.unwrap_or_else(|| nix::unistd::getgid().as_raw());
    for (rel, stamp) in &mut copy.stamps {
        let path = copy.dir.join(rel);
        std::os::unix::fs::lchown(&path, Some(uid), Some(gid))?;
        *stamp = Stamp::of(&fs::symlink_metadata(&path)?);
    }
    copy.owner = owner;
    Ok(())
}

/// Copies `from` (a file, symlink or directory of the base) to `to`,
/// recording stamps under `rel`.
fn copy_entry(from: &Path, to: &Path, rel: &Path, copy: &mut Copy) -> io::Result<()> {
    let meta = fs::symlink_metadata(from)?;
    let kind = meta.file_type();
    if kind.is_dir() {
        fs::create_dir(to)?;
        let mut names = Vec::new();
        for entry in fs::read_dir(from)? {
            let entry = entry?;
            let name = entry.file_name();
            copy_entry(&entry.path(), &to.join(&name), &rel.join(&name), copy)?;
            names.push(name);
        }
        fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        copy.children.insert(rel.to_owned(), names);
    } else if kind.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(from)?, to)?;
    } else if kind.is_file() {
        // Permissions come along; on ext4 this is copy_file_range.
        fs::copy(from, to)?;
    } else {
        // Sockets, FIFOs a set-up left: not part of a workspace.
        return Ok(());
    }
    if let Some(uid) = copy.owner {
        std::os::unix::fs::lchown(to, Some(uid), Some(uid))?;
    }
    copy.stamps
        .insert(rel.to_owned(), Stamp::of(&fs::symlink_metadata(to)?));
    Ok(())
}

/// Puts a copy back as its base is (see the module's doc).
fn reset(base: &Path, copy: &mut Copy) -> io::Result<()> {
    let root = copy.dir.clone();
    let meta = fs::symlink_metadata(&root)?;
    if copy.stamps.get(Path::new("")).map(|s| s.ino) != Some(meta.ino()) || !meta.is_dir() {
        return Err(io::Error::other("the copy's root was replaced"));
    }
    reset_dir(base, &root, PathBuf::new(), copy)
}

fn reset_dir(base: &Path, root: &Path, rel: PathBuf, copy: &mut Copy) -> io::Result<()> {
    let here = root.join(&rel);
    let want = copy.stamps.get(&rel).copied();
    if let Some(want) = want
        && fs::symlink_metadata(&here)?.mode() != want.mode
    {
        fs::set_permissions(&here, fs::Permissions::from_mode(want.mode & 0o7777))?;
        let now = Stamp::of(&fs::symlink_metadata(&here)?);
        copy.stamps.insert(rel.clone(), now);
    }
    let mut present = std::collections::HashSet::new();
    for entry in fs::read_dir(&here)? {
        let entry = entry?;
        let name = entry.file_name();
        let sub = rel.join(&name);
        let meta = entry.metadata()?;
        let now = Stamp::of(&meta);
        match copy.stamps.get(&sub).copied() {
            None => remove(&entry.path(), &meta)?,
            Some(was) if was.dir && now.dir && was.ino == now.ino => {
                reset_dir(base, root, sub, copy)?;
                present.insert(name);
            }
            Some(was) if was == now => {
                present.insert(name);
            }
            Some(_) => {
                remove(&entry.path(), &meta)?;
                forget(copy, &sub);
                copy_entry(&base.join(&sub), &entry.path(), &sub, copy)?;
                present.insert(name);
            }
        }
    }
    let missing: Vec<OsString> = copy
        .children
        .get(&rel)
        .map(|names| {
            names
                .iter()
                .filter(|n| !present.contains(*n))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    for name in missing {
        let sub = rel.join(&name);
        forget(copy, &sub);
        copy_entry(&base.join(&sub), &here.join(&name), &sub, copy)?;
    }
    Ok(())
}

/// Drops the stamps of `rel` and everything under it.
fn forget(copy: &mut Copy, rel: &Path) {
    copy.stamps.retain(|p, _| !p.starts_with(rel));
    copy.children.retain(|p, _| !p.starts_with(rel));
}

fn remove(path: &Path, meta: &fs::Metadata) -> io::Result<()> {
    if meta.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

/// Deletes a directory tree, making its directories writable first if the
/// test took that away.
pub fn delete(dir: &Path) {
    if fs::remove_dir_all(dir).is_ok() || !dir.exists() {
        return;
    }
    let _ = make_writable(dir);
    if let Err(error) = fs::remove_dir_all(dir) {
        tracing::warn!(dir = %dir.display(), %error, "cannot delete a workspace copy");
    }
}

fn make_writable(dir: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Ok(());
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    for entry in fs::read_dir(dir)? {
        let _ = make_writable(&entry?.path());
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base_with(files: &[(&str, &str)]) -> (tempfile::TempDir, Arc<Base>) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("base");
        for (path, content) in files {
            let path = dir.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, content).unwrap();
        }
        let base = Base::new("k".into(), dir, tmp.path().join("copies")).unwrap();
        (tmp, Arc::new(base))
    }

    fn snapshot(dir: &Path) -> Vec<(String, String, u32)> {
        let mut out = Vec::new();
        fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String, u32)>) {
            for entry in fs::read_dir(dir).unwrap() {
                let entry = entry.unwrap();
                let meta = entry.metadata().unwrap();
                let rel = entry
                    .path()
                    .strip_prefix(root)
                    .unwrap()
                    .display()
                    .to_string();
                if meta.is_dir() {
                    out.push((rel, "/".into(), meta.mode() & 0o7777));
                    walk(root, &entry.path(), out);
                } else {
                    let content = fs::read_to_string(entry.path()).unwrap_or_default();
                    out.push((rel, content, meta.mode() & 0o7777));
                }
            }
        }
        walk(dir, dir, &mut out);
        out.sort();
        out
    }

    #[test]
    fn a_copy_belongs_to_its_uid_and_a_reset_keeps_every_file_it_did_not_change() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root to give files away");
            return;
        }
        let (_tmp, base) = base_with(&[("src/a.py", "A\n"), ("b", "B")]);
        let (uid, other) = (4_100_001, 4_100_002);
        let copy = base.take(Some(uid)).unwrap();
        let root = copy.path().to_owned();
        for rel in ["", "src", "src/a.py", "b"] {
            assert_eq!(fs::metadata(root.join(rel)).unwrap().uid(), uid, "{rel}");
        }
        let ino = |rel: &str| fs::metadata(root.join(rel)).unwrap().ino();
        let a = ino("src/a.py");
        fs::write(root.join("b"), "changed").unwrap();
        copy.give_back();
        let again = base.take(Some(uid)).unwrap();
        assert_eq!(again.path(), root);
        // The chown's ctime was stamped: only the changed file is new.
        assert_eq!(ino("src/a.py"), a);
        assert_eq!(fs::read_to_string(root.join("b")).unwrap(), "B");
        assert_eq!(fs::metadata(root.join("b")).unwrap().uid(), uid);
        again.give_back();
        // Another uid gets the same copy, given to it, without a copy.
        let theirs = base.take(Some(other)).unwrap();
        assert_eq!(theirs.path(), root);
        assert_eq!(ino("src/a.py"), a);
        assert_eq!(fs::metadata(root.join("src/a.py")).unwrap().uid(), other);
        theirs.give_back();
        let back = base.take(Some(other)).unwrap();
        assert_eq!(ino("src/a.py"), a);
        drop(back);
    }

    #[test]
    fn a_tests_writes_are_undone_before_the_next_test_and_never_reach_the_base() {
        let (_tmp, base) = base_with(&[
            ("src/pkg/__init__.py", "X = 1\n"),
            ("tests/test_a.py", "def test(): pass\n"),
            ("README", "r"),
        ]);
        let before = snapshot(&base.dir);
        let copy = base.take(None).unwrap();
        let root = copy.path().to_owned();
        assert_eq!(snapshot(&root), before);
        // Everything a test may do to its copy.
        fs::write(root.join("src/pkg/__init__.py"), "X = 2\n").unwrap();
        fs::remove_file(root.join("README")).unwrap();
        fs::create_dir_all(root.join("tests/__pycache__")).unwrap();
        fs::write(root.join("tests/__pycache__/x.pyc"), "junk").unwrap();
        fs::write(root.join("new-file"), "junk").unwrap();
        fs::set_permissions(root.join("tests"), fs::Permissions::from_mode(0o500)).unwrap();
        fs::set_permissions(
            root.join("tests/test_a.py"),
            fs::Permissions::from_mode(0o777),
        )
        .unwrap();
        fs::rename(root.join("src/pkg"), root.join("src/moved")).unwrap();
        assert_eq!(snapshot(&base.dir), before, "the base is untouched");
        copy.give_back();
        assert_eq!(base.free_copies(), 1);
        let again = base.take(None).unwrap();
        assert_eq!(again.path(), root, "the same copy, reset");
        assert_eq!(snapshot(again.path()), before);
    }

    #[test]
    fn a_file_changed_in_place_with_its_times_restored_is_still_caught() {
        let (_tmp, base) = base_with(&[("data.txt", "original")]);
        let copy = base.take(None).unwrap();
        let file = copy.path().join("data.txt");
        let mtime = fs::metadata(&file).unwrap().modified().unwrap();
        fs::write(&file, "tampered").unwrap();
        fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let root = copy.path().to_owned();
        copy.give_back();
        assert_eq!(
            fs::read_to_string(root.join("data.txt")).unwrap(),
            "original"
        );
    }

    #[test]
    fn copies_held_at_once_are_different_and_a_discarded_one_is_deleted() {
        let (_tmp, base) = base_with(&[("a", "1")]);
        let one = base.take(None).unwrap();
        let mut two = base.take(None).unwrap();
        assert_ne!(one.path(), two.path());
        two.discard();
        let gone = two.path().to_owned();
        two.give_back();
        assert!(!gone.exists());
        assert_eq!(base.free_copies(), 0);
        drop(one);
        assert_eq!(base.free_copies(), 1);
    }

    #[test]
    fn a_copy_made_unreadable_is_deleted_not_reused() {
        let (_tmp, base) = base_with(&[("d/a", "1")]);
        let copy = base.take(None).unwrap();
        let root = copy.path().to_owned();
        fs::set_permissions(root.join("d"), fs::Permissions::from_mode(0o000)).unwrap();
        fs::write(root.join("extra"), "x").unwrap();
        copy.give_back();
        // Root may read anything; a copy that was reset is fine too.
        if base.free_copies() == 0 {
            assert!(!root.exists());
        } else {
            assert_eq!(snapshot(&root), snapshot(&base.dir));
        }
    }
}
