//! Bulk Data export files: one resource per line, plain or gzip (by magic bytes), streamed.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// Lines of an ndjson file, with their 1-based numbers; blank lines are skipped.
pub struct NdjsonReader {
    inner: Box<dyn BufRead + Send>,
    line: u64,
    buf: Vec<u8>,
}

impl NdjsonReader {
    /// Open a plain or gzip-compressed file.
    pub fn open(path: &Path) -> std::io::Result<Self> {
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
        Ok(Self {
            inner,
            line: 0,
            buf: Vec::new(),
        })
    }

    /// The next non-blank line (without its line end) and its number.
    pub fn next_line(&mut self) -> std::io::Result<Option<(u64, &[u8])>> {
        loop {
            self.buf.clear();
            if self.inner.read_until(b'\n', &mut self.buf)? == 0 {
                return Ok(None);
            }
            self.line += 1;
            while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
                self.buf.pop();
            }
            if self.buf.iter().any(|b| !b.is_ascii_whitespace()) {
                return Ok(Some((self.line, &self.buf)));
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
            while let Some((n, l)) = r.next_line().unwrap() {
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
}
