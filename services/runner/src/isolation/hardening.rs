//! Keeping the runner's credentials out of its tests' reach: the process
//! is made non-dumpable before it reads any secret, the token is read from
//! a file once, and the token's bytes are wiped from the environment block
//! the kernel shows in `/proc/<pid>/environ`.

use std::ffi::CStr;
use std::path::Path;

/// The environment variable that may carry the runner token.
pub const TOKEN_ENV: &CStr = c"TESTRUNNER_RUNNER_TOKEN";

/// Called first thing in `main`, before any secret is read.
///
/// Non-dumpable: the kernel makes `/proc/<runner>/{environ,mem,fd,...}`
/// root-owned and refuses `ptrace`, so a test running as the runner's own
/// user cannot read the token from the runner's memory or environment
/// (ssh-agent does the same). Child subreaper: a test's orphans (a
/// `setsid` daemon, a double fork) are re-parented to the runner instead
/// of init, so they stay visible as the runner's descendants and their
/// exit statuses are reaped here (`procs::reap_orphans`).
pub fn harden_process() {
    use nix::sys::prctl;
    if let Err(e) = prctl::set_dumpable(false) {
        eprintln!("runner: cannot make the process non-dumpable: {e}");
    }
    if let Err(e) = prctl::set_child_subreaper(true) {
        eprintln!("runner: cannot become a child subreaper: {e}");
    }
}

/// Overwrites the value of `TESTRUNNER_RUNNER_TOKEN` in the process's
/// original environment block (what `/proc/<pid>/environ` shows) and
/// removes it from the environment. Must run before any other thread exists.
#[allow(unsafe_code)]
pub fn scrub_token_env() {
    // SAFETY: called from `main` before the runtime or any thread starts,
    // so nothing reads or changes the environment concurrently. `getenv`
    // returns a pointer into the environment block, valid and writable
    // for `strlen` bytes; we overwrite those bytes in place.
    unsafe {
        let value = nix::libc::getenv(TOKEN_ENV.as_ptr());
        if !value.is_null() {
            let len = nix::libc::strlen(value);
            std::ptr::write_bytes(value, b'*', len);
        }
        std::env::remove_var("TESTRUNNER_RUNNER_TOKEN");
    }
}

/// Whether the token was given as `--token` on the command line, where
/// every process on the machine can read it in `/proc/<pid>/cmdline`.
pub fn token_on_command_line() -> bool {
    std::env::args().any(|a| a == "--token" || a.starts_with("--token="))
}

/// Points descriptor 0 at `/dev/null`.
#[allow(unsafe_code)]
fn replace_stdin_with_null() -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let null = std::fs::File::open("/dev/null")?;
    // SAFETY: dup2 on two valid descriptors; 0 is ours to replace (nothing
    // else reads standard input) and `null` stays open across the call.
    if unsafe { nix::libc::dup2(null.as_raw_fd(), 0) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The token held in `path`: its content without surrounding whitespace.
///
/// `-` or `/dev/stdin` reads the descriptor the runner was started with
/// (`runner --token-file - < token`): a non-root runner whose tests share
/// its uid can so be given a token from a file it could not open itself
/// (opening `/dev/stdin` would reopen that file with the runner's rights).
/// Standard input is then replaced by `/dev/null`, so nothing is left
/// that leads to the file.
pub fn read_token_file(path: &Path) -> anyhow::Result<String> {
    let from_stdin = path == Path::new("-") || path == Path::new("/dev/stdin");
    let text = if from_stdin {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut text)
            .map_err(|e| anyhow::anyhow!("--token-file {}: {e}", path.display()))?;
        replace_stdin_with_null()
            .map_err(|e| anyhow::anyhow!("--token-file {}: closing stdin: {e}", path.display()))?;
        Ok(text)
    } else {
        std::fs::read_to_string(path)
    }
    .map_err(|e| anyhow::anyhow!("--token-file {}: {e}", path.display()))?;
    let token = text.trim().to_owned();
    anyhow::ensure!(
        !token.is_empty(),
        "--token-file {}: the file is empty",
        path.display()
    );
    Ok(token)
}
