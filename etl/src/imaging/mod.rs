//! `registrar dicom index`: a tree of pseudonymised DICOM files (the output of `registrar
//! dicom pseudonymise`) into `cdm.procedure_occurrence`, `cdm.image_occurrence` (one per
//! series) and, for RT Structure Sets, `cdm.image_feature` (one per ROI, the ROI's facts as
//! JSON in `alg_system`, read by the view `research.rt_structure_set`).
//!
//! The tree goes through the import path's ledger like any other unit (kind `dicom-index`;
//! its identity is the source name, its content hash is over its files' relative paths,
//! sizes and times): an unchanged tree is skipped before a file is read, a changed one
//! replaces, through lineage, every row its earlier index wrote; rows are written with the
//! load path's binary COPY, and one audit entry records the index. Files are read with the
//! pseudonymiser's own DICOM reader (only the head of an image: its pixel data is never
//! read). The person is the one whose MRN pseudonym is the file's Patient ID
//! (`registry.person_map`); a series of an unknown person, and a file that cannot be read,
//! is rejected with a reason. Everything happens in one transaction.
//!
//! An ROI's TG-263 name is [`registrar_anonymizer::dicom::tg263`]'s; the names it does not
//! recognise are listed in the outcome ([`IndexOutcome::roi_names_not_normalised`]).
//!
//! ## ROI volumes
//!
//! An ROI's volume comes from its closed planar contours (other geometric types have no
//! area). The contours of one plane (same z within 10⁻³ mm) nest by the even-odd rule: a
//! contour inside an odd number of the plane's other contours is a hole and its area is
//! subtracted, one inside an even number (none: an outer contour; two: an island in a hole)
//! is added; whether a contour is inside another is decided by its first vertex (ray
//! casting). Each plane stands for a slab as thick as the slice spacing, the smallest
//! distance between the ROI's distinct planes (for an ROI on a single plane, the smallest
//! between the planes of the whole structure set), so the volume is the sum over the planes
//! of their net area times that spacing: no half slabs at the ends, and nothing between
//! planes further apart than the spacing (a gap is not filled).

pub mod agreement;
mod agreements;
pub mod dose;
mod doses;
pub mod mask;

use crate::import::{ImportContext, Unit, UnitOutcome};
use crate::ledger::{
    FileIdentity, FileStatus, Ledger, RejectOutcome, RejectRow, Replace, UnitCounts, UnitKind,
};
use crate::load::batch::{self, Batch, IdPool, Pending};
use crate::load::copy::{TableLayout, Value};
use crate::privacy::audit;
use crate::vocab::local;
use anyhow::{Context, Result};
use chrono::NaiveDate;
use registrar_anonymizer::dicom::dicom_core::value::{PrimitiveValue, Value as DicomValue};
use registrar_anonymizer::dicom::dicom_core::Tag;
use registrar_anonymizer::dicom::dicom_object::InMemDicomObject;
use registrar_anonymizer::dicom::tg263::{normalise, tg263_name};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// What the index writes, versioned: an index written by another version of this code is
/// written again.
const INDEX_VERSION: &str = "registrar-dicom-index-5";
/// OMOP type concept of the rows written here ("EHR").
pub const TYPE_CONCEPT_EHR: i32 = 32817;
/// First characters of the `alg_system` JSON of an ROI feature.
pub const ROI_KIND: &str = "rtstruct-roi";

mod tag {
    use super::Tag;
    pub const SOP_INSTANCE_UID: Tag = Tag(0x0008, 0x0018);
    pub const STUDY_DATE: Tag = Tag(0x0008, 0x0020);
    pub const SERIES_DATE: Tag = Tag(0x0008, 0x0021);
    pub const MODALITY: Tag = Tag(0x0008, 0x0060);
    pub const PATIENT_ID: Tag = Tag(0x0010, 0x0020);
    pub const STUDY_INSTANCE_UID: Tag = Tag(0x0020, 0x000D);
    pub const IMAGE_POSITION_PATIENT: Tag = Tag(0x0020, 0x0032);
    pub const IMAGE_ORIENTATION_PATIENT: Tag = Tag(0x0020, 0x0037);
    pub const FRAME_OF_REFERENCE_UID: Tag = Tag(0x0020, 0x0052);
    pub const ROWS: Tag = Tag(0x0028, 0x0010);
    pub const COLUMNS: Tag = Tag(0x0028, 0x0011);
    pub const PIXEL_SPACING: Tag = Tag(0x0028, 0x0030);
    pub const SERIES_INSTANCE_UID: Tag = Tag(0x0020, 0x000E);
    pub const STRUCTURE_SET_DATE: Tag = Tag(0x3006, 0x0008);
    pub const REFERENCED_FRAME_OF_REFERENCE_SEQUENCE: Tag = Tag(0x3006, 0x0010);
    pub const RT_REFERENCED_STUDY_SEQUENCE: Tag = Tag(0x3006, 0x0012);
    pub const RT_REFERENCED_SERIES_SEQUENCE: Tag = Tag(0x3006, 0x0014);
    pub const STRUCTURE_SET_ROI_SEQUENCE: Tag = Tag(0x3006, 0x0020);
    pub const ROI_NUMBER: Tag = Tag(0x3006, 0x0022);
    pub const ROI_NAME: Tag = Tag(0x3006, 0x0026);
    pub const ROI_CONTOUR_SEQUENCE: Tag = Tag(0x3006, 0x0039);
    pub const CONTOUR_SEQUENCE: Tag = Tag(0x3006, 0x0040);
    pub const CONTOUR_GEOMETRIC_TYPE: Tag = Tag(0x3006, 0x0042);
    pub const CONTOUR_DATA: Tag = Tag(0x3006, 0x0050);
    pub const RT_ROI_OBSERVATIONS_SEQUENCE: Tag = Tag(0x3006, 0x0080);
    pub const REFERENCED_ROI_NUMBER: Tag = Tag(0x3006, 0x0084);
    pub const RT_ROI_INTERPRETED_TYPE: Tag = Tag(0x3006, 0x00A4);
    pub const ROI_INTERPRETER: Tag = Tag(0x3006, 0x00A6);
}

/// What an index run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct IndexOutcome {
    /// The tree as a unit of the import path (status, reason, counts: one row per series or
    /// unreadable file).
    pub unit: UnitOutcome,
    pub files: i64,
    /// Files that could not be read as DICOM (listed by relative path).
    pub unreadable: Vec<String>,
    pub series: i64,
    pub procedure_occurrences: i64,
    pub image_occurrences: i64,
    pub image_features: i64,
    /// Series not indexed: (series folder, reason).
    pub rejected: Vec<(String, String)>,
    /// Rows of an earlier index of the same tree that were replaced.
    pub replaced: i64,
    /// The distinct names (as in the pseudonymised files) of the indexed ROIs that have no
    /// TG-263 name ([`normalise`] does not recognise them), sorted, each with its number of
    /// ROIs.
    pub roi_names_not_normalised: Vec<RoiNameCount>,
    /// Observer pairs whose agreement was measured (one image feature each).
    pub agreement_pairs: i64,
    /// Structures drawn by two or more observers whose agreement was not measured: (reason,
    /// structures).
    pub agreement_unmeasured: Vec<(String, i64)>,
    /// Dose-volume rows written (one image feature per structure and RT Dose).
    pub dose_volumes: i64,
    /// RT Doses or structures whose dose-volume metrics were not computed: (reason, count).
    pub dose_unmeasured: Vec<(String, i64)>,
}

/// An ROI name and the number of ROIs that bear it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RoiNameCount {
    pub name: String,
    pub rois: i64,
}

/// The names of `rois` that [`normalise`] does not recognise, sorted, with their counts.
fn names_not_normalised<'a>(rois: impl IntoIterator<Item = &'a RoiFacts>) -> Vec<RoiNameCount> {
    let mut names: BTreeMap<&str, i64> = BTreeMap::new();
    for r in rois {
        if normalise(&r.roi_name, r.roi_type.as_deref()).is_none() {
            *names.entry(r.roi_name.as_str()).or_default() += 1;
        }
    }
    names
        .into_iter()
        .map(|(name, rois)| RoiNameCount {
            name: name.to_string(),
            rois,
        })
        .collect()
}

/// The facts of one ROI, stored as `cdm.image_feature.alg_system` (JSON text).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RoiFacts {
    /// Always [`ROI_KIND`] (first key: the view recognises the rows by it).
    pub kind: String,
    pub roi_number: i64,
    /// The ROI name as in the file (source value).
    pub roi_name: String,
    /// The TG-263 name ([`tg263_name`]); the file's name when not recognised.
    pub tg263: String,
    pub roi_type: Option<String>,
    /// Sum over the ROI's planes of the plane's net contour area (holes subtracted) times the
    /// slice spacing, in cc to 0.001 (see the module documentation: each plane is a slab as
    /// thick as the spacing, no half slabs at the ends); None without a closed planar contour,
    /// or when the ROI's and the set's contours lie on one plane only.
    pub volume_cc: Option<f64>,
    /// The distinct planes of the ROI's closed planar contours.
    pub contour_slices: i64,
    pub referenced_ct_series: Option<String>,
    /// ROI Interpreter as in the (pseudonymised) file.
    pub observer: Option<String>,
    /// Structure Set Date (shifted), ISO.
    pub structure_set_date: Option<String>,
    pub structure_set_uid: Option<String>,
    /// True when the TG-263 name's laterality comes from the other targets of the set (the
    /// name as typed has none; see [`lateralise_targets`]).
    pub side_from_set: bool,
    /// `before` or `after` the ESTRO consensus guidelines, decided on the true Structure Set
    /// Date at pseudonymisation (the file's guideline-era mark,
    /// [`registrar_anonymizer::dicom::GUIDELINE_ERA`]); None when the file has no mark.
    #[serde(default)]
    pub guideline_era: Option<String>,
}

/// One series as read from the tree.
#[derive(Debug, Default)]
struct Series {
    folder: String,
    study_uid: String,
    modality: String,
    patient_id: String,
    date: Option<NaiveDate>,
    rois: Vec<RoiFacts>,
    problem: Option<String>,
}

/// A text value as the reader keeps it (the file's bytes, Latin-1; DS and IS as text).
fn text(o: &InMemDicomObject, t: Tag) -> Option<String> {
    let s: String = match o.element(t).ok()?.value() {
        DicomValue::Primitive(PrimitiveValue::U8(b)) => b.iter().map(|&c| c as char).collect(),
        DicomValue::Primitive(p) => p.to_str().to_string(),
        _ => return None,
    };
    let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!s.is_empty()).then(|| s.to_string())
}

/// A data set as read, with its byte order (values other than DS and IS are the file's bytes).
pub(crate) struct Read {
    pub dataset: InMemDicomObject,
    pub big_endian: bool,
}

/// Read a file with the pseudonymiser's reader: for a large image only its head (the pixel
/// data that ends the file is never read), else the whole file.
fn read_head(path: &Path) -> Option<Read> {
    use registrar_anonymizer::dicom::parse;
    use std::io::Read as _;
    const HEAD: usize = 64 << 10;
    let mut f = std::fs::File::open(path).ok()?;
    let total = f.metadata().ok()?.len();
    let mut head = Vec::with_capacity(HEAD.min(total as usize));
    (&mut f).take(HEAD as u64).read_to_end(&mut head).ok()?;
    let p = if (head.len() as u64) < total {
        match parse::parse_head(&head, total) {
            Some(p) => p,
            None => {
                f.read_to_end(&mut head).ok()?;
                parse::parse(&head).ok()?
            }
        }
    } else {
        parse::parse(&head).ok()?
    };
    Some(Read {
        big_endian: p.encoding == parse::Encoding::ExplicitBig,
        dataset: p.dataset,
    })
}

/// Read a whole file, pixel data included.
pub(crate) fn read_whole(path: &Path) -> Option<Read> {
    use registrar_anonymizer::dicom::parse;
    let bytes = std::fs::read(path).ok()?;
    let p = parse::parse(&bytes).ok()?;
    Some(Read {
        big_endian: p.encoding == parse::Encoding::ExplicitBig,
        dataset: p.dataset,
    })
}

fn read_dicom(path: &Path) -> Option<InMemDicomObject> {
    read_head(path).map(|r| r.dataset)
}

/// A US value (the reader keeps the file's bytes).
pub(crate) fn us(o: &InMemDicomObject, t: Tag, big_endian: bool) -> Option<u32> {
    match o.element(t).ok()?.value() {
        DicomValue::Primitive(PrimitiveValue::U8(b)) if b.len() >= 2 => {
            let v = [b[0], b[1]];
            Some(u32::from(if big_endian {
                u16::from_be_bytes(v)
            } else {
                u16::from_le_bytes(v)
            }))
        }
        DicomValue::Primitive(PrimitiveValue::U16(v)) => v.first().map(|x| u32::from(*x)),
        _ => None,
    }
}

/// DS values as numbers.
pub(crate) fn floats(o: &InMemDicomObject, t: Tag) -> Option<Vec<f64>> {
    o.element(t).ok().and_then(|e| e.to_multi_float64().ok())
}

fn items(o: &InMemDicomObject, t: Tag) -> &[InMemDicomObject] {
    o.element(t).ok().and_then(|e| e.items()).unwrap_or(&[])
}

fn date(o: &InMemDicomObject, t: Tag) -> Option<NaiveDate> {
    let s = text(o, t)?;
    NaiveDate::parse_from_str(s.get(..8)?, "%Y%m%d").ok()
}

/// The geometry of a CT slice (None for other objects, or one without it).
fn ct_slice(o: &InMemDicomObject, big_endian: bool) -> Option<mask::Slice> {
    if text(o, tag::MODALITY).as_deref() != Some("CT") {
        return None;
    }
    let p = floats(o, tag::IMAGE_POSITION_PATIENT)?;
    let d = floats(o, tag::IMAGE_ORIENTATION_PATIENT)?;
    let sp = floats(o, tag::PIXEL_SPACING)?;
    if p.len() != 3 || d.len() != 6 || sp.len() != 2 {
        return None;
    }
    Some(mask::Slice {
        position: [p[0], p[1], p[2]],
        orientation: [d[0], d[1], d[2], d[3], d[4], d[5]],
        spacing: [sp[0], sp[1]],
        rows: us(o, tag::ROWS, big_endian)? as usize,
        cols: us(o, tag::COLUMNS, big_endian)? as usize,
    })
}

/// Polygon area (shoelace), in the units of the coordinates squared.
pub fn shoelace(xy: &[(f64, f64)]) -> f64 {
    let n = xy.len();
    let twice: f64 = (0..n)
        .map(|i| {
            let (x0, y0) = xy[i];
            let (x1, y1) = xy[(i + 1) % n];
            x0 * y1 - x1 * y0
        })
        .sum();
    (twice / 2.0).abs()
}

/// Whether `p` is inside the polygon `poly` (ray casting; a point on an edge may go either
/// way).
fn inside(p: (f64, f64), poly: &[(f64, f64)]) -> bool {
    let (x, y) = p;
    let mut c = false;
    let mut j = poly.len().wrapping_sub(1);
    for (i, &(xi, yi)) in poly.iter().enumerate() {
        let (xj, yj) = poly[j];
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            c = !c;
        }
        j = i;
    }
    c
}

/// One closed planar contour of an ROI: its plane (z, mm) and its points (x, y, mm).
use mask::Polygon as Contour;

/// The net area of the contours of one plane, in mm²: a contour inside an odd number of the
/// others (tested on its first vertex) is a hole and subtracted, one inside an even number
/// is added; never below zero (overlapping contours that are not nested can make it so).
fn plane_area(plane: &[&Contour]) -> f64 {
    let net: f64 = plane
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let depth = plane
                .iter()
                .enumerate()
                .filter(|&(j, other)| j != i && inside(c.xy[0], &other.xy))
                .count();
            let area = shoelace(&c.xy);
            if depth.is_multiple_of(2) {
                area
            } else {
                -area
            }
        })
        .sum();
    net.max(0.0)
}

/// The contours of an ROI grouped by plane (z within 10⁻³ mm), by increasing z.
fn planes(contours: &[Contour]) -> Vec<Vec<&Contour>> {
    let mut sorted: Vec<&Contour> = contours.iter().collect();
    sorted.sort_by(|a, b| a.z.total_cmp(&b.z));
    let mut out: Vec<Vec<&Contour>> = Vec::new();
    for c in sorted {
        match out.last_mut() {
            Some(p) if (c.z - p[0].z).abs() < 1e-3 => p.push(c),
            _ => out.push(vec![c]),
        }
    }
    out
}

/// An ROI's volume in cc (to 0.001) from its closed planar contours: the sum over its planes
/// of the net area ([`plane_area`]) times the slice spacing, the smallest distance between
/// the ROI's planes, else `set_spacing` (see the module documentation).
fn roi_volume_cc(contours: &[Contour], set_spacing: Option<f64>) -> Option<f64> {
    if contours.is_empty() {
        return None;
    }
    let zs: Vec<f64> = contours.iter().map(|c| c.z).collect();
    let dz = spacing(&zs).or(set_spacing)?;
    let area: f64 = planes(contours).iter().map(|p| plane_area(p)).sum();
    Some((area * dz).round() / 1000.0)
}

/// Smallest positive distance between consecutive distinct values (sorted).
fn spacing(zs: &[f64]) -> Option<f64> {
    let mut z: Vec<f64> = zs.to_vec();
    z.sort_by(f64::total_cmp);
    z.dedup_by(|a, b| (*a - *b).abs() < 1e-3);
    z.windows(2)
        .map(|w| w[1] - w[0])
        .filter(|d| *d > 1e-3)
        .min_by(f64::total_cmp)
}

/// The closed planar contours of an RT Structure Set, by referenced ROI number. A contour
/// without a geometric type is taken as closed planar; one of fewer than 3 points is left
/// out.
fn roi_contours(o: &InMemDicomObject) -> HashMap<i64, Vec<Contour>> {
    let mut contours: HashMap<i64, Vec<Contour>> = HashMap::new();
    for rc in items(o, tag::ROI_CONTOUR_SEQUENCE) {
        let Some(n) = rc
            .element(tag::REFERENCED_ROI_NUMBER)
            .ok()
            .and_then(|e| e.to_int::<i64>().ok())
        else {
            continue;
        };
        let list = contours.entry(n).or_default();
        for c in items(rc, tag::CONTOUR_SEQUENCE) {
            if text(c, tag::CONTOUR_GEOMETRIC_TYPE).is_some_and(|t| t != "CLOSED_PLANAR") {
                continue;
            }
            let Some(data) = c
                .element(tag::CONTOUR_DATA)
                .ok()
                .and_then(|e| e.to_multi_float64().ok())
            else {
                continue;
            };
            if data.len() < 9 {
                continue;
            }
            let xy: Vec<(f64, f64)> = data.chunks_exact(3).map(|p| (p[0], p[1])).collect();
            list.push(Contour { z: data[2], xy });
        }
    }
    contours
}

/// The ROIs of an RT Structure Set.
fn structure_set_rois(o: &InMemDicomObject) -> Vec<RoiFacts> {
    let ss_date = date(o, tag::STRUCTURE_SET_DATE).map(|d| d.to_string());
    let era = registrar_anonymizer::dicom::guideline_era(o)
        .map(|before| if before { "before" } else { "after" }.to_string());
    let ss_uid = text(o, tag::SOP_INSTANCE_UID);
    let ct_series = items(o, tag::REFERENCED_FRAME_OF_REFERENCE_SEQUENCE)
        .iter()
        .flat_map(|f| items(f, tag::RT_REFERENCED_STUDY_SEQUENCE))
        .flat_map(|s| items(s, tag::RT_REFERENCED_SERIES_SEQUENCE))
        .find_map(|s| text(s, tag::SERIES_INSTANCE_UID));
    let contours = roi_contours(o);
    let mut observations: HashMap<i64, (Option<String>, Option<String>)> = HashMap::new();
    for ob in items(o, tag::RT_ROI_OBSERVATIONS_SEQUENCE) {
        if let Some(n) = ob
            .element(tag::REFERENCED_ROI_NUMBER)
            .ok()
            .and_then(|e| e.to_int::<i64>().ok())
        {
            observations.insert(
                n,
                (
                    text(ob, tag::RT_ROI_INTERPRETED_TYPE),
                    text(ob, tag::ROI_INTERPRETER),
                ),
            );
        }
    }
    // Fallback spacing for single-plane ROIs: the smallest spacing of the set.
    let all_z: Vec<f64> = contours.values().flatten().map(|c| c.z).collect();
    let set_spacing = spacing(&all_z);
    let mut out = Vec::new();
    for r in items(o, tag::STRUCTURE_SET_ROI_SEQUENCE) {
        let Some(n) = r
            .element(tag::ROI_NUMBER)
            .ok()
            .and_then(|e| e.to_int::<i64>().ok())
        else {
            continue;
        };
        let name = text(r, tag::ROI_NAME).unwrap_or_default();
        let (roi_type, observer) = observations.get(&n).cloned().unwrap_or((None, None));
        let cs = contours.get(&n).map(Vec::as_slice).unwrap_or(&[]);
        let volume_cc = roi_volume_cc(cs, set_spacing);
        out.push(RoiFacts {
            kind: ROI_KIND.into(),
            roi_number: n,
            tg263: tg263_name(&name, roi_type.as_deref()),
            roi_name: name,
            roi_type,
            volume_cc,
            contour_slices: planes(cs).len() as i64,
            referenced_ct_series: ct_series.clone(),
            observer,
            structure_set_date: ss_date.clone(),
            structure_set_uid: ss_uid.clone(),
            side_from_set: false,
            guideline_era: era.clone(),
        });
    }
    lateralise_targets(&mut out);
    out
}

fn is_target(tg263: &str) -> bool {
    ["CTV", "PTV", "GTV", "ITV"]
        .iter()
        .any(|p| tg263.starts_with(p))
}

/// Breast radiotherapy targets of one structure set are on one side: a target whose name
/// carries no laterality takes the side of the set's other targets when they all agree
/// (`CTV_n_L1` next to `CTV_Breast_L` becomes `CTVn_L1_L`). Nothing changes when the set's
/// targets name both sides or none.
pub fn lateralise_targets(rois: &mut [RoiFacts]) {
    let side_of = |n: &str| {
        if n.ends_with("_L") {
            Some('L')
        } else if n.ends_with("_R") {
            Some('R')
        } else {
            None
        }
    };
    let sides: std::collections::HashSet<char> = rois
        .iter()
        .filter(|r| is_target(&r.tg263))
        .filter_map(|r| side_of(&r.tg263))
        .collect();
    if sides.len() != 1 {
        return;
    }
    let side = *sides.iter().next().expect("one side");
    for r in rois.iter_mut() {
        // Only recognised target names (a name left as typed is not touched).
        if is_target(&r.tg263)
            && normalise(&r.roi_name, r.roi_type.as_deref()).is_some()
            && side_of(&r.tg263).is_none()
            && r.tg263.contains('_')
        {
            r.tg263 = format!("{}_{side}", r.tg263);
            r.side_from_set = true;
        }
    }
}

/// Every `.dcm` file under `dir` (the quarantine folder and links to folders excluded),
/// sorted.
fn dcm_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))? {
            let e = e?;
            let p = e.path();
            // Links to folders are not followed (a link back up would loop).
            if e.file_type()?.is_dir() {
                if d == dir
                    && p.file_name().and_then(|n| n.to_str())
                        == Some(registrar_anonymizer::dicom::batch::QUARANTINE_DIR)
                {
                    continue;
                }
                stack.push(p);
            } else if p.extension().is_some_and(|x| x.eq_ignore_ascii_case("dcm")) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Index the pseudonymised DICOM tree `dir` as a unit of source `source` (see the module
/// documentation).
pub fn index_tree(ctx: &mut ImportContext<'_>, source: &str, dir: &Path) -> Result<IndexOutcome> {
    let mut out = IndexOutcome::default();
    let canonical = dir
        .canonicalize()
        .with_context(|| format!("the DICOM tree of source {source} cannot be opened"))?;
    let files = dcm_files(&canonical)?;
    out.files = files.len() as i64;
    // The tree's identity: every file's relative path, size and modification time (the
    // pseudonymiser writes each output file anew, so a changed file has a new time). Cheap
    // enough that an unchanged tree is skipped without reading a file.
    let mut bytes_total: u64 = 0;
    let mut stamp = Sha256::new();
    for path in &files {
        let meta = std::fs::metadata(path).with_context(|| {
            format!("a file of the DICOM tree of source {source} cannot be read")
        })?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes_total += meta.len();
        let rel = path.strip_prefix(&canonical).unwrap_or(path);
        stamp.update(format!("{}\t{}\t{mtime}\n", rel.display(), meta.len()).as_bytes());
    }
    let k = &ctx.keys.current;
    let unit = Unit {
        ident: FileIdentity {
            kind: UnitKind::DicomIndex,
            source: source.to_string(),
            mapping: None,
            locator_hash: k.locator_hash(&format!("dicom-index:{source}")),
            legacy_locator: Some(k.locator_hash(&format!("dicom-index/{}", canonical.display()))),
            content_sha256: hex::encode(stamp.finalize()),
            size: bytes_total,
            mapping_sha256: Some(INDEX_VERSION.to_string()),
            series: None,
        },
        label: format!("{source} DICOM tree"),
        replace: Replace::EarlierVersions,
        version: None,
    };
    if let Some(skipped) = ctx.skip_if_known(&unit)? {
        out.unit = skipped;
        return Ok(out);
    }
    let mut series: BTreeMap<String, Series> = BTreeMap::new();
    let mut sets: Vec<agreements::SetRef> = Vec::new();
    let mut ct: HashMap<String, Vec<mask::Slice>> = HashMap::new();
    let mut plans: HashMap<String, doses::PlanFacts> = HashMap::new();
    let mut doses: Vec<doses::DoseRef> = Vec::new();
    for path in &files {
        let rel = path
            .strip_prefix(&canonical)
            .unwrap_or(path)
            .display()
            .to_string();
        let folder = path
            .parent()
            .and_then(|p| p.strip_prefix(&canonical).ok())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let Some(read) = read_head(path) else {
            out.unreadable.push(rel);
            continue;
        };
        let o: &InMemDicomObject = &read.dataset;
        let Some(series_uid) = text(o, tag::SERIES_INSTANCE_UID) else {
            out.unreadable.push(rel);
            continue;
        };
        let s = series.entry(series_uid.clone()).or_insert_with(|| Series {
            folder: folder.clone(),
            ..Default::default()
        });
        if s.study_uid.is_empty() {
            s.study_uid = text(o, tag::STUDY_INSTANCE_UID).unwrap_or_default();
            s.modality = text(o, tag::MODALITY).unwrap_or_default();
            s.patient_id = text(o, tag::PATIENT_ID).unwrap_or_default();
        }
        if s.date.is_none() {
            s.date = date(o, tag::SERIES_DATE)
                .or_else(|| date(o, tag::STUDY_DATE))
                .or_else(|| date(o, tag::STRUCTURE_SET_DATE));
        }
        if s.patient_id != text(o, tag::PATIENT_ID).unwrap_or_default() {
            s.problem = Some("files of the series name different patients".into());
        }
        if s.modality == "RTSTRUCT" {
            let rois = structure_set_rois(o);
            sets.push(agreements::SetRef {
                path: path.clone(),
                patient_id: s.patient_id.clone(),
                series_uid: series_uid.clone(),
                frame_of_reference: items(o, tag::REFERENCED_FRAME_OF_REFERENCE_SEQUENCE)
                    .iter()
                    .find_map(|f| text(f, tag::FRAME_OF_REFERENCE_UID)),
                rois: rois.clone(),
            });
            s.rois.extend(rois);
        } else if s.modality == "RTPLAN" {
            if let Some(uid) = text(o, tag::SOP_INSTANCE_UID) {
                plans.insert(uid, doses::PlanFacts::read(o));
            }
        } else if s.modality == "RTDOSE" {
            doses.push(doses::DoseRef::read(o, path, &s.patient_id, &series_uid));
        } else if let Some(g) = ct_slice(o, read.big_endian) {
            ct.entry(series_uid.clone()).or_default().push(g);
        }
    }
    out.series = series.len() as i64;
    // Inter-observer agreement: the structure sets are read again, one patient's at a time.
    let measured = agreements::measure_tree(&sets, &ct, source);
    out.agreement_pairs = measured.pairs();
    out.agreement_unmeasured = measured.unmeasured.clone();
    // Dose-volume metrics: one RT Dose (read whole) and its patient's structure sets at a time.
    let dosed = doses::measure_tree(&doses, &plans, &sets, source);
    out.dose_volumes = dosed.rows();
    out.dose_unmeasured = dosed.unmeasured.clone();

    let ledger = Ledger::new(ctx.run_id());
    let key_id = ctx.keys.current.key_id().as_str().to_string();
    let domain = ctx.keys.current.domain().to_string();
    let seq = &mut *ctx.seq;
    let mut tx = ctx.client.transaction()?;
    out.unit.replaced_rows = ledger.supersede(&mut tx, &unit.ident, unit.replace)?;
    let file_id = ledger.begin(&mut tx, &unit.ident)?;
    let pseudonyms: Vec<String> = series.values().map(|s| s.patient_id.clone()).collect();
    let persons = Ledger::persons_of(&mut tx, &pseudonyms)?;
    let layouts = vec![
        TableLayout::read(&mut tx, "cdm", "procedure_occurrence")?,
        TableLayout::read(&mut tx, "cdm", "image_occurrence")?,
        TableLayout::read(&mut tx, "cdm", "image_feature")?,
    ];
    let mut pools = [
        IdPool::new("procedure_occurrence"),
        IdPool::new("image_occurrence"),
        IdPool::new("image_feature"),
    ];
    let mut counts = UnitCounts::default();
    let mut b = Batch::default();
    for (i, f) in out.unreadable.iter().enumerate() {
        counts.rows_in += 1;
        counts.rows_rejected += 1;
        b.rejects.push(RejectRow::row(
            i as i64 + 1,
            "unreadable_dicom",
            format!(
                "file {f}: not a DICOM file this reader can read, or without a Series Instance UID"
            ),
            RejectOutcome::RowRejected,
        ));
    }
    let first_series_row = out.unreadable.len() as i64;
    let mut indexed_rois: Vec<&RoiFacts> = Vec::new();
    for (n, (uid, s)) in series.iter().enumerate() {
        let row = first_series_row + n as i64 + 1;
        counts.rows_in += 1;
        let reject = if let Some(p) = &s.problem {
            Some(("inconsistent_series", p.clone()))
        } else if s.patient_id.is_empty() {
            Some(("no_patient_id", "the series has no Patient ID".to_string()))
        } else if !persons.contains_key(&s.patient_id) {
            Some((
                "unknown_person",
                "the Patient ID is not a person pseudonym of the registry (import the patients first)"
                    .to_string(),
            ))
        } else if s.date.is_none() {
            Some((
                "no_date",
                "the series has no Series, Study or Structure Set Date".to_string(),
            ))
        } else {
            None
        };
        if let Some((code, reason)) = reject {
            b.rejects.push(RejectRow::row(
                row,
                code,
                format!("series {}: {reason}", s.folder),
                RejectOutcome::RowRejected,
            ));
            counts.rows_rejected += 1;
            out.rejected.push((s.folder.clone(), reason));
            continue;
        }
        counts.rows_loaded += 1;
        let person_id = persons[&s.patient_id];
        let day = s.date.expect("checked");
        let modality: String = s.modality.chars().take(50).collect();
        let mut put = |li: usize, cols: &[(&str, Value)], b: &mut Batch| -> Result<i32> {
            let layout = &layouts[li];
            let id = pools[li].next(seq)?;
            let mut values = vec![Value::Null; layout.columns.len()];
            let id_col = format!("{}_id", layout.table);
            for (name, v) in cols
                .iter()
                .chain([(id_col.as_str(), Value::Int4(id))].iter())
            {
                let ci = layout
                    .index_of(name)
                    .with_context(|| format!("cdm.{} has no column {name}", layout.table))?;
                values[ci] = v.clone();
            }
            b.pending.push(Pending {
                layout: li,
                values,
                id: Some(id),
                person_id,
                source_row: row,
                emit: li as i16,
            });
            Ok(id)
        };
        let proc_id = put(
            0,
            &[
                ("person_id", Value::Int4(person_id)),
                ("procedure_concept_id", Value::Int4(local::DICOM_SERIES)),
                ("procedure_date", Value::Date(day)),
                ("procedure_type_concept_id", Value::Int4(TYPE_CONCEPT_EHR)),
                ("procedure_source_value", Value::Text(modality)),
            ],
            &mut b,
        )?;
        out.procedure_occurrences += 1;
        let image_id = put(
            1,
            &[
                ("person_id", Value::Int4(person_id)),
                ("procedure_occurrence_id", Value::Int4(proc_id)),
                ("local_path", Value::Text(s.folder.clone())),
                ("image_occurrence_date", Value::Date(day)),
                ("image_study_uid", Value::Text(s.study_uid.clone())),
                ("image_series_uid", Value::Text(uid.clone())),
                ("modality_concept_id", Value::Int4(0)),
            ],
            &mut b,
        )?;
        out.image_occurrences += 1;
        indexed_rois.extend(&s.rois);
        // The series' image features: its ROIs, the dose-volume rows of an RT Dose, the
        // agreement pairs whose first set it is (concept, facts as JSON).
        let mut features: Vec<(i32, String)> = Vec::new();
        for roi in &s.rois {
            features.push((local::RT_STRUCTURE_ROI, serde_json::to_string(roi)?));
        }
        for facts in dosed.by_series.get(uid).into_iter().flatten() {
            features.push((local::DOSE_VOLUME, serde_json::to_string(facts)?));
        }
        for facts in measured.by_series.get(uid).into_iter().flatten() {
            features.push((local::DELINEATION_AGREEMENT, serde_json::to_string(facts)?));
        }
        for (concept, json) in features {
            put(
                2,
                &[
                    ("person_id", Value::Int4(person_id)),
                    ("image_occurrence_id", Value::Int4(image_id)),
                    ("image_feature_concept_id", Value::Int4(concept)),
                    (
                        "image_feature_type_concept_id",
                        Value::Int4(TYPE_CONCEPT_EHR),
                    ),
                    ("alg_system", Value::Text(json)),
                ],
                &mut b,
            )?;
            out.image_features += 1;
        }
    }
    out.roi_names_not_normalised = names_not_normalised(indexed_rois);
    let target = batch::Target {
        ledger: &ledger,
        layouts: &layouts,
        file_id,
        mapping_file: None,
        key_id: &key_id,
        domain: &domain,
    };
    batch::write(&mut tx, &target, &b)?;
    ledger.finish(&mut tx, file_id, &counts)?;
    audit::append(
        &mut tx,
        &audit::Record {
            action: audit::action::DICOM_INDEX,
            run_id: Some(ledger.run_id),
            locator_hash: Some(&unit.ident.locator_hash),
            key_id: Some(&key_id),
            detail: serde_json::json!({
                "source": source,
                "files": out.files,
                "series": out.series,
                "unreadable": out.unreadable.len(),
                "rows": { "in": counts.rows_in, "loaded": counts.rows_loaded, "rejected": counts.rows_rejected },
                "procedure_occurrences": out.procedure_occurrences,
                "image_occurrences": out.image_occurrences,
                "image_features": out.image_features,
                "replaced_rows": out.unit.replaced_rows,
            }),
        },
    )?;
    tx.commit()?;
    crate::failpoint::hit(&format!("unit:{source}"));
    for p in &b.pending {
        *out.unit
            .tables
            .entry(layouts[p.layout].table.clone())
            .or_default() += 1;
    }
    out.replaced = out.unit.replaced_rows;
    out.unit.file = unit.label;
    out.unit.status = FileStatus::Loaded;
    out.unit.counts = counts;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roi(name: &str, ty: &str) -> RoiFacts {
        RoiFacts {
            kind: ROI_KIND.into(),
            roi_number: 1,
            roi_name: name.into(),
            tg263: tg263_name(name, Some(ty)),
            roi_type: Some(ty.into()),
            volume_cc: None,
            contour_slices: 0,
            referenced_ct_series: None,
            observer: None,
            structure_set_date: None,
            structure_set_uid: None,
            side_from_set: false,
            guideline_era: None,
        }
    }

    #[test]
    fn targets_take_the_side_of_the_set() {
        let mut set = vec![
            roi("CTV_Breast_L", "CTV"),
            roi("CTV_n_L1", "CTV"),
            roi("PTV", "PTV"),
            roi("Lung_R", "ORGAN"),
            roi("Heart", "ORGAN"),
        ];
        lateralise_targets(&mut set);
        let names: Vec<&str> = set.iter().map(|r| r.tg263.as_str()).collect();
        assert_eq!(
            names,
            ["CTVp_Breast_L", "CTVn_L1_L", "PTV", "Lung_R", "Heart"]
        );
        assert!(set[1].side_from_set && !set[0].side_from_set);
        // Both sides named: nothing is guessed.
        let mut both = vec![
            roi("CTV_Breast_L", "CTV"),
            roi("CTV_Breast_R", "CTV"),
            roi("CTV_n_L1", "CTV"),
        ];
        lateralise_targets(&mut both);
        assert_eq!(both[2].tg263, "CTVn_L1");
        // A name typed exactly as its TG-263 name is recognised too; one left as typed is not
        // touched.
        let mut exact = vec![
            roi("CTVp_Breast", "CTV"),
            roi("Lt CTVn L2", "CTV"),
            roi("CTV_odd_thing", "CTV"),
        ];
        lateralise_targets(&mut exact);
        assert_eq!(exact[0].tg263, "CTVp_Breast_L");
        assert_eq!(exact[1].tg263, "CTVn_L2_L");
        assert_eq!(exact[2].tg263, "CTV_odd_thing");
    }

    #[test]
    fn names_that_do_not_normalise_are_listed() {
        let set = [
            roi("Heart", "ORGAN"),
            roi("Zz odd", "ORGAN"),
            roi("Lung L R", "ORGAN"),
            roi("Heart", "ORGAN"),
            roi("Zz odd", "ORGAN"),
            roi("A odd", "CTV"),
        ];
        let names = names_not_normalised(&set);
        let pairs: Vec<(&str, i64)> = names.iter().map(|n| (n.name.as_str(), n.rois)).collect();
        assert_eq!(pairs, [("A odd", 1), ("Lung L R", 1), ("Zz odd", 2)]);
        let outcome = IndexOutcome {
            roi_names_not_normalised: names,
            ..Default::default()
        };
        let v = serde_json::to_value(&outcome).unwrap();
        assert_eq!(
            v["roi_names_not_normalised"][2],
            serde_json::json!({ "name": "Zz odd", "rois": 2 })
        );
    }

    /// A square of side `side` mm centred on (`cx`, `cy`) on the plane `z`.
    fn square(cx: f64, cy: f64, side: f64, z: f64) -> Contour {
        let h = side / 2.0;
        Contour {
            z,
            xy: vec![
                (cx - h, cy - h),
                (cx + h, cy - h),
                (cx + h, cy + h),
                (cx - h, cy + h),
            ],
        }
    }

    #[test]
    fn holes_are_subtracted() {
        // 100 x 100 mm with a 50 x 50 mm hole on 10 planes 3 mm apart: 7500 mm² x 3 mm x 10.
        let mut cs = Vec::new();
        for k in 0..10 {
            let z = f64::from(k) * 3.0;
            cs.push(square(0.0, 0.0, 100.0, z));
            cs.push(square(10.0, -5.0, 50.0, z + 1e-4));
        }
        assert_eq!(roi_volume_cc(&cs, None), Some(225.0));
        assert_eq!(planes(&cs).len(), 10);
        // The order of a plane's contours and their orientation do not matter.
        cs.reverse();
        for c in cs.iter_mut().step_by(3) {
            c.xy.reverse();
        }
        assert_eq!(roi_volume_cc(&cs, None), Some(225.0));
    }

    #[test]
    fn islands_in_holes_add_and_disjoint_contours_add() {
        // A ring (100 mm outside, 60 mm hole) with a 20 mm island in its hole, on one plane of
        // a set 2.5 mm apart: (10000 - 3600 + 400) mm² x 2.5 mm.
        let ring = [
            square(0.0, 0.0, 20.0, 0.0),
            square(0.0, 0.0, 100.0, 0.0),
            square(0.0, 0.0, 60.0, 0.0),
        ];
        assert_eq!(roi_volume_cc(&ring, Some(2.5)), Some(17.0));
        // Two disjoint contours of one plane add: 2 x 1600 mm² x 2 mm.
        let two = [square(-60.0, 0.0, 40.0, 5.0), square(60.0, 0.0, 40.0, 5.0)];
        assert_eq!(roi_volume_cc(&two, Some(2.0)), Some(6.4));
        // A single plane in a set of one plane has no spacing, hence no volume.
        assert_eq!(roi_volume_cc(&two, None), None);
        assert_eq!(roi_volume_cc(&[], Some(2.0)), None);
        assert!(inside((0.0, 0.0), &square(0.0, 0.0, 2.0, 0.0).xy));
        assert!(!inside((1.5, 0.0), &square(0.0, 0.0, 2.0, 0.0).xy));
    }

    /// Reference area of one plane's contours, in mm²: the pixels of a 0.25 mm grid whose
    /// centre is inside by the even-odd rule over all the plane's contours (a ray from the
    /// centre towards +x crosses their edges an odd number of times), counted row by row of
    /// pixel centres from the crossings of each row with the edges.
    fn voxel_area(plane: &[&Contour]) -> f64 {
        const PX: f64 = 0.25;
        let (lo, hi) = plane
            .iter()
            .flat_map(|c| c.xy.iter().map(|p| p.1))
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), y| {
                (l.min(y), h.max(y))
            });
        let mut pixels: i64 = 0;
        let mut row = (lo / PX - 0.5).floor() as i64;
        while (row as f64 + 0.5) * PX <= hi {
            let y = (row as f64 + 0.5) * PX;
            let mut xs: Vec<f64> = Vec::new();
            for c in plane {
                let n = c.xy.len();
                for i in 0..n {
                    let ((x0, y0), (x1, y1)) = (c.xy[i], c.xy[(i + 1) % n]);
                    if (y0 > y) != (y1 > y) {
                        xs.push(x0 + (y - y0) * (x1 - x0) / (y1 - y0));
                    }
                }
            }
            assert!(
                xs.len().is_multiple_of(2),
                "closed contours cross a row an even number of times"
            );
            xs.sort_by(f64::total_cmp);
            // A centre x = (m + 0.5) PX is inside when an odd number of crossings lie beyond
            // it: xs[2i] <= x < xs[2i + 1].
            for w in xs.chunks_exact(2) {
                pixels += ((w[1] / PX - 0.5).ceil() - (w[0] / PX - 0.5).ceil()) as i64;
            }
            row += 1;
        }
        pixels as f64 * PX * PX
    }

    /// (ROI name, indexed volume, voxel reference) of every ROI of at least 1 cc of a
    /// structure set; the reference uses the same slice spacing as the index.
    fn volumes_and_voxels(o: &InMemDicomObject) -> Vec<(String, f64, f64)> {
        let contours = roi_contours(o);
        let all_z: Vec<f64> = contours.values().flatten().map(|c| c.z).collect();
        let set_spacing = spacing(&all_z);
        structure_set_rois(o)
            .into_iter()
            .filter_map(|r| {
                let v = r.volume_cc.filter(|v| *v >= 1.0)?;
                let cs = contours.get(&r.roi_number)?;
                let zs: Vec<f64> = cs.iter().map(|c| c.z).collect();
                let dz = spacing(&zs).or(set_spacing)?;
                let area: f64 = planes(cs).iter().map(|p| voxel_area(p)).sum();
                Some((r.roi_name, v, area * dz / 1000.0))
            })
            .collect()
    }

    /// The largest relative difference between the indexed volumes and the voxel reference,
    /// checked to be within 1%.
    fn check_against_voxels(what: &str, rois: &[(String, f64, f64)]) -> f64 {
        let mut worst: f64 = 0.0;
        for (name, v, reference) in rois {
            let rel = (v - reference).abs() / reference;
            assert!(
                rel <= 0.01,
                "{what}: ROI {name:?}: {v} cc indexed, {reference} cc by voxels"
            );
            worst = worst.max(rel);
        }
        worst
    }

    #[test]
    fn volumes_of_a_real_structure_set_match_a_voxel_reference() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/dicom/rtstruct.dcm");
        let o = read_dicom(&path).expect("rtstruct.dcm is read");
        let rois = structure_set_rois(&o);
        // Only the body outline ("patient", three rectangles 10 mm apart) has a volume; the
        // two isocentres are points.
        let compared = volumes_and_voxels(&o);
        for (name, v, reference) in &compared {
            eprintln!("rtstruct.dcm: {name}: {v} cc, voxels {reference:.3} cc");
        }
        let worst = check_against_voxels("rtstruct.dcm", &compared);
        eprintln!(
            "rtstruct.dcm: {} ROIs, {} of at least 1 cc, largest relative difference {:.4}%",
            rois.len(),
            compared.len(),
            worst * 100.0
        );
        assert_eq!(compared.len(), 1);
        assert_eq!(rois[0].volume_cc, Some(3600.0));
        assert_eq!(rois[0].contour_slices, 3);
    }

    /// The reference's own error on these shapes approaches 1% (about 1% with seed 5, 0.2%
    /// with 0.05 mm pixels): a chest wall's posterior edge is straight and lies along a row
    /// of pixels on every plane, so its half-pixel error does not average out.
    #[test]
    fn volumes_of_synthetic_structure_sets_match_a_voxel_reference() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mut opts = registrar_synth::SynthOptions::new(10, 1, out.clone());
        opts.dicom_slices = 20;
        opts.dicom_matrix = 16;
        registrar_synth::generate(&opts, &|_| {}).expect("synth");
        let (mut sets, mut compared, mut worst) = (0, 0, 0.0_f64);
        for f in dcm_files(&out.join("dicom")).unwrap() {
            let Some(o) = read_dicom(&f) else {
                continue;
            };
            if text(&o, tag::MODALITY).as_deref() != Some("RTSTRUCT") {
                continue;
            }
            sets += 1;
            let rois = volumes_and_voxels(&o);
            compared += rois.len();
            worst = worst.max(check_against_voxels(&f.display().to_string(), &rois));
        }
        eprintln!(
            "synthetic: {sets} structure sets, {compared} ROIs of at least 1 cc, largest relative difference {:.4}%",
            worst * 100.0
        );
        assert!(sets >= 2 && compared >= 20, "{sets} sets, {compared} ROIs");
    }

    #[test]
    fn shoelace_square() {
        let sq = [(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0)];
        assert!((shoelace(&sq) - 100.0).abs() < 1e-9);
        assert_eq!(spacing(&[5.0, 2.5, 0.0, 5.0]), Some(2.5));
    }
}
