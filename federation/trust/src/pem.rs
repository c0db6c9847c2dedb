//! PEM in and out: certificates and keys as the files of PKI-as-code hold them.

use base64::Engine;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Every CERTIFICATE block in the input, in order. Text outside the blocks
/// is ignored; a malformed block is an error.
pub fn certificates(input: &[u8]) -> Result<Vec<CertificateDer<'static>>, pem::Error> {
    CertificateDer::pem_slice_iter(input).collect()
}

/// The first private key (PKCS#8, SEC1 or PKCS#1) in the input, if any.
pub fn private_key(input: &[u8]) -> Result<Option<PrivateKeyDer<'static>>, pem::Error> {
    match PrivateKeyDer::from_pem_slice(input) {
        Ok(key) => Ok(Some(key)),
        Err(pem::Error::NoItemsFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Encodes DER as one PEM block with the given label, 64 columns a line.
pub fn encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// Encodes certificates as consecutive CERTIFICATE blocks.
pub fn encode_certificates<'a>(certs: impl IntoIterator<Item = &'a CertificateDer<'a>>) -> String {
    certs
        .into_iter()
        .map(|c| encode("CERTIFICATE", c.as_ref()))
        .collect()
}
