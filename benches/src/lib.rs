//! Benchmarks for pgcordon against real components: the devkit stack (PostgreSQL 15 with TLS and
//! SCRAM), pgcordon started in-process from its YAML configuration, and tokio-postgres clients.
//!
//! The binaries live in `src/bin/`; this library holds what they share: option parsing, latency
//! statistics, the Markdown report, the idle-priority spinners and the set-up of the proxy and
//! the clients.

pub mod compare_report;
pub mod connections;
pub mod cpu;
pub mod env;
pub mod matrix;
pub mod options;
pub mod pgbench;
pub mod pgbouncer;
pub mod report;
pub mod setup;
pub mod spin;
pub mod stats;
pub mod svg;
pub mod workload;
