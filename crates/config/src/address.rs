//! Upstream addresses written as `host:port`, and the names TLS checks.
//!
//! Owns [`HostPort`] (a DNS name, an IPv4 address or a bracketed IPv6 address, and a port) and
//! the syntax check of DNS names. It does not resolve names: that happens when the upstream
//! connector dials, so that DNS changes are followed.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A host and port, such as `db.internal:5432`, `10.0.0.5:5432` or `[fd00::5]:5432`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostPort {
    /// The host part.
    pub host: Host,
    /// The TCP port, never 0.
    pub port: u16,
}

/// The host part of a [`HostPort`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    /// A DNS name, resolved at connect time.
    Name(String),
    /// A literal IP address.
    Ip(IpAddr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(name) => f.write_str(name),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            _ => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

impl HostPort {
    /// Parses `host:port`. The reason for a refusal is returned as text for the operator.
    pub(crate) fn parse(text: &str) -> Result<HostPort, &'static str> {
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (ip, port) = rest
                .split_once("]:")
                .ok_or("an IPv6 address needs [brackets]:port")?;
            let ip: Ipv6Addr = ip.parse().map_err(|_| "the part in brackets is not IPv6")?;
            (Host::Ip(IpAddr::V6(ip)), port)
        } else {
            let (host, port) = text.rsplit_once(':').ok_or("the port is missing")?;
            if host.contains(':') {
                return Err("an IPv6 address must be written in [brackets]");
            }
            (parse_host(host)?, port)
        };

        let port: u16 = port
            .parse()
            .map_err(|_| "the port is not a number from 1 to 65535")?;
        if port == 0 {
            return Err("port 0 cannot be connected to");
        }
        Ok(HostPort { host, port })
    }
}

fn parse_host(host: &str) -> Result<Host, &'static str> {
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(Host::Ip(IpAddr::V4(ip)));
    }
    if !is_dns_name(host) {
        return Err("the host is not a DNS name or IPv4 address");
    }
    Ok(Host::Name(host.to_owned()))
}

/// Whether `name` is a syntactically valid DNS host name: labels of 1 to 63 letters, digits
/// and hyphens, not starting or ending with a hyphen, 253 characters at most in all, with an
/// optional final dot. A name made only of digits and dots is refused, since it can only be a
/// mistyped IPv4 address.
pub(crate) fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    let all_numeric = name.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    name.split('.').all(label_ok) && !all_numeric
}

/// Whether `name` can be checked against a server certificate: a DNS name or an IP address.
pub(crate) fn is_server_name(name: &str) -> bool {
    name.parse::<IpAddr>().is_ok() || is_dns_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        let named = HostPort::parse("db.internal:5432").unwrap();
        assert_eq!(named.host, Host::Name("db.internal".into()));
        assert_eq!(named.port, 5432);
        assert_eq!(named.to_string(), "db.internal:5432");

        let v4 = HostPort::parse("10.0.0.5:6543").unwrap();
        assert_eq!(v4.host, Host::Ip("10.0.0.5".parse().unwrap()));

        let v6 = HostPort::parse("[fd00::5]:5432").unwrap();
        assert_eq!(v6.host, Host::Ip("fd00::5".parse().unwrap()));
        assert_eq!(v6.to_string(), "[fd00::5]:5432");
    }

    #[test]
    fn host_port_refusals() {
        assert_eq!(HostPort::parse("db.internal"), Err("the port is missing"));
        assert_eq!(
            HostPort::parse("fd00::5:5432"),
            Err("an IPv6 address must be written in [brackets]")
        );
        assert_eq!(
            HostPort::parse("[fd00::5]"),
            Err("an IPv6 address needs [brackets]:port")
        );
        assert_eq!(
            HostPort::parse("[db]:5432"),
            Err("the part in brackets is not IPv6")
        );
        assert_eq!(
            HostPort::parse("db:0"),
            Err("port 0 cannot be connected to")
        );
        assert_eq!(
            HostPort::parse("db:70000"),
            Err("the port is not a number from 1 to 65535")
        );
        assert_eq!(
            HostPort::parse("db:"),
            Err("the port is not a number from 1 to 65535")
        );
        assert_eq!(
            HostPort::parse(":5432"),
            Err("the host is not a DNS name or IPv4 address")
        );
        assert_eq!(
            HostPort::parse("db_1:5432"),
            Err("the host is not a DNS name or IPv4 address")
        );
        assert_eq!(
            HostPort::parse("10.0.0.256:5432"),
            Err("the host is not a DNS name or IPv4 address")
        );
    }

    #[test]
    fn dns_names() {
        assert!(is_dns_name("db.internal"));
        assert!(is_dns_name("db-1.example.org."));
        assert!(is_dns_name("localhost"));
        assert!(!is_dns_name("-db.internal"));
        assert!(!is_dns_name("db..internal"));
        assert!(!is_dns_name(&"a".repeat(64)));
        assert!(!is_dns_name("1.2.3"));
        assert!(is_server_name("::1"));
        assert!(is_server_name("127.0.0.1"));
        assert!(!is_server_name("db internal"));
    }
}
