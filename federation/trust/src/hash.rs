//! Lower-case hex and SHA-256 as the control plane writes them: the root pin
//! in join tokens, hashed token secrets, bundle digests.

use ring::digest::{SHA256, digest};

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Lower-case hex SHA-256 of `bytes`; of a root certificate's DER, the pin
/// a join token carries.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(digest(&SHA256, bytes).as_ref())
}
