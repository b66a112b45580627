//! Reading the `bootstrap` entry out of a function's deployment zip.
//!
//! sagaform's artifact zips (written by `sagaform-deploy`) hold one deflated entry; zips made by
//! other tools may store it instead. Both methods are read here, and the CRC-32 and size in the
//! central directory are checked, so a truncated download or a corrupt object is refused
//! rather than run. Other methods (bzip2, zstd, ...) are refused with the method named.

use std::io::Read;

use crate::LocalError;

const END_OF_CENTRAL_DIRECTORY: u32 = 0x0605_4b50;
const CENTRAL_DIRECTORY_ENTRY: u32 = 0x0201_4b50;
const LOCAL_FILE_HEADER: u32 = 0x0403_4b50;
const STORED: u16 = 0;
const DEFLATED: u16 = 8;

/// The uncompressed bytes of entry `wanted` of the zip `archive` (named `source` in errors),
/// stored or deflated.
pub fn entry(archive: &[u8], wanted: &str, source: &str) -> Result<Vec<u8>, LocalError> {
    let fail = |reason: String| LocalError::Zip {
        name: source.to_owned(),
        reason,
    };
    // The end record is in the last 22 + 65535 (comment) bytes.
    let search_from = archive.len().saturating_sub(22 + 65_535);
    let end = (search_from..archive.len().saturating_sub(21))
        .rev()
        .find(|&at| read_u32(archive, at) == Some(END_OF_CENTRAL_DIRECTORY))
        .ok_or_else(|| fail("not a zip file (no end of central directory)".to_owned()))?;
    let entries = read_u16(archive, end + 10).unwrap_or(0) as usize;
    let mut at = read_u32(archive, end + 16).unwrap_or(u32::MAX) as usize;
    for _ in 0..entries {
        if read_u32(archive, at) != Some(CENTRAL_DIRECTORY_ENTRY) {
            return Err(fail("corrupt central directory".to_owned()));
        }
        let field = |offset: usize| read_u16(archive, at + offset).unwrap_or(0) as usize;
        let (name_len, extra_len, comment_len) = (field(28), field(30), field(32));
        let name = archive
            .get(at + 46..at + 46 + name_len)
            .ok_or_else(|| fail("corrupt central directory".to_owned()))?;
        if name == wanted.as_bytes() {
            return DirectoryEntry::at(archive, at)
                .contents(archive, wanted)
                .map_err(fail);
        }
        at += 46 + name_len + extra_len + comment_len;
    }
    Err(fail(format!("no entry named {wanted}")))
}

/// What the central directory says about one entry.
struct DirectoryEntry {
    method: u16,
    crc: u32,
    compressed_size: usize,
    uncompressed_size: usize,
    local_offset: usize,
}

impl DirectoryEntry {
    /// The central directory entry at offset `at` of `archive`.
    fn at(archive: &[u8], at: usize) -> DirectoryEntry {
        let u32_at =
            |offset: usize, missing: u32| read_u32(archive, at + offset).unwrap_or(missing);
        DirectoryEntry {
            method: read_u16(archive, at + 10).unwrap_or(0),
            crc: u32_at(16, 0),
            compressed_size: u32_at(20, 0) as usize,
            uncompressed_size: u32_at(24, 0) as usize,
            local_offset: u32_at(42, u32::MAX) as usize,
        }
    }

    /// The entry's uncompressed bytes (it is named `wanted` in the reason when they cannot be
    /// read or do not match the size and CRC-32 the directory gives).
    fn contents(&self, archive: &[u8], wanted: &str) -> Result<Vec<u8>, String> {
        let local = self.local_offset;
        if read_u32(archive, local) != Some(LOCAL_FILE_HEADER) {
            return Err(format!("corrupt local header of {wanted}"));
        }
        let local_name_len = read_u16(archive, local + 26).unwrap_or(0) as usize;
        let local_extra_len = read_u16(archive, local + 28).unwrap_or(0) as usize;
        let data = local + 30 + local_name_len + local_extra_len;
        let raw = archive
            .get(data..data + self.compressed_size)
            .ok_or_else(|| format!("entry {wanted} is truncated"))?;
        let bytes = match self.method {
            STORED => raw.to_vec(),
            DEFLATED => inflate(raw, self.uncompressed_size)
                .map_err(|e| format!("entry {wanted} does not inflate: {e}"))?,
            other => {
                return Err(format!(
                    "entry {wanted} uses compression method {other}; only stored (0) and \
                     deflated (8) entries are read: give the bootstrap path instead"
                ));
            }
        };
        if bytes.len() != self.uncompressed_size {
            return Err(format!(
                "entry {wanted} is {} bytes, the directory says {}",
                bytes.len(),
                self.uncompressed_size
            ));
        }
        if crc32(&bytes) != self.crc {
            return Err(format!("entry {wanted} fails its CRC-32 check"));
        }
        Ok(bytes)
    }
}

/// The same as [`entry`], under the name it had when only stored entries were read.
pub fn stored_entry(archive: &[u8], wanted: &str, source: &str) -> Result<Vec<u8>, LocalError> {
    entry(archive, wanted, source)
}

/// Inflates a raw deflate stream, reading at most one byte past the size the directory
/// declares: enough to notice a mismatch without letting a hostile entry fill the memory.
fn inflate(raw: &[u8], declared_size: usize) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(declared_size);
    flate2::read::DeflateDecoder::new(raw)
        .take(declared_size as u64 + 1)
        .read_to_end(&mut out)?;
    Ok(out)
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    bytes
        .get(at..at + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    bytes
        .get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// A zip with one stored entry (for tests of this crate and its users' fixtures). CRC-32 is
/// computed, so `unzip -t` accepts it.
pub fn single_stored_entry(name: &str, data: &[u8]) -> Vec<u8> {
    let crc = crc32(data);
    let size = data.len() as u32;
    let mut zip = Vec::with_capacity(data.len() + 128);
    let header = |zip: &mut Vec<u8>, central: bool| {
        zip.extend_from_slice(
            &(if central {
                CENTRAL_DIRECTORY_ENTRY
            } else {
                LOCAL_FILE_HEADER
            })
            .to_le_bytes(),
        );
        if central {
            zip.extend_from_slice(&((3u16 << 8) | 20).to_le_bytes());
        }
        for value in [20u16, 0, STORED, 0, 0x21] {
            zip.extend_from_slice(&value.to_le_bytes());
        }
        for value in [crc, size, size] {
            zip.extend_from_slice(&value.to_le_bytes());
        }
        zip.extend_from_slice(&(name.len() as u16).to_le_bytes());
        zip.extend_from_slice(&0u16.to_le_bytes());
    };
    header(&mut zip, false);
    zip.extend_from_slice(name.as_bytes());
    zip.extend_from_slice(data);
    let central_start = zip.len() as u32;
    header(&mut zip, true);
    for value in [0u16, 0, 0] {
        zip.extend_from_slice(&value.to_le_bytes());
    }
    zip.extend_from_slice(&(0o100_755u32 << 16).to_le_bytes());
    zip.extend_from_slice(&0u32.to_le_bytes());
    zip.extend_from_slice(name.as_bytes());
    let central_size = zip.len() as u32 - central_start;
    zip.extend_from_slice(&END_OF_CENTRAL_DIRECTORY.to_le_bytes());
    for value in [0u16, 0, 1, 1] {
        zip.extend_from_slice(&value.to_le_bytes());
    }
    zip.extend_from_slice(&central_size.to_le_bytes());
    zip.extend_from_slice(&central_start.to_le_bytes());
    zip.extend_from_slice(&0u16.to_le_bytes());
    zip
}

use sagaform_deploy::artifact::crc32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_entry_comes_back_byte_for_byte() {
        let zip = single_stored_entry("bootstrap", b"\x7fELF binary");
        assert_eq!(
            entry(&zip, "bootstrap", "test.zip").unwrap(),
            b"\x7fELF binary"
        );
    }

    /// Written by Python's `zipfile` (stored): a second entry before `bootstrap`.
    const PYTHON_ZIP: [u8; 233] = [
        80, 75, 3, 4, 20, 0, 0, 0, 0, 0, 238, 9, 123, 93, 202, 213, 225, 185, 11, 0, 0, 0, 11, 0,
        0, 0, 6, 0, 0, 0, 82, 69, 65, 68, 77, 69, 111, 116, 104, 101, 114, 32, 101, 110, 116, 114,
        121, 80, 75, 3, 4, 20, 0, 0, 0, 0, 0, 0, 0, 33, 0, 47, 58, 218, 233, 18, 0, 0, 0, 18, 0, 0,
        0, 9, 0, 0, 0, 98, 111, 111, 116, 115, 116, 114, 97, 112, 35, 33, 47, 98, 105, 110, 47,
        115, 104, 10, 101, 99, 104, 111, 32, 104, 105, 10, 80, 75, 1, 2, 20, 3, 20, 0, 0, 0, 0, 0,
        238, 9, 123, 93, 202, 213, 225, 185, 11, 0, 0, 0, 11, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 128, 1, 0, 0, 0, 0, 82, 69, 65, 68, 77, 69, 80, 75, 1, 2, 20, 3, 20, 0, 0, 0, 0,
        0, 0, 0, 33, 0, 47, 58, 218, 233, 18, 0, 0, 0, 18, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 237, 129, 47, 0, 0, 0, 98, 111, 111, 116, 115, 116, 114, 97, 112, 80, 75, 5, 6, 0, 0,
        0, 0, 2, 0, 2, 0, 107, 0, 0, 0, 104, 0, 0, 0, 0, 0,
    ];

    #[test]
    fn an_entry_of_a_zip_written_by_another_tool_is_found_by_name() {
        assert_eq!(
            entry(&PYTHON_ZIP, "bootstrap", "python.zip").unwrap(),
            b"#!/bin/sh\necho hi\n"
        );
    }

    /// Written by Python's `zipfile`: a stored entry, then `bootstrap` deflated (170 bytes in
    /// 21), as sagaform's packages have it.
    const PYTHON_DEFLATED_ZIP: [u8; 236] = [
        80, 75, 3, 4, 20, 0, 0, 0, 0, 0, 0, 0, 33, 0, 202, 213, 225, 185, 11, 0, 0, 0, 11, 0, 0, 0,
        6, 0, 0, 0, 82, 69, 65, 68, 77, 69, 111, 116, 104, 101, 114, 32, 101, 110, 116, 114, 121,
        80, 75, 3, 4, 20, 0, 0, 0, 8, 0, 0, 0, 33, 0, 148, 160, 242, 4, 21, 0, 0, 0, 170, 0, 0, 0,
        9, 0, 0, 0, 98, 111, 111, 116, 115, 116, 114, 97, 112, 83, 86, 212, 79, 202, 204, 211, 47,
        206, 224, 74, 77, 206, 200, 87, 200, 200, 28, 180, 52, 0, 80, 75, 1, 2, 20, 3, 20, 0, 0, 0,
        0, 0, 0, 0, 33, 0, 202, 213, 225, 185, 11, 0, 0, 0, 11, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 128, 1, 0, 0, 0, 0, 82, 69, 65, 68, 77, 69, 80, 75, 1, 2, 20, 3, 20, 0, 0, 0, 8,
        0, 0, 0, 33, 0, 148, 160, 242, 4, 21, 0, 0, 0, 170, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 237, 129, 47, 0, 0, 0, 98, 111, 111, 116, 115, 116, 114, 97, 112, 80, 75, 5, 6, 0, 0,
        0, 0, 2, 0, 2, 0, 107, 0, 0, 0, 107, 0, 0, 0, 0, 0,
    ];

    #[test]
    fn a_deflated_entry_is_inflated() {
        let expected = [b"#!/bin/sh\n".as_slice(), &b"echo hi\n".repeat(20)].concat();
        assert_eq!(
            entry(&PYTHON_DEFLATED_ZIP, "bootstrap", "python.zip").unwrap(),
            expected
        );
        assert_eq!(
            entry(&PYTHON_DEFLATED_ZIP, "README", "python.zip").unwrap(),
            b"other entry"
        );
    }

    /// Offset of the central directory entry of `bootstrap` in [`PYTHON_DEFLATED_ZIP`].
    const BOOTSTRAP_CENTRAL_ENTRY: usize = 107 + 52;

    #[test]
    fn a_deflated_entry_larger_than_its_declared_size_is_refused() {
        let mut zip = PYTHON_DEFLATED_ZIP;
        // Declare 100 uncompressed bytes where the stream holds 170.
        zip[BOOTSTRAP_CENTRAL_ENTRY + 24] = 100;
        let error = entry(&zip, "bootstrap", "s3://b/k")
            .unwrap_err()
            .to_string();
        assert!(error.contains("the directory says 100"), "{error}");
        assert!(error.contains("s3://b/k"), "{error}");
    }

    #[test]
    fn a_corrupt_entry_fails_its_crc_check() {
        let mut zip = single_stored_entry("bootstrap", b"\x7fELF binary");
        // The stored data starts after the 30-byte local header and the 9-byte name.
        zip[30 + 9 + 4] ^= 0xff;
        let error = entry(&zip, "bootstrap", "s3://b/k")
            .unwrap_err()
            .to_string();
        assert!(error.contains("fails its CRC-32 check"), "{error}");
    }

    #[test]
    fn a_broken_deflate_stream_is_refused() {
        let mut zip = PYTHON_DEFLATED_ZIP;
        // The first byte of bootstrap's stream: block type 3, which deflate reserves.
        zip[47 + 30 + 9] = 0xff;
        let error = entry(&zip, "bootstrap", "s3://b/k")
            .unwrap_err()
            .to_string();
        assert!(error.contains("does not inflate"), "{error}");
    }

    #[test]
    fn another_compression_method_is_named_in_the_error() {
        let mut zip = PYTHON_DEFLATED_ZIP;
        // Method 12 (bzip2) in the central directory entry of bootstrap.
        zip[BOOTSTRAP_CENTRAL_ENTRY + 10] = 12;
        let error = entry(&zip, "bootstrap", "s3://b/k")
            .unwrap_err()
            .to_string();
        assert!(error.contains("compression method 12"), "{error}");
    }

    #[test]
    fn a_missing_entry_or_garbage_is_named_in_the_error() {
        let zip = single_stored_entry("other", b"x");
        let error = entry(&zip, "bootstrap", "s3://b/k").unwrap_err();
        assert!(
            error.to_string().contains("no entry named bootstrap"),
            "{error}"
        );
        let error = entry(b"garbage", "bootstrap", "s3://b/k").unwrap_err();
        assert!(error.to_string().contains("s3://b/k"), "{error}");
    }

    #[test]
    fn crc32_matches_the_reference_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }
}
