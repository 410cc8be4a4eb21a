//! DICOM radiotherapy sets: for every patient with radiotherapy, a planning CT series, one or
//! more RT Structure Sets (several observers for some patients), one RT Plan and one RT Dose
//! per course, under `dicom/P<nnnnnn>/` (an opaque counter of the export, never an
//! identifier).
//!
//! The files carry what a pseudonymiser must remove: the patient's name (`LAST^FIRST`, as in
//! the HIS export), the MRN as Patient ID (and for some patients the national number in Other
//! Patient IDs), birth date, sex, the institution, referring physician, operators, reviewers,
//! ROI interpreters (observers), station names, accession number and study id. The Specific
//! Character Set is ISO_IR 100 when every name fits Latin-1, else ISO_IR 192 (UTF-8).
//!
//! Geometry: a thorax phantom ([`anatomy`]) imaged by `slices` axial slices of
//! `matrix x matrix` 16-bit pixels over a 480 mm field of view; contours are closed planar
//! polygons on the CT slice positions. The truth file records, per structure set, the observer
//! (index), the date, and per ROI its name, intended TG-263 name and the volume in cc computed
//! from the polygons as written (shoelace area x slice spacing, summed; the body outline has
//! the airway as a hole on every plane, a second contour inside the first, subtracted).
//!
//! Inter-observer variability: each observer has a fixed bias (scale, shift, cranio-caudal
//! extent) and adds per-set noise; structure sets dated 2016 or later keep only
//! [`rois::CONSENSUS_FACTOR`] of it (the ESTRO consensus effect).

mod agreement;
mod anatomy;
mod enc;
mod rois;
mod tags;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::NaiveDate;
use serde::Serialize;

use crate::cohort::{
    dicom_uid, plus, Patient, RtCourse, Sex, STREAM_DICOM, STREAM_DICOM_DIRT, STREAM_DICOM_NOISE,
};
use crate::rng::{hash, Rng};

use anatomy::{polygon_area, Anatomy, RoiKind, Shape};
use enc::{ds, quantise, write_part10, Charset, DataSet, Tag};
use rois::{Observer, DOSIMETRISTS, OBSERVERS, RADIOGRAPHERS, REFERRING};
use tags::*;

/// CT Image Storage.
pub const CT_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
/// RT Structure Set Storage.
pub const RT_STRUCTURE_SET_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.481.3";
/// RT Plan Storage.
pub const RT_PLAN_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.481.5";
/// RT Dose Storage.
pub const RT_DOSE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.481.2";
/// Detached Study Management (retired), the SOP class RT Referenced Study Sequence names.
const DETACHED_STUDY_MANAGEMENT: &str = "1.2.840.10008.3.1.2.3.1";

/// Default number of CT slices: 64 over the 160 mm covered, 2.5 mm apart.
pub const DEFAULT_SLICES: u32 = 64;
/// Default CT matrix (rows = columns): 192 over the 480 mm field of view, 2.5 mm pixels, fine
/// enough for millimetre surface distances between observers' contours.
pub const DEFAULT_MATRIX: u32 = 192;
/// Allowed CT slice counts.
pub const SLICES_RANGE: std::ops::RangeInclusive<u32> = 4..=512;
/// Allowed CT matrix sizes.
pub const MATRIX_RANGE: std::ops::RangeInclusive<u32> = 16..=1024;

/// Field of view of the CT (mm).
const FOV_MM: f64 = 480.0;
/// Cranio-caudal coverage aimed at (mm).
const COVERAGE_MM: f64 = 160.0;
/// Spacing of the dose grid (mm; the CT's pixel when that is coarser).
const DOSE_SPACING_MM: f64 = 4.0;
/// Dose grid scaling (Gy per stored unit).
const DOSE_SCALING: f64 = 0.001;
/// Points of a full contour ellipse (half ellipses get half as many arcs, plus one).
const CONTOUR_POINTS: u32 = 32;

/// How many files of each kind were written.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct DicomCounts {
    pub patients: u64,
    pub files: u64,
    pub ct: u64,
    pub rtstruct: u64,
    pub rtplan: u64,
    pub rtdose: u64,
}

/// The DICOM part of one patient's truth line.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DicomTruth {
    /// The patient's folder, relative to the output directory.
    pub folder: String,
    /// DICOM files written for the patient.
    pub files: u64,
    /// Specific Character Set of the patient's files.
    pub charset: &'static str,
    pub study_instance_uid: String,
    pub frame_of_reference_uid: String,
    pub ct: CtTruth,
    /// True when Other Patient IDs Sequence carries the national number.
    pub national_number_in_other_ids: bool,
    pub structure_sets: Vec<StructureSetTruth>,
    pub plans: Vec<PlanTruth>,
    /// The expected inter-observer agreement of every pair of the patient's structure sets on
    /// every structure both drew ([`agreement`]).
    pub agreement: Vec<agreement::AgreementTruth>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct CtTruth {
    pub series_instance_uid: String,
    pub date: String,
    pub slices: u32,
    pub rows: u32,
    pub columns: u32,
    pub pixel_spacing_mm: f64,
    pub slice_spacing_mm: f64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct StructureSetTruth {
    pub file: String,
    pub sop_instance_uid: String,
    /// Index of the observer in the generator's list (never the name).
    pub observer: usize,
    pub date: String,
    /// True for the set the plans use (the treating physician's).
    pub clinical: bool,
    pub rois: Vec<RoiTruth>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct RoiTruth {
    pub number: i64,
    /// The name as typed.
    pub name: String,
    /// The intended TG-263 name.
    pub tg263: String,
    pub interpreted_type: &'static str,
    /// Sum over contours of polygon area x slice spacing, in cc (rounded to 0.001).
    pub volume_cc: f64,
    pub contours: usize,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct PlanTruth {
    pub file: String,
    pub sop_instance_uid: String,
    pub target: &'static str,
    pub date: String,
    pub total_dose_gy: f64,
    pub fractions: u32,
    pub dose_file: String,
    pub dose_sop_instance_uid: String,
    /// The expected dose-volume metrics of the clinical structure set's ROIs under the dose.
    pub dvh: Vec<DvhTruth>,
}

/// One ROI's expected dose-volume metrics ([`agreement::dvh`]).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DvhTruth {
    pub tg263: String,
    pub dmean_gy: f64,
    pub d95_gy: f64,
    pub d2_gy: f64,
    pub v95_pct: f64,
}

/// The DICOM writer of a run.
pub(crate) struct Dicom {
    out: PathBuf,
    seed: u64,
    slices: u32,
    matrix: u32,
    institution: String,
    station: String,
    dirty: bool,
    dirt_rng: Rng,
    /// Patients with DICOM seen so far (reservoir sampling of the dirty file).
    seen: u64,
    truncate: Option<(String, u64)>,
    junk_folder: Option<String>,
    pub counts: DicomCounts,
}

/// DICOM dirt that was injected (paths relative to the output directory).
#[derive(Debug, Clone, Default)]
pub(crate) struct DicomDirt {
    pub truncated: Option<String>,
    pub not_dicom: Option<String>,
}

fn da(d: NaiveDate) -> String {
    d.format("%Y%m%d").to_string()
}

fn iso(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

fn tm(r: &mut Rng) -> String {
    format!(
        "{:02}{:02}{:02}",
        r.range(8, 17),
        r.range(0, 59),
        r.range(0, 59)
    )
}

/// The CT geometry.
struct Grid {
    matrix: u32,
    pixel: f64,
    x0: f64,
    y0: f64,
    dz: f64,
    /// Slice positions (quantised as written).
    z: Vec<f64>,
}

impl Grid {
    fn new(r: &mut Rng, slices: u32, matrix: u32) -> Grid {
        let pixel = quantise(FOV_MM / f64::from(matrix), 4);
        let half = (f64::from(matrix) - 1.0) / 2.0 * pixel;
        let dz = ((COVERAGE_MM / f64::from(slices) * 2.0).round() / 2.0).clamp(0.5, 25.0);
        let table = r.range(-80, 80) as f64 / 2.0;
        let z0 = -(f64::from(slices) - 1.0) / 2.0 * dz + table;
        Grid {
            matrix,
            pixel,
            x0: quantise(-half, 4),
            y0: quantise(-20.0 - half, 4),
            dz,
            z: (0..slices)
                .map(|k| quantise(z0 + f64::from(k) * dz, 2))
                .collect(),
        }
    }

    /// Cranio-caudal fraction of slice `k` (0 inferior, 1 superior).
    fn u(&self, k: usize) -> f64 {
        k as f64 / (self.z.len() - 1) as f64
    }

    /// Millimetres between fractions 0 and 1.
    fn slab(&self) -> f64 {
        self.z[self.z.len() - 1] - self.z[0]
    }

    /// The z of fraction `u`.
    fn z_at(&self, u: f64) -> f64 {
        self.z[0] + u * self.slab()
    }
}

/// What every object of a patient shares.
struct Common {
    charset: Charset,
    patient_name: String,
    mrn: String,
    birth: String,
    sex: &'static str,
    /// Patient Study module: age at the CT (`nnnY`), size (m) and weight (kg).
    age: String,
    size_m: f64,
    weight_kg: f64,
    niss: Option<String>,
    institution: String,
    station: String,
    study_uid: String,
    study_date: String,
    study_time: String,
    accession: String,
    study_id: String,
    referring: &'static str,
    for_uid: String,
}

/// One series' identity.
struct SeriesId<'a> {
    modality: &'static str,
    uid: &'a str,
    number: i64,
    date: &'a str,
    time: &'a str,
    description: &'a str,
    operator: &'a str,
    station: &'a str,
    model: &'static str,
}

impl Common {
    /// Patient, General Study, (RT) Series, General Equipment and SOP Common attributes.
    fn base(&self, s: &SeriesId<'_>, sop_class: &str, sop_uid: &str, instance: i64) -> DataSet {
        let mut d = DataSet::new(self.charset);
        d.str(SPECIFIC_CHARACTER_SET, self.charset.term());
        d.str(INSTANCE_CREATION_DATE, s.date);
        d.str(INSTANCE_CREATION_TIME, s.time);
        d.uid(SOP_CLASS_UID, sop_class);
        d.uid(SOP_INSTANCE_UID, sop_uid);
        d.str(STUDY_DATE, &self.study_date);
        d.str(SERIES_DATE, s.date);
        d.str(STUDY_TIME, &self.study_time);
        d.str(SERIES_TIME, s.time);
        d.str(ACCESSION_NUMBER, &self.accession);
        d.str(MODALITY, s.modality);
        d.str(MANUFACTURER, "Synthetica Medical");
        d.str(INSTITUTION_NAME, &self.institution);
        d.str(REFERRING_PHYSICIAN_NAME, self.referring);
        d.str(STATION_NAME, s.station);
        d.str(STUDY_DESCRIPTION, "CT de planification RT");
        d.str(SERIES_DESCRIPTION, s.description);
        d.str(INSTITUTIONAL_DEPARTMENT_NAME, "Radiothérapie");
        d.str(OPERATORS_NAME, s.operator);
        d.str(MANUFACTURER_MODEL_NAME, s.model);
        d.str(PATIENT_NAME, &self.patient_name);
        d.str(PATIENT_ID, &self.mrn);
        d.str(ISSUER_OF_PATIENT_ID, &self.institution);
        d.str(PATIENT_BIRTH_DATE, &self.birth);
        d.str(PATIENT_SEX, self.sex);
        d.str(PATIENT_AGE, &self.age);
        d.dec(PATIENT_SIZE, &[self.size_m], 2);
        d.dec(PATIENT_WEIGHT, &[self.weight_kg], 1);
        if let Some(niss) = &self.niss {
            let mut item = d.item();
            item.str(PATIENT_ID, niss);
            item.str(ISSUER_OF_PATIENT_ID, "BE-NISS");
            item.str(TYPE_OF_PATIENT_ID, "TEXT");
            d.seq(OTHER_PATIENT_IDS_SEQUENCE, vec![item]);
        }
        d.str(SOFTWARE_VERSIONS, "registrar-synth");
        d.uid(STUDY_INSTANCE_UID, &self.study_uid);
        d.uid(SERIES_INSTANCE_UID, s.uid);
        d.str(STUDY_ID, &self.study_id);
        d.int(SERIES_NUMBER, s.number);
        d.int(INSTANCE_NUMBER, instance);
        d
    }

    /// The Frame of Reference module.
    fn frame(&self, d: &mut DataSet) {
        d.uid(FRAME_OF_REFERENCE_UID, &self.for_uid);
        d.str(POSITION_REFERENCE_INDICATOR, "");
    }
}

/// One ROI of a structure set, drawn.
struct DrawnRoi {
    number: i64,
    kind: RoiKind,
    name: String,
    tg263: String,
    /// (slice index, polygon).
    contours: Vec<(usize, Vec<[f64; 2]>)>,
    volume_cc: f64,
}

/// The airway hole of a body contour: a circle of 6 mm radius (16 points) around the
/// polygon's vertex centroid, inside any convex outline of more than 12 mm.
fn airway(poly: &[[f64; 2]]) -> Vec<[f64; 2]> {
    let n = poly.len().max(1) as f64;
    let cx = poly.iter().map(|p| p[0]).sum::<f64>() / n;
    let cy = poly.iter().map(|p| p[1]).sum::<f64>() / n;
    (0..16)
        .map(|i| {
            let a = std::f64::consts::TAU * f64::from(i) / 16.0;
            [
                ((cx + 6.0 * a.cos()) * 100.0).round() / 100.0,
                ((cy + 6.0 * a.sin()) * 100.0).round() / 100.0,
            ]
        })
        .collect()
}

/// The contours of `shape` on the slices of `grid` (at least one: the slice nearest the
/// middle of a shape that falls between slices).
fn contours(shape: &Shape, grid: &Grid) -> Vec<(usize, Vec<[f64; 2]>)> {
    let mut out: Vec<(usize, Vec<[f64; 2]>)> = (0..grid.z.len())
        .filter_map(|k| shape.polygon(grid.u(k), CONTOUR_POINTS).map(|p| (k, p)))
        .collect();
    if out.is_empty() {
        let mid = ((shape.u0 + shape.u1) / 2.0).clamp(0.0, 1.0);
        let k = (mid * (grid.z.len() - 1) as f64).round() as usize;
        let u = grid.u(k);
        let s = Shape {
            u0: u,
            u1: u,
            ..*shape
        };
        out.extend(s.polygon(u, CONTOUR_POINTS).map(|p| (k, p)));
    }
    out
}

/// The expected agreement of every pair of structure sets on every structure both drew.
fn expected_agreement(
    grid: &Grid,
    observers: &[Observer],
    uids: &[String],
    sets: &[Vec<DrawnRoi>],
) -> Vec<agreement::AgreementTruth> {
    let g = agreement::Geometry {
        x0: grid.x0,
        y0: grid.y0,
        pixel: grid.pixel,
        matrix: grid.matrix as usize,
        z: &grid.z,
    };
    let r4 = |v: f64| (v * 10_000.0).round() / 10_000.0;
    let mut out = Vec::new();
    for a in 0..sets.len() {
        for b in a + 1..sets.len() {
            for ra in &sets[a] {
                let Some(rb) = sets[b].iter().find(|r| r.tg263 == ra.tg263) else {
                    continue;
                };
                let Some([dice, hd95, hd, msd, va, vb]) =
                    agreement::measure(&g, &ra.contours, &rb.contours)
                else {
                    continue;
                };
                out.push(agreement::AgreementTruth {
                    set_a: uids[a].clone(),
                    set_b: uids[b].clone(),
                    observer_a: observers[a].index,
                    observer_b: observers[b].index,
                    tg263: ra.tg263.clone(),
                    dice: r4(dice),
                    hd95_mm: r4(hd95),
                    hd_max_mm: r4(hd),
                    msd_mm: r4(msd),
                    volume_a_cc: r4(va),
                    volume_b_cc: r4(vb),
                });
            }
        }
    }
    out
}

impl Dicom {
    pub(crate) fn create(
        out: &Path,
        seed: u64,
        slices: u32,
        matrix: u32,
        institution: &str,
        slug: &str,
        dirty: bool,
    ) -> Result<Dicom> {
        std::fs::create_dir_all(out.join("dicom")).context("cannot create dicom/")?;
        let initials: String = slug
            .split('-')
            .filter_map(|w| w.chars().next())
            .take(4)
            .collect::<String>()
            .to_ascii_uppercase();
        Ok(Dicom {
            out: out.to_path_buf(),
            seed,
            slices,
            matrix,
            institution: institution.to_string(),
            station: initials,
            dirty,
            dirt_rng: Rng::stream(seed, u64::MAX, STREAM_DICOM_DIRT),
            seen: 0,
            truncate: None,
            junk_folder: None,
            counts: DicomCounts::default(),
        })
    }

    /// Writes `data` as a Part 10 file; with `cut_at`, returns the offset of the middle of
    /// that element's value (where a truncation would cut).
    fn write(
        &mut self,
        rel: &str,
        sop_class: &str,
        sop_uid: &str,
        data: &DataSet,
        cut_at: Option<Tag>,
    ) -> Result<Option<u64>> {
        let bytes = data.to_bytes();
        let path = self.out.join(rel);
        let mut w = BufWriter::with_capacity(
            bytes.len() + 512,
            File::create(&path).with_context(|| format!("cannot create {rel}"))?,
        );
        let offset = write_part10(&mut w, sop_class, sop_uid, &bytes)?;
        w.flush()?;
        self.counts.files += 1;
        Ok(cut_at
            .and_then(|t| data.value_span(t))
            .map(|(o, len)| (offset + o + len / 2) as u64))
    }

    /// Writes the DICOM set of one patient (`position`: 1-based place in this export, which
    /// names the folder). Returns None for patients without radiotherapy.
    pub(crate) fn write_patient(
        &mut self,
        p: &Patient,
        position: u64,
    ) -> Result<Option<DicomTruth>> {
        let Some(main) = p.rt.first() else {
            return Ok(None);
        };
        let seed = self.seed;
        let number = p.number;
        let uid = |tag: u64| dicom_uid(seed, number, tag);
        let mut r = Rng::stream(seed, number, STREAM_DICOM);
        let mut noise = Rng::stream(seed, number, STREAM_DICOM_NOISE);
        let mastectomy = p.surgery.as_ref().is_some_and(|s| s.mastectomy);
        let anat = Anatomy::new(
            &mut r,
            p.left,
            mastectomy,
            p.weight10 as f64 / 10.0,
            p.height_cm as f64,
        );
        let grid = Grid::new(&mut r, self.slices, self.matrix);

        // Who: observers (the first is the treating physician), staff.
        let n_sets = if r.chance(0.2) { r.range(2, 4) } else { 1 } as usize;
        let mut observers: Vec<usize> = Vec::with_capacity(n_sets);
        while observers.len() < n_sets {
            let o = r.below(OBSERVERS.len() as u64) as usize;
            if !observers.contains(&o) {
                observers.push(o);
            }
        }
        let observers: Vec<Observer> = observers
            .into_iter()
            .map(|o| Observer::new(seed, o))
            .collect();
        let referring = *r.pick(REFERRING);
        let radiographer = *r.pick(RADIOGRAPHERS);
        let dosimetrist = *r.pick(DOSIMETRISTS);
        let niss_in_other_ids = r.chance(0.25);
        let nodal = p.ctnm.n != "N0";
        let imn = nodal && r.chance(0.5);

        let patient_name = format!("{}^{}", p.last_name, p.first_name);
        let charset = Charset::for_texts(
            [
                patient_name.as_str(),
                self.institution.as_str(),
                referring,
                radiographer,
                dosimetrist,
            ]
            .into_iter()
            .chain(observers.iter().map(|o| o.name)),
        );

        // The planning CT: the study the FHIR ImagingStudy describes.
        let ct = p.imaging.iter().find(|i| i.modality == "CT");
        let ct_date = ct.map_or_else(|| plus(main.start, -10), |i| i.date);
        let study_uid = ct.map_or_else(|| uid(0xD1C0_0002), |i| i.study_uid.clone());
        let ct_series_uid = ct.map_or_else(|| uid(0xD1C0_0003), |i| i.series_uid.clone());
        let study_time = tm(&mut r);
        let c = Common {
            charset,
            patient_name,
            mrn: p.mrn.clone(),
            birth: da(p.birth_date),
            sex: if p.sex == Sex::Female { "F" } else { "M" },
            age: format!("{:03}Y", ct_date.years_since(p.birth_date).unwrap_or(0)),
            size_m: p.height_cm as f64 / 100.0,
            weight_kg: p.weight10 as f64 / 10.0,
            niss: niss_in_other_ids.then(|| p.niss.clone()),
            // A LO holds 64 characters at most.
            institution: self.institution.chars().take(64).collect(),
            station: self.station.clone(),
            study_uid: study_uid.clone(),
            study_date: da(ct_date),
            study_time: study_time.clone(),
            accession: format!("A{:09}", hash(&[seed, number, 0xACC]) % 1_000_000_000),
            study_id: format!("{}", 1 + hash(&[seed, number, 0x57D]) % 99_999),
            referring,
            for_uid: uid(0xD1C0_0001),
        };

        let folder = format!("dicom/P{position:06}");
        std::fs::create_dir_all(self.out.join(&folder))
            .with_context(|| format!("cannot create {folder}"))?;

        // Dirt: this patient may become the holder of the truncated file (reservoir sampling,
        // so that one file of the whole run is chosen with memory that does not grow).
        let mut cut_ct: Option<usize> = None;
        let mut cut_rs = false;
        if self.dirty {
            self.seen += 1;
            let take = self.dirt_rng.below(self.seen) == 0;
            let what = self.dirt_rng.below(2);
            let slice = self.dirt_rng.below(u64::from(self.slices)) as usize;
            if self.dirt_rng.below(self.seen) == 0 {
                self.junk_folder = Some(folder.clone());
            }
            if take {
                if what == 0 {
                    cut_ct = Some(slice);
                } else {
                    cut_rs = true;
                }
            }
        }
        let files_before = self.counts.files;

        // CT series.
        let ct_sop: Vec<String> = (0..grid.z.len())
            .map(|k| uid(0xD1C0_1000 + k as u64))
            .collect();
        let ct_station = format!("{}CT01", c.station);
        let ct_time = study_time.clone();
        let ct_date_s = da(ct_date);
        for (k, z) in grid.z.iter().enumerate() {
            let series = SeriesId {
                modality: "CT",
                uid: &ct_series_uid,
                number: 2,
                date: &ct_date_s,
                time: &ct_time,
                description: "Thorax RT 3D",
                operator: radiographer,
                station: &ct_station,
                model: "Phantom CT 16",
            };
            let mut d = c.base(&series, CT_IMAGE_STORAGE, &ct_sop[k], k as i64 + 1);
            c.frame(&mut d);
            d.strs(IMAGE_TYPE, &["ORIGINAL", "PRIMARY", "AXIAL"]);
            d.str(ACQUISITION_DATE, &ct_date_s);
            d.str(CONTENT_DATE, &ct_date_s);
            d.str(ACQUISITION_TIME, &ct_time);
            d.str(CONTENT_TIME, &ct_time);
            d.str(BODY_PART_EXAMINED, "CHEST");
            d.dec(SLICE_THICKNESS, &[grid.dz], 2);
            d.str(KVP, "120");
            d.str(DEVICE_SERIAL_NUMBER, "SYN0001");
            d.str(PROTOCOL_NAME, "RT Sein");
            d.str(CONVOLUTION_KERNEL, "STANDARD");
            d.str(PATIENT_POSITION, "HFS");
            d.int(ACQUISITION_NUMBER, 1);
            d.dec(IMAGE_POSITION_PATIENT, &[grid.x0, grid.y0, *z], 4);
            d.dec(
                IMAGE_ORIENTATION_PATIENT,
                &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
                0,
            );
            d.dec(SLICE_LOCATION, &[*z], 2);
            d.us(SAMPLES_PER_PIXEL, &[1]);
            d.str(PHOTOMETRIC_INTERPRETATION, "MONOCHROME2");
            d.us(ROWS, &[grid.matrix as u16]);
            d.us(COLUMNS, &[grid.matrix as u16]);
            d.dec(PIXEL_SPACING, &[grid.pixel, grid.pixel], 4);
            d.us(BITS_ALLOCATED, &[16]);
            d.us(BITS_STORED, &[12]);
            d.us(HIGH_BIT, &[11]);
            d.us(PIXEL_REPRESENTATION, &[0]);
            d.dec(WINDOW_CENTER, &[40.0], 0);
            d.dec(WINDOW_WIDTH, &[400.0], 0);
            d.dec(RESCALE_INTERCEPT, &[-1024.0], 0);
            d.dec(RESCALE_SLOPE, &[1.0], 0);
            d.str(RESCALE_TYPE, "HU");
            let section = anat.slice(grid.u(k));
            let m = grid.matrix as usize;
            let mut px = Vec::with_capacity(2 * m * m);
            for i in 0..m {
                let y = grid.y0 + i as f64 * grid.pixel;
                for j in 0..m {
                    let x = grid.x0 + j as f64 * grid.pixel;
                    let hu = section.hu(x, y) + noise.range(-12, 12) as i32;
                    px.extend_from_slice(&((hu + 1024).clamp(0, 4095) as u16).to_le_bytes());
                }
            }
            d.pixels(PIXEL_DATA, &px);
            let rel = format!("{folder}/CT{:04}.dcm", k + 1);
            let cut = self.write(
                &rel,
                CT_IMAGE_STORAGE,
                &ct_sop[k],
                &d,
                (cut_ct == Some(k)).then_some(PIXEL_DATA),
            )?;
            if let Some(cut) = cut {
                self.truncate = Some((rel, cut));
            }
            self.counts.ct += 1;
        }

        // Which structures: targets of every course, then organs.
        let mut targets: Vec<RoiKind> = Vec::new();
        if mastectomy {
            targets.extend([RoiKind::CtvChestWall, RoiKind::PtvChestWall]);
        } else {
            targets.extend([RoiKind::CtvBreast, RoiKind::PtvBreast]);
        }
        if nodal {
            targets.extend([
                RoiKind::CtvL1,
                RoiKind::CtvL2,
                RoiKind::CtvL3,
                RoiKind::CtvL4,
            ]);
            if imn {
                targets.push(RoiKind::CtvImn);
            }
        }
        let boost = p.rt.iter().any(|c| c.target == "TUMOUR_BED");
        if boost {
            targets.extend([RoiKind::CtvTumourBed, RoiKind::PtvTumourBed]);
        }

        // Structure sets.
        let mut sets: Vec<StructureSetTruth> = Vec::with_capacity(observers.len());
        let mut clinical_rois: Vec<(RoiKind, i64)> = Vec::new();
        let mut clinical_ss_date = ct_date;
        let mut rs_uids: Vec<String> = Vec::new();
        let mut all_drawn: Vec<Vec<DrawnRoi>> = Vec::with_capacity(observers.len());
        for (j, o) in observers.iter().enumerate() {
            let ss_date = if j == 0 {
                plus(ct_date, r.range(1, 3))
            } else {
                plus(ct_date, r.range(1, 30))
            };
            if j == 0 {
                clinical_ss_date = ss_date;
            }
            let year = chrono::Datelike::year(&ss_date);
            let set_noise = [
                0.08 * (r.unit() - 0.5),
                4.0 * (r.unit() - 0.5),
                4.0 * (r.unit() - 0.5),
            ];
            let mut kinds: Vec<(RoiKind, bool)> = Vec::new();
            if o.external {
                kinds.push((RoiKind::External, p.left));
            }
            for &t in &targets {
                if o.ptv || t.interpreted_type() != "PTV" {
                    kinds.push((t, p.left));
                }
            }
            kinds.push((RoiKind::Heart, p.left));
            kinds.push((RoiKind::Lung, p.left));
            if o.contra_lung {
                kinds.push((RoiKind::Lung, !p.left));
            }
            if o.contra_breast {
                kinds.push((RoiKind::Breast, !p.left));
            }
            if o.cord {
                kinds.push((RoiKind::SpinalCord, p.left));
            }
            let mut drawn: Vec<DrawnRoi> = Vec::with_capacity(kinds.len());
            for (i, (kind, left)) in kinds.into_iter().enumerate() {
                let Some(reference) = anat.shape(kind, left) else {
                    continue;
                };
                let roi_noise = [
                    set_noise[0] + 0.04 * (r.unit() - 0.5),
                    set_noise[1],
                    set_noise[2],
                ];
                let shape = o.draw(kind, &reference, year, roi_noise);
                let mut cs = contours(&shape, &grid);
                let mut area: f64 = cs.iter().map(|(_, poly)| polygon_area(poly)).sum();
                if kind == RoiKind::External {
                    // The airway as a hole in the body outline, as threshold-based body
                    // contours of real planning systems have it: a second contour inside
                    // the first on the same plane, subtracted (even-odd).
                    let holes: Vec<(usize, Vec<[f64; 2]>)> =
                        cs.iter().map(|(k, poly)| (*k, airway(poly))).collect();
                    area -= holes.iter().map(|(_, h)| polygon_area(h)).sum::<f64>();
                    cs.extend(holes);
                    cs.sort_by_key(|(k, _)| *k);
                }
                drawn.push(DrawnRoi {
                    number: i as i64 + 1,
                    kind,
                    name: o.roi_name(kind, left, year),
                    tg263: rois::tg263(kind, left),
                    contours: cs,
                    volume_cc: (area * grid.dz / 1000.0 * 1000.0).round() / 1000.0,
                });
            }
            if j == 0 {
                clinical_rois = drawn.iter().map(|d| (d.kind, d.number)).collect();
            }
            let ss_uid = uid(0xD1C0_2100 + j as u64);
            let series_uid = uid(0xD1C0_2000 + j as u64);
            let ss_date_s = da(ss_date);
            let ss_time = tm(&mut r);
            let series = SeriesId {
                modality: "RTSTRUCT",
                uid: &series_uid,
                number: 100 + j as i64,
                date: &ss_date_s,
                time: &ss_time,
                description: if j == 0 {
                    "Contours"
                } else {
                    "Contours étude"
                },
                operator: o.name,
                station: &format!("{}TPS01", c.station),
                model: "Phantom TPS",
            };
            let mut d = c.base(&series, RT_STRUCTURE_SET_STORAGE, &ss_uid, 1);
            c.frame(&mut d);
            d.str(STRUCTURE_SET_LABEL, if j == 0 { "RT_SEIN" } else { "OBS" });
            d.str(STRUCTURE_SET_NAME, &format!("Contours {}", j + 1));
            d.str(STRUCTURE_SET_DATE, &ss_date_s);
            d.str(STRUCTURE_SET_TIME, &ss_time);
            // Referenced Frame of Reference -> Study -> Series -> every CT image.
            let image_ref = |d: &DataSet, k: usize| {
                let mut item = d.item();
                item.uid(REFERENCED_SOP_CLASS_UID, CT_IMAGE_STORAGE);
                item.uid(REFERENCED_SOP_INSTANCE_UID, &ct_sop[k]);
                item
            };
            let mut series_item = d.item();
            series_item.uid(SERIES_INSTANCE_UID, &ct_series_uid);
            series_item.seq(
                CONTOUR_IMAGE_SEQUENCE,
                (0..grid.z.len()).map(|k| image_ref(&d, k)).collect(),
            );
            let mut study_item = d.item();
            study_item.uid(REFERENCED_SOP_CLASS_UID, DETACHED_STUDY_MANAGEMENT);
            study_item.uid(REFERENCED_SOP_INSTANCE_UID, &study_uid);
            study_item.seq(RT_REFERENCED_SERIES_SEQUENCE, vec![series_item]);
            let mut for_item = d.item();
            for_item.uid(FRAME_OF_REFERENCE_UID, &c.for_uid);
            for_item.seq(RT_REFERENCED_STUDY_SEQUENCE, vec![study_item]);
            d.seq(REFERENCED_FRAME_OF_REFERENCE_SEQUENCE, vec![for_item]);
            let mut roi_items = Vec::with_capacity(drawn.len());
            let mut contour_items = Vec::with_capacity(drawn.len());
            let mut observation_items = Vec::with_capacity(drawn.len());
            for (i, roi) in drawn.iter().enumerate() {
                let mut item = d.item();
                item.int(ROI_NUMBER, roi.number);
                item.uid(REFERENCED_FRAME_OF_REFERENCE_UID, &c.for_uid);
                item.str(ROI_NAME, &roi.name);
                item.str(ROI_GENERATION_ALGORITHM, "MANUAL");
                roi_items.push(item);

                let mut item = d.item();
                item.ints(ROI_DISPLAY_COLOR, &roi.kind.color());
                let mut cs = Vec::with_capacity(roi.contours.len());
                for (n, (k, poly)) in roi.contours.iter().enumerate() {
                    let mut ci = d.item();
                    ci.seq(CONTOUR_IMAGE_SEQUENCE, vec![image_ref(&d, *k)]);
                    ci.str(CONTOUR_GEOMETRIC_TYPE, "CLOSED_PLANAR");
                    ci.int(NUMBER_OF_CONTOUR_POINTS, poly.len() as i64);
                    ci.int(CONTOUR_NUMBER, n as i64 + 1);
                    let mut values = Vec::with_capacity(poly.len() * 3);
                    for [x, y] in poly {
                        values.extend([*x, *y, grid.z[*k]]);
                    }
                    ci.dec(CONTOUR_DATA, &values, 2);
                    cs.push(ci);
                }
                item.seq(CONTOUR_SEQUENCE, cs);
                item.int(REFERENCED_ROI_NUMBER, roi.number);
                contour_items.push(item);

                let mut item = d.item();
                item.int(OBSERVATION_NUMBER, i as i64 + 1);
                item.int(REFERENCED_ROI_NUMBER, roi.number);
                item.str(RT_ROI_INTERPRETED_TYPE, roi.kind.interpreted_type());
                item.str(ROI_INTERPRETER, o.name);
                observation_items.push(item);
            }
            d.seq(STRUCTURE_SET_ROI_SEQUENCE, roi_items);
            d.seq(ROI_CONTOUR_SEQUENCE, contour_items);
            d.seq(RT_ROI_OBSERVATIONS_SEQUENCE, observation_items);
            d.str(
                APPROVAL_STATUS,
                if j == 0 { "APPROVED" } else { "UNAPPROVED" },
            );
            if j == 0 {
                d.str(REVIEW_DATE, &ss_date_s);
                d.str(REVIEW_TIME, &ss_time);
                d.str(REVIEWER_NAME, o.name);
            }
            let rel = format!("{folder}/RS{}.dcm", j + 1);
            let cut = self.write(
                &rel,
                RT_STRUCTURE_SET_STORAGE,
                &ss_uid,
                &d,
                (cut_rs && j == 0).then_some(ROI_CONTOUR_SEQUENCE),
            )?;
            if let Some(cut) = cut {
                self.truncate = Some((rel.clone(), cut));
            }
            self.counts.rtstruct += 1;
            sets.push(StructureSetTruth {
                file: rel,
                sop_instance_uid: ss_uid.clone(),
                observer: o.index,
                date: iso(ss_date),
                clinical: j == 0,
                rois: drawn
                    .iter()
                    .map(|roi| RoiTruth {
                        number: roi.number,
                        name: roi.name.clone(),
                        tg263: roi.tg263.clone(),
                        interpreted_type: roi.kind.interpreted_type(),
                        volume_cc: roi.volume_cc,
                        contours: roi.contours.len(),
                    })
                    .collect(),
            });
            rs_uids.push(ss_uid);
            all_drawn.push(drawn);
        }
        let agreement = if observers.len() > 1 {
            expected_agreement(&grid, &observers, &rs_uids, &all_drawn)
        } else {
            Vec::new()
        };

        // One plan and one dose per course.
        let mut plans = Vec::with_capacity(p.rt.len());
        let mut plan_date = plus(clinical_ss_date, r.range(1, 2));
        let treating = &observers[0];
        for (ci, course) in p.rt.iter().enumerate() {
            if ci > 0 {
                plan_date = plus(plan_date, r.range(0, 3));
            }
            let truth = self.plan_and_dose(
                &c,
                &mut r,
                &grid,
                &anat,
                PlanInput {
                    number,
                    folder: &folder,
                    index: ci,
                    course,
                    date: plan_date,
                    treating,
                    dosimetrist,
                    nodal,
                    structure_set_uid: &rs_uids[0],
                    clinical_rois: &clinical_rois,
                    clinical: &all_drawn[0],
                },
            )?;
            plans.push(truth);
        }

        self.counts.patients += 1;
        Ok(Some(DicomTruth {
            folder,
            files: self.counts.files - files_before,
            charset: charset.term(),
            study_instance_uid: study_uid,
            frame_of_reference_uid: c.for_uid.clone(),
            ct: CtTruth {
                series_instance_uid: ct_series_uid,
                date: iso(ct_date),
                slices: self.slices,
                rows: self.matrix,
                columns: self.matrix,
                pixel_spacing_mm: grid.pixel,
                slice_spacing_mm: grid.dz,
            },
            national_number_in_other_ids: niss_in_other_ids,
            structure_sets: sets,
            plans,
            agreement,
        }))
    }

    fn plan_and_dose(
        &mut self,
        c: &Common,
        r: &mut Rng,
        grid: &Grid,
        anat: &Anatomy,
        input: PlanInput<'_>,
    ) -> Result<PlanTruth> {
        let PlanInput {
            number,
            folder,
            index,
            course,
            date,
            treating,
            dosimetrist,
            nodal,
            structure_set_uid,
            clinical_rois,
            clinical,
        } = input;
        let uid = |tag: u64| dicom_uid(self.seed, number, tag);
        let boost = course.target == "TUMOUR_BED";
        let ci = index as u64;
        let plan_uid = uid(0xD1C0_3100 + ci);
        let plan_series = uid(0xD1C0_3000 + ci);
        let dose_uid = uid(0xD1C0_4100 + ci);
        let dose_series = uid(0xD1C0_4000 + ci);
        let dose_ref_uid = uid(0xD1C0_3200 + ci);
        let total_gy = f64::from(course.dose_cgy) / 100.0;
        let fractions = course.fractions;
        let per_fraction = total_gy / f64::from(fractions);
        let date_s = da(date);
        let time = tm(r);
        let (fr_side, en_side) = if anat.left { ("G", "L") } else { ("D", "R") };
        let label = match (boost, anat.mastectomy, treating.french) {
            (true, _, true) => format!("BOOST {fr_side}"),
            (true, _, false) => format!("BOOST {en_side}"),
            (false, true, true) => format!("PAROI {fr_side}"),
            (false, true, false) => format!("CW {en_side}"),
            (false, false, true) => format!("SEIN {fr_side}"),
            (false, false, false) => format!("BREAST {en_side}"),
        };
        let station = format!("{}TPS01", c.station);

        // Targets of the plan: its ROI in the clinical structure set, and the shapes it covers.
        let (ctv_kind, ptv_kind) = if boost {
            (RoiKind::CtvTumourBed, RoiKind::PtvTumourBed)
        } else if anat.mastectomy {
            (RoiKind::CtvChestWall, RoiKind::PtvChestWall)
        } else {
            (RoiKind::CtvBreast, RoiKind::PtvBreast)
        };
        let target_roi = clinical_rois
            .iter()
            .find(|(k, _)| *k == ptv_kind)
            .or_else(|| clinical_rois.iter().find(|(k, _)| *k == ctv_kind))
            .map_or(1, |(_, n)| *n);
        let ctv = anat.shape(ctv_kind, anat.left).expect("target exists");
        let mut covered = vec![ctv.grown(7.0, 0.04)];
        if nodal && !boost {
            for n in &anat.nodes {
                covered.push(n.grown(5.0, 0.03));
            }
        }

        // RT Plan.
        let series = SeriesId {
            modality: "RTPLAN",
            uid: &plan_series,
            number: 200 + index as i64,
            date: &date_s,
            time: &time,
            description: "Plan",
            operator: dosimetrist,
            station: &station,
            model: "Phantom TPS",
        };
        let mut d = c.base(&series, RT_PLAN_STORAGE, &plan_uid, 1);
        c.frame(&mut d);
        d.str(RT_PLAN_LABEL, &label);
        d.str(
            RT_PLAN_NAME,
            &format!("{label} {} Gy/{fractions} fr", ds(total_gy, 2)),
        );
        d.str(RT_PLAN_DATE, &date_s);
        d.str(RT_PLAN_TIME, &time);
        d.str(PLAN_INTENT, "CURATIVE");
        d.str(RT_PLAN_GEOMETRY, "PATIENT");
        let mut item = d.item();
        item.uid(REFERENCED_SOP_CLASS_UID, RT_STRUCTURE_SET_STORAGE);
        item.uid(REFERENCED_SOP_INSTANCE_UID, structure_set_uid);
        d.seq(REFERENCED_STRUCTURE_SET_SEQUENCE, vec![item]);
        // RT Prescription.
        let mut item = d.item();
        item.int(DOSE_REFERENCE_NUMBER, 1);
        item.uid(DOSE_REFERENCE_UID, &dose_ref_uid);
        item.str(DOSE_REFERENCE_STRUCTURE_TYPE, "VOLUME");
        item.int(REFERENCED_ROI_NUMBER, target_roi);
        item.str(DOSE_REFERENCE_DESCRIPTION, &label);
        item.str(DOSE_REFERENCE_TYPE, "TARGET");
        item.dec(TARGET_PRESCRIPTION_DOSE, &[total_gy], 2);
        d.seq(DOSE_REFERENCE_SEQUENCE, vec![item]);
        // RT Patient Setup.
        let mut item = d.item();
        item.int(PATIENT_SETUP_NUMBER, 1);
        item.str(PATIENT_POSITION, "HFS");
        item.str(SETUP_TECHNIQUE, "ISOCENTRIC");
        d.seq(PATIENT_SETUP_SEQUENCE, vec![item]);
        // Two tangential beams.
        let medial = if anat.left { 300.0 } else { 60.0 } + r.range(-8, 8) as f64;
        let lateral = (medial + 180.0 + r.range(-4, 4) as f64) % 360.0;
        let iso_z = grid.z_at((ctv.u0 + ctv.u1) / 2.0);
        let isocenter = [
            quantise(ctv.cx, 1),
            quantise(ctv.cy - 0.4 * ctv.ay, 1),
            quantise(iso_z, 1),
        ];
        let half_x = (ctv.ay + 25.0).min(200.0);
        let half_y = ((ctv.u1 - ctv.u0) * grid.slab() / 2.0 + 15.0).min(200.0);
        let mu = per_fraction * 100.0 / 2.0 * (1.04 + 0.08 * r.unit());
        let machine = if r.chance(0.5) { "LINAC1" } else { "LINAC2" };
        let mut beams = Vec::with_capacity(2);
        let mut beam_refs = Vec::with_capacity(2);
        for (b, (name, gantry)) in [("TG med", medial), ("TG lat", lateral)]
            .into_iter()
            .enumerate()
        {
            let number = b as i64 + 1;
            let mut beam = d.item();
            beam.int(BEAM_NUMBER, number);
            beam.str(BEAM_NAME, name);
            beam.str(BEAM_TYPE, "STATIC");
            beam.str(RADIATION_TYPE, "PHOTON");
            beam.str(TREATMENT_MACHINE_NAME, machine);
            beam.str(PRIMARY_DOSIMETER_UNIT, "MU");
            beam.dec(SOURCE_AXIS_DISTANCE, &[1000.0], 1);
            let mut x = beam.item();
            x.str(RT_BEAM_LIMITING_DEVICE_TYPE, "ASYMX");
            x.int(NUMBER_OF_LEAF_JAW_PAIRS, 1);
            let mut y = beam.item();
            y.str(RT_BEAM_LIMITING_DEVICE_TYPE, "ASYMY");
            y.int(NUMBER_OF_LEAF_JAW_PAIRS, 1);
            beam.seq(BEAM_LIMITING_DEVICE_SEQUENCE, vec![x, y]);
            beam.int(REFERENCED_PATIENT_SETUP_NUMBER, 1);
            beam.str(TREATMENT_DELIVERY_TYPE, "TREATMENT");
            beam.int(NUMBER_OF_WEDGES, 0);
            beam.int(NUMBER_OF_COMPENSATORS, 0);
            beam.int(NUMBER_OF_BOLI, 0);
            beam.int(NUMBER_OF_BLOCKS, 0);
            beam.dec(FINAL_CUMULATIVE_METERSET_WEIGHT, &[1.0], 1);
            beam.int(NUMBER_OF_CONTROL_POINTS, 2);
            let mut cp0 = beam.item();
            cp0.int(CONTROL_POINT_INDEX, 0);
            cp0.dec(NOMINAL_BEAM_ENERGY, &[6.0], 1);
            let mut jx = cp0.item();
            jx.str(RT_BEAM_LIMITING_DEVICE_TYPE, "ASYMX");
            jx.dec(LEAF_JAW_POSITIONS, &[-half_x, 20.0], 1);
            let mut jy = cp0.item();
            jy.str(RT_BEAM_LIMITING_DEVICE_TYPE, "ASYMY");
            jy.dec(LEAF_JAW_POSITIONS, &[-half_y, half_y], 1);
            cp0.seq(BEAM_LIMITING_DEVICE_POSITION_SEQUENCE, vec![jx, jy]);
            cp0.dec(GANTRY_ANGLE, &[gantry], 1);
            cp0.str(GANTRY_ROTATION_DIRECTION, "NONE");
            cp0.dec(BEAM_LIMITING_DEVICE_ANGLE, &[0.0], 1);
            cp0.str(BEAM_LIMITING_DEVICE_ROTATION_DIRECTION, "NONE");
            cp0.dec(PATIENT_SUPPORT_ANGLE, &[0.0], 1);
            cp0.str(PATIENT_SUPPORT_ROTATION_DIRECTION, "NONE");
            cp0.dec(TABLE_TOP_ECCENTRIC_ANGLE, &[0.0], 1);
            cp0.str(TABLE_TOP_ECCENTRIC_ROTATION_DIRECTION, "NONE");
            cp0.dec(TABLE_TOP_VERTICAL_POSITION, &[-150.0], 1);
            cp0.dec(TABLE_TOP_LONGITUDINAL_POSITION, &[800.0], 1);
            cp0.dec(TABLE_TOP_LATERAL_POSITION, &[0.0], 1);
            cp0.dec(ISOCENTER_POSITION, &isocenter, 1);
            cp0.dec(SOURCE_TO_SURFACE_DISTANCE, &[930.0 + 40.0 * r.unit()], 1);
            cp0.dec(CUMULATIVE_METERSET_WEIGHT, &[0.0], 1);
            cp0.fl(TABLE_TOP_PITCH_ANGLE, 0.0);
            cp0.str(TABLE_TOP_PITCH_ROTATION_DIRECTION, "NONE");
            cp0.fl(TABLE_TOP_ROLL_ANGLE, 0.0);
            cp0.str(TABLE_TOP_ROLL_ROTATION_DIRECTION, "NONE");
            let mut cp1 = beam.item();
            cp1.int(CONTROL_POINT_INDEX, 1);
            cp1.dec(CUMULATIVE_METERSET_WEIGHT, &[1.0], 1);
            beam.seq(CONTROL_POINT_SEQUENCE, vec![cp0, cp1]);
            beams.push(beam);
            let mut bref = d.item();
            bref.int(REFERENCED_BEAM_NUMBER, number);
            bref.dec(BEAM_DOSE, &[per_fraction / 2.0], 4);
            bref.dec(BEAM_METERSET, &[mu], 2);
            beam_refs.push(bref);
        }
        let mut fg = d.item();
        fg.int(FRACTION_GROUP_NUMBER, 1);
        fg.int(NUMBER_OF_FRACTIONS_PLANNED, i64::from(fractions));
        fg.int(NUMBER_OF_BEAMS, 2);
        fg.int(NUMBER_OF_BRACHY_APPLICATION_SETUPS, 0);
        fg.seq(REFERENCED_BEAM_SEQUENCE, beam_refs);
        d.seq(FRACTION_GROUP_SEQUENCE, vec![fg]);
        d.seq(BEAM_SEQUENCE, beams);
        d.str(APPROVAL_STATUS, "APPROVED");
        d.str(REVIEW_DATE, &date_s);
        d.str(REVIEW_TIME, &time);
        d.str(REVIEWER_NAME, treating.name);
        let plan_rel = format!("{folder}/RP{}.dcm", index + 1);
        self.write(&plan_rel, RT_PLAN_STORAGE, &plan_uid, &d, None)?;
        self.counts.rtplan += 1;

        // RT Dose on a grid of DOSE_SPACING_MM over the body outline (so the organs at risk
        // are inside it), on the CT slice positions.
        let body = anat
            .shape(RoiKind::External, anat.left)
            .expect("the body outline exists");
        let (xmin, xmax) = (body.cx - body.ax - 10.0, body.cx + body.ax + 10.0);
        let (ymin, ymax) = (body.cy - body.ay - 10.0, body.cy + body.ay + 10.0);
        let spacing = DOSE_SPACING_MM.max(grid.pixel);
        let cols = ((xmax - xmin) / spacing).ceil() as usize + 1;
        let rows = ((ymax - ymin) / spacing).ceil() as usize + 1;
        let ox = quantise(xmin, 2);
        let oy = quantise(ymin, 2);
        let mut values = Vec::with_capacity(2 * rows * cols * grid.z.len());
        let mut stored: Vec<u16> = Vec::with_capacity(rows * cols * grid.z.len());
        for k in 0..grid.z.len() {
            let u = grid.u(k);
            for i in 0..rows {
                let y = oy + i as f64 * spacing;
                for j in 0..cols {
                    let x = ox + j as f64 * spacing;
                    let dist = covered
                        .iter()
                        .map(|s| s.distance(x, y, u, grid.slab()))
                        .fold(f64::MAX, f64::min);
                    let gy = if dist <= 0.0 {
                        total_gy * (1.0 + 0.05 * (r.unit() - 0.3))
                    } else {
                        total_gy / (1.0 + (dist / 8.0) * (dist / 8.0))
                    };
                    let v = (gy / DOSE_SCALING).round().clamp(0.0, 65535.0) as u16;
                    values.extend_from_slice(&v.to_le_bytes());
                    stored.push(v);
                }
            }
        }
        let dose_geometry = agreement::DoseGeometry {
            x0: ox,
            y0: oy,
            spacing,
            rows,
            cols,
            scaling: DOSE_SCALING,
            values: &stored,
        };
        let dvh: Vec<DvhTruth> = clinical
            .iter()
            .filter_map(|roi| {
                let [dmean, d95, d2, v95] =
                    agreement::dvh(&dose_geometry, &roi.contours, total_gy)?;
                let r4 = |v: f64| (v * 10_000.0).round() / 10_000.0;
                Some(DvhTruth {
                    tg263: roi.tg263.clone(),
                    dmean_gy: r4(dmean),
                    d95_gy: r4(d95),
                    d2_gy: r4(d2),
                    v95_pct: r4(v95),
                })
            })
            .collect();
        let series = SeriesId {
            modality: "RTDOSE",
            uid: &dose_series,
            number: 300 + index as i64,
            date: &date_s,
            time: &time,
            description: "Dose",
            operator: dosimetrist,
            station: &station,
            model: "Phantom TPS",
        };
        let mut d = c.base(&series, RT_DOSE_STORAGE, &dose_uid, 1);
        c.frame(&mut d);
        d.str(CONTENT_DATE, &date_s);
        d.str(CONTENT_TIME, &time);
        d.str(SLICE_THICKNESS, "");
        d.dec(IMAGE_POSITION_PATIENT, &[ox, oy, grid.z[0]], 2);
        d.dec(
            IMAGE_ORIENTATION_PATIENT,
            &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            0,
        );
        d.us(SAMPLES_PER_PIXEL, &[1]);
        d.str(PHOTOMETRIC_INTERPRETATION, "MONOCHROME2");
        d.int(NUMBER_OF_FRAMES, grid.z.len() as i64);
        d.at(FRAME_INCREMENT_POINTER, GRID_FRAME_OFFSET_VECTOR);
        d.us(ROWS, &[rows as u16]);
        d.us(COLUMNS, &[cols as u16]);
        d.dec(PIXEL_SPACING, &[spacing, spacing], 2);
        d.us(BITS_ALLOCATED, &[16]);
        d.us(BITS_STORED, &[16]);
        d.us(HIGH_BIT, &[15]);
        d.us(PIXEL_REPRESENTATION, &[0]);
        d.str(DOSE_UNITS, "GY");
        d.str(DOSE_TYPE, "PHYSICAL");
        d.str(DOSE_SUMMATION_TYPE, "PLAN");
        let offsets: Vec<f64> = grid.z.iter().map(|z| z - grid.z[0]).collect();
        d.dec(GRID_FRAME_OFFSET_VECTOR, &offsets, 2);
        d.dec(DOSE_GRID_SCALING, &[DOSE_SCALING], 6);
        d.str(TISSUE_HETEROGENEITY_CORRECTION, "IMAGE");
        let mut item = d.item();
        item.uid(REFERENCED_SOP_CLASS_UID, RT_PLAN_STORAGE);
        item.uid(REFERENCED_SOP_INSTANCE_UID, &plan_uid);
        d.seq(REFERENCED_RT_PLAN_SEQUENCE, vec![item]);
        d.pixels(PIXEL_DATA, &values);
        let dose_rel = format!("{folder}/RD{}.dcm", index + 1);
        self.write(&dose_rel, RT_DOSE_STORAGE, &dose_uid, &d, None)?;
        self.counts.rtdose += 1;

        Ok(PlanTruth {
            file: plan_rel,
            sop_instance_uid: plan_uid,
            target: course.target,
            date: iso(date),
            total_dose_gy: total_gy,
            fractions,
            dose_file: dose_rel,
            dose_sop_instance_uid: dose_uid,
            dvh,
        })
    }

    /// Applies the run-level dirt (a truncated file, a file that is not DICOM) and says where.
    pub(crate) fn finish(mut self) -> Result<DicomDirt> {
        let mut dirt = DicomDirt::default();
        if !self.dirty {
            return Ok(dirt);
        }
        if let Some((rel, cut)) = self.truncate.take() {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(self.out.join(&rel))
                .with_context(|| format!("cannot open {rel}"))?;
            f.set_len(cut)?;
            dirt.truncated = Some(rel);
        }
        let jpeg = self.junk_folder.is_some() && self.dirt_rng.chance(0.5);
        let rel = match (&self.junk_folder, jpeg) {
            (Some(folder), true) => format!("{folder}/IMG0001.JPG"),
            _ => "dicom/README.txt".to_string(),
        };
        let bytes: Vec<u8> = if jpeg {
            // A JPEG/JFIF header, noise, and the end-of-image marker.
            let mut b = vec![
                0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0x01, 0x01, 0x00,
                0x00, 0x01, 0x00, 0x01, 0x00, 0x00,
            ];
            b.extend((0..2048).map(|_| self.dirt_rng.below(256) as u8));
            b.extend([0xFF, 0xD9]);
            b
        } else {
            format!(
                "Export RT {}\r\nExport du système de planification : ne pas modifier.\r\n",
                self.institution
            )
            .into_bytes()
        };
        std::fs::write(self.out.join(&rel), bytes)
            .with_context(|| format!("cannot write {rel}"))?;
        dirt.not_dicom = Some(rel);
        Ok(dirt)
    }
}

/// Plan inputs that [`Dicom::plan_and_dose`] needs besides the shared context.
struct PlanInput<'a> {
    number: u64,
    folder: &'a str,
    index: usize,
    course: &'a RtCourse,
    date: NaiveDate,
    treating: &'a Observer,
    dosimetrist: &'a str,
    nodal: bool,
    structure_set_uid: &'a str,
    clinical_rois: &'a [(RoiKind, i64)],
    /// The clinical structure set's ROIs as drawn.
    clinical: &'a [DrawnRoi],
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cohort::Cohort;

    /// Coefficient of variation of the breast CTV volume across every observer, averaged
    /// over patients, for structure sets drawn in `year`.
    fn mean_cv(year: i32) -> f64 {
        let cohort = Cohort::new(3);
        let mut r = Rng::new(1);
        let grid = Grid::new(&mut r, DEFAULT_SLICES, DEFAULT_MATRIX);
        let mut total = 0.0;
        let mut n = 0.0;
        for number in 1..=60 {
            let p = cohort.patient(number);
            let anat = Anatomy::new(&mut r, p.left, false, 65.0, 165.0);
            let reference = anat.shape(RoiKind::CtvBreast, p.left).unwrap();
            let volumes: Vec<f64> = (0..OBSERVERS.len())
                .map(|o| {
                    let shape =
                        Observer::new(3, o).draw(RoiKind::CtvBreast, &reference, year, [0.0; 3]);
                    contours(&shape, &grid)
                        .iter()
                        .map(|(_, poly)| polygon_area(poly) * grid.dz / 1000.0)
                        .sum()
                })
                .collect();
            let mean = volumes.iter().sum::<f64>() / volumes.len() as f64;
            let var =
                volumes.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / volumes.len() as f64;
            total += var.sqrt() / mean;
            n += 1.0;
        }
        total / n
    }

    #[test]
    fn observers_agree_better_after_the_consensus() {
        let before = mean_cv(2012);
        let after = mean_cv(2019);
        assert!(before > 0.1, "variability before the consensus: {before}");
        assert!(after < before / 2.0, "{after} after vs {before} before");
    }

    #[test]
    fn written_files_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let cohort = Cohort::new(11);
        let mut dicom =
            Dicom::create(dir.path(), 11, 5, 16, "Hôpital Sainte-Élise", "hse", false).unwrap();
        let mut written = 0;
        for number in 1..=12 {
            let p = cohort.patient(number);
            let Some(t) = dicom.write_patient(&p, number).unwrap() else {
                assert!(p.rt.is_empty());
                continue;
            };
            written += 1;
            assert_eq!(
                t.structure_sets.len(),
                dicom_count(dir.path(), &t.folder, "RS")
            );
            let ct =
                dicom_object::open_file(dir.path().join(&t.folder).join("CT0001.dcm")).unwrap();
            let name = ct
                .element(dicom_dictionary_std::tags::PATIENT_NAME)
                .unwrap()
                .to_str()
                .unwrap()
                .trim_end()
                .to_string();
            assert_eq!(name, format!("{}^{}", p.last_name, p.first_name));
            assert_eq!(ct.meta().media_storage_sop_class_uid(), CT_IMAGE_STORAGE);
            for plan in &t.plans {
                let rp = dicom_object::open_file(dir.path().join(&plan.file)).unwrap();
                assert_eq!(
                    rp.meta().media_storage_sop_instance_uid(),
                    plan.sop_instance_uid
                );
            }
        }
        assert!(written > 5);
        assert_eq!(dicom.counts.patients, written);
        let dirt = dicom.finish().unwrap();
        assert!(dirt.truncated.is_none() && dirt.not_dicom.is_none());
    }

    fn dicom_count(root: &Path, folder: &str, prefix: &str) -> usize {
        std::fs::read_dir(root.join(folder))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(prefix)
            })
            .count()
    }
}
