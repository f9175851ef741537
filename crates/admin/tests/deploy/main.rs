//! The deployment material under `deploy/` is tested like code: every YAML and JSON file
//! parses, every metric an alert or a dashboard panel reads is one pgcordon defines, the
//! Kubernetes example's pgcordon configuration validates with pgcordon's own loader and
//! agrees with the manifests around it, and the systemd unit and the Containerfile keep
//! their hardening.

mod files;
mod host;
mod kubernetes;
mod monitoring;
mod promql;
