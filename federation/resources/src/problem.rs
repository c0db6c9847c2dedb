//! Refusals: every problem names the file, the resource, the field and the
//! reason, and a refusal carries all of them at once, never only the first.

use std::fmt;

/// Where a resource came from: a file and its place in it, or the store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The file as the user named it, or `store` for what the store holds.
    pub file: String,
    /// 1-based index among the file's non-empty YAML documents.
    pub document: usize,
}

impl Origin {
    pub fn new(file: impl Into<String>, document: usize) -> Self {
        Self {
            file: file.into(),
            document,
        }
    }

    /// The origin of a resource read back from the store.
    pub fn store() -> Self {
        Self::new("store", 0)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.document == 0 {
            f.write_str(&self.file)
        } else {
            write!(f, "{} (document {})", self.file, self.document)
        }
    }
}

/// One problem: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file the problem is in (or `store`).
    pub file: String,
    /// 1-based document index in the file; 0 when the problem is the whole file's.
    pub document: usize,
    /// `Kind/name` of the resource, when known.
    pub resource: Option<String>,
    /// Path to the field, such as `spec.identityMap[2].principal`; empty
    /// when the problem is the whole document's.
    pub field: String,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if self.document > 0 {
            write!(f, " (document {})", self.document)?;
        }
        if let Some(r) = &self.resource {
            write!(f, " {r}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// A refusal: every problem found, in the order found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ResourceError {
    pub problems: Vec<Problem>,
}

impl ResourceError {
    /// A refusal with a single problem about a whole file.
    pub fn file(file: &str, reason: impl fmt::Display) -> Self {
        Self {
            problems: vec![Problem {
                file: file.to_owned(),
                document: 0,
                resource: None,
                field: String::new(),
                reason: reason.to_string(),
            }],
        }
    }
}

impl fmt::Display for ResourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(f, "refused: {n} problem{}", if n == 1 { "" } else { "s" })?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

/// Collects the problems of one resource instead of stopping at the first.
#[derive(Debug)]
pub(crate) struct Problems {
    origin: Origin,
    resource: Option<String>,
    pub(crate) list: Vec<Problem>,
}

impl Problems {
    pub(crate) fn new(origin: &Origin, resource: Option<String>) -> Self {
        Self {
            origin: origin.clone(),
            resource,
            list: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, field: impl Into<String>, reason: impl fmt::Display) {
        self.list.push(Problem {
            file: self.origin.file.clone(),
            document: self.origin.document,
            resource: self.resource.clone(),
            field: field.into(),
            reason: reason.to_string(),
        });
    }

    /// Keeps the value, or records the error under `field`.
    pub(crate) fn check<T, E: fmt::Display>(
        &mut self,
        field: impl Into<String>,
        r: Result<T, E>,
    ) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.push(field, e);
                None
            }
        }
    }
}
