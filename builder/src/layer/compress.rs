//! The streaming pass: tar bytes → sha256 (diffID) → compressor → sha256 (blob digest)
//! → sink, and the reverse for unpacking.
//!
//! Contract of [`run`]: the producer writes the tar into a `Write` on the calling thread,
//! which hashes it (diffID) and hands fixed-size buffers over a bounded channel to a
//! compression thread, which compresses, hashes the compressed bytes (blob digest) and
//! writes them to the sink. On a 2-core machine tar production and compression thus
//! overlap; memory stays at a few buffers. A failure on either side stops both; the
//! compression side's error (the real cause when the sink fails) wins.
//!
//! Contract of [`decompressed`]: detects gzip (`1f 8b`), zstd (`28 b5 2f fd`) or a plain
//! tar by magic and returns a reader of the tar bytes; [`read_ahead`] runs such a reader
//! on a second thread so decompression overlaps extraction.

use std::io::{self, BufReader, Read, Write};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::thread;

use flate2::GzBuilder;

use super::pgzip::ParallelGzip;
use super::{Compression, Error, LayerInfo, LayerMediaType};
use crate::digest::{Digest, Hasher, HashingWriter};

/// Size of the buffers handed between threads.
const CHUNK: usize = 256 * 1024;
/// Buffers in flight: enough to ride out bursts (a big file's read vs. a compressor
/// flush) without holding much memory.
const QUEUE: usize = 8;
/// The gzip header's OS byte: 255 "unknown", as Go's gzip writer uses, so the header
/// does not depend on the build host.
const GZIP_OS_UNKNOWN: u8 = 255;

/// The result of a streaming pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PassOutput {
    pub diff_id: Digest,
    pub uncompressed_size: u64,
    pub digest: Digest,
    pub size: u64,
    pub entries: u64,
}

impl PassOutput {
    pub(crate) fn into_info(self, media_type: LayerMediaType) -> LayerInfo {
        LayerInfo {
            diff_id: self.diff_id,
            digest: self.digest,
            size: self.size,
            media_type,
            uncompressed_size: self.uncompressed_size,
            entries: self.entries,
        }
    }
}

/// Runs `produce` (which writes a tar and returns its entry count) through
/// `compression` into `sink`.
pub(crate) fn run<W, F>(
    compression: Compression,
    sink: W,
    produce: F,
) -> Result<(PassOutput, W), Error>
where
    W: Write + Send,
    F: FnOnce(&mut dyn Write) -> Result<u64, Error>,
{
    validate(compression)?;
    if compression == Compression::Uncompressed {
        let mut hashing = HashingWriter::new(sink);
        let entries = produce(&mut hashing)?;
        hashing.flush().map_err(|source| Error::Sink { source })?;
        let (sink, digest, size) = hashing.finish();
        let out = PassOutput {
            diff_id: digest.clone(),
            uncompressed_size: size,
            digest,
            size,
            entries,
        };
        return Ok((out, sink));
    }

    let (full_tx, full_rx) = sync_channel::<Vec<u8>>(QUEUE);
    let (empty_tx, empty_rx) = channel::<Vec<u8>>();
    thread::scope(|scope| {
        let worker = scope.spawn(move || compress_worker(compression, sink, full_rx, empty_tx));
        let mut writer = ChunkWriter {
            tx: Some(full_tx),
            recycled: empty_rx,
            current: Vec::with_capacity(CHUNK),
            hasher: Hasher::new(),
        };
        let produced = produce(&mut writer).and_then(|entries| {
            writer
                .send_current()
                .map_err(|source| Error::Sink { source })?;
            Ok(entries)
        });
        // Closing the channel lets the worker finish the stream.
        writer.tx = None;
        let worker_result = worker.join().map_err(|_| Error::CompressionWorker {
            reason: "the compression thread panicked",
        })?;
        let (digest, size, sink) = match worker_result {
            Ok(done) => done,
            Err(source) => return Err(Error::Sink { source }),
        };
        let entries = produced?;
        let uncompressed_size = writer.hasher.len();
        let out = PassOutput {
            diff_id: writer.hasher.finish(),
            uncompressed_size,
            digest,
            size,
            entries,
        };
        Ok((out, sink))
    })
}

fn validate(compression: Compression) -> Result<(), Error> {
    match compression {
        Compression::Gzip { level } | Compression::ParallelGzip { level } if level > 9 => {
            Err(Error::GzipLevel { level })
        }
        #[cfg(not(feature = "zstd"))]
        Compression::Zstd { .. } => Err(Error::ZstdUnavailable),
        _ => Ok(()),
    }
}

fn compress_worker<W: Write>(
    compression: Compression,
    sink: W,
    full: Receiver<Vec<u8>>,
    recycle: Sender<Vec<u8>>,
) -> io::Result<(Digest, u64, W)> {
    let mut encoder = Encoder::new(compression, HashingWriter::new(sink))?;
    for mut buf in full {
        encoder.write_all(&buf)?;
        buf.clear();
        // The producer may be gone already; then the buffer is just dropped.
        let _ = recycle.send(buf);
    }
    let mut hashing = encoder.finish()?;
    hashing.flush()?;
    let (sink, digest, size) = hashing.finish();
    Ok((digest, size, sink))
}

enum Encoder<W: Write> {
    Gzip(flate2::write::GzEncoder<W>),
    ParallelGzip(ParallelGzip<W>),
    #[cfg(feature = "zstd")]
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    fn new(compression: Compression, inner: W) -> io::Result<Encoder<W>> {
        match compression {
            Compression::Gzip { level } => Ok(Encoder::Gzip(
                GzBuilder::new()
                    .mtime(0)
                    .operating_system(GZIP_OS_UNKNOWN)
                    .write(inner, flate2::Compression::new(level)),
            )),
            Compression::ParallelGzip { level } => {
                let threads = thread::available_parallelism().map_or(1, |n| n.get());
                Ok(Encoder::ParallelGzip(ParallelGzip::new(
                    inner, level, threads,
                )?))
            }
            #[cfg(feature = "zstd")]
            Compression::Zstd { level, workers } => {
                let mut enc = zstd::stream::write::Encoder::new(inner, level)?;
                // Pin every frame parameter that changes the bytes.
                enc.include_checksum(false)?;
                enc.include_contentsize(false)?;
                enc.include_dictid(false)?;
                enc.long_distance_matching(false)?;
                if workers > 0 {
                    enc.multithread(workers)?;
                }
                Ok(Encoder::Zstd(enc))
            }
            _ => unreachable!("uncompressed and unavailable modes are handled before"),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.write_all(buf),
            Encoder::ParallelGzip(e) => e.write_all(buf),
            #[cfg(feature = "zstd")]
            Encoder::Zstd(e) => e.write_all(buf),
        }
    }

    fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::ParallelGzip(e) => e.finish(),
            #[cfg(feature = "zstd")]
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

/// The producer's side: hashes and batches bytes into buffers for the worker.
struct ChunkWriter {
    tx: Option<SyncSender<Vec<u8>>>,
    recycled: Receiver<Vec<u8>>,
    current: Vec<u8>,
    hasher: Hasher,
}

impl ChunkWriter {
    fn send_current(&mut self) -> io::Result<()> {
        if self.current.is_empty() {
            return Ok(());
        }
        let next = self
            .recycled
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        let full = std::mem::replace(&mut self.current, next);
        let tx = self.tx.as_ref().ok_or_else(worker_gone)?;
        tx.send(full).map_err(|_| worker_gone())
    }
}

fn worker_gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the compression thread stopped")
}

impl Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.current.len();
        let n = buf.len().min(room);
        self.current.extend_from_slice(&buf[..n]);
        self.hasher.update(&buf[..n]);
        if self.current.len() == CHUNK {
            self.send_current()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How a layer blob was compressed, as detected from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetectedCompression {
    Uncompressed,
    Gzip,
    Zstd,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// A reader of the tar inside `raw`, whatever its compression.
pub(crate) fn decompressed<'r, R: Read + Send + 'r>(
    mut raw: R,
) -> Result<(Box<dyn Read + Send + 'r>, DetectedCompression), Error> {
    let mut head = Vec::with_capacity(ZSTD_MAGIC.len());
    (&mut raw)
        .take(ZSTD_MAGIC.len() as u64)
        .read_to_end(&mut head)
        .map_err(|source| Error::ReadLayer { source })?;
    let kind = if head.starts_with(&GZIP_MAGIC) {
        DetectedCompression::Gzip
    } else if head.starts_with(&ZSTD_MAGIC) {
        DetectedCompression::Zstd
    } else {
        DetectedCompression::Uncompressed
    };
    // The peeked bytes go back in front of the rest of the stream.
    let buffered = BufReader::with_capacity(CHUNK, io::Cursor::new(head).chain(raw));
    let reader: Box<dyn Read + Send + 'r> = match kind {
        DetectedCompression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        #[cfg(feature = "zstd")]
        DetectedCompression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(buffered)
                .map_err(|source| Error::ReadLayer { source })?,
        ),
        #[cfg(not(feature = "zstd"))]
        DetectedCompression::Zstd => return Err(Error::ZstdUnavailable),
        DetectedCompression::Uncompressed => Box::new(buffered),
    };
    Ok((reader, kind))
}

/// Runs `consume` on the calling thread over the bytes of `reader`, which is drained on
/// a second thread (so decompression overlaps whatever `consume` does). If `consume`
/// returns before the end, the reading thread stops at its next buffer.
pub(crate) fn read_ahead<'r, T>(
    reader: Box<dyn Read + Send + 'r>,
    consume: impl FnOnce(&mut dyn Read) -> T,
) -> T {
    let (tx, rx) = sync_channel::<io::Result<Vec<u8>>>(QUEUE);
    thread::scope(|scope| {
        scope.spawn(move || {
            let mut reader = reader;
            loop {
                let mut buf = vec![0u8; CHUNK];
                let mut filled = 0;
                let result = loop {
                    match reader.read(&mut buf[filled..]) {
                        Ok(0) => break Ok(()),
                        Ok(n) => {
                            filled += n;
                            if filled == CHUNK {
                                break Ok(());
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => break Err(e),
                    }
                };
                let at_end = filled < CHUNK;
                buf.truncate(filled);
                if filled > 0 && tx.send(Ok(buf)).is_err() {
                    return;
                }
                if let Err(e) = result {
                    let _ = tx.send(Err(e));
                    return;
                }
                if at_end {
                    return;
                }
            }
        });
        let mut channel_reader = ChannelReader {
            rx,
            current: Vec::new(),
            pos: 0,
        };
        consume(&mut channel_reader)
        // Dropping the receiver here stops the reading thread; the scope joins it.
    })
}

struct ChannelReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            match self.rx.recv() {
                Ok(Ok(buf)) => {
                    self.current = buf;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len() - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(compression: Compression) -> (PassOutput, Vec<u8>) {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let (out, blob) = run(compression, Vec::new(), |w| {
            w.write_all(&data).unwrap();
            Ok(7)
        })
        .unwrap();
        assert_eq!(out.diff_id, Digest::of(&data));
        assert_eq!(out.uncompressed_size, data.len() as u64);
        assert_eq!(out.digest, Digest::of(&blob));
        assert_eq!(out.size, blob.len() as u64);
        assert_eq!(out.entries, 7);
        let (reader, _) = decompressed(&blob[..]).unwrap();
        let back = read_ahead(reader, |r| {
            let mut v = Vec::new();
            r.read_to_end(&mut v).unwrap();
            v
        });
        assert!(back == data, "decompressed bytes differ");
        (out, blob)
    }

    #[test]
    fn gzip_header_has_no_name_and_no_mtime() {
        for compression in [Compression::gzip(), Compression::single_stream_gzip()] {
            let (_, blob) = roundtrip(compression);
            assert_eq!(&blob[0..3], &[0x1f, 0x8b, 8]);
            assert_eq!(blob[3] & 0x08, 0, "FNAME flag set");
            assert_eq!(blob[3], 0, "no optional header fields");
            assert_eq!(&blob[4..8], &[0, 0, 0, 0], "mtime must be zero");
            assert_eq!(blob[9], GZIP_OS_UNKNOWN);
        }
    }

    #[test]
    fn uncompressed_blob_is_the_tar() {
        let (out, _) = roundtrip(Compression::Uncompressed);
        assert_eq!(out.digest, out.diff_id);
    }

    #[cfg(feature = "zstd")]
    #[test]
    fn zstd_multithreaded_output_does_not_depend_on_worker_count() {
        let (single, _) = roundtrip(Compression::zstd());
        let (two, _) = roundtrip(Compression::Zstd {
            level: 3,
            workers: 2,
        });
        let (four, _) = roundtrip(Compression::Zstd {
            level: 3,
            workers: 4,
        });
        assert_eq!(two.digest, four.digest);
        assert_eq!(single.diff_id, two.diff_id);
    }

    #[test]
    fn a_failing_sink_is_reported_as_the_cause() {
        #[derive(Debug)]
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let err = run(Compression::single_stream_gzip(), Broken, |w| {
            for _ in 0..100 {
                w.write_all(&[7u8; 100_000])
                    .map_err(|source| Error::Sink { source })?;
            }
            Ok(1)
        })
        .unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
    }
}
