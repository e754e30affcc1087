//! A tree from a directory on disk.
//!
//! The walk honours `.gitignore` (with or without a git repository) and
//! `.ignore`, never includes a `.git` directory, and keeps hidden files
//! (`.coveragerc`, `.env.example` are part of a project). Symlinks: one
//! that stays inside the root is stored as what it points to (a file or a
//! directory); one that leads outside, or dangles, is an error naming it.
//! Empty directories are not part of the tree (as in git).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use testrunner_proto::v1::{Digest, Directory, DirectoryNode, FileNode};

use crate::digest::{digest_of, digest_reader};
use crate::tree::{encode_directory, validate_name};

/// Why a tree could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}: not a directory")]
    NotADirectory(PathBuf),
    #[error("{path}: symlink leads outside the workspace (to {target})")]
    SymlinkOutside { path: PathBuf, target: PathBuf },
    #[error("{0}: file name is not valid UTF-8")]
    NotUtf8(PathBuf),
    #[error("{path}: {problem}")]
    BadName { path: PathBuf, problem: String },
    #[error("walking the workspace: {0}")]
    Walk(#[from] ignore::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A file of a built tree.
#[derive(Debug, Clone)]
pub struct TreeFile {
    /// Path relative to the root, '/'-separated.
    pub path: String,
    /// Where to read it.
    pub source: PathBuf,
    pub digest: Digest,
    pub is_executable: bool,
}

/// A tree ready to upload: its root digest, every `Directory` blob, every
/// file.
#[derive(Debug, Clone)]
pub struct BuiltTree {
    pub root: Digest,
    /// Every directory blob (digest, encoded bytes), root included, each
    /// once.
    pub directories: Vec<(Digest, Vec<u8>)>,
    /// Every file, sorted by path.
    pub files: Vec<TreeFile>,
}

impl BuiltTree {
    /// Bytes of all files.
    pub fn file_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.digest.size_bytes as u64).sum()
    }
}

#[derive(Default)]
struct Node {
    files: BTreeMap<String, FileNode>,
    dirs: BTreeMap<String, Node>,
}

/// Walks `root` and hashes every file, calling `progress(bytes)` after each
/// file with its size.
pub fn build_tree(root: &Path, mut progress: impl FnMut(u64)) -> Result<BuiltTree, BuildError> {
    if !root.is_dir() {
        return Err(BuildError::NotADirectory(root.to_owned()));
    }
    let canonical_root = root.canonicalize().map_err(|source| BuildError::Io {
        path: root.to_owned(),
        source,
    })?;
    let walker = ignore::WalkBuilder::new(root)
        .hidden(false)
        .git_ignore(true)
        .git_exclude(false)
        .git_global(false)
        .ignore(true)
        .parents(false)
        .require_git(false)
        .follow_links(true)
        .sort_by_file_name(|a, b| a.cmp(b))
        .filter_entry(|e| e.file_name() != ".git")
        .build();

    let mut top = Node::default();
    let mut files = Vec::new();
    for entry in walker {
        let entry = entry?;
        let path = entry.path();
        if entry.path_is_symlink() {
            let target = path.canonicalize().map_err(|source| BuildError::Io {
                path: path.to_owned(),
                source,
            })?;
            if !target.starts_with(&canonical_root) {
                return Err(BuildError::SymlinkOutside {
                    path: path.to_owned(),
                    target,
                });
            }
        }
        let Some(file_type) = entry.file_type() else {
            continue;
        };
        if !file_type.is_file() {
            continue; // directories come from their files; others skipped
        }
        let rel = path
            .strip_prefix(root)
            .expect("the walk stays under its root");
        let mut segments = Vec::new();
        for seg in rel.components() {
            let s = seg
                .as_os_str()
                .to_str()
                .ok_or_else(|| BuildError::NotUtf8(path.to_owned()))?;
            validate_name(s).map_err(|problem| BuildError::BadName {
                path: path.to_owned(),
                problem,
            })?;
            segments.push(s.to_owned());
        }
        let io = |source| BuildError::Io {
            path: path.to_owned(),
            source,
        };
        let metadata = std::fs::metadata(path).map_err(io)?;
        let digest = digest_reader(File::open(path).map_err(io)?).map_err(io)?;
        progress(digest.size_bytes as u64);
        let is_executable = is_executable(&metadata);
        let (name, dirs) = segments.split_last().expect("a file has a name");
        let mut node = &mut top;
        for d in dirs {
            node = node.dirs.entry(d.clone()).or_default();
        }
        node.files.insert(
            name.clone(),
            FileNode {
                name: name.clone(),
                digest: Some(digest.clone()),
                is_executable,
            },
        );
        files.push(TreeFile {
            path: segments.join("/"),
            source: path.to_owned(),
            digest,
            is_executable,
        });
    }
    let mut directories = Vec::new();
    let root_digest = seal(top, &mut directories);
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(BuiltTree {
        root: root_digest,
        directories,
        files,
    })
}

/// Encodes a node bottom-up, adding each distinct directory blob once.
fn seal(node: Node, out: &mut Vec<(Digest, Vec<u8>)>) -> Digest {
    let directories = node
        .dirs
        .into_iter()
        .map(|(name, child)| DirectoryNode {
            name,
            digest: Some(seal(child, out)),
        })
        .collect();
    let dir = Directory {
        files: node.files.into_values().collect(),
        directories,
    };
    let bytes = encode_directory(&dir);
    let digest = digest_of(&bytes);
    if !out.iter().any(|(d, _)| d.hash == digest.hash) {
        out.push((digest.clone(), bytes));
    }
    digest
}

#[cfg(unix)]
fn is_executable(metadata: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    metadata.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_metadata: &std::fs::Metadata) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::decode_directory;

    fn write(root: &Path, rel: &str, content: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    #[test]
    fn equal_trees_equal_digests_and_ignores_are_honoured() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for root in [a.path(), b.path()] {
            write(root, "src/pkg/__init__.py", "x = 1\n");
            write(root, "tests/test_a.py", "def test(): pass\n");
            write(root, ".gitignore", "build/\n*.pyc\n");
            write(root, "build/out.txt", "ignored");
            write(root, "src/pkg/m.pyc", "ignored");
            write(root, ".git/HEAD", "ref");
        }
        let ta = build_tree(a.path(), |_| {}).unwrap();
        let tb = build_tree(b.path(), |_| {}).unwrap();
        assert_eq!(ta.root, tb.root);
        let paths: Vec<_> = ta.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![".gitignore", "src/pkg/__init__.py", "tests/test_a.py"]
        );
        // root, src, src/pkg, tests
        assert_eq!(ta.directories.len(), 4);
        for (d, bytes) in &ta.directories {
            assert_eq!(&digest_of(bytes), d);
            decode_directory(bytes, "w").unwrap();
        }
        write(b.path(), "tests/test_a.py", "def test(): assert 1\n");
        let tb2 = build_tree(b.path(), |_| {}).unwrap();
        assert_ne!(ta.root, tb2.root);
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_inside_are_followed_outside_refused() {
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "secret", "s");
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "real.py", "r");
        std::os::unix::fs::symlink("real.py", root.path().join("link.py")).unwrap();
        let t = build_tree(root.path(), |_| {}).unwrap();
        assert_eq!(t.files.len(), 2);
        assert_eq!(t.files[0].digest, t.files[1].digest);
        std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("out")).unwrap();
        let err = build_tree(root.path(), |_| {}).unwrap_err();
        assert!(matches!(err, BuildError::SymlinkOutside { .. }), "{err}");
    }
}
