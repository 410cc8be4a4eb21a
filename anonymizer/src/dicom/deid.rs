//! The de-identification of one object: checks that send it to quarantine, the walk that applies
//! the profile to every element at every depth, and the marks written into the result.

use std::io::Write;

use chrono::NaiveDate;
use dicom_core::header::Header as _;
use dicom_core::value::{Value, C};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_encoding::text::{SpecificCharacterSet, TextCodec};
use dicom_object::{FileMetaTable, InMemDicomObject};
use serde::{Deserialize, Serialize};

use super::parse::{self, latin1, sequence_element, Elem, Encoding, ParseError, Parsed, PixelTail};
use super::profile::{
    allowed, lookup, Action, CompiledProfile, DicomProfile, Entry, MethodCode, OptAction,
    ProfileError, ProfileOption, BASIC_PROFILE, CLEAN_DESCRIPTORS, RETAIN_DEVICE_IDENTITY,
    RETAIN_FULL_DATES, RETAIN_MODIFIED_DATES, RETAIN_PATIENT_CHARACTERISTICS, RETAIN_SAFE_PRIVATE,
};
use super::profile_table::STANDARD_REVISION;
use super::tg263;
use super::write::{file_meta, write_part10, WriteError};
use crate::dateshift::{checked_shift_date, DatePolicy};
use crate::pseudonym::{IdentifierType, Pseudonym, Pseudonymiser};

const SPECIFIC_CHARACTER_SET: Tag = Tag(0x0008, 0x0005);
const SOP_CLASS_UID: Tag = Tag(0x0008, 0x0016);
const SOP_INSTANCE_UID: Tag = Tag(0x0008, 0x0018);
const MODALITY: Tag = Tag(0x0008, 0x0060);
const ACCESSION_NUMBER: Tag = Tag(0x0008, 0x0050);
const PATIENT_NAME: Tag = Tag(0x0010, 0x0010);
const PATIENT_ID: Tag = Tag(0x0010, 0x0020);
const STUDY_INSTANCE_UID: Tag = Tag(0x0020, 0x000D);
const SERIES_INSTANCE_UID: Tag = Tag(0x0020, 0x000E);
const PATIENT_IDENTITY_REMOVED: Tag = Tag(0x0012, 0x0062);
const DEIDENTIFICATION_METHOD: Tag = Tag(0x0012, 0x0063);
const DEIDENTIFICATION_METHOD_CODES: Tag = Tag(0x0012, 0x0064);
const BURNED_IN_ANNOTATION: Tag = Tag(0x0028, 0x0301);
const LONGITUDINAL_MODIFIED: Tag = Tag(0x0028, 0x0303);
const TEXT_VALUE: Tag = Tag(0x0040, 0xA160);
/// ROI Interpreter (RT ROI Observations): the observer who delineated a structure. The Basic
/// Profile empties it; registrar replaces it with a keyed observer pseudonym instead, so the
/// same observer is the same pseudonym in every file (inter-observer studies need that) and
/// the name never leaves.
const ROI_INTERPRETER: Tag = Tag(0x3006, 0x00A6);
const TRAILING_PADDING: Tag = Tag(0xFFFC, 0xFFFC);
const STRUCTURE_SET_DATE: Tag = Tag(0x3006, 0x0008);
const RT_STRUCTURE_SET_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.481.3";

/// Where the guideline era of an RT Structure Set is written: a private block of group
/// `0x0013` whose creator is [`GUIDELINE_ERA_CREATOR`], element `0x01` of the block (CS,
/// `BEFORE` or `AFTER`). It is decided on the true Structure Set Date, before any date is
/// shifted, against [`DicomProfile::guideline_era_start`](super::DicomProfile), and reveals
/// only which side of that day the contours were drawn on. `registrar dicom index` reads it
/// ([`guideline_era`]).
pub const GUIDELINE_ERA: (u16, u8) = (0x0013, 0x01);
/// The private creator of the guideline-era block.
pub const GUIDELINE_ERA_CREATOR: &str = "REGISTRAR ERA";

/// The guideline era an object carries ([`GUIDELINE_ERA`]): `Some(true)` before the era start,
/// `Some(false)` on or after it, `None` when the object has none.
pub fn guideline_era(obj: &InMemDicomObject) -> Option<bool> {
    let (group, offset) = GUIDELINE_ERA;
    let slot = (0x10u16..=0xFF).find(|&e| {
        obj.get(Tag(group, e))
            .and_then(raw)
            .is_some_and(|b| trim(b) == GUIDELINE_ERA_CREATOR.as_bytes())
    })?;
    let v = obj
        .get(Tag(group, (slot << 8) | u16::from(offset)))
        .and_then(raw)?;
    match trim(v) {
        b"BEFORE" => Some(true),
        b"AFTER" => Some(false),
        _ => None,
    }
}
const TIMEZONE_OFFSET: Tag = Tag(0x0008, 0x0201);

/// Whether an element holds dates (DA) or date-times (DT): by its tag in the dictionary,
/// whatever VR the file claims (a date written as LO or UN is still a date), or by the VR for
/// tags the dictionary does not know.
fn date_vr(e: &Elem) -> Option<VR> {
    let vr = match parse::dictionary_vr(e.tag()) {
        Some(VR::DA) => VR::DA,
        Some(VR::DT) => VR::DT,
        Some(_) if e.tag().0.is_multiple_of(2) => return None,
        _ => e.vr(),
    };
    matches!(vr, VR::DA | VR::DT).then_some(vr)
}
const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);
const CODE_VALUE: Tag = Tag(0x0008, 0x0100);
const CODING_SCHEME_DESIGNATOR: Tag = Tag(0x0008, 0x0102);
const CODE_MEANING: Tag = Tag(0x0008, 0x0104);

/// Attributes whose values name a class, syntax or definition, never an instance: their UIDs
/// are kept (a private SOP class UID identifies a vendor, not a person).
const CLASS_UID_TAGS: [Tag; 16] = [
    Tag(0x0002, 0x0002), // Media Storage SOP Class UID
    Tag(0x0002, 0x0010), // Transfer Syntax UID
    Tag(0x0002, 0x0012), // Implementation Class UID
    Tag(0x0004, 0x1510), // Referenced SOP Class UID in File
    Tag(0x0004, 0x1512), // Referenced Transfer Syntax UID in File
    Tag(0x0004, 0x151A), // Referenced Related General SOP Class UID in File
    Tag(0x0008, 0x0016), // SOP Class UID
    Tag(0x0008, 0x001A), // Related General SOP Class UID
    Tag(0x0008, 0x001B), // Original Specialized SOP Class UID
    Tag(0x0008, 0x0062), // SOP Classes in Study
    Tag(0x0008, 0x010C), // Coding Scheme UID
    Tag(0x0008, 0x010D), // Context Group Extension Creator UID
    Tag(0x0008, 0x0117), // Context UID
    Tag(0x0008, 0x0118), // Mapping Resource UID
    Tag(0x0008, 0x1150), // Referenced SOP Class UID
    Tag(0x0400, 0x0010), // MAC Calculation Transfer Syntax UID
];

/// The root of every UID defined by the DICOM standard (kept as is).
pub const WELL_KNOWN_UID_ROOT: &str = "1.2.840.10008.";

/// Dummy text for `D` on text VRs (fits SH, AE and CS).
pub const DUMMY_TEXT: &str = "ANONYMIZED";

/// Ultrasound and Secondary Capture storage classes: burned-in text is common there, so these
/// objects must say Burned In Annotation `NO` to be accepted.
const BURNED_IN_SUSPECT_CLASSES: [&str; 8] = [
    "1.2.840.10008.5.1.4.1.1.6.1", // US Image
    "1.2.840.10008.5.1.4.1.1.3.1", // US Multi-frame Image
    "1.2.840.10008.5.1.4.1.1.6.2", // Enhanced US Volume
    "1.2.840.10008.5.1.4.1.1.7",   // Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.1", // Multi-frame Single Bit SC
    "1.2.840.10008.5.1.4.1.1.7.2", // Multi-frame Grayscale Byte SC
    "1.2.840.10008.5.1.4.1.1.7.3", // Multi-frame Grayscale Word SC
    "1.2.840.10008.5.1.4.1.1.7.4", // Multi-frame True Color SC
];
const DICOMDIR_CLASS: &str = "1.2.840.10008.1.3.10";

/// What was done to one object, counted per rule. Every count is of data elements, except
/// `uids_remapped` and `dates_shifted`, which count values (a multi-valued element counts
/// each value).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleCounts {
    /// Removed (`X`), including whole overlay and curve groups.
    pub removed: u64,
    /// Replaced by a zero-length value (`Z`, and dates that do not parse).
    pub zeroed: u64,
    /// Replaced by a dummy (`D`), the person pseudonym or a keyed hash.
    pub replaced: u64,
    /// UID values replaced by pseudonymous `2.25.` UIDs.
    pub uids_remapped: u64,
    /// Date and date-time values shifted.
    pub dates_shifted: u64,
    /// Private elements removed.
    pub private_removed: u64,
    /// Private elements kept (Retain Safe Private).
    pub private_kept: u64,
    /// Structured labels kept under Clean Descriptors.
    pub labels_kept: u64,
    /// Structure names that held the patient's name, kept as their TG-263 name without it.
    #[serde(default)]
    pub labels_scrubbed: u64,
    /// Removed because neither table E.1-1 nor the allow-list lists them: retired
    /// attributes, attributes of modules not known to be safe (orders, visits, scheduled
    /// procedure steps, documents).
    #[serde(default)]
    pub not_allowed: u64,
    /// Removed because the dictionary does not define the public tag at all (a mutated or
    /// invented header).
    #[serde(default)]
    pub undefined_removed: u64,
    /// Time zone offsets replaced by `+0000` (Retain Longitudinal Temporal Information with
    /// Modified Dates: the offset says where, not when).
    #[serde(default)]
    pub timezones_cleaned: u64,
}

impl RuleCounts {
    /// Adds another object's counts.
    pub fn add(&mut self, o: &RuleCounts) {
        self.removed += o.removed;
        self.zeroed += o.zeroed;
        self.replaced += o.replaced;
        self.uids_remapped += o.uids_remapped;
        self.dates_shifted += o.dates_shifted;
        self.private_removed += o.private_removed;
        self.private_kept += o.private_kept;
        self.labels_kept += o.labels_kept;
        self.labels_scrubbed += o.labels_scrubbed;
        self.not_allowed += o.not_allowed;
        self.undefined_removed += o.undefined_removed;
        self.timezones_cleaned += o.timezones_cleaned;
    }
}

/// Why an object went to quarantine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuarantineReason {
    /// Not a DICOM file.
    NotDicom,
    /// The file ends early.
    Truncated,
    /// The file's structure is inconsistent.
    Malformed,
    /// A transfer syntax this program cannot read.
    UnsupportedTransferSyntax,
    /// Burned In Annotation is `YES`.
    BurnedInAnnotation,
    /// An ultrasound or secondary capture object that does not say Burned In Annotation `NO`.
    BurnedInAnnotationUnknown,
    /// An overlay stored in the pixel data's unused bits (cannot be removed without decoding).
    OverlayInPixelData,
    /// No Patient ID: the object cannot be linked to a person.
    NoPatientId,
    /// The Patient ID is not a valid MRN (e.g. longer than 64 characters).
    InvalidPatientId,
    /// SOP Class, SOP Instance, Study Instance or Series Instance UID is missing.
    MissingUid,
    /// A DICOMDIR (media directory): it is regenerated from the pseudonymised files instead.
    Dicomdir,
    /// The file could not be read.
    ReadError,
    /// dicom-rs could not encode the result.
    EncodeError,
    /// Sequences nested beyond the profile's `max-depth`.
    TooDeep,
    /// Beyond the profile's `max-elements` or `max-file-bytes`, or a deflated data set that
    /// inflates beyond its bound.
    TooLarge,
    /// The program failed on this file (a defect, reported as such): the file is kept aside
    /// and the run goes on.
    InternalError,
}

impl QuarantineReason {
    /// The stable reason code (`"burned_in_annotation"`, ...).
    pub fn code(self) -> &'static str {
        match self {
            QuarantineReason::NotDicom => "not_dicom",
            QuarantineReason::Truncated => "truncated",
            QuarantineReason::Malformed => "malformed",
            QuarantineReason::UnsupportedTransferSyntax => "unsupported_transfer_syntax",
            QuarantineReason::BurnedInAnnotation => "burned_in_annotation",
            QuarantineReason::BurnedInAnnotationUnknown => "burned_in_annotation_unknown",
            QuarantineReason::OverlayInPixelData => "overlay_in_pixel_data",
            QuarantineReason::NoPatientId => "no_patient_id",
            QuarantineReason::InvalidPatientId => "invalid_patient_id",
            QuarantineReason::MissingUid => "missing_uid",
            QuarantineReason::Dicomdir => "dicomdir",
            QuarantineReason::ReadError => "read_error",
            QuarantineReason::EncodeError => "encode_error",
            QuarantineReason::TooDeep => "too_deep",
            QuarantineReason::TooLarge => "too_large",
            QuarantineReason::InternalError => "internal_error",
        }
    }

    /// Whether the reason is a fact of the file's content (final until the file changes),
    /// or of the moment it was read (`read_error`: permissions, a file still being copied),
    /// so that an incremental run tries the file again.
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            QuarantineReason::ReadError | QuarantineReason::InternalError
        )
    }
}

/// A quarantined object: the reason and a detail that names tags and offsets, never values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quarantine {
    /// The reason.
    pub reason: QuarantineReason,
    /// Detail for the operator.
    pub detail: String,
}

fn quarantine(reason: QuarantineReason, detail: impl Into<String>) -> Quarantine {
    Quarantine {
        reason,
        detail: detail.into(),
    }
}

impl From<ParseError> for Quarantine {
    fn from(e: ParseError) -> Self {
        let reason = match e {
            ParseError::NotDicom(_) => QuarantineReason::NotDicom,
            ParseError::Truncated(_) => QuarantineReason::Truncated,
            ParseError::Malformed(_) => QuarantineReason::Malformed,
            ParseError::UnsupportedTransferSyntax(_) => QuarantineReason::UnsupportedTransferSyntax,
            ParseError::TooDeep(_) => QuarantineReason::TooDeep,
            ParseError::TooLarge(_) => QuarantineReason::TooLarge,
        };
        quarantine(reason, e.to_string())
    }
}

/// Why an object was left alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// It carries registrar's marks already (Patient Identity Removed `YES` and a
    /// De-identification Method starting with `registrar`).
    AlreadyPseudonymised,
    /// Another input file in the same run has the same SOP Instance UID.
    DuplicateSopInstance,
}

impl SkipReason {
    /// The stable reason code.
    pub fn code(self) -> &'static str {
        match self {
            SkipReason::AlreadyPseudonymised => "already_pseudonymised",
            SkipReason::DuplicateSopInstance => "duplicate_sop_instance",
        }
    }
}

/// A pseudonymised object, ready to be written.
#[derive(Debug)]
pub struct Prepared {
    /// `<study uid>/<series uid>/<sop instance uid>.dcm`, all pseudonymous.
    pub relative_path: String,
    /// The pseudonymous SOP Instance UID.
    pub sop_instance_uid: String,
    /// What was done.
    pub counts: RuleCounts,
    meta: FileMetaTable,
    dataset: InMemDicomObject,
    encoding: Encoding,
    deflated: bool,
    pixel_tail: Option<PixelTail>,
}

impl Prepared {
    /// The pseudonymised data set (for inspection; written by [`Prepared::write_to`]).
    pub fn dataset(&self) -> &InMemDicomObject {
        &self.dataset
    }

    /// The transfer syntax UID the object is written in (the one it came in).
    pub fn transfer_syntax(&self) -> &str {
        &self.meta.transfer_syntax
    }

    /// Writes the object as a Part 10 file. For an object read with
    /// [`DicomPseudonymiser::pseudonymise_head`], whose pixel data is still in the input file,
    /// use [`Prepared::write_file`].
    pub fn write_to<W: Write>(self, to: W) -> Result<(), WriteError> {
        if self.pixel_tail.is_some() {
            return Err(WriteError::Encode(
                "the pixel data is still in the input file: write with write_file".into(),
            ));
        }
        write_part10(
            to,
            &self.meta,
            self.dataset,
            self.encoding,
            self.deflated,
            &[],
        )
    }

    /// Writes the object as a Part 10 file to `to`, taking pixel data left in the input file
    /// from `source` (the input file, open): copied by the kernel (`copy_file_range` where the
    /// file systems allow it), so it never passes through this process.
    pub fn write_file(
        mut self,
        to: &mut std::fs::File,
        source: &std::fs::File,
    ) -> Result<(), WriteError> {
        let Some(tail) = self.pixel_tail.take() else {
            return self.write_to(to);
        };
        if self.dataset.tags().any(|t| t >= PIXEL_DATA) {
            // Something now sorts after the pixel data: write it in place, from memory.
            use std::os::unix::fs::FileExt;
            let mut bytes = vec![0u8; tail.len as usize];
            source.read_exact_at(&mut bytes, tail.offset).map_err(|e| {
                WriteError::Encode(format!("cannot read the pixel data again: {e}"))
            })?;
            self.dataset.put(DataElement::new(
                PIXEL_DATA,
                tail.vr,
                PrimitiveValue::U8(C::from_vec(bytes)),
            ));
            return self.write_to(to);
        }
        let mut header = Vec::with_capacity(12);
        super::encode::element_header(&mut header, PIXEL_DATA, tail.vr, tail.len, self.encoding)
            .map_err(|_| WriteError::Encode("unencodable pixel data header".into()))?;
        write_part10(
            &mut *to,
            &self.meta,
            self.dataset,
            self.encoding,
            false,
            &header,
        )?;
        let mut from = source;
        std::io::Seek::seek(&mut from, std::io::SeekFrom::Start(tail.offset))?;
        let copied = std::io::copy(&mut std::io::Read::take(from, u64::from(tail.len)), to)?;
        if copied != u64::from(tail.len) {
            return Err(WriteError::Encode(
                "the input file became shorter while it was read".into(),
            ));
        }
        Ok(())
    }

    /// The object as the bytes of a Part 10 file.
    pub fn to_bytes(self) -> Result<Vec<u8>, WriteError> {
        let mut v = Vec::new();
        self.write_to(&mut v)?;
        Ok(v)
    }
}

/// The result of pseudonymising one file.
#[derive(Debug)]
pub enum Outcome {
    /// Pseudonymised.
    Pseudonymised(Box<Prepared>),
    /// Left alone.
    Skipped(SkipReason),
    /// Sent to quarantine.
    Quarantined(Quarantine),
}

/// How dates are treated in one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DateMode {
    Shift(i32),
    Keep,
    Remove,
}

/// The action chosen for one element once the options are applied.
#[derive(Clone, Copy, Debug)]
enum Eff {
    Basic(Action),
    Keep,
    ShiftDates,
    DeviceHash,
    Descriptor(Action),
}

/// Pseudonymises DICOM objects with one key, date policy and profile. `Send + Sync`: one
/// instance serves every worker thread.
#[derive(Debug)]
pub struct DicomPseudonymiser {
    p: Pseudonymiser,
    policy: DatePolicy,
    profile: CompiledProfile,
}

/// Trims padding (spaces, NULs) at both ends.
fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|&c| c != b' ' && c != 0)
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|&c| c != b' ' && c != 0)
        .map_or(start, |i| i + 1);
    &b[start..end]
}

fn raw(e: &Elem) -> Option<&[u8]> {
    match e.value() {
        Value::Primitive(PrimitiveValue::U8(b)) => Some(&b[..]),
        Value::Primitive(PrimitiveValue::Empty) => Some(&[]),
        _ => None,
    }
}

fn first_text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let b = raw(obj.get(tag)?)?;
    let first = b.split(|&c| c == b'\\').next().unwrap_or(&[]);
    Some(latin1(trim(first))).filter(|s| !s.is_empty())
}

/// A text value padded to even length with a space.
fn text_value(s: &str) -> PrimitiveValue {
    let mut b = s.as_bytes().to_vec();
    if b.len() % 2 == 1 {
        b.push(b' ');
    }
    PrimitiveValue::U8(C::from_vec(b))
}

/// A UID value padded to even length with a NUL.
fn uid_value(b: Vec<u8>) -> PrimitiveValue {
    let mut b = b;
    if b.len() % 2 == 1 {
        b.push(0);
    }
    PrimitiveValue::U8(C::from_vec(b))
}

fn text_elem(tag: Tag, vr: VR, s: &str) -> Elem {
    DataElement::new(tag, vr, text_value(s))
}

fn max_len(vr: VR) -> usize {
    match vr {
        VR::AE | VR::CS | VR::SH => 16,
        VR::LO | VR::PN => 64,
        _ => 1024,
    }
}

fn dummy_value(vr: VR) -> PrimitiveValue {
    match vr {
        VR::AE | VR::CS | VR::LO | VR::LT | VR::SH | VR::ST | VR::UT | VR::UC | VR::PN => {
            text_value(DUMMY_TEXT)
        }
        VR::AS => text_value("000Y"),
        VR::DA => text_value("19000101"),
        VR::DT => text_value("19000101000000"),
        VR::TM => text_value("000000"),
        VR::DS | VR::IS => PrimitiveValue::Strs(C::from_vec(vec!["0".to_string()])),
        VR::US | VR::SS => PrimitiveValue::U8(C::from_vec(vec![0; 2])),
        VR::UL | VR::SL | VR::FL | VR::AT => PrimitiveValue::U8(C::from_vec(vec![0; 4])),
        VR::FD | VR::SV | VR::UV => PrimitiveValue::U8(C::from_vec(vec![0; 8])),
        _ => PrimitiveValue::Empty,
    }
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// Shifts one DA value (`YYYYMMDD`, or the old `YYYY.MM.DD`); `None` if it is not a date.
fn shift_da(v: &[u8], days: i32) -> Option<String> {
    let v = trim(v);
    let (y, m, d) = match v.len() {
        8 => (&v[0..4], &v[4..6], &v[6..8]),
        10 if v[4] == b'.' && v[7] == b'.' => (&v[0..4], &v[5..7], &v[8..10]),
        _ => return None,
    };
    let date = NaiveDate::from_ymd_opt(digits(y)? as i32, digits(m)?, digits(d)?)?;
    Some(checked_shift_date(date, days)?.format("%Y%m%d").to_string())
}

/// Shifts one DA value or range (`A-B`, either side may be empty).
fn shift_da_or_range(v: &[u8], days: i32) -> Option<String> {
    let v = trim(v);
    if v.is_empty() {
        return Some(String::new());
    }
    match v.iter().position(|&c| c == b'-') {
        Some(i) => {
            let a = &v[..i];
            let b = &v[i + 1..];
            let sa = if a.is_empty() {
                String::new()
            } else {
                shift_da(a, days)?
            };
            let sb = if b.is_empty() {
                String::new()
            } else {
                shift_da(b, days)?
            };
            Some(format!("{sa}-{sb}"))
        }
        None => shift_da(v, days),
    }
}

/// Shifts one DT value `YYYY[MM[DD[HH[MM[SS[.F]]]]]][&ZZXX]`: the date part moves by `days`
/// (a partial date is completed with 01, shifted, and cut back to its precision); the time,
/// fraction and UTC offset are kept.
fn shift_dt(v: &[u8], days: i32) -> Option<String> {
    let v = trim(v);
    let n = v.iter().take_while(|c| c.is_ascii_digit()).count();
    if n < 4 {
        return None;
    }
    let year = digits(&v[0..4])? as i32;
    let month = if n >= 6 { digits(&v[4..6])? } else { 1 };
    let day = if n >= 8 { digits(&v[6..8])? } else { 1 };
    let date = NaiveDate::from_ymd_opt(year, month, day)?;
    let shifted = checked_shift_date(date, days)?.format("%Y%m%d").to_string();
    let (keep, rest) = match n {
        4 | 5 => (4, &v[4..]),
        6 | 7 => (6, &v[6..]),
        _ => (8, &v[8..]),
    };
    let rest = std::str::from_utf8(rest).ok()?;
    Some(format!("{}{rest}", &shifted[..keep]))
}

/// `^[0-9]+(\.[0-9]+)*$`, at most 64 characters.
fn is_uid_syntax(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.split('.')
            .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether a label contains something that looks like a date: a run of 6 or more digits, or
/// digits separated by `.`, `/` or `-` three times (`1.2.2020`).
fn looks_like_date_or_number(b: &[u8]) -> bool {
    let mut run = 0;
    for &c in b {
        if c.is_ascii_digit() {
            run += 1;
            if run >= 6 {
                return true;
            }
        } else {
            run = 0;
        }
    }
    let mut groups = 0;
    let mut i = 0;
    while i < b.len() {
        let s = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i > s {
            groups += 1;
            if groups == 3 {
                return true;
            }
            if i < b.len() && matches!(b[i], b'.' | b'/' | b'-') {
                i += 1;
                continue;
            }
        }
        groups = 0;
        i = i.max(s + 1);
    }
    false
}

/// Month names and abbreviations (English, Dutch, French, German) that, next to a number, make
/// a date (`sep30`, `12 mrt`, `Jan-2020`).
const MONTHS: [&str; 20] = [
    "jan", "feb", "fev", "mar", "mrt", "apr", "avr", "may", "mai", "mei", "jun", "jui", "jul",
    "aug", "aou", "sep", "oct", "okt", "nov", "dec",
];

fn has_month_next_to_number(b: &[u8]) -> bool {
    let lower = b.to_ascii_lowercase();
    let digit_near = |i: usize, forward: bool| -> bool {
        let mut j = i;
        for _ in 0..3 {
            let c = if forward {
                lower.get(j)
            } else {
                j.checked_sub(1).and_then(|k| lower.get(k))
            };
            match c {
                Some(c) if c.is_ascii_digit() => return true,
                Some(c) if c.is_ascii_alphabetic() && forward => j += 1,
                Some(b' ' | b'-' | b'.' | b'/' | b'_') => {
                    if forward {
                        j += 1
                    } else {
                        j -= 1
                    }
                }
                _ => return false,
            }
        }
        false
    };
    MONTHS.iter().any(|m| {
        lower
            .windows(3)
            .enumerate()
            .any(|(i, w)| w == m.as_bytes() && (digit_near(i + 3, true) || digit_near(i, false)))
    })
}

fn decode_text(obj: &InMemDicomObject, b: &[u8]) -> String {
    let charset = first_text(obj, SPECIFIC_CHARACTER_SET)
        .and_then(|c| SpecificCharacterSet::from_code(&c))
        .unwrap_or_default();
    charset.decode(b).unwrap_or_else(|_| latin1(b))
}

/// Writes the guideline era ([`GUIDELINE_ERA`]) into the first free creator slot of the group
/// (a kept private block of another creator is not touched).
fn mark_era(out: &mut InMemDicomObject, before: bool) {
    let (group, offset) = GUIDELINE_ERA;
    let Some(slot) = (0x10u16..=0xFF).find(|&e| {
        out.get(Tag(group, e))
            .and_then(raw)
            .is_none_or(|b| trim(b) == GUIDELINE_ERA_CREATOR.as_bytes())
    }) else {
        return;
    };
    out.put(text_elem(Tag(group, slot), VR::LO, GUIDELINE_ERA_CREATOR));
    out.put(text_elem(
        Tag(group, (slot << 8) | u16::from(offset)),
        VR::CS,
        if before { "BEFORE" } else { "AFTER" },
    ));
}

impl DicomPseudonymiser {
    /// A pseudonymiser for the given key (domain pseudonymiser), date policy and profile.
    pub fn new(
        p: Pseudonymiser,
        policy: DatePolicy,
        profile: &DicomProfile,
    ) -> Result<Self, ProfileError> {
        Ok(DicomPseudonymiser {
            p,
            policy,
            profile: profile.compile()?,
        })
    }

    /// The key's pseudonymiser.
    pub fn pseudonymiser(&self) -> &Pseudonymiser {
        &self.p
    }

    /// The profile.
    pub fn profile(&self) -> &DicomProfile {
        &self.profile.profile
    }

    /// The date policy.
    pub fn date_policy(&self) -> &DatePolicy {
        &self.policy
    }

    fn date_mode_kind(&self) -> DateMode {
        if !self.profile.profile.retain_longitudinal_dates {
            DateMode::Remove
        } else {
            match self.policy {
                DatePolicy::KeepTrueDates => DateMode::Keep,
                DatePolicy::Shift(_) => DateMode::Shift(0),
            }
        }
    }

    /// The CID 7050 codes recorded in every output (De-identification Method Code Sequence):
    /// the Basic Profile and each option in force.
    pub fn method_codes(&self) -> Vec<MethodCode> {
        let pr = &self.profile.profile;
        let mut v = vec![BASIC_PROFILE];
        match self.date_mode_kind() {
            DateMode::Shift(_) => v.push(RETAIN_MODIFIED_DATES),
            DateMode::Keep => v.push(RETAIN_FULL_DATES),
            DateMode::Remove => {}
        }
        if pr.retain_patient_characteristics {
            v.push(RETAIN_PATIENT_CHARACTERISTICS);
        }
        if pr.retain_device_identity {
            v.push(RETAIN_DEVICE_IDENTITY);
        }
        if pr.clean_descriptors {
            v.push(CLEAN_DESCRIPTORS);
        }
        if pr.retain_safe_private {
            v.push(RETAIN_SAFE_PRIVATE);
        }
        v
    }

    /// The De-identification Method values written (LO, at most 64 characters each); the first
    /// starts with `registrar`, which marks files this program wrote.
    pub fn method_text(&self) -> Vec<String> {
        let mut v = vec![
            format!(
                "registrar {} PS3.15 Annex E {} Basic Profile",
                env!("CARGO_PKG_VERSION"),
                STANDARD_REVISION
            ),
            format!("key {} domain {}", self.p.key_id(), self.p.domain()),
        ];
        for s in &mut v {
            s.truncate(64);
        }
        v
    }

    /// Reads and pseudonymises one file's bytes.
    pub fn pseudonymise(&self, data: &[u8]) -> Outcome {
        match parse::parse_within(data, self.profile.profile.limits) {
            Ok(parsed) => self.pseudonymise_parsed(parsed),
            Err(e) => Outcome::Quarantined(e.into()),
        }
    }

    /// Reads and pseudonymises a file from its first bytes (`head`) when its native pixel data
    /// runs to the end (see [`parse::parse_head`]); the result is written with
    /// [`Prepared::write_file`]. `None`: read the whole file and use
    /// [`DicomPseudonymiser::pseudonymise`].
    pub fn pseudonymise_head(&self, head: &[u8], total: u64) -> Option<Outcome> {
        parse::parse_head_within(head, total, self.profile.profile.limits)
            .map(|p| self.pseudonymise_parsed(p))
    }

    /// Pseudonymises a parsed file.
    pub fn pseudonymise_parsed(&self, parsed: Parsed) -> Outcome {
        match self.run(parsed) {
            Ok(o) => o,
            Err(q) => Outcome::Quarantined(q),
        }
    }

    fn run(&self, parsed: Parsed) -> Result<Outcome, Quarantine> {
        let ds = &parsed.dataset;
        let sop_class = first_text(ds, SOP_CLASS_UID).or(parsed.meta_sop_class.clone());
        if sop_class.as_deref() == Some(DICOMDIR_CLASS)
            || parsed.meta_sop_class.as_deref() == Some(DICOMDIR_CLASS)
        {
            return Err(quarantine(
                QuarantineReason::Dicomdir,
                "DICOMDIR media directories are not pseudonymised",
            ));
        }
        if first_text(ds, PATIENT_IDENTITY_REMOVED).as_deref() == Some("YES")
            && first_text(ds, DEIDENTIFICATION_METHOD).is_some_and(|m| m.starts_with("registrar"))
        {
            return Ok(Outcome::Skipped(SkipReason::AlreadyPseudonymised));
        }
        let Some(sop_class) = sop_class else {
            return Err(quarantine(QuarantineReason::MissingUid, "no SOP Class UID"));
        };
        for (tag, name) in [
            (SOP_INSTANCE_UID, "SOP Instance UID"),
            (STUDY_INSTANCE_UID, "Study Instance UID"),
            (SERIES_INSTANCE_UID, "Series Instance UID"),
        ] {
            if first_text(ds, tag).is_none() {
                return Err(quarantine(
                    QuarantineReason::MissingUid,
                    format!("no {name}"),
                ));
            }
        }
        self.check_pixels(ds, &sop_class)?;

        let patient_id = ds
            .get(PATIENT_ID)
            .and_then(raw)
            .map(|b| decode_text(ds, b))
            .filter(|s| !s.trim_matches(|c: char| c == ' ' || c == '\0').is_empty())
            .ok_or_else(|| quarantine(QuarantineReason::NoPatientId, "no Patient ID"))?;
        let person = self
            .p
            .person(IdentifierType::Mrn, patient_id.trim_matches('\0'))
            .map_err(|e| {
                quarantine(
                    QuarantineReason::InvalidPatientId,
                    format!("Patient ID: {e}"),
                )
            })?;
        let dates = match self.date_mode_kind() {
            DateMode::Shift(_) => DateMode::Shift(self.p.date_shift_days(&self.policy, &person)),
            m => m,
        };

        let charset = first_text(ds, SPECIFIC_CHARACTER_SET)
            .and_then(|c| SpecificCharacterSet::from_code(&c))
            .unwrap_or_default();
        let mut tokens = Vec::new();
        for tag in [
            PATIENT_NAME,
            PATIENT_ID,
            Tag(0x0010, 0x1000),
            Tag(0x0010, 0x1001),
            Tag(0x0010, 0x1005),
            Tag(0x0010, 0x1060),
            Tag(0x0008, 0x0090),
            Tag(0x0008, 0x1050),
            Tag(0x0008, 0x1070),
            ACCESSION_NUMBER,
        ] {
            if let Some(b) = ds.get(tag).and_then(raw) {
                name_tokens(&decode_text(ds, b), &mut tokens);
            }
        }
        let mut keep_uids = vec![sop_class.clone(), parsed.transfer_syntax.clone()];
        keep_uids.retain(|u| !u.is_empty());

        let mut walk = Walk {
            d: self,
            dates,
            keep_uids,
            counts: RuleCounts::default(),
            tokens,
            charset,
            person: person.clone(),
        };
        let pixel_tail = parsed.pixel_tail;
        // The guideline era, from the true date (read before any date is shifted).
        let before_era = (sop_class == RT_STRUCTURE_SET_STORAGE)
            .then(|| first_text(&parsed.dataset, STRUCTURE_SET_DATE))
            .flatten()
            .and_then(|d| NaiveDate::parse_from_str(d.get(..8)?, "%Y%m%d").ok())
            .map(|d| d < self.profile.profile.guideline_era_start);
        let mut out = walk.dataset(parsed.dataset, true);
        self.mark(&mut out, dates);
        if let Some(before) = before_era {
            mark_era(&mut out, before);
        }

        // Path components are UIDs of digits and dots; anything else (a kept "well-known"
        // value that is not a UID, say) is replaced by its pseudonymous UID.
        let uid = |t| {
            let v = first_text(&out, t).unwrap_or_default();
            if is_uid_syntax(&v) {
                v
            } else {
                self.p.pseudo_uid(&v)
            }
        };
        let (study, series, sop) = (
            uid(STUDY_INSTANCE_UID),
            uid(SERIES_INSTANCE_UID),
            uid(SOP_INSTANCE_UID),
        );
        let meta = file_meta(&sop_class, &sop, &parsed.transfer_syntax);
        Ok(Outcome::Pseudonymised(Box::new(Prepared {
            relative_path: format!("{study}/{series}/{sop}.dcm"),
            sop_instance_uid: sop,
            counts: walk.counts,
            meta,
            dataset: out,
            encoding: parsed.encoding,
            deflated: parsed.deflated,
            pixel_tail,
        })))
    }

    /// Burned-in annotation and overlays hidden in the pixel data.
    fn check_pixels(&self, ds: &InMemDicomObject, sop_class: &str) -> Result<(), Quarantine> {
        if self.profile.profile.burned_in_annotation == super::profile::BurnedInPolicy::Accept {
            return Ok(());
        }
        match first_text(ds, BURNED_IN_ANNOTATION).map(|s| s.to_ascii_uppercase()) {
            Some(s) if s == "YES" => {
                return Err(quarantine(
                    QuarantineReason::BurnedInAnnotation,
                    "Burned In Annotation is YES",
                ))
            }
            Some(_) => {}
            None => {
                let us = first_text(ds, MODALITY).is_some_and(|m| m.eq_ignore_ascii_case("US"));
                if us || BURNED_IN_SUSPECT_CLASSES.contains(&sop_class) {
                    return Err(quarantine(
                        QuarantineReason::BurnedInAnnotationUnknown,
                        "ultrasound or secondary capture without Burned In Annotation NO",
                    ));
                }
            }
        }
        for g in (0x6000u16..=0x601E).step_by(2) {
            if ds.get(Tag(g, 0x0010)).is_some() && ds.get(Tag(g, 0x3000)).is_none() {
                return Err(quarantine(
                    QuarantineReason::OverlayInPixelData,
                    format!("overlay group {g:04X} has no Overlay Data: it is in the pixel data"),
                ));
            }
        }
        Ok(())
    }

    /// Patient Identity Removed, De-identification Method (text and codes) and Longitudinal
    /// Temporal Information Modified.
    fn mark(&self, out: &mut InMemDicomObject, dates: DateMode) {
        out.put(text_elem(PATIENT_IDENTITY_REMOVED, VR::CS, "YES"));
        out.put(text_elem(
            DEIDENTIFICATION_METHOD,
            VR::LO,
            &self.method_text().join("\\"),
        ));
        let items: Vec<InMemDicomObject> = self
            .method_codes()
            .into_iter()
            .map(|c| {
                InMemDicomObject::from_element_iter([
                    text_elem(CODE_VALUE, VR::SH, c.value),
                    text_elem(CODING_SCHEME_DESIGNATOR, VR::SH, "DCM"),
                    text_elem(CODE_MEANING, VR::LO, c.meaning),
                ])
            })
            .collect();
        out.put(sequence_element(DEIDENTIFICATION_METHOD_CODES, items));
        let longitudinal = match dates {
            DateMode::Shift(_) => "MODIFIED",
            DateMode::Keep => "UNMODIFIED",
            DateMode::Remove => "REMOVED",
        };
        out.put(text_elem(LONGITUDINAL_MODIFIED, VR::CS, longitudinal));
    }

    fn safe_private(&self, group: u16, creator: &[u8], offset: u8) -> bool {
        let creator = trim(creator);
        self.profile.safe_private.iter().any(|(g, c, e)| {
            *g == group && c.as_bytes() == creator && e.is_none_or(|e| e == offset)
        })
    }

    fn effective(&self, entry: &Entry, dates: DateMode) -> Eff {
        let pr = &self.profile.profile;
        let modified = entry.option(ProfileOption::RetainLongitudinalModifiedDates);
        let full = entry.option(ProfileOption::RetainLongitudinalFullDates);
        match dates {
            DateMode::Shift(_) if modified == Some(OptAction::C) => return Eff::ShiftDates,
            DateMode::Keep if full == Some(OptAction::K) => return Eff::Keep,
            _ => {}
        }
        if pr.retain_patient_characteristics
            && entry.option(ProfileOption::RetainPatientCharacteristics) == Some(OptAction::K)
        {
            // `C` there is free text (allergies, pre-medication, ...): it cannot be cleaned
            // automatically, so the Basic Profile action applies.
            return Eff::Keep;
        }
        if pr.retain_device_identity {
            match entry.option(ProfileOption::RetainDeviceIdentity) {
                Some(OptAction::K) => return Eff::Keep,
                Some(OptAction::C) => return Eff::DeviceHash,
                None => {}
            }
        }
        if pr.clean_descriptors
            && entry.option(ProfileOption::CleanDescriptors) == Some(OptAction::C)
        {
            return Eff::Descriptor(entry.resolved);
        }
        Eff::Basic(entry.resolved)
    }
}

struct Walk<'a> {
    d: &'a DicomPseudonymiser,
    dates: DateMode,
    keep_uids: Vec<String>,
    counts: RuleCounts,
    /// The folded name tokens of the object's identifying attributes ([`name_tokens`]).
    tokens: Vec<String>,
    /// The object's character set (labels are compared as text).
    charset: SpecificCharacterSet,
    person: Pseudonym,
}

impl Walk<'_> {
    fn dataset(&mut self, obj: InMemDicomObject, top: bool) -> InMemDicomObject {
        // Private creators by block (a handful per data set: a list beats a map).
        let mut creators: Vec<((u16, u8), Elem)> = Vec::new();
        let mut rest = Vec::with_capacity(obj.iter().count());
        for e in obj {
            let t = e.tag();
            if t.0 % 2 == 1 && (0x0010..=0x00FF).contains(&t.1) {
                creators.push(((t.0, t.1 as u8), e));
            } else {
                rest.push(e);
            }
        }
        let person: Option<String> = if top {
            Some(self.person.as_str().to_string())
        } else {
            rest.iter()
                .find(|e| e.tag() == PATIENT_ID)
                .and_then(raw)
                .map(|b| latin1(trim(b)))
                .and_then(|id| self.d.p.person(IdentifierType::Mrn, &id).ok())
                .map(Pseudonym::into_string)
        };
        let mut used: Vec<(u16, u8)> = Vec::new();
        let mut out = Vec::with_capacity(rest.len());
        for e in rest {
            let t = e.tag();
            if t.0 % 2 == 1 {
                let block = (t.0, (t.1 >> 8) as u8);
                let keep = t.1 >= 0x1000
                    && self.d.profile.profile.retain_safe_private
                    && creators
                        .iter()
                        .find(|(b, _)| *b == block)
                        .and_then(|(_, c)| raw(c))
                        .is_some_and(|c| self.d.safe_private(t.0, c, t.1 as u8));
                if keep {
                    if !used.contains(&block) {
                        used.push(block);
                    }
                    self.counts.private_kept += 1;
                    out.extend(self.value_based(e));
                } else {
                    self.counts.private_removed += 1;
                }
                continue;
            }
            out.extend(self.element(e, person.as_deref()));
        }
        out.extend(
            creators
                .into_iter()
                .filter(|(block, _)| used.contains(block))
                .map(|(_, e)| e),
        );
        InMemDicomObject::from_element_iter(out)
    }

    fn element(&mut self, e: Elem, person: Option<&str>) -> Option<Elem> {
        let t = e.tag();
        let vr = e.vr();
        if t.1 == 0 || t == TRAILING_PADDING || t.0 == 0x0002 {
            return None; // group lengths, padding, file meta inside a data set
        }
        match t {
            PATIENT_ID => {
                let own = raw(&e)
                    .map(|b| latin1(trim(b)))
                    .and_then(|id| self.d.p.person(IdentifierType::Mrn, &id).ok());
                return match own {
                    Some(p) => {
                        self.counts.replaced += 1;
                        Some(text_elem(t, vr, p.as_str()))
                    }
                    None => self.zero(e),
                };
            }
            PATIENT_NAME => {
                return match person {
                    Some(p) => {
                        self.counts.replaced += 1;
                        Some(text_elem(t, vr, p))
                    }
                    None => self.zero(e),
                };
            }
            PATIENT_IDENTITY_REMOVED
            | DEIDENTIFICATION_METHOD
            | DEIDENTIFICATION_METHOD_CODES
            | LONGITUDINAL_MODIFIED => return None,
            TEXT_VALUE => return self.dummy(e),
            ROI_INTERPRETER => {
                let name = raw(&e)
                    .map(|b| latin1(trim(b)).trim().to_uppercase())
                    .filter(|n| !n.is_empty());
                return match name {
                    Some(n) => {
                        self.counts.replaced += 1;
                        let h = self.d.p.keyed_hash("observer", n.as_bytes());
                        Some(text_elem(t, vr, &format!("OBS-{}", &h[..12])))
                    }
                    None => self.zero(e),
                };
            }
            _ => {}
        }
        // Overlay (60xx) and curve (50xx) groups go whole: the profile removes their data and
        // comments, and what is left would describe data that is gone.
        if t.0 & 0xFF01 == 0x6000 || t.0 & 0xFF01 == 0x5000 {
            self.counts.removed += 1;
            return None;
        }
        match lookup(t.0, t.1) {
            None if allowed(t.0, t.1).is_some() => self.value_based(e),
            None => {
                // Neither the profile nor the allow-list says the attribute is safe.
                if parse::dictionary_vr(t).is_none() {
                    self.counts.undefined_removed += 1;
                } else {
                    self.counts.not_allowed += 1;
                }
                None
            }
            Some(entry) => {
                let eff = self.d.effective(entry, self.dates);
                self.apply(eff, e)
            }
        }
    }

    fn apply(&mut self, eff: Eff, e: Elem) -> Option<Elem> {
        match eff {
            Eff::Basic(Action::X) => {
                self.counts.removed += 1;
                None
            }
            Eff::Basic(Action::Z) => self.zero(e),
            Eff::Basic(Action::D) => self.dummy(e),
            Eff::Basic(Action::K) | Eff::Keep => self.value_based(e),
            Eff::Basic(Action::U) => self.uids(e),
            Eff::Basic(Action::UStar) => {
                if e.vr() == VR::SQ {
                    self.value_based(e)
                } else {
                    self.uids(e)
                }
            }
            Eff::ShiftDates => match date_vr(&e) {
                Some(vr) => self.shift(e, vr),
                None if e.tag() == TIMEZONE_OFFSET => self.clean_timezone(e),
                // Times (TM) are kept: the shift is of whole days, and a time of day without
                // its date places nobody.
                None => self.value_based(e),
            },
            Eff::DeviceHash => self.device(e),
            Eff::Descriptor(basic) => {
                let label = u32::from(e.tag().0) << 16 | u32::from(e.tag().1);
                if !self.d.profile.labels.contains(&label) {
                    return self.apply(Eff::Basic(basic), e);
                }
                match self.label_verdict(&e) {
                    Label::Clean => {
                        self.counts.labels_kept += 1;
                        Some(e)
                    }
                    Label::Scrubbed(name) => {
                        self.counts.labels_scrubbed += 1;
                        Some(text_elem(e.tag(), e.vr(), &name))
                    }
                    Label::Identifying => self.apply(Eff::Basic(basic), e),
                }
            }
        }
    }

    fn zero(&mut self, e: Elem) -> Option<Elem> {
        self.counts.zeroed += 1;
        let (t, vr) = (e.tag(), e.vr());
        Some(if vr == VR::SQ {
            sequence_element(t, Vec::new())
        } else {
            DataElement::new(t, vr, PrimitiveValue::Empty)
        })
    }

    fn dummy(&mut self, e: Elem) -> Option<Elem> {
        match e.vr() {
            VR::SQ => self.value_based(e),
            VR::UI => self.uids(e),
            vr => {
                self.counts.replaced += 1;
                Some(DataElement::new(e.tag(), vr, dummy_value(vr)))
            }
        }
    }

    /// Keeps an element, applying what holds for every value: the profile inside sequences,
    /// pseudonymous UIDs, and shifted dates.
    fn value_based(&mut self, e: Elem) -> Option<Elem> {
        if e.vr() == VR::UI {
            return self.uids(e);
        }
        if let (Some(vr), DateMode::Shift(_)) = (date_vr(&e), self.dates) {
            return self.shift(e, vr);
        }
        let (header, value) = e.into_parts();
        match value {
            Value::Sequence(seq) => {
                let items = seq
                    .into_items()
                    .into_iter()
                    .map(|item| self.dataset(item, false))
                    .collect();
                Some(sequence_element(header.tag, items))
            }
            v => Some(DataElement::new(header.tag, header.vr, v)),
        }
    }

    fn map_uid(&mut self, v: &[u8]) -> Vec<u8> {
        let s = latin1(trim(v));
        if s.is_empty() || s.starts_with(WELL_KNOWN_UID_ROOT) || self.keep_uids.contains(&s) {
            return s.into_bytes();
        }
        self.counts.uids_remapped += 1;
        self.d.p.pseudo_uid(&s).into_bytes()
    }

    fn uids(&mut self, e: Elem) -> Option<Elem> {
        let t = e.tag();
        if CLASS_UID_TAGS.contains(&t) {
            return Some(e);
        }
        let Some(b) = raw(&e) else {
            return self.value_based(e);
        };
        let mut out = Vec::with_capacity(b.len() + 16);
        for (i, v) in b.split(|&c| c == b'\\').enumerate() {
            if i > 0 {
                out.push(b'\\');
            }
            let m = self.map_uid(v);
            out.extend(m);
        }
        Some(DataElement::new(t, e.vr(), uid_value(out)))
    }

    /// Shifts a date (`vr` DA) or date-time (DT) value, whatever VR the file gave it.
    fn shift(&mut self, e: Elem, vr: VR) -> Option<Elem> {
        let DateMode::Shift(days) = self.dates else {
            return Some(e);
        };
        let Some(b) = raw(&e) else {
            // Not text (a date under a binary VR): nothing to shift, nothing to keep.
            return self.zero(e);
        };
        let mut values = Vec::new();
        for v in b.split(|&c| c == b'\\') {
            let shifted = if vr == VR::DA {
                shift_da_or_range(v, days)
            } else if trim(v).is_empty() {
                Some(String::new())
            } else {
                shift_dt(v, days)
            };
            match shifted {
                Some(s) => values.push(s),
                // A value that is not a date is not kept: it could be a true date in
                // another format.
                None => return self.zero(e),
            }
        }
        self.counts.dates_shifted += values.iter().filter(|s| !s.is_empty()).count() as u64;
        Some(DataElement::new(
            e.tag(),
            e.vr(),
            text_value(&values.join("\\")),
        ))
    }

    /// Timezone Offset From UTC under modified dates: `+0000` (an offset says where the
    /// object was made; the shifted dates keep intervals, not places).
    fn clean_timezone(&mut self, e: Elem) -> Option<Elem> {
        if raw(&e).is_none_or(|b| trim(b).is_empty()) {
            return Some(e);
        }
        self.counts.timezones_cleaned += 1;
        Some(DataElement::new(e.tag(), e.vr(), text_value("+0000")))
    }

    fn device(&mut self, e: Elem) -> Option<Elem> {
        let vr = e.vr();
        if vr == VR::SQ || !parse::is_text(vr) || vr == VR::UI {
            return self.value_based(e);
        }
        let Some(b) = raw(&e) else {
            return self.value_based(e);
        };
        let values: Vec<String> = b
            .split(|&c| c == b'\\')
            .map(|v| {
                let mut h = self.d.p.keyed_hash("dicom-device", trim(v));
                h.truncate(max_len(vr));
                h
            })
            .collect();
        self.counts.replaced += 1;
        Some(DataElement::new(
            e.tag(),
            vr,
            text_value(&values.join("\\")),
        ))
    }

    /// Whether a structured label can be kept as it is, kept as its TG-263 name once the
    /// patient's name is taken out (a structure name: ROI Name, ROI Observation Label), or
    /// must get the profile's action. Compared as text in the object's character set, by
    /// whole tokens, case and diacritics folded ([`name_tokens`]).
    fn label_verdict(&self, e: &Elem) -> Label {
        let Some(b) = raw(e) else {
            return Label::Identifying;
        };
        let b = trim(b);
        if b.len() > 64 || looks_like_date_or_number(b) || has_month_next_to_number(b) {
            return Label::Identifying;
        }
        let text = self.charset.decode(b).unwrap_or_else(|_| latin1(b));
        let words: Vec<&str> = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        let is_name = |w: &&str| {
            let f = tg263::fold(w);
            !tg263::is_structure_word(&f) && self.tokens.contains(&f)
        };
        if !words.iter().any(is_name) {
            return Label::Clean;
        }
        if !STRUCTURE_NAME_TAGS.contains(&e.tag()) {
            return Label::Identifying;
        }
        let rest: Vec<&str> = words.into_iter().filter(|w| !is_name(w)).collect();
        match tg263::normalise(&rest.join(" "), None) {
            Some(n) if !rest.is_empty() => Label::Scrubbed(n),
            _ => Label::Identifying,
        }
    }
}

/// ROI Name and ROI Observation Label: labels that name a structure, kept as their TG-263
/// name when the patient's name is taken out of them.
const STRUCTURE_NAME_TAGS: [Tag; 2] = [Tag(0x3006, 0x0026), Tag(0x3006, 0x0085)];

/// What a structured label is under Clean Descriptors.
enum Label {
    /// Nothing in it looks like the patient's name, an identifier or a date: kept.
    Clean,
    /// It holds the patient's name, and what is left is a structure with this TG-263 name.
    Scrubbed(String),
    /// It holds the patient's name or a date: the profile's action applies.
    Identifying,
}

/// Adds the name tokens of identifying text to `out`: words of at least 2 letters (4 for
/// numbers), folded (lower case, diacritics removed: `MÜLLER`, `Müller` and `Muller` are one
/// token), with the German transliteration of umlauts as a second form (`mueller`). A word
/// that is an anatomical, radiotherapy or TG-263 term is never a name token (for patient
/// `ART^OLA`, "Heart" and "Areola" are not names; nor is "Breast" for `boost^breast`), and
/// only whole words match (`art` is not in "Heart").
fn name_tokens(text: &str, out: &mut Vec<String>) {
    for w in text.split(|c: char| !c.is_alphanumeric()) {
        let n = w.chars().count();
        let numeric = w.chars().all(|c| c.is_ascii_digit());
        if n < 2 || (numeric && n < 4) {
            continue;
        }
        let folded = tg263::fold(w);
        let german = tg263::fold(
            &w.to_lowercase()
                .replace('ä', "ae")
                .replace('ö', "oe")
                .replace('ü', "ue"),
        );
        for f in [folded, german] {
            if !tg263::is_structure_word(&f) && !out.contains(&f) {
                out.push(f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_shifts() {
        assert_eq!(shift_da(b"20200301", -1).unwrap(), "20200229");
        assert_eq!(shift_da(b"2020.03.01", -1).unwrap(), "20200229");
        assert_eq!(shift_da(b"20200230", -1), None);
        assert_eq!(shift_da(b"2020", -1), None);
        assert_eq!(
            shift_da_or_range(b"20200101-20200110 ", 10).unwrap(),
            "20200111-20200120"
        );
        assert_eq!(shift_da_or_range(b"-20200110", 10).unwrap(), "-20200120");
        assert_eq!(
            shift_dt(b"20200101120000.123456+0100", -2).unwrap(),
            "20191230120000.123456+0100"
        );
        assert_eq!(shift_dt(b"20200101-0500", -2).unwrap(), "20191230-0500");
        assert_eq!(shift_dt(b"202003", -40).unwrap(), "202001");
        assert_eq!(shift_dt(b"2020", -1).unwrap(), "2019");
        assert_eq!(shift_dt(b"20&x", 1), None);
    }

    #[test]
    fn label_checks() {
        assert!(!looks_like_date_or_number(b"CTV breast"));
        assert!(!looks_like_date_or_number(b"PTV_50Gy 25fx"));
        assert!(looks_like_date_or_number(b"CT 20200101"));
        assert!(looks_like_date_or_number(b"plan 1.2.2020"));
        assert!(looks_like_date_or_number(b"12/03/19 boost"));
        assert!(!looks_like_date_or_number(b"Lung 1-2"));
        assert!(has_month_next_to_number(b"sep30"));
        assert!(has_month_next_to_number(b"plan 12 mrt"));
        assert!(has_month_next_to_number(b"Jan-2020"));
        assert!(has_month_next_to_number(b"30 Sept"));
        assert!(!has_month_next_to_number(b"CTV breast"));
        assert!(!has_month_next_to_number(b"Isocenter 1"));
        assert!(!has_month_next_to_number(b"Mandible 2"));
        let mut t = Vec::new();
        name_tokens("Doe^Jo^^Dr=", &mut t);
        assert_eq!(t, ["doe", "jo", "dr"]);
        let mut t = Vec::new();
        name_tokens("Müller^Hélène", &mut t);
        assert_eq!(t, ["muller", "mueller", "helene"]);
        let mut t = Vec::new();
        name_tokens("ART^OLA", &mut t);
        assert_eq!(t, ["art", "ola"]);
        let mut t = Vec::new();
        name_tokens("boost^breast=12^123456", &mut t);
        assert_eq!(
            t,
            ["123456"],
            "structure words and short numbers are not name tokens"
        );
    }

    #[test]
    fn uid_syntax() {
        assert!(is_uid_syntax("1.2.840.10008.1.2"));
        assert!(!is_uid_syntax("1.2.840.10008.1/../../x"));
        assert!(!is_uid_syntax(".."));
        assert!(!is_uid_syntax("1..2"));
        assert!(!is_uid_syntax(""));
    }

    #[test]
    fn trims() {
        assert_eq!(trim(b" 1.2.3\0"), b"1.2.3");
        assert_eq!(trim(b"  "), b"");
        assert_eq!(trim(b""), b"");
    }
}
