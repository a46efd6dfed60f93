//! Tar header encoding: ustar headers with PAX extended headers where ustar falls short.
//!
//! Contract: [`write_entry_header`] writes one entry's header (preceded by a PAX `x`
//! header when the path or link target is longer than 100 bytes, an id or the size does
//! not fit its octal field, or the entry has xattrs). Only numeric ids are written;
//! uname/gname stay empty. The same input always gives the same bytes: PAX records are
//! sorted by key, the PAX header's own metadata is fixed. The caller writes the entry's
//! data and then [`write_padding`]; [`write_end`] writes the two zero blocks that end
//! the archive.

use std::io::{self, Write};

pub(crate) const BLOCK: usize = 512;

/// Largest value of an 8-byte octal field (7 digits + NUL).
const MAX_OCTAL_7: u64 = 0o7777777;
/// Largest value of a 12-byte octal field (11 digits + NUL).
const MAX_OCTAL_11: u64 = 0o77777777777;

/// What kind of entry a header describes, with the type-specific fields.
#[derive(Debug, Clone, Copy)]
pub(crate) enum EntryKind<'a> {
    Regular { size: u64 },
    Directory,
    Symlink { target: &'a [u8] },
    Hardlink { target: &'a [u8] },
    CharDevice { major: u32, minor: u32 },
    BlockDevice { major: u32, minor: u32 },
    Fifo,
}

/// One entry's metadata as written. `path` has no leading `/` or `./` and no trailing
/// `/`; directories get their trailing `/` here.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntryHeader<'a> {
    pub path: &'a [u8],
    pub kind: EntryKind<'a>,
    /// Permission bits plus setuid/setgid/sticky (`0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds since the epoch, already clamped; negative values are written as 0.
    pub mtime: i64,
    /// Extended attributes, sorted by name.
    pub xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

/// Writes the header(s) for one entry and returns the bytes written.
pub(crate) fn write_entry_header(out: &mut dyn Write, entry: &EntryHeader<'_>) -> io::Result<u64> {
    let mut path = entry.path.to_vec();
    if matches!(entry.kind, EntryKind::Directory) {
        path.push(b'/');
    }
    let (typeflag, size, link, major, minor) = match entry.kind {
        EntryKind::Regular { size } => (b'0', size, &[][..], 0, 0),
        EntryKind::Directory => (b'5', 0, &[][..], 0, 0),
        EntryKind::Symlink { target } => (b'2', 0, target, 0, 0),
        EntryKind::Hardlink { target } => (b'1', 0, target, 0, 0),
        EntryKind::CharDevice { major, minor } => (b'3', 0, &[][..], major, minor),
        EntryKind::BlockDevice { major, minor } => (b'4', 0, &[][..], major, minor),
        EntryKind::Fifo => (b'6', 0, &[][..], 0, 0),
    };

    // PAX records, in key byte order (uppercase SCHILY.* sorts first).
    let mut records: Vec<(Vec<u8>, &[u8])> = Vec::new();
    let mut owned_numbers: Vec<(&'static str, Vec<u8>)> = Vec::new();
    for (name, value) in entry.xattrs {
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(name);
        records.push((key, value));
    }
    if entry.gid > MAX_OCTAL_7 {
        owned_numbers.push(("gid", entry.gid.to_string().into_bytes()));
    }
    if link.len() > 100 {
        records.push((b"linkpath".to_vec(), link));
    }
    if path.len() > 100 {
        records.push((b"path".to_vec(), &path));
    }
    if size > MAX_OCTAL_11 {
        owned_numbers.push(("size", size.to_string().into_bytes()));
    }
    if entry.uid > MAX_OCTAL_7 {
        owned_numbers.push(("uid", entry.uid.to_string().into_bytes()));
    }
    for (key, value) in &owned_numbers {
        records.push((key.as_bytes().to_vec(), value));
    }
    records.sort_by(|a, b| a.0.cmp(&b.0));

    let mut written = 0u64;
    if !records.is_empty() {
        let mut data = Vec::new();
        for (key, value) in &records {
            append_pax_record(&mut data, key, value);
        }
        let pax_name = pax_header_name(&path);
        let mut header = [0u8; BLOCK];
        fill_ustar(
            &mut header,
            &pax_name,
            0o644,
            0,
            0,
            data.len() as u64,
            0,
            b'x',
            b"",
            0,
            0,
        );
        out.write_all(&header)?;
        out.write_all(&data)?;
        written += BLOCK as u64 + data.len() as u64;
        written += write_padding(out, data.len() as u64)?;
    }

    let mut header = [0u8; BLOCK];
    fill_ustar(
        &mut header,
        &path,
        entry.mode & 0o7777,
        clamp_octal(entry.uid, MAX_OCTAL_7),
        clamp_octal(entry.gid, MAX_OCTAL_7),
        clamp_octal(size, MAX_OCTAL_11),
        entry.mtime.clamp(0, MAX_OCTAL_11 as i64) as u64,
        typeflag,
        link,
        major.into(),
        minor.into(),
    );
    out.write_all(&header)?;
    Ok(written + BLOCK as u64)
}

/// Zero bytes that pad `data_len` bytes of entry data to a block boundary.
pub(crate) fn write_padding(out: &mut dyn Write, data_len: u64) -> io::Result<u64> {
    let rem = (data_len % BLOCK as u64) as usize;
    if rem == 0 {
        return Ok(0);
    }
    let pad = BLOCK - rem;
    out.write_all(&[0u8; BLOCK][..pad])?;
    Ok(pad as u64)
}

/// The two zero blocks that end an archive.
pub(crate) fn write_end(out: &mut dyn Write) -> io::Result<u64> {
    out.write_all(&[0u8; 2 * BLOCK])?;
    Ok(2 * BLOCK as u64)
}

/// Values that overflow a field are carried by a PAX record; the field holds 0 then.
fn clamp_octal(value: u64, max: u64) -> u64 {
    if value > max { 0 } else { value }
}

/// `<dir>/PaxHeaders.0/<base>`, cut to 100 bytes, as Go's archive/tar names them.
fn pax_header_name(path: &[u8]) -> Vec<u8> {
    let trimmed = path.strip_suffix(b"/").unwrap_or(path);
    let (dir, base) = match trimmed.iter().rposition(|&b| b == b'/') {
        Some(i) => (&trimmed[..=i], &trimmed[i + 1..]),
        None => (&b""[..], trimmed),
    };
    let mut name = dir.to_vec();
    name.extend_from_slice(b"PaxHeaders.0/");
    name.extend_from_slice(base);
    name.truncate(100);
    name
}

/// `"<len> <key>=<value>\n"` where `<len>` counts the whole record, itself included.
fn append_pax_record(data: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let rest = 1 + key.len() + 1 + value.len() + 1; // ' ' key '=' value '\n'
    // The length includes its own digits: iterate to the fixed point (at most twice).
    let mut len = rest;
    loop {
        let candidate = rest + decimal_digits(len);
        if candidate == len {
            break;
        }
        len = candidate;
    }
    data.extend_from_slice(len.to_string().as_bytes());
    data.push(b' ');
    data.extend_from_slice(key);
    data.push(b'=');
    data.extend_from_slice(value);
    data.push(b'\n');
}

fn decimal_digits(mut n: usize) -> usize {
    let mut digits = 1;
    while n >= 10 {
        n /= 10;
        digits += 1;
    }
    digits
}

#[allow(clippy::too_many_arguments)]
fn fill_ustar(
    header: &mut [u8; BLOCK],
    name: &[u8],
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    typeflag: u8,
    link: &[u8],
    devmajor: u64,
    devminor: u64,
) {
    copy_truncated(&mut header[0..100], name);
    write_octal(&mut header[100..108], mode.into());
    write_octal(&mut header[108..116], uid);
    write_octal(&mut header[116..124], gid);
    write_octal(&mut header[124..136], size);
    write_octal(&mut header[136..148], mtime);
    header[156] = typeflag;
    copy_truncated(&mut header[157..257], link);
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    write_octal(&mut header[329..337], devmajor);
    write_octal(&mut header[337..345], devminor);
    // The checksum is computed with its own field taken as eight spaces.
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    let digits = format!("{sum:06o}");
    header[148..154].copy_from_slice(digits.as_bytes());
    header[154] = 0;
    header[155] = b' ';
}

fn copy_truncated(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

/// Zero-padded octal filling all but the last byte of the field, which stays NUL.
fn write_octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let digits = format!("{value:0width$o}");
    debug_assert!(
        digits.len() == width,
        "octal value {value} overflows its field"
    );
    field[..width].copy_from_slice(&digits.as_bytes()[digits.len() - width..]);
    field[width] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_of(entry: &EntryHeader<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        let n = write_entry_header(&mut out, entry).unwrap();
        assert_eq!(n as usize, out.len());
        out
    }

    fn plain(path: &[u8]) -> EntryHeader<'_> {
        EntryHeader {
            path,
            kind: EntryKind::Regular { size: 5 },
            mode: 0o4755,
            uid: 1000,
            gid: 50,
            mtime: 1_700_000_000,
            xattrs: &[],
        }
    }

    #[test]
    fn pax_record_lengths_count_themselves() {
        for value_len in 0..300 {
            let mut data = Vec::new();
            let value = vec![b'v'; value_len];
            append_pax_record(&mut data, b"path", &value);
            let text = String::from_utf8(data.clone()).unwrap();
            let (len, _) = text.split_once(' ').unwrap();
            assert_eq!(
                len.parse::<usize>().unwrap(),
                data.len(),
                "value_len {value_len}"
            );
        }
    }

    #[test]
    fn short_entry_is_one_ustar_block_the_tar_crate_reads_back() {
        let bytes = header_of(&plain(b"usr/bin/su"));
        assert_eq!(bytes.len(), BLOCK);
        let header = tar::Header::from_byte_slice(&bytes);
        assert_eq!(header.path_bytes().as_ref(), b"usr/bin/su");
        assert_eq!(header.mode().unwrap(), 0o4755);
        assert_eq!(header.uid().unwrap(), 1000);
        assert_eq!(header.gid().unwrap(), 50);
        assert_eq!(header.mtime().unwrap(), 1_700_000_000);
        assert_eq!(header.size().unwrap(), 5);
        assert_eq!(header.username_bytes(), Some(&b""[..]));
        assert_eq!(header.cksum().unwrap(), {
            let mut copy = bytes.clone();
            copy[148..156].copy_from_slice(b"        ");
            copy.iter().map(|&b| u32::from(b)).sum::<u32>()
        });
    }

    #[test]
    fn long_path_and_big_ids_go_to_a_pax_header() {
        let long = vec![b'a'; 150];
        let mut entry = plain(&long);
        entry.uid = 5_000_000;
        let bytes = header_of(&entry);
        let mut archive_bytes = bytes.clone();
        archive_bytes.extend_from_slice(b"hello");
        archive_bytes.extend_from_slice(&[0u8; BLOCK - 5]);
        archive_bytes.extend_from_slice(&[0u8; 2 * BLOCK]);
        let mut archive = tar::Archive::new(&archive_bytes[..]);
        let mut entries = archive.entries().unwrap();
        let mut first = entries.next().unwrap().unwrap();
        assert_eq!(first.path_bytes().as_ref(), &long[..]);
        let pax: Vec<(String, String)> = first
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.key().unwrap().to_owned(), e.value().unwrap().to_owned())
            })
            .collect();
        assert_eq!(
            pax,
            vec![
                ("path".to_owned(), String::from_utf8(long.clone()).unwrap()),
                ("uid".to_owned(), "5000000".to_owned())
            ]
        );
        assert!(entries.next().is_none());
    }

    #[test]
    fn directories_get_a_trailing_slash() {
        let entry = EntryHeader {
            kind: EntryKind::Directory,
            ..plain(b"etc")
        };
        let bytes = header_of(&entry);
        assert_eq!(&bytes[0..5], b"etc/\0");
        assert_eq!(bytes[156], b'5');
    }
}
