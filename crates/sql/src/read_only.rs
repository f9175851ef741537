//! The read-only judgement on a parse tree: which statements may run on a replica, which
//! obviously write, and which function calls still need the operator's allow-list.
//!
//! The walk over a statement is generic (every node of every clause), so DML inside a CTE,
//! EXPLAIN or a subquery, a locking clause in a subquery, and calls anywhere are all found.
//!
//! Owns only this judgement; the answer types are in `route`.

use pg_query::protobuf::{TransactionStmtKind, VariableSetKind};

use crate::constants::{int_constant, string_constant, string_node};
use crate::functions::{self, FunctionName, NamePart};
use crate::node_tree::Tree;
use crate::route::{Analysis, Pending, PrimaryReason};

/// Analyses every statement of a parsed text; the first statement that needs the primary
/// gives the reason.
pub(crate) fn analyse(tree: &Tree) -> Analysis {
    let statements = tree.field("stmts").map(Tree::items).unwrap_or_default();
    if statements.is_empty() {
        return Analysis::primary(PrimaryReason::Empty, false);
    }
    statements
        .iter()
        .filter_map(|raw| raw.field("stmt"))
        .map(|stmt| statement(stmt.unwrap_node()))
        .reduce(|earlier, later| earlier.and(later))
        .unwrap_or_else(|| Analysis::primary(PrimaryReason::Unparsable, false))
}

/// Utility statements that do not write by themselves; whatever they contain is still
/// searched for DML. They go to the primary (not provably read-only) unless a hint says
/// otherwise.
const OTHER_UTILITY: [&str; 19] = [
    "CallStmt",
    "DoStmt",
    "ExplainStmt",
    "DeclareCursorStmt",
    "FetchStmt",
    "ClosePortalStmt",
    "ExecuteStmt",
    "PrepareStmt",
    "DeallocateStmt",
    "CopyStmt",
    "ListenStmt",
    "UnlistenStmt",
    "NotifyStmt",
    "DiscardStmt",
    "LoadStmt",
    "VariableSetStmt",
    "LockStmt",
    "CheckPointStmt",
    "ConstraintsSetStmt",
];

fn statement(stmt: &Tree) -> Analysis {
    let facts = Facts::of(stmt);
    match stmt.kind().unwrap_or_default() {
        "SelectStmt" => facts.select(),
        "VariableShowStmt" => Analysis::replica(),
        "TransactionStmt" => transaction(stmt),
        "VariableSetStmt" if is_set_transaction(stmt) => read_only_or(stmt.field("args"), false),
        "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => {
            Analysis::primary(PrimaryReason::Write, true)
        }
        "CopyStmt" if flag(stmt, "is_from") => Analysis::primary(PrimaryReason::Write, true),
        kind if OTHER_UTILITY.contains(&kind) => match facts.writing_reason() {
            Some(reason) => Analysis::primary(reason, true),
            None => Analysis::primary(PrimaryReason::Statement, false),
        },
        _ => Analysis::primary(PrimaryReason::Ddl, true),
    }
}

/// What a walk over one statement found.
#[derive(Debug, Default)]
struct Facts {
    dml: bool,
    into: bool,
    locking: bool,
    unknown_functions: Vec<FunctionName>,
}

impl Facts {
    fn of(stmt: &Tree) -> Facts {
        let mut facts = Facts::default();
        let mut stack = vec![stmt];
        while let Some(value) = stack.pop() {
            match value {
                Tree::Message { kind, fields } => {
                    match *kind {
                        "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => {
                            facts.dml = true
                        }
                        "IntoClause" => facts.into = true,
                        "LockingClause" => facts.locking = true,
                        "FuncCall" => facts.call(value),
                        _ => {}
                    }
                    stack.extend(fields.iter().rev().map(|(_, child)| child));
                }
                Tree::Choice { value, .. } => stack.push(value),
                Tree::List(items) => stack.extend(items.iter().rev()),
                Tree::Text(_) | Tree::Int(_) | Tree::Flag(_) | Tree::Empty => {}
            }
        }
        facts
    }

    /// Records a call unless it is a built-in read-only function.
    fn call(&mut self, call: &Tree) {
        let parts: Vec<&str> = call
            .field("funcname")
            .map(Tree::items)
            .unwrap_or_default()
            .iter()
            .filter_map(string_node)
            .collect();
        let (schema, name) = match parts.as_slice() {
            [name] => (None, *name),
            [.., schema, name] => (Some(*schema), *name),
            [] => (None, ""),
        };
        let exact = |text| NamePart { text, fold: false };
        if functions::is_allowed(schema.map(exact), exact(name), &[]) {
            return;
        }
        self.unknown_functions.push(FunctionName {
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
        });
    }

    fn writing_reason(&self) -> Option<PrimaryReason> {
        if self.dml {
            Some(PrimaryReason::Write)
        } else if self.into {
            Some(PrimaryReason::SelectInto)
        } else if self.locking {
            Some(PrimaryReason::Locking)
        } else {
            None
        }
    }

    fn select(self) -> Analysis {
        if let Some(reason) = self.writing_reason() {
            return Analysis::primary(reason, true);
        }
        if self.unknown_functions.is_empty() {
            return Analysis::replica();
        }
        Analysis {
            writes: false,
            verdict: Pending::ReplicaIfAllowed(self.unknown_functions),
        }
    }
}

/// BEGIN and START TRANSACTION go to a replica when READ ONLY; COMMIT and ROLLBACK never
/// write. Savepoints and two-phase commit stay on the primary.
fn transaction(stmt: &Tree) -> Analysis {
    let kind = stmt.field("kind").and_then(Tree::int).unwrap_or_default();
    let is = |wanted: TransactionStmtKind| kind == wanted as i64;
    if is(TransactionStmtKind::TransStmtBegin) || is(TransactionStmtKind::TransStmtStart) {
        return read_only_or(stmt.field("options"), false);
    }
    if is(TransactionStmtKind::TransStmtCommit) || is(TransactionStmtKind::TransStmtRollback) {
        return Analysis::replica();
    }
    let two_phase = is(TransactionStmtKind::TransStmtPrepare)
        || is(TransactionStmtKind::TransStmtCommitPrepared)
        || is(TransactionStmtKind::TransStmtRollbackPrepared);
    Analysis::primary(PrimaryReason::Transaction, two_phase)
}

/// `SET TRANSACTION ...` (not `SET SESSION CHARACTERISTICS`, not a snapshot).
fn is_set_transaction(stmt: &Tree) -> bool {
    let multi = stmt.field("kind").and_then(Tree::int) == Some(VariableSetKind::VarSetMulti as i64);
    multi && stmt.field("name").and_then(Tree::text) == Some("TRANSACTION")
}

/// Replica if the transaction options ask for READ ONLY (the last such option wins, as in
/// the server) without SERIALIZABLE, which a hot standby refuses.
fn read_only_or(options: Option<&Tree>, writes: bool) -> Analysis {
    let mut read_only = false;
    let mut serializable = false;
    let options = options.map(Tree::items).unwrap_or_default();
    for option in options.iter().map(Tree::unwrap_node) {
        let value = option.field("arg").map(Tree::unwrap_node);
        match option.field("defname").and_then(Tree::text) {
            Some("transaction_read_only") => read_only = value.and_then(int_constant) == Some(1),
            Some("transaction_isolation") => {
                serializable = value.and_then(string_constant) == Some("serializable")
            }
            _ => {}
        }
    }
    if read_only && !serializable {
        Analysis::replica()
    } else {
        Analysis::primary(PrimaryReason::Transaction, writes)
    }
}

fn flag(stmt: &Tree, name: &str) -> bool {
    matches!(stmt.field(name), Some(Tree::Flag(true)))
}
