//! The resource set in the store: read whole at one revision, with the
//! revision of `resources/meta` that every apply compares.

use std::sync::Arc;

use causeway_resources::{Entry, Origin, ResourceSet, parse_str};
use causeway_store::{Revision, Store};

use crate::error::{ControllerError, Result};
use crate::keys;

/// The stored resources and the revisions an apply compares against.
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) set: ResourceSet,
    /// Mod revision of `resources/meta` (0: never applied).
    pub(crate) meta_revision: Revision,
    pub(crate) meta_counter: u64,
    /// The store revision of the read.
    pub(crate) revision: Revision,
}

pub(crate) async fn read(store: &Arc<dyn Store>) -> Result<Stored> {
    let list = store.list(keys::RESOURCES).await?;
    let mut entries = Vec::new();
    let mut meta_revision = 0;
    let mut meta_counter = 0;
    for kv in &list.kvs {
        if kv.key == keys::RESOURCES_META {
            meta_revision = kv.mod_revision;
            meta_counter = std::str::from_utf8(&kv.value)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| ControllerError::corrupt(&kv.key, "not a counter"))?;
            continue;
        }
        let text = std::str::from_utf8(&kv.value)
            .map_err(|_| ControllerError::corrupt(&kv.key, "not UTF-8"))?;
        let parsed = parse_str(&kv.key, text, std::path::Path::new(""))
            .map_err(|e| ControllerError::corrupt(&kv.key, e))?;
        entries.extend(parsed.into_iter().map(|e| Entry {
            origin: Origin::store(),
            resource: e.resource,
        }));
    }
    Ok(Stored {
        set: ResourceSet::new(entries),
        meta_revision,
        meta_counter,
        revision: list.revision,
    })
}
