//! Validation of the `guard` section: the privileged statement kinds the operator lets
//! through. Each entry must be one of the known kind names, written exactly (lower case), and
//! listed once; a typo must not silently leave a kind refused or, worse, be read as another.

use super::Check;
use crate::model::{Guard, GuardAllow};
use crate::raw::RawGuard;

impl Check {
    pub(super) fn guard(&mut self, raw: RawGuard) -> Option<Guard> {
        let raw = raw.allow.unwrap_or_default();
        let mut allow: Vec<GuardAllow> = Vec::with_capacity(raw.len());
        let mut ok = true;
        for (index, entry) in raw.iter().enumerate() {
            let key = format!("guard.allow[{index}]");
            let Some(kind) = GuardAllow::ALL.into_iter().find(|k| k.as_str() == entry) else {
                let names: Vec<&str> = GuardAllow::ALL.iter().map(|k| k.as_str()).collect();
                let expected = format!("one of {}", names.join(", "));
                self.add(key, expected, format!("{entry:?}"));
                ok = false;
                continue;
            };
            if allow.contains(&kind) {
                self.add(
                    key,
                    "each kind listed once",
                    format!("{entry:?} a second time"),
                );
                ok = false;
                continue;
            }
            allow.push(kind);
        }
        ok.then_some(Guard { allow })
    }
}
