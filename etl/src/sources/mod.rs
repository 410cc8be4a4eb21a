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
}

/// A problem that makes the whole file unusable (the file is rejected, nothing loaded).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FileError(pub String);

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
            return Err(FileError(format!("header column {} has no name", i + 1)));
        }
        if header[..i].contains(h) {
            return Err(FileError(format!("header name `{h}` appears twice")));
        }
    }
    Ok(())
}
