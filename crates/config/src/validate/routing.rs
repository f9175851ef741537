//! Validation of `upstream.replicas` and the `routing` section.
//!
//! A replica shares the primary's database, role, password and TLS settings, so an entry only
//! names where it is, a label and, when its certificate differs, the name to verify. Routing
//! with no replicas is allowed (everything then goes to the primary, and the summary says so);
//! names of functions that reads may call are checked for shape only, since whether they exist
//! is the server's business.

use super::identity::is_identifier;
use super::Check;
use crate::address::{is_server_name, Host, HostPort};
use crate::defaults;
use crate::model::{Replica, Routing};
use crate::raw::{RawReplica, RawRouting};

impl Check {
    /// `inherited` is `upstream.tls.server_name` when the file sets it (and it is valid).
    pub(super) fn replicas(
        &mut self,
        raw: Option<Vec<RawReplica>>,
        primary: Option<&HostPort>,
        inherited: Option<&str>,
    ) -> Option<Vec<Replica>> {
        let raw = raw.unwrap_or_default();
        let mut out: Vec<Replica> = Vec::with_capacity(raw.len());
        let mut ok = true;
        for (index, entry) in raw.into_iter().enumerate() {
            match self.replica(index, entry, primary, inherited, &out) {
                Some(replica) => out.push(replica),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn replica(
        &mut self,
        index: usize,
        raw: RawReplica,
        primary: Option<&HostPort>,
        inherited: Option<&str>,
        earlier: &[Replica],
    ) -> Option<Replica> {
        let key = format!("upstream.replicas[{index}]");
        let address = self.replica_address(&key, &raw.address, primary, earlier);
        let name = self.replica_name(&key, index, raw.name, earlier);

        let server_name = match (raw.server_name, inherited, &address) {
            (Some(name), _, _) if is_server_name(&name) => Some(name),
            (Some(name), _, _) => {
                let expected = "a DNS name or IP address to check the replica's certificate \
                                against";
                self.add(format!("{key}.server_name"), expected, format!("{name:?}"));
                None
            }
            (None, Some(inherited), _) => Some(inherited.to_owned()),
            (None, None, Some(address)) => Some(address.host.to_string()),
            // The address's own problem has been recorded; no second one for its host.
            (None, None, None) => None,
        };

        Some(Replica {
            name: name?,
            address: address?,
            server_name: server_name?,
        })
    }

    fn replica_address(
        &mut self,
        key: &str,
        text: &str,
        primary: Option<&HostPort>,
        earlier: &[Replica],
    ) -> Option<HostPort> {
        let key = format!("{key}.address");
        let address = match HostPort::parse(text) {
            Ok(address) => address,
            Err(why) => {
                let expected = "host:port, the host a DNS name, an IPv4 address or an [IPv6] \
                                address, such as db-replica-1.internal:5432";
                self.add(key, expected, format!("{text:?} ({why})"));
                return None;
            }
        };
        // Listing the primary as a replica would send "read-only" traffic to the primary
        // under a replica's name, and make its lag checks compare the primary with itself.
        if primary.is_some_and(|p| same_address(p, &address)) {
            let expected = "the address of a replica, not that of upstream.primary";
            self.add(key, expected, address.to_string());
            return None;
        }
        if earlier.iter().any(|r| same_address(&r.address, &address)) {
            let expected = "each replica address listed once";
            self.add(key, expected, format!("{address} a second time"));
            return None;
        }
        Some(address)
    }

    fn replica_name(
        &mut self,
        key: &str,
        index: usize,
        name: Option<String>,
        earlier: &[Replica],
    ) -> Option<String> {
        let key = format!("{key}.name");
        let given = name.is_some();
        let name =
            name.unwrap_or_else(|| format!("{}{}", defaults::REPLICA_NAME_PREFIX, index + 1));

        if !is_label(&name) {
            let expected = format!(
                "1 to {} characters of a-z, 0-9, _ and -, such as replica-1",
                defaults::REPLICA_NAME_MAX
            );
            self.add(key, expected, format!("{name:?}"));
            return None;
        }
        if name == defaults::PRIMARY_NAME {
            let expected = "a name other than primary, which labels the primary server";
            self.add(key, expected, format!("{name:?}"));
            return None;
        }
        if earlier.iter().any(|r| r.name == name) {
            let found = if given {
                format!("{name:?} a second time")
            } else {
                format!("{name:?}, this entry's default name, a second time")
            };
            self.add(key, "each replica name used once", found);
            return None;
        }
        Some(name)
    }

    pub(super) fn routing(&mut self, raw: RawRouting) -> Option<Routing> {
        let max_lag_bytes = match raw.max_lag_bytes {
            None => Some(defaults::MAX_LAG_BYTES),
            // Zero would take every replica out of rotation at the first write on the primary.
            Some(size) if size.0 == 0 => {
                self.add("routing.max_lag_bytes", "a size above zero", "0B");
                None
            }
            Some(size) => Some(size.0),
        };
        let allow_functions = self.allow_functions(raw.allow_functions);

        Some(Routing {
            mode: raw.mode.unwrap_or_default(),
            check_interval: raw.check_interval.map_or(defaults::CHECK_INTERVAL, |d| d.0),
            check_timeout: raw.check_timeout.map_or(defaults::CHECK_TIMEOUT, |d| d.0),
            max_lag_bytes: max_lag_bytes?,
            max_lag: raw.max_lag.map_or(defaults::MAX_LAG, |d| d.0),
            read_your_writes: raw.read_your_writes.unwrap_or_default(),
            read_your_writes_wait: raw
                .read_your_writes_wait
                .map_or(defaults::READ_YOUR_WRITES_WAIT, |d| d.0),
            allow_functions: allow_functions?,
        })
    }

    fn allow_functions(&mut self, raw: Option<Vec<String>>) -> Option<Vec<String>> {
        let raw = raw.unwrap_or_default();
        let mut out: Vec<String> = Vec::with_capacity(raw.len());
        let mut ok = true;
        for (index, entry) in raw.into_iter().enumerate() {
            let key = format!("routing.allow_functions[{index}]");
            if !is_function_name(&entry) {
                let expected = "a function name or schema.name of unquoted identifiers, such \
                                as report_total or reporting.monthly_total";
                self.add(key, expected, format!("{entry:?}"));
                ok = false;
                continue;
            }
            // Unquoted names are folded to lower case by PostgreSQL: Report_Total is report_total.
            if out.iter().any(|e| e.eq_ignore_ascii_case(&entry)) {
                let found = format!("{entry:?} a second time");
                self.add(key, "each function listed once", found);
                ok = false;
                continue;
            }
            out.push(entry);
        }
        ok.then_some(out)
    }
}

/// Whether two addresses name the same server as written: DNS names compare without regard
/// to case (as DNS does), and a trailing dot does not make a name different.
fn same_address(a: &HostPort, b: &HostPort) -> bool {
    let host_eq = match (&a.host, &b.host) {
        (Host::Name(x), Host::Name(y)) => {
            let trim = |n: &str| n.strip_suffix('.').unwrap_or(n).to_ascii_lowercase();
            trim(x) == trim(y)
        }
        (Host::Ip(x), Host::Ip(y)) => x == y,
        _ => false,
    };
    host_eq && a.port == b.port
}

/// A metric label and log field: 1 to 32 of `a-z`, `0-9`, `_` and `-`.
fn is_label(name: &str) -> bool {
    (1..=defaults::REPLICA_NAME_MAX).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// `name` or `schema.name`, each part an unquoted identifier.
fn is_function_name(entry: &str) -> bool {
    let parts: Vec<&str> = entry.split('.').collect();
    parts.len() <= 2 && parts.iter().all(|part| is_identifier(part))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> HostPort {
        HostPort::parse(text).unwrap()
    }

    #[test]
    fn addresses_compare_as_servers() {
        assert!(same_address(
            &at("DB.internal:5432"),
            &at("db.internal.:5432")
        ));
        assert!(!same_address(
            &at("db.internal:5432"),
            &at("db.internal:5433")
        ));
        assert!(!same_address(&at("10.0.0.1:5432"), &at("10.0.0.2:5432")));
        assert!(same_address(&at("[fd00::1]:5432"), &at("[fd00:0::1]:5432")));
    }

    #[test]
    fn labels_and_function_names() {
        assert!(is_label("replica-1") && is_label("eu_west_2a") && is_label(&"r".repeat(32)));
        assert!(!is_label("") && !is_label("Replica") && !is_label(&"r".repeat(33)));
        assert!(!is_label("replica 1") && !is_label("réplica"));
        assert!(is_function_name("report_total") && is_function_name("app.Safe_Fn$"));
        assert!(!is_function_name("a.b.c") && !is_function_name(".f") && !is_function_name(""));
        assert!(!is_function_name("f()") && !is_function_name("\"Quoted\""));
    }
}
