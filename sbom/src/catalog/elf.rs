//! Just enough ELF to find a named section in a file that can be seeked:
//! 32- and 64-bit, either byte order, the extended section count and string
//! table index of files with 65 280 sections or more.
//!
//! Contract: [`read_sections`] returns the section table (empty when the file
//! has none, e.g. after `sstrip`), or [`CatalogError::Elf`] when offsets or
//! sizes are inconsistent; it never reads more than the headers and the section
//! name table (both capped).

use std::io::{Read, Seek, SeekFrom};

use crate::error::CatalogError;

/// The first four bytes of every ELF file.
pub(crate) const MAGIC: &[u8; 4] = b"\x7fELF";

/// Refuse section tables or name tables larger than this.
const TABLE_LIMIT: u64 = 8 << 20;
const SHT_NOBITS: u32 = 8;
const SHN_XINDEX: u32 = 0xffff;

/// One section of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Section {
    pub(crate) name: Vec<u8>,
    pub(crate) offset: u64,
    pub(crate) size: u64,
    /// `SHT_NOBITS`: occupies no bytes in the file.
    pub(crate) no_bits: bool,
}

#[derive(Clone, Copy)]
struct Layout {
    is_64: bool,
    little_endian: bool,
}

impl Layout {
    fn u16(self, bytes: &[u8], at: usize) -> u16 {
        let raw = [bytes[at], bytes[at + 1]];
        if self.little_endian {
            u16::from_le_bytes(raw)
        } else {
            u16::from_be_bytes(raw)
        }
    }

    fn u32(self, bytes: &[u8], at: usize) -> u32 {
        let mut raw = [0; 4];
        raw.copy_from_slice(&bytes[at..at + 4]);
        if self.little_endian {
            u32::from_le_bytes(raw)
        } else {
            u32::from_be_bytes(raw)
        }
    }

    fn u64(self, bytes: &[u8], at: usize) -> u64 {
        let mut raw = [0; 8];
        raw.copy_from_slice(&bytes[at..at + 8]);
        if self.little_endian {
            u64::from_le_bytes(raw)
        } else {
            u64::from_be_bytes(raw)
        }
    }

    /// A word-sized field (`Elf32_Off`/`Elf64_Off`, `Elf32_Word` sizes, …).
    fn word(self, bytes: &[u8], at32: usize, at64: usize) -> u64 {
        if self.is_64 {
            self.u64(bytes, at64)
        } else {
            u64::from(self.u32(bytes, at32))
        }
    }
}

struct RawSection {
    name_offset: u32,
    kind: u32,
    offset: u64,
    size: u64,
    link: u32,
}

/// The section table of the ELF file whose first bytes are `header` (at least
/// 64 bytes, or the whole file if shorter).
pub(crate) fn read_sections<R: Read + Seek>(
    file: &mut R,
    header: &[u8],
) -> Result<Vec<Section>, CatalogError> {
    if header.len() < 52 || &header[..4] != MAGIC {
        return Err(CatalogError::Elf {
            reason: "header too short",
        });
    }
    let layout = Layout {
        is_64: match header[4] {
            1 => false,
            2 => true,
            _ => {
                return Err(CatalogError::Elf {
                    reason: "unknown class",
                });
            }
        },
        little_endian: match header[5] {
            1 => true,
            2 => false,
            _ => {
                return Err(CatalogError::Elf {
                    reason: "unknown byte order",
                });
            }
        },
    };
    if layout.is_64 && header.len() < 64 {
        return Err(CatalogError::Elf {
            reason: "header too short",
        });
    }
    let table_offset = layout.word(header, 32, 40);
    let (entry_size, mut count, mut names_index) = if layout.is_64 {
        (
            layout.u16(header, 58),
            u32::from(layout.u16(header, 60)),
            u32::from(layout.u16(header, 62)),
        )
    } else {
        (
            layout.u16(header, 46),
            u32::from(layout.u16(header, 48)),
            u32::from(layout.u16(header, 50)),
        )
    };
    if table_offset == 0 {
        return Ok(Vec::new());
    }
    let minimum_entry = if layout.is_64 { 64 } else { 40 };
    if usize::from(entry_size) < minimum_entry {
        return Err(CatalogError::Elf {
            reason: "section header entries too small",
        });
    }
    if count == 0 || names_index == SHN_XINDEX {
        // Extended numbering: the real values live in section 0.
        let first = read_at(file, table_offset, u64::from(entry_size))?;
        let section0 = raw_section(layout, &first);
        if count == 0 {
            count = u32::try_from(section0.size).map_err(|_| CatalogError::Elf {
                reason: "section count too large",
            })?;
        }
        if names_index == SHN_XINDEX {
            names_index = section0.link;
        }
    }
    let table_size = u64::from(count) * u64::from(entry_size);
    if table_size > TABLE_LIMIT {
        return Err(CatalogError::Elf {
            reason: "section table too large",
        });
    }
    let table = read_at(file, table_offset, table_size)?;
    let raw: Vec<RawSection> = table
        .chunks_exact(usize::from(entry_size))
        .map(|entry| raw_section(layout, entry))
        .collect();
    let names_section = raw.get(names_index as usize).ok_or(CatalogError::Elf {
        reason: "section name table index out of range",
    })?;
    if names_section.size > TABLE_LIMIT {
        return Err(CatalogError::Elf {
            reason: "section name table too large",
        });
    }
    let names = read_at(file, names_section.offset, names_section.size)?;
    Ok(raw
        .iter()
        .map(|section| {
            let start = (section.name_offset as usize).min(names.len());
            let end = names[start..]
                .iter()
                .position(|&byte| byte == 0)
                .map_or(names.len(), |length| start + length);
            Section {
                name: names[start..end].to_vec(),
                offset: section.offset,
                size: section.size,
                no_bits: section.kind == SHT_NOBITS,
            }
        })
        .collect())
}

fn raw_section(layout: Layout, entry: &[u8]) -> RawSection {
    RawSection {
        name_offset: layout.u32(entry, 0),
        kind: layout.u32(entry, 4),
        offset: layout.word(entry, 16, 24),
        size: layout.word(entry, 20, 32),
        link: layout.u32(entry, if layout.is_64 { 40 } else { 24 }),
    }
}

/// The bytes of `section`, refusing sections larger than `limit`.
pub(crate) fn read_section<R: Read + Seek>(
    file: &mut R,
    section: &Section,
    limit: u64,
) -> Result<Vec<u8>, CatalogError> {
    if section.no_bits {
        return Ok(Vec::new());
    }
    if section.size > limit {
        return Err(CatalogError::TooLarge { limit });
    }
    read_at(file, section.offset, section.size)
}

fn read_at<R: Read + Seek>(file: &mut R, offset: u64, size: u64) -> Result<Vec<u8>, CatalogError> {
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.by_ref().take(size).read_to_end(&mut bytes)?;
    if bytes.len() as u64 != size {
        return Err(CatalogError::Elf {
            reason: "section extends past the end of the file",
        });
    }
    Ok(bytes)
}

#[cfg(test)]
pub(crate) mod testing {
    //! Builds small but well-formed ELF64 little-endian files with chosen sections.

    /// An ELF64 LE file whose sections are `sections` (plus the null section and
    /// `.shstrtab`), each section's data 16-byte aligned, section headers at the end.
    pub(crate) fn elf_with_sections(sections: &[(&str, &[u8])]) -> Vec<u8> {
        let mut file = vec![0u8; 64];
        let mut names = vec![0u8];
        let mut entries: Vec<(u32, u32, u64, u64)> = vec![(0, 0, 0, 0)];
        let place = |file: &mut Vec<u8>, data: &[u8]| -> u64 {
            while !file.len().is_multiple_of(16) {
                file.push(0);
            }
            let offset = file.len() as u64;
            file.extend_from_slice(data);
            offset
        };
        for (name, data) in sections {
            let name_offset = names.len() as u32;
            names.extend_from_slice(name.as_bytes());
            names.push(0);
            let offset = place(&mut file, data);
            entries.push((name_offset, 1, offset, data.len() as u64));
        }
        let names_name = names.len() as u32;
        names.extend_from_slice(b".shstrtab\0");
        let names_offset = place(&mut file, &names.clone());
        entries.push((names_name, 3, names_offset, names.len() as u64));
        while !file.len().is_multiple_of(8) {
            file.push(0);
        }
        let table_offset = file.len() as u64;
        for (name, kind, offset, size) in &entries {
            let mut entry = [0u8; 64];
            entry[0..4].copy_from_slice(&name.to_le_bytes());
            entry[4..8].copy_from_slice(&kind.to_le_bytes());
            entry[24..32].copy_from_slice(&offset.to_le_bytes());
            entry[32..40].copy_from_slice(&size.to_le_bytes());
            file.extend_from_slice(&entry);
        }
        file[0..4].copy_from_slice(super::MAGIC);
        file[4] = 2; // ELFCLASS64
        file[5] = 1; // little endian
        file[6] = 1; // EV_CURRENT
        file[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        file[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
        file[20..24].copy_from_slice(&1u32.to_le_bytes());
        file[40..48].copy_from_slice(&table_offset.to_le_bytes());
        file[52..54].copy_from_slice(&64u16.to_le_bytes());
        file[58..60].copy_from_slice(&64u16.to_le_bytes());
        file[60..62].copy_from_slice(&(entries.len() as u16).to_le_bytes());
        file[62..64].copy_from_slice(&((entries.len() - 1) as u16).to_le_bytes());
        file
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn finds_named_sections() {
        let bytes = testing::elf_with_sections(&[(".text", b"\x90\x90"), (".dep-v0", b"payload")]);
        let mut cursor = Cursor::new(&bytes);
        let sections = read_sections(&mut cursor, &bytes[..64]).unwrap();
        let names: Vec<_> = sections.iter().map(|s| s.name.clone()).collect();
        assert_eq!(
            names,
            vec![
                b"".to_vec(),
                b".text".to_vec(),
                b".dep-v0".to_vec(),
                b".shstrtab".to_vec()
            ]
        );
        let data = read_section(&mut cursor, &sections[2], 1024).unwrap();
        assert_eq!(data, b"payload");
        assert!(matches!(
            read_section(&mut cursor, &sections[2], 3),
            Err(CatalogError::TooLarge { limit: 3 })
        ));
    }

    #[test]
    fn truncated_tables_are_errors() {
        let bytes = testing::elf_with_sections(&[(".text", b"\x90")]);
        let truncated = &bytes[..bytes.len() - 10];
        let mut cursor = Cursor::new(truncated);
        assert!(matches!(
            read_sections(&mut cursor, &truncated[..64]),
            Err(CatalogError::Elf { .. })
        ));
    }
}
