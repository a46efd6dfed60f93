//! Go and cargo-auditable Rust binaries: ELF executables carrying a
//! `.go.buildinfo` or `.dep-v0` section.
//!
//! Two ways in, same result:
//!
//! - [`scan_file`] for a file on disk: reads the ELF header and section table,
//!   then only the two sections (a few kilobytes), whatever the binary's size.
//! - [`scan_stream`] for a layer tar entry, which cannot be seeked and whose
//!   section table comes last: one pass over the bytes, nothing buffered but
//!   the data found. The Go block is found by its magic at 16-byte aligned
//!   offsets (where the linker places the section); the cargo-auditable data
//!   has no magic, so every zlib header in the stream starts a small
//!   speculative inflater that survives only while its output begins like
//!   cargo-auditable's JSON (`{"packages":`) — garbage dies within a few bytes.
//!
//! Contract: a file that is not ELF gives no packages; a Go block in the
//! pre-1.18 format, truncated data or malformed JSON is a [`CatalogError`].

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use flate2::{Decompress, FlushDecompress, Status};

use super::{cargo_auditable, elf, go_buildinfo};
use crate::error::CatalogError;
use crate::package::Package;

/// Bytes read per step of a stream scan; a multiple of 16 so aligned Go magic
/// never straddles two blocks.
const BLOCK: usize = 64 * 1024;
/// Largest section read from a file.
const SECTION_LIMIT: u64 = 16 << 20;
/// Speculative inflaters alive at once during a stream scan.
const MAX_CANDIDATES: usize = 64;

/// Which binary catalogers are enabled.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wanted {
    pub(crate) go: bool,
    pub(crate) rust: bool,
}

/// Packages of the executable `file` (positioned anywhere).
pub(crate) fn scan_file(file: &mut File, wanted: Wanted) -> Result<Vec<Package>, CatalogError> {
    file.seek(SeekFrom::Start(0))?;
    let mut header = [0u8; 64];
    let length = read_full(file, &mut header)?;
    if length < 4 || &header[..4] != elf::MAGIC {
        return Ok(Vec::new());
    }
    let sections = elf::read_sections(file, &header[..length])?;
    if sections.is_empty() {
        file.seek(SeekFrom::Start(0))?;
        return scan_stream(file, wanted);
    }
    let mut packages = Vec::new();
    if wanted.go
        && let Some(section) = sections.iter().find(|s| s.name == b".go.buildinfo")
    {
        let mut data = elf::read_section(file, section, SECTION_LIMIT)?;
        if matches!(
            go_buildinfo::decode(&data)?,
            go_buildinfo::Decoded::NeedMore
        ) {
            // The strings may run past the section's recorded size: read on.
            file.seek(SeekFrom::Start(section.offset))?;
            data.clear();
            file.by_ref().take(SECTION_LIMIT).read_to_end(&mut data)?;
        }
        match go_buildinfo::decode(&data)? {
            go_buildinfo::Decoded::Complete {
                go_version,
                modules,
            } => packages.extend(go_buildinfo::packages(&go_version, &modules)),
            go_buildinfo::Decoded::NeedMore => {
                return Err(CatalogError::GoBuildInfo {
                    reason: "block is truncated",
                });
            }
        }
    }
    if wanted.rust
        && let Some(section) = sections.iter().find(|s| s.name == b".dep-v0")
    {
        let data = elf::read_section(file, section, SECTION_LIMIT)?;
        let json = cargo_auditable::decompress(&data)?;
        packages.extend(cargo_auditable::packages(&json)?);
    }
    Ok(packages)
}

/// Packages of the executable read from `reader` in one pass.
pub(crate) fn scan_stream(
    reader: &mut dyn Read,
    wanted: Wanted,
) -> Result<Vec<Package>, CatalogError> {
    let mut block = vec![0u8; BLOCK];
    let mut filled = read_full(reader, &mut block)?;
    if filled < 4 || &block[..4] != elf::MAGIC {
        return Ok(Vec::new());
    }
    let mut scanner = StreamScanner::new(wanted);
    loop {
        scanner.feed(&block[..filled]);
        if scanner.finished() || filled < BLOCK {
            break;
        }
        filled = read_full(reader, &mut block)?;
        if filled == 0 {
            break;
        }
    }
    scanner.into_packages()
}

/// Reads until `buffer` is full or the stream ends; returns the bytes read.
fn read_full(reader: &mut dyn Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

enum GoState {
    Off,
    Searching,
    Capturing(Vec<u8>),
    Done(Vec<Package>),
}

struct StreamScanner {
    go: GoState,
    go_error: Option<CatalogError>,
    rust_wanted: bool,
    candidates: Vec<ZlibCandidate>,
    spare_inflaters: Vec<Decompress>,
    previous_byte: Option<u8>,
    cargo_json: Option<Vec<u8>>,
}

impl StreamScanner {
    fn new(wanted: Wanted) -> Self {
        Self {
            go: if wanted.go {
                GoState::Searching
            } else {
                GoState::Off
            },
            go_error: None,
            rust_wanted: wanted.rust,
            candidates: Vec::new(),
            spare_inflaters: Vec::new(),
            previous_byte: None,
            cargo_json: None,
        }
    }

    fn finished(&self) -> bool {
        let go_finished = matches!(self.go, GoState::Off | GoState::Done(_));
        let rust_finished = !self.rust_wanted || self.cargo_json.is_some();
        go_finished && rust_finished
    }

    /// Feeds the next block; every block but the last is `BLOCK` bytes, so each
    /// starts at a 16-byte aligned offset of the file.
    fn feed(&mut self, block: &[u8]) {
        self.feed_go(block);
        if self.rust_wanted && self.cargo_json.is_none() {
            self.feed_rust(block);
        }
    }

    fn feed_go(&mut self, block: &[u8]) {
        match &mut self.go {
            GoState::Off | GoState::Done(_) => {}
            GoState::Searching => self.search_go(block),
            GoState::Capturing(captured) => {
                captured.extend_from_slice(block);
                self.check_go_capture();
            }
        }
    }

    /// Looks for a plausible header at each aligned offset of `data` (which starts aligned).
    fn search_go(&mut self, data: &[u8]) {
        let found = (0..data.len())
            .step_by(16)
            .find(|&at| go_buildinfo::plausible_header(&data[at..data.len().min(at + 16)]));
        if let Some(at) = found {
            self.go = GoState::Capturing(data[at..].to_vec());
            self.check_go_capture();
        }
    }

    fn check_go_capture(&mut self) {
        let GoState::Capturing(captured) = &mut self.go else {
            return;
        };
        match go_buildinfo::decode(captured) {
            Ok(go_buildinfo::Decoded::Complete {
                go_version,
                modules,
            }) => self.go = GoState::Done(go_buildinfo::packages(&go_version, &modules)),
            Ok(go_buildinfo::Decoded::NeedMore) if captured.len() as u64 <= SECTION_LIMIT => {}
            outcome => {
                self.go_error = Some(match outcome {
                    Err(error) => error,
                    Ok(_) => CatalogError::TooLarge {
                        limit: SECTION_LIMIT,
                    },
                });
                // A false match (the magic as a string constant): search on after it.
                let rest = captured.split_off(16.min(captured.len()));
                self.go = GoState::Searching;
                self.search_go(&rest);
            }
        }
    }

    fn feed_rust(&mut self, block: &[u8]) {
        let mut index = 0;
        while index < self.candidates.len() {
            match self.candidates[index].feed(block) {
                Progress::Alive => index += 1,
                Progress::Dead => {
                    let dead = self.candidates.swap_remove(index);
                    self.spare_inflaters.push(dead.inflater);
                }
                Progress::Complete => {
                    let done = self.candidates.swap_remove(index);
                    self.cargo_json = Some(done.output);
                    return;
                }
            }
        }
        let mut previous = self.previous_byte;
        for (at, &byte) in block.iter().enumerate() {
            if previous == Some(0x78)
                && matches!(byte, 0x01 | 0x5e | 0x9c | 0xda)
                && self.candidates.len() < MAX_CANDIDATES
                // The first deflate block must not have the reserved type 0b11.
                && block.get(at + 1).is_none_or(|next| (next >> 1) & 0b11 != 0b11)
            {
                let inflater = match self.spare_inflaters.pop() {
                    Some(mut inflater) => {
                        inflater.reset(true);
                        inflater
                    }
                    None => Decompress::new(true),
                };
                let mut candidate = ZlibCandidate {
                    inflater,
                    output: Vec::with_capacity(64),
                    verified: false,
                };
                let mut progress = candidate.feed(&[0x78]);
                if matches!(progress, Progress::Alive) {
                    progress = candidate.feed(&block[at..]);
                }
                match progress {
                    Progress::Alive => self.candidates.push(candidate),
                    Progress::Dead => self.spare_inflaters.push(candidate.inflater),
                    Progress::Complete => {
                        self.cargo_json = Some(candidate.output);
                        return;
                    }
                }
            }
            previous = Some(byte);
        }
        self.previous_byte = previous;
    }

    fn into_packages(self) -> Result<Vec<Package>, CatalogError> {
        let mut packages = match self.go {
            GoState::Done(packages) => packages,
            _ => Vec::new(),
        };
        let go_found = !packages.is_empty();
        if let Some(json) = self.cargo_json {
            packages.extend(cargo_auditable::packages(&json)?);
        }
        match self.go_error {
            Some(error) if !go_found && packages.is_empty() => Err(error),
            _ => Ok(packages),
        }
    }
}

enum Progress {
    Alive,
    Dead,
    Complete,
}

/// An inflater started at a possible zlib header.
struct ZlibCandidate {
    inflater: Decompress,
    output: Vec<u8>,
    /// Its output has started like cargo-auditable JSON.
    verified: bool,
}

impl ZlibCandidate {
    fn feed(&mut self, mut input: &[u8]) -> Progress {
        while !input.is_empty() {
            if self.output.len() == self.output.capacity() {
                if !self.verified || self.output.len() as u64 >= cargo_auditable::JSON_LIMIT {
                    return Progress::Dead;
                }
                self.output.reserve(64 * 1024);
            }
            let consumed_before = self.inflater.total_in();
            let produced_before = self.output.len();
            let status =
                self.inflater
                    .decompress_vec(input, &mut self.output, FlushDecompress::None);
            let consumed = (self.inflater.total_in() - consumed_before) as usize;
            input = &input[consumed.min(input.len())..];
            if !self.verified && self.output.len() >= 12 {
                if !cargo_auditable::plausible_start(&self.output) {
                    return Progress::Dead;
                }
                self.verified = true;
            }
            match status {
                Err(_) => return Progress::Dead,
                Ok(Status::StreamEnd) => {
                    return if self.verified {
                        Progress::Complete
                    } else {
                        Progress::Dead
                    };
                }
                Ok(_) => {}
            }
            if consumed == 0 && self.output.len() == produced_before {
                return Progress::Dead;
            }
        }
        Progress::Alive
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{cargo_auditable, elf, go_buildinfo};
    use crate::package::ComponentKind;
    use std::io::Write;

    const MODULES: &str = "path\texample.com/app\nmod\texample.com/app\tv1.0.0\th1:x=\ndep\tgithub.com/a/b\tv1.2.3\th1:y=\n";

    fn names(packages: &[Package]) -> Vec<(&str, &str)> {
        packages
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str()))
            .collect()
    }

    /// An ELF with noise (including zlib-looking bytes and a fake Go magic) before the sections.
    fn sample_binary() -> Vec<u8> {
        let mut noise = Vec::new();
        for index in 0..200_000u32 {
            noise.extend_from_slice(&index.wrapping_mul(2_654_435_761).to_le_bytes());
        }
        noise.extend_from_slice(b"\x78\x9c\x01\x02\x03garbage\x78\xdaabc");
        // Aligned fake magic with an implausible pointer size: must be skipped.
        while !noise.len().is_multiple_of(16) {
            noise.push(0);
        }
        noise.extend_from_slice(go_buildinfo::MAGIC);
        noise.extend_from_slice(&[8, 0]);
        elf::testing::elf_with_sections(&[
            (".text", &noise),
            (
                ".go.buildinfo",
                &go_buildinfo::testing::block("go1.22.1", MODULES),
            ),
            (
                ".dep-v0",
                &cargo_auditable::testing::section(cargo_auditable::testing::SAMPLE),
            ),
        ])
    }

    #[test]
    fn file_and_stream_scans_agree() {
        let bytes = sample_binary();
        let wanted = Wanted {
            go: true,
            rust: true,
        };
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&bytes).unwrap();
        let from_file = scan_file(&mut file, wanted).unwrap();
        let from_stream = scan_stream(&mut &bytes[..], wanted).unwrap();
        assert_eq!(
            names(&from_file),
            vec![
                ("example.com/app", "v1.0.0"),
                ("github.com/a/b", "v1.2.3"),
                ("stdlib", "go1.22.1"),
                ("hello", "0.1.0"),
                ("serde", "1.0.210"),
                ("serde_derive", "1.0.210"),
            ]
        );
        assert_eq!(from_file, from_stream);
        assert_eq!(from_file[0].kind, ComponentKind::Application);
    }

    #[test]
    fn stream_scan_reads_one_wanted_kind_only() {
        let bytes = sample_binary();
        let rust_only = scan_stream(
            &mut &bytes[..],
            Wanted {
                go: false,
                rust: true,
            },
        )
        .unwrap();
        assert_eq!(rust_only.len(), 3);
        assert!(
            scan_stream(
                &mut &b"#!/bin/sh\necho hi\n"[..],
                Wanted {
                    go: true,
                    rust: true
                }
            )
            .unwrap()
            .is_empty()
        );
    }

    #[test]
    fn stripped_section_table_falls_back_to_the_stream_scan() {
        let mut bytes = sample_binary();
        bytes[40..48].copy_from_slice(&0u64.to_le_bytes());
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&bytes).unwrap();
        let packages = scan_file(
            &mut file,
            Wanted {
                go: true,
                rust: false,
            },
        )
        .unwrap();
        assert_eq!(packages.len(), 3);
    }
}
