//! The statement policy: statements that change who the backend session is, or what the
//! server or a role is allowed to do, refused unless the configuration allows their kind.
//!
//! These statements do not touch the identity setting, so the identity rules in `judge` let
//! them through; they matter because a pooled backend session is shared by every client. A
//! client that runs `SET ROLE` acts with another role's privileges (on tables, and possibly
//! past row-level security when that role has BYPASSRLS); `ALTER ROLE` changes the pool's own
//! role (its password, its defaults for every new session, its name); `ALTER SYSTEM` changes
//! the server for everyone. The database's privileges are the real line (a role can only
//! become roles it is a member of, `ALTER SYSTEM` needs a grant or superuser); the policy keeps
//! a compromised client from even trying through pgcordon.
//!
//! Owns the kinds, the set of allowed kinds, and the recognition of a kind in one parse-tree
//! message. Where the walk goes is decided in `judge`; the cheap text test is in `prefilter`.

use pg_query::protobuf::ObjectType;

use crate::node_tree::Tree;

/// A kind of statement the guard refuses unless the policy allows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrivilegedStatement {
    /// `SET [SESSION | LOCAL] ROLE`, `RESET ROLE`, `SET role = ...`, `set_config('role', ...)`,
    /// and a function or database whose `SET` clause sets `role`.
    SetRole,
    /// `SET SESSION AUTHORIZATION`, `RESET SESSION AUTHORIZATION` and the other spellings of
    /// the `session_authorization` setting.
    SetSessionAuthorization,
    /// `ALTER ROLE`, `ALTER USER` and `ALTER GROUP` in every form: attributes and `PASSWORD`,
    /// `SET`/`RESET` of role defaults, `RENAME TO`, membership (`ALTER GROUP ... ADD USER`).
    AlterRole,
    /// `ALTER SYSTEM SET` / `RESET`: server-wide settings written to postgresql.auto.conf.
    AlterSystem,
}

impl PrivilegedStatement {
    /// Every kind, in the order the documentation lists them.
    pub const ALL: [PrivilegedStatement; 4] = [
        PrivilegedStatement::SetRole,
        PrivilegedStatement::SetSessionAuthorization,
        PrivilegedStatement::AlterRole,
        PrivilegedStatement::AlterSystem,
    ];

    /// The stable snake_case name used in the configuration (`guard.allow`), in metric labels
    /// and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            PrivilegedStatement::SetRole => "set_role",
            PrivilegedStatement::SetSessionAuthorization => "set_session_authorization",
            PrivilegedStatement::AlterRole => "alter_role",
            PrivilegedStatement::AlterSystem => "alter_system",
        }
    }

    /// The kind with the configuration name `name` (exact, lower case).
    pub fn from_name(name: &str) -> Option<PrivilegedStatement> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// How the statement is written in SQL, for messages.
    pub fn sql(self) -> &'static str {
        match self {
            PrivilegedStatement::SetRole => "SET ROLE",
            PrivilegedStatement::SetSessionAuthorization => "SET SESSION AUTHORIZATION",
            PrivilegedStatement::AlterRole => "ALTER ROLE",
            PrivilegedStatement::AlterSystem => "ALTER SYSTEM",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl std::fmt::Display for PrivilegedStatement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which [`PrivilegedStatement`] kinds pass the guard. The default refuses them all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuardPolicy {
    allowed: u8,
}

impl GuardPolicy {
    /// Refuses every privileged statement kind (the default).
    pub fn refuse_all() -> GuardPolicy {
        GuardPolicy::default()
    }

    /// Allows every kind: the guard then only protects the managed settings.
    pub fn allow_all() -> GuardPolicy {
        PrivilegedStatement::ALL
            .into_iter()
            .fold(GuardPolicy::default(), GuardPolicy::allow)
    }

    /// This policy with `kind` allowed as well.
    pub fn allow(self, kind: PrivilegedStatement) -> GuardPolicy {
        GuardPolicy {
            allowed: self.allowed | kind.bit(),
        }
    }

    /// Whether statements of `kind` pass.
    pub fn allows(self, kind: PrivilegedStatement) -> bool {
        self.allowed & kind.bit() != 0
    }
}

/// The setting whose change is the statement kind: `role` or `session_authorization`
/// (setting names compare ASCII case-insensitively, as the server compares them).
pub(crate) fn setting_kind(name: &str) -> Option<PrivilegedStatement> {
    if name.eq_ignore_ascii_case("role") {
        Some(PrivilegedStatement::SetRole)
    } else if name.eq_ignore_ascii_case("session_authorization") {
        Some(PrivilegedStatement::SetSessionAuthorization)
    } else {
        None
    }
}

/// The privileged kind of one parse-tree message, if it is one. A `VariableSetStmt` counts
/// wherever it sits: at top level, and as the `SET` clause of `CREATE/ALTER FUNCTION`,
/// `ALTER DATABASE` or `ALTER ROLE`, which the walk reaches as nested messages.
pub(crate) fn message_kind(kind: &str, message: &Tree) -> Option<PrivilegedStatement> {
    match kind {
        "VariableSetStmt" => setting_kind(message.field("name")?.text()?),
        // ALTER ROLE/USER/GROUP with attributes, a password or membership changes.
        "AlterRoleStmt" | "AlterRoleSetStmt" => Some(PrivilegedStatement::AlterRole),
        "RenameStmt" => {
            let renamed = message.field("rename_type")?.int()?;
            (renamed == ObjectType::ObjectRole as i64).then_some(PrivilegedStatement::AlterRole)
        }
        "AlterSystemStmt" => Some(PrivilegedStatement::AlterSystem),
        _ => None,
    }
}
