//! `upstream`: names, password source, primary address, TLS and authentication options.

use std::path::Path;
use std::time::Duration;

use crate::{ok, refused, with, BASE};
use pgcordon_config::{ChannelBinding, Host, PasswordSource};

const DATABASE: &str = "  database: app\n";
const PASSWORD: &str = "  password_file: /run/secrets/pg-password\n";
const PRIMARY: &str = "  primary: db.internal:5432\n";
const TLS_CA: &str = "    ca: /etc/pgcordon/db-ca.crt\n";

#[test]
fn names_are_required_non_empty_and_short() {
    refused(&with(DATABASE, ""), "upstream.database", "required key");
    refused(
        &with("  user: api_service_user\n", ""),
        "upstream.user",
        "required key",
    );
    refused(
        &with(DATABASE, "  database: ''\n"),
        "upstream.database",
        "1 to 63 bytes",
    );
    let long = "d".repeat(64);
    let problem = refused(
        &with(DATABASE, &format!("  database: {long}\n")),
        "upstream.database",
        "63",
    );
    assert!(problem.found.contains("64 bytes"), "{problem:?}");
    ok(&with(
        DATABASE,
        &format!("  database: {}\n", "d".repeat(63)),
    ));
    let nul = with("  user: api_service_user\n", "  user: \"api\\0user\"\n");
    refused(&nul, "upstream.user", "without NUL");
    let number = refused(
        &with(DATABASE, "  database: 2024\n"),
        "upstream.database",
        "a string",
    );
    assert_eq!(number.found, "the integer 2024");
}

#[test]
fn client_database_defaults_to_database() {
    let config = ok(BASE);
    assert_eq!(
        (
            config.upstream.database.as_str(),
            config.upstream.client_database.as_str()
        ),
        ("app", "app")
    );
    let renamed = ok(&with(
        DATABASE,
        "  database: app_prod\n  client_database: app\n",
    ));
    assert_eq!(renamed.upstream.database, "app_prod");
    assert_eq!(renamed.upstream.client_database, "app");
    refused(
        &with(DATABASE, "  database: app\n  client_database: ''\n"),
        "upstream.client_database",
        "1 to 63",
    );
}

#[test]
fn exactly_one_password_source() {
    let both = with(
        PASSWORD,
        &format!("{PASSWORD}  password_env: PGCORDON_TEST_BOTH\n"),
    );
    let problem = refused(
        &both,
        "upstream.password_env",
        "only one of password_file and password_env",
    );
    assert_eq!(problem.found, "both keys");
    let neither = refused(
        &with(PASSWORD, ""),
        "upstream.password_file",
        "one of password_file or password_env",
    );
    assert_eq!(neither.found, "neither key");
    refused(
        &with(PASSWORD, "  password_file: ''\n"),
        "upstream.password_file",
        "a file path",
    );
}

#[test]
fn password_file_is_kept_as_a_path_and_not_read() {
    // The file does not exist; loading still succeeds because files are read when used.
    let config = ok(BASE);
    let PasswordSource::File(file) = &config.upstream.password else {
        panic!("file source expected")
    };
    assert_eq!(file, Path::new("/run/secrets/pg-password"));
}

#[test]
fn password_env_must_be_set_at_load_time() {
    let env = |name: &str| with(PASSWORD, &format!("  password_env: '{name}'\n"));

    let unset = "PGCORDON_CONFIG_TEST_SURELY_UNSET_7f3a";
    let problem = refused(
        &env(unset),
        "upstream.password_env",
        "holds the upstream password",
    );
    assert_eq!(problem.found, format!("{unset} is not set"));

    let empty = "PGCORDON_CONFIG_TEST_EMPTY_7f3a";
    std::env::set_var(empty, "");
    let problem = refused(
        &env(empty),
        "upstream.password_env",
        "holds the upstream password",
    );
    assert!(problem.found.contains("empty"), "{problem:?}");

    refused(
        &env("A=B"),
        "upstream.password_env",
        "an environment variable name",
    );
    refused(
        &env(""),
        "upstream.password_env",
        "an environment variable name",
    );

    let set = "PGCORDON_CONFIG_TEST_SET_7f3a";
    std::env::set_var(set, "correct horse battery staple");
    let config = ok(&env(set));
    let PasswordSource::Env { variable, value } = &config.upstream.password else {
        panic!("env source expected");
    };
    assert_eq!(variable, set);
    assert_eq!(value.expose(), "correct horse battery staple");
    // Neither Debug nor the summary shows the secret.
    let shown = format!("{config:?}\n{config:#?}\n{}", config.summary());
    assert!(!shown.contains("battery"), "{shown}");
    assert!(shown.contains("[redacted]"));
    assert!(config.summary().contains(set));
}

#[test]
fn primary_is_host_and_port() {
    let primary = |p: &str| with(PRIMARY, &format!("  primary: '{p}'\n"));
    for (bad, why) in [
        ("db.internal", "port is missing"),
        ("db.internal:0", "port 0"),
        ("fd00::5:5432", "[brackets]"),
        ("db_internal:5432", "not a DNS name"),
        ("db.internal:http", "not a number"),
    ] {
        let problem = refused(&primary(bad), "upstream.primary", "host:port");
        assert!(problem.found.contains(why), "{bad}: {problem:?}");
    }
    let v6 = ok(&primary("[fd00::5]:5433"));
    assert_eq!(
        v6.upstream.primary.host,
        Host::Ip("fd00::5".parse().unwrap())
    );
    assert_eq!(v6.upstream.primary.port, 5433);
    assert_eq!(v6.upstream.primary.to_string(), "[fd00::5]:5433");
}

#[test]
fn server_name_defaults_to_the_primary_host() {
    assert_eq!(ok(BASE).upstream.tls.server_name, "db.internal");
    let ip = ok(&with(PRIMARY, "  primary: 10.1.2.3:5432\n"));
    assert_eq!(ip.upstream.tls.server_name, "10.1.2.3");
    let named = ok(&with(
        TLS_CA,
        &format!("{TLS_CA}    server_name: pg.example.org\n"),
    ));
    assert_eq!(named.upstream.tls.server_name, "pg.example.org");
    let bad = with(TLS_CA, &format!("{TLS_CA}    server_name: 'not a name'\n"));
    refused(&bad, "upstream.tls.server_name", "a DNS name or IP address");
}

#[test]
fn upstream_tls_needs_a_ca_and_whole_client_pairs() {
    refused(
        &with(TLS_CA, "    server_name: db\n"),
        "upstream.tls.ca",
        "required key",
    );
    let upstream_without_tls = BASE.replacen("  tls:\n    ca: /etc/pgcordon/db-ca.crt\n", "", 1);
    refused(&upstream_without_tls, "upstream.tls", "required key");

    let cert_only = with(TLS_CA, &format!("{TLS_CA}    client_cert: c.crt\n"));
    let problem = refused(
        &cert_only,
        "upstream.tls.client_key",
        "both client_cert and client_key, or neither",
    );
    assert_eq!(problem.found, "only client_cert");
    let key_only = with(TLS_CA, &format!("{TLS_CA}    client_key: c.key\n"));
    refused(
        &key_only,
        "upstream.tls.client_cert",
        "both client_cert and client_key",
    );

    let pair = ok(&with(
        TLS_CA,
        &format!("{TLS_CA}    client_cert: c.crt\n    client_key: /k/c.key\n"),
    ));
    let client = pair.upstream.tls.client_cert.expect("a client certificate");
    assert_eq!(client.cert, Path::new("/etc/pgcordon/c.crt"));
    assert_eq!(client.key, Path::new("/k/c.key"));
}

#[test]
fn authentication_options_and_defaults() {
    let config = ok(BASE);
    assert_eq!(config.upstream.channel_binding, ChannelBinding::Prefer);
    assert!(!config.upstream.allow_cleartext_password);
    assert!(!config.upstream.allow_md5_password);
    assert_eq!(config.upstream.connect_timeout, Duration::from_secs(5));

    let set = with(
        PRIMARY,
        &format!("{PRIMARY}  channel_binding: require\n  allow_md5_password: true\n  connect_timeout: 2s\n"),
    );
    let config = ok(&set);
    assert_eq!(config.upstream.channel_binding, ChannelBinding::Require);
    assert!(config.upstream.allow_md5_password);
    assert_eq!(config.upstream.connect_timeout, Duration::from_secs(2));

    let bad = with(PRIMARY, &format!("{PRIMARY}  channel_binding: always\n"));
    let problem = refused(
        &bad,
        "upstream.channel_binding",
        "one of prefer, require, disable",
    );
    assert_eq!(problem.found, "\"always\"");

    // YAML 1.1 spellings are not booleans here: `yes` is a string, and refused as one.
    let yes = with(
        PRIMARY,
        &format!("{PRIMARY}  allow_cleartext_password: yes\n"),
    );
    let problem = refused(&yes, "upstream.allow_cleartext_password", "true or false");
    assert_eq!(problem.found, "the string \"yes\"");
}
