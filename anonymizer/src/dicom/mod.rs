//! DICOM pseudonymisation: PS3.15 Annex E, Basic Application Level Confidentiality Profile, on
//! dicom-rs's in-memory model (`dicom-object`).
//!
//! * [`profile`]: the profile table (generated from the standard's table E.1-1 by
//!   `anonymizer/gen/gen_profile.py`, see [`profile_table`]), its lookup, and the options a
//!   registry chooses ([`DicomProfile`]).
//! * [`allow_table`]: the attributes that table E.1-1 does not list and that may still leave
//!   (generated from the standard's module tables by `anonymizer/gen/gen_allow_list.py`):
//!   every other unlisted attribute is removed.
//! * [`parse`]: tolerant and strict reading of files: Part 10 with or without preamble, bare
//!   data sets (transfer syntax detected), implicit VR, explicit big endian, deflated data sets,
//!   sequences encoded as UN. Values are kept as the file's bytes, so what is not changed is
//!   written back byte for byte, in any character set, and pixel data is never decoded.
//! * [`DicomPseudonymiser`]: one object in, an [`Outcome`] out: pseudonymised (with
//!   [`RuleCounts`] for the audit log), skipped (already done by registrar) or quarantined (with
//!   a [`QuarantineReason`]).
//! * [`batch`]: a directory tree in parallel, written atomically to
//!   `<study uid>/<series uid>/<sop uid>.dcm`, with a quarantine folder and report.
//! * [`tg263`]: AAPM TG-263 names of RT structures from ROI names as typed
//!   ([`tg263::normalise`]), Latin diacritic folding ([`tg263::fold`]) and the vocabulary of
//!   structure names ([`tg263::is_structure_word`]): words a scrubber of ROI names must not
//!   take for a patient's name.
//!
//! ## What happens to an object
//!
//! 1. Quarantine, never output: not DICOM, truncated or malformed files; files beyond the
//!    profile's [`Limits`](parse::Limits) (`too_deep`, `too_large`: nothing an input holds can
//!    exhaust a worker's stack or the run's memory); DICOMDIRs; Burned In
//!    Annotation `YES`, or ultrasound / secondary capture without `NO`, or an overlay kept in the
//!    pixel data (unless the profile accepts burned-in text); no Patient ID; a missing SOP,
//!    study or series UID.
//! 2. Patient ID and Patient's Name become the person pseudonym
//!    `Pseudonymiser::person(Mrn, PatientID)` (43 characters: fits LO and PN), so images and
//!    clinical rows of a person share one pseudonym. A Patient ID nested in a sequence gets
//!    its own pseudonym.
//! 3. Every attribute of the table, at every depth, gets its action: `X` removed, `Z`
//!    emptied, `D` a dummy (`ANONYMIZED`, `19000101`, `0`, ...: within every VR's length),
//!    `U` a pseudonymous UID, sequences under `K`, `D` or `U*` keep their items with the
//!    profile applied inside. Options change the action where the table says so (see
//!    [`DicomProfile`]): dates shifted by the person's keyed shift (the same shift as the
//!    person's clinical rows: `date_shift_days(policy, person pseudonym)`), patient
//!    characteristics and device identity kept (AE titles as a keyed hash cut to 16
//!    characters), structured labels such as ROI names kept when they look clean.
//! 4. An attribute the table does not list leaves only if it is on the allow-list
//!    ([`allow_table`]): unknown, retired and undefined public attributes, and those of
//!    modules not known to be safe (orders, visits, scheduled steps, documents), are removed
//!    (counted as `not_allowed` or `undefined_removed`).
//!    Beyond the table: every UID value at any depth (file meta included) that is not a
//!    standard UID (`1.2.840.10008.`), the object's SOP class or transfer syntax, or in a
//!    class/definition attribute (SOP Class UID, Referenced SOP Class UID, Coding Scheme UID,
//!    ...) becomes `Pseudonymiser::pseudo_uid(uid)`: mapped by value, so references between
//!    objects stay consistent across files and processes; every date and date-time is
//!    shifted, recognised by its tag in the dictionary whatever VR the file claims (times are
//!    kept: the shift is of whole days); Timezone Offset From UTC becomes `+0000`; private
//!    elements are removed unless allowed by
//!    Retain Safe Private; overlay (60xx) and curve (50xx) groups are removed whole; SR Text
//!    Values become a dummy; group lengths are dropped.
//! 5. Marks: Patient Identity Removed `YES`, De-identification Method (`registrar ...`, key id
//!    and domain), De-identification Method Code Sequence (CID 7050: 113100 and one code per
//!    option), Longitudinal Temporal Information Modified (`MODIFIED`, `UNMODIFIED` or
//!    `REMOVED`). A file with these marks is skipped.
//! 6. A new file meta (pseudonymous Media Storage SOP Instance UID, registrar's implementation
//!    UID), the data set in the transfer syntax it came in.

pub mod allow_table;
pub mod batch;
mod deid;
mod encode;
mod outfile;
pub mod parse;
pub mod profile;
pub mod profile_table;
pub mod tg263;
mod write;

pub use batch::{BatchError, BatchFailure, BatchOptions, BatchSummary, FileRecord, FileStatus};
pub use deid::{
    guideline_era, DicomPseudonymiser, Outcome, Prepared, Quarantine, QuarantineReason, RuleCounts,
    SkipReason, DUMMY_TEXT, GUIDELINE_ERA, GUIDELINE_ERA_CREATOR, WELL_KNOWN_UID_ROOT,
};
pub use profile::{BurnedInPolicy, DicomProfile, MethodCode, ProfileError, SafePrivate};
pub use write::{write_file, WriteError, IMPLEMENTATION_CLASS_UID};

/// dicom-rs's core types and object model, for callers that prepare inputs or inspect results
/// (tests, tools).
pub use ::dicom_core;
pub use ::dicom_object;
