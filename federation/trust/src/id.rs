//! SPIFFE IDs and trust domains, parsed by the rules of the SPIFFE ID spec.
//!
//! `spiffe://<trust-domain>/<path>`: the scheme is exactly `spiffe`; the trust
//! domain is 1..=255 characters of `[a-z0-9.-_]` (so no port, no user info,
//! no upper case); the path is zero or more `/segment`s of `[a-zA-Z0-9.-_]`,
//! none empty, none `.` or `..`; no query, no fragment, no percent-encoding;
//! the whole ID at most 2048 bytes. Every refusal says which rule was broken
//! and where.

use std::fmt;
use std::str::FromStr;

/// Longest SPIFFE ID the spec allows, in bytes.
pub const MAX_ID_LEN: usize = 2048;
/// Longest trust domain name the spec allows, in bytes.
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

const SCHEME_PREFIX: &str = "spiffe://";

/// Why a string is not a SPIFFE ID or trust domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("SPIFFE ID is empty")]
    Empty,
    #[error("SPIFFE ID must start with \"spiffe://\" (lower case)")]
    WrongScheme,
    #[error("trust domain is missing")]
    MissingTrustDomain,
    #[error("trust domain is {len} bytes long; at most {MAX_TRUST_DOMAIN_LEN} are allowed")]
    TrustDomainTooLong { len: usize },
    #[error("SPIFFE ID is {len} bytes long; at most {MAX_ID_LEN} are allowed")]
    TooLong { len: usize },
    #[error("trust domain must not carry a port (':' at byte {at})")]
    Port { at: usize },
    #[error("trust domain must not carry user info ('@' at byte {at})")]
    UserInfo { at: usize },
    #[error("SPIFFE ID must not have a query ('?' at byte {at})")]
    Query { at: usize },
    #[error("SPIFFE ID must not have a fragment ('#' at byte {at})")]
    Fragment { at: usize },
    #[error("SPIFFE ID must not be percent-encoded ('%' at byte {at})")]
    PercentEncoded { at: usize },
    #[error("trust domain must be lower case ({ch:?} at byte {at})")]
    UpperCaseTrustDomain { ch: char, at: usize },
    #[error(
        "trust domain has a character that is not allowed ({ch:?} at byte {at}; allowed: a-z 0-9 . - _)"
    )]
    BadTrustDomainChar { ch: char, at: usize },
    #[error(
        "path has a character that is not allowed ({ch:?} at byte {at}; allowed: a-z A-Z 0-9 . - _)"
    )]
    BadPathChar { ch: char, at: usize },
    #[error("path has an empty segment (\"//\" or a trailing '/' at byte {at})")]
    EmptySegment { at: usize },
    #[error("path has a \".\" or \"..\" segment at byte {at}")]
    DotSegment { at: usize },
    #[error("a workload SPIFFE ID needs a path; {0:?} names only a trust domain")]
    NoPath(String),
}

/// A SPIFFE trust domain name, such as `east.acme.example`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// Parses a bare trust domain name (`east.acme.example`) or a trust
    /// domain's own ID (`spiffe://east.acme.example`).
    pub fn new(name: &str) -> Result<Self, IdError> {
        if name.is_empty() {
            return Err(IdError::MissingTrustDomain);
        }
        if name.contains("://") {
            let id = SpiffeId::new(name)?;
            if !id.path().is_empty() {
                return Err(IdError::BadTrustDomainChar {
                    ch: '/',
                    at: SCHEME_PREFIX.len() + id.trust_domain_str().len(),
                });
            }
            return Ok(id.trust_domain());
        }
        check_trust_domain(name, 0)?;
        Ok(Self(name.to_owned()))
    }

    /// The trust domain's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The SPIFFE ID of the trust domain itself (`spiffe://<name>`).
    pub fn id(&self) -> SpiffeId {
        SpiffeId {
            td_len: self.0.len(),
            uri: format!("{SCHEME_PREFIX}{}", self.0),
        }
    }

    /// A SPIFFE ID in this trust domain with the given path, which must start
    /// with '/'.
    pub fn workload_id(&self, path: &str) -> Result<SpiffeId, IdError> {
        SpiffeId::new(&format!("{SCHEME_PREFIX}{}{path}", self.0))
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrustDomain({})", self.0)
    }
}

impl FromStr for TrustDomain {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// A SPIFFE ID, such as `spiffe://east.acme.example/ns/shop/sa/frontend`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpiffeId {
    uri: String,
    td_len: usize,
}

impl SpiffeId {
    /// Parses a SPIFFE ID by the spec's rules.
    pub fn new(s: &str) -> Result<Self, IdError> {
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        if s.len() > MAX_ID_LEN {
            return Err(IdError::TooLong { len: s.len() });
        }
        let rest = s.strip_prefix(SCHEME_PREFIX).ok_or(IdError::WrongScheme)?;
        let base = SCHEME_PREFIX.len();
        let td_end = rest.find('/').unwrap_or(rest.len());
        let td = &rest[..td_end];
        if td.is_empty() {
            return Err(IdError::MissingTrustDomain);
        }
        check_trust_domain(td, base)?;
        check_path(&rest[td_end..], base + td_end)?;
        Ok(Self {
            uri: s.to_owned(),
            td_len: td.len(),
        })
    }

    /// Parses a SPIFFE ID that must name a workload (have a non-empty path),
    /// as the ID in an X.509-SVID leaf must.
    pub fn workload(s: &str) -> Result<Self, IdError> {
        let id = Self::new(s)?;
        if id.path().is_empty() {
            return Err(IdError::NoPath(s.to_owned()));
        }
        Ok(id)
    }

    /// The ID as a URI string.
    pub fn as_str(&self) -> &str {
        &self.uri
    }

    /// The trust domain the ID belongs to.
    pub fn trust_domain(&self) -> TrustDomain {
        TrustDomain(self.trust_domain_str().to_owned())
    }

    /// The trust domain's name, borrowed.
    pub fn trust_domain_str(&self) -> &str {
        &self.uri[SCHEME_PREFIX.len()..SCHEME_PREFIX.len() + self.td_len]
    }

    /// The path, with its leading '/', or "" for a trust domain's own ID.
    pub fn path(&self) -> &str {
        &self.uri[SCHEME_PREFIX.len() + self.td_len..]
    }

    /// Whether the ID belongs to the trust domain.
    pub fn is_member_of(&self, td: &TrustDomain) -> bool {
        self.trust_domain_str() == td.as_str()
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpiffeId({})", self.uri)
    }
}

impl FromStr for SpiffeId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

macro_rules! string_serde {
    ($ty:ty, $parse:expr, $what:literal) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $parse(&s).map_err(|e| {
                    serde::de::Error::custom(format!(concat!("invalid ", $what, " {:?}: {}"), s, e))
                })
            }
        }
    };
}
string_serde!(SpiffeId, SpiffeId::new, "SPIFFE ID");
string_serde!(TrustDomain, TrustDomain::new, "trust domain");

/// Checks a trust domain name; `base` is its byte offset in the input, for
/// error positions.
fn check_trust_domain(td: &str, base: usize) -> Result<(), IdError> {
    if td.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(IdError::TrustDomainTooLong { len: td.len() });
    }
    for (i, ch) in td.char_indices() {
        let at = base + i;
        match ch {
            'a'..='z' | '0'..='9' | '.' | '-' | '_' => {}
            'A'..='Z' => return Err(IdError::UpperCaseTrustDomain { ch, at }),
            other => {
                return Err(
                    special_char(other, at).unwrap_or(IdError::BadTrustDomainChar { ch, at })
                );
            }
        }
    }
    Ok(())
}

fn check_path(path: &str, base: usize) -> Result<(), IdError> {
    if path.is_empty() {
        return Ok(());
    }
    // `path` starts with '/', so the first split item is the empty prefix.
    let mut offset = base;
    for segment in path.split('/').skip(1) {
        let seg_start = offset + 1;
        if segment.is_empty() {
            return Err(IdError::EmptySegment { at: offset });
        }
        if segment == "." || segment == ".." {
            return Err(IdError::DotSegment { at: seg_start });
        }
        for (i, ch) in segment.char_indices() {
            let at = seg_start + i;
            match ch {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => {}
                other => {
                    return Err(special_char(other, at).unwrap_or(IdError::BadPathChar { ch, at }));
                }
            }
        }
        offset = seg_start + segment.len();
    }
    Ok(())
}

/// The characters with a URI meaning of their own get a message naming it.
fn special_char(ch: char, at: usize) -> Option<IdError> {
    Some(match ch {
        ':' => IdError::Port { at },
        '@' => IdError::UserInfo { at },
        '?' => IdError::Query { at },
        '#' => IdError::Fragment { at },
        '%' => IdError::PercentEncoded { at },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_ids() {
        let id = SpiffeId::new("spiffe://east.acme.example/ns/shop/sa/frontend").unwrap();
        assert_eq!(id.trust_domain_str(), "east.acme.example");
        assert_eq!(id.path(), "/ns/shop/sa/frontend");
        let td = SpiffeId::new("spiffe://east.acme.example").unwrap();
        assert_eq!(td.path(), "");
        assert_eq!(td, TrustDomain::new("east.acme.example").unwrap().id());
        assert!(SpiffeId::new("spiffe://a/B.c-d_e/..x/.y").is_ok());
    }

    #[test]
    fn refuses_each_rule_with_its_own_error() {
        let cases: &[(&str, IdError)] = &[
            ("", IdError::Empty),
            ("http://td/x", IdError::WrongScheme),
            ("SPIFFE://td/x", IdError::WrongScheme),
            ("spiffe://", IdError::MissingTrustDomain),
            ("spiffe:///path", IdError::MissingTrustDomain),
            ("spiffe://td:8443/x", IdError::Port { at: 11 }),
            ("spiffe://user@td/x", IdError::UserInfo { at: 13 }),
            ("spiffe://td/x?q=1", IdError::Query { at: 13 }),
            ("spiffe://td/x#frag", IdError::Fragment { at: 13 }),
            ("spiffe://td/a%20b", IdError::PercentEncoded { at: 13 }),
            (
                "spiffe://Td/x",
                IdError::UpperCaseTrustDomain { ch: 'T', at: 9 },
            ),
            (
                "spiffe://t$d/x",
                IdError::BadTrustDomainChar { ch: '$', at: 10 },
            ),
            ("spiffe://td/a$b", IdError::BadPathChar { ch: '$', at: 13 }),
            ("spiffe://td/a//b", IdError::EmptySegment { at: 13 }),
            ("spiffe://td/a/", IdError::EmptySegment { at: 13 }),
            ("spiffe://td/", IdError::EmptySegment { at: 11 }),
            ("spiffe://td/./a", IdError::DotSegment { at: 12 }),
            ("spiffe://td/a/..", IdError::DotSegment { at: 14 }),
        ];
        for (input, want) in cases {
            assert_eq!(SpiffeId::new(input).as_ref(), Err(want), "input {input:?}");
        }
    }

    #[test]
    fn length_limits() {
        let td = "a".repeat(256);
        assert_eq!(
            SpiffeId::new(&format!("spiffe://{td}/x")),
            Err(IdError::TrustDomainTooLong { len: 256 })
        );
        let long = format!("spiffe://td/{}", "a".repeat(MAX_ID_LEN));
        assert!(matches!(SpiffeId::new(&long), Err(IdError::TooLong { .. })));
        let exact = format!("spiffe://td/{}", "a".repeat(MAX_ID_LEN - 12));
        assert_eq!(exact.len(), MAX_ID_LEN);
        assert!(SpiffeId::new(&exact).is_ok());
    }

    #[test]
    fn trust_domain_forms() {
        assert_eq!(
            TrustDomain::new("spiffe://west.globex.example")
                .unwrap()
                .as_str(),
            "west.globex.example"
        );
        assert!(TrustDomain::new("spiffe://west/x").is_err());
        assert!(TrustDomain::new("").is_err());
        assert!(SpiffeId::workload("spiffe://td").is_err());
    }
}
