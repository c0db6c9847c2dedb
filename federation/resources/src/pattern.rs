//! SPIFFE ID patterns: the small, decidable language identity maps and
//! caller lists use.
//!
//! A pattern is a SPIFFE ID whose path segments may be wildcards:
//!
//! - `*` as a whole segment matches exactly one segment;
//! - `**` as the last segment matches one or more trailing segments;
//! - every other segment is literal, by the SPIFFE ID spec's rules.
//!
//! The trust domain is always literal, and a pattern always has a path.
//! So `spiffe://west.globex.example/ns/payments/sa/*` is every service
//! account of one namespace, and `spiffe://west.globex.example/**` every
//! workload of the domain. Matching is linear in the ID's length, and
//! [`IdPattern::overlap`] decides whether two patterns match a common ID
//! (and names one).

use std::fmt;

use causeway_trust::{IdError, SpiffeId, TrustDomain};

/// Why a string is not a pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error(transparent)]
    Id(#[from] IdError),
    #[error("the trust domain of a pattern is never a wildcard")]
    WildcardTrustDomain,
    #[error(
        "segment {segment:?} mixes '*' with other characters; a wildcard is a whole segment, '*' or '**'"
    )]
    PartialWildcard { segment: String },
    #[error("'**' may only be the last segment")]
    DoubleStarNotLast,
    #[error(
        "a pattern needs a path (no workload has the trust domain's own ID; write {0}/** for every workload of the domain)"
    )]
    NoPath(String),
}

/// One segment of a pattern's path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    Literal(String),
    /// `*`: exactly one segment.
    Star,
    /// `**`: one or more trailing segments (last only).
    DoubleStar,
}

impl Segment {
    fn compatible(&self, other: &Segment) -> bool {
        match (self, other) {
            (Self::Literal(a), Self::Literal(b)) => a == b,
            _ => true,
        }
    }
}

/// A validated SPIFFE ID pattern.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IdPattern {
    text: String,
    trust_domain: TrustDomain,
    segments: Vec<Segment>,
}

impl IdPattern {
    /// Parses a pattern; an exact SPIFFE ID (with a path) is a pattern.
    pub fn new(s: &str) -> Result<Self, PatternError> {
        // Query and fragment first: they would otherwise look like a
        // segment mixing '*' with other characters.
        if let Some(at) = s.find('?') {
            return Err(IdError::Query { at }.into());
        }
        if let Some(at) = s.find('#') {
            return Err(IdError::Fragment { at }.into());
        }
        let rest = s.strip_prefix("spiffe://").ok_or(IdError::WrongScheme)?;
        let td_end = rest.find('/').unwrap_or(rest.len());
        if rest[..td_end].contains('*') {
            return Err(PatternError::WildcardTrustDomain);
        }
        let path = &rest[td_end..];
        let raw: Vec<&str> = if path.is_empty() {
            Vec::new()
        } else {
            path[1..].split('/').collect()
        };
        let last = raw.len().saturating_sub(1);
        for (i, seg) in raw.iter().enumerate() {
            match *seg {
                "*" => {}
                "**" if i == last => {}
                "**" => return Err(PatternError::DoubleStarNotLast),
                other if other.contains('*') => {
                    return Err(PatternError::PartialWildcard {
                        segment: other.to_owned(),
                    });
                }
                _ => {}
            }
        }
        // Every other rule is the SPIFFE ID spec's: check the pattern with
        // each wildcard replaced by a literal of the same length, so that
        // byte positions in the error stay right.
        let probe: String = s.replace("**", "xx").replace('*', "x");
        let probe_id = SpiffeId::new(&probe)?;
        if raw.is_empty() {
            return Err(PatternError::NoPath(s.to_owned()));
        }
        let segments = raw
            .iter()
            .map(|seg| match *seg {
                "*" => Segment::Star,
                "**" => Segment::DoubleStar,
                lit => Segment::Literal(lit.to_owned()),
            })
            .collect();
        Ok(Self {
            text: s.to_owned(),
            trust_domain: probe_id.trust_domain(),
            segments,
        })
    }

    /// The pattern matching exactly one SPIFFE ID.
    pub fn exact(id: &SpiffeId) -> Result<Self, PatternError> {
        Self::new(id.as_str())
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Whether the pattern has no wildcard (matches exactly one ID).
    pub fn is_exact(&self) -> bool {
        self.segments
            .iter()
            .all(|s| matches!(s, Segment::Literal(_)))
    }

    /// Whether the ID matches.
    pub fn matches(&self, id: &SpiffeId) -> bool {
        id.trust_domain_str() == self.trust_domain.as_str() && self.matches_path(id.path())
    }

    /// Whether a SPIFFE ID's path (with its leading '/') matches.
    pub fn matches_path(&self, path: &str) -> bool {
        let Some(path) = path.strip_prefix('/') else {
            return false;
        };
        let mut ids = path.split('/');
        for seg in &self.segments {
            match seg {
                Segment::DoubleStar => return ids.next().is_some(),
                Segment::Star => {
                    if ids.next().is_none() {
                        return false;
                    }
                }
                Segment::Literal(l) => {
                    if ids.next() != Some(l.as_str()) {
                        return false;
                    }
                }
            }
        }
        ids.next().is_none()
    }

    /// Whether some SPIFFE ID matches both patterns.
    pub fn overlaps(&self, other: &IdPattern) -> bool {
        self.overlap(other).is_some()
    }

    /// An ID both patterns match, if there is one: the witness named in
    /// refusals ("both match spiffe://…").
    pub fn overlap(&self, other: &IdPattern) -> Option<String> {
        if self.trust_domain != other.trust_domain {
            return None;
        }
        let (a, b) = (&self.segments, &other.segments);
        let open = |p: &[Segment]| matches!(p.last(), Some(Segment::DoubleStar));
        // The length of a common ID: a closed pattern fixes it, an open one
        // (ending in `**`) needs at least as many segments as it has.
        let len = match (open(a), open(b)) {
            (false, false) if a.len() == b.len() => a.len(),
            (false, true) if a.len() >= b.len() => a.len(),
            (true, false) if b.len() >= a.len() => b.len(),
            (true, true) => a.len().max(b.len()),
            _ => return None,
        };
        let at = |p: &[Segment], i: usize| -> Segment {
            match p.get(i) {
                Some(Segment::DoubleStar) | None => Segment::Star,
                Some(s) => s.clone(),
            }
        };
        let mut witness = format!("spiffe://{}", self.trust_domain);
        for i in 0..len {
            let (sa, sb) = (at(a, i), at(b, i));
            if !sa.compatible(&sb) {
                return None;
            }
            witness.push('/');
            match (sa, sb) {
                (Segment::Literal(l), _) | (_, Segment::Literal(l)) => witness.push_str(&l),
                _ => witness.push('x'),
            }
        }
        Some(witness)
    }
}

impl IdPattern {
    /// The pattern matching exactly the IDs both match, if any does.
    pub fn intersect(&self, other: &IdPattern) -> Option<IdPattern> {
        self.overlap(other)?;
        let (a, b) = (&self.segments, &other.segments);
        let open = |p: &[Segment]| matches!(p.last(), Some(Segment::DoubleStar));
        let (open_a, open_b) = (open(a), open(b));
        // Fixed segments before any trailing `**`.
        let fixed = |p: &[Segment]| if open(p) { p.len() - 1 } else { p.len() };
        let len = fixed(a).max(fixed(b));
        let at = |p: &[Segment], i: usize| -> Segment {
            match p.get(i) {
                Some(Segment::DoubleStar) | None => Segment::Star,
                Some(s) => s.clone(),
            }
        };
        let mut text = format!("spiffe://{}", self.trust_domain);
        for i in 0..len {
            text.push('/');
            match (at(a, i), at(b, i)) {
                (Segment::Literal(l), _) | (_, Segment::Literal(l)) => text.push_str(&l),
                _ => text.push('*'),
            }
        }
        // Open only if both are: a closed pattern fixes the length.
        if open_a && open_b {
            text.push_str("/**");
        }
        IdPattern::new(&text).ok()
    }
}

impl fmt::Display for IdPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for IdPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdPattern({})", self.text)
    }
}

impl std::str::FromStr for IdPattern {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> IdPattern {
        IdPattern::new(s).unwrap()
    }
    fn id(s: &str) -> SpiffeId {
        SpiffeId::new(s).unwrap()
    }

    #[test]
    fn intersections() {
        let i = |a: &str, b: &str| p(a).intersect(&p(b)).map(|x| x.to_string());
        let w = "spiffe://west.globex.example";
        assert_eq!(
            i(&format!("{w}/ns/*/sa/api"), &format!("{w}/ns/payments/**")),
            Some(format!("{w}/ns/payments/sa/api"))
        );
        assert_eq!(
            i(&format!("{w}/**"), &format!("{w}/ns/*/**")),
            Some(format!("{w}/ns/*/**"))
        );
        assert_eq!(i(&format!("{w}/a/*"), &format!("{w}/b/*")), None);
        assert_eq!(i(&format!("{w}/a/*"), &format!("{w}/a/*/c")), None);
        assert_eq!(
            i(&format!("{w}/a/**"), "spiffe://east.acme.example/a/**"),
            None
        );
        // Whatever both match, the intersection matches, and nothing else.
        let ids = [
            "/ns/payments/sa/api",
            "/ns/payments/sa/x",
            "/ns/shop/sa/api",
            "/ns/payments",
        ];
        for (a, b) in [("/ns/*/sa/api", "/ns/payments/**"), ("/**", "/ns/*/sa/*")] {
            let (pa, pb) = (p(&format!("{w}{a}")), p(&format!("{w}{b}")));
            let both = pa.intersect(&pb).unwrap();
            for path in ids {
                let x = id(&format!("{w}{path}"));
                assert_eq!(
                    both.matches(&x),
                    pa.matches(&x) && pb.matches(&x),
                    "{a} {b} {path}"
                );
            }
        }
    }

    #[test]
    fn matching() {
        let ns = p("spiffe://west.globex.example/ns/payments/sa/*");
        assert!(ns.matches(&id("spiffe://west.globex.example/ns/payments/sa/api")));
        assert!(!ns.matches(&id("spiffe://west.globex.example/ns/payments/sa")));
        assert!(!ns.matches(&id("spiffe://west.globex.example/ns/payments/sa/api/x")));
        assert!(!ns.matches(&id("spiffe://east.acme.example/ns/payments/sa/api")));
        let all = p("spiffe://west.globex.example/**");
        assert!(all.matches(&id("spiffe://west.globex.example/a")));
        assert!(all.matches(&id("spiffe://west.globex.example/a/b/c")));
        assert!(!all.matches(&id("spiffe://west.globex.example")));
        assert!(p("spiffe://td/a").is_exact());
        assert!(!ns.is_exact());
    }

    #[test]
    fn refusals() {
        let cases: &[(&str, PatternError)] = &[
            ("spiffe://*.example/a", PatternError::WildcardTrustDomain),
            (
                "spiffe://td/ns/sa-*",
                PatternError::PartialWildcard {
                    segment: "sa-*".into(),
                },
            ),
            ("spiffe://td/**/a", PatternError::DoubleStarNotLast),
            ("spiffe://td/a//b", IdError::EmptySegment { at: 13 }.into()),
            ("spiffe://td/a/*?x=1", IdError::Query { at: 15 }.into()),
            ("spiffe://td/a#f", IdError::Fragment { at: 13 }.into()),
            (
                "spiffe://TD/a",
                IdError::UpperCaseTrustDomain { ch: 'T', at: 9 }.into(),
            ),
            ("http://td/a", IdError::WrongScheme.into()),
            ("spiffe://td", PatternError::NoPath("spiffe://td".into())),
            ("spiffe://td/", IdError::EmptySegment { at: 11 }.into()),
        ];
        for (input, want) in cases {
            assert_eq!(IdPattern::new(input).as_ref(), Err(want), "{input}");
        }
    }

    #[test]
    fn overlaps() {
        let a = p("spiffe://td/ns/payments/sa/*");
        assert_eq!(
            a.overlap(&p("spiffe://td/ns/*/sa/api")).as_deref(),
            Some("spiffe://td/ns/payments/sa/api")
        );
        assert!(a.overlaps(&p("spiffe://td/ns/**")));
        assert!(!a.overlaps(&p("spiffe://td/ns/billing/sa/*")));
        assert!(!a.overlaps(&p("spiffe://other/ns/payments/sa/*")));
        assert!(!a.overlaps(&p("spiffe://td/ns/payments/sa/*/x/**")));
        assert!(!p("spiffe://td/a/**").overlaps(&p("spiffe://td/a")));
    }
}
