//! Unknown keys, wrong types, YAML syntax errors and how errors are rendered.

use std::path::Path;

use crate::{ok, plus, problems, refused, with, BASE, ORIGIN};
use pgcordon_config::{parse, ConfigError, Position};

#[test]
fn unknown_keys_are_refused_by_name() {
    let top = refused(
        &plus("pool_size: 5\n"),
        "pool_size",
        "one of the keys listen",
    );
    assert_eq!(top.found, "the unknown key \"pool_size\"");
    assert_eq!(
        top.position,
        Some(Position {
            line: 19,
            column: 1
        })
    );

    let nested = refused(
        &with("  size: 20\n", "  sizee: 20\n"),
        "pool.sizee",
        "one of the keys mode, size",
    );
    assert_eq!(nested.found, "the unknown key \"sizee\"");
    assert_eq!(
        nested.position,
        Some(Position {
            line: 18,
            column: 3
        })
    );

    let deep = with(
        "    ca: /etc/pgcordon/db-ca.crt\n",
        "    ca: /x\n    sni: db\n",
    );
    refused(&deep, "upstream.tls.sni", "server_name");

    let item = with(
        "  - address: 127.0.0.1:6432\n",
        "  - address: 127.0.0.1:6432\n    port: 1\n",
    );
    refused(&item, "listen[0].port", "one of the keys address");
}

#[test]
fn keys_must_be_text() {
    // serde's derived structs read an integer key as a field index; YAML `0:` must not
    // silently mean `listen`.
    let index = BASE.replacen("listen:", "0:", 1);
    let problem = refused(&index, "", "a key name");
    assert_eq!(problem.found, "the integer 0");
    assert_eq!(problem.position, Some(Position { line: 1, column: 1 }));
    let nested = with("  size: 20\n", "  true: 20\n");
    let problem = refused(&nested, "pool", "a key name");
    assert_eq!(problem.found, "the boolean true");
}

#[test]
fn wrong_types_name_the_key_and_the_value() {
    let section = refused(
        &with("pool:\n  size: 20\n", "pool: 5\n"),
        "pool",
        "a mapping",
    );
    assert_eq!(section.found, "the integer 5");

    let list = refused(
        &with(
            "listen:\n  - address: 127.0.0.1:6432\n",
            "listen: 127.0.0.1:6432\n",
        ),
        "listen",
        "a list",
    );
    assert_eq!(list.found, "the string \"127.0.0.1:6432\"");

    let flag = refused(
        &format!("allow_wildcard: 1\n{BASE}"),
        "allow_wildcard",
        "true or false",
    );
    assert_eq!(flag.found, "the integer 1");
    assert_eq!(
        flag.position,
        Some(Position {
            line: 1,
            column: 17
        })
    );

    let path = refused(
        &with("cert: /etc/pgcordon/server.crt", "cert: [a, b]"),
        "tls.cert",
        "a string",
    );
    assert_eq!(path.found, "a list");
}

#[test]
fn an_empty_or_scalar_document_asks_for_the_first_key() {
    refused("", "listen", "required key");
    refused("# nothing here\n", "listen", "required key");
    let scalar = refused("just text\n", "", "a mapping");
    assert_eq!(scalar.found, "the string \"just text\"");
}

#[test]
fn yaml_syntax_errors_carry_the_position() {
    let broken = with("  size: 20\n", "  size: [20\n");
    let error = parse(&broken, Path::new(ORIGIN)).unwrap_err();
    let ConfigError::Syntax {
        position, message, ..
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!(position.map(|p| p.line), Some(18));
    assert!(message.contains("unclosed"), "{message}");
    let rendered = error.to_string();
    assert!(rendered.starts_with(&format!("{ORIGIN}:18:")), "{rendered}");
    assert!(std::error::Error::source(&error).is_some());
}

#[test]
fn duplicate_keys_and_extra_documents_are_syntax_errors() {
    let duplicate = plus("pool:\n  size: 3\n");
    let error = parse(&duplicate, Path::new(ORIGIN)).unwrap_err();
    let ConfigError::Syntax { message, .. } = &error else {
        panic!("{error:?}")
    };
    assert!(message.contains("duplicate"), "{message}");

    let two = format!("{BASE}---\n{BASE}");
    assert!(matches!(
        parse(&two, Path::new(ORIGIN)),
        Err(ConfigError::Syntax { .. })
    ));
}

#[test]
fn anchors_and_aliases_are_followed() {
    let text = BASE.replacen(
        "  database: app\n",
        "  database: &db app\n  client_database: *db\n",
        1,
    );
    assert_eq!(ok(&text).upstream.client_database, "app");

    let merged = format!(
        "defaults: &timeouts\n  acquire_timeout: 2s\n  idle_timeout: 1m\n{}",
        with(
            "pool:\n  size: 20\n",
            "pool:\n  <<: *timeouts\n  idle_timeout: 3m\n"
        )
    );
    // `defaults` is not a pgcordon key: anchors must live inside known keys.
    refused(&merged, "defaults", "one of the keys listen");
    let merged = with(
        "pool:\n  size: 20\n",
        "pool:\n  <<: {acquire_timeout: 2s, idle_timeout: 1m}\n  idle_timeout: 3m\n",
    );
    let pool = ok(&merged).pool;
    assert_eq!(pool.acquire_timeout, std::time::Duration::from_secs(2));
    assert_eq!(pool.idle_timeout, std::time::Duration::from_secs(180));
}

#[test]
fn rendered_errors_are_one_line_per_problem() {
    let text = with("  size: 20\n", "  size: 0\n  min_idle: 2\n").replacen(
        "from: san_uri",
        "from: subject_attribute",
        1,
    );
    let found = problems(&text);
    assert_eq!(found.len(), 2, "{found:#?}");
    let rendered = parse(&text, Path::new(ORIGIN)).unwrap_err().to_string();
    let lines: Vec<&str> = rendered.lines().collect();
    assert_eq!(lines.len(), 2, "{rendered}");
    assert!(
        lines[0].starts_with(&format!("{ORIGIN}:8:3: identity.attribute: expected ")),
        "{rendered}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{ORIGIN}:18:9: pool.size: expected a whole number from 1 to 10000, found 0"
        )),
        "{rendered}"
    );
}

#[test]
fn every_missing_section_is_reported_at_once() {
    let found = problems("listen:\n  - address: 127.0.0.1:6432\n");
    let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["tls", "identity", "upstream"], "{found:#?}");
    for problem in &found {
        assert!(problem.expected.contains("required key"), "{problem:#?}");
        assert_eq!(problem.found, "no such key");
    }
    let all: Vec<String> = problems("log:\n  level: info\n")
        .into_iter()
        .map(|p| p.key)
        .collect();
    assert_eq!(all, ["listen", "tls", "identity", "upstream"]);
}
