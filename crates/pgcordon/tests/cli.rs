//! The command line of the `pgcordon` binary: exit statuses and the messages an operator sees
//! for a configuration that cannot be used. (These tests also make `cargo test --workspace`
//! build the binary, which the end-to-end tests in tests/ops.rs run.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn pgcordon(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgcordon"))
        .args(args)
        .output()
        .expect("run the pgcordon binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `pgcordon SUBCOMMAND --config PATH`, checks the exit status, returns stderr.
fn refused(subcommand: &str, path: &Path, status: i32) -> (String, Output) {
    let out = pgcordon(&[subcommand, "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(status), "{out:?}");
    (text(&out.stderr), out)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pgcordon-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

#[test]
fn version_names_the_crate_version() {
    let out = pgcordon(&["--version"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        text(&out.stdout).trim(),
        format!("pgcordon {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_missing_subcommand_is_a_usage_error_listing_the_subcommands() {
    let out = pgcordon(&[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = text(&out.stderr);
    for sub in ["run", "check", "demo"] {
        assert!(stderr.contains(sub), "usage lacks {sub}: {stderr}");
    }
}

#[test]
fn check_on_a_missing_file_exits_2_naming_the_file() {
    let dir = scratch("missing");
    let path = dir.join("absent.yaml");
    let (stderr, out) = refused("check", &path, 2);
    assert!(stderr.contains("absent.yaml"), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout for a failed check: {out:?}"
    );
}

#[test]
fn check_on_broken_yaml_exits_2_with_the_line() {
    let dir = scratch("syntax");
    let path = dir.join("broken.yaml");
    std::fs::write(
        &path,
        "listen:\n  - address: 127.0.0.1:6432\n tls: [unclosed\n",
    )
    .unwrap();
    let (stderr, _) = refused("check", &path, 2);
    assert!(stderr.contains("broken.yaml"), "{stderr}");
    assert!(
        stderr.contains("line"),
        "the syntax error names no line: {stderr}"
    );
}

#[test]
fn check_lists_every_missing_required_key() {
    let dir = scratch("keys");
    let path = dir.join("partial.yaml");
    std::fs::write(&path, "listen:\n  - address: 127.0.0.1:6432\n").unwrap();
    let (stderr, _) = refused("check", &path, 2);
    for key in ["tls", "identity", "upstream"] {
        assert!(
            stderr.contains(&format!("{key}: expected a value for this required key")),
            "missing key {key} not reported: {stderr}"
        );
    }
}

#[test]
fn run_with_an_unreadable_config_exits_1_naming_the_file() {
    let dir = scratch("run");
    let path = dir.join("absent.yaml");
    let (stderr, _) = refused("run", &path, 1);
    assert!(stderr.starts_with("pgcordon: "), "{stderr}");
    assert!(stderr.contains("absent.yaml"), "{stderr}");
}
