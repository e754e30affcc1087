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

/// The token held in `path`: its content without surrounding whitespace.
pub fn read_token_file(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("--token-file {}: {e}", path.display()))?;
    let token = text.trim().to_owned();
    anyhow::ensure!(
        !token.is_empty(),
        "--token-file {}: the file is empty",
        path.display()
    );
    Ok(token)
}
