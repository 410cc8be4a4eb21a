//! Sources: readers that turn one input file into a header and numbered rows of text. They
//! know formats and encodings, nothing about OMOP; the shared mapping and load path does the
//! rest.

pub mod csv;
pub mod xlsx;

/// One data row.
#[derive(Debug, Clone)]
pub struct SourceRow {
    /// 1-based number among the data rows (the header is not counted).
    pub number: u64,
    /// 1-based line (CSV) or sheet row (xlsx) where it starts, for messages.
    pub line: u64,
    pub fields: Vec<String>,
    /// Per-cell problems found while reading (e.g. an error cell): (column index, reason).
    /// A field that reads such a cell fails; the others are not affected.
    pub cell_errors: Vec<(usize, String)>,
    /// Columns (by index) whose cell was typed as a date by the source (a workbook's date
    /// cell), written as ISO `YYYY-MM-DD[ HH:MM:SS]`: read as such, whatever the mapping's
    /// text formats.
    pub typed_dates: Vec<u32>,
    /// The row's logical identity at the source (e.g. a FHIR `Type/id` with its endpoint),
    /// for sources whose rows are updated in place: a later row with the same key replaces
    /// the rows the earlier one produced. Stored only as a keyed hash.
    pub key: Option<String>,
}

/// What a reader yields per row.
pub enum RowResult {
    Row(SourceRow),
    /// A row that cannot be used at all (e.g. wrong number of fields), with its reason.
    Bad {
        number: u64,
        line: u64,
        code: &'static str,
        reason: String,
    },
    /// The source says the record with this key was deleted: the rows it produced earlier
    /// are removed.
    Deleted {
        number: u64,
        key: String,
    },
    /// A record the source no longer holds, known only by its stored identity (an id sweep
    /// of a FHIR server found it gone): the rows it produced are removed.
    Gone {
        number: u64,
        record: crate::ledger::RecordKey,
    },
}

/// A problem that makes the whole file unusable (the file is rejected with `code` and
/// `reason`, nothing loaded).
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct FileError {
    /// The reject's reason code (`unreadable_file`, `file_too_large`).
    pub code: &'static str,
    pub reason: String,
}

impl FileError {
    /// A file that cannot be read (`unreadable_file`).
    pub fn new(reason: String) -> Self {
        FileError {
            code: "unreadable_file",
            reason,
        }
    }
}

/// The largest cell a CSV or xlsx source takes by default (1 MiB); a larger one rejects its
/// row (`cell_too_large`).
pub const DEFAULT_MAX_CELL_BYTES: u64 = 1 << 20;

/// A size in bytes as written in `registrar.toml` or on the command line: a number of bytes,
/// or a number with `KiB`, `MiB`, `GiB` or `TiB` (`64MiB`, `16 GiB`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(digits);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{t}` is not a size (bytes, or e.g. 64MiB, 16GiB)"))?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        "TiB" => 40,
        u => return Err(format!("`{u}` is not a size unit (B, KiB, MiB, GiB, TiB)")),
    };
    let v = n
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("`{t}` is too large"))?;
    if v == 0 {
        return Err("a size limit must be more than 0 bytes".into());
    }
    Ok(v)
}

/// The ndjson limits of a bulk source: the given ones, else the defaults.
pub fn ndjson_limits(
    max_line: Option<u64>,
    max_content: Option<u64>,
) -> registrar_fhir::ndjson::Limits {
    let d = registrar_fhir::ndjson::Limits::default();
    registrar_fhir::ndjson::Limits {
        max_line: max_line.unwrap_or(d.max_line),
        max_content: max_content.unwrap_or(d.max_content),
    }
}

/// A size limit in `registrar.toml`: a number of bytes or a string such as `"64MiB"`.
pub fn deserialize_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    let v: Option<Size> = serde::Deserialize::deserialize(d)?;
    match v {
        None => Ok(None),
        Some(Size::Bytes(0)) => Err(serde::de::Error::custom(
            "a size limit must be more than 0 bytes",
        )),
        Some(Size::Bytes(n)) => Ok(Some(n)),
        Some(Size::Text(t)) => parse_size(&t).map(Some).map_err(serde::de::Error::custom),
    }
}

/// The reject of a row one of whose cells exceeds the limit: names the column and the limit,
/// never the value.
pub fn cell_too_large(
    header: &[String],
    fields: impl Iterator<Item = usize>,
    max: u64,
    number: u64,
    line: u64,
    where_: &str,
) -> Option<RowResult> {
    let col = fields
        .enumerate()
        .find(|(_, len)| *len as u64 > max)
        .map(|(i, _)| i)?;
    let name = header.get(col).map(String::as_str).unwrap_or("?");
    Some(RowResult::Bad {
        number,
        line,
        code: "cell_too_large",
        reason: format!(
            "{where_}: the cell in column `{name}` is larger than the limit of {max} bytes \
             (max_cell_bytes)"
        ),
    })
}

/// A reader of one file.
pub trait RowSource {
    fn header(&self) -> &[String];
    /// The next row, `Ok(None)` at the end, `Err` when the file turns out unusable.
    fn next_row(&mut self) -> Result<Option<RowResult>, FileError>;
}

/// Check a header for empty and duplicate names.
pub fn check_header(header: &[String]) -> Result<(), FileError> {
    for (i, h) in header.iter().enumerate() {
        if h.is_empty() {
            return Err(FileError::new(format!(
                "header column {} has no name",
                i + 1
            )));
        }
        if header[..i].contains(h) {
            return Err(FileError::new(format!("header name `{h}` appears twice")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_as_bytes_or_binary_units() {
        assert_eq!(super::parse_size("1048576"), Ok(1 << 20));
        assert_eq!(super::parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(super::parse_size("16 GiB"), Ok(16 << 30));
        assert!(super::parse_size("0").is_err());
        assert!(super::parse_size("5MB").is_err());
        assert!(super::parse_size("MiB").is_err());
    }
}
