//! What pgbench runs: the select-only built-in script and the RLS script on `documents`, in the
//! protocol modes each target supports.
//!
//! The RLS workload reads one row of `documents` by primary key; the row-level-security policy
//! decides whether tenant A sees it. pgcordon injects tenant A's identity itself (from the
//! client certificate), so its clients send the bare SELECT. PgBouncer cannot inject anything,
//! so its clients (and the direct baseline) set the identity themselves with
//! `set_config('app.current_user_id', ..., true)`, which lasts until the end of the
//! transaction, in the same round trip as the SELECT: a two-statement query string in simple
//! mode (`\;`), a pipeline ending in one Sync in extended and prepared modes. Every target
//! therefore runs two statements per transaction in one round trip.

use std::path::{Path, PathBuf};

use pgcordon_devkit::stack::TENANT_A;

use crate::env::{Target, DOCUMENTS};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Workload {
    /// pgbench's built-in `select-only` (-S): one SELECT on pgbench_accounts by key.
    Select,
    /// One SELECT on the RLS table `documents` by key, as tenant A.
    Rls,
}

impl Workload {
    pub const ALL: [Workload; 2] = [Workload::Select, Workload::Rls];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Select => "select-only",
            Workload::Rls => "rls",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    Simple,
    Extended,
    Prepared,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Simple, Mode::Extended, Mode::Prepared];

    /// pgbench's `-M` value.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Simple => "simple",
            Mode::Extended => "extended",
            Mode::Prepared => "prepared",
        }
    }
}

/// Whether `target` can run `mode`: PgBouncer 1.18 does not track named prepared statements in
/// transaction pooling (a statement prepared on one server connection is missing on the next).
pub fn supported(target: Target, mode: Mode) -> bool {
    !(target == Target::Pgbouncer && mode == Mode::Prepared)
}

/// The pgbench arguments that select the script: `-S`, or `-f` and a file written into `dir`.
///
/// # Errors
/// The script file cannot be written.
pub fn script_args(
    workload: Workload,
    target: Target,
    mode: Mode,
    dir: &Path,
) -> std::io::Result<Vec<String>> {
    if workload == Workload::Select {
        return Ok(vec!["-S".into()]);
    }
    let (name, text) = rls_script(target, mode);
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(vec!["-f".into(), path.display().to_string()])
}

/// The RLS script for `target` in `mode`, with a file name that tells the variants apart.
pub fn rls_script(target: Target, mode: Mode) -> (&'static str, String) {
    let set = format!("SELECT set_config('app.current_user_id', '{TENANT_A}', true)");
    let read = "SELECT id, title FROM documents WHERE id = :id";
    let pick = format!("\\set id random(1, {DOCUMENTS})\n");
    match (target, mode) {
        (Target::Pgcordon, _) => ("rls-injected.sql", format!("{pick}{read};\n")),
        (_, Mode::Simple) => (
            "rls-explicit-simple.sql",
            format!("{pick}{set} \\; {read};\n"),
        ),
        _ => (
            "rls-explicit-pipeline.sql",
            format!("{pick}\\startpipeline\n{set};\n{read};\n\\endpipeline\n"),
        ),
    }
}

/// A one-transaction pgbench script that fails (division by zero) unless the target applies
/// tenant A's identity: exactly `visible` rows of `documents` (tenant A's) are seen.
pub fn check_script(target: Target, visible: u64) -> String {
    let check = format!("SELECT 1 / (count(*) = {visible})::int FROM documents");
    match target {
        Target::Pgcordon => format!("{check};\n"),
        _ => format!("SELECT set_config('app.current_user_id', '{TENANT_A}', true) \\; {check};\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgcordon_runs_the_bare_select_others_set_the_identity_in_the_same_round_trip() {
        let (_, injected) = rls_script(Target::Pgcordon, Mode::Prepared);
        assert!(!injected.contains("set_config"));
        let (_, simple) = rls_script(Target::Pgbouncer, Mode::Simple);
        assert!(simple.contains("true) \\; SELECT id"));
        let (_, pipelined) = rls_script(Target::Direct, Mode::Prepared);
        assert!(pipelined.contains("\\startpipeline") && pipelined.contains("\\endpipeline"));
        assert!(!supported(Target::Pgbouncer, Mode::Prepared));
        assert!(supported(Target::Pgcordon, Mode::Prepared));
    }
}
