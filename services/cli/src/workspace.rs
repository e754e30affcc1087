//! `testrunner run --workspace DIR`: hash the checkout, expand the test
//! patterns over its files, and upload only the blobs the coordinator lacks.
//!
//! The tree and its digests come from `testrunner-content`, the crate the
//! coordinator and runners verify with. Small blobs go in batches of at
//! most 4 MiB; larger ones in 1 MiB `WriteBlob` chunks read from disk one
//! at a time, continuing from what the coordinator says it has.

use std::io::{IsTerminal as _, Read as _};
use std::path::Path;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use testrunner_content::{BATCH_BYTES, BuiltTree, CHUNK_BYTES, FIND_MISSING_MAX, build_tree};
use testrunner_proto::v1::content_service_client::ContentServiceClient;
use testrunner_proto::v1::{
    BatchUploadBlobsRequest, Digest, FindMissingBlobsRequest, WriteBlobRequest,
    batch_upload_blobs_request,
};
use tonic::transport::Channel;

/// What an upload did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sent {
    pub files: u64,
    pub bytes: u64,
    pub files_present: u64,
}

/// A pattern that matched no file (exit 2, naming it).
#[derive(Debug, thiserror::Error)]
#[error("pattern {0:?} matches no file of the workspace")]
pub struct NoMatch(pub String);

/// Hashes `dir` (a progress spinner on a terminal).
pub fn hash(dir: &Path) -> anyhow::Result<BuiltTree> {
    let bar = progress(None, "hashing");
    let tree = build_tree(dir, |n| bar.inc(n))
        .with_context(|| format!("reading the workspace {}", dir.display()))?;
    bar.finish_and_clear();
    Ok(tree)
}

/// The default suite of a workspace: its directory's name, canonicalised
/// (so `.` names the directory it is).
pub fn suite_name(dir: &Path) -> anyhow::Result<String> {
    let full = dir
        .canonicalize()
        .with_context(|| format!("reading the workspace {}", dir.display()))?;
    Ok(full
        .file_name()
        .map_or_else(|| "/".to_owned(), |n| n.to_string_lossy().into_owned()))
}

/// The tests the patterns name, in order, each once: a pattern is a path
/// or glob relative to the workspace root (`*` stays within a directory,
/// `**` crosses them), optionally followed by `::selector`.
pub fn expand(tree: &BuiltTree, patterns: &[String]) -> Result<Vec<String>, anyhow::Error> {
    let mut out: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for pattern in patterns {
        let (path, selector) = testrunner_content::split_selector(pattern);
        let path = path.strip_prefix("./").unwrap_or(path);
        let glob = globset::GlobBuilder::new(path)
            .literal_separator(true)
            .build()
            .with_context(|| format!("pattern {pattern:?}"))?
            .compile_matcher();
        let mut matched: Vec<&str> = tree
            .files
            .iter()
            .map(|f| f.path.as_str())
            .filter(|p| glob.is_match(p))
            .collect();
        if matched.is_empty() {
            return Err(NoMatch(pattern.clone()).into());
        }
        matched.sort_unstable();
        for m in matched {
            let name = match selector {
                Some(s) => format!("{m}::{s}"),
                None => m.to_owned(),
            };
            if seen.insert(name.clone()) {
                out.push(name);
            }
        }
    }
    Ok(out)
}

/// Uploads what the coordinator lacks of `tree`.
pub async fn upload(
    client: &mut ContentServiceClient<Channel>,
    token: Option<&Token>,
    tree: &BuiltTree,
) -> anyhow::Result<Sent> {
    // Every blob: directories (in memory) and files (on disk).
    enum Source<'a> {
        Memory(&'a [u8]),
        File(&'a Path),
    }
    let mut blobs: Vec<(&Digest, Source<'_>, bool)> = Vec::new();
    for (d, bytes) in &tree.directories {
        blobs.push((d, Source::Memory(bytes), false));
    }
    for f in &tree.files {
        blobs.push((&f.digest, Source::File(&f.source), true));
    }
    let mut missing = std::collections::HashSet::new();
    for part in blobs.chunks(FIND_MISSING_MAX) {
        let answer = client
            .find_missing_blobs(authed(
                token,
                FindMissingBlobsRequest {
                    blob_digests: part.iter().map(|(d, _, _)| (*d).clone()).collect(),
                },
            ))
            .await
            .map_err(crate::commands::status_err)?
            .into_inner();
        missing.extend(answer.missing_blob_digests.into_iter().map(|d| d.hash));
    }
    let mut sent = Sent::default();
    let mut todo = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (d, source, is_file) in blobs {
        if !seen.insert(&d.hash) {
            continue;
        }
        if missing.contains(&d.hash) {
            if is_file {
                sent.files += 1;
                sent.bytes += d.size_bytes as u64;
            }
            todo.push((d, source));
        } else if is_file {
            sent.files_present += 1;
        }
    }
    let total: u64 = todo.iter().map(|(d, _)| d.size_bytes as u64).sum();
    let bar = progress(Some(total), "uploading");
    let mut batch: Vec<batch_upload_blobs_request::Request> = Vec::new();
    let mut batch_bytes = 0usize;
    for (d, source) in todo {
        let size = d.size_bytes as usize;
        if size > CHUNK_BYTES {
            let path = match source {
                Source::File(p) => p,
                Source::Memory(_) => anyhow::bail!("a directory blob over 1 MiB"),
            };
            write_chunked(client, token, d, path, &bar).await?;
            continue;
        }
        let data = match source {
            Source::Memory(b) => b.to_vec(),
            Source::File(p) => {
                std::fs::read(p).with_context(|| format!("reading {}", p.display()))?
            }
        };
        if batch_bytes + data.len() > BATCH_BYTES - 64 * 1024 && !batch.is_empty() {
            send_batch(client, token, std::mem::take(&mut batch), &bar).await?;
            batch_bytes = 0;
        }
        batch_bytes += data.len();
        batch.push(batch_upload_blobs_request::Request {
            digest: Some(d.clone()),
            data,
        });
    }
    if !batch.is_empty() {
        send_batch(client, token, batch, &bar).await?;
    }
    bar.finish_and_clear();
    Ok(sent)
}

type Token = tonic::metadata::MetadataValue<tonic::metadata::Ascii>;

/// A request with the API token, when there is one.
fn authed<T>(token: Option<&Token>, message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    if let Some(t) = token {
        r.metadata_mut().insert("authorization", t.clone());
    }
    r
}

async fn send_batch(
    client: &mut ContentServiceClient<Channel>,
    token: Option<&Token>,
    batch: Vec<batch_upload_blobs_request::Request>,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let bytes: u64 = batch.iter().map(|r| r.data.len() as u64).sum();
    let answer = client
        .batch_upload_blobs(authed(token, BatchUploadBlobsRequest { requests: batch }))
        .await
        .map_err(crate::commands::status_err)?
        .into_inner();
    for r in answer.responses {
        if r.code != 0 {
            let d = r.digest.unwrap_or_default();
            anyhow::bail!(
                "uploading {}/{}: {} (did the file change while uploading?)",
                d.hash,
                d.size_bytes,
                r.message
            );
        }
    }
    bar.inc(bytes);
    Ok(())
}

/// Uploads a large file in chunks, continuing from what the coordinator
/// already has of it (an earlier cut upload, or another client's).
async fn write_chunked(
    client: &mut ContentServiceClient<Channel>,
    token: Option<&Token>,
    d: &Digest,
    path: &Path,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    use std::io::{Seek as _, SeekFrom};
    let mut file =
        std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut offset = 0i64;
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        file.seek(SeekFrom::Start(offset as u64))?;
        let want = ((d.size_bytes - offset) as usize).min(CHUNK_BYTES);
        file.read_exact(&mut buf[..want])
            .with_context(|| format!("reading {}", path.display()))?;
        let answer = client
            .write_blob(authed(
                token,
                WriteBlobRequest {
                    digest: Some(d.clone()),
                    offset,
                    data: buf[..want].to_vec(),
                },
            ))
            .await
            .map_err(crate::commands::status_err)
            .with_context(|| format!("uploading {}", path.display()))?
            .into_inner();
        bar.inc((answer.committed_size - offset).max(0) as u64);
        if answer.complete {
            return Ok(());
        }
        offset = answer.committed_size;
    }
}

/// A progress bar on a terminal (stderr), hidden otherwise.
fn progress(total: Option<u64>, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                .expect("a valid template")
                .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {msg} {bytes} {bytes_per_sec}")
                .expect("a valid template"),
        ),
    };
    bar.set_message(what.to_owned());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_expand_over_the_workspace_files() {
        let dir = tempfile::tempdir().unwrap();
        for p in [
            "tests/test_a.py",
            "tests/unit/test_b.py",
            "src/x.py",
            "test_top.py",
        ] {
            let f = dir.path().join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, p).unwrap();
        }
        let tree = build_tree(dir.path(), |_| {}).unwrap();
        let got = |p: &[&str]| expand(&tree, &p.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(got(&["tests/*.py"]).unwrap(), vec!["tests/test_a.py"]);
        assert_eq!(
            got(&["tests/**/test_*.py"]).unwrap(),
            vec!["tests/test_a.py", "tests/unit/test_b.py"]
        );
        assert_eq!(
            got(&["./tests/test_a.py::TestX", "tests/test_a.py::TestX"]).unwrap(),
            vec!["tests/test_a.py::TestX"]
        );
        let err = got(&["tests/*.py", "nothing/*.rs"]).unwrap_err();
        assert!(err.to_string().contains("\"nothing/*.rs\""), "{err}");
    }
}
