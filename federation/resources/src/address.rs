//! Network addresses in resources: `host:port` (a DNS name, an IPv4 address
//! or a bracketed IPv6 address, and a port 1..=65535) and the `https` URL of
//! a bundle endpoint. DNS names are kept in lower case.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a string is not an address or URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("{0:?} has no port (write host:port, such as gw.example:15443 or [2001:db8::1]:15443)")]
    NoPort(String),
    #[error("{0:?} is not a port (1..=65535)")]
    BadPort(String),
    #[error("{0:?} is not a DNS name or IP address")]
    BadHost(String),
    #[error("{0:?} is not an https URL (https://host[:port][/path])")]
    NotHttps(String),
    #[error("{url:?}: a bundle endpoint URL must not carry {what}")]
    UrlPart { url: String, what: &'static str },
}

/// A host: an IP address or a DNS name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Host {
    Ip(IpAddr),
    Dns(String),
}

impl Host {
    /// Parses an IPv4 address, a bracketed or bare IPv6 address, or a DNS
    /// name (labels of 1..=63 `[a-z0-9-]`, not starting or ending with '-';
    /// at most 253 bytes).
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        let bad = || AddressError::BadHost(s.to_owned());
        if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            return inner
                .parse::<Ipv6Addr>()
                .map(|a| Self::Ip(IpAddr::V6(a)))
                .map_err(|_| bad());
        }
        if let Ok(a) = s.parse::<Ipv4Addr>() {
            return Ok(Self::Ip(IpAddr::V4(a)));
        }
        if let Ok(a) = s.parse::<Ipv6Addr>() {
            return Ok(Self::Ip(IpAddr::V6(a)));
        }
        let name = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
        if name.is_empty() || name.len() > 253 {
            return Err(bad());
        }
        // A name made only of digits and dots is a mistyped IPv4 address.
        if name.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return Err(bad());
        }
        for label in name.split('.') {
            let ok = !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !ok {
                return Err(bad());
            }
        }
        Ok(Self::Dns(name))
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
            Self::Ip(IpAddr::V4(a)) => write!(f, "{a}"),
            Self::Dns(n) => f.write_str(n),
        }
    }
}

/// `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostPort {
    pub host: Host,
    pub port: u16,
}

impl HostPort {
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        let (host, port) = split_host_port(s)?;
        let port = port.ok_or_else(|| AddressError::NoPort(s.to_owned()))?;
        Ok(Self {
            host: Host::parse(host)?,
            port: parse_port(port)?,
        })
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Splits `host[:port]`; a bare IPv6 address must be bracketed when a port
/// follows.
fn split_host_port(s: &str) -> Result<(&str, Option<&str>), AddressError> {
    if s.starts_with('[') {
        let end = s
            .find(']')
            .ok_or_else(|| AddressError::BadHost(s.to_owned()))?;
        let (host, rest) = s.split_at(end + 1);
        return match rest {
            "" => Ok((host, None)),
            r => r
                .strip_prefix(':')
                .map(|p| (host, Some(p)))
                .ok_or_else(|| AddressError::BadHost(s.to_owned())),
        };
    }
    match s.rsplit_once(':') {
        // More than one ':' without brackets: an IPv6 address without a port.
        Some((h, _)) if h.contains(':') => Ok((s, None)),
        Some((h, p)) => Ok((h, Some(p))),
        None => Ok((s, None)),
    }
}

fn parse_port(p: &str) -> Result<u16, AddressError> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(AddressError::BadPort(p.to_owned())),
        Ok(n) if p.starts_with('+') => Err(AddressError::BadPort(n.to_string())),
        Ok(n) => Ok(n),
    }
}

/// An `https` URL with a host, an optional port and an optional path; no
/// user info, query or fragment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpsUrl {
    pub host: Host,
    pub port: Option<u16>,
    /// Starts with '/'; "/" when the URL has no path.
    pub path: String,
}

impl HttpsUrl {
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        let rest = s
            .strip_prefix("https://")
            .ok_or_else(|| AddressError::NotHttps(s.to_owned()))?;
        let part = |what| AddressError::UrlPart {
            url: s.to_owned(),
            what,
        };
        if s.contains('#') {
            return Err(part("a fragment"));
        }
        if s.contains('?') {
            return Err(part("a query"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err(part("user info"));
        }
        if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(part("white space"));
        }
        let (host, port) = split_host_port(authority)?;
        Ok(Self {
            host: Host::parse(host)?,
            port: port.map(parse_port).transpose()?,
            path: path.to_owned(),
        })
    }
}

impl fmt::Display for HttpsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "https://{}", self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        f.write_str(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ports() {
        for ok in [
            "gw.west.example:15443",
            "10.0.0.1:1",
            "[2001:db8::1]:443",
            "GW.West.Example:80",
        ] {
            assert!(HostPort::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            HostPort::parse("GW.West.Example:80").map(|h| h.to_string()),
            Ok("gw.west.example:80".to_owned())
        );
        for bad in [
            "gw.west.example",
            "gw:0",
            "gw:65536",
            "gw:+80",
            "-gw:80",
            "g_w:80",
            "2001:db8::1",
            "[2001:db8::1]",
            "[zz]:80",
            ":80",
            "999.1.1.1:80",
        ] {
            assert!(HostPort::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls() {
        let u = HttpsUrl::parse("https://bundle.west.example:8443/west").unwrap();
        assert_eq!(u.port, Some(8443));
        assert_eq!(u.to_string(), "https://bundle.west.example:8443/west");
        assert_eq!(
            HttpsUrl::parse("https://b.example").unwrap().to_string(),
            "https://b.example/"
        );
        for bad in [
            "http://b.example/",
            "https://u@b.example/",
            "https://b.example/?x=1",
            "https://b.example/#f",
            "https://:80/",
            "https://b.example:0/",
            "b.example",
        ] {
            assert!(HttpsUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
