//! Loading from disk, relative path resolution, the summary and secret redaction.

use std::path::{Path, PathBuf};

use crate::{ok, with, BASE, ORIGIN};
use pgcordon_config::{load, parse, ConfigError, PasswordSource};

/// A fresh directory under the system temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("pgcordon-config-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const RELATIVE: &str = "\
listen:
  - address: 127.0.0.1:6432
tls:
  cert: tls/server.crt
  key: ./tls/server.key
  client_ca: ../shared/ca.crt
  crl: [crl/one.crl, /abs/two.crl]
identity:
  from: san_dns
  pattern: '^([a-z]+)\\.svc$'
upstream:
  database: app
  user: app_user
  password_file: secrets/pg
  primary: '[::1]:5432'
  tls:
    ca: db-ca.crt
    client_cert: client.crt
    client_key: client.key
";

#[test]
fn relative_paths_resolve_against_the_config_directory() {
    let dir = TempDir::new("relative");
    let file = dir.0.join("pgcordon.yaml");
    std::fs::write(&file, RELATIVE).unwrap();

    let config = load(&file).unwrap();
    let base = &dir.0;
    assert_eq!(config.source, file);
    assert_eq!(config.tls.cert, base.join("tls/server.crt"));
    assert_eq!(config.tls.key, base.join("./tls/server.key"));
    assert_eq!(config.tls.client_ca, base.join("../shared/ca.crt"));
    assert_eq!(
        config.tls.crl,
        [base.join("crl/one.crl"), PathBuf::from("/abs/two.crl")]
    );
    assert_eq!(config.upstream.tls.ca, base.join("db-ca.crt"));
    let client = config.upstream.tls.client_cert.as_ref().unwrap();
    assert_eq!(
        (&client.cert, &client.key),
        (&base.join("client.crt"), &base.join("client.key"))
    );
    let PasswordSource::File(password) = &config.upstream.password else {
        panic!("file source")
    };
    assert_eq!(password, &base.join("secrets/pg"));
    assert_eq!(config.upstream.tls.server_name, "::1");
}

#[test]
fn a_relative_origin_is_made_absolute() {
    let config = parse(RELATIVE, Path::new("conf/pgcordon.yaml")).unwrap();
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(config.source, cwd.join("conf/pgcordon.yaml"));
    assert_eq!(config.tls.cert, cwd.join("conf/tls/server.crt"));
}

#[test]
fn password_file_is_readable_through_the_source() {
    let dir = TempDir::new("password");
    std::fs::create_dir_all(dir.0.join("secrets")).unwrap();
    std::fs::write(dir.0.join("secrets/pg"), "s3cret-value\n").unwrap();
    let config = parse(RELATIVE, &dir.0.join("pgcordon.yaml")).unwrap();
    assert_eq!(
        config.upstream.password.password().unwrap().expose(),
        "s3cret-value"
    );
}

#[test]
fn missing_and_unreadable_files_are_read_errors() {
    let dir = TempDir::new("missing");
    let file = dir.0.join("absent.yaml");
    let error = load(&file).unwrap_err();
    assert!(
        matches!(&error, ConfigError::Read { file: f, .. } if f == &file),
        "{error:?}"
    );
    assert!(error.to_string().contains("absent.yaml"), "{error}");

    let binary = dir.0.join("binary.yaml");
    std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
    assert!(matches!(load(&binary), Err(ConfigError::Read { .. })));
}

#[test]
fn errors_from_load_name_the_file() {
    let dir = TempDir::new("invalid");
    let file = dir.0.join("bad.yaml");
    std::fs::write(&file, with("  size: 20\n", "  size: 0\n")).unwrap();
    let error = load(&file).unwrap_err();
    assert_eq!(error.problems().len(), 1);
    assert!(
        error
            .to_string()
            .starts_with(&format!("{}:18:9: pool.size", file.display())),
        "{error}"
    );
}

#[test]
fn summary_describes_without_secrets() {
    let config = ok(BASE);
    let summary = config.summary();
    for expected in [
        &format!("config: {ORIGIN}"),
        "listen: 127.0.0.1:6432",
        "identity: san_uri matching ^spiffe://example\\.org/tenant/([0-9a-f-]{36})$ -> app.current_user_id",
        "upstream: api_service_user@db.internal:5432/app (clients ask for app), password from file /run/secrets/pg-password",
        "verify-full as db.internal",
        "pool: transaction mode, size 20, min idle 0, acquire timeout 5s, server lifetime 1h, idle timeout 10m",
        "limits: startup timeout 10s, max frame 16MiB, max client connections 10000",
        "log: text format, level info",
    ] {
        assert!(summary.contains(expected), "{expected:?} missing from:\n{summary}");
    }
    assert!(summary.lines().count() <= 12, "{summary}");
}
