//! The last good config snapshot on disk: written after a snapshot is
//! applied, read at start so that a gateway restarted while its controller
//! (or the controller's store) is down serves what it served before.

use causeway_proto::controller::v1::ConfigSnapshot;
use prost::Message;

use super::files::{DataDir, FileError, write_atomic};

/// The cached snapshot, if any. A file that does not decode is an error
/// (the caller logs it and goes on without a cache).
pub fn load(dir: &DataDir) -> Result<Option<ConfigSnapshot>, FileError> {
    let path = dir.snapshot_path();
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(FileError::Io { path, source }),
    };
    ConfigSnapshot::decode(bytes.as_slice())
        .map(Some)
        .map_err(|e| FileError::Invalid {
            path,
            detail: format!("not a config snapshot: {e}"),
        })
}

/// Replaces the cached snapshot (atomically).
pub fn store(dir: &DataDir, snapshot: &ConfigSnapshot) -> Result<(), FileError> {
    write_atomic(&dir.snapshot_path(), &snapshot.encode_to_vec(), true)
}
