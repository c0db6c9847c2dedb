//! Service names: what a caller dials (`payments`, `payments.west`) and
//! what a stream header names. Lower-case DNS-style names, checked once.

use std::fmt;

/// Longest service name accepted, as for a DNS name.
pub const MAX_SERVICE_NAME_LEN: usize = 253;

/// A service name: 1..=253 characters of `[a-z0-9.-]`, starting and ending
/// with a letter or digit, without empty labels.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceName(String);

/// Why a string is not a service name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceNameError {
    #[error("service name is empty")]
    Empty,
    #[error("service name is {len} bytes long; at most {MAX_SERVICE_NAME_LEN} are allowed")]
    TooLong { len: usize },
    #[error(
        "service name has a character that is not allowed ({ch:?} at byte {at}; allowed: a-z 0-9 . -)"
    )]
    BadChar { ch: char, at: usize },
    #[error("service name must start and end with a letter or digit, and have no empty label")]
    BadShape,
}

impl ServiceName {
    pub fn new(s: &str) -> Result<Self, ServiceNameError> {
        if s.is_empty() {
            return Err(ServiceNameError::Empty);
        }
        if s.len() > MAX_SERVICE_NAME_LEN {
            return Err(ServiceNameError::TooLong { len: s.len() });
        }
        for (at, ch) in s.char_indices() {
            if !(ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '.' || ch == '-') {
                return Err(ServiceNameError::BadChar { ch, at });
            }
        }
        let bytes = s.as_bytes();
        let edge_ok = |b: u8| b.is_ascii_alphanumeric();
        if !edge_ok(bytes[0]) || !edge_ok(bytes[bytes.len() - 1]) || s.contains("..") {
            return Err(ServiceNameError::BadShape);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServiceName({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(ServiceName::new("payments").is_ok());
        assert!(ServiceName::new("payments.west-1").is_ok());
        assert_eq!(ServiceName::new(""), Err(ServiceNameError::Empty));
        assert_eq!(
            ServiceName::new("Payments"),
            Err(ServiceNameError::BadChar { ch: 'P', at: 0 })
        );
        assert_eq!(ServiceName::new("-x"), Err(ServiceNameError::BadShape));
        assert_eq!(ServiceName::new("x."), Err(ServiceNameError::BadShape));
        assert_eq!(ServiceName::new("a..b"), Err(ServiceNameError::BadShape));
        assert!(matches!(
            ServiceName::new(&"a".repeat(254)),
            Err(ServiceNameError::TooLong { .. })
        ));
    }
}
