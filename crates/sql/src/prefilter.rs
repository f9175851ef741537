//! The cheap first pass: one case-insensitive Aho-Corasick scan over the statement text that
//! decides whether the full parse is needed. It allocates nothing and reads each byte once
//! (about 300 MB/s in release builds on the project machine; a 40-byte SELECT takes ~0.1 us).
//!
//! The needles are chosen so that every way of touching a protected setting that the parser
//! can see leaves a trace in the raw text:
//! - `SET`/`RESET` (also inside `ALTER ROLE`, `CREATE FUNCTION`, ...) need the keyword `set`
//!   (part of `reset`) and the setting's last identifier, which can be quoted or have comments
//!   around its dots but is always spelled out, unless it is hidden by a `U&` escape. A `set`
//!   inside `current_setting` does not count: there it follows `_`, so it lies in the same
//!   identifier, string or comment and can never be the keyword. Reading the identity with
//!   `current_setting('app.current_user_id')` is common in statements and costs no parse;
//! - a `set_config` call needs the function name, likewise spelled out or `U&`-escaped;
//! - `UPDATE pg_settings` needs the view's name (a `U&`-escaped one hits the `u&` needle);
//! - `RESET ALL` and `DISCARD ALL` need `reset`/`discard` and `all`;
//! - a DO block or function body can hide names in a string constant with backslash escapes
//!   (`E'...'`, or any string when `standard_conforming_strings` is off), so a backslash
//!   together with `do`/`function`/`procedure` also asks for a parse;
//! - when the policy refuses any privileged statement kind (see `policy`): `SET ROLE`,
//!   `RESET ROLE` and `SET role = ...` need `set` and `role`; `SET SESSION AUTHORIZATION` and
//!   `session_authorization` need `set` and `authorization`; `ALTER ROLE/USER/GROUP` need
//!   `alter` and `role`, `user` or `group`; `ALTER SYSTEM` needs `alter` and `system`. These
//!   are keywords or setting names, which comments cannot split and case cannot hide; quoting
//!   keeps the letters, a `U&` escape hits the `u&` needle, and `set_config('role', ...)`
//!   hits `set_config`. Each needle is looked for anywhere in the text, so a harmless first
//!   statement cannot shield a second one.
//!
//! Owns only this text-level test; what a parsed statement means is decided in `judge`.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

use crate::names::ProtectedNames;
use crate::policy::{GuardPolicy, PrivilegedStatement};
use crate::GuardError;

/// The classes of needle; a hit is recorded as one bit per class.
#[derive(Debug, Clone, Copy)]
#[repr(u16)]
enum Needle {
    SetConfig = 1 << 0,
    UnicodeEscape = 1 << 1,
    Set = 1 << 2,
    LastPart = 1 << 3,
    ResetOrDiscard = 1 << 4,
    All = 1 << 5,
    Backslash = 1 << 6,
    CodeKeyword = 1 << 7,
    SettingsView = 1 << 8,
    /// `current_setting`: cancels the `set` found inside it.
    SettingRead = 1 << 9,
    /// `role`: SET/RESET ROLE, the `role` setting, ALTER ROLE.
    Role = 1 << 10,
    /// `authorization`: SET/RESET SESSION AUTHORIZATION, `session_authorization`.
    Authorization = 1 << 11,
    /// `alter`.
    Alter = 1 << 12,
    /// `user` and `group`: ALTER USER and ALTER GROUP are ALTER ROLE.
    RoleAlias = 1 << 13,
    /// `system`: ALTER SYSTEM.
    System = 1 << 14,
}

/// The fixed needles; the last parts of the protected names are added to these.
const FIXED: [(&str, Needle); 18] = [
    ("set_config", Needle::SetConfig),
    ("u&", Needle::UnicodeEscape),
    ("set", Needle::Set),
    ("reset", Needle::ResetOrDiscard),
    ("discard", Needle::ResetOrDiscard),
    ("all", Needle::All),
    ("\\", Needle::Backslash),
    ("do", Needle::CodeKeyword),
    ("function", Needle::CodeKeyword),
    ("procedure", Needle::CodeKeyword),
    ("pg_settings", Needle::SettingsView),
    ("current_setting", Needle::SettingRead),
    ("role", Needle::Role),
    ("authorization", Needle::Authorization),
    ("alter", Needle::Alter),
    ("user", Needle::RoleAlias),
    ("group", Needle::RoleAlias),
    ("system", Needle::System),
];

/// The needle classes found in a text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Hits {
    classes: u16,
    /// Occurrences of `set`, and of `current_setting` (each holds exactly one `set`).
    sets: usize,
    setting_reads: usize,
}

impl Hits {
    fn has(self, needle: Needle) -> bool {
        match needle {
            Needle::Set => self.sets > self.setting_reads,
            _ => self.classes & needle as u16 != 0,
        }
    }

    fn record(&mut self, classes: u16) {
        self.classes |= classes;
        if classes & Needle::Set as u16 != 0 {
            self.sets += 1;
        }
        if classes & Needle::SettingRead as u16 != 0 {
            self.setting_reads += 1;
        }
    }

    /// The text could name a protected setting or `set_config` in a way the parser resolves.
    pub(crate) fn could_mention(self) -> bool {
        self.has(Needle::SetConfig)
            || self.has(Needle::UnicodeEscape)
            || (self.has(Needle::Set) && self.has(Needle::LastPart))
            || self.has(Needle::SettingsView)
            || (self.has(Needle::Backslash) && self.has(Needle::CodeKeyword))
    }

    /// The text could mention a protected setting or reset all settings.
    pub(crate) fn needs_parse(self) -> bool {
        self.could_mention() || (self.has(Needle::ResetOrDiscard) && self.has(Needle::All))
    }

    /// The text could hold a statement of `kind` (apart from `set_config` and `U&` forms,
    /// which [`Hits::could_mention`] already sends to the parser).
    pub(crate) fn could_run(self, kind: PrivilegedStatement) -> bool {
        match kind {
            PrivilegedStatement::SetRole => self.has(Needle::Set) && self.has(Needle::Role),
            PrivilegedStatement::SetSessionAuthorization => {
                self.has(Needle::Set) && self.has(Needle::Authorization)
            }
            PrivilegedStatement::AlterRole => {
                self.has(Needle::Alter) && (self.has(Needle::Role) || self.has(Needle::RoleAlias))
            }
            PrivilegedStatement::AlterSystem => self.has(Needle::Alter) && self.has(Needle::System),
        }
    }
}

/// The compiled needle automaton.
#[derive(Debug)]
pub(crate) struct Prefilter {
    automaton: AhoCorasick,
    /// For each pattern id, the needle classes it stands for (a last part may also be a fixed
    /// needle, so patterns are deduplicated and their classes merged).
    classes: Vec<u16>,
    /// The statement policy: texts that could run a refused kind are parsed.
    policy: GuardPolicy,
}

impl Prefilter {
    pub(crate) fn new(
        names: &ProtectedNames,
        policy: GuardPolicy,
    ) -> Result<Prefilter, GuardError> {
        let mut patterns: Vec<String> = Vec::new();
        let mut classes: Vec<u16> = Vec::new();
        let fixed = FIXED.iter().map(|&(text, needle)| (text, needle));
        let parts = names.last_parts().map(|part| (part, Needle::LastPart));
        for (text, needle) in fixed.chain(parts) {
            match patterns.iter().position(|known| known == text) {
                Some(at) => classes[at] |= needle as u16,
                None => {
                    patterns.push(text.to_owned());
                    classes.push(needle as u16);
                }
            }
        }

        let automaton = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(&patterns)
            .map_err(|source| GuardError::Prefilter {
                count: patterns.len(),
                source,
            })?;
        Ok(Prefilter {
            automaton,
            classes,
            policy,
        })
    }

    /// Scans all of `text` and returns the needles seen. The scan does not stop early: a
    /// `current_setting` found later cancels a `set` found before it, and a text that hits
    /// goes on to the parser, which costs far more than the rest of the scan. If the automaton
    /// ever refused the search, every class is reported, so the caller parses rather than
    /// trusting an incomplete scan.
    fn scan(&self, text: &str) -> Hits {
        let Ok(matches) = self.automaton.try_find_overlapping_iter(text) else {
            return Hits {
                classes: u16::MAX,
                sets: 1,
                setting_reads: 0,
            };
        };
        let mut hits = Hits::default();
        for found in matches {
            let classes = self.classes.get(found.pattern().as_usize()).copied();
            hits.record(classes.unwrap_or(u16::MAX));
        }
        hits
    }

    /// Whether `text` must be parsed before it can be allowed.
    pub(crate) fn needs_parse(&self, text: &str) -> bool {
        let hits = self.scan(text);
        hits.needs_parse() || self.refused_kind(hits).is_some()
    }

    /// The first privileged kind that the policy refuses and that `text` (a DO block or
    /// function body) could run.
    pub(crate) fn refused_kind_in(&self, text: &str) -> Option<PrivilegedStatement> {
        self.refused_kind(self.scan(text))
    }

    fn refused_kind(&self, hits: Hits) -> Option<PrivilegedStatement> {
        PrivilegedStatement::ALL
            .into_iter()
            .find(|&kind| !self.policy.allows(kind) && hits.could_run(kind))
    }

    /// Whether `text` (a DO block or function body) could mention a protected setting.
    pub(crate) fn could_mention(&self, text: &str) -> bool {
        self.scan(text).could_mention()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefilter(names: &[&str]) -> Prefilter {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let names = ProtectedNames::new(&names).expect("valid names");
        Prefilter::new(&names, GuardPolicy::allow_all()).expect("automaton builds")
    }

    fn strict() -> Prefilter {
        let names = ProtectedNames::new(&["app.current_user_id".to_owned()]).expect("valid");
        Prefilter::new(&names, GuardPolicy::refuse_all()).expect("automaton builds")
    }

    #[test]
    fn privileged_statements_need_a_parse_only_when_refused() {
        let cases: &[(&str, Option<PrivilegedStatement>)] = &[
            ("SET ROLE bob", Some(PrivilegedStatement::SetRole)),
            ("reset role", Some(PrivilegedStatement::SetRole)),
            (
                "SeT/**/\"RoLe\" = 'bob'",
                Some(PrivilegedStatement::SetRole),
            ),
            (
                "SELECT 1; SET LOCAL ROLE bob",
                Some(PrivilegedStatement::SetRole),
            ),
            (
                "SET SESSION AUTHORIZATION alice",
                Some(PrivilegedStatement::SetSessionAuthorization),
            ),
            (
                "ALTER USER u PASSWORD 'x'",
                Some(PrivilegedStatement::AlterRole),
            ),
            (
                "alter group g add user u",
                Some(PrivilegedStatement::AlterRole),
            ),
            (
                "ALTER SYSTEM SET work_mem = '1MB'",
                Some(PrivilegedStatement::AlterSystem),
            ),
            ("SELECT current_setting('role')", None),
            ("SELECT role FROM members", None),
            ("UPDATE users SET name = 'x'", None),
            ("ALTER TABLE t ADD COLUMN c int", None),
        ];
        let relaxed = prefilter(&["app.current_user_id"]);
        let strict = strict();
        for &(text, kind) in cases {
            assert_eq!(strict.refused_kind_in(text), kind, "{text:?}");
            assert_eq!(strict.needs_parse(text), kind.is_some(), "{text:?}");
            assert!(
                !relaxed.needs_parse(text),
                "{text:?} parsed although allowed"
            );
        }
    }

    #[test]
    fn classes_follow_the_rules() {
        let p = prefilter(&["app.current_user_id"]);
        let cases: &[(&str, bool, bool)] = &[
            // (text, could_mention, needs_parse)
            ("select 1", false, false),
            ("SELECT current_user_id FROM t", false, false),
            ("UPDATE t SET current_user_id = 1", true, true),
            ("ReSeT \"CURRENT_USER_ID\"", true, true),
            ("select SET_CONFIG", true, true),
            ("set U&\"x\"", true, true),
            ("RESET ALL", false, true),
            ("discard ALL", false, true),
            ("discard plans", false, false),
            ("UPDATE PG_SETTINGS SET setting = 'x'", true, true),
            ("SELECT * FROM pg_settings", true, true),
            ("SELECT * FROM my_settings", false, false),
            ("DO $$ begin null; end $$", false, false),
            (
                "SELECT current_setting('app.current_user_id')",
                false,
                false,
            ),
            (
                "SELECT CURRENT_SETTING('app.current_user_id'), current_setting('x')",
                false,
                false,
            ),
            (
                "SELECT current_setting('app.current_user_id'); SET x = 1",
                true,
                true,
            ),
            (
                "SELECT current_setting('app.current_user_id'); RESET x",
                true,
                true,
            ),
            (
                "SELECT current_setting('app.current_user_id', set)",
                true,
                true,
            ),
            ("DO E'begin null; end'", false, false),
            ("DO E'begin \\n null; end'", true, true),
            ("select E'a\\nb'", false, false),
        ];
        for &(text, mention, parse) in cases {
            assert_eq!(p.could_mention(text), mention, "could_mention({text:?})");
            assert_eq!(p.needs_parse(text), parse, "needs_parse({text:?})");
        }
    }

    #[test]
    fn a_last_part_that_is_also_a_fixed_needle_keeps_both_classes() {
        let p = prefilter(&["app.all"]);
        assert!(p.needs_parse("RESET ALL"));
        assert!(p.could_mention("SET app.all = 1"));
        assert!(!p.could_mention("SELECT all_rows FROM t"));
    }

    #[test]
    fn every_name_gets_a_needle() {
        let p = prefilter(&["app.current_user_id", "app.tenant_id"]);
        assert!(p.could_mention("SET app.tenant_id = 1"));
        assert!(p.could_mention("SET app.current_user_id = 1"));
        assert!(!p.could_mention("SET app.other = 1"));
    }
}
