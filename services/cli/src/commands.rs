//! Subcommands and their calls to the coordinator.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use testrunner_proto::v1::content_service_client::ContentServiceClient;
use testrunner_proto::v1::testrun_service_client::TestrunServiceClient;
use testrunner_proto::v1::{
    CancelTestrunRequest, CreateTestrunRequest, DeleteTestrunRequest, GetTestHistoryRequest,
    GetTestLogRequest, GetTestrunRequest, ListSuitesRequest, ListTestCasesRequest,
    ListTestrunsRequest, RerunTestrunRequest, TestFile, WatchTestrunRequest, get_test_log_request,
    testrun, testrun_event::Event,
};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::{cases, output};

/// Command-line client of a TestRunner coordinator.
#[derive(Debug, Parser)]
#[command(name = "testrunner", version, about)]
pub struct Cli {
    /// Coordinator address.
    #[arg(
        long,
        global = true,
        env = "TESTRUNNER_COORDINATOR",
        default_value = "http://127.0.0.1:50051"
    )]
    coordinator: String,

    /// API token for writes, when the coordinator requires one.
    #[arg(
        long,
        global = true,
        env = "TESTRUNNER_API_TOKEN",
        hide_env_values = true
    )]
    api_token: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a Testrun from files and follow it; exit 0 only on SUCCESS.
    ///
    /// With `--workspace DIR`, the arguments are paths or globs relative to
    /// DIR (`'tests/**/test_*.py'`, optionally `::selector`); DIR is
    /// uploaded (honouring .gitignore and .ignore, never .git; only what
    /// the coordinator lacks) and each test runs in its own copy of it.
    Run {
        /// Test files (each becomes one test, named by its file name), or
        /// with `--workspace` patterns over the workspace's files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// A project checkout to run the tests in.
        #[arg(long, value_name = "DIR")]
        workspace: Option<PathBuf>,
        /// Set-up command run once per runner before its first test
        /// (`pip install -e .`); needs --workspace.
        #[arg(long, value_name = "CMD", requires = "workspace")]
        setup: Option<String>,
        /// Variable for every test and the set-up (repeatable).
        #[arg(long = "env", value_name = "K=V", value_parser = parse_env)]
        env: Vec<(String, String)>,
        /// Who runs it (default: $USER).
        #[arg(long, env = "USER", default_value = "cli")]
        user: String,
        /// Command template, e.g. `pytest -q {file}`.
        #[arg(long)]
        command: Option<String>,
        /// Per-test timeout in seconds.
        #[arg(long)]
        timeout: Option<u32>,
        /// A label every runner taking the tests must have (repeatable,
        /// `--selector gpu=a100`): the tests go only to runners started
        /// with all of them (`runner --label gpu=a100`).
        #[arg(long = "selector", value_name = "KEY=VALUE", value_parser = parse_selector)]
        selector: Vec<(String, String)>,
        /// Run a FAILED or TIMED_OUT test up to N more times (0 to 5); one
        /// that then passes ends FLAKY, which counts as passed.
        #[arg(long, value_name = "N", default_value_t = 0)]
        retries: u32,
        /// Print the id and return at once instead of following.
        #[arg(long)]
        detach: bool,
        /// Memory limit per test (`512M`, `2GiB`); a runner applies the
        /// lower of this and its own `--test-memory`.
        #[arg(long, value_name = "SIZE", value_parser = testrunner_content::size::parse_size)]
        test_memory: Option<u64>,
        /// Process limit per test; the lower of this and the runner's wins.
        #[arg(long, value_name = "N")]
        test_pids: Option<u32>,
        /// The suite whose durations order the tests (longest first) and
        /// whose history they add to. Default: the workspace directory's
        /// name with --workspace, else the coordinator's (the username).
        #[arg(long, value_name = "NAME")]
        suite: Option<String>,
    },
    /// Run a finished Testrun again (same workspace, set-up, env, command,
    /// timeouts and retries; nothing is uploaded) and follow it like `run`.
    Rerun {
        id: i64,
        /// Only the tests that did not pass (FAILED, TIMED_OUT, ERROR,
        /// CANCELLED).
        #[arg(long)]
        failed: bool,
        /// Who runs it (default: the original Testrun's user).
        #[arg(long)]
        user: Option<String>,
        /// Print the id and return at once instead of following.
        #[arg(long)]
        detach: bool,
    },
    /// List Testruns, newest first.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        user: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Show one Testrun with its tests.
    Get { id: i64 },
    /// Follow a Testrun until it ends; exit 0 only on SUCCESS.
    Watch { id: i64 },
    /// Print one test's whole log.
    Logs { id: i64, test: String },
    /// Cancel a Testrun.
    Cancel { id: i64 },
    /// Delete a Testrun (cancelling it first if it runs).
    Delete { id: i64 },
    /// List a Testrun's test cases (from its tests' JUnit reports), failed
    /// and errored first.
    Cases {
        id: i64,
        /// Only cases in this status: passed, failed, error or skipped.
        #[arg(long)]
        status: Option<String>,
        /// Only the cases of this test (file name).
        #[arg(long)]
        test: Option<String>,
        /// Only cases whose name or classname contains this.
        #[arg(long)]
        name: Option<String>,
    },
    /// Write a Testrun's results as one JUnit XML document to stdout
    /// (`testrunner junit 42 > results.xml`), for any CI to ingest.
    Junit { id: i64 },
    /// The runner fleet: attached runners, draining one, runner tokens.
    #[command(subcommand)]
    Runners(crate::runners::RunnersCommand),
    /// Show a test's recorded outcomes in a suite, newest first, with its
    /// median duration and the Testruns where it flipped.
    History {
        /// The suite (see `run --suite`).
        #[arg(long)]
        suite: String,
        /// The test's name as submitted.
        name: String,
        /// At most this many outcomes (at most 100).
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// List suites with recorded history, most recently run first.
    Suites {
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

struct Api {
    client: TestrunServiceClient<Channel>,
    token: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl Api {
    async fn get(&mut self, id: i64) -> anyhow::Result<testrunner_proto::v1::Testrun> {
        Ok(self
            .client
            .get_testrun(GetTestrunRequest { id })
            .await
            .map_err(status_err)?
            .into_inner())
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        request
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let channel = tonic::transport::Endpoint::from_shared(cli.coordinator.clone())
        .context("--coordinator is not a URL")?
        .connect()
        .await
        .with_context(|| format!("connecting to {}", cli.coordinator))?;
    let token = match &cli.api_token {
        Some(t) => Some(
            format!("Bearer {t}")
                .parse()
                .context("the API token is not valid metadata")?,
        ),
        None => None,
    };
    let mut api = Api {
        // Live logs come gzipped when the coordinator offers it (each
        // event is compressed once for all its watchers).
        client: TestrunServiceClient::new(channel.clone())
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(256 << 20),
        token,
    };
    match cli.command {
        Command::Runners(command) => {
            crate::runners::run(channel, api.token.as_ref(), command).await
        }
        Command::Run {
            files,
            workspace: Some(dir),
            setup,
            env,
            user,
            command,
            timeout,
            selector,
            retries,
            detach,
            test_memory,
            test_pids,
            suite,
        } => {
            let suite = match suite {
                Some(s) => s,
                None => crate::workspace::suite_name(&dir)?,
            };
            let patterns: Vec<String> = files
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            let tree = crate::workspace::hash(&dir)?;
            let names = crate::workspace::expand(&tree, &patterns)?;
            let mut content = ContentServiceClient::new(channel.clone())
                .max_decoding_message_size(16 << 20)
                .max_encoding_message_size(16 << 20);
            let sent = crate::workspace::upload(&mut content, api.token.as_ref(), &tree).await?;
            eprintln!(
                "workspace {}: {} files, {} bytes; sent {} files ({} bytes), {} already there",
                tree.root.hash,
                tree.files.len(),
                tree.file_bytes(),
                sent.files,
                sent.bytes,
                sent.files_present
            );
            let request = api.request(CreateTestrunRequest {
                username: user,
                tests: names
                    .into_iter()
                    .map(|name| TestFile {
                        name,
                        content: String::new(),
                    })
                    .collect(),
                command,
                timeout_seconds: timeout,
                workspace: Some(tree.root.clone()),
                setup,
                env: env.into_iter().collect(),
                test_memory_bytes: test_memory,
                test_pids,
                suite: Some(suite),
                selector: selector.into_iter().collect(),
                retries,
                ..CreateTestrunRequest::default()
            });
            create_and_follow(&mut api, Create::New(request), detach).await
        }
        Command::Run {
            files,
            workspace: None,
            env,
            user,
            command,
            timeout,
            selector,
            retries,
            detach,
            test_memory,
            test_pids,
            suite,
            ..
        } => {
            let mut tests = Vec::with_capacity(files.len());
            for path in &files {
                let content = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .with_context(|| format!("{} has no file name", path.display()))?;
                tests.push(TestFile { name, content });
            }
            let request = api.request(CreateTestrunRequest {
                username: user,
                tests,
                command,
                timeout_seconds: timeout,
                env: env.into_iter().collect(),
                test_memory_bytes: test_memory,
                test_pids,
                suite,
                selector: selector.into_iter().collect(),
                retries,
                ..CreateTestrunRequest::default()
            });
            create_and_follow(&mut api, Create::New(request), detach).await
        }
        Command::Rerun {
            id,
            failed,
            user,
            detach,
        } => {
            let request = api.request(RerunTestrunRequest {
                id,
                only_failed: failed,
                username: user,
            });
            create_and_follow(&mut api, Create::Rerun(request), detach).await
        }
        Command::List {
            status: s,
            user,
            limit,
        } => {
            let status = match s {
                Some(s) => Some(
                    testrun::Status::from_str_name(&s.to_uppercase())
                        .with_context(|| format!("--status {s}: not a Testrun status"))?
                        as i32,
                ),
                None => None,
            };
            let page = api
                .client
                .list_testruns(ListTestrunsRequest {
                    page_size: limit,
                    page_token: String::new(),
                    status,
                    username: user,
                })
                .await
                .map_err(status_err)?
                .into_inner();
            for r in &page.testruns {
                println!("{}", output::run_line(r));
            }
            eprintln!("{} of {} testruns", page.testruns.len(), page.total_size);
            Ok(ExitCode::SUCCESS)
        }
        Command::Get { id } => {
            print!("{}", output::run_details(&api.get(id).await?));
            Ok(ExitCode::SUCCESS)
        }
        Command::Watch { id } => follow(&mut api, id).await,
        Command::Logs { id, test } => {
            let mut offset = 0;
            loop {
                let page = api
                    .client
                    .get_test_log(GetTestLogRequest {
                        testrun_id: id,
                        test: Some(get_test_log_request::Test::TestName(test.clone())),
                        offset,
                        limit: 10_000,
                    })
                    .await
                    .map_err(status_err)?
                    .into_inner();
                if page.lines.is_empty() {
                    return Ok(ExitCode::SUCCESS);
                }
                for line in &page.lines {
                    println!("{line}");
                }
                offset = page.next_offset;
            }
        }
        Command::Cancel { id } => {
            let request = api.request(CancelTestrunRequest { id });
            let r = api
                .client
                .cancel_testrun(request)
                .await
                .map_err(status_err)?
                .into_inner();
            println!("testrun {} {}", r.id, output::run_status(r.status));
            Ok(ExitCode::SUCCESS)
        }
        Command::Cases {
            id,
            status,
            test,
            name,
        } => {
            let status = match status {
                Some(s) => Some(
                    testrunner_proto::v1::test_case::Status::from_str_name(&s.to_uppercase())
                        .with_context(|| {
                            format!(
                                "--status {s}: not a case status (passed, failed, error, skipped)"
                            )
                        })? as i32,
                ),
                None => None,
            };
            let test_id = match test {
                Some(name) => Some(
                    api.get(id)
                        .await?
                        .tests
                        .iter()
                        .find(|t| t.name == name)
                        .map(|t| t.id)
                        .with_context(|| format!("--test {name}: no such test in testrun {id}"))?,
                ),
                None => None,
            };
            let request = ListTestCasesRequest {
                testrun_id: id,
                test_id,
                status,
                name_contains: name,
                page_size: 1000,
                page_token: String::new(),
            };
            let found = cases::fetch(&mut api.client, request, |_, _| false)
                .await
                .map_err(status_err)?;
            for case in &found {
                print!("{}", cases::case_lines(case));
            }
            eprintln!("{} cases", found.len());
            Ok(ExitCode::SUCCESS)
        }
        Command::Junit { id } => {
            let run = api.get(id).await?;
            let request = ListTestCasesRequest {
                testrun_id: id,
                page_size: 1000,
                ..Default::default()
            };
            let all = cases::fetch(&mut api.client, request, |_, _| false)
                .await
                .map_err(status_err)?;
            let xml = cases::junit_document(&run, &all).context("writing the JUnit document")?;
            print!("{xml}");
            Ok(ExitCode::SUCCESS)
        }
        Command::History { suite, name, limit } => {
            let history = api
                .client
                .get_test_history(GetTestHistoryRequest { suite, name, limit })
                .await
                .map_err(status_err)?
                .into_inner();
            print!("{}", output::history(&history));
            Ok(ExitCode::SUCCESS)
        }
        Command::Suites { limit } => {
            let page = api
                .client
                .list_suites(ListSuitesRequest {
                    page_size: limit,
                    page_token: String::new(),
                })
                .await
                .map_err(status_err)?
                .into_inner();
            for s in &page.suites {
                println!("{}", output::suite_line(s));
            }
            eprintln!("{} suites", page.suites.len());
            Ok(ExitCode::SUCCESS)
        }
        Command::Delete { id } => {
            let request = api.request(DeleteTestrunRequest { id });
            api.client
                .delete_testrun(request)
                .await
                .map_err(status_err)?;
            println!("testrun {id} deleted");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// How a Testrun comes to be: created from files, or rerun. Built once
/// per command, so its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Create {
    New(tonic::Request<CreateTestrunRequest>),
    Rerun(tonic::Request<RerunTestrunRequest>),
}

/// Creates the Testrun, then prints its id (`--detach`) or follows it.
async fn create_and_follow(api: &mut Api, how: Create, detach: bool) -> anyhow::Result<ExitCode> {
    let run = match how {
        Create::New(request) => api.client.create_testrun(request).await,
        Create::Rerun(request) => api.client.rerun_testrun(request).await,
    }
    .map_err(status_err)?
    .into_inner();
    match run.rerun_of {
        Some(of) => eprintln!(
            "testrun {} created with {} tests (rerun of {of})",
            run.id,
            run.tests.len()
        ),
        None => eprintln!("testrun {} created with {} tests", run.id, run.tests.len()),
    }
    if detach {
        println!("{}", run.id);
        return Ok(ExitCode::SUCCESS);
    }
    follow(api, run.id).await
}

/// Follows a Testrun, printing `[test] line` for every log line, and
/// resuming from the last cursor if the stream drops.
async fn follow(api: &mut Api, id: i64) -> anyhow::Result<ExitCode> {
    let mut cursor = 0;
    let mut final_state = None;
    let mut names: HashMap<i64, String> = HashMap::new();
    let mut retries = 0;
    // What the Testrun waits for, as last printed.
    let mut waiting = String::new();
    loop {
        let mut stream = match api
            .client
            .watch_testrun(WatchTestrunRequest {
                id,
                after: cursor,
                from_end: false,
            })
            .await
        {
            Ok(s) => s.into_inner(),
            Err(s) if s.code() == tonic::Code::Unavailable && retries < 30 => {
                retries += 1;
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
            Err(s) => return Err(status_err(s)),
        };
        loop {
            match stream.message().await {
                Ok(Some(event)) => {
                    retries = 0;
                    cursor = cursor.max(event.cursor);
                    match event.event {
                        Some(Event::Snapshot(r)) => {
                            print_waiting(&mut waiting, &r.waiting);
                            for t in &r.tests {
                                names.insert(t.id, t.name.clone());
                            }
                            final_state = Some(r);
                        }
                        Some(Event::Log(log)) => {
                            for line in &log.lines {
                                println!("[{}] {line}", log.test_name);
                            }
                        }
                        Some(Event::Test(t)) => {
                            use testrunner_proto::v1::test::Status;
                            if t.status == Status::Queued as i32 && t.attempt > 0 {
                                // A failed attempt, queued again.
                                eprintln!("{}", output::retry_line(&t));
                            } else if t.status != Status::Running as i32 {
                                eprintln!("{}", output::test_line(&t));
                            }
                            names.insert(t.id, t.name.clone());
                        }
                        Some(Event::Testrun(r)) => {
                            print_waiting(&mut waiting, &r.waiting);
                            if let Some(state) = &mut final_state {
                                state.status = r.status;
                                state.counts = r.counts;
                            }
                        }
                        Some(Event::Setup(setup)) => eprintln!("{}", output::setup_line(&setup)),
                        None => {}
                    }
                }
                // The run ended and everything was sent.
                Ok(None) => return summary(api, id).await,
                Err(s)
                    if matches!(
                        s.code(),
                        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Internal
                    ) && retries < 30 =>
                {
                    eprintln!(
                        "testrunner: stream lost ({}); resuming from {cursor}",
                        s.message()
                    );
                    retries += 1;
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    break;
                }
                Err(s) => return Err(status_err(s)),
            }
        }
    }
}

async fn summary(api: &mut Api, id: i64) -> anyhow::Result<ExitCode> {
    let r = api.get(id).await?;
    eprint!("{}", output::run_details(&r));
    // Failed cases from the tests' JUnit reports, like pytest's summary.
    eprint!(
        "{}",
        cases::summary(&mut api.client, &r)
            .await
            .map_err(status_err)?
    );
    Ok(if r.status == testrun::Status::Success as i32 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A gRPC error as a user should read it.
/// Says when the Testrun starts or stops waiting for a runner pool.
fn print_waiting(printed: &mut String, now: &str) {
    if now == printed {
        return;
    }
    if now.is_empty() {
        eprintln!("testrunner: no longer {printed}");
    } else {
        eprintln!("testrunner: {now}");
    }
    *printed = now.to_owned();
}

/// `KEY=VALUE` of `--selector`, by the runners' `--label` rule.
fn parse_selector(s: &str) -> Result<(String, String), String> {
    testrunner_content::label::parse_label(s)
}

/// `K=V` of `--env`.
fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?}: expected NAME=VALUE")),
    }
}

pub(crate) fn status_err(s: tonic::Status) -> anyhow::Error {
    if s.code() == tonic::Code::Unauthenticated {
        return anyhow::anyhow!(
            "{} (pass --api-token or set TESTRUNNER_API_TOKEN)",
            s.message()
        );
    }
    anyhow::anyhow!("{:?}: {}", s.code(), s.message())
}
