//! A reader for the Prometheus text exposition format (0.0.4), written for these tests so
//! that assertions are made on what a scraper would read, not on the crate's internals.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed scrape: the samples in order and the declared type of each family.
#[derive(Debug, Default)]
pub struct Scrape {
    pub samples: Vec<Sample>,
    pub types: HashMap<String, String>,
    pub help: HashMap<String, String>,
}

impl Scrape {
    /// The value of the one sample named `name` whose labels include all of `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<&Sample> = self.matching(name, labels).collect();
        assert!(
            found.len() <= 1,
            "several samples match {name} {labels:?}: {found:?}"
        );
        found.first().map(|s| s.value)
    }

    /// Every sample named `name` whose labels include all of `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// Family names declared with `# TYPE`.
    pub fn families(&self) -> Vec<String> {
        let mut names: Vec<String> = self.types.keys().cloned().collect();
        names.sort();
        names
    }
}

/// Parses exposition text; panics with the offending line on anything malformed.
pub fn parse(text: &str) -> Scrape {
    let mut scrape = Scrape::default();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .unwrap_or_else(|| panic!("line {number}: {line}"));
            let known = ["counter", "gauge", "histogram", "summary", "untyped"];
            assert!(known.contains(&kind), "line {number}: unknown type {kind}");
            assert!(
                scrape.types.insert(name.into(), kind.into()).is_none(),
                "TYPE twice: {name}"
            );
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            scrape.help.insert(name.into(), help.into());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        scrape.samples.push(parse_sample(line, number));
    }
    scrape
}

fn parse_sample(line: &str, number: usize) -> Sample {
    let name_end = line
        .find(['{', ' '])
        .unwrap_or_else(|| panic!("line {number}: no value: {line}"));
    let name = &line[..name_end];
    assert!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
        "line {number}: bad metric name {name:?}"
    );
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inside) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inside, number);
        labels = parsed;
        rest = after;
    }
    let value_text = rest.trim();
    // A timestamp may follow the value; pgcordon never writes one.
    let value_text = value_text.split(' ').next().unwrap_or_default();
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        other => other
            .parse()
            .unwrap_or_else(|_| panic!("line {number}: bad value {other:?}")),
    };
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

/// Reads `k="v",...}` and returns the labels and the text after the closing brace.
fn parse_labels(mut text: &str, number: usize) -> (BTreeMap<String, String>, &str) {
    let mut labels = BTreeMap::new();
    loop {
        if let Some(after) = text.strip_prefix('}') {
            return (labels, after);
        }
        let (key, after_key) = text
            .split_once("=\"")
            .unwrap_or_else(|| panic!("line {number}: bad label in {text:?}"));
        let mut value = String::new();
        let mut chars = after_key.char_indices();
        let end = loop {
            let (at, c) = chars
                .next()
                .unwrap_or_else(|| panic!("line {number}: unterminated label value"));
            match c {
                '\\' => match chars.next().map(|(_, c)| c) {
                    Some('n') => value.push('\n'),
                    Some(escaped) => value.push(escaped),
                    None => panic!("line {number}: dangling escape"),
                },
                '"' => break at,
                c => value.push(c),
            }
        };
        assert!(labels
            .insert(key.trim_start_matches(',').to_owned(), value)
            .is_none());
        text = after_key[end + 1..].trim_start_matches(',');
    }
}
