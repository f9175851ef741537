//! Validation rules, error messages, defaults and loading, through the public API only.
//!
//! Each test starts from a valid file (`BASE`), changes one thing, and asserts on the key path
//! and the expectation in the resulting error, so a rule that stops firing or an error that
//! stops naming its key fails here.

mod guard;
mod identity;
mod listen_tls;
mod loading;
mod operations;
mod parsing;
mod pool_limits;
mod proof_limits;
mod routing;
mod upstream;

use std::path::Path;

use pgcordon_config::{parse, Config, ConfigError, Problem};

/// A valid configuration with every required key and a few optional ones.
pub const BASE: &str = "\
listen:
  - address: 127.0.0.1:6432
tls:
  cert: /etc/pgcordon/server.crt
  key: /etc/pgcordon/server.key
  client_ca: /etc/pgcordon/client-ca.crt
identity:
  from: san_uri
  pattern: '^spiffe://example\\.org/tenant/([0-9a-f-]{36})$'
upstream:
  database: app
  user: api_service_user
  password_file: /run/secrets/pg-password
  primary: db.internal:5432
  tls:
    ca: /etc/pgcordon/db-ca.crt
pool:
  size: 20
";

pub const ORIGIN: &str = "/etc/pgcordon/pgcordon.yaml";

/// BASE with one line replaced; panics if the line is not there, so tests cannot go stale.
pub fn with(old: &str, new: &str) -> String {
    assert!(BASE.contains(old), "BASE has no {old:?}");
    BASE.replacen(old, new, 1)
}

/// BASE with extra lines appended (for sections BASE lacks).
pub fn plus(extra: &str) -> String {
    format!("{BASE}{extra}")
}

pub fn ok(text: &str) -> Config {
    parse(text, Path::new(ORIGIN)).unwrap_or_else(|e| panic!("should be valid:\n{e}\n---\n{text}"))
}

/// The problems of an invalid file; panics for valid files and other error kinds.
pub fn problems(text: &str) -> Vec<Problem> {
    match parse(text, Path::new(ORIGIN)) {
        Ok(_) => panic!("should be refused:\n{text}"),
        Err(ConfigError::Invalid { problems, .. }) => {
            assert!(!problems.is_empty());
            problems
        }
        Err(other) => panic!("expected ConfigError::Invalid, got {other:?}"),
    }
}

/// The only problem of an invalid file, checked to name `key` and to expect `expected`.
pub fn refused(text: &str, key: &str, expected: &str) -> Problem {
    let found = problems(text);
    assert_eq!(found.len(), 1, "one problem expected: {found:#?}");
    let problem = found.into_iter().next().unwrap();
    assert_eq!(problem.key, key, "{problem:#?}");
    assert!(
        problem.expected.contains(expected),
        "expectation {expected:?} missing: {problem:#?}"
    );
    // The rendered error names the file and the key, which is what an operator reads.
    let rendered = parse(text, Path::new(ORIGIN)).unwrap_err().to_string();
    assert!(rendered.starts_with(ORIGIN), "{rendered}");
    assert!(
        rendered.contains(&format!("{key}: expected ")),
        "{rendered}"
    );
    problem
}
