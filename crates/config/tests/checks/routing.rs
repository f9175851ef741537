//! `upstream.replicas` and `routing`: replica entries, defaults, and the routing limits.

use std::time::Duration;

use crate::{ok, plus, problems, refused, with, BASE};
use pgcordon_config::{defaults, Host, ReadYourWrites, RoutingMode};

const PRIMARY: &str = "  primary: db.internal:5432\n";
const TLS_CA: &str = "    ca: /etc/pgcordon/db-ca.crt\n";

/// BASE with `entries` (already indented list items) under `upstream.replicas`.
fn replicas(entries: &str) -> String {
    with(PRIMARY, &format!("{PRIMARY}  replicas:\n{entries}"))
}

/// BASE with a `routing` section holding `lines` (indented by two spaces each).
fn routing(lines: &str) -> String {
    plus(&format!("routing:\n{lines}"))
}

#[test]
fn absent_routing_is_off_with_the_documented_defaults() {
    let config = ok(BASE);
    assert!(config.upstream.replicas.is_empty());
    let r = &config.routing;
    assert_eq!(r.mode, RoutingMode::Off);
    assert_eq!(r.check_interval, Duration::from_secs(1));
    assert_eq!(r.check_timeout, Duration::from_secs(2));
    assert_eq!(r.max_lag_bytes, 16 * 1024 * 1024);
    assert_eq!(r.max_lag, Duration::from_secs(10));
    assert_eq!(r.read_your_writes, ReadYourWrites::Connection);
    assert_eq!(r.read_your_writes_wait, Duration::ZERO);
    assert!(r.allow_functions.is_empty());
    assert_eq!(r.check_interval, defaults::CHECK_INTERVAL);
    assert_eq!(r.max_lag_bytes, defaults::MAX_LAG_BYTES);
    assert!(config.summary().contains("routing: off, no replicas\n"));

    // An empty section, or an empty replica list, is the same as none.
    let empty = ok(&plus("routing:\n"));
    assert_eq!(empty.routing.mode, RoutingMode::Off);
    assert!(ok(&replicas("    []\n")).upstream.replicas.is_empty());
}

#[test]
fn every_routing_key_is_read() {
    let text = routing(
        "  mode: read_only_transactions\n  check_interval: 500ms\n  check_timeout: 3s\n  \
         max_lag_bytes: 1MiB\n  max_lag: 1m\n  read_your_writes: identity\n  \
         read_your_writes_wait: 250ms\n  allow_functions: [report_total, Reporting.Monthly]\n",
    );
    let r = ok(&text).routing;
    assert_eq!(r.mode, RoutingMode::ReadOnlyTransactions);
    assert_eq!(r.check_interval, Duration::from_millis(500));
    assert_eq!(r.check_timeout, Duration::from_secs(3));
    assert_eq!(r.max_lag_bytes, 1024 * 1024);
    assert_eq!(r.max_lag, Duration::from_secs(60));
    assert_eq!(r.read_your_writes, ReadYourWrites::Identity);
    assert_eq!(r.read_your_writes_wait, Duration::from_millis(250));
    assert_eq!(r.allow_functions, ["report_total", "Reporting.Monthly"]);

    assert_eq!(
        ok(&routing("  mode: auto\n")).routing.mode,
        RoutingMode::Auto
    );
    let plain = ok(&routing(
        "  max_lag_bytes: 65536\n  read_your_writes: off\n",
    ));
    assert_eq!(plain.routing.max_lag_bytes, 65536);
    assert_eq!(plain.routing.read_your_writes, ReadYourWrites::Off);
}

#[test]
fn routing_choices_are_closed_lists() {
    let problem = refused(
        &routing("  mode: replicas\n"),
        "routing.mode",
        "one of off, read_only_transactions, auto",
    );
    assert_eq!(problem.found, "\"replicas\"");
    refused(
        &routing("  read_your_writes: session\n"),
        "routing.read_your_writes",
        "one of off, connection, identity",
    );
    refused(
        &routing("  max_lags: 1s\n"),
        "routing.max_lags",
        "one of the keys",
    );
}

#[test]
fn routing_durations_are_positive_except_the_wait() {
    for key in ["check_interval", "check_timeout", "max_lag"] {
        let path = format!("routing.{key}");
        refused(&routing(&format!("  {key}: 0s\n")), &path, "above zero");
        refused(&routing(&format!("  {key}: 5\n")), &path, "a duration");
    }
    let zero = ok(&routing("  read_your_writes_wait: 0ms\n"));
    assert_eq!(zero.routing.read_your_writes_wait, Duration::ZERO);
    let problem = refused(
        &routing("  read_your_writes_wait: 1.5s\n"),
        "routing.read_your_writes_wait",
        "a duration such as 0s",
    );
    assert!(problem.found.contains("fractions"), "{problem:?}");
}

#[test]
fn max_lag_bytes_is_a_size_above_zero() {
    refused(
        &routing("  max_lag_bytes: 0\n"),
        "routing.max_lag_bytes",
        "a size above zero",
    );
    refused(
        &routing("  max_lag_bytes: 16MB\n"),
        "routing.max_lag_bytes",
        "a byte size",
    );
}

#[test]
fn allow_functions_are_names_or_schema_qualified_names() {
    for bad in ["a.b.c", "f()", "1st", "''", "'\"Quoted\"'", "'app.'"] {
        let text = routing(&format!("  allow_functions: [ok_fn, {bad}]\n"));
        refused(&text, "routing.allow_functions[1]", "schema.name");
    }
    let twice = routing("  allow_functions: [app.total, App.Total]\n");
    let problem = refused(
        &twice,
        "routing.allow_functions[1]",
        "each function listed once",
    );
    assert_eq!(problem.found, "\"App.Total\" a second time");
    // The same name with and without a schema are two different entries.
    let both = ok(&routing("  allow_functions: [total, app.total]\n"));
    assert_eq!(both.routing.allow_functions.len(), 2);
    refused(
        &routing("  allow_functions: total\n"),
        "routing.allow_functions",
        "a list",
    );
}

#[test]
fn replicas_get_default_names_and_the_primary_host_as_tls_name() {
    let text = replicas(
        "    - address: db-replica-1.internal:5432\n    - address: 10.0.0.7:5433\n      \
         name: eu_west-2b\n    - address: '[fd00::9]:5432'\n      server_name: pg-r3.internal\n",
    );
    let config = ok(&text);
    let found: Vec<(&str, String, &str)> = config
        .upstream
        .replicas
        .iter()
        .map(|r| {
            (
                r.name.as_str(),
                r.address.to_string(),
                r.server_name.as_str(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            (
                "replica-1",
                "db-replica-1.internal:5432".to_owned(),
                "db-replica-1.internal"
            ),
            ("eu_west-2b", "10.0.0.7:5433".to_owned(), "10.0.0.7"),
            ("replica-3", "[fd00::9]:5432".to_owned(), "pg-r3.internal"),
        ]
    );
    assert_eq!(
        config.upstream.replicas[2].address.host,
        Host::Ip("fd00::9".parse().unwrap())
    );
}

#[test]
fn replicas_inherit_an_explicit_upstream_tls_server_name() {
    let text = with(
        TLS_CA,
        &format!("{TLS_CA}    server_name: pg.example.org\n"),
    );
    let text = text.replacen(
        PRIMARY,
        &format!(
            "{PRIMARY}  replicas:\n    - address: r1.internal:5432\n    - address: \
             r2.internal:5432\n      server_name: r2.example.org\n"
        ),
        1,
    );
    let config = ok(&text);
    assert_eq!(config.upstream.replicas[0].server_name, "pg.example.org");
    assert_eq!(config.upstream.replicas[1].server_name, "r2.example.org");
}

#[test]
fn replica_addresses_are_host_port_and_not_the_primary() {
    let problem = refused(
        &replicas("    - address: db-replica.internal\n"),
        "upstream.replicas[0].address",
        "host:port",
    );
    assert!(problem.found.contains("port is missing"), "{problem:?}");
    refused(
        &replicas("    - name: r1\n"),
        "upstream.replicas[0].address",
        "required key",
    );
    // DNS names compare without regard to case.
    let problem = refused(
        &replicas("    - address: r.internal:5432\n    - address: DB.internal:5432\n"),
        "upstream.replicas[1].address",
        "not that of upstream.primary",
    );
    assert_eq!(problem.found, "DB.internal:5432");
    // Another port on the primary's host is another server, such as a local replica.
    ok(&replicas("    - address: db.internal:5433\n"));
    refused(
        &replicas("    - address: r.internal:5432\n    - address: r.internal:5432\n"),
        "upstream.replicas[1].address",
        "each replica address listed once",
    );
    refused(
        &replicas("    - address: r.internal:5432\n      port: 5432\n"),
        "upstream.replicas[0].port",
        "one of the keys",
    );
}

#[test]
fn replica_names_are_short_labels_unique_and_not_primary() {
    let name = |n: &str| {
        replicas(&format!(
            "    - address: r.internal:5432\n      name: '{n}'\n"
        ))
    };
    for bad in ["", "Replica-1", "replica 1", "replica.1", &"r".repeat(33)] {
        let problem = refused(
            &name(bad),
            "upstream.replicas[0].name",
            "1 to 32 characters",
        );
        assert!(problem.found.contains(bad), "{problem:?}");
    }
    ok(&name(&"r".repeat(32)));
    refused(
        &name("primary"),
        "upstream.replicas[0].name",
        "a name other than primary",
    );

    let same = replicas(
        "    - address: a.internal:5432\n      name: r\n    - address: b.internal:5432\n      \
         name: r\n",
    );
    refused(
        &same,
        "upstream.replicas[1].name",
        "each replica name used once",
    );
    // An explicit name may collide with a later entry's default name.
    let default_clash = replicas(
        "    - address: a.internal:5432\n      name: replica-2\n    - address: b.internal:5432\n",
    );
    let problem = refused(
        &default_clash,
        "upstream.replicas[1].name",
        "each replica name used once",
    );
    assert!(problem.found.contains("default name"), "{problem:?}");
}

#[test]
fn replica_server_name_must_be_checkable() {
    refused(
        &replicas("    - address: r.internal:5432\n      server_name: 'not a name'\n"),
        "upstream.replicas[0].server_name",
        "a DNS name or IP address",
    );
}

#[test]
fn every_bad_replica_is_reported_at_once() {
    let text =
        replicas("    - address: db.internal:5432\n    - address: r.internal\n      name: Bad\n");
    let keys: Vec<String> = problems(&text).into_iter().map(|p| p.key).collect();
    assert_eq!(
        keys,
        [
            "upstream.replicas[0].address",
            "upstream.replicas[1].address",
            "upstream.replicas[1].name"
        ]
    );
}

#[test]
fn routing_without_replicas_is_allowed_and_the_summary_warns() {
    for mode in ["read_only_transactions", "auto"] {
        let config = ok(&routing(&format!("  mode: {mode}\n")));
        assert!(config.upstream.replicas.is_empty());
        let summary = config.summary();
        let line = format!(
            "routing: {mode}, WARNING: no replicas are configured, so everything goes to the \
             primary\n"
        );
        assert!(summary.contains(&line), "{summary}");
    }
}

#[test]
fn summary_lists_replicas_and_the_routing_limits() {
    let two = "    - address: r1.internal:5432\n    - address: r2.internal:5432\n      name: \
               b\n";
    let on = format!(
        "{}routing:\n  mode: auto\n  allow_functions: [f]\n",
        replicas(two)
    );
    let summary = ok(&on).summary();
    let line = "routing: auto to replica-1 at r1.internal:5432 as r1.internal, b at \
                r2.internal:5432 as r2.internal; checks every 1s (timeout 2s), out of rotation \
                beyond 16MiB or 10s of lag, read-your-writes connection (wait 0s), 1 extra \
                function(s)\n";
    assert!(summary.contains(line), "{summary}");

    let off = ok(&replicas(two)).summary();
    assert!(
        off.contains("routing: off, so these replicas are not used: replica-1 at"),
        "{off}"
    );
}

#[test]
fn enums_print_their_yaml_spelling() {
    assert_eq!(RoutingMode::Off.to_string(), "off");
    assert_eq!(
        RoutingMode::ReadOnlyTransactions.as_str(),
        "read_only_transactions"
    );
    assert_eq!(RoutingMode::Auto.to_string(), "auto");
    assert_eq!(ReadYourWrites::Off.as_str(), "off");
    assert_eq!(ReadYourWrites::Connection.to_string(), "connection");
    assert_eq!(ReadYourWrites::Identity.to_string(), "identity");
}
