//! The verdict on a parsed statement text: a walk over every message of every statement.
//!
//! The walk is generic on purpose: it visits every value of the tree and judges messages by
//! their type name, so a `set_config` call is found in any clause of any statement type
//! (including ones added to the grammar later) without a list of where expressions can sit.
//! pg_query's own `nodes()` iterator visits only the clauses it needs for table lists, which
//! would leave gaps.
//!
//! Owns the rules: which messages refuse a text and which reset the identity. Parsing is in
//! `parse`, the tree form in `node_tree`, the cheap text test in `prefilter`.

use pg_query::protobuf::{DiscardMode, VariableSetKind};

use crate::names::ProtectedNames;
use crate::node_tree::Tree;
use crate::policy::{self, GuardPolicy};
use crate::prefilter::Prefilter;
use crate::verdict::{Refusal, RefusalReason, Verdict};

/// The function that sets a setting by name. PostgreSQL resolves function names
/// case-sensitively after folding; the guard compares ASCII case-insensitively to be safe.
const SET_CONFIG: &str = "set_config";

/// What the walk needs to judge one tree.
pub(crate) struct Judge<'g> {
    pub(crate) names: &'g ProtectedNames,
    pub(crate) policy: GuardPolicy,
    pub(crate) prefilter: &'g Prefilter,
}

impl Judge<'_> {
    /// The verdict on one parse tree (all statements of one text).
    pub(crate) fn verdict(&self, tree: &Tree) -> Verdict {
        if let Some(refusal) = self.first_refusal(tree) {
            return Verdict::Refuse(refusal);
        }
        if resets_identity(tree) {
            return Verdict::AllowResetsIdentity;
        }
        Verdict::Allow
    }

    /// Visits every value of the tree depth-first (explicit stack, so nesting costs heap, not
    /// call stack) and returns the first message that refuses the text. A refusal about a
    /// protected setting wins over a policy refusal found earlier, since it names what is
    /// at stake for the identity.
    fn first_refusal(&self, tree: &Tree) -> Option<Refusal> {
        let mut by_policy: Option<Refusal> = None;
        let mut stack = vec![tree];
        while let Some(value) = stack.pop() {
            match value {
                Tree::Message { kind, fields } => {
                    if let Some(refusal) = self.judge_message(kind, value) {
                        return Some(refusal);
                    }
                    if by_policy.is_none() {
                        by_policy = self.judge_policy(kind, value);
                    }
                    // A call's name was judged by `judge_call`: its `set_config` identifier is
                    // a direct call, not an indirect reference.
                    let children = fields
                        .iter()
                        .rev()
                        .filter(|(field, _)| !(*kind == "FuncCall" && *field == "funcname"));
                    stack.extend(children.map(|(_, child)| child));
                }
                // A string constant is data, not a name: 'set_config' in a literal is harmless.
                Tree::Choice {
                    variant: "Sval", ..
                } => {}
                Tree::Choice { value, .. } => stack.push(value),
                Tree::List(items) => stack.extend(items.iter().rev()),
                Tree::Text(_) | Tree::Int(_) | Tree::Flag(_) | Tree::Empty => {}
            }
        }
        by_policy
    }

    /// The policy's verdict on one message: a privileged statement kind the policy refuses,
    /// as a statement, a nested `SET` clause, a `set_config('role', ...)` call, or a mention
    /// in a DO block or function body.
    fn judge_policy(&self, kind: &str, message: &Tree) -> Option<Refusal> {
        let found = match kind {
            "FuncCall" => set_config_name(message).and_then(policy::setting_kind),
            "DoStmt" => return self.policy_in_bodies(message.field("args")?),
            "CreateFunctionStmt" => return self.policy_in_bodies(message.field("options")?),
            _ => policy::message_kind(kind, message),
        }?;
        let refused = !self.policy.allows(found);
        refused.then(|| Refusal::about_statement(found, false))
    }

    /// A body whose text could run a refused kind (`SET ROLE` inside PL/pgSQL, or `EXECUTE
    /// 'ALTER SYSTEM ...'`): like the identity rule for bodies, judged on the text.
    fn policy_in_bodies(&self, options: &Tree) -> Option<Refusal> {
        let found = as_options(options)
            .flat_map(body_texts)
            .find_map(|text| self.prefilter.refused_kind_in(text))?;
        Some(Refusal::about_statement(found, true))
    }

    /// Judges one message by its type; `None` means nothing here refuses the text.
    fn judge_message(&self, kind: &str, message: &Tree) -> Option<Refusal> {
        match kind {
            "FuncCall" => self.judge_call(message),
            "VariableSetStmt" => self.judge_set(message),
            "DoStmt" => self.judge_bodies(message.field("args")?),
            "CreateFunctionStmt" => self.judge_bodies(message.field("options")?),
            "UpdateStmt" => self.judge_update(message),
            // An identifier naming set_config outside a direct call: an aggregate's transition
            // function, a trigger, a cast, ALTER FUNCTION... Such objects can call it later
            // with a setting name the guard never sees.
            "String" => {
                let name = message.field("sval")?.text()?;
                let indirect = name.eq_ignore_ascii_case(SET_CONFIG);
                indirect.then(|| self.about_any(RefusalReason::SetConfigIndirect))
            }
            _ => None,
        }
    }

    /// `set_config(name, value, is_local)`: refused when the name is protected, or when it is
    /// not a string constant, since then the guard cannot know which setting it changes.
    fn judge_call(&self, call: &Tree) -> Option<Refusal> {
        let first_arg = set_config_first_arg(call)?;
        let Some(name) = constant_name(first_arg) else {
            return Some(self.about_any(RefusalReason::SetConfigDynamicName));
        };
        let protected = self.names.find(name)?;
        Some(Refusal::about_setting(
            RefusalReason::SetConfigProtected,
            protected,
        ))
    }

    /// `SET`/`RESET` of a protected name, wherever the statement sits: top level, or inside
    /// CREATE/ALTER FUNCTION, ALTER ROLE/DATABASE/SYSTEM.
    fn judge_set(&self, set: &Tree) -> Option<Refusal> {
        let name = set.field("name")?.text()?;
        let protected = self.names.find(name)?;
        let reason = if set_kind(set) == Some(VariableSetKind::VarReset as i64) {
            RefusalReason::ResetProtected
        } else {
            RefusalReason::SetProtected
        };
        Some(Refusal::about_setting(reason, protected))
    }

    /// `UPDATE pg_settings` (in any schema, also inside a CTE): the view's update rule calls
    /// set_config with the name of every row it touches.
    fn judge_update(&self, update: &Tree) -> Option<Refusal> {
        let relname = update.field("relation")?.field("relname")?.text()?;
        let settings_view = relname.eq_ignore_ascii_case("pg_settings");
        settings_view.then(|| self.about_any(RefusalReason::SettingsViewUpdate))
    }

    /// The `AS` option of DO and CREATE FUNCTION/PROCEDURE holds code in another language
    /// (PL/pgSQL, SQL kept as a string, ...). The guard cannot follow it (the code can build
    /// SQL at run time), so a body that could mention a protected setting is refused.
    fn judge_bodies(&self, options: &Tree) -> Option<Refusal> {
        for body in as_options(options) {
            if body_texts(body).any(|text| self.prefilter.could_mention(text)) {
                return Some(self.about_any(RefusalReason::CodeBodyMention));
            }
        }
        None
    }

    fn about_any(&self, reason: RefusalReason) -> Refusal {
        Refusal::about_any(reason, self.names.listing())
    }
}

/// Whether a top-level statement sends every setting back to its session default:
/// `RESET ALL`, and `DISCARD ALL` (which runs it). Checked on PostgreSQL 15: SET/RESET
/// SESSION AUTHORIZATION and SET/RESET ROLE keep custom settings, so they do not count.
fn resets_identity(tree: &Tree) -> bool {
    let statements = tree.field("stmts").map(Tree::items).unwrap_or_default();
    statements
        .iter()
        .filter_map(|raw| raw.field("stmt"))
        .map(Tree::unwrap_node)
        .any(|stmt| match stmt.kind() {
            Some("VariableSetStmt") => set_kind(stmt) == Some(VariableSetKind::VarResetAll as i64),
            Some("DiscardStmt") => {
                let target = stmt.field("target").and_then(Tree::int);
                target == Some(DiscardMode::DiscardAll as i64)
            }
            _ => false,
        })
}

/// The first argument of a `set_config(...)` call; `None` for other calls and for a call
/// without arguments (nothing is set, and PostgreSQL rejects it).
fn set_config_first_arg(call: &Tree) -> Option<&Tree> {
    let funcname = call.field("funcname")?.items();
    let last = string_node(funcname.last()?)?;
    if !last.eq_ignore_ascii_case(SET_CONFIG) {
        return None;
    }
    call.field("args")?.items().first()
}

/// The constant setting name given to a `set_config(...)` call, if there is one. A name
/// that is not a constant is refused by the identity rules whatever the policy says.
fn set_config_name(call: &Tree) -> Option<&str> {
    constant_name(set_config_first_arg(call)?)
}

/// The code of the `AS` options of DO or CREATE FUNCTION/PROCEDURE.
fn as_options(options: &Tree) -> impl Iterator<Item = &Tree> {
    options
        .items()
        .iter()
        .map(Tree::unwrap_node)
        .filter(|elem| elem.kind() == Some("DefElem"))
        .filter(|elem| elem.field("defname").and_then(Tree::text) == Some("as"))
        .filter_map(|elem| elem.field("arg"))
}

fn set_kind(set: &Tree) -> Option<i64> {
    set.field("kind")?.int()
}

/// The text of a `String` node (an identifier or a keyword-level string such as a DO body).
fn string_node(node: &Tree) -> Option<&str> {
    let node = node.unwrap_node();
    if node.kind() != Some("String") {
        return None;
    }
    node.field("sval")?.text()
}

/// The value of a string constant `'...'` (an `AConst` whose value is the `Sval` choice).
fn string_constant(node: &Tree) -> Option<&str> {
    let constant = node.unwrap_node();
    if constant.kind() != Some("AConst") {
        return None;
    }
    match constant.field("val")?.choice()? {
        ("Sval", value) => value.field("sval")?.text(),
        _ => None,
    }
}

/// The setting name given to set_config, if it is provably a constant: a string constant, or
/// one cast to `pg_catalog.text` written with its schema. Any other cast counts as dynamic: a
/// cast to `char(n)` drops trailing spaces, `varchar(n)` truncates, and a user-defined type
/// called `text` can come first in the search path.
fn constant_name(arg: &Tree) -> Option<&str> {
    if let Some(text) = string_constant(arg) {
        return Some(text);
    }

    let cast = arg.unwrap_node();
    if cast.kind() != Some("TypeCast") {
        return None;
    }
    let type_name = cast.field("type_name")?;
    let names: Vec<&str> = type_name
        .field("names")?
        .items()
        .iter()
        .filter_map(string_node)
        .collect();
    let is_empty = |field: &str| type_name.field(field).is_some_and(|f| f.items().is_empty());
    let catalog_text =
        names == ["pg_catalog", "text"] && is_empty("typmods") && is_empty("array_bounds");
    if !catalog_text {
        return None;
    }
    string_constant(cast.field("arg")?)
}

/// The strings of an `AS` option: one string (DO), or a list of one or two (a function body,
/// or an object file and link symbol).
fn body_texts(arg: &Tree) -> impl Iterator<Item = &str> {
    let node = arg.unwrap_node();
    let single = string_node(node);
    let listed = match node.kind() {
        Some("List") => node.field("items").map(Tree::items).unwrap_or_default(),
        _ => &[],
    };
    single
        .into_iter()
        .chain(listed.iter().filter_map(string_node))
}
