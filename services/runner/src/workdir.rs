//! Work directories for tests, reused from one test to the next.
//!
//! Every test starts in an empty directory that no other running test uses
//! (checked when it is handed out). A process that escaped its test's
//! process group could still write into it later, as it could anywhere the
//! runner's user may write; when the runner sees one (it keeps the test's
//! output pipe open past the test), the directory is deleted, not reused.
//! Creating and deleting a directory per test was the runners' largest cost
//! in the dispatch benchmark: ext4's `mkdir` took 16% of all CPU with eight
//! slots contending for the parent directory's lock. So a directory is
//! emptied after its test and handed to the next one. One that cannot be
//! emptied exactly as it was made (an entry that will not go, or changed
//! permissions) is deleted instead, and the next test gets a new one.
//!
//! Emptying runs in place when the test left nothing behind (the usual
//! case: one `readdir`), and on a blocking thread otherwise, so a test that
//! left a large tree never stalls the runner's one thread, nor holds back
//! its result and its slot (the next test then gets another directory).
//!
//! The test file itself is recycled too: a file created right after others
//! were deleted makes ext4 scan its inode bitmap past every recently deleted
//! inode, which at hundreds of tests a second was 59% of a runner's CPU. So
//! the file a test ran from is moved aside as a spare when the test ends,
//! and the next test's file is written into a spare (truncated first) and
//! renamed into place; in a steady state nothing is deleted or created.

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Permissions of every work directory: the runner's user only.
const MODE: u32 = 0o700;
/// Most spare files kept for reuse.
const MAX_SPARES: usize = 64;

/// The runner's work directories, under one root removed at exit.
#[derive(Debug)]
pub struct WorkDirs {
    root: tempfile::TempDir,
    free: Mutex<Vec<PathBuf>>,
    spares: Mutex<Vec<PathBuf>>,
    made: AtomicU64,
}

/// A directory held by one test; emptied and given back when dropped: at
/// once if the test left nothing behind, so the next test on its slot,
/// which may start at once from the runner's queue, finds it.
#[derive(Debug)]
pub struct WorkDir {
    dirs: Arc<WorkDirs>,
    path: PathBuf,
    /// The file written by `write_file`, recycled when the test ends.
    file: Option<PathBuf>,
    /// Whether the directory may go to another test once emptied.
    reusable: bool,
}

impl WorkDir {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the test's JUnit report goes (`{junit}`,
    /// `TESTRUNNER_JUNIT_XML`): beside the directory, in the runner's own
    /// root, so a test that lists or archives its directory never finds
    /// it, and one test's report can never be another's. It is in a
    /// directory of its own (`report_dir`) that `prepare_report_dir` gives
    /// to the test's user, who may not write in the root itself.
    pub fn report_path(&self) -> PathBuf {
        self.report_dir().join("report.xml")
    }

    /// The directory holding `report_path`, beside the work directory.
    pub fn report_dir(&self) -> PathBuf {
        report_dir_of(&self.path)
    }

    /// Makes `report_dir` (if missing) and gives it to `uid`, the test's
    /// user when not the runner's, alone (mode 0700).
    pub fn prepare_report_dir(&self, uid: Option<u32>) -> io::Result<()> {
        let dir = self.report_dir();
        match fs::DirBuilder::new().mode(MODE).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // Only the runner writes in the root: a directory it made.
                if !fs::symlink_metadata(&dir)?.is_dir() {
                    return Err(io::Error::other("the report path is not a directory"));
                }
            }
            Err(e) => return Err(e),
        }
        if let Some(uid) = uid {
            std::os::unix::fs::chown(&dir, Some(uid), Some(uid))?;
        }
        Ok(())
    }

    /// Deletes the directory when the test ends instead of reusing it
    /// (something the test started may still be using it).
    pub fn discard(&mut self) {
        self.reusable = false;
    }

    /// Writes the test's file `name` with `mode` into the directory and
    /// returns its path.
    pub fn write_file(&mut self, name: &str, content: &[u8], mode: u32) -> io::Result<PathBuf> {
        let path = self.path.join(name);
        let spare = lock(&self.dirs.spares).pop();
        let reused = spare.is_some_and(|spare| {
            let written = fill(&spare, content, mode).and_then(|()| fs::rename(&spare, &path));
            if written.is_err() {
                let _ = fs::remove_file(&spare);
            }
            written.is_ok()
        });
        if !reused {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?;
            file.write_all(content)?;
            // Explicitly: the umask must not decide.
            file.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        self.file = Some(path.clone());
        Ok(path)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let path = std::mem::take(&mut self.path);
        if !self.reusable {
            off_thread(move || {
                let _ = fs::remove_dir_all(report_dir_of(&path));
                delete(&path);
            });
            return;
        }
        if let Some(file) = self.file.take() {
            self.dirs.keep_spare(&file);
        }
        if is_clean(&path) {
            lock(&self.dirs.free).push(path);
            return;
        }
        let dirs = Arc::clone(&self.dirs);
        off_thread(move || dirs.give_back(path));
    }
}

/// Runs file-system work on a blocking thread when inside the runtime (the
/// runner has one thread for everything else), else here.
fn off_thread(work: impl FnOnce() + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(work)),
        Err(_) => work(),
    }
}

fn report_dir_of(work_dir: &Path) -> PathBuf {
    let mut name = work_dir.file_name().unwrap_or_default().to_owned();
    name.push(".junit");
    work_dir.with_file_name(name)
}

fn delete(dir: &Path) {
    if let Err(error) = fs::remove_dir_all(dir) {
        tracing::warn!(dir = %dir.display(), %error, "cannot delete a work directory");
    }
}

/// Empty, and still as it was made.
fn is_clean(dir: &Path) -> bool {
    fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o7777 == MODE)
        && fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Replaces a spare's content and mode. The spare must still be a plain
/// file of its own: not a symbolic link (never followed), a FIFO (opening
/// does not block) or a file linked elsewhere.
fn fill(spare: &Path, content: &[u8], mode: u32) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(spare)?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.nlink() != 1 {
        return Err(io::Error::other("spare file changed"));
    }
    file.set_len(0)?;
    file.write_all(content)?;
    file.set_permissions(fs::Permissions::from_mode(mode))
}

impl WorkDirs {
    /// A new root under `parent` (default: the system temp directory).
    pub fn new(parent: Option<&Path>) -> io::Result<Self> {
        let builder = {
            let mut b = tempfile::Builder::new();
            b.prefix("testrunner-");
            b
        };
        let root = match parent {
            Some(parent) => builder.tempdir_in(parent)?,
            None => builder.tempdir()?,
        };
        Ok(Self {
            root,
            free: Mutex::new(Vec::new()),
            spares: Mutex::new(Vec::new()),
            made: AtomicU64::new(0),
        })
    }

    /// The root all work directories are in.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// An empty directory for one test.
    pub fn take(self: &Arc<Self>) -> io::Result<WorkDir> {
        let mut reused = lock(&self.free).pop();
        // Something outside the last test may have written since.
        while let Some(path) = reused.take_if(|path| !is_clean(path)) {
            off_thread(move || delete(&path));
            reused = lock(&self.free).pop();
        }
        let path = match reused {
            Some(path) => path,
            None => {
                let path = self.fresh_name("w");
                fs::DirBuilder::new().mode(MODE).create(&path)?;
                path
            }
        };
        Ok(WorkDir {
            dirs: Arc::clone(self),
            path,
            file: None,
            reusable: true,
        })
    }

    fn fresh_name(&self, prefix: &str) -> PathBuf {
        let n = self.made.fetch_add(1, Ordering::Relaxed);
        self.root.path().join(format!("{prefix}{n}"))
    }

    /// Moves a finished test's file aside for reuse, if it is still a plain
    /// file of its own (not replaced, linked elsewhere, or a directory).
    fn keep_spare(&self, file: &Path) {
        let plain = fs::symlink_metadata(file).is_ok_and(|m| {
            m.file_type().is_file() && std::os::unix::fs::MetadataExt::nlink(&m) == 1
        });
        if !plain || lock(&self.spares).len() >= MAX_SPARES {
            return;
        }
        let spare = self.fresh_name("s");
        if fs::rename(file, &spare).is_ok() {
            lock(&self.spares).push(spare);
        }
    }

    fn give_back(&self, path: PathBuf) {
        match empty(&path) {
            Ok(()) => lock(&self.free).push(path),
            Err(error) => {
                tracing::debug!(dir = %path.display(), %error, "work directory not reusable; deleting it");
                delete(&path);
            }
        }
    }
}

/// Removes everything in `dir`, which must still be a directory with the
/// permissions it was made with.
fn empty(dir: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() || meta.permissions().mode() & 0o7777 != MODE {
        return Err(io::Error::other("changed by the test"));
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(entry.path())?;
        } else {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> usize {
        fs::read_dir(dir).unwrap().count()
    }

    #[test]
    fn a_directory_is_emptied_and_reused() {
        let dirs = Arc::new(WorkDirs::new(None).unwrap());
        let first = {
            let dir = dirs.take().unwrap();
            fs::write(dir.path().join("t.sh"), "exit 0").unwrap();
            fs::create_dir_all(dir.path().join("a/b")).unwrap();
            fs::write(dir.path().join("a/b/c"), "x").unwrap();
            fs::write(dir.path().join(".hidden"), "x").unwrap();
            dir.path().to_owned()
        };
        let again = dirs.take().unwrap();
        assert_eq!(again.path(), first);
        assert_eq!(entries(again.path()), 0);
    }

    #[tokio::test]
    async fn inside_the_runtime_a_left_over_tree_is_emptied_off_the_thread() {
        let dirs = Arc::new(WorkDirs::new(None).unwrap());
        let first = {
            let dir = dirs.take().unwrap();
            for i in 0..100 {
                fs::write(dir.path().join(format!("f{i}")), "x").unwrap();
            }
            dir.path().to_owned()
        };
        for _ in 0..500 {
            if lock(&dirs.free).contains(&first) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(lock(&dirs.free).contains(&first), "given back once emptied");
        assert_eq!(entries(&first), 0);
    }

    #[tokio::test]
    async fn inside_the_runtime_a_clean_directory_is_back_at_once() {
        let dirs = Arc::new(WorkDirs::new(None).unwrap());
        let first = {
            let mut dir = dirs.take().unwrap();
            dir.write_file("t.sh", b"exit 0", 0o644).unwrap();
            dir.path().to_owned()
        };
        // No wait: the next test on the slot may start right away.
        let again = dirs.take().unwrap();
        assert_eq!(again.path(), first);
        assert_eq!(entries(again.path()), 0);
    }

    #[test]
    fn a_discarded_directory_is_deleted_and_a_dirty_free_one_is_not_handed_out() {
        let dirs = Arc::new(WorkDirs::new(None).unwrap());
        let first = {
            let mut dir = dirs.take().unwrap();
            dir.write_file("t.sh", b"exit 0", 0o644).unwrap();
            dir.discard();
            dir.path().to_owned()
        };
        assert!(!first.exists());
        assert!(lock(&dirs.spares).is_empty(), "nothing kept from it");
        let second = dirs.take().unwrap().path().to_owned();
        // Written into after it was given back.
        fs::write(second.join("late"), "x").unwrap();
        let third = dirs.take().unwrap();
        assert_ne!(third.path(), second);
        assert!(!second.exists());
        assert_eq!(entries(third.path()), 0);
    }

    #[test]
    fn a_spare_replaced_by_a_symlink_or_fifo_is_not_written_through() {
        let dirs = Arc::new(WorkDirs::new(None).unwrap());
        let target = dirs.root().join("target");
        fs::write(&target, "keep").unwrap();
        drop({
            let mut dir = dirs.take().unwrap();
            dir.write_file("t.sh", b"exit 0", 0o644).unwrap();
            dir
        });
        let spare = lock(&dirs.spares)[0].clone();
        fs::remove_file(&spare).unwrap();
        std::os::unix::fs::symlink(&target, &spare).unwrap();
        let mut dir = dirs.take().unwrap();
        let path = dir.write_file("u.sh", b"new", 0o644).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"keep");
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert!(
            !fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        drop(dir);

        let spare = lock(&dirs.spares)[0].clone();
        fs::remove_file(&spare).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(&spare)
            .status()
            .unwrap();
        assert!(made.success());
        let mut dir = dirs.take().unwrap();
        let path = dir.write_file("v.sh", b"fifo", 0o644).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"fifo");
    }

    #[test]
    fn tests_running_at_once_get_different_directories() {
        let dirs = Arc::new(WorkDirs::new(None).unwrap());
        let (a, b) = (dirs.take().unwrap(), dirs.take().unwrap());
        assert_ne!(a.path(), b.path());
    }

    #[test]
    fn a_directory_whose_permissions_changed_is_replaced() {
        let dirs = Arc::new(WorkDirs::new(None).unwrap());
        let first = {
            let dir = dirs.take().unwrap();
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
            dir.path().to_owned()
        };
        assert!(!first.exists());
        let next = dirs.take().unwrap();
        assert_ne!(next.path(), first);
        assert_eq!(
            fs::metadata(next.path()).unwrap().permissions().mode() & 0o7777,
            MODE
        );
    }

    #[test]
    fn a_test_file_is_written_into_a_recycled_inode() {
        use std::os::unix::fs::MetadataExt as _;
        let dirs = Arc::new(WorkDirs::new(None).unwrap());
        let first = {
            let mut dir = dirs.take().unwrap();
            let path = dir
                .write_file("a.sh", b"#!/bin/sh\necho a long first file\n", 0o755)
                .unwrap();
            fs::metadata(&path).unwrap().ino()
        };
        let mut dir = dirs.take().unwrap();
        let path = dir.write_file("b.py", b"print(1)\n", 0o644).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.ino(), first);
        assert_eq!(meta.permissions().mode() & 0o7777, 0o644);
        assert_eq!(fs::read(&path).unwrap(), b"print(1)\n");
        assert_eq!(entries(dir.path()), 1);
    }

    #[test]
    fn a_test_file_the_test_replaced_or_linked_is_not_recycled() {
        let dirs = Arc::new(WorkDirs::new(None).unwrap());
        let outside = dirs.root().join("outside");
        {
            let mut dir = dirs.take().unwrap();
            let path = dir.write_file("t.sh", b"exit 0", 0o644).unwrap();
            fs::hard_link(&path, &outside).unwrap();
        }
        assert!(lock(&dirs.spares).is_empty());
        {
            let mut dir = dirs.take().unwrap();
            let path = dir.write_file("t.sh", b"exit 0", 0o644).unwrap();
            fs::remove_file(&path).unwrap();
            fs::create_dir(&path).unwrap();
        }
        assert!(lock(&dirs.spares).is_empty());
        assert_eq!(fs::read(&outside).unwrap(), b"exit 0");
    }

    #[test]
    fn the_root_goes_away_with_the_runner() {
        let dirs = Arc::new(WorkDirs::new(None).unwrap());
        let root = dirs.root().to_owned();
        drop(dirs.take().unwrap());
        drop(dirs);
        assert!(!root.exists());
    }
}
