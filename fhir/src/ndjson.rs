//! Bulk Data export files: one resource per line, plain or gzip (by magic bytes), streamed.
//!
//! Memory stays bounded whatever the file holds: a line longer than [`Limits::max_line`] is
//! not kept (its bytes are read and dropped up to the next line end, and it is reported as
//! [`Line::TooLong`]), and reading stops with [`NdjsonError::TooLarge`] once the file's
//! content (after decompression) exceeds [`Limits::max_content`], so a small `.ndjson.gz`
//! that expands without end (a gzip bomb) is read only up to that limit.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// One MiB.
pub const MIB: u64 = 1 << 20;

/// How much of an ndjson file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest line (one resource), in bytes, without its line end.
    pub max_line: u64,
    /// The most content of one file, in bytes, after decompression.
    pub max_content: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 64 * MIB,
            max_content: 16 * 1024 * MIB,
        }
    }
}

/// A non-blank line of an ndjson file.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// A line (without its line end) and its 1-based number.
    Text(u64, &'a [u8]),
    /// A line longer than the limit, skipped: its number and the limit (never its content).
    TooLong { number: u64, limit: u64 },
}

/// Why an ndjson file stopped being read.
#[derive(Debug, thiserror::Error)]
pub enum NdjsonError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The content (after decompression) exceeds the limit; nothing after `after_line` was
    /// read.
    #[error(
        "the file's content (after decompression) exceeds the limit of {limit} bytes; reading \
         stopped after line {after_line}"
    )]
    TooLarge { limit: u64, after_line: u64 },
}

/// Lines of an ndjson file, with their 1-based numbers; blank lines are skipped.
pub struct NdjsonReader {
    inner: Box<dyn BufRead + Send>,
    limits: Limits,
    line: u64,
    /// Content bytes consumed so far (after decompression).
    read: u64,
    buf: Vec<u8>,
}

impl NdjsonReader {
    /// Open a plain or gzip-compressed file, with the default limits.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Self::open_with(path, Limits::default())
    }

    /// Open a plain or gzip-compressed file.
    pub fn open_with(path: &Path, limits: Limits) -> std::io::Result<Self> {
        let mut f = File::open(path)?;
        let mut magic = [0u8; 2];
        let n = f.read(&mut magic)?;
        let f = File::open(path)?;
        let inner: Box<dyn BufRead + Send> = if n == 2 && magic == [0x1f, 0x8b] {
            Box::new(BufReader::with_capacity(
                256 * 1024,
                flate2::read::MultiGzDecoder::new(f),
            ))
        } else {
            Box::new(BufReader::with_capacity(256 * 1024, f))
        };
        Ok(Self::from_reader(inner, limits))
    }

    /// Read lines from any reader.
    pub fn from_reader(inner: Box<dyn BufRead + Send>, limits: Limits) -> Self {
        Self {
            inner,
            limits,
            line: 0,
            read: 0,
            buf: Vec::new(),
        }
    }

    /// The next line (to its line end): whether it fit the limit. `Ok(None)` at the end.
    fn read_bounded(&mut self) -> Result<Option<bool>, NdjsonError> {
        self.buf.clear();
        let mut fits = true;
        let mut any = false;
        loop {
            let avail = match self.inner.fill_buf() {
                Ok(a) => a,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if avail.is_empty() {
                return Ok(any.then_some(fits));
            }
            any = true;
            let (take, done) = match avail.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (avail.len(), false),
            };
            if self.read + take as u64 > self.limits.max_content {
                return Err(NdjsonError::TooLarge {
                    limit: self.limits.max_content,
                    after_line: self.line,
                });
            }
            if fits {
                // The line end and a CR before it do not count towards the line's length.
                let room = self.limits.max_line + 2 - self.buf.len() as u64;
                if take as u64 <= room {
                    self.buf.extend_from_slice(&avail[..take]);
                } else {
                    fits = false;
                    self.buf.clear();
                }
            }
            self.inner.consume(take);
            self.read += take as u64;
            if done {
                return Ok(Some(fits));
            }
        }
    }

    /// The next non-blank line and its number.
    pub fn next_line(&mut self) -> Result<Option<Line<'_>>, NdjsonError> {
        loop {
            let Some(fits) = self.read_bounded()? else {
                return Ok(None);
            };
            self.line += 1;
            while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
                self.buf.pop();
            }
            if !fits || self.buf.len() as u64 > self.limits.max_line {
                return Ok(Some(Line::TooLong {
                    number: self.line,
                    limit: self.limits.max_line,
                }));
            }
            if self.buf.iter().any(|b| !b.is_ascii_whitespace()) {
                return Ok(Some(Line::Text(self.line, &self.buf)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn plain_and_gzip_files_read_the_same_lines() {
        let dir = std::env::temp_dir().join(format!("ndjson-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = b"{\"a\":1}\r\n\n{\"a\":2}\n{\"a\":3}";
        std::fs::write(dir.join("p.ndjson"), text).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text).unwrap();
        std::fs::write(dir.join("g.ndjson.gz"), gz.finish().unwrap()).unwrap();
        for f in ["p.ndjson", "g.ndjson.gz"] {
            let mut r = NdjsonReader::open(&dir.join(f)).unwrap();
            let mut got = Vec::new();
            while let Some(Line::Text(n, l)) = r.next_line().unwrap() {
                got.push((n, String::from_utf8(l.to_vec()).unwrap()));
            }
            assert_eq!(
                got,
                [
                    (1, "{\"a\":1}".to_string()),
                    (3, "{\"a\":2}".into()),
                    (4, "{\"a\":3}".into())
                ],
                "{f}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn lines(r: &mut NdjsonReader) -> Result<Vec<String>, NdjsonError> {
        let mut got = Vec::new();
        while let Some(l) = r.next_line()? {
            got.push(match l {
                Line::Text(n, b) => format!("{n}:{}", String::from_utf8_lossy(b)),
                Line::TooLong { number, limit } => format!("{number}:too long ({limit})"),
            });
        }
        Ok(got)
    }

    fn reader(bytes: &'static [u8], max_line: u64, max_content: u64) -> NdjsonReader {
        NdjsonReader::from_reader(
            Box::new(std::io::BufReader::with_capacity(4, bytes)),
            Limits {
                max_line,
                max_content,
            },
        )
    }

    #[test]
    fn a_line_over_the_limit_is_skipped_and_the_next_lines_are_read() {
        let text = b"{\"a\":1}\n{\"a\":\"0123456789\"}\r\n{\"b\":22}\r\n{\"a\":3}";
        let got = lines(&mut reader(text, 8, 1000)).unwrap();
        assert_eq!(
            got,
            [
                "1:{\"a\":1}",
                "2:too long (8)",
                "3:{\"b\":22}",
                "4:{\"a\":3}"
            ]
        );
    }

    #[test]
    fn content_over_the_limit_stops_the_file() {
        let text = b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n";
        let mut r = reader(text, 100, 16);
        assert!(matches!(r.next_line(), Ok(Some(Line::Text(1, _)))));
        assert!(matches!(r.next_line(), Ok(Some(Line::Text(2, _)))));
        match r.next_line() {
            Err(NdjsonError::TooLarge { limit, after_line }) => {
                assert_eq!((limit, after_line), (16, 2));
            }
            other => panic!("{other:?}"),
        }
        // Exactly at the limit is fine.
        assert_eq!(lines(&mut reader(text, 100, 24)).unwrap().len(), 3);
    }
}
