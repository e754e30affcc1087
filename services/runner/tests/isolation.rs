//! Tests are untrusted code: each hole a test could use, tried by a real
//! test file on a real runner process. On this project's CI the tests run
//! as root, so a runner runs its tests as per-slot users by default; the
//! `--test-user runner` path and a runner started as an unprivileged user
//! (through `setpriv`) are tried too.

use std::path::Path;
use std::time::Duration;

use testkit::Backend;
use testkit::e2e::*;
use testrunner_proto::v1::{test, testrun};

/// The token, nowhere in a test's log.
fn assert_no_token(log: &[String]) {
    let text = log.join("\n");
    assert!(!text.contains(TOKEN), "the token leaked: {text}");
}

/// Reads the runner's environment through /proc, as issue 17 found.
const READ_ENVIRON: &str = "tr '\\0' '\\n' < /proc/$PPID/environ | grep -i token || echo 'environ: no token'\necho uid=$(id -u)\n";

/// A token file only the runner's user (root) may read.
fn token_file(dir: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join("runner.token");
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_test_can_read_neither_the_runners_environment_nor_its_token_file() {
    let coord = Coordinator::start(Backend::Sqlite, &[]).await;
    let secrets = shared_dir();
    let token_path = token_file(secrets.path());
    // One runner with the token in its environment, one with a file.
    let _env = Runner::start(&coord, "env", 2);
    let _file = Runner::start_as(&coord, "file", 2, &[], &[], Some(&token_path));
    let mut client = coord.client().await;
    let steal_file = format!(
        "cat {} || echo 'token file: unreadable'\n",
        token_path.display()
    );
    let files = (0..4)
        .map(|i| {
            file(
                &format!("steal{i}.sh"),
                &format!("{READ_ENVIRON}{steal_file}"),
            )
        })
        .collect();
    let run = create(&mut client, files, None, None).await;
    let run = wait_done(&mut client, run.id).await;
    assert_eq!(run.status, testrun::Status::Success as i32, "{run:#?}");
    for t in &run.tests {
        let log = log_of(&mut client, run.id, &t.name).await;
        assert_no_token(&log);
        assert!(log.contains(&"environ: no token".to_owned()), "{log:?}");
        if root() {
            // As root the runner gives each slot an unprivileged uid.
            assert!(
                log.contains(&"token file: unreadable".to_owned()),
                "{log:?}"
            );
            let uid: u32 = log
                .iter()
                .find_map(|l| l.strip_prefix("uid="))
                .unwrap()
                .parse()
                .unwrap();
            assert!(
                (100_000..100_002).contains(&uid),
                "a per-slot uid, not {uid}: {log:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_tests_run_as_different_users_and_cannot_read_each_others_directories() {
    if !root() {
        eprintln!(
            "skipped: per-slot users need a root runner; this test runs as uid {}",
            nix::unistd::geteuid()
        );
        return;
    }
    let coord = Coordinator::start(Backend::Sqlite, &[]).await;
    let _r = Runner::start(&coord, "r", 2);
    let mut client = coord.client().await;
    let shared = shared_dir();
    let s = shared.path().display();
    // a.sh publishes its directory and waits; b.sh tries to read it.
    let a = format!(
        "echo secret > mine\npwd > {s}/a.dir\nid -u > {s}/a.uid\nwhile [ ! -e {s}/b.done ]; do sleep 0.05; done\n"
    );
    let b = format!(
        "while [ ! -e {s}/a.uid ]; do sleep 0.05; done\nid -u\ncat $(cat {s}/a.dir)/mine || echo 'a: unreadable'\ntouch {s}/b.done\n"
    );
    let run = create(
        &mut client,
        vec![file("a.sh", &a), file("b.sh", &b)],
        None,
        None,
    )
    .await;
    let run = wait_done(&mut client, run.id).await;
    assert_eq!(run.status, testrun::Status::Success as i32, "{run:#?}");
    let log = log_of(&mut client, run.id, "b.sh").await;
    let a_uid = std::fs::read_to_string(shared.path().join("a.uid")).unwrap();
    assert_ne!(log[0], a_uid.trim(), "two slots, two uids");
    assert!(log.contains(&"a: unreadable".to_owned()), "{log:?}");
    assert!(!log.contains(&"secret".to_owned()), "{log:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_test_user_runner_tests_run_as_the_runners_user_and_still_get_no_token() {
    let coord = Coordinator::start(Backend::Sqlite, &[]).await;
    let _r = Runner::start_with(&coord, "r", 1, &["--test-user", "runner"]);
    let mut client = coord.client().await;
    let run = create(&mut client, vec![file("t.sh", READ_ENVIRON)], None, None).await;
    let run = wait_done(&mut client, run.id).await;
    assert_eq!(run.status, testrun::Status::Success as i32, "{run:#?}");
    let log = log_of(&mut client, run.id, "t.sh").await;
    // Today's behaviour: the runner's uid. Even root, which may read a
    // non-dumpable process's environ, finds the token's bytes wiped.
    let me = nix::unistd::geteuid().as_raw();
    assert!(log.contains(&format!("uid={me}")), "{log:?}");
    assert_no_token(&log);
}

/// A script leaving a `setsid` daemon, a double-forked process and a
/// SIGTERM-ignoring grandchild in a session of its own, recording their
/// pids in `dir`, then exiting 0.
fn leaver(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "setsid sh -c 'echo $$ > {d}/daemon.pid; exec sleep 3124746' &\n\
         ( (sleep 3124747 & echo $! > {d}/dfork.pid) & )\n\
         setsid sh -c 'trap \"\" TERM; echo $$ > {d}/stubborn.pid; while :; do sleep 1; done' &\n\
         while [ ! -s {d}/daemon.pid ] || [ ! -s {d}/dfork.pid ] || [ ! -s {d}/stubborn.pid ]; do sleep 0.05; done\n\
         echo left three behind\n"
    )
}

async fn nothing_outlives_its_test(runner_args: &[&str], wrapper: &[&str]) {
    let coord = Coordinator::start(Backend::Sqlite, &[]).await;
    let dir = shared_dir();
    let r = Runner::start_as(&coord, "r", 1, runner_args, wrapper, None);
    let mut client = coord.client().await;
    let run = create(
        &mut client,
        vec![file("leaver.sh", &leaver(dir.path()))],
        None,
        None,
    )
    .await;
    let run = wait_done(&mut client, run.id).await;
    assert_eq!(
        run.status,
        testrun::Status::Success as i32,
        "{run:#?}\nrunner log: {}",
        r.log()
    );
    let pids: Vec<i32> = ["daemon", "dfork", "stubborn"]
        .iter()
        .map(|n| {
            std::fs::read_to_string(dir.path().join(format!("{n}.pid")))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        })
        .collect();
    let log = log_of(&mut client, run.id, "leaver.sh").await;
    let last = log.last().cloned().unwrap_or_default();
    let killed: usize = last
        .strip_prefix("[testrunner] killed ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the log ends with the leftovers killed: {log:?}"));
    // The three, and what they were starting when caught (the `sleep`
    // under the stubborn loop, a shell between fork and exec).
    assert!((3..=8).contains(&killed), "{log:?}");
    eventually(
        "every leftover to be gone",
        Duration::from_secs(10),
        async || {
            let left: Vec<i32> = pids.iter().copied().filter(|p| alive(*p)).collect();
            if left.is_empty() { Ok(()) } else { Err(left) }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_setsid_daemon_a_double_fork_and_a_sigterm_ignoring_grandchild_die_with_their_test() {
    // Default: a cgroup per test where the runner may create one.
    nothing_outlives_its_test(&[], &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_cgroups_leftovers_are_found_by_their_uid_or_in_proc() {
    nothing_outlives_its_test(&["--test-cgroups", "off", "--test-uid-base", "210000"], &[]).await;
    nothing_outlives_its_test(&["--test-cgroups", "off", "--test-user", "runner"], &[]).await;
}

/// `setpriv` to an unprivileged uid, or `None` when this machine cannot.
fn unprivileged() -> Option<Vec<&'static str>> {
    let available = std::process::Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    (root() && available).then(|| {
        vec![
            "setpriv",
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ]
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runner_running_as_an_unprivileged_user_keeps_its_token_and_its_leftovers_in_hand() {
    let Some(wrapper) = unprivileged() else {
        eprintln!("skipped: cannot start the runner as another user here (needs root and setpriv)");
        return;
    };
    nothing_outlives_its_test(&[], &wrapper).await;
    let coord = Coordinator::start(Backend::Sqlite, &[]).await;
    let _r = Runner::start_as(&coord, "nobody", 1, &[], &wrapper, None);
    let mut client = coord.client().await;
    let run = create(&mut client, vec![file("t.sh", READ_ENVIRON)], None, None).await;
    let run = wait_done(&mut client, run.id).await;
    assert_eq!(run.status, testrun::Status::Success as i32, "{run:#?}");
    let log = log_of(&mut client, run.id, "t.sh").await;
    // Same uid as the runner, yet its /proc entries are closed to it.
    assert!(log.contains(&"uid=65534".to_owned()), "{log:?}");
    assert!(log.contains(&"environ: no token".to_owned()), "{log:?}");
    assert_no_token(&log);

    // The token from a file the runner's user cannot open (root's, 0600),
    // given as its standard input: the test, with the runner's uid, finds
    // neither the file readable nor the token anywhere.
    let secrets = shared_dir();
    let token_path = token_file(secrets.path());
    let redirect = format!("exec \"$@\" < {}", token_path.display());
    let through_stdin = [&["sh", "-c", redirect.as_str(), "sh"], wrapper.as_slice()].concat();
    drop(_r);
    let r = Runner::start_as(
        &coord,
        "stdin",
        1,
        &[],
        &through_stdin,
        Some(Path::new("/dev/stdin")),
    );
    let steal = format!(
        "{READ_ENVIRON}cat {} || echo 'token file: unreadable'\n",
        token_path.display()
    );
    let run = create(&mut client, vec![file("steal.sh", &steal)], None, None).await;
    let run = wait_done(&mut client, run.id).await;
    assert_eq!(
        run.status,
        testrun::Status::Success as i32,
        "{run:#?}\n{}",
        r.log()
    );
    let log = log_of(&mut client, run.id, "steal.sh").await;
    assert_eq!(test_named(&run, "steal.sh").runner, "stdin", "{run:#?}");
    assert!(log.contains(&"uid=65534".to_owned()), "{log:?}");
    assert!(
        log.contains(&"token file: unreadable".to_owned()),
        "{log:?}"
    );
    assert!(log.contains(&"environ: no token".to_owned()), "{log:?}");
    assert_no_token(&log);
}

/// Whether the runner's log says a cgroup bounds `what` (`memory`, `pids`).
fn bounded_by_cgroup(runner_log: &str, what: &str) -> bool {
    // Without the colours of the text log format.
    let mut plain = String::new();
    let mut rest = runner_log;
    while let Some(start) = rest.find('\x1b') {
        plain.push_str(&rest[..start]);
        rest = &rest[start..];
        rest = rest.find('m').map_or("", |end| &rest[end + 1..]);
    }
    plain.push_str(rest);
    plain
        .lines()
        .find(|l| l.contains("test isolation"))
        .and_then(|l| l.split(&format!("{what}=")).nth(1))
        .is_some_and(|rest| rest.split_whitespace().take(4).any(|w| w == "cgroup"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_hog_fails_alone_and_the_runner_and_its_other_slot_carry_on() {
    memory_hog(&[]).await;
    // The rlimit in place of a cgroup.
    memory_hog(&["--test-cgroups", "off", "--test-uid-base", "220000"]).await;
}

async fn memory_hog(extra: &[&str]) {
    let coord = Coordinator::start(Backend::Sqlite, &[]).await;
    let args = [&["--test-memory", "64MiB"], extra].concat();
    let r = Runner::start_with(&coord, "r", 2, &args);
    let mut client = coord.client().await;
    // `tail` keeps a line in memory until it ends: /dev/zero has none.
    let hog = "set -e\nhead -c 1073741824 /dev/zero | tail > /dev/null\necho survived\n";
    let run = create(
        &mut client,
        vec![file("hog.sh", hog), file("calm.sh", "sleep 1\necho calm\n")],
        None,
        Some(60),
    )
    .await;
    let run = wait_done(&mut client, run.id).await;
    assert_eq!(status_of(&run, "calm.sh"), test::Status::Passed, "{run:#?}");
    let hog = test_named(&run, "hog.sh");
    assert_eq!(hog.status, test::Status::Failed as i32, "{run:#?}");
    if bounded_by_cgroup(&r.log(), "memory") {
        assert_eq!(
            hog.error, "killed: out of memory (limit 64 MiB)",
            "{run:#?}"
        );
        let log = log_of(&mut client, run.id, "hog.sh").await;
        assert_eq!(
            log.last().map(String::as_str),
            Some("[testrunner] killed: out of memory (limit 64 MiB)"),
            "{log:?}"
        );
    } else {
        println!(
            "this runner has no memory cgroup (none writable here, or --test-cgroups off): the hog was bounded by RLIMIT_AS \
             (it failed to allocate), so the out-of-memory message was not checked"
        );
    }
    assert_runner_keeps_working(&mut client, &r).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_testruns_memory_limit_kills_a_hog_on_a_runner_without_one() {
    let coord = Coordinator::start(Backend::Sqlite, &[]).await;
    let r = Runner::start(&coord, "r", 2);
    let mut client = coord.client().await;
    let hog = "set -e\nhead -c 1073741824 /dev/zero | tail > /dev/null\necho survived\n";
    let run = client
        .create_testrun(testrunner_proto::v1::CreateTestrunRequest {
            username: "e2e".into(),
            tests: vec![file("hog.sh", hog), file("calm.sh", "sleep 1\necho calm\n")],
            timeout_seconds: Some(60),
            test_memory_bytes: Some(64 << 20),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(run.test_memory_bytes, Some(64 << 20));
    let run = wait_done(&mut client, run.id).await;
    assert_eq!(status_of(&run, "calm.sh"), test::Status::Passed, "{run:#?}");
    let hog = test_named(&run, "hog.sh");
    assert_eq!(
        hog.status,
        test::Status::Failed as i32,
        "{run:#?}\n{}",
        r.log()
    );
    if bounded_by_cgroup(&r.log(), "memory") {
        assert_eq!(
            hog.error, "killed: out of memory (limit 64 MiB)",
            "{run:#?}"
        );
    } else {
        println!(
            "this runner has no memory cgroup here: the Testrun's limit was an RLIMIT_AS (the hog \
             failed to allocate), so the out-of-memory message was not checked"
        );
    }
    assert_runner_keeps_working(&mut client, &r).await;
}

async fn assert_runner_keeps_working(client: &mut Client, r: &Runner) {
    let next = create(client, vec![file("next.sh", "echo next\n")], None, None).await;
    let next = wait_done(client, next.id).await;
    assert_eq!(
        next.status,
        testrun::Status::Success as i32,
        "runner log: {}",
        r.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fork_bomb_is_bounded_by_the_pids_limit_and_killed_with_its_test() {
    fork_bomb(&[]).await;
    if root() {
        // RLIMIT_NPROC in place of a cgroup: it bounds a per-slot uid (and
        // never root, so not the --test-user runner path here).
        // Its own uids: RLIMIT_NPROC counts every process of a uid, also
        // those of other runners' tests running beside this one.
        fork_bomb(&["--test-cgroups", "off", "--test-uid-base", "200000"]).await;
    }
}

async fn fork_bomb(extra: &[&str]) {
    let coord = Coordinator::start(Backend::Sqlite, &[]).await;
    let args = [&["--test-pids", "40"], extra].concat();
    let r = Runner::start_with(&coord, "r", 2, &args);
    let mut client = coord.client().await;
    // Every bomb process starts two more and stays; in a session of its
    // own, so only the clean-up (not the process group) can end it. The
    // test's shell then needs no fork to finish.
    let bomb = "echo still here\nsetsid sh -c 'b() { b & b & sleep 30; }; b' 2>/dev/null &\nexec sleep 2\n";
    let run = create(
        &mut client,
        vec![
            file("bomb.sh", bomb),
            file("calm.sh", "sleep 1\necho calm\n"),
        ],
        None,
        Some(60),
    )
    .await;
    let run = wait_done(&mut client, run.id).await;
    assert_eq!(status_of(&run, "calm.sh"), test::Status::Passed, "{run:#?}");
    let log = log_of(&mut client, run.id, "bomb.sh").await;
    assert_eq!(
        log.first().map(String::as_str),
        Some("still here"),
        "{log:?}"
    );
    let killed: usize = log
        .last()
        .and_then(|l| l.strip_prefix("[testrunner] killed "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the bomb's processes are killed with it: {log:?}"));
    // Bounded: never more than the limit (the test's own shell included).
    assert!((1..40).contains(&killed), "{log:?}");
    println!(
        "fork bomb: {killed} processes killed (pids limit 40, by {})",
        if bounded_by_cgroup(&r.log(), "pids") {
            "cgroup pids.max"
        } else {
            "RLIMIT_NPROC"
        }
    );
    assert_runner_keeps_working(&mut client, &r).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_test_writing_past_the_work_directory_limit_is_stopped_with_a_clear_error() {
    let coord = Coordinator::start(Backend::Sqlite, &[]).await;
    let r = Runner::start_with(&coord, "r", 1, &["--max-workdir-bytes", "1MiB"]);
    let mut client = coord.client().await;
    let filler = "head -c 8388608 /dev/zero > big\necho written\nsleep 30\necho never\n";
    let run = create(&mut client, vec![file("fill.sh", filler)], None, Some(60)).await;
    let run = wait_done(&mut client, run.id).await;
    let t = test_named(&run, "fill.sh");
    assert_eq!(t.status, test::Status::Failed as i32, "{run:#?}");
    assert!(t.error.contains("--max-workdir-bytes (1 MiB"), "{t:#?}");
    let log = log_of(&mut client, run.id, "fill.sh").await;
    assert!(!log.contains(&"never".to_owned()), "{log:?}");
    assert_runner_keeps_working(&mut client, &r).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn closed_output_binary_garbage_and_a_100_mb_line_each_end_clearly() {
    let coord = Coordinator::start(Backend::Sqlite, &[]).await;
    let r = Runner::start_with(&coord, "r", 2, &["--max-line-bytes", "1024"]);
    let mut client = coord.client().await;
    let run = create(
        &mut client,
        vec![
            file("closed.sh", "echo before\nexec >&- 2>&-\nsleep 1\nexit 0\n"),
            file(
                "garbage.sh",
                "head -c 200000 /dev/urandom\necho\necho after\n",
            ),
            file(
                "long.sh",
                "head -c 104857600 /dev/zero | tr '\\0' a\necho\necho after\n",
            ),
        ],
        None,
        Some(120),
    )
    .await;
    let run = wait_done(&mut client, run.id).await;
    assert_eq!(run.status, testrun::Status::Success as i32, "{run:#?}");
    assert_eq!(log_of(&mut client, run.id, "closed.sh").await, ["before"]);
    let garbage = log_of(&mut client, run.id, "garbage.sh").await;
    assert_eq!(garbage.last().map(String::as_str), Some("after"));
    let long = log_of(&mut client, run.id, "long.sh").await;
    assert!(
        long[0].len() < 2048 && long[0].contains("[truncated"),
        "{}",
        &long[0][..100]
    );
    assert_eq!(long.last().map(String::as_str), Some("after"));
    assert_runner_keeps_working(&mut client, &r).await;
}
