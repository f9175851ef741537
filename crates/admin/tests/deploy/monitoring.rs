//! Alert rules, the Grafana dashboard and the scrape configuration.

use pgcordon_metrics::Metrics;
use serde_json::Value;

use crate::files::{json, str_at, yaml};
use crate::promql::assert_known;

#[test]
fn alert_rules_are_complete_and_read_only_exported_metrics() {
    let families = Metrics::new().metric_names();
    let rules = yaml("prometheus/pgcordon-alerts.yaml");
    let groups = rules["groups"].as_array().expect("groups");
    let mut alerts = Vec::new();
    let mut checked = 0;
    for group in groups {
        assert!(group["name"].is_string());
        for rule in group["rules"].as_array().expect("rules") {
            let name = str_at(rule, "/alert");
            let expr = str_at(rule, "/expr");
            checked += assert_known(expr, name, &families);
            let severity = str_at(rule, "/labels/severity");
            assert!(
                ["info", "warning", "critical"].contains(&severity),
                "{name}: {severity}"
            );
            assert!(!str_at(rule, "/annotations/summary").is_empty(), "{name}");
            if let Some(wait) = rule.get("for") {
                let wait = wait.as_str().expect("`for` is a duration string");
                assert!(
                    wait.ends_with('m') || wait.ends_with('s'),
                    "{name}: for {wait}"
                );
            }
            alerts.push(name.to_owned());
        }
    }
    // The alerts issue 5 asks for, by the metric each must read.
    for (alert, metric) in [
        (
            "PgcordonCertificateExpiringSoon",
            "pgcordon_certificate_seconds_until_expiry",
        ),
        ("PgcordonPoolSaturated", "pgcordon_pool_waiting_clients"),
        ("PgcordonReplicaOutOfRotation", "pgcordon_replica_healthy"),
        ("PgcordonReloadFailed", "pgcordon_last_reload_successful"),
    ] {
        let rule = groups
            .iter()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .find(|r| r["alert"] == alert)
            .unwrap_or_else(|| panic!("alert {alert} is missing"));
        assert!(
            str_at(rule, "/expr").contains(metric),
            "{alert} does not read {metric}"
        );
    }
    let expiry = str_at(&rules, "/groups/0/rules/0/expr");
    assert!(
        expiry.contains("7 * 86400"),
        "the expiry alert warns 7 days ahead: {expiry}"
    );
    let mut unique = alerts.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), alerts.len(), "alert names repeat: {alerts:?}");
    assert!(
        checked >= alerts.len(),
        "{checked} names for {} alerts",
        alerts.len()
    );
}

#[test]
fn dashboard_panels_read_only_exported_metrics() {
    let families = Metrics::new().metric_names();
    let dashboard = json("grafana/pgcordon-dashboard.json");
    assert_eq!(dashboard["uid"], "pgcordon-overview");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut ids = Vec::new();
    let mut exprs = 0;
    for panel in panels {
        let title = str_at(panel, "/title");
        ids.push(panel["id"].as_u64().expect("numeric panel id"));
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(x + w <= 24, "{title} is wider than the dashboard");
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has no query");
        for target in targets {
            let expr = str_at(target, "/expr");
            assert!(
                assert_known(expr, title, &families) > 0,
                "{title}: no metric in {expr}"
            );
            exprs += 1;
        }
    }
    ids.sort_unstable();
    let count = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), count, "panel ids repeat");
    assert!(exprs >= 20, "only {exprs} queries");

    // Template variables that query Prometheus read exported metrics too.
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
    {
        let Some(query) = variable.pointer("/query/query").and_then(Value::as_str) else {
            continue;
        };
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.split(',').next())
            .unwrap_or_else(|| panic!("unexpected variable query {query}"));
        assert_known(inner, "templating", &families);
    }
}

#[test]
fn every_metric_family_appears_on_the_dashboard() {
    // An operator should find every metric pgcordon exports somewhere on the dashboard.
    let text = crate::files::text("grafana/pgcordon-dashboard.json");
    for family in Metrics::new().metric_names() {
        assert!(text.contains(&family), "the dashboard never shows {family}");
    }
}

#[test]
fn scrape_config_keeps_the_sidecar_port_and_loads_the_rules() {
    let scrape = yaml("prometheus/scrape.yaml");
    let job = &scrape["scrape_configs"][0];
    assert_eq!(job["metrics_path"], "/metrics");
    let keep = job["relabel_configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "keep")
        .expect("a keep rule");
    let port_name = str_at(keep, "/regex");
    let deployment = yaml("kubernetes/deployment.yaml");
    let sidecar = &deployment["spec"]["template"]["spec"]["initContainers"][0];
    let ports: Vec<&str> = sidecar["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| str_at(p, "/name"))
        .collect();
    assert!(
        ports.contains(&port_name),
        "scrape keeps {port_name}, ports are {ports:?}"
    );
    assert!(
        port_name.len() <= 15,
        "Kubernetes port names have at most 15 characters"
    );
    let rule_files = scrape["rule_files"].as_array().unwrap();
    assert_eq!(rule_files[0], "pgcordon-alerts.yaml");
}
