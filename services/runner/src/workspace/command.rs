//! How a test with a workspace is started: its `name` is a path in the
//! workspace, optionally followed by `::selector`. A command template gets
//! the whole name for `{file}` (the test runs at the root of its copy, so
//! the relative path works); without one, the path part's shebang or
//! extension decides, as for tests without a workspace.

use std::io::Read as _;
use std::path::Path;

/// The path part of a test name.
pub fn path_part(name: &str) -> &str {
    name.split_once("::").map_or(name, |(path, _)| path)
}

/// Program and arguments for the test `name` in the copy at `root`.
/// A program given as a relative path (`.venv/bin/python`) is made
/// absolute against `root`, the test's working directory.
pub fn argv(
    name: &str,
    command: &str,
    root: &Path,
    interpreters: &[(String, Vec<String>)],
) -> Result<Vec<String>, String> {
    let mut argv = if command.trim().is_empty() {
        let path = path_part(name);
        let file = root.join(path);
        let file_str = file.to_string_lossy().into_owned();
        if has_shebang(&file) {
            vec![file_str]
        } else {
            let ext = Path::new(path)
                .extension()
                .map(|e| e.to_string_lossy().into_owned())
                .unwrap_or_default();
            match interpreters.iter().find(|(e, _)| *e == ext) {
                Some((_, cmd)) => {
                    let mut argv = cmd.clone();
                    argv.push(file_str);
                    argv
                }
                None => {
                    return Err(format!(
                        "cannot run {path:?}: no command template, no shebang, and no interpreter for {}",
                        if ext.is_empty() {
                            "files without an extension".to_owned()
                        } else {
                            format!("extension .{ext}")
                        }
                    ));
                }
            }
        }
    } else {
        let words = shell_words::split(command)
            .map_err(|e| format!("command template {command:?}: {e}"))?;
        words.iter().map(|w| w.replace("{file}", name)).collect()
    };
    let Some(program) = argv.first_mut() else {
        return Err("command template is empty".into());
    };
    if program.contains('/') && !program.starts_with('/') {
        *program = root.join(&*program).to_string_lossy().into_owned();
    }
    Ok(argv)
}

fn has_shebang(file: &Path) -> bool {
    let mut head = [0u8; 2];
    std::fs::File::open(file)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && head == *b"#!"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Vec<(String, Vec<String>)> {
        vec![("py".into(), vec!["python3".into()])]
    }

    #[test]
    fn a_template_gets_the_whole_name_and_relative_programs_become_absolute() {
        let root = Path::new("/w");
        assert_eq!(
            argv(
                "tests/test_a.py::TestX",
                ".venv/bin/python -m pytest -q {file}",
                root,
                &table()
            )
            .unwrap(),
            [
                "/w/.venv/bin/python",
                "-m",
                "pytest",
                "-q",
                "tests/test_a.py::TestX"
            ]
        );
        assert_eq!(
            argv("t.py", "python3 {file}", root, &table()).unwrap(),
            ["python3", "t.py"]
        );
    }

    #[test]
    fn without_a_template_the_path_parts_shebang_or_extension_decides() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("t")).unwrap();
        std::fs::write(dir.path().join("t/run"), "#!/bin/sh\necho hi\n").unwrap();
        std::fs::write(dir.path().join("t/a.py"), "print(1)\n").unwrap();
        let root = dir.path();
        assert_eq!(
            argv("t/run", "", root, &table()).unwrap(),
            [root.join("t/run").to_string_lossy()]
        );
        assert_eq!(
            argv("t/a.py::sel", "", root, &table()).unwrap(),
            [
                "python3".to_owned(),
                root.join("t/a.py").to_string_lossy().into_owned()
            ]
        );
        let err = argv("t/a.rb", "", root, &table()).unwrap_err();
        assert!(err.contains(".rb"), "{err}");
    }
}
