//! Parallel gzip whose bytes do not depend on the number of threads.
//!
//! Contract: the input is cut into fixed 512 KiB blocks; each block is compressed as raw
//! deflate on its own (on a pool of worker threads), primed with the previous block's
//! last 32 KiB as dictionary (so the ratio stays within a fraction of a percent of one
//! stream), and ended with a sync flush so blocks concatenate at byte boundaries — the
//! scheme pigz uses. An empty final block, the CRC-32 (combined from the blocks' CRCs)
//! and the length close the single gzip member. The output depends only on the input and
//! the level: 1 thread or 64 give the same bytes. Every gzip reader reads it.
//!
//! The header is fixed: no name, mtime 0, XFL 0, OS 255.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Crc, FlushCompress};

/// The block size is part of the format: changing it changes every digest.
const BLOCK: usize = 512 * 1024;
/// Deflate's window: the dictionary carried from one block to the next.
const WINDOW: usize = 32 * 1024;
const HEADER: [u8; 10] = [0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff];
/// A final, empty, fixed-Huffman deflate block.
const FINAL_EMPTY_BLOCK: [u8; 2] = [0x03, 0x00];

struct Job {
    seq: u64,
    dictionary: Vec<u8>,
    data: Vec<u8>,
}

type Done = (u64, io::Result<(Vec<u8>, Crc)>);

/// A `Write` that gzips into `inner` with a pool of `threads` workers.
pub(crate) struct ParallelGzip<W: Write> {
    inner: W,
    jobs: Option<Sender<Job>>,
    done: Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
    current: Vec<u8>,
    previous_tail: Vec<u8>,
    next_seq: u64,
    next_to_write: u64,
    ready: BTreeMap<u64, (Vec<u8>, Crc)>,
    crc: Crc,
    max_in_flight: u64,
}

impl<W: Write> ParallelGzip<W> {
    pub(crate) fn new(mut inner: W, level: u32, threads: usize) -> io::Result<ParallelGzip<W>> {
        inner.write_all(&HEADER)?;
        let threads = threads.max(1);
        let (job_tx, job_rx) = channel::<Job>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done_rx) = channel::<Done>();
        let workers = (0..threads)
            .map(|_| {
                let jobs = Arc::clone(&job_rx);
                let done = done_tx.clone();
                std::thread::spawn(move || worker(level, jobs, done))
            })
            .collect();
        Ok(ParallelGzip {
            inner,
            jobs: Some(job_tx),
            done: done_rx,
            workers,
            current: Vec::with_capacity(BLOCK),
            previous_tail: Vec::new(),
            next_seq: 0,
            next_to_write: 0,
            ready: BTreeMap::new(),
            crc: Crc::new(),
            max_in_flight: 2 * threads as u64 + 2,
        })
    }

    fn submit(&mut self) -> io::Result<()> {
        let data = std::mem::replace(&mut self.current, Vec::with_capacity(BLOCK));
        let dictionary = std::mem::take(&mut self.previous_tail);
        self.previous_tail = data[data.len().saturating_sub(WINDOW)..].to_vec();
        let job = Job {
            seq: self.next_seq,
            dictionary,
            data,
        };
        self.next_seq += 1;
        self.jobs
            .as_ref()
            .expect("jobs are open until finish")
            .send(job)
            .map_err(|_| pool_gone())?;
        // Bound memory: wait for the oldest blocks when too many are in flight.
        while self.next_seq - self.next_to_write > self.max_in_flight {
            self.receive_one()?;
        }
        Ok(())
    }

    fn receive_one(&mut self) -> io::Result<()> {
        let (seq, result) = self.done.recv().map_err(|_| pool_gone())?;
        self.ready.insert(seq, result?);
        while let Some((compressed, crc)) = self.ready.remove(&self.next_to_write) {
            self.inner.write_all(&compressed)?;
            self.crc.combine(&crc);
            self.next_to_write += 1;
        }
        Ok(())
    }

    /// Compresses what is left, writes the trailer and returns the inner writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        if !self.current.is_empty() {
            self.submit()?;
        }
        while self.next_to_write < self.next_seq {
            self.receive_one()?;
        }
        self.jobs = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        self.inner.write_all(&FINAL_EMPTY_BLOCK)?;
        self.inner.write_all(&self.crc.sum().to_le_bytes())?;
        self.inner.write_all(&self.crc.amount().to_le_bytes())?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(BLOCK - self.current.len());
        self.current.extend_from_slice(&buf[..n]);
        if self.current.len() == BLOCK {
            self.submit()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn pool_gone() -> io::Error {
    io::Error::other("a gzip worker thread stopped")
}

fn worker(level: u32, jobs: Arc<Mutex<Receiver<Job>>>, done: Sender<Done>) {
    loop {
        let job = {
            let Ok(rx) = jobs.lock() else { return };
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let result = compress_block(level, &job.dictionary, &job.data);
        if done.send((job.seq, result)).is_err() {
            return;
        }
    }
}

/// Raw deflate of one block, primed with `dictionary`, ended by a sync flush.
fn compress_block(level: u32, dictionary: &[u8], data: &[u8]) -> io::Result<(Vec<u8>, Crc)> {
    let mut crc = Crc::new();
    crc.update(data);
    let mut deflate = flate2::Compress::new(flate2::Compression::new(level), false);
    if !dictionary.is_empty() {
        deflate
            .set_dictionary(dictionary)
            .map_err(io::Error::other)?;
    }
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let consumed = deflate.total_in() as usize;
        deflate
            .compress_vec(&data[consumed..], &mut out, FlushCompress::Sync)
            .map_err(io::Error::other)?;
        // Done when all input is in and the flush did not run out of output space.
        if deflate.total_in() as usize == data.len() && out.len() < out.capacity() {
            return Ok((out, crc));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample(len: usize) -> Vec<u8> {
        let mut state = 0x1234_5678_u32;
        (0..len)
            .map(|i| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                // Half text-like, half noise, so both paths of the compressor run.
                if (i / 100_000) % 2 == 0 {
                    b"the quick brown fox "[i % 20]
                } else {
                    (state >> 16) as u8
                }
            })
            .collect()
    }

    fn gzip(data: &[u8], threads: usize) -> Vec<u8> {
        let mut w = ParallelGzip::new(Vec::new(), 2, threads).unwrap();
        for piece in data.chunks(100_003) {
            w.write_all(piece).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn bytes_do_not_depend_on_thread_count_and_decode_back() {
        let data = sample(3 * BLOCK + 12_345);
        let one = gzip(&data, 1);
        assert_eq!(gzip(&data, 2), one);
        assert_eq!(gzip(&data, 5), one);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&one[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == data);
        // Within 1 % of a single stream at the same level.
        let mut single = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(2));
        single.write_all(&data).unwrap();
        let single = single.finish().unwrap();
        assert!(
            one.len() as f64 <= single.len() as f64 * 1.01,
            "{} vs {}",
            one.len(),
            single.len()
        );
    }

    #[test]
    fn empty_input_is_a_valid_gzip_of_nothing() {
        let out = gzip(b"", 2);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&out[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back.is_empty());
        assert_eq!(&out[..10], &HEADER);
    }
}
