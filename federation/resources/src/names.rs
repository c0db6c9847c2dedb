//! The names resources use, each checked once: a resource's name, a
//! service's name (the rules of the gateway's service names: what a caller
//! dials and a stream header names) and a local principal's name (what an
//! identity map produces and authorization rules name).

use std::fmt;

/// Why a string is not a name of the kind asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} is {len} bytes long; at most {max} are allowed")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{what} has a character that is not allowed ({ch:?} at byte {at}; allowed: {allowed})")]
    BadChar {
        what: &'static str,
        ch: char,
        at: usize,
        allowed: &'static str,
    },
    #[error("{what} must start and end with a lower-case letter or digit, with no \"..\"")]
    BadShape { what: &'static str },
}

fn check(
    s: &str,
    what: &'static str,
    max: usize,
    allowed: &'static str,
    extra: &[char],
) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty { what });
    }
    if s.len() > max {
        return Err(NameError::TooLong {
            what,
            len: s.len(),
            max,
        });
    }
    for (at, ch) in s.char_indices() {
        let allowed_char = ch.is_ascii_lowercase()
            || ch.is_ascii_digit()
            || ch == '.'
            || ch == '-'
            || extra.contains(&ch);
        if !allowed_char {
            return Err(NameError::BadChar {
                what,
                ch,
                at,
                allowed,
            });
        }
    }
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !edge(s.chars().next()) || !edge(s.chars().last()) || s.contains("..") {
        return Err(NameError::BadShape { what });
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $what:literal, $max:expr, $allowed:literal, $extra:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $ty(String);

        impl $ty {
            pub fn new(s: &str) -> Result<Self, NameError> {
                check(s, $what, $max, $allowed, $extra)?;
                Ok(Self(s.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($ty), "({})"), self.0)
            }
        }

        impl std::borrow::Borrow<str> for $ty {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type!(
    /// A resource's name (`west`, `payments`): DNS-style, 1..=253 bytes of
    /// `[a-z0-9.-]`.
    ResourceName,
    "name",
    253,
    "a-z 0-9 . -",
    &[]
);
name_type!(
    /// A service name (`payments`, `payments.west`): the gateway's rules,
    /// 1..=253 bytes of `[a-z0-9.-]`, starting and ending with a letter or
    /// digit, without empty labels.
    ServiceName,
    "service name",
    253,
    "a-z 0-9 . -",
    &[]
);
name_type!(
    /// A local principal (`west-payments`): what an identity map maps a
    /// foreign SPIFFE ID to, and what authorization rules name. 1..=128
    /// bytes of `[a-z0-9._-]`.
    PrincipalName,
    "principal name",
    128,
    "a-z 0-9 . - _",
    &['_']
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(ServiceName::new("payments.west-1").is_ok());
        assert!(PrincipalName::new("west_payments").is_ok());
        assert!(ServiceName::new("west_payments").is_err());
        assert!(matches!(
            ServiceName::new("Payments"),
            Err(NameError::BadChar { ch: 'P', at: 0, .. })
        ));
        assert!(matches!(
            ResourceName::new("-x"),
            Err(NameError::BadShape { .. })
        ));
        assert!(matches!(
            ResourceName::new("a..b"),
            Err(NameError::BadShape { .. })
        ));
        assert!(matches!(
            PrincipalName::new(""),
            Err(NameError::Empty { .. })
        ));
    }
}
