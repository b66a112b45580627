//! Function artifacts: the Lambda deployment zip of each function and its content hash.
//!
//! The zip is written here, byte for byte, rather than by a zip crate: one entry named
//! `bootstrap`, stored (not compressed), with a fixed timestamp (1980-01-01 00:00, the zip
//! epoch) and fixed Unix permissions (0755). Stored entries make the output depend only on the
//! binary, never on a compressor's version or settings, so an unchanged binary gives the same
//! SHA-256 on every machine and the upload is skipped. Lambda accepts stored entries; the cost
//! is a larger upload, which only happens when the binary changed.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::DeployError;

/// The name of the one entry: Lambda's `provided.al2023` runtime executes `bootstrap`.
const ENTRY_NAME: &str = "bootstrap";
/// DOS date of 1980-01-01 (year 0 since 1980, month 1, day 1).
const FIXED_DATE: u16 = (1 << 5) | 1;
/// DOS time 00:00:00.
const FIXED_TIME: u16 = 0;
/// Regular file, rwxr-xr-x, in the high half of the external attributes (Unix "made by").
const UNIX_MODE: u32 = 0o100_755;
/// "Made by" Unix (3), spec version 2.0, so unzip and Lambda honour the permissions.
const MADE_BY: u16 = (3 << 8) | 20;
/// Spec version 2.0 is enough to extract a stored entry.
const VERSION_NEEDED: u16 = 20;

/// A deployable function package.
#[derive(Clone, PartialEq, Eq)]
pub struct Artifact {
    function: String,
    zip: Arc<Vec<u8>>,
    sha256: String,
}

impl fmt::Debug for Artifact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Artifact")
            .field("function", &self.function)
            .field("bytes", &self.zip.len())
            .field("sha256", &self.sha256)
            .finish()
    }
}

impl Artifact {
    /// Packages a bootstrap binary (its bytes) as the deterministic zip of `function`.
    pub fn from_bootstrap(function: &str, binary: &[u8]) -> Result<Artifact, DeployError> {
        let zip = deterministic_zip(ENTRY_NAME, binary)?;
        Ok(Artifact::from_zip_bytes(function, zip))
    }

    /// Reads a bootstrap binary from disk and packages it.
    pub fn from_bootstrap_file(function: &str, binary: &Path) -> Result<Artifact, DeployError> {
        let bytes = std::fs::read(binary).map_err(DeployError::io("read", binary))?;
        Artifact::from_bootstrap(function, &bytes)
    }

    /// An artifact from an existing zip (e.g. written by an earlier `cargo xtask build`).
    pub fn from_zip_bytes(function: &str, zip: Vec<u8>) -> Artifact {
        let sha256 = hex(&Sha256::digest(&zip));
        Artifact {
            function: function.to_owned(),
            zip: Arc::new(zip),
            sha256,
        }
    }

    /// Reads a zip from disk.
    pub fn from_zip_file(function: &str, path: &Path) -> Result<Artifact, DeployError> {
        let zip = std::fs::read(path).map_err(DeployError::io("read", path))?;
        Ok(Artifact::from_zip_bytes(function, zip))
    }

    /// The function (role) name: `api`, `worker`, `step`.
    pub fn function(&self) -> &str {
        &self.function
    }

    /// The zip bytes.
    pub fn zip(&self) -> &[u8] {
        &self.zip
    }

    /// Hex SHA-256 of the zip.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The S3 key: content-addressed, so the same zip is uploaded once per bucket.
    pub fn key(&self) -> String {
        format!("{}/{}.zip", self.function, self.sha256)
    }

    /// The template parameter taking this artifact's key (`ApiCodeKey` for `api`).
    pub fn parameter_name(&self) -> String {
        code_key_parameter(&self.function)
    }
}

/// The template parameter holding a function's code key (CONTRACT.md): `ApiCodeKey`, ...
pub fn code_key_parameter(function: &str) -> String {
    let mut chars = function.chars();
    let first = chars.next().map(|c| c.to_ascii_uppercase());
    first.into_iter().chain(chars).collect::<String>() + "CodeKey"
}

/// The function whose code key a template parameter holds (`ApiCodeKey` -> `api`).
pub fn function_of_parameter(parameter: &str) -> Option<String> {
    let stem = parameter.strip_suffix("CodeKey")?;
    (!stem.is_empty()).then(|| stem.to_ascii_lowercase())
}

/// Lower-case hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A zip holding one stored entry, with every variable field fixed.
pub fn deterministic_zip(name: &str, data: &[u8]) -> Result<Vec<u8>, DeployError> {
    let too_large = || DeployError::Build(format!("{name} is over 4 GiB, too large for a zip"));
    let size = u32::try_from(data.len()).map_err(|_| too_large())?;
    let name_len = u16::try_from(name.len()).map_err(|_| too_large())?;
    let crc = crc32(data);

    let mut zip = Vec::with_capacity(data.len() + 2 * name.len() + 128);
    // Local file header.
    put32(&mut zip, 0x0403_4b50);
    put16(&mut zip, VERSION_NEEDED);
    put16(&mut zip, 0); // flags
    put16(&mut zip, 0); // method: stored
    put16(&mut zip, FIXED_TIME);
    put16(&mut zip, FIXED_DATE);
    put32(&mut zip, crc);
    put32(&mut zip, size); // compressed size
    put32(&mut zip, size); // uncompressed size
    put16(&mut zip, name_len);
    put16(&mut zip, 0); // extra field length
    zip.extend_from_slice(name.as_bytes());
    zip.extend_from_slice(data);

    let central_offset = u32::try_from(zip.len()).map_err(|_| too_large())?;
    put32(&mut zip, 0x0201_4b50);
    put16(&mut zip, MADE_BY);
    put16(&mut zip, VERSION_NEEDED);
    put16(&mut zip, 0); // flags
    put16(&mut zip, 0); // method: stored
    put16(&mut zip, FIXED_TIME);
    put16(&mut zip, FIXED_DATE);
    put32(&mut zip, crc);
    put32(&mut zip, size);
    put32(&mut zip, size);
    put16(&mut zip, name_len);
    put16(&mut zip, 0); // extra field length
    put16(&mut zip, 0); // comment length
    put16(&mut zip, 0); // disk number start
    put16(&mut zip, 0); // internal attributes
    put32(&mut zip, UNIX_MODE << 16);
    put32(&mut zip, 0); // offset of the local header
    zip.extend_from_slice(name.as_bytes());
    let central_size = u32::try_from(zip.len()).map_err(|_| too_large())? - central_offset;

    // End of central directory.
    put32(&mut zip, 0x0605_4b50);
    put16(&mut zip, 0); // this disk
    put16(&mut zip, 0); // disk of the central directory
    put16(&mut zip, 1); // entries on this disk
    put16(&mut zip, 1); // entries in total
    put32(&mut zip, central_size);
    put32(&mut zip, central_offset);
    put16(&mut zip, 0); // comment length
    Ok(zip)
}

fn put16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// CRC-32 (IEEE 802.3, reflected, as zip uses), table-driven.
pub(crate) fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = [0u32; 256];
        for (i, slot) in table.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        table
    });
    let mut crc = !0u32;
    for &byte in data {
        crc = table[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
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

    #[test]
    fn same_binary_gives_the_same_zip_and_hash() {
        let a = Artifact::from_bootstrap("api", b"\x7fELF binary").unwrap();
        let b = Artifact::from_bootstrap("api", b"\x7fELF binary").unwrap();
        assert_eq!(a.zip(), b.zip());
        assert_eq!(a.key(), b.key());
        let c = Artifact::from_bootstrap("api", b"\x7fELF binary2").unwrap();
        assert_ne!(a.sha256(), c.sha256());
    }

    #[test]
    fn parameter_names_follow_the_contract() {
        assert_eq!(code_key_parameter("api"), "ApiCodeKey");
        assert_eq!(code_key_parameter("worker"), "WorkerCodeKey");
        assert_eq!(
            function_of_parameter("StepCodeKey").as_deref(),
            Some("step")
        );
        assert_eq!(function_of_parameter("ArtifactBucket"), None);
    }
}
