//! Just enough PromQL reading to list the metric names an expression selects, and the check
//! that each is a series pgcordon exports.

use pgcordon_metrics::Metrics;

/// Words that are PromQL syntax, not series names: binary operators, modifiers, and the
/// aggregation operators (which may be followed by `by (...)` instead of a parenthesis).
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
];

/// Keywords followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Series names that are not pgcordon's but Prometheus' own.
pub const PROMETHEUS_SERIES: &[&str] = &["up"];

/// The metric names `expr` selects: identifiers that are not function calls, keywords,
/// label names (in `{...}` or after `by`/`on`/...), strings, durations or Grafana variables.
pub fn metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    let mut skip_next_list = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => i = skip_string(&chars, i),
            '{' => i = skip_to(&chars, i, '}'),
            '[' => i = skip_to(&chars, i, ']'),
            '$' => {
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
            '(' if skip_next_list => {
                skip_next_list = false;
                i = skip_to(&chars, i, ')');
            }
            c if c.is_ascii_digit()
                || (c == '.' && i + 1 < chars.len() && chars[i + 1].is_ascii_digit()) =>
            {
                // Numbers, including 1e3 and durations such as 5m after offset.
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut next = i;
                while next < chars.len() && chars[next].is_whitespace() {
                    next += 1;
                }
                let called = next < chars.len() && chars[next] == '(';
                if LABEL_LISTS.contains(&word.as_str()) {
                    skip_next_list = true;
                } else if !called && !KEYWORDS.contains(&word.as_str()) {
                    names.push(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() && chars[i] != quote {
        if chars[i] == '\\' {
            i += 1;
        }
        i += 1;
    }
    i + 1
}

/// Skips to just after `close`, stepping over strings (label values may hold braces).
fn skip_to(chars: &[char], start: usize, close: char) -> usize {
    let mut i = start + 1;
    while i < chars.len() && chars[i] != close {
        if chars[i] == '"' || chars[i] == '\'' {
            i = skip_string(chars, i);
        } else {
            i += 1;
        }
    }
    i + 1
}

/// Whether `series` is a series pgcordon exports: a family name, or a histogram family
/// with its `_bucket`, `_sum` or `_count` suffix.
pub fn is_exported(series: &str, families: &[String]) -> bool {
    if families.iter().any(|f| f == series) {
        return true;
    }
    ["_bucket", "_sum", "_count"].iter().any(|suffix| {
        series
            .strip_suffix(suffix)
            .is_some_and(|base| families.iter().any(|f| f == base) && is_histogram(base))
    })
}

fn is_histogram(family: &str) -> bool {
    exported_histograms().iter().any(|h| h == family)
}

/// Histogram families, read from a fully exercised metric set (labelled histograms have
/// no series, and so no TYPE line, until a target exists).
fn exported_histograms() -> Vec<String> {
    let metrics = Metrics::new();
    metrics
        .target("primary", pgcordon_metrics::TargetRole::Primary)
        .expect("target");
    metrics
        .render()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" histogram"))
        .map(str::to_owned)
        .collect()
}

/// Asserts that every series `expr` names is exported by pgcordon (or is Prometheus' own),
/// and returns how many names it checked.
pub fn assert_known(expr: &str, context: &str, families: &[String]) -> usize {
    let names = metric_names(expr);
    for name in &names {
        assert!(
            is_exported(name, families) || PROMETHEUS_SERIES.contains(&name.as_str()),
            "{context}: `{name}` is not a metric pgcordon exports (expression: {expr})"
        );
    }
    names.len()
}

#[test]
fn names_are_found_and_syntax_is_not() {
    let expr = r#"histogram_quantile(0.99, sum by (le, target) (rate(pgcordon_pool_acquire_wait_seconds_bucket{instance=~"$instance", x="a{b}"}[$__rate_interval]))) > 1 and on (target) pgcordon_pool_waiting_clients offset 5m > 0 or vector(0) unless up"#;
    assert_eq!(
        metric_names(expr),
        [
            "pgcordon_pool_acquire_wait_seconds_bucket",
            "pgcordon_pool_waiting_clients",
            "up"
        ]
    );
    assert_eq!(metric_names("pgcordon_x < 7 * 86400"), ["pgcordon_x"]);
    assert_eq!(metric_names("min(pgcordon_y) - time()"), ["pgcordon_y"]);
}

#[test]
fn histogram_suffixes_only_for_histograms() {
    let metrics = Metrics::new();
    let families = metrics.metric_names();
    assert!(is_exported(
        "pgcordon_tls_handshake_duration_seconds_bucket",
        &families
    ));
    assert!(is_exported(
        "pgcordon_pool_acquire_wait_seconds_count",
        &families
    ));
    assert!(is_exported("pgcordon_client_connections", &families));
    assert!(!is_exported("pgcordon_client_connections_count", &families));
    assert!(!is_exported("pgcordon_no_such_metric", &families));
    assert!(!is_exported("pgcordon_transactions", &families));
}
