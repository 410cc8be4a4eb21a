//! Dirt: faults injected on purpose, and their bookkeeping.

use serde::Serialize;

use crate::rng::Rng;

/// A kind of fault injected by `--dirt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DirtKind {
    /// A date cell that does not parse as a calendar date (`31/02/2019`, `2019-13-01`, `?` …).
    BadDate,
    /// A local lab or drug code that no mapping knows.
    UnknownCode,
    /// A row written twice, byte for byte (the second copy is the dirty one).
    DuplicateRow,
    /// A row with one field too many (a stray `;`).
    ExtraField,
    /// One CSV starts with a UTF-8 byte order mark (the file is UTF-8, declared so).
    Bom,
    /// One CSV is ISO-8859-1 although `his/_manifest.json` declares it UTF-8.
    Latin1DeclaredUtf8,
    /// `his/empty_export.csv` is a 0-byte file.
    EmptyFile,
    /// A FHIR resource with a code outside its required value set.
    FhirInvalidCode,
    /// One DICOM file cut short (in the middle of its pixel data or of a sequence).
    DicomTruncated,
    /// One file in the DICOM tree that is not DICOM (a text file or a JPEG).
    NotDicom,
    /// One CSV has its dates written month first (`mm/dd/yyyy`, a US export) although it
    /// declares `dd/mm/yyyy`.
    UsDates,
    /// A code cell with the patient's national number pasted after the code
    /// (`HB 85.07.30-033.28`), as a hurried copy and paste leaves it.
    IdentifierInText,
}

impl DirtKind {
    /// Every kind.
    pub const ALL: [DirtKind; 12] = [
        DirtKind::BadDate,
        DirtKind::UnknownCode,
        DirtKind::DuplicateRow,
        DirtKind::ExtraField,
        DirtKind::Bom,
        DirtKind::Latin1DeclaredUtf8,
        DirtKind::EmptyFile,
        DirtKind::FhirInvalidCode,
        DirtKind::DicomTruncated,
        DirtKind::NotDicom,
        DirtKind::UsDates,
        DirtKind::IdentifierInText,
    ];

    /// Name used in the truth files.
    pub fn as_str(self) -> &'static str {
        match self {
            DirtKind::BadDate => "bad_date",
            DirtKind::UnknownCode => "unknown_code",
            DirtKind::DuplicateRow => "duplicate_row",
            DirtKind::ExtraField => "extra_field",
            DirtKind::Bom => "bom",
            DirtKind::Latin1DeclaredUtf8 => "latin1_declared_utf8",
            DirtKind::EmptyFile => "empty_file",
            DirtKind::FhirInvalidCode => "fhir_invalid_code",
            DirtKind::DicomTruncated => "dicom_truncated",
            DirtKind::NotDicom => "not_dicom",
            DirtKind::UsDates => "us_dates",
            DirtKind::IdentifierInText => "identifier_in_text",
        }
    }

    /// True for faults of single rows (the others concern whole files).
    pub fn is_row_level(self) -> bool {
        matches!(
            self,
            DirtKind::BadDate
                | DirtKind::UnknownCode
                | DirtKind::DuplicateRow
                | DirtKind::ExtraField
                | DirtKind::FhirInvalidCode
                | DirtKind::IdentifierInText
        )
    }
}

/// How many faults of each kind were injected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DirtCounts {
    /// Rows with an unparseable date.
    pub bad_date: u64,
    /// Rows with an unknown lab or drug code.
    pub unknown_code: u64,
    /// Extra copies of duplicated rows.
    pub duplicate_row: u64,
    /// Rows with a field too many.
    pub extra_field: u64,
    /// Files starting with a byte order mark (0 or 1).
    pub bom: u64,
    /// Files in ISO-8859-1 declared UTF-8 (0 or 1).
    pub latin1_declared_utf8: u64,
    /// Empty files (0 or 1).
    pub empty_file: u64,
    /// FHIR resources with an invalid code.
    pub fhir_invalid_code: u64,
    /// Truncated DICOM files (0 or 1).
    pub dicom_truncated: u64,
    /// Files in the DICOM tree that are not DICOM (0 or 1).
    pub not_dicom: u64,
    /// CSV files with month-first dates (0 or 1).
    pub us_dates: u64,
    /// Code cells holding the patient's national number.
    pub identifier_in_text: u64,
}

impl DirtCounts {
    /// Count of one kind.
    pub fn get(&self, kind: DirtKind) -> u64 {
        match kind {
            DirtKind::BadDate => self.bad_date,
            DirtKind::UnknownCode => self.unknown_code,
            DirtKind::DuplicateRow => self.duplicate_row,
            DirtKind::ExtraField => self.extra_field,
            DirtKind::Bom => self.bom,
            DirtKind::Latin1DeclaredUtf8 => self.latin1_declared_utf8,
            DirtKind::EmptyFile => self.empty_file,
            DirtKind::FhirInvalidCode => self.fhir_invalid_code,
            DirtKind::DicomTruncated => self.dicom_truncated,
            DirtKind::NotDicom => self.not_dicom,
            DirtKind::UsDates => self.us_dates,
            DirtKind::IdentifierInText => self.identifier_in_text,
        }
    }

    pub(crate) fn add(&mut self, kind: DirtKind, n: u64) {
        let slot = match kind {
            DirtKind::BadDate => &mut self.bad_date,
            DirtKind::UnknownCode => &mut self.unknown_code,
            DirtKind::DuplicateRow => &mut self.duplicate_row,
            DirtKind::ExtraField => &mut self.extra_field,
            DirtKind::Bom => &mut self.bom,
            DirtKind::Latin1DeclaredUtf8 => &mut self.latin1_declared_utf8,
            DirtKind::EmptyFile => &mut self.empty_file,
            DirtKind::FhirInvalidCode => &mut self.fhir_invalid_code,
            DirtKind::DicomTruncated => &mut self.dicom_truncated,
            DirtKind::NotDicom => &mut self.not_dicom,
            DirtKind::UsDates => &mut self.us_dates,
            DirtKind::IdentifierInText => &mut self.identifier_in_text,
        };
        *slot += n;
    }

    pub(crate) fn merge(&mut self, other: &DirtCounts) {
        for kind in DirtKind::ALL {
            self.add(kind, other.get(kind));
        }
    }

    /// Dirty rows (row-level kinds only).
    pub fn dirty_rows(&self) -> u64 {
        DirtKind::ALL
            .iter()
            .filter(|k| k.is_row_level())
            .map(|k| self.get(*k))
            .sum()
    }
}

/// One injected row-level fault, recorded in the truth file of its patient.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DirtEvent {
    /// File relative to the output directory.
    pub file: &'static str,
    /// 1-based data row (CSV: header excluded) or line (ndjson).
    pub row: u64,
    pub kind: DirtKind,
    /// The column or element that was spoiled, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<&'static str>,
}

/// The dirt state while one patient is written.
pub(crate) struct PatientDirt {
    pub rng: Rng,
    pub rate: f64,
    pub events: Vec<DirtEvent>,
    /// The patient's national number as the HIS writes it (pasted into a code cell by the
    /// `identifier_in_text` dirt).
    pub niss: String,
}

impl PatientDirt {
    pub(crate) fn new(rng: Rng, rate: f64, niss: String) -> PatientDirt {
        PatientDirt {
            rng,
            rate,
            events: Vec::new(),
            niss,
        }
    }

    /// With probability `rate`, one of `kinds` (uniformly); else none.
    pub(crate) fn roll(&mut self, kinds: &[DirtKind]) -> Option<DirtKind> {
        if self.rate <= 0.0 || !self.rng.chance(self.rate) {
            return None;
        }
        Some(*self.rng.pick(kinds))
    }
}
