//! `registrar dicom index`: a tree of pseudonymised DICOM files (the output of `registrar
//! dicom pseudonymise`) into `cdm.procedure_occurrence`, `cdm.image_occurrence` (one per
//! series) and, for RT Structure Sets, `cdm.image_feature` (one per ROI, the ROI's facts as
//! JSON in `alg_system`, read by the view `research.rt_structure_set`).
//!
//! The tree is one source file in `registry.source_file` (kind `dicom-index`, keyed locator
//! hash of the directory, content hash over its files' paths, sizes and times): an unchanged tree is
//! skipped, a changed one replaces, through `registry.lineage`, every row its earlier index
//! wrote. Everything happens in one transaction. The person is the one whose MRN pseudonym is
//! the file's Patient ID (`registry.person_map`); a series of an unknown person is rejected
//! with a reason.

use crate::privacy::keys::Keys;
use anyhow::{Context, Result};
use chrono::NaiveDate;
use registrar_anonymizer::dicom::dicom_core::Tag;
use registrar_anonymizer::dicom::dicom_object::{InMemDicomObject, OpenFileOptions};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The source kind of an indexed tree in `registry.source_file`.
pub const SOURCE_KIND: &str = "dicom-index";
/// OMOP type concept of the rows written here ("EHR").
pub const TYPE_CONCEPT_EHR: i32 = 32817;
/// First characters of the `alg_system` JSON of an ROI feature (the view filters on them).
pub const ROI_KIND: &str = "rtstruct-roi";

mod tag {
    use super::Tag;
    pub const SOP_INSTANCE_UID: Tag = Tag(0x0008, 0x0018);
    pub const STUDY_DATE: Tag = Tag(0x0008, 0x0020);
    pub const SERIES_DATE: Tag = Tag(0x0008, 0x0021);
    pub const MODALITY: Tag = Tag(0x0008, 0x0060);
    pub const PATIENT_ID: Tag = Tag(0x0010, 0x0020);
    pub const STUDY_INSTANCE_UID: Tag = Tag(0x0020, 0x000D);
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
    pub const CONTOUR_DATA: Tag = Tag(0x3006, 0x0050);
    pub const RT_ROI_OBSERVATIONS_SEQUENCE: Tag = Tag(0x3006, 0x0080);
    pub const REFERENCED_ROI_NUMBER: Tag = Tag(0x3006, 0x0084);
    pub const RT_ROI_INTERPRETED_TYPE: Tag = Tag(0x3006, 0x00A4);
    pub const ROI_INTERPRETER: Tag = Tag(0x3006, 0x00A6);
    pub const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);
}

/// What an index run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct IndexOutcome {
    /// `loaded`, `skipped` (unchanged tree).
    pub status: String,
    pub reason: Option<String>,
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
    /// Sum over contours of the polygon area times the slice spacing, in cc.
    pub volume_cc: Option<f64>,
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

fn text(o: &InMemDicomObject, t: Tag) -> Option<String> {
    let s = o.element(t).ok()?.to_str().ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!s.is_empty()).then(|| s.to_string())
}

fn items(o: &InMemDicomObject, t: Tag) -> &[InMemDicomObject] {
    o.element(t).ok().and_then(|e| e.items()).unwrap_or(&[])
}

fn date(o: &InMemDicomObject, t: Tag) -> Option<NaiveDate> {
    let s = text(o, t)?;
    NaiveDate::parse_from_str(s.get(..8)?, "%Y%m%d").ok()
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

/// The ROIs of an RT Structure Set.
fn structure_set_rois(o: &InMemDicomObject) -> Vec<RoiFacts> {
    let ss_date = date(o, tag::STRUCTURE_SET_DATE).map(|d| d.to_string());
    let ss_uid = text(o, tag::SOP_INSTANCE_UID);
    let ct_series = items(o, tag::REFERENCED_FRAME_OF_REFERENCE_SEQUENCE)
        .iter()
        .flat_map(|f| items(f, tag::RT_REFERENCED_STUDY_SEQUENCE))
        .flat_map(|s| items(s, tag::RT_REFERENCED_SERIES_SEQUENCE))
        .find_map(|s| text(s, tag::SERIES_INSTANCE_UID));
    // Contours per ROI number: (z, area in mm²).
    let mut contours: HashMap<i64, Vec<(f64, f64)>> = HashMap::new();
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
            list.push((data[2], shoelace(&xy)));
        }
    }
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
    // Fallback spacing for single-slice ROIs: the smallest spacing of the set.
    let all_z: Vec<f64> = contours.values().flatten().map(|c| c.0).collect();
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
        let zs: Vec<f64> = cs.iter().map(|c| c.0).collect();
        let mut distinct = zs.clone();
        distinct.sort_by(f64::total_cmp);
        distinct.dedup_by(|a, b| (*a - *b).abs() < 1e-3);
        let volume_cc = if cs.is_empty() {
            None
        } else {
            spacing(&zs)
                .or(set_spacing)
                .map(|dz| cs.iter().map(|c| c.1).sum::<f64>() * dz / 1000.0)
                .map(|v| (v * 1000.0).round() / 1000.0)
        };
        out.push(RoiFacts {
            kind: ROI_KIND.into(),
            roi_number: n,
            tg263: tg263_name(&name, roi_type.as_deref()),
            roi_name: name,
            roi_type,
            volume_cc,
            contour_slices: distinct.len() as i64,
            referenced_ct_series: ct_series.clone(),
            observer,
            structure_set_date: ss_date.clone(),
            structure_set_uid: ss_uid.clone(),
            side_from_set: false,
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
            && r.tg263 != r.roi_name
            && side_of(&r.tg263).is_none()
            && r.tg263.contains('_')
        {
            r.tg263 = format!("{}_{side}", r.tg263);
            r.side_from_set = true;
        }
    }
}

/// The AAPM TG-263 name of a structure (targets: `CTVp_`/`CTVn_`/`PTVp_`... with the site and
/// the laterality last, as in the ESTRO breast consensus), from a name as typed (English,
/// French, TG-263 or close to it) and the RT ROI Interpreted Type. Names that are not
/// recognised are returned as they are.
pub fn tg263_name(name: &str, interpreted_type: Option<&str>) -> String {
    let lower = name.to_lowercase();
    let mut tokens: Vec<String> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    if tokens.is_empty() {
        return name.to_string();
    }
    // Laterality: the last token.
    let mut side: Option<&str> = None;
    if tokens.len() > 1 {
        side = match tokens.last().map(String::as_str) {
            Some("l" | "lt" | "left" | "g" | "gauche") => Some("L"),
            Some("r" | "rt" | "right" | "d" | "droit" | "droite") => Some("R"),
            _ => None,
        };
        if side.is_some() {
            tokens.pop();
        }
    }
    // Target prefix: CTV / PTV / GTV / ITV, with p (primary) or n (nodal).
    let mut volume: Option<&str> = None;
    let mut level: Option<&str> = None;
    let first = tokens[0].clone();
    for v in ["ctv", "ptv", "gtv", "itv"] {
        if let Some(rest) = first.strip_prefix(v) {
            match rest {
                "" => {}
                "p" => level = Some("p"),
                "n" => level = Some("n"),
                _ => continue,
            }
            volume = Some(v);
            tokens.remove(0);
            break;
        }
    }
    if volume.is_some() && level.is_none() {
        if let Some(t) = tokens.first() {
            if t == "p" || t == "n" {
                level = Some(if t == "p" { "p" } else { "n" });
                tokens.remove(0);
            }
        }
    }
    let rest = tokens.join(" ");
    let with_side = |base: &str| match side {
        Some(s) => format!("{base}_{s}"),
        None => base.to_string(),
    };
    // Target sites: (site, primary or nodal).
    let site: Option<(&str, &str)> = match rest.as_str() {
        "breast" | "sein" => Some(("Breast", "p")),
        "chestwall" | "chest wall" | "paroi" | "thoracic wall" => Some(("Chestwall", "p")),
        "boost" | "tumorbed" | "tumourbed" | "tumor bed" | "tumour bed" | "lit tumoral" | "tb" => {
            Some(("TumorBed", "p"))
        }
        "l1" | "axilla i" | "axilla 1" | "aisselle 1" | "ax l1" => Some(("L1", "n")),
        "l2" | "axilla ii" | "axilla 2" | "aisselle 2" | "ax l2" => Some(("L2", "n")),
        "l3" | "axilla iii" | "axilla 3" | "aisselle 3" | "ax l3" => Some(("L3", "n")),
        "l4" | "supraclav" | "supraclavicular" | "sus clav" | "susclav" | "scv" => {
            Some(("L4", "n"))
        }
        "imn" | "imc" | "cmi" | "internal mammary" => Some(("IMN", "n")),
        _ => None,
    };
    let target_type = match interpreted_type.map(|t| t.trim().to_uppercase()) {
        Some(t) if t == "CTV" => Some("ctv"),
        Some(t) if t == "PTV" => Some("ptv"),
        Some(t) if t == "GTV" => Some("gtv"),
        _ => None,
    };
    // A bare site word is a target only when the interpreted type says so.
    let volume = volume.or(if site.is_some() { target_type } else { None });
    if let Some(v) = volume {
        let v = v.to_uppercase();
        return match site {
            Some((s, default_level)) => {
                with_side(&format!("{v}{}_{s}", level.unwrap_or(default_level)))
            }
            None if rest.is_empty() => with_side(&format!("{v}{}", level.unwrap_or(""))),
            None => name.to_string(),
        };
    }
    let organ = match rest.as_str() {
        "heart" | "coeur" | "cœur" => Some(("Heart", false)),
        "lung" | "poumon" => Some(("Lung", true)),
        "lungs" | "poumons" => Some(("Lungs", false)),
        "breast" | "sein" => Some(("Breast", true)),
        "spinalcord" | "spinal cord" | "moelle" | "cord" => Some(("SpinalCord", false)),
        "external" | "body" | "contour externe" | "skin" => Some(("External", false)),
        "esophagus" | "oesophagus" | "oesophage" => Some(("Esophagus", false)),
        "thyroid" | "thyroide" | "thyroïde" => Some(("Glnd_Thyroid", false)),
        "liver" | "foie" => Some(("Liver", false)),
        "humerus" | "humérus" => Some(("Humerus", true)),
        "a lad" | "lad" => Some(("A_LAD", false)),
        _ => None,
    };
    match organ {
        Some((o, true)) => with_side(o),
        Some((o, false)) if side.is_none() => o.to_string(),
        _ => name.to_string(),
    }
}

/// Every `.dcm` file under `dir` (the quarantine folder excluded), sorted.
fn dcm_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
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

fn next_id(tx: &mut impl postgres::GenericClient, table: &str) -> Result<i32> {
    Ok(tx
        .query_one(
            &format!("SELECT nextval('registry.seq_{table}_id')::int4"),
            &[],
        )?
        .get(0))
}

/// Index the pseudonymised DICOM tree `dir` (see the module documentation).
pub fn index_tree(
    client: &mut postgres::Client,
    keys: &Keys,
    run_id: i64,
    dir: &Path,
) -> Result<IndexOutcome> {
    let mut out = IndexOutcome::default();
    let canonical = dir
        .canonicalize()
        .with_context(|| format!("cannot open {}", dir.display()))?;
    let files = dcm_files(&canonical)?;
    out.files = files.len() as i64;
    // The tree's identity: every file's relative path, size and modification time (the
    // pseudonymiser writes each output file anew, so a changed file has a new time). Cheap
    // enough that an unchanged tree is skipped without reading a file.
    let mut bytes_total: i64 = 0;
    let mut stamp = Sha256::new();
    for path in &files {
        let meta =
            std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes_total += meta.len() as i64;
        let rel = path.strip_prefix(&canonical).unwrap_or(path);
        stamp.update(format!("{}\t{}\t{mtime}\n", rel.display(), meta.len()).as_bytes());
    }
    let content = hex::encode(stamp.finalize());
    let locator_hash = keys
        .current
        .locator_hash(&format!("{SOURCE_KIND}/{}", canonical.display()));
    if let Some(r) = client.query_opt(
        "SELECT run_id FROM registry.source_file
          WHERE locator_hash = $1 AND content_sha256 = $2 AND status = 'loaded' LIMIT 1",
        &[&locator_hash, &content],
    )? {
        let first: i64 = r.get(0);
        let reason = format!("unchanged since run {first}");
        client.execute(
            "INSERT INTO registry.source_file (source_kind, locator_hash, content_sha256, byte_size, run_id, status, reason)
             VALUES ($1, $2, $3, $4, $5, 'skipped', $6)",
            &[&SOURCE_KIND, &locator_hash, &content, &bytes_total, &run_id, &reason],
        )?;
        out.status = "skipped".into();
        out.reason = Some(reason);
        return Ok(out);
    }
    let mut series: BTreeMap<String, Series> = BTreeMap::new();
    for path in &files {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
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
        // Everything but the pixel data (RTSTRUCT has none, so it is read whole).
        let obj = match OpenFileOptions::new()
            .read_until(tag::PIXEL_DATA)
            .from_reader(std::io::Cursor::new(&bytes))
        {
            Ok(o) => o,
            Err(_) => {
                out.unreadable.push(rel);
                continue;
            }
        };
        let o: &InMemDicomObject = &obj;
        let Some(series_uid) = text(o, tag::SERIES_INSTANCE_UID) else {
            out.unreadable.push(rel);
            continue;
        };
        let s = series.entry(series_uid).or_insert_with(|| Series {
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
            s.rois.extend(structure_set_rois(o));
        }
    }
    out.series = series.len() as i64;

    let mut tx = client.transaction()?;
    out.replaced += crate::import::supersede_previous(&mut tx, &locator_hash)?;
    let file_id: i64 = tx
        .query_one(
            "INSERT INTO registry.source_file (source_kind, locator_hash, content_sha256, byte_size, run_id, status)
             VALUES ($1, $2, $3, $4, $5, 'loading') RETURNING source_file_id",
            &[&SOURCE_KIND, &locator_hash, &content, &bytes_total, &run_id],
        )?
        .get(0);
    let pseudonyms: Vec<String> = series.values().map(|s| s.patient_id.clone()).collect();
    let persons: HashMap<String, i32> = tx
        .query(
            "SELECT pseudonym, person_id FROM registry.person_map WHERE pseudonym = ANY($1)",
            &[&pseudonyms],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let lineage = |tx: &mut postgres::Transaction<'_>, table: &str, id: i32| -> Result<()> {
        tx.execute(
            "INSERT INTO registry.lineage (cdm_table, cdm_row_id, source_file_id, run_id) VALUES ($1, $2, $3, $4)",
            &[&table, &i64::from(id), &file_id, &run_id],
        )?;
        Ok(())
    };
    for (uid, s) in &series {
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
            tx.execute(
                "INSERT INTO registry.reject (run_id, source_file_id, column_name, reason_code, reason) VALUES ($1, $2, $3, $4, $5)",
                &[&run_id, &file_id, &s.folder, &code, &reason],
            )?;
            out.rejected.push((s.folder.clone(), reason));
            continue;
        }
        let person_id = persons[&s.patient_id];
        let day = s.date.expect("checked");
        let modality: String = s.modality.chars().take(50).collect();
        let proc_id = next_id(&mut tx, "procedure_occurrence")?;
        tx.execute(
            "INSERT INTO cdm.procedure_occurrence (procedure_occurrence_id, person_id, procedure_concept_id, procedure_date, procedure_type_concept_id, procedure_source_value)
             VALUES ($1, $2, 0, $3, $4, $5)",
            &[&proc_id, &person_id, &day, &TYPE_CONCEPT_EHR, &modality],
        )?;
        lineage(&mut tx, "procedure_occurrence", proc_id)?;
        out.procedure_occurrences += 1;
        let image_id = next_id(&mut tx, "image_occurrence")?;
        tx.execute(
            "INSERT INTO cdm.image_occurrence (image_occurrence_id, person_id, procedure_occurrence_id, local_path, image_occurrence_date, image_study_uid, image_series_uid, modality_concept_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0)",
            &[&image_id, &person_id, &proc_id, &s.folder, &day, &s.study_uid, uid],
        )?;
        lineage(&mut tx, "image_occurrence", image_id)?;
        out.image_occurrences += 1;
        for roi in &s.rois {
            let feature_id = next_id(&mut tx, "image_feature")?;
            let json = serde_json::to_string(roi)?;
            tx.execute(
                "INSERT INTO cdm.image_feature (image_feature_id, person_id, image_occurrence_id, image_feature_concept_id, image_feature_type_concept_id, anatomic_site_concept_id, alg_system)
                 VALUES ($1, $2, $3, 0, $4, NULL, $5)",
                &[&feature_id, &person_id, &image_id, &TYPE_CONCEPT_EHR, &json],
            )?;
            lineage(&mut tx, "image_feature", feature_id)?;
            out.image_features += 1;
        }
    }
    let loaded = out.procedure_occurrences + out.image_occurrences + out.image_features;
    tx.execute(
        "UPDATE registry.source_file SET status = 'loaded', rows_in = $2, rows_loaded = $3, rows_rejected = $4
          WHERE source_file_id = $1",
        &[&file_id, &out.files, &loaded, &(out.rejected.len() as i64)],
    )?;
    tx.commit()?;
    out.status = "loaded".into();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tg263_names() {
        let t = |n: &str, ty: &str| tg263_name(n, Some(ty));
        assert_eq!(t("CTV breast", "CTV"), "CTVp_Breast");
        assert_eq!(t("CTVp_Breast_L", "CTV"), "CTVp_Breast_L");
        assert_eq!(t("CTV_Breast_R", "CTV"), "CTVp_Breast_R");
        assert_eq!(t("CTV_n_L1", "CTV"), "CTVn_L1");
        assert_eq!(t("CTVn_L1_L", "CTV"), "CTVn_L1_L");
        assert_eq!(t("CTV aisselle 2", "CTV"), "CTVn_L2");
        assert_eq!(t("Axilla III", "CTV"), "CTVn_L3");
        assert_eq!(t("IMC", "CTV"), "CTVn_IMN");
        assert_eq!(t("Boost", "PTV"), "PTVp_TumorBed");
        assert_eq!(t("PTV", "PTV"), "PTV");
        assert_eq!(t("PTV_ChestWall_L", "PTV"), "PTVp_Chestwall_L");
        assert_eq!(t("Heart", "ORGAN"), "Heart");
        assert_eq!(t("Coeur", "ORGAN"), "Heart");
        assert_eq!(t("Lung L", "ORGAN"), "Lung_L");
        assert_eq!(t("LUNG_R", "ORGAN"), "Lung_R");
        assert_eq!(t("Poumon G", "ORGAN"), "Lung_L");
        assert_eq!(t("BODY", "EXTERNAL"), "External");
        assert_eq!(t("Spinal cord", "ORGAN"), "SpinalCord");
        assert_eq!(t("Something odd", "ORGAN"), "Something odd");
    }

    #[test]
    fn targets_take_the_side_of_the_set() {
        let roi = |name: &str, ty: &str| RoiFacts {
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
        };
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
    }

    #[test]
    fn shoelace_square() {
        let sq = [(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0)];
        assert!((shoelace(&sq) - 100.0).abs() < 1e-9);
        assert_eq!(spacing(&[5.0, 2.5, 0.0, 5.0]), Some(2.5));
    }
}
