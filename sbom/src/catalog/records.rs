//! A streaming reader of `Name: value` records separated by blank lines: Debian
//! control data (dpkg status, DEP-5 copyright), Alpine's installed database
//! (`P:name`), and the header block of Python core metadata.
//!
//! Only the fields the caller names are kept; the rest are skipped without being
//! stored. Lines are read as bytes and decoded lossily, so stray non-UTF-8 bytes
//! in a description cannot fail a whole database.

use std::io::{self, BufRead};

/// How much of a wanted field to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldMode {
    /// The first line only (continuation lines are dropped).
    FirstLine,
    /// The first line and every continuation line, joined with `\n`.
    Full,
}

/// A field the caller wants kept.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FieldSpec {
    pub(crate) name: &'static str,
    pub(crate) mode: FieldMode,
}

/// Shorthand for a [`FieldSpec`].
pub(crate) const fn field(name: &'static str, mode: FieldMode) -> FieldSpec {
    FieldSpec { name, mode }
}

/// One record: for each wanted field (by its index in the spec list), every value in order.
#[derive(Debug)]
pub(crate) struct Record {
    /// Line (1-based) where the record starts.
    pub(crate) line: usize,
    values: Vec<Vec<String>>,
}

impl Record {
    /// The first value of the field at `index` in the spec list.
    pub(crate) fn first(&self, index: usize) -> Option<&str> {
        self.values[index].first().map(String::as_str)
    }

    /// Every value of the field at `index` in the spec list.
    pub(crate) fn all(&self, index: usize) -> &[String] {
        &self.values[index]
    }
}

/// Reads records one at a time from a buffered stream.
pub(crate) struct RecordReader<'s, R> {
    reader: R,
    specs: &'s [FieldSpec],
    case_sensitive: bool,
    line: usize,
    buffer: Vec<u8>,
}

impl<'s, R: BufRead> RecordReader<'s, R> {
    /// A reader keeping the fields in `specs`; names match ignoring ASCII case
    /// unless `case_sensitive` (Alpine's `P:` and `p:` differ).
    pub(crate) fn new(reader: R, specs: &'s [FieldSpec], case_sensitive: bool) -> Self {
        Self {
            reader,
            specs,
            case_sensitive,
            line: 0,
            buffer: Vec::with_capacity(256),
        }
    }

    /// The next record, or `None` at the end of the stream.
    pub(crate) fn next_record(&mut self) -> io::Result<Option<Record>> {
        let mut record: Option<Record> = None;
        // Index of the field the last header line belonged to, if it is kept in full.
        let mut continuing: Option<usize> = None;
        loop {
            self.buffer.clear();
            if self.reader.read_until(b'\n', &mut self.buffer)? == 0 {
                return Ok(record);
            }
            self.line += 1;
            let raw = trim_line_end(&self.buffer);
            if raw.iter().all(u8::is_ascii_whitespace) {
                if record.is_some() {
                    return Ok(record);
                }
                continue;
            }
            let record = record.get_or_insert_with(|| Record {
                line: self.line,
                values: vec![Vec::new(); self.specs.len()],
            });
            if matches!(raw[0], b' ' | b'\t') {
                if let Some(index) = continuing
                    && let Some(value) = record.values[index].last_mut()
                {
                    value.push('\n');
                    value.push_str(String::from_utf8_lossy(raw).trim());
                }
                continue;
            }
            continuing = None;
            let Some(colon) = raw.iter().position(|&byte| byte == b':') else {
                continue;
            };
            let name = &raw[..colon];
            let wanted = self.specs.iter().position(|spec| {
                if self.case_sensitive {
                    spec.name.as_bytes() == name
                } else {
                    spec.name.as_bytes().eq_ignore_ascii_case(name)
                }
            });
            if let Some(index) = wanted {
                let value = String::from_utf8_lossy(&raw[colon + 1..]).trim().to_owned();
                record.values[index].push(value);
                if self.specs[index].mode == FieldMode::Full {
                    continuing = Some(index);
                }
            }
        }
    }
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_records_and_continuations() {
        let text = "Package: a\nVersion: 1\nDescription: short\n long text\nDepends: x,\n y\n\n\nPackage: b\r\nversion: 2\n";
        let specs = [
            field("Package", FieldMode::FirstLine),
            field("Version", FieldMode::FirstLine),
            field("Depends", FieldMode::Full),
        ];
        let mut reader = RecordReader::new(text.as_bytes(), &specs, false);
        let first = reader.next_record().unwrap().unwrap();
        assert_eq!(first.first(0), Some("a"));
        assert_eq!(first.first(1), Some("1"));
        assert_eq!(first.first(2), Some("x,\ny"));
        assert_eq!(first.line, 1);
        let second = reader.next_record().unwrap().unwrap();
        assert_eq!(second.first(0), Some("b"));
        assert_eq!(second.first(1), Some("2"));
        assert_eq!(second.line, 9);
        assert!(reader.next_record().unwrap().is_none());
    }

    #[test]
    fn case_sensitive_single_letter_keys() {
        let text = "P:musl\np:so:libc.musl-x86_64.so.1=1\n";
        let specs = [
            field("P", FieldMode::FirstLine),
            field("p", FieldMode::FirstLine),
        ];
        let mut reader = RecordReader::new(text.as_bytes(), &specs, true);
        let record = reader.next_record().unwrap().unwrap();
        assert_eq!(record.first(0), Some("musl"));
        assert_eq!(record.all(1), ["so:libc.musl-x86_64.so.1=1"]);
    }
}
