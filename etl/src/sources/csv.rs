//! Delimited text exports (CSV): any delimiter and quote, UTF-8, Windows-1252 or Latin-1,
//! CRLF or LF, streamed.

use super::{check_header, FileError, RowResult, RowSource, SourceRow};
use crate::mapping::Encoding;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// What a first pass over the bytes found: hash, size, whether it is valid UTF-8.
#[derive(Debug, Clone)]
pub struct Sniff {
    pub sha256: String,
    pub size: u64,
    pub utf8: bool,
    pub bom: bool,
    pub zip: bool,
}

/// Hash a file and check its encoding in one streaming pass.
pub fn sniff(path: &Path) -> std::io::Result<Sniff> {
    use sha2::{Digest, Sha256};
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut carry: Vec<u8> = Vec::new();
    let mut utf8 = true;
    let mut size = 0u64;
    let mut head = Vec::new();
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
        if head.len() < 4 {
            head.extend_from_slice(&buf[..n.min(4)]);
        }
        if utf8 {
            carry.extend_from_slice(&buf[..n]);
            match std::str::from_utf8(&carry) {
                Ok(_) => carry.clear(),
                Err(e) if e.error_len().is_none() => {
                    let keep = carry.split_off(e.valid_up_to());
                    carry = keep;
                }
                Err(_) => utf8 = false,
            }
        }
    }
    if !carry.is_empty() {
        utf8 = false;
    }
    Ok(Sniff {
        sha256: hex::encode(h.finalize()),
        size,
        utf8,
        bom: head.starts_with(BOM),
        zip: head.starts_with(b"PK\x03\x04"),
    })
}

/// How text bytes become strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoder {
    Utf8,
    Windows1252,
    Latin1,
}

impl Decoder {
    pub fn name(self) -> &'static str {
        match self {
            Decoder::Utf8 => "UTF-8",
            Decoder::Windows1252 => "Windows-1252",
            Decoder::Latin1 => "Latin-1",
        }
    }

    fn decode(self, b: &[u8]) -> Result<String, ()> {
        if b.is_ascii() {
            // Every decoder reads ASCII as ASCII.
            return Ok(std::str::from_utf8(b).map_err(|_| ())?.to_owned());
        }
        match self {
            Decoder::Utf8 => std::str::from_utf8(b).map(str::to_string).map_err(|_| ()),
            Decoder::Windows1252 => {
                let (s, _, _) = encoding_rs::WINDOWS_1252.decode(b);
                Ok(s.into_owned())
            }
            Decoder::Latin1 => Ok(b.iter().map(|&c| c as char).collect()),
        }
    }
}

/// Decide the decoder for a file, or refuse it with a clear reason.
pub fn choose_decoder(declared: Encoding, s: &Sniff) -> Result<Decoder, FileError> {
    if s.zip {
        return Err(FileError::new(
            "this is a zip archive (an xlsx workbook?), not a delimited text file: use an xlsx mapping".into(),
        ));
    }
    match declared {
        Encoding::Auto => Ok(if s.utf8 { Decoder::Utf8 } else { Decoder::Windows1252 }),
        Encoding::Utf8 if !s.utf8 => Err(FileError::new(
            "the file is declared UTF-8 but contains bytes that are not UTF-8 (probably Latin-1 or \
             Windows-1252: set `encoding` in the mapping, or `auto`)"
                .into(),
        )),
        Encoding::Utf8 => Ok(Decoder::Utf8),
        Encoding::Windows1252 | Encoding::Latin1 if s.bom => Err(FileError::new(format!(
            "the file starts with a UTF-8 byte-order mark but the mapping declares {}: the export \
             is probably UTF-8; set `encoding = \"utf-8\"` (or `auto`)",
            if declared == Encoding::Latin1 { "latin-1" } else { "windows-1252" }
        ))),
        Encoding::Windows1252 => Ok(Decoder::Windows1252),
        Encoding::Latin1 => Ok(Decoder::Latin1),
    }
}

/// A streaming CSV reader.
pub struct CsvSource {
    rdr: csv::Reader<BufReader<File>>,
    header: Vec<String>,
    decoder: Decoder,
    record: csv::ByteRecord,
    number: u64,
    /// The largest cell, in bytes; a row with a larger one is rejected.
    max_cell: u64,
}

impl CsvSource {
    pub fn open(
        path: &Path,
        delimiter: char,
        quote: char,
        header_row: usize,
        decoder: Decoder,
        bom: bool,
        max_cell: u64,
    ) -> Result<Self, FileError> {
        let io = |e: std::io::Error| FileError::new(format!("cannot read: {e}"));
        let mut file = BufReader::with_capacity(1 << 20, File::open(path).map_err(io)?);
        if bom {
            let mut skip = [0u8; 3];
            file.read_exact(&mut skip).map_err(io)?;
        }
        if !delimiter.is_ascii() || !quote.is_ascii() {
            return Err(FileError::new(
                "delimiter and quote must be ASCII characters".into(),
            ));
        }
        let mut rdr = csv::ReaderBuilder::new()
            .delimiter(delimiter as u8)
            .quote(quote as u8)
            .has_headers(false)
            .flexible(true)
            .from_reader(file);
        let mut record = csv::ByteRecord::new();
        for i in 0..header_row {
            let more = rdr
                .read_byte_record(&mut record)
                .map_err(|e| FileError::new(format!("cannot read line {}: {e}", i + 1)))?;
            if !more {
                return Err(FileError::new(if i == 0 {
                    "the file is empty (no header row)".into()
                } else {
                    format!("the file ends before header row {header_row}")
                }));
            }
        }
        let header: Vec<String> = record
            .iter()
            .map(|f| decoder.decode(f).map(|s| s.trim().to_string()))
            .collect::<Result<_, _>>()
            .map_err(|_| {
                FileError::new(format!(
                    "header row {header_row} is not valid {}",
                    decoder.name()
                ))
            })?;
        check_header(&header)?;
        Ok(Self {
            rdr,
            header,
            decoder,
            record,
            number: 0,
            max_cell,
        })
    }
}

impl RowSource for CsvSource {
    fn header(&self) -> &[String] {
        &self.header
    }

    fn next_row(&mut self) -> Result<Option<RowResult>, FileError> {
        loop {
            let more = self.rdr.read_byte_record(&mut self.record).map_err(|e| {
                FileError::new(format!("cannot parse after data row {}: {e}", self.number))
            })?;
            if !more {
                return Ok(None);
            }
            let line = self.record.position().map(|p| p.line()).unwrap_or(0);
            // A completely empty line is not a row.
            if self.record.len() == 1 && self.record[0].is_empty() {
                continue;
            }
            self.number += 1;
            if self.record.len() != self.header.len() {
                return Ok(Some(RowResult::Bad {
                    number: self.number,
                    line,
                    code: "ragged_row",
                    reason: format!(
                        "line {line}: {} fields, the header has {}",
                        self.record.len(),
                        self.header.len()
                    ),
                }));
            }
            if let Some(bad) = super::cell_too_large(
                &self.header,
                self.record.iter().map(<[u8]>::len),
                self.max_cell,
                self.number,
                line,
                &format!("line {line}"),
            ) {
                return Ok(Some(bad));
            }
            let mut fields = Vec::with_capacity(self.record.len());
            for f in self.record.iter() {
                match self.decoder.decode(f) {
                    Ok(s) => fields.push(s),
                    Err(()) => {
                        return Err(FileError::new(format!(
                            "line {line}: bytes that are not valid {}",
                            self.decoder.name()
                        )))
                    }
                }
            }
            return Ok(Some(RowResult::Row(SourceRow {
                number: self.number,
                line,
                fields,
                cell_errors: Vec::new(),
                typed_dates: Vec::new(),
                key: None,
            })));
        }
    }
}
