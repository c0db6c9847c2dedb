//! The embedded store's one file: a snapshot followed by the transactions
//! applied since, each a checksummed record, appended and fsynced before the
//! transaction is acknowledged.
//!
//! ```text
//! file    = MAGIC record*            MAGIC = "CAUSEWAY-STORE-1"
//! record  = len:u32le crc:u32le payload[len]     crc = CRC-32 (IEEE) of payload
//! payload = 1 revision:i64 count:u64 (key value create:i64 mod:i64 lease:i64)*   snapshot
//!         | 2 revision:i64 count:u32 (1 key value lease:i64 | 2 key)*             transaction
//! key, value = len:u32le bytes; lease 0 = none
//! ```
//!
//! Promises:
//! - an acknowledged transaction is in the file (written and `fdatasync`ed);
//! - a crash mid-append leaves a torn tail: a record cut short by the end
//!   of the file, or zeros. Opening truncates it (that transaction was never
//!   acknowledged). Anything else that does not check (a bad checksum on a
//!   complete record, an unknown kind, a revision going backwards, a foreign
//!   header) is [`StoreError::Corrupt`] with the offset: the file is left
//!   as it is for someone to look at;
//! - the file is compacted by writing a new snapshot to a temporary file,
//!   fsyncing it, renaming it over the old one and fsyncing the directory:
//!   at every instant either the old or the new file is complete;
//! - after a failed write or fsync the log refuses further writes: the
//!   store must be reopened, which reads back what is really on disk.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::embedded::state::Entry;
use crate::{LeaseId, Op, Result, Revision, StoreError};

pub(crate) const FILE_NAME: &str = "causeway.store";
const TMP_NAME: &str = "causeway.store.tmp";
const MAGIC: &[u8; 16] = b"CAUSEWAY-STORE-1";
const SNAPSHOT: u8 = 1;
const TXN: u8 = 2;
const PUT: u8 = 1;
const DELETE: u8 = 2;
/// Compact once the transactions since the snapshot outweigh this and the
/// snapshot itself.
const MIN_COMPACT_BYTES: u64 = 4 * 1024 * 1024;

/// What the file holds: the snapshot and the transactions after it.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) snapshot_revision: Revision,
    pub(crate) kvs: BTreeMap<String, Entry>,
    pub(crate) txns: Vec<(Revision, Vec<Op>)>,
}

#[derive(Debug)]
pub(crate) struct Log {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    len: u64,
    snapshot_bytes: u64,
    broken: Option<String>,
}

impl Log {
    /// Opens the file in `dir`, creating an empty store (revision 1) when
    /// there is none, and reads it back.
    pub(crate) fn open(dir: &Path) -> Result<(Self, Recovered)> {
        let path = dir.join(FILE_NAME);
        let tmp = dir.join(TMP_NAME);
        if tmp.exists() {
            // A compaction that did not reach its rename: the store file is
            // still the complete old one.
            std::fs::remove_file(&tmp).map_err(|e| StoreError::io("removing", &tmp, e))?;
        }
        if !path.exists() {
            write_snapshot_file(dir, 1, std::iter::empty())?;
        }
        let bytes = std::fs::read(&path).map_err(|e| StoreError::io("reading", &path, e))?;
        let (recovered, snapshot_bytes, valid_len) = parse(&path, &bytes)?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| StoreError::io("opening", &path, e))?;
        let file_len = bytes.len() as u64;
        if valid_len < file_len {
            tracing::warn!(
                path = %path.display(),
                offset = valid_len,
                dropped = file_len - valid_len,
                "dropping a torn tail: a write that was never acknowledged"
            );
            file.set_len(valid_len)
                .and_then(|()| file.sync_all())
                .map_err(|e| StoreError::io("truncating", &path, e))?;
        }
        Ok((
            Self {
                dir: dir.to_owned(),
                path,
                file,
                len: valid_len,
                snapshot_bytes,
                broken: None,
            },
            recovered,
        ))
    }

    /// Appends one transaction and waits until it is on disk.
    pub(crate) fn append(&mut self, revision: Revision, ops: &[Op]) -> Result<()> {
        if let Some(reason) = &self.broken {
            return Err(StoreError::Unavailable(format!(
                "{} refuses writes after a failed write ({reason}); reopen the store",
                self.path.display()
            )));
        }
        let record = record(&encode_txn(revision, ops));
        let written = self
            .file
            .write_all(&record)
            .and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.len += record.len() as u64;
                Ok(())
            }
            Err(e) => {
                // The tail is unknown now (and after a failed fsync, so is
                // the page cache): take it back if possible, write no more.
                let _ = self.file.set_len(self.len);
                self.broken = Some(e.to_string());
                Err(StoreError::io("appending to", &self.path, e))
            }
        }
    }

    /// Whether the file has grown enough to be rewritten as one snapshot.
    pub(crate) fn wants_compaction(&self) -> bool {
        let txn_bytes = self.len.saturating_sub(self.snapshot_bytes);
        txn_bytes > MIN_COMPACT_BYTES.max(self.snapshot_bytes)
    }

    /// Rewrites the file as a snapshot of `entries` at `revision`.
    pub(crate) fn compact<'a>(
        &mut self,
        revision: Revision,
        entries: impl Iterator<Item = (&'a String, &'a Entry)>,
    ) -> Result<()> {
        if self.broken.is_some() {
            return Ok(());
        }
        let len = write_snapshot_file(&self.dir, revision, entries)?;
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| StoreError::io("opening", &self.path, e))?;
        self.len = len;
        self.snapshot_bytes = len;
        Ok(())
    }
}

/// Writes MAGIC and one snapshot to a temporary file, then renames it into
/// place, with the fsyncs that make the switch atomic. Returns its length.
fn write_snapshot_file<'a>(
    dir: &Path,
    revision: Revision,
    entries: impl Iterator<Item = (&'a String, &'a Entry)>,
) -> Result<u64> {
    let tmp = dir.join(TMP_NAME);
    let path = dir.join(FILE_NAME);
    let mut bytes = MAGIC.to_vec();
    bytes.extend(record(&encode_snapshot(revision, entries)));
    let mut file = File::create(&tmp).map_err(|e| StoreError::io("creating", &tmp, e))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| StoreError::io("writing", &tmp, e))?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(|e| StoreError::io("renaming into", &path, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("syncing directory", dir, e))?;
    Ok(bytes.len() as u64)
}

fn record(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend((payload.len() as u32).to_le_bytes());
    out.extend(crc32(payload).to_le_bytes());
    out.extend(payload);
    out
}

fn encode_snapshot<'a>(
    revision: Revision,
    entries: impl Iterator<Item = (&'a String, &'a Entry)>,
) -> Vec<u8> {
    let mut body = Vec::new();
    let mut count = 0u64;
    for (key, e) in entries {
        put_bytes(&mut body, key.as_bytes());
        put_bytes(&mut body, &e.value);
        body.extend(e.create_revision.to_le_bytes());
        body.extend(e.mod_revision.to_le_bytes());
        body.extend(e.lease.map_or(0, |l| l.0).to_le_bytes());
        count += 1;
    }
    let mut out = vec![SNAPSHOT];
    out.extend(revision.to_le_bytes());
    out.extend(count.to_le_bytes());
    out.extend(body);
    out
}

fn encode_txn(revision: Revision, ops: &[Op]) -> Vec<u8> {
    let mut out = vec![TXN];
    out.extend(revision.to_le_bytes());
    out.extend((ops.len() as u32).to_le_bytes());
    for op in ops {
        match op {
            Op::Put { key, value, lease } => {
                out.push(PUT);
                put_bytes(&mut out, key.as_bytes());
                put_bytes(&mut out, value);
                out.extend(lease.map_or(0, |l| l.0).to_le_bytes());
            }
            Op::Delete { key } => {
                out.push(DELETE);
                put_bytes(&mut out, key.as_bytes());
            }
        }
    }
    out
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Values are at most MAX_VALUE_BYTES and keys are bounded by the
    // transaction limit, so every length fits a u32.
    out.extend((bytes.len() as u32).to_le_bytes());
    out.extend(bytes);
}

/// Reads the whole file: the recovered state, the snapshot record's length
/// (with MAGIC) and the length of the valid prefix (shorter than the file
/// when it ends in a torn tail).
fn parse(path: &Path, bytes: &[u8]) -> Result<(Recovered, u64, u64)> {
    let corrupt = |offset: usize, reason: String| StoreError::Corrupt {
        location: format!("{} at byte {offset}", path.display()),
        reason,
    };
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(corrupt(0, "not a Causeway store file (bad header)".into()));
    }
    let mut pos = MAGIC.len();
    let mut recovered: Option<Recovered> = None;
    let mut snapshot_bytes = 0;
    let mut last_revision = 0;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let len = match read_u32(rest, 0) {
            Some(len) if rest.len() >= 8 => len as usize,
            // A header cut short by the end of the file: a torn append.
            _ => return Ok((require(recovered, path)?, snapshot_bytes, pos as u64)),
        };
        if rest.len() < 8 + len || rest.iter().all(|b| *b == 0) {
            // A record cut by the end of the file, or zeros: a torn append.
            return Ok((require(recovered, path)?, snapshot_bytes, pos as u64));
        }
        let crc = read_u32(rest, 4).unwrap_or(0);
        let payload = &rest[8..8 + len];
        if crc32(payload) != crc {
            return Err(corrupt(
                pos,
                "checksum mismatch in a complete record".into(),
            ));
        }
        let mut reader = Reader {
            bytes: payload,
            pos: 0,
        };
        let decoded = decode(&mut reader).map_err(|reason| corrupt(pos, reason))?;
        match (decoded, recovered.as_mut()) {
            (Decoded::Snapshot(revision, kvs), None) => {
                snapshot_bytes = (pos + 8 + len) as u64;
                last_revision = revision;
                recovered = Some(Recovered {
                    snapshot_revision: revision,
                    kvs,
                    txns: Vec::new(),
                });
            }
            (Decoded::Txn(revision, ops), Some(r)) => {
                if revision <= last_revision {
                    return Err(corrupt(
                        pos,
                        format!("revision {revision} after revision {last_revision}"),
                    ));
                }
                last_revision = revision;
                r.txns.push((revision, ops));
            }
            (Decoded::Snapshot(..), Some(_)) => {
                return Err(corrupt(pos, "a second snapshot".into()));
            }
            (Decoded::Txn(..), None) => {
                return Err(corrupt(pos, "a transaction before the snapshot".into()));
            }
        }
        pos += 8 + len;
    }
    Ok((require(recovered, path)?, snapshot_bytes, pos as u64))
}

fn require(recovered: Option<Recovered>, path: &Path) -> Result<Recovered> {
    recovered.ok_or_else(|| StoreError::Corrupt {
        location: path.display().to_string(),
        reason: "no snapshot record".into(),
    })
}

enum Decoded {
    Snapshot(Revision, BTreeMap<String, Entry>),
    Txn(Revision, Vec<Op>),
}

fn decode(r: &mut Reader<'_>) -> std::result::Result<Decoded, String> {
    let kind = r.u8()?;
    let revision = r.i64()?;
    let decoded = match kind {
        SNAPSHOT => {
            let count = r.u64()?;
            let mut kvs = BTreeMap::new();
            for _ in 0..count {
                let key = r.string()?;
                let value = r.bytes()?.to_vec();
                let create_revision = r.i64()?;
                let mod_revision = r.i64()?;
                let lease = r.lease()?;
                kvs.insert(
                    key,
                    Entry {
                        value,
                        create_revision,
                        mod_revision,
                        lease,
                    },
                );
            }
            Decoded::Snapshot(revision, kvs)
        }
        TXN => {
            let count = r.u32()?;
            let mut ops = Vec::new();
            for _ in 0..count {
                let op = match r.u8()? {
                    PUT => Op::Put {
                        key: r.string()?,
                        value: r.bytes()?.to_vec(),
                        lease: r.lease()?,
                    },
                    DELETE => Op::Delete { key: r.string()? },
                    other => return Err(format!("unknown operation {other}")),
                };
                ops.push(op);
            }
            Decoded::Txn(revision, ops)
        }
        other => return Err(format!("unknown record kind {other}")),
    };
    if r.pos != r.bytes.len() {
        return Err("trailing bytes in a record".into());
    }
    Ok(decoded)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| "record ends early".to_string())?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> std::result::Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> std::result::Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> std::result::Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> std::result::Result<i64, String> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn lease(&mut self) -> std::result::Result<Option<LeaseId>, String> {
        let id = self.i64()?;
        Ok((id != 0).then_some(LeaseId(id)))
    }

    fn bytes(&mut self) -> std::result::Result<&'a [u8], String> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn string(&mut self) -> std::result::Result<String, String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| "key is not UTF-8".to_string())
    }
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// CRC-32 (IEEE 802.3, reflected, as in zlib).
fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for b in bytes {
        crc = TABLE[((crc ^ u32::from(*b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }
}
