//! The consensus core stays sans-IO: no async runtime, no SSH, no clocks,
//! threads, files or global randomness. The same code must run unchanged in
//! the daemon and in the deterministic simulation.

use std::fs;
use std::path::Path;

const FORBIDDEN: [&str; 9] =
    ["tokio", "russh", "std::time", "std::thread", "std::fs", "std::net", "thread_rng", "rand::", "SystemTime"];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).expect("readable source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every (file, line number, word) where the core names an I/O facility.
fn violations(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(dir, &mut files);
    let mut found = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).expect("readable source");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for word in FORBIDDEN {
                if code.contains(word) {
                    found.push(format!("{}:{}: {word}", file.display(), n + 1));
                }
            }
        }
    }
    found
}

#[test]
fn the_consensus_core_imports_no_io_runtime_clock_or_global_randomness() {
    let core = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/consensus");
    let found = violations(&core);
    assert!(found.is_empty(), "src/consensus must stay sans-IO:\n{}", found.join("\n"));
}

#[test]
fn the_layering_check_catches_an_import() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::write(dir.path().join("bad.rs"), "use tokio::sync::mpsc;\n// tokio in a comment is fine\n").unwrap();
    let found = violations(dir.path());
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].ends_with("bad.rs:1: tokio"), "{found:?}");
}
