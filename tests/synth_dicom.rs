//! `registrar synth`: the DICOM radiotherapy sets. Every file is a valid Part 10 file that
//! dicom-rs reads back; RTSTRUCT -> CT, RTPLAN -> RTSTRUCT and RTDOSE -> RTPLAN references
//! resolve within one study and one frame of reference; the identifiers a pseudonymiser must
//! remove are the patient's; ROI volumes recomputed from the contours match the truth file;
//! the bytes are the same for a seed; dirt is one truncated and one foreign file; and
//! `dciodvfy` (dicom3tools) finds no error when it is installed. No database needed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::{open_file, InMemDicomObject};
use registrar_synth::{
    generate, SynthOptions, CT_IMAGE_STORAGE, RT_DOSE_STORAGE, RT_PLAN_STORAGE,
    RT_STRUCTURE_SET_STORAGE,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
/// (0010,1002), spelt `OTHER_PATIENT_I_DS_SEQUENCE` by dicom-dictionary-std.
const OTHER_PATIENT_IDS_SEQUENCE: Tag = Tag(0x0010, 0x1002);

struct Run {
    _dir: tempfile::TempDir,
    root: PathBuf,
    summary: Value,
    truth: Vec<Value>,
}

fn synth(patients: u64, seed: u64, dirt: f64, tweak: impl FnOnce(&mut SynthOptions)) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("out");
    let mut opts = SynthOptions::new(patients, seed, &root);
    opts.dirt = dirt;
    // A coarse grid unless a test asks for another (the default is fine and large).
    opts.dicom_slices = 16;
    opts.dicom_matrix = 64;
    tweak(&mut opts);
    generate(&opts, &|_| {}).expect("synth runs");
    let summary: Value =
        serde_json::from_slice(&std::fs::read(root.join("truth_summary.json")).unwrap()).unwrap();
    let truth = std::fs::read_to_string(root.join("truth.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    Run {
        _dir: dir,
        root,
        summary,
        truth,
    }
}

/// Every file under `dir`, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn text(o: &InMemDicomObject, tag: Tag) -> String {
    o.element(tag)
        .unwrap_or_else(|_| panic!("{tag} present"))
        .to_str()
        .unwrap()
        .trim_end_matches(['\0', ' '])
        .to_string()
}

fn floats(o: &InMemDicomObject, tag: Tag) -> Vec<f64> {
    o.element(tag).unwrap().to_multi_float64().unwrap()
}

fn int(o: &InMemDicomObject, tag: Tag) -> i64 {
    o.element(tag).unwrap().to_int::<i64>().unwrap()
}

fn items(o: &InMemDicomObject, tag: Tag) -> &[InMemDicomObject] {
    o.element(tag).unwrap().items().expect("a sequence")
}

/// Whether a point lies inside a polygon (ray casting).
fn inside((x, y): (f64, f64), poly: &[(f64, f64)]) -> bool {
    let mut inside = false;
    for i in 0..poly.len() {
        let (x0, y0) = poly[i];
        let (x1, y1) = poly[(i + 1) % poly.len()];
        if (y0 > y) != (y1 > y) && x < x0 + (y - y0) * (x1 - x0) / (y1 - y0) {
            inside = !inside;
        }
    }
    inside
}

fn shoelace(xy: &[(f64, f64)]) -> f64 {
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

/// What one patient folder holds, read back.
#[derive(Default)]
struct Folder {
    ct: Vec<InMemDicomObject>,
    rtstruct: Vec<InMemDicomObject>,
    rtplan: Vec<InMemDicomObject>,
    rtdose: Vec<InMemDicomObject>,
}

/// Opens every DICOM file of a clean run and checks its Part 10 meta against its data set.
fn read_tree(root: &Path) -> BTreeMap<String, Folder> {
    let mut folders: BTreeMap<String, Folder> = BTreeMap::new();
    for path in files_under(&root.join("dicom")) {
        let obj = open_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[128..132], b"DICM");
        assert!(bytes[..128].iter().all(|b| *b == 0), "zero preamble");
        let meta = obj.meta();
        assert_eq!(meta.transfer_syntax(), EXPLICIT_VR_LE);
        let class = text(&obj, tags::SOP_CLASS_UID);
        assert_eq!(meta.media_storage_sop_class_uid(), class);
        assert_eq!(
            meta.media_storage_sop_instance_uid(),
            text(&obj, tags::SOP_INSTANCE_UID)
        );
        let folder = path
            .parent()
            .unwrap()
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let f = folders.entry(folder).or_default();
        let inner = obj.into_inner();
        match class.as_str() {
            CT_IMAGE_STORAGE => f.ct.push(inner),
            RT_STRUCTURE_SET_STORAGE => f.rtstruct.push(inner),
            RT_PLAN_STORAGE => f.rtplan.push(inner),
            RT_DOSE_STORAGE => f.rtdose.push(inner),
            other => panic!("unexpected SOP class {other}"),
        }
    }
    folders
}

#[test]
fn synth_dicom_sets_reference_each_other_and_match_the_truth() {
    let r = synth(16, 21, 0.0, |_| {});
    let folders = read_tree(&r.root);
    let fhir: HashMap<String, Value> = std::fs::read_to_string(r.root.join("fhir/Patient.ndjson"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["id"].as_str().unwrap().to_string(), v)
        })
        .collect();

    let mut sop_uids = HashSet::new();
    let mut with_dicom = 0;
    let mut rois_checked = 0;
    for t in &r.truth {
        let d = &t["dicom"];
        if d.is_null() {
            assert!(!t["radiotherapy"].as_bool().unwrap());
            assert_eq!(t["structure_sets"], 0);
            continue;
        }
        with_dicom += 1;
        let folder = d["folder"].as_str().unwrap();
        let f = &folders[folder];
        let mrn = t["patient_nr"].as_str().unwrap();
        let p = &fhir[t["fhir_patient_id"].as_str().unwrap()];
        let family = p["name"][0]["family"].as_str().unwrap();
        let given = p["name"][0]["given"][0].as_str().unwrap();
        // The folder name is an opaque counter, never an identifier.
        let leaf = folder.trim_start_matches("dicom/");
        assert!(leaf.starts_with('P') && leaf[1..].bytes().all(|b| b.is_ascii_digit()));
        assert!(!folder.contains(mrn) && !folder.contains(family));

        let n_sets = d["structure_sets"].as_array().unwrap().len();
        assert_eq!(t["structure_sets"].as_u64().unwrap() as usize, n_sets);
        assert_eq!(f.rtstruct.len(), n_sets);
        let plans = d["plans"].as_array().unwrap();
        assert_eq!((f.rtplan.len(), f.rtdose.len()), (plans.len(), plans.len()));
        assert_eq!(f.ct.len() as u64, d["ct"]["slices"].as_u64().unwrap());
        assert_eq!(
            (f.ct.len() + f.rtstruct.len() + f.rtplan.len() + f.rtdose.len()) as u64,
            d["files"].as_u64().unwrap()
        );

        // One study, one frame of reference, the patient's identifiers everywhere.
        let study = d["study_instance_uid"].as_str().unwrap();
        let frame = d["frame_of_reference_uid"].as_str().unwrap();
        let charset = d["charset"].as_str().unwrap();
        let birth = t["birth_date"].as_str().unwrap().replace('-', "");
        for o in
            f.ct.iter()
                .chain(&f.rtstruct)
                .chain(&f.rtplan)
                .chain(&f.rtdose)
        {
            assert_eq!(text(o, tags::STUDY_INSTANCE_UID), study);
            assert_eq!(text(o, tags::FRAME_OF_REFERENCE_UID), frame);
            assert_eq!(text(o, tags::SPECIFIC_CHARACTER_SET), charset);
            assert_eq!(text(o, tags::PATIENT_ID), mrn);
            assert_eq!(text(o, tags::PATIENT_NAME), format!("{family}^{given}"));
            assert_eq!(text(o, tags::PATIENT_BIRTH_DATE), birth);
            assert_eq!(text(o, tags::PATIENT_SEX), t["sex"].as_str().unwrap());
            assert!(!text(o, tags::INSTITUTION_NAME).is_empty());
            assert!(text(o, tags::REFERRING_PHYSICIAN_NAME).contains('^'));
            assert!(text(o, tags::OPERATORS_NAME).contains('^'));
            assert!(!text(o, tags::ACCESSION_NUMBER).is_empty());
            assert!(!text(o, tags::STUDY_ID).is_empty());
            assert!(
                sop_uids.insert(text(o, tags::SOP_INSTANCE_UID)),
                "unique UIDs"
            );
            if d["national_number_in_other_ids"].as_bool().unwrap() {
                let other = items(o, OTHER_PATIENT_IDS_SEQUENCE);
                let ssin = p["identifier"][0]["value"].as_str().unwrap();
                assert_eq!(text(&other[0], tags::PATIENT_ID), ssin);
            } else {
                assert!(o.element_opt(OTHER_PATIENT_IDS_SEQUENCE).unwrap().is_none());
            }
        }
        let ct_date = t["dicom"]["ct"]["date"].as_str().unwrap().replace('-', "");
        assert_eq!(text(&f.ct[0], tags::STUDY_DATE), ct_date);

        // The CT: consistent geometry, evenly spaced slices.
        let series = d["ct"]["series_instance_uid"].as_str().unwrap();
        let mut slices: Vec<(f64, String)> = Vec::new();
        for o in &f.ct {
            assert_eq!(text(o, tags::SERIES_INSTANCE_UID), series);
            assert_eq!(
                floats(o, tags::IMAGE_ORIENTATION_PATIENT),
                [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
            );
            let rows = int(o, tags::ROWS) as usize;
            let cols = int(o, tags::COLUMNS) as usize;
            assert_eq!(rows as u64, d["ct"]["rows"].as_u64().unwrap());
            let px = o.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap();
            assert_eq!(px.len(), rows * cols * 2);
            let spacing = floats(o, tags::PIXEL_SPACING);
            assert_eq!(spacing[0], d["ct"]["pixel_spacing_mm"].as_f64().unwrap());
            assert_eq!(floats(o, tags::RESCALE_INTERCEPT), [-1024.0]);
            let ipp = floats(o, tags::IMAGE_POSITION_PATIENT);
            slices.push((ipp[2], text(o, tags::SOP_INSTANCE_UID)));
        }
        slices.sort_by(|a, b| a.0.total_cmp(&b.0));
        let dz = d["ct"]["slice_spacing_mm"].as_f64().unwrap();
        for w in slices.windows(2) {
            assert!((w[1].0 - w[0].0 - dz).abs() < 1e-6, "even slice spacing");
        }
        assert_eq!(floats(&f.ct[0], tags::SLICE_THICKNESS), [dz]);
        let z_of: HashMap<&str, f64> = slices.iter().map(|(z, u)| (u.as_str(), *z)).collect();

        // Structure sets: references to the CT, contours on slices, volumes as in the truth.
        let mut rs_by_uid: HashMap<String, &InMemDicomObject> = HashMap::new();
        for o in &f.rtstruct {
            rs_by_uid.insert(text(o, tags::SOP_INSTANCE_UID), o);
        }
        for s in d["structure_sets"].as_array().unwrap() {
            let o = rs_by_uid[s["sop_instance_uid"].as_str().unwrap()];
            let for_item = &items(o, tags::REFERENCED_FRAME_OF_REFERENCE_SEQUENCE)[0];
            assert_eq!(text(for_item, tags::FRAME_OF_REFERENCE_UID), frame);
            let study_item = &items(for_item, tags::RT_REFERENCED_STUDY_SEQUENCE)[0];
            assert_eq!(text(study_item, tags::REFERENCED_SOP_INSTANCE_UID), study);
            let series_item = &items(study_item, tags::RT_REFERENCED_SERIES_SEQUENCE)[0];
            assert_eq!(text(series_item, tags::SERIES_INSTANCE_UID), series);
            let referenced: HashSet<String> = items(series_item, tags::CONTOUR_IMAGE_SEQUENCE)
                .iter()
                .map(|i| {
                    assert_eq!(text(i, tags::REFERENCED_SOP_CLASS_UID), CT_IMAGE_STORAGE);
                    text(i, tags::REFERENCED_SOP_INSTANCE_UID)
                })
                .collect();
            assert_eq!(referenced.len(), f.ct.len(), "every CT slice referenced");
            assert!(referenced.iter().all(|u| z_of.contains_key(u.as_str())));
            assert_eq!(
                text(o, tags::STRUCTURE_SET_DATE),
                s["date"].as_str().unwrap().replace('-', "")
            );

            let names: HashMap<i64, String> = items(o, tags::STRUCTURE_SET_ROI_SEQUENCE)
                .iter()
                .map(|i| {
                    assert_eq!(text(i, tags::REFERENCED_FRAME_OF_REFERENCE_UID), frame);
                    (int(i, tags::ROI_NUMBER), text(i, tags::ROI_NAME))
                })
                .collect();
            let observations: HashMap<i64, (String, String)> =
                items(o, tags::RTROI_OBSERVATIONS_SEQUENCE)
                    .iter()
                    .map(|i| {
                        (
                            int(i, tags::REFERENCED_ROI_NUMBER),
                            (
                                text(i, tags::RTROI_INTERPRETED_TYPE),
                                text(i, tags::ROI_INTERPRETER),
                            ),
                        )
                    })
                    .collect();
            let mut volumes: HashMap<i64, f64> = HashMap::new();
            for rc in items(o, tags::ROI_CONTOUR_SEQUENCE) {
                let number = int(rc, tags::REFERENCED_ROI_NUMBER);
                let mut planes: Vec<(f64, Vec<(f64, f64)>)> = Vec::new();
                for c in items(rc, tags::CONTOUR_SEQUENCE) {
                    assert_eq!(text(c, tags::CONTOUR_GEOMETRIC_TYPE), "CLOSED_PLANAR");
                    let data = floats(c, tags::CONTOUR_DATA);
                    let n = int(c, tags::NUMBER_OF_CONTOUR_POINTS) as usize;
                    assert_eq!(data.len(), 3 * n);
                    let image = &items(c, tags::CONTOUR_IMAGE_SEQUENCE)[0];
                    let z = z_of[text(image, tags::REFERENCED_SOP_INSTANCE_UID).as_str()];
                    assert!(data.chunks(3).all(|p| p[2] == z), "contour on its slice");
                    let xy: Vec<(f64, f64)> = data.chunks(3).map(|p| (p[0], p[1])).collect();
                    planes.push((z, xy));
                }
                // Even-odd: a contour inside an odd number of others on its plane is a hole.
                let cc: f64 = planes
                    .iter()
                    .enumerate()
                    .map(|(i, (z, xy))| {
                        let depth = planes
                            .iter()
                            .enumerate()
                            .filter(|(j, (z2, other))| *j != i && z2 == z && inside(xy[0], other))
                            .count();
                        let sign = if depth % 2 == 0 { 1.0 } else { -1.0 };
                        sign * shoelace(xy) * dz / 1000.0
                    })
                    .sum();
                volumes.insert(number, cc);
            }
            let rois = s["rois"].as_array().unwrap();
            assert_eq!(volumes.len(), rois.len());
            for roi in rois {
                let number = roi["number"].as_i64().unwrap();
                assert_eq!(names[&number], roi["name"].as_str().unwrap());
                let (kind, interpreter) = &observations[&number];
                assert_eq!(kind, roi["interpreted_type"].as_str().unwrap());
                assert!(
                    interpreter.contains('^'),
                    "ROI interpreter is a person name"
                );
                let expected = roi["volume_cc"].as_f64().unwrap();
                let got = volumes[&number];
                assert!(
                    (got - expected).abs() <= 0.01 * expected,
                    "{}: {got} cc computed, {expected} cc in the truth",
                    roi["name"]
                );
                let tg = roi["tg263"].as_str().unwrap();
                match tg {
                    t if t.starts_with("CTVp_Breast") => {
                        assert!((100.0..2000.0).contains(&got), "breast CTV {got} cc")
                    }
                    t if t.starts_with("CTVn_L") => {
                        assert!((1.0..100.0).contains(&got), "nodal CTV {got} cc")
                    }
                    _ => {}
                }
                rois_checked += 1;
            }
        }

        // Plans reference the clinical structure set; doses reference their plan.
        let clinical = d["structure_sets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["clinical"].as_bool().unwrap())
            .unwrap()["sop_instance_uid"]
            .as_str()
            .unwrap()
            .to_string();
        let plan_by_uid: HashMap<String, &InMemDicomObject> = f
            .rtplan
            .iter()
            .map(|o| (text(o, tags::SOP_INSTANCE_UID), o))
            .collect();
        let dose_by_uid: HashMap<String, &InMemDicomObject> = f
            .rtdose
            .iter()
            .map(|o| (text(o, tags::SOP_INSTANCE_UID), o))
            .collect();
        for pt in plans {
            let plan_uid = pt["sop_instance_uid"].as_str().unwrap();
            let o = plan_by_uid[plan_uid];
            let rs = &items(o, tags::REFERENCED_STRUCTURE_SET_SEQUENCE)[0];
            assert_eq!(text(rs, tags::REFERENCED_SOP_INSTANCE_UID), clinical);
            assert_eq!(
                text(rs, tags::REFERENCED_SOP_CLASS_UID),
                RT_STRUCTURE_SET_STORAGE
            );
            let fg = &items(o, tags::FRACTION_GROUP_SEQUENCE)[0];
            let fractions = int(fg, tags::NUMBER_OF_FRACTIONS_PLANNED);
            assert_eq!(fractions, pt["fractions"].as_i64().unwrap());
            let per_fraction: f64 = items(fg, tags::REFERENCED_BEAM_SEQUENCE)
                .iter()
                .map(|b| floats(b, tags::BEAM_DOSE)[0])
                .sum();
            let total = pt["total_dose_gy"].as_f64().unwrap();
            assert!((per_fraction * fractions as f64 - total).abs() < 0.01);
            assert_eq!(items(o, tags::BEAM_SEQUENCE).len(), 2);
            let prescribed = floats(
                &items(o, tags::DOSE_REFERENCE_SEQUENCE)[0],
                tags::TARGET_PRESCRIPTION_DOSE,
            );
            assert_eq!(prescribed, [total]);

            let dose = dose_by_uid[pt["dose_sop_instance_uid"].as_str().unwrap()];
            let rp = &items(dose, tags::REFERENCED_RT_PLAN_SEQUENCE)[0];
            assert_eq!(text(rp, tags::REFERENCED_SOP_INSTANCE_UID), plan_uid);
            let frames = int(dose, tags::NUMBER_OF_FRAMES) as usize;
            let offsets = floats(dose, tags::GRID_FRAME_OFFSET_VECTOR);
            assert_eq!(offsets.len(), frames);
            let px = dose.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap();
            let (rows, cols) = (
                int(dose, tags::ROWS) as usize,
                int(dose, tags::COLUMNS) as usize,
            );
            assert_eq!(px.len(), rows * cols * frames * 2);
            let scaling = floats(dose, tags::DOSE_GRID_SCALING)[0];
            let max = px
                .chunks(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .max()
                .unwrap();
            let max_gy = f64::from(max) * scaling;
            assert!(
                max_gy > total * 0.95 && max_gy < total * 1.1,
                "max dose {max_gy} Gy for {total} Gy prescribed"
            );
        }
    }
    assert!(
        with_dicom >= 8,
        "most patients have radiotherapy: {with_dicom}"
    );
    assert!(rois_checked > 50);
    let s = &r.summary["dicom"];
    assert_eq!(s["patients"].as_u64().unwrap(), with_dicom);
    let counted: usize = folders
        .values()
        .map(|f| f.ct.len() + f.rtstruct.len() + f.rtplan.len() + f.rtdose.len())
        .sum();
    assert_eq!(s["files"].as_u64().unwrap() as usize, counted);
}

#[test]
fn synth_dicom_gives_several_observers_to_some_patients() {
    let r = synth(40, 5, 0.0, |o| {
        o.dicom_slices = 6;
        o.dicom_matrix = 16;
    });
    let mut several = 0;
    for t in &r.truth {
        let Some(sets) = t["dicom"]["structure_sets"].as_array() else {
            continue;
        };
        if sets.len() > 1 {
            several += 1;
            assert!(sets.len() <= 4);
            let observers: HashSet<u64> = sets
                .iter()
                .map(|s| s["observer"].as_u64().unwrap())
                .collect();
            assert_eq!(observers.len(), sets.len(), "different observers");
        }
        assert_eq!(t["dicom"]["ct"]["slices"], 6);
    }
    assert!(
        several >= 2,
        "{several} patients with several structure sets"
    );
    // The small CT was honoured.
    let ct = r
        .truth
        .iter()
        .find_map(|t| t["dicom"]["folder"].as_str())
        .unwrap();
    let obj = open_file(r.root.join(ct).join("CT0001.dcm")).unwrap();
    assert_eq!(int(&obj, tags::ROWS), 16);
}

#[test]
fn synth_dicom_is_deterministic_and_can_be_switched_off() {
    let hash_tree = |root: &Path| -> BTreeMap<PathBuf, String> {
        files_under(&root.join("dicom"))
            .into_iter()
            .map(|p| {
                let h = hex::encode(Sha256::digest(std::fs::read(&p).unwrap()));
                (p.strip_prefix(root).unwrap().to_path_buf(), h)
            })
            .collect()
    };
    let a = synth(8, 99, 0.02, |_| {});
    let b = synth(8, 99, 0.02, |_| {});
    let c = synth(8, 100, 0.02, |_| {});
    let (ha, hb, hc) = (hash_tree(&a.root), hash_tree(&b.root), hash_tree(&c.root));
    assert!(ha.len() > 20);
    assert_eq!(ha, hb, "same seed, same bytes");
    assert_ne!(ha, hc, "another seed, other bytes");
    assert_eq!(
        std::fs::read(a.root.join("truth.jsonl")).unwrap(),
        std::fs::read(b.root.join("truth.jsonl")).unwrap()
    );

    let off = synth(8, 99, 0.02, |o| o.dicom = false);
    assert!(!off.root.join("dicom").exists());
    assert!(off.summary["dicom"].is_null());
    assert_eq!(off.summary["dirt"]["dicom_truncated"], 0);
    for t in &off.truth {
        assert!(t["dicom"].is_null());
        assert_eq!(t["structure_sets"], 0);
    }
    // The rest of the cohort does not depend on the DICOM option.
    for (x, y) in off.truth.iter().zip(&a.truth) {
        assert_eq!(x["patient_nr"], y["patient_nr"]);
        assert_eq!(x["radiotherapy"], y["radiotherapy"]);
    }
}

#[test]
fn synth_dicom_dirt_is_one_truncated_and_one_foreign_file() {
    let r = synth(20, 4, 0.05, |_| {});
    assert_eq!(r.summary["dirt"]["dicom_truncated"], 1);
    assert_eq!(r.summary["dirt"]["not_dicom"], 1);
    let truncated = r.summary["file_dirt"]["dicom_truncated"].as_str().unwrap();
    let foreign = r.summary["file_dirt"]["not_dicom"].as_str().unwrap();
    assert_eq!(r.summary["dicom"]["truncated"], truncated);
    assert!(truncated.starts_with("dicom/P") && foreign.starts_with("dicom/"));
    let mut opened = 0;
    for path in files_under(&r.root.join("dicom")) {
        let rel = path
            .strip_prefix(&r.root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let bytes = std::fs::read(&path).unwrap();
        if rel == foreign {
            assert!(bytes.len() < 132 || &bytes[128..132] != b"DICM");
            assert!(open_file(&path).is_err(), "{rel} is not DICOM");
        } else if rel == truncated {
            // Cut in the middle of the pixel data or of the ROI contours.
            let whole = open_file(&path).ok().is_some_and(|o| {
                o.element(tags::PIXEL_DATA)
                    .ok()
                    .and_then(|e| e.to_bytes().ok())
                    .is_some_and(|px| px.len() >= 64 * 64 * 2)
                    || o.element(tags::RTROI_OBSERVATIONS_SEQUENCE).is_ok()
            });
            assert!(!whole, "{rel} is truncated");
        } else {
            open_file(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
            opened += 1;
        }
    }
    assert_eq!(
        opened as u64 + 1,
        r.summary["dicom"]["files"].as_u64().unwrap()
    );
}

/// Errors and warnings that `dciodvfy` reports for a file.
fn dciodvfy(path: &Path) -> (Vec<String>, Vec<String>) {
    let out = Command::new("dciodvfy").arg(path).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let errors = text
        .lines()
        .filter(|l| l.starts_with("Error"))
        .map(str::to_string)
        .collect();
    let warnings = text
        .lines()
        .filter(|l| l.starts_with("Warning"))
        .map(str::to_string)
        .collect();
    (errors, warnings)
}

#[test]
fn synth_dicom_passes_dciodvfy() {
    if Command::new("dciodvfy").arg("-").output().is_err() {
        eprintln!("note: dciodvfy (Debian package dicom3tools) is not installed; skipped");
        return;
    }
    let r = synth(10, 8, 0.0, |_| {});
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for t in &r.truth {
        let Some(folder) = t["dicom"]["folder"].as_str() else {
            continue;
        };
        let dir = r.root.join(folder);
        for (kind, file) in [
            ("CT", "CT0001.dcm"),
            ("RTSTRUCT", "RS1.dcm"),
            ("RTPLAN", "RP1.dcm"),
            ("RTDOSE", "RD1.dcm"),
        ] {
            if seen.get(kind).copied().unwrap_or(0) >= 2 {
                continue;
            }
            let (errors, warnings) = dciodvfy(&dir.join(file));
            assert!(errors.is_empty(), "{kind} {folder}/{file}: {errors:#?}");
            if !warnings.is_empty() {
                eprintln!("{kind}: {} warnings: {warnings:#?}", warnings.len());
            }
            *seen.entry(kind).or_default() += 1;
        }
        // Entity consistency across the patient's files (dcentvfy, same package).
        let files: Vec<PathBuf> = files_under(&dir);
        if let Ok(out) = Command::new("dcentvfy").args(&files).output() {
            let text = String::from_utf8_lossy(&out.stderr).into_owned()
                + &String::from_utf8_lossy(&out.stdout);
            assert!(
                !text.lines().any(|l| l.starts_with("Error")),
                "dcentvfy {folder}: {text}"
            );
        }
    }
    assert_eq!(seen.len(), 4, "every kind validated: {seen:?}");
}
