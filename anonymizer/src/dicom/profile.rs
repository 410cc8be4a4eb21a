//! The confidentiality profile: the generated PS3.15 table E.1-1, its lookup, and the options a
//! registry chooses ([`DicomProfile`]).

use serde::{Deserialize, Serialize};

use super::profile_table::{EXACT, PATTERNS, PRIVATE};

/// An action of table E.1-1 after the combined actions were resolved (see
/// `anonymizer/gen/gen_profile.py`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Remove the attribute.
    X,
    /// Replace with a zero-length value (an empty sequence for SQ).
    Z,
    /// Replace with a non-zero-length dummy value consistent with the VR (a sequence keeps its
    /// items, with the profile applied to them).
    D,
    /// Keep (a sequence keeps its items, with the profile applied to them).
    K,
    /// Replace the UID with a consistent pseudonymous UID.
    U,
    /// `X/Z/U*`: keep the reference sequence, replace every UID in it consistently and apply
    /// the profile to its items.
    UStar,
}

/// An action under an option column of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptAction {
    /// Keep the attribute.
    K,
    /// Clean it: replace with values of similar meaning known not to identify.
    C,
}

/// The option columns of table E.1-1, in the order of the generated option strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProfileOption {
    /// Retain Longitudinal Temporal Information with Full Dates.
    RetainLongitudinalFullDates = 0,
    /// Retain Longitudinal Temporal Information with Modified Dates.
    RetainLongitudinalModifiedDates = 1,
    /// Retain Patient Characteristics.
    RetainPatientCharacteristics = 2,
    /// Retain Device Identity.
    RetainDeviceIdentity = 3,
    /// Retain Institution Identity.
    RetainInstitutionIdentity = 4,
    /// Retain UIDs.
    RetainUids = 5,
    /// Retain Safe Private.
    RetainSafePrivate = 6,
    /// Clean Descriptors.
    CleanDescriptors = 7,
    /// Clean Structured Content.
    CleanStructuredContent = 8,
    /// Clean Graphics.
    CleanGraphics = 9,
}

/// One row of table E.1-1.
#[derive(Debug)]
pub struct Entry {
    /// The attribute name, as in the standard.
    pub name: &'static str,
    /// The Basic Profile action as written in the standard (`"X/Z/D"`, ...).
    pub basic: &'static str,
    /// The action this program applies without options.
    pub resolved: Action,
    /// Whether the attribute occurs in a standard composite IOD.
    pub std_comp_iod: bool,
    opts: &'static str,
}

impl Entry {
    /// Used by the generated table: `opts` has one character per [`ProfileOption`] (`.`, `K`
    /// or `C`).
    pub const fn new(
        name: &'static str,
        basic: &'static str,
        resolved: Action,
        std_comp_iod: bool,
        opts: &'static str,
    ) -> Entry {
        Entry {
            name,
            basic,
            resolved,
            std_comp_iod,
            opts,
        }
    }

    /// The action under an option, if the table gives one.
    pub fn option(&self, o: ProfileOption) -> Option<OptAction> {
        match self.opts.as_bytes().get(o as usize) {
            Some(b'K') => Some(OptAction::K),
            Some(b'C') => Some(OptAction::C),
            _ => None,
        }
    }
}

/// A row of the table named by a tag pattern (`(60xx,3000)`, `(50xx,xxxx)`).
#[derive(Debug)]
pub struct PatternEntry {
    /// Group bits that must match after masking.
    pub group: u16,
    /// Mask applied to the group.
    pub group_mask: u16,
    /// Element bits that must match after masking.
    pub element: u16,
    /// Mask applied to the element.
    pub element_mask: u16,
    /// The row.
    pub entry: Entry,
}

/// The table row for a tag: private attributes (odd group) share one row; otherwise an exact
/// tag, then the patterns. `None` for attributes the profile does not list: those leave only
/// if [`allowed`].
pub fn lookup(group: u16, element: u16) -> Option<&'static Entry> {
    if group % 2 == 1 {
        return Some(&PRIVATE);
    }
    let t = (u32::from(group) << 16) | u32::from(element);
    if let Ok(i) = EXACT.binary_search_by_key(&t, |(k, _)| *k) {
        return Some(&EXACT[i].1);
    }
    PATTERNS
        .iter()
        .find(|p| group & p.group_mask == p.group && element & p.element_mask == p.element)
        .map(|p| &p.entry)
}

/// The allow-list entry of an attribute that table E.1-1 does not list
/// ([`ALLOWED`](super::allow_table::ALLOWED), generated from the standard's module tables by
/// `anonymizer/gen/gen_allow_list.py`): attributes of image, geometry, acquisition,
/// radiotherapy, structured-report and reference modules that carry no identity. `None`: the
/// attribute is removed (unknown, retired, a public tag the dictionary does not define, or
/// an attribute of a module not known to be safe).
pub fn allowed(group: u16, element: u16) -> Option<&'static super::allow_table::Allowed> {
    let t = (u32::from(group) << 16) | u32::from(element);
    let list = &super::allow_table::ALLOWED;
    list.binary_search_by_key(&t, |a| a.tag)
        .ok()
        .map(|i| &list[i])
}

/// What to do with objects that may show text burned into their pixels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BurnedInPolicy {
    /// Quarantine objects with Burned In Annotation `YES`, and ultrasound or secondary
    /// capture objects that do not say `NO` (the default: pixel data is never cleaned here).
    #[default]
    Quarantine,
    /// Pseudonymise them anyway (only where pixel data is checked or cleaned elsewhere).
    Accept,
}

/// A private data element that is safe to keep under the Retain Safe Private option: its group,
/// private creator and element offset within the creator's block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafePrivate {
    /// The odd group, four hex digits (`"0019"`).
    pub group: String,
    /// The private creator, compared after trimming spaces (`"GEMS_ACQU_01"`).
    pub creator: String,
    /// The element offset in the block, two hex digits (`"92"` for `(0019,xx92)`), or `"xx"`
    /// for the whole block.
    pub element: String,
}

/// The registry's choice of PS3.15 options. Deserialised from TOML or JSON (kebab-case keys);
/// every field has a default, so `{}` is the default profile.
///
/// Dates follow the registry's [`DatePolicy`](crate::dateshift::DatePolicy) when
/// `retain-longitudinal-dates` is on: shifted by the person's keyed shift (Retain Longitudinal
/// Temporal Information with Modified Dates), or kept under `keep-true-dates` (with Full
/// Dates).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct DicomProfile {
    /// Retain Longitudinal Temporal Information (default on): dates follow the date policy.
    /// Off: the Basic Profile removes or blanks them.
    pub retain_longitudinal_dates: bool,
    /// Retain Patient Characteristics (default on): age, sex, size, weight, smoking status,
    /// pregnancy, ethnic group are kept; their free-text companions are still removed.
    pub retain_patient_characteristics: bool,
    /// Retain Device Identity (default off): device serial numbers, station names, detector
    /// ids are kept; AE titles are replaced by a keyed hash (linkable, not readable).
    pub retain_device_identity: bool,
    /// Clean Descriptors (default on): the structured labels in `descriptor-labels` are kept
    /// when they do not look like a name, identifier or date; free-text descriptions are
    /// removed.
    pub clean_descriptors: bool,
    /// Labels kept under Clean Descriptors, as `"(gggg,eeee)"`.
    pub descriptor_labels: Vec<String>,
    /// Retain Safe Private (default off): keep the private elements of `safe-private`.
    pub retain_safe_private: bool,
    /// The private elements known to be safe.
    pub safe_private: Vec<SafePrivate>,
    /// Objects that may have burned-in text.
    pub burned_in_annotation: BurnedInPolicy,
    /// Bounds on what one file may make the reader build (`[limits]` with `max-depth`,
    /// `max-elements`, `max-file-bytes`): a file beyond them is quarantined (`too_deep`,
    /// `too_large`).
    pub limits: super::parse::Limits,
    /// The first day of the era after the ESTRO consensus guidelines on breast target volume
    /// delineation (Offersen et al., Radiother Oncol 2015;114:3-10): an RT Structure Set whose
    /// true Structure Set Date falls before it is marked `BEFORE`, else `AFTER` (see
    /// [`super::deid::GUIDELINE_ERA`]). Default 2016-01-01, the first day after the
    /// publication year; a registry may set the publication date itself.
    pub guideline_era_start: chrono::NaiveDate,
}

/// The default [`DicomProfile::guideline_era_start`].
pub fn default_guideline_era_start() -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2016, 1, 1).expect("a date")
}

/// ROI Name, ROI Observation Label, Structure Set Label, RT Plan Label.
pub const DEFAULT_DESCRIPTOR_LABELS: [&str; 4] =
    ["(3006,0026)", "(3006,0085)", "(3006,0002)", "(300A,0002)"];

impl Default for DicomProfile {
    fn default() -> Self {
        DicomProfile {
            retain_longitudinal_dates: true,
            retain_patient_characteristics: true,
            retain_device_identity: false,
            clean_descriptors: true,
            descriptor_labels: DEFAULT_DESCRIPTOR_LABELS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            retain_safe_private: false,
            safe_private: Vec::new(),
            burned_in_annotation: BurnedInPolicy::Quarantine,
            limits: super::parse::Limits::default(),
            guideline_era_start: default_guideline_era_start(),
        }
    }
}

/// A profile setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid DICOM profile: {0}")]
pub struct ProfileError(pub String);

/// A [`DicomProfile`] with its tags parsed.
#[derive(Clone, Debug)]
pub(crate) struct CompiledProfile {
    pub profile: DicomProfile,
    pub labels: Vec<u32>,
    /// (group, trimmed creator, element offset or None for the whole block)
    pub safe_private: Vec<(u16, String, Option<u8>)>,
}

fn parse_hex16(s: &str) -> Option<u16> {
    (s.len() == 4 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u16::from_str_radix(s, 16).ok())
        .flatten()
}

/// Parses `"(gggg,eeee)"` or `"ggggeeee"`.
pub(crate) fn parse_tag(s: &str) -> Option<u32> {
    let t = s.trim();
    let inner = t
        .strip_prefix('(')
        .and_then(|x| x.strip_suffix(')'))
        .unwrap_or(t);
    let (g, e) = match inner.split_once(',') {
        Some((g, e)) => (g.trim(), e.trim()),
        None if inner.len() == 8 => inner.split_at(4),
        None => return None,
    };
    Some((u32::from(parse_hex16(g)?) << 16) | u32::from(parse_hex16(e)?))
}

impl DicomProfile {
    pub(crate) fn compile(&self) -> Result<CompiledProfile, ProfileError> {
        let mut labels = Vec::new();
        for l in &self.descriptor_labels {
            let t = parse_tag(l).ok_or_else(|| {
                ProfileError(format!(
                    "descriptor-labels: `{l}` is not a tag like (3006,0026)"
                ))
            })?;
            labels.push(t);
        }
        let mut safe = Vec::new();
        for p in &self.safe_private {
            let g = parse_hex16(p.group.trim())
                .filter(|g| g % 2 == 1)
                .ok_or_else(|| {
                    ProfileError(format!(
                        "safe-private: group `{}` is not an odd group of four hex digits",
                        p.group
                    ))
                })?;
            let e = p.element.trim();
            let element = if e.eq_ignore_ascii_case("xx") {
                None
            } else if e.len() == 2 && e.bytes().all(|b| b.is_ascii_hexdigit()) {
                Some(u8::from_str_radix(e, 16).expect("two hex digits"))
            } else {
                return Err(ProfileError(format!(
                    "safe-private: element `{}` is not two hex digits or xx",
                    p.element
                )));
            };
            let creator = p.creator.trim().to_string();
            if creator.is_empty() {
                return Err(ProfileError("safe-private: empty creator".into()));
            }
            safe.push((g, creator, element));
        }
        Ok(CompiledProfile {
            profile: self.clone(),
            labels,
            safe_private: safe,
        })
    }
}

/// A code of DICOM CID 7050 (De-identification Method), scheme `DCM`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MethodCode {
    /// Code value.
    pub value: &'static str,
    /// Code meaning.
    pub meaning: &'static str,
}

/// DCM 113100.
pub const BASIC_PROFILE: MethodCode = MethodCode {
    value: "113100",
    meaning: "Basic Application Confidentiality Profile",
};
/// DCM 113105.
pub const CLEAN_DESCRIPTORS: MethodCode = MethodCode {
    value: "113105",
    meaning: "Clean Descriptors Option",
};
/// DCM 113106.
pub const RETAIN_FULL_DATES: MethodCode = MethodCode {
    value: "113106",
    meaning: "Retain Longitudinal Temporal Information Full Dates Option",
};
/// DCM 113107.
pub const RETAIN_MODIFIED_DATES: MethodCode = MethodCode {
    value: "113107",
    meaning: "Retain Longitudinal Temporal Information Modified Dates Option",
};
/// DCM 113108.
pub const RETAIN_PATIENT_CHARACTERISTICS: MethodCode = MethodCode {
    value: "113108",
    meaning: "Retain Patient Characteristics Option",
};
/// DCM 113109.
pub const RETAIN_DEVICE_IDENTITY: MethodCode = MethodCode {
    value: "113109",
    meaning: "Retain Device Identity Option",
};
/// DCM 113111.
pub const RETAIN_SAFE_PRIVATE: MethodCode = MethodCode {
    value: "113111",
    meaning: "Retain Safe Private Option",
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dicom::profile_table::{OPTION_COLUMNS, ROWS};

    #[test]
    fn table_is_complete_and_sorted() {
        assert_eq!(ROWS, 621);
        assert_eq!(EXACT.len() + PATTERNS.len() + 1, ROWS);
        assert!(EXACT.windows(2).all(|w| w[0].0 < w[1].0));
        for (_, e) in EXACT.iter() {
            assert_eq!(e.opts.len(), OPTION_COLUMNS.len(), "{}", e.name);
            assert!(e.opts.bytes().all(|b| matches!(b, b'.' | b'K' | b'C')));
        }
        assert_eq!(
            OPTION_COLUMNS[ProfileOption::CleanGraphics as usize],
            "cleanGraphOpt"
        );
        assert_eq!(
            OPTION_COLUMNS[ProfileOption::RetainLongitudinalModifiedDates as usize],
            "rtnLongModifDatesOpt"
        );
    }

    #[test]
    fn lookups() {
        let pn = lookup(0x0010, 0x0010).unwrap();
        assert_eq!(pn.name, "Patient's Name");
        assert_eq!(pn.resolved, Action::Z);
        let acc = lookup(0x0008, 0x0050).unwrap();
        assert_eq!(acc.resolved, Action::Z);
        // Combined actions, resolved by the generator's rule.
        assert_eq!(lookup(0x0008, 0x0022).unwrap().basic, "X/Z");
        assert_eq!(lookup(0x0008, 0x0022).unwrap().resolved, Action::Z);
        assert_eq!(lookup(0x0008, 0x0021).unwrap().resolved, Action::X);
        assert_eq!(lookup(0x0008, 0x0023).unwrap().resolved, Action::D);
        assert_eq!(lookup(0x0008, 0x1140).unwrap().resolved, Action::UStar);
        assert_eq!(
            lookup(0x0008, 0x0020)
                .unwrap()
                .option(ProfileOption::RetainLongitudinalModifiedDates),
            Some(OptAction::C)
        );
        assert_eq!(
            lookup(0x0010, 0x1010)
                .unwrap()
                .option(ProfileOption::RetainPatientCharacteristics),
            Some(OptAction::K)
        );
        // Overlays, curves and private attributes.
        assert_eq!(lookup(0x6002, 0x3000).unwrap().name, "Overlay Data");
        assert_eq!(lookup(0x5010, 0x0022).unwrap().name, "Curve Data");
        assert_eq!(lookup(0x0019, 0x1010).unwrap().name, "Private Attributes");
        // Not listed: kept.
        assert!(lookup(0x0028, 0x0010).is_none());
        assert!(lookup(0x0008, 0x0016).is_none());
    }

    #[test]
    fn profile_parses_and_compiles() {
        let p: DicomProfile = serde_json::from_str(
            r#"{"retain-device-identity": true,
                "retain-safe-private": true,
                "safe-private": [{"group": "0019", "creator": " GEMS_ACQU_01 ", "element": "9a"},
                                 {"group": "0043", "creator": "X", "element": "xx"}],
                "burned-in-annotation": "accept"}"#,
        )
        .unwrap();
        assert!(p.retain_device_identity && p.clean_descriptors);
        let c = p.compile().unwrap();
        assert_eq!(
            c.safe_private[0],
            (0x0019, "GEMS_ACQU_01".into(), Some(0x9A))
        );
        assert_eq!(c.safe_private[1].2, None);
        assert_eq!(c.labels[0], 0x3006_0026);
        assert_eq!(DicomProfile::default(), serde_json::from_str("{}").unwrap());

        for bad in [
            r#"{"safe-private": [{"group": "0018", "creator": "X", "element": "10"}]}"#,
            r#"{"safe-private": [{"group": "0019", "creator": "X", "element": "1010"}]}"#,
            r#"{"descriptor-labels": ["ROIName"]}"#,
        ] {
            let p: DicomProfile = serde_json::from_str(bad).unwrap();
            assert!(p.compile().is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<DicomProfile>(r#"{"unknown": 1}"#).is_err());
        assert_eq!(parse_tag("30060026"), Some(0x3006_0026));
        assert_eq!(parse_tag("(300a,0002)"), Some(0x300A_0002));
        assert_eq!(parse_tag("(300a,02)"), None);
    }
}
