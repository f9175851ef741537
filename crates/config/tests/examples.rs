//! Every file in the repository's `config/` folder must load and validate, so an example that
//! drifts from the schema fails the build instead of misleading an operator.

use std::path::{Path, PathBuf};

use pgcordon_config::{load, IdentitySource, PoolMode};

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config")
}

fn examples() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(example_dir())
        .expect("config/ exists")
        .map(|entry| entry.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_validates() {
    let files = examples();
    let names: Vec<String> = files
        .iter()
        .filter_map(|p| p.file_name())
        .map(|n| n.to_string_lossy().into())
        .collect();
    for expected in [
        "minimal.yaml",
        "pgcordon.yaml",
        "session-pooling.yaml",
        "subject-attribute.yaml",
        "subject-cn.yaml",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "config/{expected} is missing: {names:?}"
        );
    }

    for file in &files {
        let config =
            load(file).unwrap_or_else(|e| panic!("{} does not validate:\n{e}", file.display()));
        let summary = config.summary();
        assert!(summary.contains("listen: "), "{summary}");
    }
}

#[test]
fn examples_show_what_their_names_promise() {
    let dir = example_dir();

    let session = load(&dir.join("session-pooling.yaml")).unwrap();
    assert_eq!(session.pool.mode, PoolMode::Session);
    // Relative paths in the example resolve next to the file.
    assert_eq!(session.tls.cert, dir.join("tls/server.crt"));

    let cn = load(&dir.join("subject-cn.yaml")).unwrap();
    assert_eq!(cn.identity.from, IdentitySource::SubjectCn);
    let uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";
    assert_eq!(cn.identity.pattern.extract(uuid), Some(uuid));
    assert_eq!(cn.identity.pattern.extract("db.internal"), None);

    let attribute = load(&dir.join("subject-attribute.yaml")).unwrap();
    let IdentitySource::SubjectAttribute(ou) = &attribute.identity.from else {
        panic!("subject-attribute.yaml should use subject_attribute");
    };
    assert_eq!((ou.name.as_str(), ou.oid.as_str()), ("OU", "2.5.4.11"));
    assert_eq!(attribute.identity.pattern.extract("tenant-42"), Some("42"));

    let full = load(&dir.join("pgcordon.yaml")).unwrap();
    assert_eq!(full.listen.len(), 2);
    assert_eq!(full.tls.crl.len(), 1);
    assert_eq!(full.pool.min_idle, 5);
}
