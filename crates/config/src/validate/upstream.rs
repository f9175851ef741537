//! Validation of the `upstream` section: names, password source, address and TLS (the
//! replicas are checked in `routing`).
//!
//! TLS to PostgreSQL is always verified against `upstream.tls.ca` and a server name, so there
//! is no key to weaken it. The password file is not read here (it may be rotated and is read
//! when connecting); a password environment variable must be set when the file is loaded.

use super::Check;
use crate::address::{is_server_name, Host, HostPort};
use crate::defaults;
use crate::model::{ClientCertificate, Upstream, UpstreamTls};
use crate::raw::{RawUpstream, RawUpstreamTls};
use crate::secret::{PasswordSource, Secret};

impl Check {
    pub(super) fn upstream(&mut self, raw: RawUpstream) -> Option<Upstream> {
        let database = self.pg_name("upstream.database", raw.database);
        let client_database = match raw.client_database {
            Some(name) => self.pg_name("upstream.client_database", name),
            None => database.clone(),
        };
        let user = self.pg_name("upstream.user", raw.user);
        let password = self.password(raw.password_file, raw.password_env);
        let primary = self.primary(&raw.primary);
        // Replicas inherit the primary's TLS name only when the operator wrote one.
        let inherited = raw.tls.server_name.clone().filter(|n| is_server_name(n));
        let replicas = self.replicas(raw.replicas, primary.as_ref(), inherited.as_deref());
        let tls = self.upstream_tls(raw.tls, primary.as_ref());

        Some(Upstream {
            database: database?,
            client_database: client_database?,
            user: user?,
            password: password?,
            primary: primary?,
            replicas: replicas?,
            connect_timeout: raw
                .connect_timeout
                .map_or(defaults::CONNECT_TIMEOUT, |d| d.0),
            channel_binding: raw.channel_binding.unwrap_or_default(),
            allow_cleartext_password: raw.allow_cleartext_password.unwrap_or(false),
            allow_md5_password: raw.allow_md5_password.unwrap_or(false),
            tls: tls?,
        })
    }

    /// A database or role name as PostgreSQL keeps it.
    fn pg_name(&mut self, key: &str, name: String) -> Option<String> {
        let expected = "a name of 1 to 63 bytes without NUL characters";
        if name.is_empty() {
            self.add(key, expected, "an empty string");
            return None;
        }
        // The startup packet carries names as NUL-terminated strings; a NUL would cut it short.
        if name.contains('\0') || name.len() > defaults::MAX_NAME_BYTES {
            let found = format!("{name:?} ({} bytes)", name.len());
            self.add(key, expected, found);
            return None;
        }
        Some(name)
    }

    fn password(&mut self, file: Option<String>, env: Option<String>) -> Option<PasswordSource> {
        match (file, env) {
            (Some(file), None) => self
                .path("upstream.password_file", &file)
                .map(PasswordSource::File),
            (None, Some(variable)) => self.env_password(variable),
            (Some(_), Some(_)) => {
                let expected = "only one of password_file and password_env";
                self.add("upstream.password_env", expected, "both keys");
                None
            }
            (None, None) => {
                let expected = "one of password_file or password_env";
                self.add("upstream.password_file", expected, "neither key");
                None
            }
        }
    }

    fn env_password(&mut self, variable: String) -> Option<PasswordSource> {
        let key = "upstream.password_env";
        // The standard library refuses names that are empty or hold '=' or NUL.
        if variable.is_empty() || variable.contains(['=', '\0']) {
            let expected = "an environment variable name (no '=' or NUL)";
            self.add(key, expected, format!("{variable:?}"));
            return None;
        }
        let found = match std::env::var(&variable) {
            Ok(value) if !value.is_empty() => {
                return Some(PasswordSource::Env {
                    variable,
                    value: Secret::new(value),
                });
            }
            Ok(_) => format!("{variable} is set but empty"),
            Err(std::env::VarError::NotPresent) => format!("{variable} is not set"),
            Err(std::env::VarError::NotUnicode(_)) => format!("{variable} holds non-UTF-8 bytes"),
        };
        let expected = "a variable that holds the upstream password when the config is loaded";
        self.add(key, expected, found);
        None
    }

    fn primary(&mut self, text: &str) -> Option<HostPort> {
        match HostPort::parse(text) {
            Ok(primary) => Some(primary),
            Err(why) => {
                let expected = "host:port, the host a DNS name, an IPv4 address or an [IPv6] \
                                address, such as db.internal:5432";
                self.add("upstream.primary", expected, format!("{text:?} ({why})"));
                None
            }
        }
    }

    fn upstream_tls(
        &mut self,
        raw: RawUpstreamTls,
        primary: Option<&HostPort>,
    ) -> Option<UpstreamTls> {
        let ca = self.path("upstream.tls.ca", &raw.ca);

        let server_name = match (raw.server_name, primary) {
            (Some(name), _) if is_server_name(&name) => Some(name),
            (Some(name), _) => {
                let expected = "a DNS name or IP address to check the server certificate against";
                self.add("upstream.tls.server_name", expected, format!("{name:?}"));
                None
            }
            (None, Some(primary)) => Some(match &primary.host {
                Host::Name(name) => name.clone(),
                Host::Ip(ip) => ip.to_string(),
            }),
            // The primary's own problem has been recorded; no second one for its host.
            (None, None) => None,
        };

        let client_cert = match (raw.client_cert, raw.client_key) {
            (None, None) => Some(None),
            (Some(cert), Some(key)) => {
                let cert = self.path("upstream.tls.client_cert", &cert);
                let key = self.path("upstream.tls.client_key", &key);
                cert.zip(key)
                    .map(|(cert, key)| Some(ClientCertificate { cert, key }))
            }
            (Some(_), None) => self.half_pair("upstream.tls.client_key", "client_cert"),
            (None, Some(_)) => self.half_pair("upstream.tls.client_cert", "client_key"),
        };

        Some(UpstreamTls {
            ca: ca?,
            server_name: server_name?,
            client_cert: client_cert?,
        })
    }

    /// Records that one of client_cert / client_key was given without the other.
    fn half_pair<T>(&mut self, missing: &str, present: &str) -> Option<T> {
        let expected = "both client_cert and client_key, or neither";
        self.add(missing, expected, format!("only {present}"));
        None
    }
}
