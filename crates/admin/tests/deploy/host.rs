//! The systemd unit, its sysusers entry and the Containerfile.

use std::collections::HashMap;

use crate::files::text;

/// `Key=value` lines of the `[Service]` section; keys that repeat keep every value.
fn service_directives() -> HashMap<String, Vec<String>> {
    let unit = text("systemd/pgcordon.service");
    let mut section = String::new();
    let mut directives: HashMap<String, Vec<String>> = HashMap::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            section = line.to_owned();
            continue;
        }
        if section == "[Service]" {
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("not Key=value: {line}"));
            directives
                .entry(key.to_owned())
                .or_default()
                .push(value.to_owned());
        }
    }
    directives
}

#[test]
fn the_unit_runs_unprivileged_and_confined() {
    let d = service_directives();
    let one = |key: &str| -> &str {
        let values = d.get(key).unwrap_or_else(|| panic!("{key}= is missing"));
        assert_eq!(values.len(), 1, "{key} is set {} times", values.len());
        &values[0]
    };
    assert_eq!(one("User"), "pgcordon");
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("PrivateTmp"), "yes");
    assert_eq!(
        one("CapabilityBoundingSet"),
        "",
        "no capabilities for unprivileged ports"
    );
    assert_eq!(one("AmbientCapabilities"), "");
    // The only writable place is the audit directory.
    assert_eq!(one("ReadWritePaths"), "/var/log/pgcordon");
    assert!(one("ExecStart").contains(" run --config "));
    assert!(one("ExecStartPre").contains(" check --config "));

    let stop = one("TimeoutStopSec").trim_end_matches('s');
    let stop: u64 = stop.parse().expect("TimeoutStopSec in seconds");
    let drain = pgcordon_config::defaults::DRAIN_TIMEOUT.as_secs();
    assert!(
        stop > drain,
        "TimeoutStopSec {stop}s leaves no time to drain ({drain}s)"
    );

    let sysusers = text("systemd/pgcordon.sysusers");
    let entry = sysusers
        .lines()
        .find(|l| l.starts_with("u "))
        .expect("a user entry");
    assert!(entry.starts_with("u pgcordon "), "{entry}");
    assert!(entry.ends_with("/usr/sbin/nologin"), "{entry}");
}

#[test]
fn the_image_is_multi_stage_and_runs_as_non_root() {
    let file = text("container/Containerfile");
    let instructions: Vec<&str> = file
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let stages = instructions
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .count();
    assert!(stages >= 2, "a build stage and a runtime stage");
    assert!(
        file.contains("libclang-dev"),
        "pg_query's build needs libclang-dev"
    );
    assert!(file.contains("cargo build --release"));

    // The last USER before the entry point is numeric and not root.
    let user = instructions
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER instruction");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("a numeric user");
    assert_ne!(uid, 0);
    let last_from = instructions
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .unwrap();
    let user_at = instructions
        .iter()
        .rposition(|l| l.starts_with("USER "))
        .unwrap();
    assert!(user_at > last_from, "USER must be set in the runtime stage");
    assert!(
        instructions[last_from].contains("distroless") || instructions[last_from].contains("slim")
    );
}
