//! Finding and parsing the files under `deploy/`.

use std::path::{Path, PathBuf};

use serde_json::Value;

pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// Every file under `deploy/` whose name ends with one of `extensions`, sorted.
pub fn files_with(extensions: &[&str]) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("readable directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut all = Vec::new();
    walk(&deploy_dir(), &mut all);
    all.retain(|p| {
        p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| extensions.contains(&e))
    });
    all.sort();
    all
}

/// The documents of a YAML file, split on `---` lines; documents holding only comments are
/// skipped.
pub fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut documents = Vec::new();
    let mut current = String::new();
    let mut flush = |current: &mut String| {
        let meaningful = current
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
        if meaningful {
            let value: Value = serde_saphyr::from_str(current)
                .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
            documents.push(value);
        }
        current.clear();
    };
    for line in text.lines() {
        if line.trim_end() == "---" {
            flush(&mut current);
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    flush(&mut current);
    documents
}

/// The one YAML document of a single-document file.
pub fn yaml(relative: &str) -> Value {
    let mut documents = yaml_documents(&deploy_dir().join(relative));
    assert_eq!(documents.len(), 1, "{relative} should hold one document");
    documents.remove(0)
}

pub fn json(relative: &str) -> Value {
    let path = deploy_dir().join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()))
}

pub fn text(relative: &str) -> String {
    let path = deploy_dir().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A string field, with a message naming it when absent.
pub fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {value}"))
}

#[test]
fn every_yaml_and_json_file_parses() {
    let yaml_files = files_with(&["yaml", "yml"]);
    let json_files = files_with(&["json"]);
    assert!(yaml_files.len() >= 5, "{yaml_files:?}");
    assert!(!json_files.is_empty());
    for file in &yaml_files {
        let documents = yaml_documents(file);
        assert!(
            !documents.is_empty(),
            "{} holds no document",
            file.display()
        );
        for document in documents {
            assert!(
                document.is_object(),
                "{}: a document is not a mapping",
                file.display()
            );
        }
    }
    for file in &json_files {
        let text = std::fs::read_to_string(file).unwrap();
        let value: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", file.display()));
        assert!(value.is_object(), "{}", file.display());
    }
    // The multi-document file really is split: an Issuer and two Certificates.
    let certificates = yaml_documents(&deploy_dir().join("kubernetes/certificates.yaml"));
    assert_eq!(certificates.len(), 3);
}
