//! Workspaces as content-addressed blobs (proto/testrunner/v1/content.proto).
//!
//! One crate shared by the CLI (building and uploading a tree), the
//! coordinator (checking a tree before a Testrun uses it) and the runner
//! (verifying what it fetches), so all three agree byte for byte on what a
//! digest is, how a `Directory` is encoded and which trees are valid.
//!
//! - [`digest`]: SHA-256 digests of bytes and streams, and their syntax.
//! - [`tree`]: the rules of a `Directory` (names, order, uniqueness) and its
//!   canonical encoding.
//! - [`build`]: a tree from a directory on disk, honouring `.gitignore` and
//!   `.ignore`, never `.git`, symlinks inside the root followed.
//! - [`path`]: test paths relative to a workspace root.
//! - [`label`]: runner labels and Testrun selectors (one syntax for all).
//! - [`size`]: byte sizes as flags take them and messages print them.

pub mod build;
pub mod digest;
pub mod label;
pub mod path;
pub mod size;
pub mod tree;

pub use build::{BuildError, BuiltTree, TreeFile, build_tree};
pub use digest::{DigestError, DigestWriter, check_digest, digest_of, digest_reader};
pub use path::{PathError, split_selector, validate_test_path};
pub use tree::{TreeError, decode_directory, encode_directory, validate_directory, validate_name};

pub use testrunner_proto::v1::{Digest, Directory, DirectoryNode, FileNode};

/// Largest chunk of a blob sent in one message (WriteBlob, ReadBlob).
pub const CHUNK_BYTES: usize = 1024 * 1024;
/// Largest total of blob data in one BatchUploadBlobs / BatchReadBlobs.
pub const BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Largest number of digests in one FindMissingBlobs request.
pub const FIND_MISSING_MAX: usize = 10_000;
