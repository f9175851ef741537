//! Every file in the repository's `config/` folder must load and validate, so an example that
//! drifts from the schema fails the build instead of misleading an operator.

use std::path::{Path, PathBuf};

use pgcordon_config::{load, IdentitySource, PoolMode, ReadYourWrites, RoutingMode};

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
        "replicas.yaml",
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
    let admin = full
        .admin
        .as_ref()
        .expect("the full example opens the admin listener");
    assert_eq!(admin.listen, pgcordon_config::defaults::ADMIN_LISTEN);
    let audit = full
        .audit
        .as_ref()
        .expect("the full example writes an audit trail");
    assert_eq!(audit.output, pgcordon_config::AuditOutput::Stdout);
    assert_eq!(
        full.shutdown.drain_timeout,
        pgcordon_config::defaults::DRAIN_TIMEOUT
    );

    assert_eq!(full.routing.mode, RoutingMode::Off);
    assert!(full.upstream.replicas.is_empty());
    assert!(
        full.guard.allow.is_empty(),
        "the full example keeps the default guard"
    );

    // The minimal example shows the defaults: no admin listener, no audit, no routing.
    let minimal = load(&dir.join("minimal.yaml")).unwrap();
    assert!(minimal.admin.is_none() && minimal.audit.is_none());
    assert_eq!(minimal.routing.mode, RoutingMode::Off);

    let routed = load(&dir.join("replicas.yaml")).unwrap();
    assert_eq!(routed.routing.mode, RoutingMode::Auto);
    assert_eq!(routed.routing.read_your_writes, ReadYourWrites::Identity);
    let replicas: Vec<(&str, &str)> = routed
        .upstream
        .replicas
        .iter()
        .map(|r| (r.name.as_str(), r.server_name.as_str()))
        .collect();
    assert_eq!(
        replicas,
        [
            ("replica-1", "db-replica-1.internal"),
            ("replica-eu-west-2b", "db-replica-2.internal")
        ]
    );
    let summary = routed.summary();
    assert!(
        summary.contains("routing: auto to replica-1 at "),
        "{summary}"
    );
}

/// The keys a section accepts, as the loader itself lists them when it meets an unknown key.
fn keys_of(section: &str, text: &str) -> Vec<String> {
    let error = pgcordon_config::parse(text, Path::new("/x/pgcordon.yaml")).unwrap_err();
    let problem = &error.problems()[0];
    assert_eq!(
        problem.key,
        format!("{section}zz_unknown").trim_start_matches('.')
    );
    let list = problem
        .expected
        .strip_prefix("one of the keys ")
        .expect("a key list");
    list.split(", ").map(str::to_owned).collect()
}

#[test]
fn every_key_is_documented_and_in_the_full_example() {
    let minimal = std::fs::read_to_string(example_dir().join("minimal.yaml")).unwrap();
    let insert = |after: &str, indent: &str| {
        assert!(minimal.contains(after), "minimal.yaml has no {after:?}");
        minimal.replacen(after, &format!("{after}{indent}zz_unknown: 1\n"), 1)
    };
    let sections = [
        ("", format!("{minimal}zz_unknown: 1\n")),
        ("listen[].", insert("  - address: 127.0.0.1:6432\n", "    ")),
        ("tls.", insert("\ntls:\n", "  ")),
        ("identity.", insert("identity:\n", "  ")),
        (
            "identity.proof.",
            minimal.replacen(
                "identity:\n",
                "identity:\n  proof:\n    key_file: k\n    zz_unknown: 1\n",
                1,
            ),
        ),
        ("upstream.", insert("upstream:\n", "  ")),
        ("upstream.tls.", insert("  tls:\n", "    ")),
        (
            "upstream.replicas[].",
            minimal.replacen(
                "  primary: db.internal:5432\n",
                "  primary: db.internal:5432\n  replicas:\n    - address: r.internal:5432\n      \
                 zz_unknown: 1\n",
                1,
            ),
        ),
        ("pool.", format!("{minimal}pool:\n  zz_unknown: 1\n")),
        ("limits.", format!("{minimal}limits:\n  zz_unknown: 1\n")),
        ("log.", format!("{minimal}log:\n  zz_unknown: 1\n")),
        ("admin.", format!("{minimal}admin:\n  zz_unknown: 1\n")),
        ("audit.", format!("{minimal}audit:\n  zz_unknown: 1\n")),
        ("routing.", format!("{minimal}routing:\n  zz_unknown: 1\n")),
        (
            "shutdown.",
            format!("{minimal}shutdown:\n  zz_unknown: 1\n"),
        ),
        ("guard.", format!("{minimal}guard:\n  zz_unknown: 1\n")),
    ];

    let docs = std::fs::read_to_string(example_dir().join("../docs/configuration.md")).unwrap();
    let full = std::fs::read_to_string(example_dir().join("pgcordon.yaml")).unwrap();
    let mut count = 0;
    for (prefix, text) in &sections {
        let error_prefix = prefix.replace("[]", "[0]");
        for key in keys_of(&error_prefix, text) {
            let path = format!("{prefix}{key}");
            assert!(
                docs.contains(&format!("`{path}`")),
                "docs/configuration.md lacks `{path}`"
            );
            assert!(
                full.contains(&format!("{key}:")),
                "config/pgcordon.yaml lacks {path}"
            );
            count += 1;
        }
    }
    // The schema has 67 keys; a much smaller count would mean the key lists were not read.
    assert!(count >= 60, "only {count} keys found");
}
