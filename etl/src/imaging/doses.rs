//! The dose-volume metrics of a tree, as `registrar dicom index` stores them: for every RT
//! Dose, every ROI of every structure set of the same patient and frame of reference (every
//! observer's, so a delineation difference can be read as a dose-coverage difference) under
//! that dose ([`super::dose`]), with the prescription of the RT Plan the dose references (its
//! Dose Reference of type TARGET: Target Prescription Dose). One RT Dose is held at a time.

use super::agreements::SetRef;
use super::dose::{dvh, DoseGrid};
use super::{floats, items, read_whole, roi_contours, text};
use registrar_anonymizer::dicom::dicom_core::Tag;
use registrar_anonymizer::dicom::dicom_object::InMemDicomObject;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// First characters of the `alg_system` JSON of a dose-volume feature.
pub const DOSE_VOLUME_KIND: &str = "dose-volume";

mod tag {
    use super::Tag;
    pub const REFERENCED_SOP_INSTANCE_UID: Tag = Tag(0x0008, 0x1155);
    pub const FRAME_OF_REFERENCE_UID: Tag = Tag(0x0020, 0x0052);
    pub const DOSE_REFERENCE_SEQUENCE: Tag = Tag(0x300A, 0x0010);
    pub const DOSE_REFERENCE_TYPE: Tag = Tag(0x300A, 0x0020);
    pub const TARGET_PRESCRIPTION_DOSE: Tag = Tag(0x300A, 0x0026);
    pub const REFERENCED_RT_PLAN_SEQUENCE: Tag = Tag(0x300C, 0x0002);
    pub const REFERENCED_STRUCTURE_SET_SEQUENCE: Tag = Tag(0x300C, 0x0060);
}

/// What the index keeps of an RT Plan.
#[derive(Debug, Clone, Default)]
pub struct PlanFacts {
    /// The largest Target Prescription Dose of its TARGET dose references, Gy.
    pub prescription_gy: Option<f64>,
    /// The structure set it was planned on (SOP Instance UID).
    pub structure_set_uid: Option<String>,
}

impl PlanFacts {
    pub fn read(o: &InMemDicomObject) -> PlanFacts {
        let prescription_gy = items(o, tag::DOSE_REFERENCE_SEQUENCE)
            .iter()
            .filter(|r| text(r, tag::DOSE_REFERENCE_TYPE).as_deref() == Some("TARGET"))
            .filter_map(|r| floats(r, tag::TARGET_PRESCRIPTION_DOSE)?.first().copied())
            .filter(|d| d.is_finite() && *d > 0.0)
            .reduce(f64::max);
        PlanFacts {
            prescription_gy,
            structure_set_uid: items(o, tag::REFERENCED_STRUCTURE_SET_SEQUENCE)
                .iter()
                .find_map(|r| text(r, tag::REFERENCED_SOP_INSTANCE_UID)),
        }
    }
}

/// An RT Dose of the tree.
#[derive(Debug, Clone)]
pub struct DoseRef {
    pub path: PathBuf,
    pub patient_id: String,
    pub series_uid: String,
    pub frame_of_reference: Option<String>,
    pub plan_uid: Option<String>,
}

impl DoseRef {
    pub fn read(o: &InMemDicomObject, path: &Path, patient_id: &str, series_uid: &str) -> DoseRef {
        DoseRef {
            path: path.to_path_buf(),
            patient_id: patient_id.to_string(),
            series_uid: series_uid.to_string(),
            frame_of_reference: text(o, tag::FRAME_OF_REFERENCE_UID),
            plan_uid: items(o, tag::REFERENCED_RT_PLAN_SEQUENCE)
                .iter()
                .find_map(|r| text(r, tag::REFERENCED_SOP_INSTANCE_UID)),
        }
    }
}

/// One structure's dose-volume metrics under one RT Dose, stored as
/// `cdm.image_feature.alg_system` (JSON) on the RT Dose's image occurrence.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DoseVolumeFacts {
    /// Always [`DOSE_VOLUME_KIND`].
    pub kind: String,
    pub institution: String,
    pub tg263: String,
    pub roi_type: Option<String>,
    pub observer: Option<String>,
    pub structure_set_uid: Option<String>,
    pub structure_set_date: Option<String>,
    pub guideline_era: Option<String>,
    /// True for the structure set the dose's plan was planned on.
    pub planned_on: bool,
    pub prescription_gy: Option<f64>,
    pub dmean_gy: f64,
    pub d95_gy: f64,
    pub d2_gy: f64,
    pub v95_pct: Option<f64>,
    /// The structure's volume inside the dose grid, cc.
    pub volume_cc: f64,
    pub planes_outside_dose: usize,
    /// Column and row spacing and the smallest frame distance of the dose grid, mm.
    pub dose_grid_mm: [f64; 3],
}

/// What [`measure_tree`] found.
#[derive(Debug, Default)]
pub struct Dosed {
    /// Dose-volume features by RT Dose series.
    pub by_series: HashMap<String, Vec<DoseVolumeFacts>>,
    /// (reason, count), sorted by reason.
    pub unmeasured: Vec<(String, i64)>,
}

impl Dosed {
    pub fn rows(&self) -> i64 {
        self.by_series.values().map(|v| v.len() as i64).sum()
    }
}

fn round(v: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (v * f).round() / f
}

/// The dose-volume metrics of every RT Dose of the tree.
pub fn measure_tree(
    doses: &[DoseRef],
    plans: &HashMap<String, PlanFacts>,
    sets: &[SetRef],
    source: &str,
) -> Dosed {
    let mut out = Dosed::default();
    let mut unmeasured: BTreeMap<&'static str, i64> = BTreeMap::new();
    for d in doses {
        let Some(f) = d.frame_of_reference.as_deref() else {
            *unmeasured
                .entry("an RT Dose without a Frame of Reference UID")
                .or_default() += 1;
            continue;
        };
        let same: Vec<&SetRef> = sets
            .iter()
            .filter(|s| s.patient_id == d.patient_id && s.frame_of_reference.as_deref() == Some(f))
            .collect();
        if same.is_empty() {
            *unmeasured
                .entry("an RT Dose without a structure set of its frame of reference in the tree")
                .or_default() += 1;
            continue;
        }
        let Some(read) = read_whole(&d.path) else {
            *unmeasured
                .entry("an RT Dose that could not be read whole")
                .or_default() += 1;
            continue;
        };
        let grid = match DoseGrid::read(&read.dataset, read.big_endian) {
            Ok(g) => g,
            Err(p) => {
                *unmeasured.entry(p.reason()).or_default() += 1;
                continue;
            }
        };
        drop(read);
        let plan = d.plan_uid.as_ref().and_then(|u| plans.get(u));
        let prescription = plan.and_then(|p| p.prescription_gy);
        if prescription.is_none() {
            *unmeasured
                .entry("an RT Dose whose plan (or its target prescription) is not in the tree: V95% is not computed")
                .or_default() += 1;
        }
        let g = &grid.grid;
        let dz =
            g.z.windows(2)
                .map(|w| w[1] - w[0])
                .fold(f64::INFINITY, f64::min);
        let dose_grid_mm = [g.dx, g.dy, if dz.is_finite() { round(dz, 3) } else { 0.0 }];
        for s in same {
            let Some(contours) = super::read_dicom(&s.path).map(|o| roi_contours(&o)) else {
                *unmeasured
                    .entry("a structure set could not be read again")
                    .or_default() += 1;
                continue;
            };
            for r in &s.rois {
                let Some(cs) = contours.get(&r.roi_number).filter(|c| !c.is_empty()) else {
                    continue;
                };
                let Some(v) = dvh(&grid, cs, prescription) else {
                    *unmeasured
                        .entry("a structure with no dose-grid point inside it")
                        .or_default() += 1;
                    continue;
                };
                out.by_series
                    .entry(d.series_uid.clone())
                    .or_default()
                    .push(DoseVolumeFacts {
                        kind: DOSE_VOLUME_KIND.into(),
                        institution: source.to_string(),
                        tg263: r.tg263.clone(),
                        roi_type: r.roi_type.clone(),
                        observer: r.observer.clone(),
                        structure_set_uid: r.structure_set_uid.clone(),
                        structure_set_date: r.structure_set_date.clone(),
                        guideline_era: r.guideline_era.clone(),
                        planned_on: plan.and_then(|p| p.structure_set_uid.as_ref())
                            == r.structure_set_uid.as_ref()
                            && r.structure_set_uid.is_some(),
                        prescription_gy: prescription,
                        dmean_gy: round(v.dmean_gy, 3),
                        d95_gy: round(v.d95_gy, 3),
                        d2_gy: round(v.d2_gy, 3),
                        v95_pct: v.v95_pct.map(|x| round(x, 2)),
                        volume_cc: round(v.volume_cc, 3),
                        planes_outside_dose: v.planes_outside_dose,
                        dose_grid_mm,
                    });
            }
        }
    }
    out.unmeasured = unmeasured
        .into_iter()
        .map(|(r, n)| (r.to_string(), n))
        .collect();
    out
}
