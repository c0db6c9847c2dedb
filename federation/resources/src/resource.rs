//! Resource files: YAML with one or more documents (`---`), each a `Peering`
//! or a `Service` of API version [`API_VERSION`]. A file is read whole and
//! every problem of every document is reported at once; a file with any
//! problem yields no resource.

use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::peering::Peering;
use crate::problem::{Origin, Problem, Problems, ResourceError};
use crate::raw::{API_VERSION, RawDocument, RawPeeringSpec, RawServiceSpec};
use crate::service::Service;

/// The kinds of resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Peering,
    Service,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Peering, Kind::Service];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Peering => "Peering",
            Self::Service => "Service",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// Boxed: a peering is several times the size of a service.
    Peering(Box<Peering>),
    Service(Service),
}

impl Resource {
    pub fn kind(&self) -> Kind {
        match self {
            Self::Peering(_) => Kind::Peering,
            Self::Service(_) => Kind::Service,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Self::Peering(p) => p.name.as_str(),
            Self::Service(s) => s.name.as_str(),
        }
    }

    /// `Kind/name`, how refusals and plans name a resource.
    pub fn key(&self) -> String {
        format!("{}/{}", self.kind(), self.name())
    }

    /// The resource as one YAML document, standing on its own (a peering's
    /// first bundle inline): what the store keeps, and what
    /// [`parse_str`] reads back to an equal resource.
    pub fn to_yaml(&self) -> Result<String, ResourceError> {
        let text = match self {
            Self::Peering(p) => serde_saphyr::to_string(&document(Kind::Peering, self, p.to_raw())),
            Self::Service(s) => serde_saphyr::to_string(&document(Kind::Service, self, s.to_raw())),
        };
        text.map_err(|e| ResourceError::file(&self.key(), format!("cannot write as YAML: {e}")))
    }
}

fn document<S>(kind: Kind, r: &Resource, spec: S) -> RawDocument<S> {
    RawDocument {
        api_version: API_VERSION.to_owned(),
        kind: kind.as_str().to_owned(),
        name: r.name().to_owned(),
        spec,
    }
}

/// A resource and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub origin: Origin,
    pub resource: Resource,
}

/// Reads a resource file. Relative paths in it (first bundles) are taken
/// from the file's directory.
pub fn load_file(path: &Path) -> Result<Vec<Entry>, ResourceError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ResourceError::file(&name, e))?;
    parse_str(&name, &text, path.parent().unwrap_or(Path::new(".")))
}

/// Parses and validates the documents of one file; `file` names it in
/// refusals and `base` resolves its relative paths.
pub fn parse_str(file: &str, text: &str, base: &Path) -> Result<Vec<Entry>, ResourceError> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text)
        .map_err(|e| ResourceError::file(file, format!("not YAML: {e}")))?;
    if docs.is_empty() {
        return Err(ResourceError::file(file, "the file holds no resource"));
    }
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        let origin = Origin::new(file, i + 1);
        match parse_document(&origin, doc, base) {
            Ok(resource) => entries.push(Entry { origin, resource }),
            Err(mut p) => problems.append(&mut p),
        }
    }
    if problems.is_empty() {
        Ok(entries)
    } else {
        Err(ResourceError { problems })
    }
}

fn parse_document(origin: &Origin, doc: Value, base: &Path) -> Result<Resource, Vec<Problem>> {
    let header = |key: &str| doc.get(key).and_then(Value::as_str).map(str::to_owned);
    let (version, kind, name) = (header("apiVersion"), header("kind"), header("name"));
    let resource = match (&kind, &name) {
        (Some(k), Some(n)) => Some(format!("{k}/{n}")),
        _ => None,
    };
    let mut p = Problems::new(origin, resource);
    if !doc.is_object() {
        p.push(
            "",
            "a document must be a mapping with apiVersion, kind, name and spec",
        );
        return Err(p.list);
    }
    match version.as_deref() {
        Some(API_VERSION) => {}
        Some(other) => p.push(
            "apiVersion",
            format!("{other:?} is not a version this Causeway reads (it reads {API_VERSION})"),
        ),
        None => p.push(
            "apiVersion",
            format!("missing; write apiVersion: {API_VERSION}"),
        ),
    }
    let kinds = || {
        Kind::ALL
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let kind = match kind.as_deref().map(|k| (k, Kind::parse(k))) {
        Some((_, Some(k))) => Some(k),
        Some((other, None)) => {
            p.push(
                "kind",
                format!("{other:?} is not a kind of resource ({})", kinds()),
            );
            None
        }
        None => {
            p.push("kind", format!("missing; one of {}", kinds()));
            None
        }
    };
    if name.is_none() {
        p.push("name", "missing");
    }
    let (Some(kind), true) = (kind, p.list.is_empty()) else {
        return Err(p.list);
    };
    let resource = match kind {
        Kind::Peering => shape::<RawPeeringSpec>(&mut p, doc)
            .and_then(|d| Peering::from_raw(&mut p, &d.name, &d.spec, base))
            .map(|p| Resource::Peering(Box::new(p))),
        Kind::Service => shape::<RawServiceSpec>(&mut p, doc)
            .and_then(|d| Service::from_raw(&mut p, &d.name, &d.spec))
            .map(Resource::Service),
    };
    match resource {
        Some(r) if p.list.is_empty() => Ok(r),
        _ => Err(p.list),
    }
}

/// The document in its raw struct, or the problem with the path of the
/// field whose shape is wrong.
fn shape<S: DeserializeOwned>(p: &mut Problems, doc: Value) -> Option<RawDocument<S>> {
    match serde_path_to_error::deserialize::<_, RawDocument<S>>(doc) {
        Ok(d) => Some(d),
        Err(e) => {
            let field = e.path().to_string();
            let field = if field == "." { String::new() } else { field };
            p.push(field, e.into_inner());
            None
        }
    }
}
