//! The inter-observer agreement of a tree's structure sets, as `registrar dicom index` stores
//! it: for each patient and frame of reference, each TG-263 structure drawn by two or more
//! observers is rasterised on the CT grid of the referenced series ([`super::mask`]) and
//! measured pair by pair ([`super::agreement`]). One patient's structure sets are read again
//! at a time, and one structure's masks are held at a time.
//!
//! An observer is the (pseudonymous) ROI Interpreter; ROIs without one are not paired, and
//! when an observer drew a structure in several sets of a patient, the earliest set counts
//! (the later ones are reported as repeats). The CT grid is that of the CT series the
//! earliest set of the group references (all the group's sets share its frame of reference).

use super::agreement::{self, Unmeasured};
use super::mask::{Grid, Slice};
use super::{read_dicom, roi_contours, RoiFacts};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

/// First characters of the `alg_system` JSON of an agreement feature.
pub const AGREEMENT_KIND: &str = "delineation-agreement";

/// A structure set of the tree, as the index read it.
#[derive(Debug, Clone)]
pub struct SetRef {
    pub path: PathBuf,
    pub patient_id: String,
    pub series_uid: String,
    pub frame_of_reference: Option<String>,
    pub rois: Vec<RoiFacts>,
}

/// One observer pair's agreement on one structure, stored as `cdm.image_feature.alg_system`
/// (JSON) on the image occurrence of observer `a`'s structure set.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AgreementFacts {
    /// Always [`AGREEMENT_KIND`].
    pub kind: String,
    pub tg263: String,
    pub roi_type: Option<String>,
    /// The index's source (the institution's DICOM source name).
    pub institution: String,
    pub observer_a: String,
    pub observer_b: String,
    pub structure_set_uid_a: Option<String>,
    pub structure_set_uid_b: Option<String>,
    /// Structure Set Dates (shifted), ISO.
    pub structure_set_date_a: Option<String>,
    pub structure_set_date_b: Option<String>,
    /// `before` / `after` (the sets' guideline-era marks).
    pub guideline_era_a: Option<String>,
    pub guideline_era_b: Option<String>,
    /// Observers of the structure (the group the pair belongs to).
    pub observers: usize,
    pub volume_cv: f64,
    pub consensus_dice_mean: f64,
    pub dice: f64,
    pub jaccard: f64,
    pub hd_max_mm: f64,
    pub hd95_mm: f64,
    pub hd95_plastimatch_mm: f64,
    pub msd_mm: f64,
    pub volume_a_cc: f64,
    pub volume_b_cc: f64,
    /// Column and row spacing and the smallest slice distance of the grid, mm.
    pub voxel_mm: [f64; 3],
}

/// What [`measure_tree`] found.
#[derive(Debug, Default)]
pub struct Measured {
    /// Agreement features by the series of observer `a`'s set.
    pub by_series: HashMap<String, Vec<AgreementFacts>>,
    /// (reason, structures), sorted by reason.
    pub unmeasured: Vec<(String, i64)>,
}

impl Measured {
    pub fn pairs(&self) -> i64 {
        self.by_series.values().map(|v| v.len() as i64).sum()
    }
}

fn round(v: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (v * f).round() / f
}

/// Measure every multi-observer structure of the tree.
pub fn measure_tree(sets: &[SetRef], ct: &HashMap<String, Vec<Slice>>, source: &str) -> Measured {
    let mut out = Measured::default();
    let mut unmeasured: BTreeMap<&'static str, i64> = BTreeMap::new();
    // Sets by patient and frame of reference, earliest first.
    let mut groups: BTreeMap<(&str, &str), Vec<&SetRef>> = BTreeMap::new();
    for s in sets {
        if let Some(f) = &s.frame_of_reference {
            groups.entry((&s.patient_id, f)).or_default().push(s);
        }
    }
    for group in groups.values_mut() {
        group.sort_by(|a, b| {
            let d = |s: &SetRef| s.rois.first().and_then(|r| r.structure_set_date.clone());
            d(a).cmp(&d(b)).then(a.series_uid.cmp(&b.series_uid))
        });
        // Structure -> the sets (first per observer) that drew it with contours.
        let mut by_structure: BTreeMap<&str, Vec<(usize, &RoiFacts)>> = BTreeMap::new();
        for (si, s) in group.iter().enumerate() {
            for r in &s.rois {
                let Some(obs) = r.observer.as_deref() else {
                    continue;
                };
                if r.contour_slices == 0 {
                    continue;
                }
                let drawn = by_structure.entry(&r.tg263).or_default();
                if drawn
                    .iter()
                    .any(|(_, d)| d.observer.as_deref() == Some(obs))
                {
                    *unmeasured
                        .entry("a later drawing of a structure by the same observer (the earliest is paired)")
                        .or_default() += 1;
                    continue;
                }
                drawn.push((si, r));
            }
        }
        by_structure.retain(|_, d| d.len() >= 2);
        if by_structure.is_empty() {
            continue;
        }
        let ct_series = group
            .iter()
            .find_map(|s| s.rois.iter().find_map(|r| r.referenced_ct_series.clone()));
        let grid = match ct_series.as_ref().and_then(|u| ct.get(u)) {
            Some(slices) => Grid::from_slices(slices),
            None => Err(super::mask::GridProblem::NoSlices),
        };
        let grid = match grid {
            Ok(g) => g,
            Err(p) => {
                *unmeasured.entry(p.reason()).or_default() += by_structure.len() as i64;
                continue;
            }
        };
        // The group's sets, read again (contours by ROI number).
        let mut contours = Vec::with_capacity(group.len());
        for s in group.iter() {
            contours.push(read_dicom(&s.path).map(|o| roi_contours(&o)));
        }
        let min_dz = grid
            .z
            .windows(2)
            .map(|w| w[1] - w[0])
            .fold(f64::INFINITY, f64::min);
        for (tg263, drawn) in &by_structure {
            let mut drawings = Vec::with_capacity(drawn.len());
            let mut readable = true;
            for (si, r) in drawn {
                match &contours[*si] {
                    Some(c) => drawings.push(c.get(&r.roi_number).map_or(&[][..], Vec::as_slice)),
                    None => readable = false,
                }
            }
            if !readable {
                *unmeasured
                    .entry("a structure set could not be read again")
                    .or_default() += 1;
                continue;
            }
            let measured = match agreement::measure(&grid, &drawings) {
                Ok(m) => m,
                Err(e @ (Unmeasured::OffGrid | Unmeasured::Empty)) => {
                    *unmeasured.entry(e.reason()).or_default() += 1;
                    continue;
                }
            };
            for p in &measured.pairs {
                let ((sa, a), (_, b)) = (drawn[p.a], drawn[p.b]);
                let facts = AgreementFacts {
                    kind: AGREEMENT_KIND.into(),
                    tg263: (*tg263).to_string(),
                    roi_type: a.roi_type.clone(),
                    institution: source.to_string(),
                    observer_a: a.observer.clone().unwrap_or_default(),
                    observer_b: b.observer.clone().unwrap_or_default(),
                    structure_set_uid_a: a.structure_set_uid.clone(),
                    structure_set_uid_b: b.structure_set_uid.clone(),
                    structure_set_date_a: a.structure_set_date.clone(),
                    structure_set_date_b: b.structure_set_date.clone(),
                    guideline_era_a: a.guideline_era.clone(),
                    guideline_era_b: b.guideline_era.clone(),
                    observers: measured.observers,
                    volume_cv: round(measured.volume_cv, 4),
                    consensus_dice_mean: round(measured.consensus_dice_mean, 4),
                    dice: round(p.dice, 4),
                    jaccard: round(p.jaccard, 4),
                    hd_max_mm: round(p.hd_max_mm, 2),
                    hd95_mm: round(p.hd95_mm, 2),
                    hd95_plastimatch_mm: round(p.hd95_plastimatch_mm, 2),
                    msd_mm: round(p.msd_mm, 2),
                    volume_a_cc: round(p.volume_a_cc, 3),
                    volume_b_cc: round(p.volume_b_cc, 3),
                    voxel_mm: [
                        grid.dx,
                        grid.dy,
                        if min_dz.is_finite() {
                            round(min_dz, 3)
                        } else {
                            0.0
                        },
                    ],
                };
                out.by_series
                    .entry(group[sa].series_uid.clone())
                    .or_default()
                    .push(facts);
            }
        }
    }
    out.unmeasured = unmeasured
        .into_iter()
        .map(|(r, n)| (r.to_string(), n))
        .collect();
    out
}
