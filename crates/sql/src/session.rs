//! Session-state classification for transaction pooling: what a statement text leaves behind
//! on its backend session once its transaction ends.
//!
//! Two kinds of effect matter. Tracked parameters (see `tracked`) are re-created by the proxy
//! on whichever backend serves the client next, so their settings are reported as values.
//! Anything else that outlives the transaction (LISTEN, a session-level SET of another
//! setting, temporary objects, WITH HOLD cursors, session advisory locks, SQL-level PREPARE,
//! a role change, LOAD) pins the client to its backend for good; the first such reason in
//! text order is reported.
//!
//! Only what the text itself does is seen: a function or procedure that already exists can
//! change session state unseen (see docs/routing.md, "Classification").
//!
//! Owns the judgement on a parse tree; the answer types are in `effects`, the cheap pass in
//! `quick`, the entry point in `classifier`.

use pg_query::protobuf::{DiscardMode, OnCommitAction, TransactionStmtKind, VariableSetKind};

use crate::constants::{constant, string_constant, string_node};
use crate::effects::{PinReason, SessionEffects};
use crate::node_tree::Tree;
use crate::tracked::{self, contains_ignore_case};

/// The session-level advisory lock functions; the `_xact_` forms end with the transaction.
const ADVISORY_LOCKS: [&str; 4] = [
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
];

/// Statements whose expressions are stored, not run: a call inside them takes no lock and
/// sets nothing now. Temporary names in them still count (`CREATE FUNCTION pg_temp.f`).
const DEFINITIONS: [&str; 8] = [
    "CreateFunctionStmt",
    "ViewStmt",
    "RuleStmt",
    "CreateTrigStmt",
    "CreatePolicyStmt",
    "AlterPolicyStmt",
    "CreateStmt",
    "CreateDomainStmt",
];

/// Words in a DO block's body that may change the session: SET/RESET and set_config,
/// LISTEN, temporary objects, WITH HOLD, advisory locks, PREPARE, role changes, LOAD, and
/// EXECUTE (dynamic SQL can do any of these), plus Unicode escapes that could hide them.
const DO_BODY_WORDS: [&str; 11] = [
    "set",
    "listen",
    "temp",
    "hold",
    "advisory",
    "prepare",
    "role",
    "authorization",
    "load",
    "execute",
    "u&",
];

/// `CURSOR_OPT_HOLD` in PostgreSQL's parsenodes.h.
const CURSOR_OPT_HOLD: i64 = 0x0020;

/// The session effects of every statement of a parsed text, in order. Settings are
/// transactional: those made between a BEGIN and a ROLLBACK of the same text are dropped
/// again (pins are kept, which is never wrong).
pub(crate) fn effects_of(tree: &Tree) -> SessionEffects {
    let mut effects = SessionEffects::default();
    // The settings as they were when an explicit transaction began in this text.
    let mut at_begin: Option<SessionEffects> = None;
    let statements = tree.field("stmts").map(Tree::items).unwrap_or_default();
    for stmt in statements.iter().filter_map(|raw| raw.field("stmt")) {
        let stmt = stmt.unwrap_node();
        match transaction_kind(stmt) {
            Some(TransactionStmtKind::TransStmtBegin | TransactionStmtKind::TransStmtStart) => {
                at_begin = Some(effects.clone());
            }
            Some(TransactionStmtKind::TransStmtCommit) => at_begin = None,
            Some(TransactionStmtKind::TransStmtRollback) => {
                if let Some(before) = at_begin.take() {
                    effects.sets = before.sets;
                    effects.resets_all = before.resets_all;
                }
            }
            _ => statement(stmt, &mut effects),
        }
    }
    effects
}

fn transaction_kind(stmt: &Tree) -> Option<TransactionStmtKind> {
    if stmt.kind() != Some("TransactionStmt") {
        return None;
    }
    let kind = i32::try_from(int(stmt, "kind")?).ok()?;
    TransactionStmtKind::try_from(kind).ok()
}

fn statement(stmt: &Tree, effects: &mut SessionEffects) {
    let kind = stmt.kind().unwrap_or_default();
    match kind {
        "VariableSetStmt" => set_statement(stmt, effects),
        "DiscardStmt" if int(stmt, "target") == Some(DiscardMode::DiscardAll as i64) => {
            effects.reset_all()
        }
        "ListenStmt" => effects.pin(PinReason::Listen),
        "PrepareStmt" => effects.pin(PinReason::SqlPrepare),
        "DeclareCursorStmt" if int(stmt, "options").unwrap_or(0) & CURSOR_OPT_HOLD != 0 => {
            effects.pin(PinReason::HoldCursor)
        }
        "LoadStmt" => effects.pin(PinReason::Other("load")),
        "DoStmt" if do_body_may_touch_session(stmt) => effects.pin(PinReason::Other("do_block")),
        _ => {}
    }

    let walk = Walk {
        executes: !DEFINITIONS.contains(&kind),
        direct_calls: direct_calls(stmt),
    };
    walk.run(stmt, effects);
}

/// `SET`, `RESET` and their special forms, at the top level of a text.
fn set_statement(stmt: &Tree, effects: &mut SessionEffects) {
    let kind = int(stmt, "kind").unwrap_or_default();
    let is = |wanted: VariableSetKind| kind == wanted as i64;
    let name = stmt.field("name").and_then(Tree::text).unwrap_or_default();
    let args = stmt.field("args").map(Tree::items).unwrap_or_default();
    let local = matches!(stmt.field("is_local"), Some(Tree::Flag(true)));

    if is(VariableSetKind::VarResetAll) {
        return effects.reset_all();
    }
    if is(VariableSetKind::VarSetMulti) {
        // SET TRANSACTION and SET TRANSACTION SNAPSHOT end with the transaction.
        if name == "SESSION CHARACTERISTICS" {
            session_characteristics(args, effects);
        }
        return;
    }
    // Even for the rest of one transaction, an encoding change decides how the server reads
    // the statements after it.
    if is(VariableSetKind::VarSetValue) && tracked::canonical(name) == Some("client_encoding") {
        effects.encoding(tracked::render("client_encoding", args));
    }
    // SET LOCAL ends with the transaction; SET x FROM CURRENT keeps the current value.
    if local || is(VariableSetKind::VarSetCurrent) {
        return;
    }

    let to_default = is(VariableSetKind::VarSetDefault) || is(VariableSetKind::VarReset);
    if name.eq_ignore_ascii_case("role") || name.eq_ignore_ascii_case("session_authorization") {
        // Back to the default role is what every pooled session has; any other role is not.
        if !to_default {
            effects.pin(PinReason::Other("role"));
        }
        return;
    }
    match (tracked::canonical(name), to_default) {
        (Some(canonical), true) => effects.set(canonical, None),
        // A setting that is not tracked, put back to its default: every pooled session has
        // that default already, so nothing outlives the statement.
        (None, true) => {}
        (Some(canonical), false) => match tracked::render(canonical, args) {
            Some(value) => {
                if canonical == "search_path" && tracked::mentions_temp_schema(&value) {
                    effects.pin(PinReason::SessionSet(canonical.to_owned()));
                }
                effects.set(canonical, Some(value));
            }
            None => effects.pin(PinReason::SessionSet(canonical.to_ascii_lowercase())),
        },
        (None, false) => effects.pin(PinReason::SessionSet(name.to_ascii_lowercase())),
    }
}

/// `SET SESSION CHARACTERISTICS AS TRANSACTION ...`: READ ONLY / READ WRITE is the tracked
/// default_transaction_read_only; isolation and deferrable defaults are not tracked.
fn session_characteristics(options: &[Tree], effects: &mut SessionEffects) {
    for option in options.iter().map(Tree::unwrap_node) {
        let defname = option
            .field("defname")
            .and_then(Tree::text)
            .unwrap_or_default();
        let value = option.field("arg").and_then(constant);
        match (defname, value) {
            ("transaction_read_only", Some(("Ival", value))) => {
                let on = value.field("ival").and_then(Tree::int) == Some(1);
                let text = if on { "on" } else { "off" };
                effects.set("default_transaction_read_only", Some(text.to_owned()));
            }
            _ => effects.pin(PinReason::SessionSet(format!("default_{defname}"))),
        }
    }
}

/// Whether a DO block's code could change the session (see [`DO_BODY_WORDS`]).
fn do_body_may_touch_session(stmt: &Tree) -> bool {
    let options = stmt.field("args").map(Tree::items).unwrap_or_default();
    let bodies: Vec<&str> = options
        .iter()
        .map(Tree::unwrap_node)
        .filter(|option| option.field("defname").and_then(Tree::text) == Some("as"))
        .filter_map(|option| option.field("arg").and_then(string_node))
        .collect();
    // A DO block without a readable body is not one the guard can vouch for.
    bodies.is_empty()
        || bodies.iter().any(|body| {
            DO_BODY_WORDS
                .iter()
                .any(|word| contains_ignore_case(body, word))
        })
}

/// The calls that certainly run exactly once: the output columns of a top-level SELECT that
/// has nothing but its output list (`SELECT set_config('search_path', 'x', false)`). A call
/// anywhere else may run any number of times, or not at all.
fn direct_calls(stmt: &Tree) -> Vec<*const Tree> {
    if stmt.kind() != Some("SelectStmt") {
        return Vec::new();
    }
    let empty = |field: &str| match stmt.field(field) {
        None | Some(Tree::Empty) => true,
        Some(Tree::List(items)) => items.is_empty(),
        Some(_) => false,
    };
    let clauses = [
        "from_clause",
        "where_clause",
        "group_clause",
        "having_clause",
        "values_lists",
        "limit_offset",
        "limit_count",
        "with_clause",
        "larg",
        "rarg",
    ];
    if !clauses.iter().all(|clause| empty(clause)) {
        return Vec::new();
    }
    let targets = stmt
        .field("target_list")
        .map(Tree::items)
        .unwrap_or_default();
    targets
        .iter()
        .filter_map(|target| target.unwrap_node().field("val"))
        .map(Tree::unwrap_node)
        .filter(|value| value.kind() == Some("FuncCall"))
        .map(|call| call as *const Tree)
        .collect()
}

/// A walk over every node of one statement.
struct Walk {
    /// Whether calls in this statement run now (false in definitions such as CREATE VIEW).
    executes: bool,
    direct_calls: Vec<*const Tree>,
}

impl Walk {
    fn run(&self, stmt: &Tree, effects: &mut SessionEffects) {
        let mut stack = vec![stmt];
        while let Some(value) = stack.pop() {
            match value {
                Tree::Message { kind, fields } => {
                    self.message(kind, value, effects);
                    // A table dropped at commit leaves nothing behind: its name is not a pin.
                    let dropped = dropped_at_commit(kind, value);
                    let children = fields
                        .iter()
                        .rev()
                        .filter(|(field, _)| dropped != Some(*field))
                        .map(|(_, child)| child);
                    stack.extend(children);
                }
                // A string constant is data: 'pg_temp' or 'set_config' in a literal is not a name.
                Tree::Choice {
                    variant: "Sval", ..
                } => {}
                Tree::Choice { value, .. } => stack.push(value),
                Tree::List(items) => stack.extend(items.iter().rev()),
                Tree::Text(_) | Tree::Int(_) | Tree::Flag(_) | Tree::Empty => {}
            }
        }
    }

    fn message(&self, kind: &str, message: &Tree, effects: &mut SessionEffects) {
        match kind {
            "FuncCall" if self.executes => self.call(message, effects),
            "RangeVar" => {
                let temporary = message.field("relpersistence").and_then(Tree::text) == Some("t");
                let schema = message.field("schemaname").and_then(Tree::text);
                if temporary || schema.is_some_and(is_temp_schema) {
                    effects.pin(PinReason::TempTable);
                }
            }
            "String"
                if message
                    .field("sval")
                    .and_then(Tree::text)
                    .is_some_and(is_temp_schema) =>
            {
                effects.pin(PinReason::TempTable);
            }
            _ => {}
        }
    }

    fn call(&self, call: &Tree, effects: &mut SessionEffects) {
        let funcname = call.field("funcname").map(Tree::items).unwrap_or_default();
        let Some(name) = funcname.last().and_then(string_node) else {
            return;
        };
        if ADVISORY_LOCKS
            .iter()
            .any(|lock| name.eq_ignore_ascii_case(lock))
        {
            effects.pin(PinReason::AdvisoryLock);
        } else if name.eq_ignore_ascii_case("set_config") {
            let direct = self.direct_calls.contains(&(call as *const Tree));
            set_config(call, direct, effects);
        }
    }
}

/// `set_config(name, value, is_local)`. A constant true is_local ends with the transaction;
/// a constant false is session-level; anything else may be either. A tracked name with a
/// constant value is followed when the call certainly runs once at session level; every
/// other session-level (or possibly session-level) call pins.
fn set_config(call: &Tree, direct: bool, effects: &mut SessionEffects) {
    let args = call.field("args").map(Tree::items).unwrap_or_default();
    let [name, value, local] = args else {
        // No set_config takes another number of arguments; the server rejects the call.
        return;
    };
    let local = bool_constant(local);
    if string_constant(name).and_then(tracked::canonical) == Some("client_encoding")
        && !is_null_constant(value)
    {
        effects.encoding(string_constant(value).map(str::to_owned));
    }
    if local == Some(true) {
        return;
    }
    let Some(name) = string_constant(name) else {
        return effects.pin(PinReason::Other("set_config_dynamic"));
    };
    let Some(canonical) = tracked::canonical(name) else {
        return effects.pin(PinReason::SessionSet(name.to_ascii_lowercase()));
    };

    // set_config with a NULL value resets the setting.
    let value = match (is_null_constant(value), string_constant(value)) {
        (true, _) => None,
        (false, Some(text)) => Some(text.to_owned()),
        (false, None) => return effects.pin(PinReason::SessionSet(canonical.to_ascii_lowercase())),
    };
    let followed = direct && local == Some(false);
    let temp_path =
        canonical == "search_path" && value.as_deref().is_some_and(tracked::mentions_temp_schema);
    if !followed || temp_path {
        effects.pin(PinReason::SessionSet(canonical.to_ascii_lowercase()));
    }
    if followed {
        effects.set(canonical, value);
    }
}

/// Whether the argument is the constant NULL.
fn is_null_constant(arg: &Tree) -> bool {
    let node = arg.unwrap_node();
    node.kind() == Some("AConst") && matches!(node.field("isnull"), Some(Tree::Flag(true)))
}

/// A boolean constant as the server reads it: `true`/`false`, or a string such as `'on'`.
fn bool_constant(arg: &Tree) -> Option<bool> {
    match constant(arg)? {
        ("Boolval", value) => Some(matches!(value.field("boolval"), Some(Tree::Flag(true)))),
        ("Sval", value) => tracked::parse_bool(value.field("sval")?.text()?),
        _ => None,
    }
}

/// The field of `CreateStmt` / `IntoClause` that names a table dropped at commit, if so.
fn dropped_at_commit(kind: &str, message: &Tree) -> Option<&'static str> {
    let (action, target) = match kind {
        "CreateStmt" => ("oncommit", "relation"),
        "IntoClause" => ("on_commit", "rel"),
        _ => return None,
    };
    let drop = int(message, action) == Some(OnCommitAction::OncommitDrop as i64);
    drop.then_some(target)
}

/// `pg_temp`, or a backend's own temporary schema `pg_temp_N` (compared without case).
fn is_temp_schema(name: &str) -> bool {
    name.len() >= 7 && name.as_bytes()[..7].eq_ignore_ascii_case(b"pg_temp")
}

fn int(message: &Tree, field: &str) -> Option<i64> {
    message.field(field)?.int()
}
