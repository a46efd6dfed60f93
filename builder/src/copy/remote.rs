//! `ADD <http(s) URL>`: streaming a remote file to disk while hashing it.
//!
//! As BuildKit does: the file is named after the last component of the URL
//! path (`__unnamed__` when there is none), gets mode 0600, and its mtime comes
//! from the `Last-Modified` header when the server sends one. Remote files are
//! never extracted. A non-2xx status is an error naming the URL.
//!
//! The download runs on a private single-threaded tokio runtime in a scoped
//! thread, so callers may be sync or inside another runtime.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::context::Timestamp;
use crate::digest::{Digest, Hasher};

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("downloading {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("downloading {url}: server answered {status}")]
    Status { url: String, status: u16 },
    #[error("downloading {url} to {path}: {source}")]
    Write {
        url: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A completed download.
#[derive(Debug, Clone)]
pub struct Downloaded {
    pub digest: Digest,
    pub size: u64,
    /// From `Last-Modified`, if sent and parseable.
    pub last_modified: Option<Timestamp>,
}

/// The file name BuildKit gives a remote source.
pub fn file_name(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after_scheme
        .split_once('/')
        .map_or("", |(_, p)| p)
        .split(['?', '#'])
        .next()
        .unwrap_or("");
    match path.trim_end_matches('/').rsplit('/').next() {
        Some(base) if !base.is_empty() && base != "." => base.to_owned(),
        _ => "__unnamed__".to_owned(),
    }
}

/// Downloads `url` into `dest` (created or truncated).
pub fn download(url: &str, dest: &Path) -> Result<Downloaded, DownloadError> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|source| DownloadError::Write {
                        url: url.to_owned(),
                        path: dest.to_owned(),
                        source,
                    })?;
                runtime.block_on(fetch(url, dest))
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

async fn fetch(url: &str, dest: &Path) -> Result<Downloaded, DownloadError> {
    let http = |source| DownloadError::Http {
        url: url.to_owned(),
        source,
    };
    let write = |source| DownloadError::Write {
        url: url.to_owned(),
        path: dest.to_owned(),
        source,
    };
    let client = reqwest::Client::builder().build().map_err(http)?;
    let mut response = client.get(url).send().await.map_err(http)?;
    if !response.status().is_success() {
        return Err(DownloadError::Status {
            url: url.to_owned(),
            status: response.status().as_u16(),
        });
    }
    let last_modified = response
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_http_date);
    let mut file =
        std::io::BufWriter::with_capacity(256 * 1024, std::fs::File::create(dest).map_err(write)?);
    let mut hasher = Hasher::new();
    while let Some(chunk) = response.chunk().await.map_err(http)? {
        hasher.update(&chunk);
        file.write_all(&chunk).map_err(write)?;
    }
    file.flush().map_err(write)?;
    let size = hasher.len();
    Ok(Downloaded {
        digest: hasher.finish(),
        size,
        last_modified,
    })
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form servers
/// must send.
pub fn parse_http_date(text: &str) -> Option<Timestamp> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    let day: i64 = parts[1].parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == parts[2])? as i64
        + 1;
    let year: i64 = parts[3].parse().ok()?;
    let hms: Vec<i64> = parts[4]
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    if hms.len() != 3 || !(1..=31).contains(&day) {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(Timestamp {
        secs: days * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2],
        nanos: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_urls() {
        assert_eq!(
            file_name("https://example.com/a/b/tool.tar.gz?x=1"),
            "tool.tar.gz"
        );
        assert_eq!(file_name("http://example.com/"), "__unnamed__");
        assert_eq!(file_name("http://example.com"), "__unnamed__");
        assert_eq!(file_name("http://example.com/dir/"), "dir");
    }

    #[test]
    fn http_dates() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT")
                .unwrap()
                .secs,
            784_111_777
        );
        assert_eq!(
            parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT")
                .unwrap()
                .secs,
            0
        );
        assert!(parse_http_date("yesterday").is_none());
    }
}
