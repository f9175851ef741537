//! What the guard decides about a statement text, and the client-safe refusal texts.
//!
//! The proxy maps every refusal to an ErrorResponse with SQLSTATE 42501; that mapping lives in
//! the proxy, not here.

use crate::policy::PrivilegedStatement;

/// The guard's decision about one statement text (one Query or Parse message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing in the text touches a protected setting.
    Allow,
    /// Allowed, but it sends the protected settings back to their neutral value for this
    /// session (`RESET ALL`, `DISCARD ALL`). The proxy must apply the identity again before
    /// the next transaction.
    AllowResetsIdentity,
    /// The text could set or reset a protected setting and must not reach the server.
    Refuse(Refusal),
}

impl Verdict {
    /// Combines the verdicts of two readings of the same text: any refusal wins, then a
    /// reset, then allow. The left refusal is kept when both refuse.
    pub(crate) fn worst(self, other: Verdict) -> Verdict {
        match (self, other) {
            (refused @ Verdict::Refuse(_), _) | (_, refused @ Verdict::Refuse(_)) => refused,
            (Verdict::AllowResetsIdentity, _) | (_, Verdict::AllowResetsIdentity) => {
                Verdict::AllowResetsIdentity
            }
            (Verdict::Allow, Verdict::Allow) => Verdict::Allow,
        }
    }
}

/// A refused statement: why (for metrics and logs) and what to tell the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The kind of attempt, with a stable label for metrics.
    pub reason: RefusalReason,
    /// A client-safe message naming the protected setting; it holds no statement text.
    pub message: String,
}

/// The kinds of statement the guard refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalReason {
    /// `SET` of a protected setting, also inside `CREATE FUNCTION`, `ALTER FUNCTION`,
    /// `ALTER ROLE`, `ALTER DATABASE` or `ALTER SYSTEM`.
    SetProtected,
    /// `RESET` of a protected setting, in any of the places `SET` can appear.
    ResetProtected,
    /// `set_config` called with a protected name as a string constant.
    SetConfigProtected,
    /// `set_config` called with a name that is not a string constant (a parameter, an
    /// expression, a column, a cast, named notation): the guard cannot prove it is harmless.
    SetConfigDynamicName,
    /// `set_config` named without being called directly (as an aggregate's transition
    /// function, in a trigger, a cast, `ALTER FUNCTION`, ...): such objects can call it
    /// later with any name.
    SetConfigIndirect,
    /// `UPDATE pg_settings`: its built-in rule calls set_config with each row's name. Custom
    /// settings that no module defines are not rows of that view, but a setting defined by a
    /// loaded module would be, so the guard does not rely on that.
    SettingsViewUpdate,
    /// A `DO` block or a function body (not SQL the parser sees) that mentions a protected
    /// setting or `set_config`.
    CodeBodyMention,
    /// The text could mention a protected setting but PostgreSQL's grammar does not accept
    /// it (or it is nested too deeply to analyse): refused so that the guard fails closed.
    UnparsableMention,
    /// `SET ROLE` and the other ways of changing the `role` setting, when the policy does not
    /// allow [`PrivilegedStatement::SetRole`].
    SetRole,
    /// `SET SESSION AUTHORIZATION` and its other spellings, when not allowed.
    SetSessionAuthorization,
    /// `ALTER ROLE` / `ALTER USER` / `ALTER GROUP` in any form, when not allowed.
    AlterRole,
    /// `ALTER SYSTEM`, when not allowed.
    AlterSystem,
}

impl RefusalReason {
    /// Every reason, for registering metric labels once at start-up.
    pub const ALL: [RefusalReason; 12] = [
        RefusalReason::SetProtected,
        RefusalReason::ResetProtected,
        RefusalReason::SetConfigProtected,
        RefusalReason::SetConfigDynamicName,
        RefusalReason::SetConfigIndirect,
        RefusalReason::SettingsViewUpdate,
        RefusalReason::CodeBodyMention,
        RefusalReason::UnparsableMention,
        RefusalReason::SetRole,
        RefusalReason::SetSessionAuthorization,
        RefusalReason::AlterRole,
        RefusalReason::AlterSystem,
    ];

    /// A stable snake_case label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::SetProtected => "set_protected",
            RefusalReason::ResetProtected => "reset_protected",
            RefusalReason::SetConfigProtected => "set_config_protected",
            RefusalReason::SetConfigDynamicName => "set_config_dynamic_name",
            RefusalReason::SetConfigIndirect => "set_config_indirect",
            RefusalReason::SettingsViewUpdate => "settings_view_update",
            RefusalReason::CodeBodyMention => "code_body_mention",
            RefusalReason::UnparsableMention => "unparsable_mention",
            RefusalReason::SetRole => PrivilegedStatement::SetRole.as_str(),
            RefusalReason::SetSessionAuthorization => {
                PrivilegedStatement::SetSessionAuthorization.as_str()
            }
            RefusalReason::AlterRole => PrivilegedStatement::AlterRole.as_str(),
            RefusalReason::AlterSystem => PrivilegedStatement::AlterSystem.as_str(),
        }
    }

    /// The privileged statement kind behind this reason, for the policy reasons.
    pub fn statement(self) -> Option<PrivilegedStatement> {
        match self {
            RefusalReason::SetRole => Some(PrivilegedStatement::SetRole),
            RefusalReason::SetSessionAuthorization => {
                Some(PrivilegedStatement::SetSessionAuthorization)
            }
            RefusalReason::AlterRole => Some(PrivilegedStatement::AlterRole),
            RefusalReason::AlterSystem => Some(PrivilegedStatement::AlterSystem),
            _ => None,
        }
    }
}

impl From<PrivilegedStatement> for RefusalReason {
    fn from(kind: PrivilegedStatement) -> RefusalReason {
        match kind {
            PrivilegedStatement::SetRole => RefusalReason::SetRole,
            PrivilegedStatement::SetSessionAuthorization => RefusalReason::SetSessionAuthorization,
            PrivilegedStatement::AlterRole => RefusalReason::AlterRole,
            PrivilegedStatement::AlterSystem => RefusalReason::AlterSystem,
        }
    }
}

impl std::fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Refusal {
    /// A refusal of a privileged statement kind that the policy does not allow. `in_body`
    /// says it was found in the text of a DO block or function body, which the guard cannot
    /// parse, rather than as a statement. The message names the kind and the configuration
    /// key that allows it; it holds no statement text.
    pub(crate) fn about_statement(kind: PrivilegedStatement, in_body: bool) -> Refusal {
        let sql = kind.sql();
        let what = if in_body {
            format!("DO blocks and function bodies that could run {sql} cannot be checked")
        } else {
            format!("{sql} is not allowed through the proxy")
        };
        let message = format!("pgcordon: {what} (statement kind \"{kind}\", see guard.allow)");
        Refusal {
            reason: kind.into(),
            message,
        }
    }

    /// A refusal about one protected setting, named in the message.
    pub(crate) fn about_setting(reason: RefusalReason, name: &str) -> Refusal {
        let message = match reason {
            RefusalReason::ResetProtected => {
                format!("pgcordon: setting \"{name}\" is managed by the proxy and cannot be reset")
            }
            RefusalReason::SetConfigProtected => format!(
                "pgcordon: setting \"{name}\" is managed by the proxy and cannot be changed \
                 with set_config"
            ),
            _ => format!(
                "pgcordon: setting \"{name}\" is managed by the proxy and cannot be changed"
            ),
        };
        Refusal { reason, message }
    }

    /// A refusal where the guard cannot tell which setting is at stake; `listing` names all
    /// protected settings.
    pub(crate) fn about_any(reason: RefusalReason, listing: &str) -> Refusal {
        let why = match reason {
            RefusalReason::SetConfigDynamicName => {
                "set_config is only allowed with a setting name written as a string constant"
            }
            RefusalReason::SetConfigIndirect => {
                "set_config may only be called directly, not referenced by other objects"
            }
            RefusalReason::SettingsViewUpdate => {
                "updating pg_settings changes settings through set_config"
            }
            RefusalReason::CodeBodyMention => {
                "DO blocks and function bodies that mention a managed setting or set_config \
                 cannot be checked"
            }
            _ => "statements that may touch a managed setting must be valid SQL",
        };
        let message = format!(
            "pgcordon: {why}; the proxy manages {listing} and refuses what could change it"
        );
        Refusal { reason, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refuse(reason: RefusalReason) -> Verdict {
        Verdict::Refuse(Refusal::about_any(reason, "\"app.x\""))
    }

    #[test]
    fn worst_prefers_refusal_then_reset() {
        let a = Verdict::Allow;
        let r = Verdict::AllowResetsIdentity;
        assert_eq!(a.clone().worst(a.clone()), Verdict::Allow);
        assert_eq!(a.clone().worst(r.clone()), r);
        assert_eq!(r.clone().worst(a.clone()), r);
        let first = refuse(RefusalReason::SetConfigIndirect);
        let second = refuse(RefusalReason::UnparsableMention);
        assert_eq!(r.clone().worst(first.clone()), first);
        assert_eq!(first.clone().worst(r), first);
        assert_eq!(first.clone().worst(second), first);
    }

    #[test]
    fn labels_are_distinct_snake_case() {
        let labels: std::collections::HashSet<_> =
            RefusalReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), RefusalReason::ALL.len());
        for label in labels {
            assert!(
                label.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{label}"
            );
        }
    }

    #[test]
    fn messages_name_the_setting() {
        for reason in RefusalReason::ALL {
            let one = Refusal::about_setting(reason, "app.current_user_id");
            assert!(
                one.message.contains("\"app.current_user_id\""),
                "{}",
                one.message
            );
            assert!(one.message.starts_with("pgcordon: "));
            let any = Refusal::about_any(reason, "\"app.a\", \"app.b\"");
            assert!(
                any.message.contains("\"app.a\", \"app.b\""),
                "{}",
                any.message
            );
        }
    }
}
