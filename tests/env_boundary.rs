//! The Env boundary holds: only env/src/os.rs (`OsEnv`, in the omendb-env crate) may touch
//! std::fs, the system clocks or std::thread. This test fails the build's test run if any
//! other file of the engine or of the env crate does.

use std::path::{Path, PathBuf};

const FORBIDDEN: &[&str] = &[
    "std::fs",
    "Instant::now",
    "SystemTime::now",
    "thread::spawn",
    "std::thread",
    "std::time::Instant",
    "std::time::SystemTime",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read a source directory") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn only_os_env_touches_the_os() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&workspace.join("engine/src"), &mut files);
    rust_files(&workspace.join("env/src"), &mut files);
    assert!(files.len() > 5, "found only {files:?}");
    let allowed = [workspace.join("env/src/os.rs")];
    let mut offenders = Vec::new();
    for file in files {
        if allowed.contains(&file) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for word in FORBIDDEN {
                if code.contains(word) {
                    offenders.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "OS access outside env/os.rs:\n{}",
        offenders.join("\n")
    );
}
