//! pgcordon's configuration: the YAML file, its validation, and the checked result.
//!
//! Owns reading `pgcordon.yaml` into a [`Config`] that the rest of pgcordon can trust: every
//! key typed, every default filled in, every rule in docs/configuration.md checked, and every
//! error written for the operator (file, key path, what was expected, what was found, line and
//! column). Loading has three passes: `tree` parses YAML (serde-saphyr) into positioned nodes,
//! `de` deserialises the `raw` structs from those nodes with the key path in hand, and
//! `validate` turns them into the `model` types.
//!
//! It does not read the certificate, key, CRL or password files it names (the TLS and upstream
//! components do, and report their own errors), resolve host names, or check `log.level`
//! against tracing's filter grammar (the binary owns tracing). It imports no other pgcordon
//! crate; the proxy crate converts [`Config`] into each component's own settings.

mod address;
mod de;
pub mod defaults;
mod error;
mod model;
mod raw;
mod secret;
mod summary;
mod tree;
mod units;
mod validate;

use serde::Deserialize;
use std::path::Path;

pub use address::{Host, HostPort};
pub use error::{ConfigError, PasswordError, Position, Problem};
pub use model::{
    Admin, Audit, AuditOutput, ChannelBinding, ClientCertificate, Config, Guard, GuardAllow,
    Identity, IdentityPattern, IdentitySource, Limits, Listener, Log, LogFormat, Pool, PoolMode,
    Proof, ReadYourWrites, Replica, Routing, RoutingMode, ServerTls, Shutdown, SubjectAttribute,
    Upstream, UpstreamTls,
};
pub use secret::{PasswordSource, Secret};
pub use units::{format_byte_size, format_duration, parse_byte_size, parse_duration, UnitError};

/// Reads and validates the configuration file at `path`.
///
/// Relative paths inside the file are resolved against the file's directory.
///
/// # Errors
/// [`ConfigError::Read`] if the file cannot be read, [`ConfigError::Syntax`] if it is not
/// YAML, [`ConfigError::Invalid`] listing every problem if it is not a valid configuration.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Validates configuration text as if it had been read from `origin`.
///
/// `origin` names the file in errors, and its directory is where relative paths start.
///
/// # Errors
/// As [`load`], except that nothing is read from disk.
pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
    let tree = tree::parse(text).map_err(|source| syntax_error(origin, source))?;

    // serde stops at the first missing key; an operator starting from an empty file should
    // learn every missing section at once.
    let missing = missing_sections(&tree);
    if !missing.is_empty() {
        return Err(ConfigError::Invalid {
            file: origin.to_path_buf(),
            problems: missing,
        });
    }

    let raw = raw::RawConfig::deserialize(de::NodeDeserializer::root(&tree)).map_err(|e| {
        ConfigError::Invalid {
            file: origin.to_path_buf(),
            problems: vec![e.into_problem()],
        }
    })?;

    validate::check(raw, origin, &tree)
}

/// The top-level sections every configuration must have.
const REQUIRED_SECTIONS: [&str; 4] = ["listen", "tls", "identity", "upstream"];

/// One problem per required section absent from a top-level mapping (none for any other
/// document shape or for a mapping with a key that is not text: the deserializer reports
/// those itself).
fn missing_sections(root: &tree::Located) -> Vec<Problem> {
    let tree::Node::Map(entries) = &root.value else {
        return Vec::new();
    };
    if entries
        .iter()
        .any(|(k, _)| !matches!(k.value, tree::Node::Str(_)))
    {
        return Vec::new();
    }
    REQUIRED_SECTIONS
        .iter()
        .filter(|section| {
            !entries
                .iter()
                .any(|(k, _)| matches!(&k.value, tree::Node::Str(s) if s == *section))
        })
        .map(|section| Problem {
            key: (*section).to_owned(),
            expected: "a value for this required key".to_owned(),
            found: "no such key".to_owned(),
            position: tree::position(root),
        })
        .collect()
}

fn syntax_error(origin: &Path, source: serde_saphyr::Error) -> ConfigError {
    let position = source
        .location()
        .filter(|l| l.line() > 0)
        .map(|l| Position {
            line: l.line(),
            column: l.column(),
        });
    let plain = serde_saphyr::render_options! { snippets: serde_saphyr::SnippetMode::Off };
    let message = source.render_with_options(plain);
    ConfigError::Syntax {
        file: origin.to_path_buf(),
        position,
        message,
        source: Box::new(source),
    }
}
