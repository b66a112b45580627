//! Function artifacts: the Lambda deployment zip of each function and its content hash.
//!
//! The zip is written here, byte for byte, rather than by a zip crate: one entry named
//! `bootstrap`, deflated at a fixed level, with a fixed timestamp (1980-01-01 00:00, the zip
//! epoch), fixed Unix permissions (0755) and no extra fields (which is where zip tools put
//! wall-clock times and owner ids). The only input is the binary, so an unchanged binary gives
//! the same SHA-256 on every machine and the upload is skipped. The compressor is
//! `miniz_oxide` (pure Rust, through `flate2`), whose version is pinned by `Cargo.lock`: a
//! dependency update that changed its output would cost one re-upload, never a wrong package.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use sagaform_contract::template::code_key_parameter;
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
/// Spec version 2.0 is the first with deflate, so every unzip (and Lambda) extracts it.
const VERSION_NEEDED: u16 = 20;
/// Compression method 0, stored.
const METHOD_STORED: u16 = 0;
/// Compression method 8, deflate.
const METHOD_DEFLATED: u16 = 8;
/// zlib's default level. Measured on a 22.7 MB `api` binary: level 6 gives 8.52 MB in 0.8 s,
/// level 9 gives 8.49 MB (0.4 % less) in 1.6 s, and every build pays that time.
const DEFLATE_LEVEL: u32 = 6;
/// Level of the local env's packages, which never leave this machine: on the 58 MB debug `api`,
/// level 1 gives 18 MB in 0.5 s where level 6 gives 16 MB in 2.0 s, paid at every rebuild.
const FAST_DEFLATE_LEVEL: u32 = 1;

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

    /// Packages a bootstrap binary of the local env: the same zip layout, deflated at a fast
    /// level (still deterministic, so an unchanged binary gives the same key).
    pub fn from_local_bootstrap(function: &str, binary: &[u8]) -> Result<Artifact, DeployError> {
        let zip = single_entry_zip(ENTRY_NAME, binary, ZipMethod::DeflatedFast)?;
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
        package_key(&self.function, &self.sha256)
    }

    /// The template parameter taking this artifact's key (`ApiCodeKey` for `api`).
    pub fn parameter_name(&self) -> String {
        code_key_parameter(&self.function)
    }
}

/// The S3 key of the package of `function` whose zip has the hex SHA-256 `sha256`:
/// `<function>/<sha256>.zip`.
pub fn package_key(function: &str, sha256: &str) -> String {
    format!("{function}/{sha256}.zip")
}

/// The hex SHA-256 a [`package_key`] of `function` names; `None` for any other key.
pub fn sha256_of_package_key<'k>(function: &str, key: &'k str) -> Option<&'k str> {
    let sha256 = key
        .strip_prefix(function)?
        .strip_prefix('/')?
        .strip_suffix(".zip")?;
    let hex = sha256.len() == 64
        && sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    hex.then_some(sha256)
}

/// Lower-case hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How the one entry of a zip is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZipMethod {
    /// Method 0: the bytes as they are (for fixtures exercising readers of stored entries).
    Stored,
    /// Method 8: deflated at [`DEFLATE_LEVEL`] (the artifacts).
    Deflated,
    /// Method 8: deflated at [`FAST_DEFLATE_LEVEL`] (the local env's packages).
    DeflatedFast,
}

impl ZipMethod {
    fn code(self) -> u16 {
        match self {
            ZipMethod::Stored => METHOD_STORED,
            ZipMethod::Deflated | ZipMethod::DeflatedFast => METHOD_DEFLATED,
        }
    }
}

/// A zip holding one deflated entry, with every variable field fixed.
///
/// The entry is compressed in memory first, so its CRC-32 and both sizes go into the local
/// header: no data descriptor (flag bit 3) and no extra fields, which keeps the layout the same
/// for every input.
pub fn deterministic_zip(name: &str, data: &[u8]) -> Result<Vec<u8>, DeployError> {
    single_entry_zip(name, data, ZipMethod::Deflated)
}

/// A zip holding one entry stored by `method`, with every variable field fixed (see
/// [`deterministic_zip`]).
pub fn single_entry_zip(
    name: &str,
    data: &[u8],
    method: ZipMethod,
) -> Result<Vec<u8>, DeployError> {
    let too_large = || DeployError::Build(format!("{name} is over 4 GiB, too large for a zip"));
    let stored = match method {
        ZipMethod::Stored => data.to_vec(),
        ZipMethod::Deflated | ZipMethod::DeflatedFast => {
            let level = if method == ZipMethod::Deflated {
                DEFLATE_LEVEL
            } else {
                FAST_DEFLATE_LEVEL
            };
            deflate(data, level)
                .map_err(|e| DeployError::Build(format!("cannot compress {name}: {e}")))?
        }
    };
    let entry = EntryHeader {
        method: method.code(),
        crc: crc32(data),
        compressed_size: u32::try_from(stored.len()).map_err(|_| too_large())?,
        size: u32::try_from(data.len()).map_err(|_| too_large())?,
        name_len: u16::try_from(name.len()).map_err(|_| too_large())?,
    };

    let mut zip = Vec::with_capacity(stored.len() + 2 * name.len() + 128);
    put32(&mut zip, 0x0403_4b50); // local file header
    entry.put(&mut zip);
    zip.extend_from_slice(name.as_bytes());
    zip.extend_from_slice(&stored);

    let central_offset = u32::try_from(zip.len()).map_err(|_| too_large())?;
    put32(&mut zip, 0x0201_4b50); // central directory entry
    put16(&mut zip, MADE_BY);
    entry.put(&mut zip);
    put16(&mut zip, 0); // comment length
    put16(&mut zip, 0); // disk number start
    put16(&mut zip, 0); // internal attributes
    put32(&mut zip, UNIX_MODE << 16);
    put32(&mut zip, 0); // offset of the local header
    zip.extend_from_slice(name.as_bytes());
    let central_size = u32::try_from(zip.len()).map_err(|_| too_large())? - central_offset;

    put_end_of_central_directory(&mut zip, central_size, central_offset);
    Ok(zip)
}

/// The fields the local header and the central directory entry share, in the order both
/// write them.
struct EntryHeader {
    method: u16,
    crc: u32,
    compressed_size: u32,
    size: u32,
    name_len: u16,
}

impl EntryHeader {
    fn put(&self, zip: &mut Vec<u8>) {
        put16(zip, VERSION_NEEDED);
        put16(zip, 0); // flags
        put16(zip, self.method);
        put16(zip, FIXED_TIME);
        put16(zip, FIXED_DATE);
        put32(zip, self.crc);
        put32(zip, self.compressed_size);
        put32(zip, self.size); // uncompressed size
        put16(zip, self.name_len);
        put16(zip, 0); // extra field length
    }
}

/// The end record of a zip whose one-entry central directory is `size` bytes at `offset`.
fn put_end_of_central_directory(zip: &mut Vec<u8>, size: u32, offset: u32) {
    put32(zip, 0x0605_4b50);
    put16(zip, 0); // this disk
    put16(zip, 0); // disk of the central directory
    put16(zip, 1); // entries on this disk
    put16(zip, 1); // entries in total
    put32(zip, size);
    put32(zip, offset);
    put16(zip, 0); // comment length
}

/// Raw deflate (no zlib header: zip stores the bare stream) at `level`.
fn deflate(data: &[u8], level: u32) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut encoder = flate2::write::DeflateEncoder::new(
        Vec::with_capacity(data.len() / 2),
        flate2::Compression::new(level),
    );
    encoder.write_all(data)?;
    encoder.finish()
}

fn put16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// CRC-32 (IEEE 802.3, as zip uses) of the uncompressed bytes.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(data);
    crc.sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_keys_name_their_digest_back() {
        let artifact = Artifact::from_zip_bytes("api", b"zip".to_vec());
        assert_eq!(
            sha256_of_package_key("api", &artifact.key()),
            Some(artifact.sha256())
        );
        assert_eq!(sha256_of_package_key("worker", &artifact.key()), None);
        assert_eq!(sha256_of_package_key("api", "api/abc.zip"), None);
    }

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

    fn u16_at(bytes: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([bytes[at], bytes[at + 1]])
    }

    fn u32_at(bytes: &[u8], at: usize) -> u32 {
        u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
    }

    /// Something shaped like a binary: repetitive enough to compress, not a single run.
    fn pretend_binary() -> Vec<u8> {
        (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .chain(b"\x7fELF".repeat(5_000))
            .collect()
    }

    #[test]
    fn a_local_package_is_deflated_faster_and_inflates_back_to_the_same_binary() {
        let binary = pretend_binary();
        let local = Artifact::from_local_bootstrap("api", &binary).unwrap();
        let aws = Artifact::from_bootstrap("api", &binary).unwrap();
        assert_ne!(
            local.sha256(),
            aws.sha256(),
            "another level, another stream"
        );
        let again = Artifact::from_local_bootstrap("api", &binary).unwrap();
        assert_eq!(again.sha256(), local.sha256(), "still deterministic");
        let zip = local.zip();
        assert_eq!(u16_at(zip, 8), METHOD_DEFLATED);
        let compressed = u32_at(zip, 18) as usize;
        let mut inflated = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::DeflateDecoder::new(&zip[39..39 + compressed]),
            &mut inflated,
        )
        .unwrap();
        assert_eq!(inflated, binary);
        assert_eq!(u32_at(zip, 14), crc32(&binary));
    }

    #[test]
    fn the_entry_is_deflated_and_inflates_back_to_the_binary() {
        let binary = pretend_binary();
        let zip = deterministic_zip("bootstrap", &binary).unwrap();
        assert!(
            zip.len() < binary.len() / 2,
            "{} bytes zipped to {}",
            binary.len(),
            zip.len()
        );

        // Local header: version needed, no flags (so no data descriptor), deflate, fixed
        // time and date, CRC and both sizes up front, no extra field.
        assert_eq!(u32_at(&zip, 0), 0x0403_4b50);
        assert_eq!(u16_at(&zip, 4), 20);
        assert_eq!(u16_at(&zip, 6), 0);
        assert_eq!(u16_at(&zip, 8), METHOD_DEFLATED);
        assert_eq!((u16_at(&zip, 10), u16_at(&zip, 12)), (0, 0x21));
        let crc = u32_at(&zip, 14);
        let compressed = u32_at(&zip, 18) as usize;
        assert_eq!(u32_at(&zip, 22) as usize, binary.len());
        assert_eq!(u16_at(&zip, 26) as usize, "bootstrap".len());
        assert_eq!(u16_at(&zip, 28), 0);
        assert_eq!(&zip[30..39], b"bootstrap");

        let data = &zip[39..39 + compressed];
        let mut inflated = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::DeflateDecoder::new(data), &mut inflated)
            .unwrap();
        assert_eq!(inflated, binary);
        assert_eq!(crc, crc32(&binary));

        // The central directory repeats the method, CRC and sizes, and carries the mode.
        let central = 39 + compressed;
        assert_eq!(u32_at(&zip, central), 0x0201_4b50);
        assert_eq!(u16_at(&zip, central + 6), 20);
        assert_eq!(u16_at(&zip, central + 10), METHOD_DEFLATED);
        assert_eq!(u32_at(&zip, central + 16), crc);
        assert_eq!(u32_at(&zip, central + 20) as usize, compressed);
        assert_eq!(u32_at(&zip, central + 24) as usize, binary.len());
        assert_eq!(u16_at(&zip, central + 30), 0);
        assert_eq!(u32_at(&zip, central + 38), 0o100_755 << 16);
        let end = central + 46 + "bootstrap".len();
        assert_eq!(u32_at(&zip, end), 0x0605_4b50);
        assert_eq!(zip.len(), end + 22);
    }

    #[test]
    fn a_stored_entry_holds_the_bytes_as_they_are() {
        let binary = pretend_binary();
        let zip = single_entry_zip("bootstrap", &binary, ZipMethod::Stored).unwrap();
        assert_eq!(u16_at(&zip, 8), METHOD_STORED);
        assert_eq!(u32_at(&zip, 18) as usize, binary.len());
        assert_eq!(&zip[39..39 + binary.len()], &binary[..]);
        let central = 39 + binary.len();
        assert_eq!(u16_at(&zip, central + 10), METHOD_STORED);
        assert_eq!(u32_at(&zip, central + 16), crc32(&binary));
        assert_eq!(zip.len(), central + 46 + "bootstrap".len() + 22);
    }

    #[test]
    fn an_empty_binary_still_makes_a_valid_entry() {
        let zip = deterministic_zip("bootstrap", b"").unwrap();
        let compressed = u32_at(&zip, 18) as usize;
        let mut inflated = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::DeflateDecoder::new(&zip[39..39 + compressed]),
            &mut inflated,
        )
        .unwrap();
        assert!(inflated.is_empty());
        assert_eq!((u32_at(&zip, 14), u32_at(&zip, 22)), (0, 0));
    }
}
