//! Checks that a built `bootstrap` runs on Amazon Linux 2023, the OS of Lambda's
//! `provided.al2023` runtime, by reading its ELF headers: a static binary always runs; a dynamic
//! one must need no glibc symbol version newer than AL2023's glibc 2.34.
//!
//! The parser reads only what the check needs (ELF64 little-endian: x86_64 and aarch64, the two
//! Lambda architectures): the program headers for an interpreter and the `.gnu.version_r`
//! section for the `GLIBC_x.y` versions the binary requires. No external tool or crate needed.

use std::fmt;

/// The newest glibc of Amazon Linux 2023.
pub const AL2023_GLIBC: GlibcVersion = GlibcVersion {
    major: 2,
    minor: 34,
};

/// The CPU an ELF binary is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    /// EM_X86_64.
    X86_64,
    /// EM_AARCH64.
    Aarch64,
    /// Anything else (the value of `e_machine`).
    Other(u16),
}

/// A `GLIBC_major.minor` symbol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GlibcVersion {
    /// Major version (2).
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

impl fmt::Display for GlibcVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GLIBC_{}.{}", self.major, self.minor)
    }
}

/// What the check learnt about a binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfReport {
    /// The CPU it is for.
    pub machine: Machine,
    /// Whether it has no program interpreter (statically linked).
    pub is_static: bool,
    /// The newest glibc version it needs, if dynamically linked against glibc.
    pub max_glibc: Option<GlibcVersion>,
}

impl ElfReport {
    /// Why the binary would not run on Amazon Linux 2023, if it would not.
    pub fn al2023_problem(&self) -> Option<String> {
        match self.max_glibc {
            Some(v) if !self.is_static && v > AL2023_GLIBC => Some(format!(
                "needs {v}, newer than Amazon Linux 2023's {AL2023_GLIBC}: build it with `cargo xtask build` (cargo-lambda links against an older glibc)"
            )),
            _ => None,
        }
    }
}

const PT_INTERP: u32 = 3;
const SHT_GNU_VERNEED: u32 = 0x6fff_fffe;

/// Reads the ELF facts of a binary.
pub fn inspect(bytes: &[u8]) -> Result<ElfReport, String> {
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" {
        return Err("not an ELF file".to_owned());
    }
    if bytes[4] != 2 {
        return Err("not a 64-bit ELF file (Lambda runs 64-bit binaries only)".to_owned());
    }
    if bytes[5] != 1 {
        return Err("not a little-endian ELF file".to_owned());
    }
    let r = Reader(bytes);
    let machine = match r.u16(18)? {
        62 => Machine::X86_64,
        183 => Machine::Aarch64,
        other => Machine::Other(other),
    };
    let phoff = r.u64(32)?;
    let shoff = r.u64(40)?;
    let phentsize = u64::from(r.u16(54)?);
    let phnum = u64::from(r.u16(56)?);
    let shentsize = u64::from(r.u16(58)?);
    let shnum = u64::from(r.u16(60)?);

    let mut is_static = true;
    for i in 0..phnum {
        if r.u32(phoff + i * phentsize)? == PT_INTERP {
            is_static = false;
        }
    }

    let mut max_glibc = None;
    for i in 0..shnum {
        let header = shoff + i * shentsize;
        if r.u32(header + 4)? != SHT_GNU_VERNEED {
            continue;
        }
        let offset = r.u64(header + 24)?;
        let link = u64::from(r.u32(header + 40)?);
        let entries = r.u32(header + 44)?; // sh_info: number of Verneed entries
        let strtab = r.u64(shoff + link * shentsize + 24)?;
        let mut need = offset;
        for _ in 0..entries {
            let count = r.u16(need + 2)?;
            let mut aux = need + u64::from(r.u32(need + 8)?);
            for _ in 0..count {
                let name = r.cstr(strtab + u64::from(r.u32(aux + 8)?))?;
                if let Some(version) = parse_glibc(name) {
                    max_glibc = max_glibc.max(Some(version));
                }
                aux += u64::from(r.u32(aux + 12)?);
            }
            let next = r.u32(need + 12)?;
            if next == 0 {
                break;
            }
            need += u64::from(next);
        }
    }
    Ok(ElfReport {
        machine,
        is_static,
        max_glibc,
    })
}

fn parse_glibc(name: &str) -> Option<GlibcVersion> {
    let version = name.strip_prefix("GLIBC_")?;
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().map_or(Some(0), |p| p.parse().ok())?;
    Some(GlibcVersion { major, minor })
}

/// Bounds-checked little-endian reads.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn slice(&self, at: u64, len: usize) -> Result<&[u8], String> {
        let start = usize::try_from(at).map_err(|_| "offset out of range".to_owned())?;
        self.0
            .get(start..start.saturating_add(len))
            .filter(|s| s.len() == len)
            .ok_or_else(|| format!("truncated ELF file (read at offset {at})"))
    }

    fn u16(&self, at: u64) -> Result<u16, String> {
        let s = self.slice(at, 2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }

    fn u32(&self, at: u64) -> Result<u32, String> {
        let s = self.slice(at, 4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }

    fn u64(&self, at: u64) -> Result<u64, String> {
        let s = self.slice(at, 8)?;
        let mut b = [0u8; 8];
        b.copy_from_slice(s);
        Ok(u64::from_le_bytes(b))
    }

    fn cstr(&self, at: u64) -> Result<&str, String> {
        let start = usize::try_from(at).map_err(|_| "offset out of range".to_owned())?;
        let rest = self
            .0
            .get(start..)
            .ok_or_else(|| format!("truncated ELF file (string at offset {at})"))?;
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).map_err(|_| "non-UTF-8 symbol version name".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_running_test_binary_is_read() {
        // The test binary itself is a dynamic glibc executable of the host.
        let bytes = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let report = inspect(&bytes).unwrap();
        assert!(!report.is_static);
        let glibc = report
            .max_glibc
            .expect("a host test binary links against glibc");
        assert_eq!(glibc.major, 2);
    }

    #[test]
    fn newer_glibc_than_al2023_is_a_problem() {
        let report = ElfReport {
            machine: Machine::X86_64,
            is_static: false,
            max_glibc: Some(GlibcVersion {
                major: 2,
                minor: 38,
            }),
        };
        assert!(report.al2023_problem().unwrap().contains("GLIBC_2.38"));
        let ok = ElfReport {
            max_glibc: Some(AL2023_GLIBC),
            ..report.clone()
        };
        assert_eq!(ok.al2023_problem(), None);
        let static_binary = ElfReport {
            is_static: true,
            ..report
        };
        assert_eq!(static_binary.al2023_problem(), None);
    }

    #[test]
    fn glibc_versions_parse_and_order() {
        assert_eq!(
            parse_glibc("GLIBC_2.34"),
            Some(GlibcVersion {
                major: 2,
                minor: 34
            })
        );
        assert_eq!(
            parse_glibc("GLIBC_2.2.5"),
            Some(GlibcVersion { major: 2, minor: 2 })
        );
        assert_eq!(parse_glibc("GLIBC_PRIVATE"), None);
        assert!(parse_glibc("GLIBC_2.9").unwrap() < parse_glibc("GLIBC_2.17").unwrap());
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(inspect(b"#!/bin/sh\necho hi\n").is_err());
    }
}
