//! Writing a tree out of the cache into a directory, hashing every file's
//! bytes as they are copied: a cache entry whose bytes changed on disk
//! since it was verified is caught here and fetched again (the cheap size
//! check on lookup catches only truncation and growth).

use std::fs::{self, File};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::Path;

use super::cache::Cache;
use super::digest::{Hasher, Tree, TreeFile};

/// Creates `dest` with every directory of `tree`.
pub fn dirs(tree: &Tree, dest: &Path) -> io::Result<()> {
    fs::DirBuilder::new().mode(0o755).create(dest)?;
    for dir in &tree.dirs {
        fs::DirBuilder::new().mode(0o755).create(dest.join(dir))?;
    }
    Ok(())
}

/// Writes `files` under `dest` (whose directories exist). Returns the
/// files whose cache entry did not verify: those entries are dropped from
/// the cache, and the files are not written.
pub fn files<'t>(
    cache: &Cache,
    files: &[&'t TreeFile],
    dest: &Path,
) -> io::Result<Vec<&'t TreeFile>> {
    let mut corrupted = Vec::new();
    let mut buf = vec![0u8; 256 << 10];
    for file in files {
        let target = dest.join(&file.path);
        if !copy_verified(cache, file, &target, &mut buf)? {
            tracing::warn!(blob = %file.blob, path = %file.path, "cache entry corrupted; fetching it again");
            let _ = fs::remove_file(&target);
            cache.remove(&file.blob);
            corrupted.push(*file);
        }
    }
    Ok(corrupted)
}

fn copy_verified(
    cache: &Cache,
    file: &TreeFile,
    target: &Path,
    buf: &mut [u8],
) -> io::Result<bool> {
    let mut from = match File::open(cache.path(&file.blob)) {
        Ok(f) => f,
        // Evicted or deleted under us: fetch it again.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let mut to = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if file.executable { 0o755 } else { 0o644 })
        .open(target)?;
    let mut hasher = Hasher::default();
    loop {
        let n = from.read(buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n])?;
    }
    Ok(hasher.finish() == file.blob)
}
