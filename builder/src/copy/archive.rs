//! Recognising the local archives `ADD` extracts, by content, never by name.
//!
//! A file is an archive when, after undoing an optional gzip, bzip2, xz or
//! zstd compression (detected by magic number), its first 512 bytes are a tar
//! header with a valid checksum — the same test as Docker's
//! `archive.IsArchivePath` (an empty tar is therefore copied, not extracted).
//! Decoders are pure Rust: `flate2` (zlib-rs), `bzip2` (libbz2-rs), `lzma-rust2`
//! and `ruzstd`. Concatenated streams/frames are all decoded.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

/// The compression wrapped around a tar stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

impl Compression {
    /// Detects the compression from the first bytes of a stream.
    pub fn from_magic(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(b"BZh") {
            Compression::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Compression::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// A reader of the decompressed content of `path`.
pub fn open_decompressed(path: &Path) -> io::Result<(Compression, Box<dyn Read + Send>)> {
    let mut file = BufReader::with_capacity(256 * 1024, File::open(path)?);
    let compression = Compression::from_magic(file.fill_buf()?);
    let reader: Box<dyn Read + Send> = match compression {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(file)),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(file)),
        Compression::Xz => Box::new(lzma_rust2::XzReader::new(file, true)),
        Compression::Zstd => Box::new(ZstdFrames::new(file)?),
    };
    Ok((compression, reader))
}

/// Whether `path` holds a (possibly compressed) tar archive; returns its
/// compression when it does. Undecodable data counts as "not an archive".
pub fn detect(path: &Path) -> io::Result<Option<Compression>> {
    let (compression, mut reader) = match open_decompressed(path) {
        Ok(opened) => opened,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(e),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Err(e),
        Err(_) => return Ok(None),
    };
    let mut header = [0u8; 512];
    let mut filled = 0;
    while filled < header.len() {
        match reader.read(&mut header[filled..]) {
            Ok(0) => return Ok(None),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Ok(None),
        }
    }
    Ok(is_tar_header(&header).then_some(compression))
}

/// A tar header block: the stored checksum equals the sum of the block's
/// bytes with the checksum field counted as spaces.
pub fn is_tar_header(block: &[u8; 512]) -> bool {
    let field = &block[148..156];
    let text: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect();
    let Ok(stored) = u32::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum();
    // Some old writers summed signed bytes.
    let signed: i64 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                i64::from(*b as i8)
            }
        })
        .sum();
    stored == sum || i64::from(stored) == signed
}

/// Decodes every zstd frame of a stream in turn (`ruzstd`'s streaming decoder
/// stops after one).
struct ZstdFrames<R: BufRead> {
    decoder: Option<ruzstd::decoding::StreamingDecoder<R, ruzstd::decoding::FrameDecoder>>,
}

impl<R: BufRead> ZstdFrames<R> {
    fn new(source: R) -> io::Result<Self> {
        let decoder = ruzstd::decoding::StreamingDecoder::new(source).map_err(io::Error::other)?;
        Ok(ZstdFrames {
            decoder: Some(decoder),
        })
    }
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(decoder) = self.decoder.as_mut() else {
                return Ok(0);
            };
            let n = decoder.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            let (mut source, frame) = self.decoder.take().expect("checked above").into_parts();
            if source.fill_buf()?.is_empty() {
                return Ok(0);
            }
            self.decoder = Some(
                ruzstd::decoding::StreamingDecoder::new_with_decoder(source, frame)
                    .map_err(io::Error::other)?,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_numbers() {
        assert_eq!(Compression::from_magic(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(Compression::from_magic(b"BZh91AY"), Compression::Bzip2);
        assert_eq!(
            Compression::from_magic(&[0xfd, b'7', b'z', b'X', b'Z', 0, 0]),
            Compression::Xz
        );
        assert_eq!(
            Compression::from_magic(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::from_magic(b"hello"), Compression::None);
    }

    #[test]
    fn plain_files_are_not_archives() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.tar.gz");
        std::fs::write(&p, vec![b'a'; 2000]).unwrap();
        assert_eq!(detect(&p).unwrap(), None);
        std::fs::write(&p, [0u8; 1024]).unwrap();
        assert_eq!(detect(&p).unwrap(), None);
        let mut builder = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_cksum();
        builder.append_data(&mut h, "f", &b"x"[..]).unwrap();
        std::fs::write(&p, builder.into_inner().unwrap()).unwrap();
        assert_eq!(detect(&p).unwrap(), Some(Compression::None));
    }
}
