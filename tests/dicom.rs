//! `registrar dicom pseudonymise` on real DICOM files (tests/data/dicom, from pydicom): every
//! hard case, the RT reference graph across separate processes, leaks, determinism, quarantine.
//! No database is involved.

use crate::support::{new_key, registrar_cmd, repo_file, text};
use registrar_anonymizer::dateshift::{checked_shift_date, DatePolicy};
use registrar_anonymizer::dicom::dicom_core::header::Header as _;
use registrar_anonymizer::dicom::dicom_core::value::{DataSetSequence, Value};
use registrar_anonymizer::dicom::dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use registrar_anonymizer::dicom::dicom_object::InMemDicomObject;
use registrar_anonymizer::dicom::parse::{self, Parsed};
use registrar_anonymizer::dicom::write_file;
use registrar_anonymizer::key::Key;
use registrar_anonymizer::pseudonym::{IdentifierType, Pseudonymiser};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

const PATIENT_NAME: Tag = Tag(0x0010, 0x0010);
const PATIENT_ID: Tag = Tag(0x0010, 0x0020);
const SOP_CLASS: Tag = Tag(0x0008, 0x0016);
const SOP_INSTANCE: Tag = Tag(0x0008, 0x0018);
const STUDY_UID: Tag = Tag(0x0020, 0x000D);
const SERIES_UID: Tag = Tag(0x0020, 0x000E);
const FRAME_OF_REFERENCE: Tag = Tag(0x0020, 0x0052);
const REF_SOP_CLASS: Tag = Tag(0x0008, 0x1150);
const REF_SOP_INSTANCE: Tag = Tag(0x0008, 0x1155);
const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);
const CT_CLASS: &str = "1.2.840.10008.5.1.4.1.1.2";

fn data(name: &str) -> PathBuf {
    repo_file(&format!("tests/data/dicom/{name}"))
}

fn read(path: &Path) -> Parsed {
    parse::parse(&std::fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The registry pseudonymiser of a key file, to compute expected values.
fn pseudonymiser(key: &Path) -> Pseudonymiser {
    Key::load(key)
        .unwrap()
        .domain("registry")
        .unwrap()
        .pseudonymiser()
}

/// One registry for the DICOM tests' audit entries.
fn audit_db() -> &'static crate::support::TestDb {
    static DB: std::sync::OnceLock<crate::support::TestDb> = std::sync::OnceLock::new();
    DB.get_or_init(crate::support::TestDb::new)
}

fn run(key: &Path, input: &Path, out: &Path, extra: &[&str]) -> Output {
    registrar_cmd()
        .arg("--database-url")
        .arg(audit_db().database_url_arg())
        .arg("--key-file")
        .arg(key)
        .args(["dicom", "pseudonymise", "--in"])
        .arg(input)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .expect("run registrar")
}

fn run_ok(key: &Path, input: &Path, out: &Path, extra: &[&str]) -> Output {
    let o = run(key, input, out, extra);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    o
}

/// Every pseudonymised file under `out` (quarantine excluded), by relative path.
fn outputs(out: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, acc: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().to_string();
            if p.is_dir() {
                if rel != "quarantine" {
                    walk(root, &p, acc);
                }
            } else {
                acc.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut acc = BTreeMap::new();
    if out.exists() {
        walk(out, out, &mut acc);
    }
    acc
}

fn only_output(out: &Path) -> (String, Vec<u8>, Parsed) {
    let all = outputs(out);
    assert_eq!(all.len(), 1, "{:?}", all.keys().collect::<Vec<_>>());
    let (name, bytes) = all.into_iter().next().unwrap();
    let parsed = parse::parse(&bytes).unwrap();
    (name, bytes, parsed)
}

/// A value as text (raw bytes as Latin-1, DS/IS joined), trimmed of padding.
fn value_text(e: &registrar_anonymizer::dicom::parse::Elem) -> String {
    let s = match e.value() {
        Value::Primitive(PrimitiveValue::U8(b)) => b.iter().map(|&c| c as char).collect(),
        Value::Primitive(PrimitiveValue::Empty) => String::new(),
        Value::Primitive(p) => p.to_str().into_owned(),
        _ => panic!("not a primitive value"),
    };
    s.trim_matches(|c| c == ' ' || c == '\0').to_string()
}

fn get(obj: &InMemDicomObject, tag: Tag) -> String {
    value_text(
        obj.get(tag)
            .unwrap_or_else(|| panic!("({:04X},{:04X}) missing", tag.0, tag.1)),
    )
}

fn items(obj: &InMemDicomObject, tag: Tag) -> &[InMemDicomObject] {
    obj.get(tag)
        .and_then(|e| e.items())
        .unwrap_or_else(|| panic!("({:04X},{:04X}) is not a sequence", tag.0, tag.1))
}

/// Follows a path of (sequence, item index) and returns the item.
fn item<'a>(obj: &'a InMemDicomObject, path: &[(Tag, usize)]) -> &'a InMemDicomObject {
    path.iter().fold(obj, |o, (t, i)| &items(o, *t)[*i])
}

fn put(obj: &mut InMemDicomObject, tag: Tag, vr: VR, value: &str) {
    obj.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
}

/// Sets `tag` in the item at `path` (creating sequences and items as needed).
fn set_at(obj: &mut InMemDicomObject, path: &[(Tag, usize)], tag: Tag, vr: VR, value: &str) {
    let Some(((seq, idx), rest)) = path.split_first() else {
        put(obj, tag, vr, value);
        return;
    };
    let mut its: Vec<InMemDicomObject> = obj
        .take(*seq)
        .and_then(|e| e.into_value().into_items())
        .map(|c| c.into_vec())
        .unwrap_or_default();
    while its.len() <= *idx {
        its.push(InMemDicomObject::new_empty());
    }
    set_at(&mut its[*idx], rest, tag, vr, value);
    obj.put(DataElement::new(
        *seq,
        VR::SQ,
        Value::from(DataSetSequence::from(its)),
    ));
}

/// Writes `obj` as `dir/name` in transfer syntax `ts`.
fn write_input(dir: &Path, name: &str, obj: InMemDicomObject, ts: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    let mut f = std::fs::File::create(&p).unwrap();
    write_file(&mut f, obj, ts).unwrap();
    p
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn assert_absent(bytes: &[u8], needles: &[&str]) {
    for n in needles {
        assert!(!contains(bytes, n.as_bytes()), "output contains {n:?}");
    }
}

fn shift(p: &Pseudonymiser, patient_id: &str, date: &str) -> String {
    let person = p.person(IdentifierType::Mrn, patient_id).unwrap();
    let days = p.date_shift_days(&DatePolicy::default(), &person);
    let d = chrono::NaiveDate::parse_from_str(date, "%Y%m%d").unwrap();
    checked_shift_date(d, days)
        .unwrap()
        .format("%Y%m%d")
        .to_string()
}

fn code_values(obj: &InMemDicomObject) -> Vec<String> {
    items(obj, Tag(0x0012, 0x0064))
        .iter()
        .map(|i| get(i, Tag(0x0008, 0x0100)))
        .collect()
}

/// Checks the VR length limits and UID syntax of every element at every depth.
fn assert_valid_values(obj: &InMemDicomObject) {
    for e in obj.iter() {
        if let Some(its) = e.items() {
            its.iter().for_each(assert_valid_values);
            continue;
        }
        if !matches!(e.value(), Value::Primitive(_)) {
            continue;
        }
        let v = value_text(e);
        let max = match e.vr() {
            VR::AE | VR::CS | VR::SH => 16,
            VR::LO | VR::UI => 64,
            VR::DA => 18,
            _ => usize::MAX,
        };
        for part in v.split('\\') {
            let part = part.trim();
            if e.vr() == VR::PN {
                for group in part.split('=') {
                    assert!(group.len() <= 64, "PN group too long in {:?}", e.tag());
                }
            } else {
                assert!(
                    part.len() <= max,
                    "{:?} {:?} too long: {part}",
                    e.tag(),
                    e.vr()
                );
            }
            if e.vr() == VR::UI && !part.is_empty() {
                assert!(
                    part.bytes().all(|b| b.is_ascii_digit() || b == b'.'),
                    "bad UID {part} in {:?}",
                    e.tag()
                );
            }
        }
    }
}

fn pixel_bytes(p: &Parsed) -> Vec<Vec<u8>> {
    match p.dataset.get(PIXEL_DATA).map(|e| e.value()) {
        Some(Value::PixelSequence(s)) => {
            let mut v = vec![s
                .offset_table()
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect()];
            v.extend(s.fragments().iter().cloned());
            v
        }
        Some(Value::Primitive(PrimitiveValue::U8(b))) => vec![b.to_vec()],
        other => panic!("no pixel data: {other:?}"),
    }
}

#[test]
fn dicom_ct_profile_marks_and_leaks() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "k");
    let input = dir.path().join("in");
    std::fs::create_dir_all(input.join("DOE^JOHN 1CT1")).unwrap();
    let src = data("CT_small.dcm");
    std::fs::copy(&src, input.join("DOE^JOHN 1CT1/CT_small.dcm")).unwrap();
    let out = dir.path().join("out");
    let records = dir.path().join("records.jsonl");
    let o = run_ok(
        &key,
        &input,
        &out,
        &["--records", records.to_str().unwrap()],
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("1 pseudonymised"),
        "{}",
        text(&o)
    );

    let p = pseudonymiser(&key);
    let orig = read(&src);
    let (name, bytes, res) = only_output(&out);
    let ds = &res.dataset;
    // Path from pseudonymous UIDs.
    assert_eq!(
        name,
        format!(
            "{}/{}/{}.dcm",
            p.pseudo_uid(&get(&orig.dataset, STUDY_UID)),
            p.pseudo_uid(&get(&orig.dataset, SERIES_UID)),
            p.pseudo_uid(&get(&orig.dataset, SOP_INSTANCE))
        )
    );
    // Person pseudonym shared with clinical rows (MRN).
    let person = p.person(IdentifierType::Mrn, "1CT1").unwrap();
    assert_eq!(get(ds, PATIENT_ID), person.as_str());
    assert_eq!(get(ds, PATIENT_NAME), person.as_str());
    // Dates shifted with the clinical shift; marks.
    assert_eq!(get(ds, Tag(0x0008, 0x0020)), shift(&p, "1CT1", "20040119"));
    assert_eq!(get(ds, Tag(0x0012, 0x0062)), "YES");
    assert!(get(ds, Tag(0x0012, 0x0063)).starts_with("registrar "));
    assert_eq!(get(ds, Tag(0x0028, 0x0303)), "MODIFIED");
    assert_eq!(code_values(ds), ["113100", "113107", "113108", "113105"]);
    // Private groups gone, file meta rewritten, pixels untouched.
    assert!(ds.iter().all(|e| e.tag().0 % 2 == 0));
    assert_eq!(res.transfer_syntax, orig.transfer_syntax);
    assert_eq!(pixel_bytes(&res), pixel_bytes(&orig));
    assert_valid_values(ds);
    // No identifying value anywhere in the bytes.
    assert_absent(
        &bytes,
        &[
            "1CT1",
            "CompressedSamples",
            "JFK IMAGING",
            "20040119",
            &get(&orig.dataset, SOP_INSTANCE),
            &get(&orig.dataset, STUDY_UID),
        ],
    );
    // Records for the audit log: counts per rule, a locator hash, no path.
    let rec = std::fs::read_to_string(&records).unwrap();
    assert!(!rec.contains("DOE") && !rec.contains("CT_small"), "{rec}");
    let v: serde_json::Value = serde_json::from_str(rec.lines().next().unwrap()).unwrap();
    assert_eq!(v["status"], "pseudonymised");
    assert_eq!(
        v["source"],
        p.locator_hash("dicom/DOE^JOHN 1CT1/CT_small.dcm")
    );
    assert!(v["counts"]["private_removed"].as_u64().unwrap() > 100);
    assert!(v["counts"]["uids_remapped"].as_u64().unwrap() >= 4);
    assert!(v["counts"]["dates_shifted"].as_u64().unwrap() >= 3);
    assert!(v["counts"]["removed"].as_u64().unwrap() >= 1);
    assert!(v["counts"]["zeroed"].as_u64().unwrap() >= 1);
    // The output paths hold no input name.
    assert!(outputs(&out)
        .keys()
        .all(|k| !k.contains("DOE") && !k.contains("CT_small")));
}

#[test]
fn dicom_transfer_syntaxes_pass_pixels_through() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "k");
    for (file, ts) in [
        ("MR_small_implicit.dcm", "1.2.840.10008.1.2"),
        ("MR_small_bigendian.dcm", "1.2.840.10008.1.2.2"),
        ("MR_small_RLE.dcm", "1.2.840.10008.1.2.5"),
        ("MR_small_jp2klossless.dcm", "1.2.840.10008.1.2.4.90"),
        ("MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80"),
    ] {
        let input = dir.path().join(format!("in-{file}"));
        std::fs::create_dir_all(&input).unwrap();
        std::fs::copy(data(file), input.join(file)).unwrap();
        let out = dir.path().join(format!("out-{file}"));
        run_ok(&key, &input, &out, &[]);
        let orig = read(&data(file));
        let (_, bytes, res) = only_output(&out);
        assert_eq!(res.transfer_syntax, ts, "{file}");
        assert_eq!(pixel_bytes(&res), pixel_bytes(&orig), "{file}");
        assert_valid_values(&res.dataset);
        assert_absent(&bytes, &["CompressedSamples^MR1", "4MR1"]);
    }
}

#[test]
fn dicom_deflated_and_files_without_meta() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "k");
    let input = dir.path().join("in");
    // Deflated: a Patient ID added, written deflated again (the file is Secondary Capture
    // without Burned In Annotation: --accept-burned-in).
    let mut dfl = read(&data("image_dfl.dcm"));
    assert!(dfl.deflated);
    put(&mut dfl.dataset, PATIENT_ID, VR::LO, "DFL-7");
    write_input(&input, "dfl.dcm", dfl.dataset, "1.2.840.10008.1.2.1.99");
    // No preamble, no file meta: implicit VR (as shipped) and explicit VR in both byte orders
    // (Patient ID appended as raw bytes, the files stay bare data sets).
    std::fs::copy(data("rtstruct.dcm"), input.join("rtstruct.dcm")).unwrap();
    let mut le = std::fs::read(data("ExplVR_LitEndNoMeta.dcm")).unwrap();
    le.extend([0x10, 0x00, 0x20, 0x00, b'L', b'O', 6, 0]);
    le.extend(b"LE-001");
    std::fs::write(input.join("le-bare"), &le).unwrap();
    // The big-endian twin has the same SOP Instance UID: one run would keep the first and
    // skip the other as a duplicate, so it goes through its own run.
    let input_be = dir.path().join("in-be");
    std::fs::create_dir_all(&input_be).unwrap();
    let mut be = std::fs::read(data("ExplVR_BigEndNoMeta.dcm")).unwrap();
    be.extend([0x00, 0x10, 0x00, 0x20, b'L', b'O', 0, 6]);
    be.extend(b"BE-001");
    std::fs::write(input_be.join("be-bare"), &be).unwrap();

    let out = dir.path().join("out");
    run_ok(&key, &input, &out, &["--accept-burned-in"]);
    let out_be = dir.path().join("out-be");
    run_ok(&key, &input_be, &out_be, &[]);
    let p = pseudonymiser(&key);
    let all = outputs(&out);
    assert_eq!(all.len(), 3, "{:?}", all.keys());
    let mut by_person = BTreeMap::new();
    for bytes in all.values().chain(outputs(&out_be).values()) {
        let res = parse::parse(bytes).unwrap();
        assert!(bytes.len() > 132 && &bytes[128..132] == b"DICM");
        assert!(res.had_meta);
        by_person.insert(get(&res.dataset, PATIENT_ID), res);
    }
    let find = |id: &str| &by_person[p.person(IdentifierType::Mrn, id).unwrap().as_str()];
    let dfl = find("DFL-7");
    assert!(dfl.deflated);
    assert_eq!(dfl.transfer_syntax, "1.2.840.10008.1.2.1.99");
    assert_eq!(pixel_bytes(dfl), pixel_bytes(&read(&data("image_dfl.dcm"))));
    assert_eq!(find("LE-001").transfer_syntax, "1.2.840.10008.1.2.1");
    assert_eq!(find("BE-001").transfer_syntax, "1.2.840.10008.1.2.2");
    let rs = read(&data("rtstruct.dcm"));
    assert!(!rs.had_meta);
    let rs_id = get(&rs.dataset, PATIENT_ID);
    let rs_out = find(&rs_id);
    assert_eq!(rs_out.transfer_syntax, "1.2.840.10008.1.2");
    // ROI names are structured labels and survive Clean Descriptors.
    let rois = items(&rs_out.dataset, Tag(0x3006, 0x0020));
    assert_eq!(get(&rois[1], Tag(0x3006, 0x0026)), "Isocenter 1");
    // ... but a label that reads like a date does not ("sep30"): Structure Set Label is `D`.
    assert_eq!(get(&rs_out.dataset, Tag(0x3006, 0x0002)), "ANONYMIZED");
    for res in by_person.values() {
        assert_valid_values(&res.dataset);
    }
}

#[test]
fn dicom_un_and_private_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "k");
    let p = pseudonymiser(&key);
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    // UN_sequence.dcm: a private sequence (4453,100C) encoded as UN with undefined length (its
    // items in implicit VR) holding standard UIDs. Identification and a private creator are
    // appended as raw explicit VR elements.
    let mut un = std::fs::read(data("UN_sequence.dcm")).unwrap();
    let el = |g: u16, e: u16, vr: &[u8; 2], v: &str| {
        let mut v = v.as_bytes().to_vec();
        if v.len() % 2 == 1 {
            v.push(if vr == b"UI" { 0 } else { b' ' });
        }
        let mut b = Vec::new();
        b.extend(g.to_le_bytes());
        b.extend(e.to_le_bytes());
        b.extend(vr);
        b.extend((v.len() as u16).to_le_bytes());
        b.extend(v);
        b
    };
    for b in [
        el(0x0008, 0x0016, b"UI", CT_CLASS),
        el(0x0008, 0x0018, b"UI", "1.2.3.4.5.6.7.1"),
        el(0x0010, 0x0020, b"LO", "UN-1"),
        el(0x0020, 0x000D, b"UI", "1.2.3.4.5.6.7.2"),
        el(0x0020, 0x000E, b"UI", "1.2.3.4.5.6.7.3"),
        el(0x4453, 0x0010, b"LO", "REGISTRAR TEST"),
    ] {
        un.extend(b);
    }
    std::fs::write(input.join("un.dcm"), &un).unwrap();
    let nested_ref = "1.2.840.113619.2.327.3.185221411.476.1398588726.278.80";

    // Default: private elements removed, nested UIDs gone with them.
    let out = dir.path().join("out");
    run_ok(&key, &input, &out, &[]);
    let (_, bytes, res) = only_output(&out);
    assert!(res.dataset.iter().all(|e| e.tag().0 != 0x4453));
    assert_absent(&bytes, &[nested_ref, "REGISTRAR TEST"]);

    // Retain Safe Private with (4453, "REGISTRAR TEST", 0C) allowed: the sequence is kept, as a
    // real sequence, with its UIDs pseudonymised and its creator.
    let profile = dir.path().join("profile.toml");
    std::fs::write(
        &profile,
        "retain-safe-private = true\n\
         [[safe-private]]\ngroup = \"4453\"\ncreator = \"REGISTRAR TEST\"\nelement = \"0C\"\n",
    )
    .unwrap();
    let out2 = dir.path().join("out2");
    run_ok(
        &key,
        &input,
        &out2,
        &["--profile", profile.to_str().unwrap()],
    );
    let (_, bytes, res) = only_output(&out2);
    let ds = &res.dataset;
    assert_eq!(get(ds, Tag(0x4453, 0x0010)), "REGISTRAR TEST");
    let inner = item(
        ds,
        &[
            (Tag(0x4453, 0x100C), 0),
            (Tag(0x0008, 0x1115), 0),
            (Tag(0x0008, 0x1199), 0),
        ],
    );
    assert_eq!(get(inner, REF_SOP_INSTANCE), p.pseudo_uid(nested_ref));
    assert_eq!(get(inner, REF_SOP_CLASS), CT_CLASS);
    assert_absent(&bytes, &[nested_ref]);
    assert!(code_values(ds).contains(&"113111".to_string()));

    // nested_priv_SQ.dcm: a private sequence inside a private sequence (implicit VR).
    let input3 = dir.path().join("in3");
    std::fs::create_dir_all(&input3).unwrap();
    let mut nested = read(&data("nested_priv_SQ.dcm"));
    assert!(nested.dataset.iter().any(|e| e.tag().0 % 2 == 1));
    for (t, v) in [
        (SOP_CLASS, CT_CLASS),
        (SOP_INSTANCE, "1.2.3.9.1"),
        (STUDY_UID, "1.2.3.9.2"),
        (SERIES_UID, "1.2.3.9.3"),
    ] {
        put(&mut nested.dataset, t, VR::UI, v);
    }
    put(&mut nested.dataset, PATIENT_ID, VR::LO, "NP-1");
    write_input(&input3, "n.dcm", nested.dataset, "1.2.840.10008.1.2");
    let out3 = dir.path().join("out3");
    run_ok(&key, &input3, &out3, &[]);
    let (_, _, res) = only_output(&out3);
    assert!(res.dataset.iter().all(|e| e.tag().0 % 2 == 0));
}

#[test]
fn dicom_structured_report_content_dates_and_text() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "k");
    let p = pseudonymiser(&key);
    let input = dir.path().join("in");
    let mut sr = read(&data("test-SR.dcm"));
    put(&mut sr.dataset, PATIENT_ID, VR::LO, "SR-42");
    let ts = sr.transfer_syntax.clone();
    write_input(&input, "sr.dcm", sr.dataset, &ts);
    let out = dir.path().join("out");
    run_ok(&key, &input, &out, &[]);
    let (_, bytes, res) = only_output(&out);
    let ds = &res.dataset;
    assert_eq!(get(ds, Tag(0x0008, 0x0023)), shift(&p, "SR-42", "20010213"));
    // A DATE content item deep in the tree, and a DATETIME one: shifted, time kept.
    fn find_all(obj: &InMemDicomObject, tag: Tag, acc: &mut Vec<String>) {
        for e in obj.iter() {
            if e.tag() == tag {
                acc.push(value_text(e));
            }
            if let Some(its) = e.items() {
                its.iter().for_each(|i| find_all(i, tag, acc));
            }
        }
    }
    let mut dates = Vec::new();
    find_all(ds, Tag(0x0040, 0xA121), &mut dates);
    assert_eq!(dates, [shift(&p, "SR-42", "20001206")]);
    let mut dts = Vec::new();
    find_all(ds, Tag(0x0040, 0xA120), &mut dts);
    assert_eq!(dts, [format!("{}120000", shift(&p, "SR-42", "20001206"))]);
    let mut texts = Vec::new();
    find_all(ds, Tag(0x0040, 0xA160), &mut texts);
    assert!(!texts.is_empty() && texts.iter().all(|t| t == "ANONYMIZED"));
    assert_absent(
        &bytes,
        &[
            "20010213",
            "20001206",
            "Riesmeier",
            "Observer^Verifying",
            "Test^S R",
            "A mass of",
        ],
    );
    assert_valid_values(ds);
}

#[test]
fn dicom_overlays_curves_datetimes_invalid_uids_and_lengths() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "k");
    let p = pseudonymiser(&key);
    let input = dir.path().join("in");
    let mut ct = read(&data("CT_small.dcm"));
    let ds = &mut ct.dataset;
    // An overlay with its data (60xx), a curve (50xx).
    ds.put(DataElement::new(
        Tag(0x6000, 0x0010),
        VR::US,
        PrimitiveValue::from(128_u16),
    ));
    ds.put(DataElement::new(
        Tag(0x6000, 0x0011),
        VR::US,
        PrimitiveValue::from(128_u16),
    ));
    put(ds, Tag(0x6000, 0x0040), VR::CS, "G");
    put(ds, Tag(0x6000, 0x4000), VR::LT, "drawn by Dr Overlayson");
    ds.put(DataElement::new(
        Tag(0x6000, 0x3000),
        VR::OW,
        PrimitiveValue::U8(vec![0xAB; 2048].into()),
    ));
    put(ds, Tag(0x5000, 0x0022), VR::LO, "curve of Dr Curveson");
    ds.put(DataElement::new(
        Tag(0x5000, 0x3000),
        VR::OB,
        PrimitiveValue::U8(vec![1, 2, 3, 4].into()),
    ));
    // Date-times with UTC offsets, one nested.
    put(
        ds,
        Tag(0x0008, 0x002A),
        VR::DT,
        "20040119101530.123456+0100",
    );
    set_at(
        ds,
        &[(Tag(0x5200, 0x9230), 0), (Tag(0x0020, 0x9111), 0)],
        Tag(0x0018, 0x9074),
        VR::DT,
        "20040119101531-0500",
    );
    // Invalid UIDs (letters, over 64 characters), multi-valued, and a well-known one.
    let long_uid = format!("1.2.3.{}", "9".repeat(70));
    set_at(
        ds,
        &[(Tag(0x0008, 0x1140), 0)],
        REF_SOP_INSTANCE,
        VR::UI,
        &format!("1.2.ABC.77\\{long_uid}"),
    );
    set_at(
        ds,
        &[(Tag(0x0008, 0x1140), 0)],
        REF_SOP_CLASS,
        VR::UI,
        CT_CLASS,
    );
    put(ds, Tag(0x0020, 0x0200), VR::UI, "1.2.840.10008.1.2.1.99.5");
    // An AE title (replaced by a keyed hash cut to 16 under Retain Device Identity) and a
    // long station name.
    put(ds, Tag(0x0008, 0x0055), VR::AE, "CT_SCANNER_01");
    put(ds, Tag(0x0008, 0x1010), VR::SH, "STATION7");
    write_input(&input, "ct.dcm", ct.dataset, "1.2.840.10008.1.2.1");

    let profile = dir.path().join("profile.toml");
    std::fs::write(&profile, "retain-device-identity = true\n").unwrap();
    let out = dir.path().join("out");
    run_ok(
        &key,
        &input,
        &out,
        &["--profile", profile.to_str().unwrap()],
    );
    let (_, bytes, res) = only_output(&out);
    let ds = &res.dataset;
    assert!(ds
        .iter()
        .all(|e| e.tag().0 & 0xFF00 != 0x6000 && e.tag().0 & 0xFF00 != 0x5000));
    let s = shift(&p, "1CT1", "20040119");
    assert_eq!(
        get(ds, Tag(0x0008, 0x002A)),
        format!("{s}101530.123456+0100")
    );
    let nested = item(ds, &[(Tag(0x5200, 0x9230), 0), (Tag(0x0020, 0x9111), 0)]);
    assert_eq!(get(nested, Tag(0x0018, 0x9074)), format!("{s}101531-0500"));
    let refs = get(item(ds, &[(Tag(0x0008, 0x1140), 0)]), REF_SOP_INSTANCE);
    assert_eq!(
        refs,
        format!(
            "{}\\{}",
            p.pseudo_uid("1.2.ABC.77"),
            p.pseudo_uid(&long_uid)
        )
    );
    assert_eq!(
        get(item(ds, &[(Tag(0x0008, 0x1140), 0)]), REF_SOP_CLASS),
        CT_CLASS
    );
    assert_eq!(get(ds, Tag(0x0020, 0x0200)), "1.2.840.10008.1.2.1.99.5");
    let ae = get(ds, Tag(0x0008, 0x0055));
    assert_eq!(ae.len(), 16);
    assert_eq!(ae, &p.keyed_hash("dicom-device", b"CT_SCANNER_01")[..16]);
    assert_eq!(get(ds, Tag(0x0008, 0x1010)), "STATION7"); // Retain Device Identity: K
    assert!(code_values(ds).contains(&"113109".to_string()));
    assert_valid_values(ds);
    assert_absent(
        &bytes,
        &[
            "Overlayson",
            "Curveson",
            "CT_SCANNER_01",
            "1.2.ABC.77",
            &long_uid,
        ],
    );
    assert!(!contains(&bytes, &[0xAB; 64]));
}

#[test]
fn dicom_character_sets_and_person_name_groups() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "k");
    let p = pseudonymiser(&key);
    let cases: [(&str, &str, &str, &[&[u8]]); 3] = [
        (
            "chrX1.dcm",
            "ISO_IR 192",
            "X1EXAMPLE",
            &[b"Wang", b"XiaoDong", "王".as_bytes(), "小東".as_bytes()],
        ),
        (
            "chrX2.dcm",
            "GB18030",
            "X2EXAMPLE",
            &[b"Wang", b"XiaoDong", &[0xCD, 0xF5]],
        ),
        (
            "chrH31.dcm",
            "\\ISO 2022 IR 87",
            "H31EXAMPLE",
            // Yamada^Tarou=ISO 2022 JIS X 0208 ideographic and phonetic groups
            &[b"Yamada", b"Tarou", &[0x1B, 0x24, 0x42, 0x3B, 0x33]],
        ),
    ];
    for (file, charset, id, needles) in cases {
        let input = dir.path().join(format!("in-{file}"));
        std::fs::create_dir_all(&input).unwrap();
        std::fs::copy(data(file), input.join(file)).unwrap();
        let orig = read(&data(file));
        let out = dir.path().join(format!("out-{file}"));
        run_ok(&key, &input, &out, &["--accept-burned-in"]);
        let (_, bytes, res) = only_output(&out);
        let ds = &res.dataset;
        assert_eq!(get(ds, Tag(0x0008, 0x0005)), charset, "{file}");
        let person = p.person(IdentifierType::Mrn, id).unwrap();
        assert_eq!(get(ds, PATIENT_NAME), person.as_str(), "{file}");
        for n in needles {
            assert!(!contains(&bytes, n), "{file} leaks {n:?}");
        }
        // What is kept is byte-identical (the text is never re-encoded).
        let mut compared = 0;
        for e in orig.dataset.iter() {
            let t = e.tag();
            let kept_text = matches!(e.vr(), VR::LO | VR::CS | VR::ST | VR::LT | VR::SH)
                && t.0 % 2 == 0
                && t.0 != 0x0012
                && t != PATIENT_ID
                && registrar_anonymizer::dicom::profile::lookup(t.0, t.1).is_none();
            if let (true, Value::Primitive(PrimitiveValue::U8(b))) = (kept_text, e.value()) {
                let o = ds.get(t).expect("kept");
                assert_eq!(
                    o.value().to_bytes().unwrap().as_ref(),
                    &b[..],
                    "{file} {t:?}"
                );
                compared += 1;
            }
        }
        assert!(compared >= 3, "{file}");
        assert_valid_values(ds);
    }
}

/// CT, RT Structure Set, RT Plan and RT Dose that reference each other (the pydicom files, tied
/// together in memory): after pseudonymisation, each in its own process, every reference still
/// points at the pseudonymised target.
#[test]
fn dicom_rt_reference_graph_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "k");
    let p = pseudonymiser(&key);
    let ct = read(&data("CT_small.dcm"));
    let (study, ct_series, frame, ct_sop) = (
        get(&ct.dataset, STUDY_UID),
        get(&ct.dataset, SERIES_UID),
        get(&ct.dataset, FRAME_OF_REFERENCE),
        get(&ct.dataset, SOP_INSTANCE),
    );
    let patient = "1CT1";

    let mut rs = read(&data("rtstruct.dcm"));
    let rs_sop = get(&rs.dataset, SOP_INSTANCE);
    {
        let d = &mut rs.dataset;
        put(d, PATIENT_ID, VR::LO, patient);
        put(d, STUDY_UID, VR::UI, &study);
        let fr = [(Tag(0x3006, 0x0010), 0)];
        set_at(d, &fr, FRAME_OF_REFERENCE, VR::UI, &frame);
        let st = [(Tag(0x3006, 0x0010), 0), (Tag(0x3006, 0x0012), 0)];
        set_at(d, &st, REF_SOP_INSTANCE, VR::UI, &study);
        let se = [st[0], st[1], (Tag(0x3006, 0x0014), 0)];
        set_at(d, &se, SERIES_UID, VR::UI, &ct_series);
        let ci = [se[0], se[1], se[2], (Tag(0x3006, 0x0016), 0)];
        set_at(d, &ci, REF_SOP_CLASS, VR::UI, CT_CLASS);
        set_at(d, &ci, REF_SOP_INSTANCE, VR::UI, &ct_sop);
        for i in 0..3 {
            set_at(
                d,
                &[(Tag(0x3006, 0x0020), i)],
                Tag(0x3006, 0x0024),
                VR::UI,
                &frame,
            );
        }
        let cc = [
            (Tag(0x3006, 0x0039), 0),
            (Tag(0x3006, 0x0040), 0),
            (Tag(0x3006, 0x0016), 0),
        ];
        set_at(d, &cc, REF_SOP_INSTANCE, VR::UI, &ct_sop);
        // ROI names: structured labels survive Clean Descriptors; one that carries the
        // patient's name or identifier keeps only its TG-263 name.
        for (i, name) in ["CTV breast", "PTV 1CT1", "Lung_L Doe"].iter().enumerate() {
            set_at(
                d,
                &[(Tag(0x3006, 0x0020), i)],
                Tag(0x3006, 0x0026),
                VR::LO,
                name,
            );
        }
        put(d, PATIENT_NAME, VR::PN, "Doe^Jane");
    }
    let mut plan = read(&data("rtplan.dcm"));
    let plan_sop = get(&plan.dataset, SOP_INSTANCE);
    {
        let d = &mut plan.dataset;
        put(d, PATIENT_ID, VR::LO, patient);
        put(d, STUDY_UID, VR::UI, &study);
        put(d, FRAME_OF_REFERENCE, VR::UI, &frame);
        set_at(
            d,
            &[(Tag(0x300C, 0x0060), 0)],
            REF_SOP_INSTANCE,
            VR::UI,
            &rs_sop,
        );
    }
    let mut dose = read(&data("rtdose.dcm"));
    let dose_sop = get(&dose.dataset, SOP_INSTANCE);
    {
        let d = &mut dose.dataset;
        put(d, PATIENT_ID, VR::LO, patient);
        put(d, STUDY_UID, VR::UI, &study);
        put(d, FRAME_OF_REFERENCE, VR::UI, &frame);
        set_at(
            d,
            &[(Tag(0x300C, 0x0002), 0)],
            REF_SOP_INSTANCE,
            VR::UI,
            &plan_sop,
        );
    }
    let inputs = dir.path().join("all");
    std::fs::create_dir_all(&inputs).unwrap();
    std::fs::copy(data("CT_small.dcm"), inputs.join("ct.dcm")).unwrap();
    write_input(&inputs, "rs.dcm", rs.dataset, "1.2.840.10008.1.2");
    write_input(&inputs, "plan.dcm", plan.dataset, "1.2.840.10008.1.2");
    write_input(&inputs, "dose.dcm", dose.dataset, "1.2.840.10008.1.2");

    // One process per file, into one output tree.
    let out = dir.path().join("out");
    for f in ["ct.dcm", "rs.dcm", "plan.dcm", "dose.dcm"] {
        let one = dir.path().join(format!("one-{f}"));
        std::fs::create_dir_all(&one).unwrap();
        std::fs::copy(inputs.join(f), one.join(f)).unwrap();
        run_ok(&key, &one, &out, &["--jobs", "1"]);
    }
    let all = outputs(&out);
    assert_eq!(all.len(), 4);
    let by_sop: BTreeMap<String, InMemDicomObject> = all
        .values()
        .map(|b| {
            let d = parse::parse(b).unwrap().dataset;
            (get(&d, SOP_INSTANCE), d)
        })
        .collect();
    let o = |orig: &str| &by_sop[&p.pseudo_uid(orig)];
    let (ct_o, rs_o, plan_o, dose_o) = (o(&ct_sop), o(&rs_sop), o(&plan_sop), o(&dose_sop));
    let person = p.person(IdentifierType::Mrn, patient).unwrap();
    for d in [ct_o, rs_o, plan_o, dose_o] {
        assert_eq!(get(d, PATIENT_ID), person.as_str());
        assert_eq!(get(d, STUDY_UID), get(ct_o, STUDY_UID));
    }
    // RTSTRUCT -> CT
    let fr = item(rs_o, &[(Tag(0x3006, 0x0010), 0)]);
    assert_eq!(get(fr, FRAME_OF_REFERENCE), get(ct_o, FRAME_OF_REFERENCE));
    let st = item(fr, &[(Tag(0x3006, 0x0012), 0)]);
    assert_eq!(get(st, REF_SOP_INSTANCE), get(ct_o, STUDY_UID));
    let se = item(st, &[(Tag(0x3006, 0x0014), 0)]);
    assert_eq!(get(se, SERIES_UID), get(ct_o, SERIES_UID));
    let ci = item(se, &[(Tag(0x3006, 0x0016), 0)]);
    assert_eq!(get(ci, REF_SOP_INSTANCE), get(ct_o, SOP_INSTANCE));
    assert_eq!(get(ci, REF_SOP_CLASS), CT_CLASS);
    let rois = items(rs_o, Tag(0x3006, 0x0020));
    for roi in rois {
        assert_eq!(get(roi, Tag(0x3006, 0x0024)), get(ct_o, FRAME_OF_REFERENCE));
    }
    let names: Vec<String> = rois.iter().map(|r| get(r, Tag(0x3006, 0x0026))).collect();
    assert_eq!(names, ["CTV breast", "PTV", "Lung_L"]);
    let cc = item(
        rs_o,
        &[
            (Tag(0x3006, 0x0039), 0),
            (Tag(0x3006, 0x0040), 0),
            (Tag(0x3006, 0x0016), 0),
        ],
    );
    assert_eq!(get(cc, REF_SOP_INSTANCE), get(ct_o, SOP_INSTANCE));
    // RTPLAN -> RTSTRUCT, RTDOSE -> RTPLAN
    let rss = item(plan_o, &[(Tag(0x300C, 0x0060), 0)]);
    assert_eq!(get(rss, REF_SOP_INSTANCE), get(rs_o, SOP_INSTANCE));
    let rp = item(dose_o, &[(Tag(0x300C, 0x0002), 0)]);
    assert_eq!(get(rp, REF_SOP_INSTANCE), get(plan_o, SOP_INSTANCE));
    assert_eq!(
        get(plan_o, FRAME_OF_REFERENCE),
        get(ct_o, FRAME_OF_REFERENCE)
    );
    assert_eq!(
        get(dose_o, FRAME_OF_REFERENCE),
        get(ct_o, FRAME_OF_REFERENCE)
    );

    // The same four in one parallel run give the same bytes (determinism across processes
    // and thread interleavings).
    let out_batch = dir.path().join("out-batch");
    run_ok(&key, &inputs, &out_batch, &["--jobs", "2"]);
    assert_eq!(outputs(&out_batch), all);
}

#[test]
fn dicom_determinism_idempotence_and_keep_true_dates() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "k");
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    for f in ["CT_small.dcm", "MR_small_RLE.dcm", "rtdose.dcm"] {
        std::fs::copy(data(f), input.join(f)).unwrap();
    }
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    run_ok(&key, &input, &a, &[]);
    run_ok(&key, &input, &b, &["--jobs", "1"]);
    let oa = outputs(&a);
    assert_eq!(oa.len(), 3);
    assert_eq!(oa, outputs(&b));
    // Our own output is recognised and skipped.
    let c = dir.path().join("c");
    let o = run_ok(&key, &a, &c, &["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["skipped"], 3, "{}", text(&o));
    assert!(outputs(&c).is_empty());
    // Another key: other pseudonyms and UIDs.
    let key2 = new_key(dir.path(), "k2");
    let d = dir.path().join("d");
    run_ok(&key2, &input, &d, &[]);
    assert!(outputs(&d).keys().all(|k| !oa.contains_key(k)));
    // Keep true dates: dates unchanged, recorded as such.
    let e = dir.path().join("e");
    let one = dir.path().join("one");
    std::fs::create_dir_all(&one).unwrap();
    std::fs::copy(data("CT_small.dcm"), one.join("ct.dcm")).unwrap();
    run_ok(&key, &one, &e, &["--keep-true-dates"]);
    let (_, _, res) = only_output(&e);
    assert_eq!(get(&res.dataset, Tag(0x0008, 0x0020)), "20040119");
    assert_eq!(get(&res.dataset, Tag(0x0028, 0x0303)), "UNMODIFIED");
    assert!(code_values(&res.dataset).contains(&"113106".to_string()));
}

#[test]
fn dicom_quarantine_and_input_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "k");
    let input = dir.path().join("in");
    let sub = input.join("Smith DOE");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::copy(data("MR_truncated.dcm"), sub.join("MR_truncated.dcm")).unwrap();
    std::fs::copy(
        data("rtplan_truncated.dcm"),
        sub.join("rtplan_truncated.dcm"),
    )
    .unwrap();
    std::fs::copy(data("CT_small.dcm"), sub.join("good.dcm")).unwrap();
    std::fs::copy(data("chrX1.dcm"), sub.join("sc-image.dcm")).unwrap();
    std::fs::write(
        sub.join("notes.txt"),
        "DOE John, MRN 1CT1, seen 2004-01-19\n",
    )
    .unwrap();
    std::fs::write(sub.join("empty.dcm"), b"").unwrap();
    let mut burned = read(&data("CT_small.dcm"));
    put(&mut burned.dataset, Tag(0x0028, 0x0301), VR::CS, "YES");
    put(&mut burned.dataset, SOP_INSTANCE, VR::UI, "1.2.3.4.99");
    write_input(&sub, "burned.dcm", burned.dataset, "1.2.840.10008.1.2.1");
    let mut no_id = read(&data("CT_small.dcm"));
    no_id.dataset.remove_element(PATIENT_ID);
    put(&mut no_id.dataset, SOP_INSTANCE, VR::UI, "1.2.3.4.98");
    write_input(&sub, "no-id.dcm", no_id.dataset, "1.2.840.10008.1.2.1");
    let before: BTreeMap<String, Vec<u8>> = outputs(&input);

    let out = dir.path().join("out");
    let o = run(&key, &input, &out, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(outputs(&input), before, "the input tree changed");
    assert_eq!(outputs(&out).len(), 1);
    // The originals are beside the output, not in it, private to their owner.
    let quarantine = dir.path().join("out.quarantine");
    assert!(!out.join("quarantine").exists());
    fn all_files(d: &Path, acc: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                all_files(&p, acc);
            } else {
                acc.push(p);
            }
        }
    }
    let mut in_out = Vec::new();
    all_files(&out, &mut in_out);
    assert_eq!(
        in_out
            .iter()
            .filter(|p| p.extension().is_some_and(|x| x == "dcm"))
            .count(),
        1,
        "only the pseudonymised file is under the output: {in_out:?}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&quarantine), 0o700);
    let mut quarantined = Vec::new();
    all_files(&quarantine, &mut quarantined);
    assert!(
        quarantined.iter().any(|p| p.ends_with("report.jsonl")) && quarantined.len() > 2,
        "{quarantined:?}"
    );
    for f in &quarantined {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    let report = std::fs::read_to_string(quarantine.join("report.jsonl")).unwrap();
    let mut reasons: Vec<String> = report
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            if let Some(o) = v["output"].as_str() {
                let q = quarantine.join(o);
                assert!(q.is_file(), "{}", q.display());
            }
            v["reason"].as_str().unwrap().to_string()
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "burned_in_annotation",
            "burned_in_annotation_unknown",
            "no_patient_id",
            "not_dicom",
            "not_dicom",
            "truncated",
            "truncated"
        ]
    );
    // Keyed hashes (the source locator, the quarantined copy's name) are random text that
    // can contain any short string by chance: the check reads everything else.
    let readable: String = report
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            o.remove("source");
            o.remove("output");
            serde_json::to_string(&v).unwrap()
        })
        .collect();
    for leak in ["DOE", "Smith", "notes", "truncated.dcm", "1CT1", "sc-image"] {
        assert!(!readable.contains(leak), "report leaks {leak}: {report}");
    }
    // Nothing half-written is left behind.
    fn no_parts(d: &Path) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            assert!(!p.to_string_lossy().contains(".part-"), "{}", p.display());
            if p.is_dir() {
                no_parts(&p);
            }
        }
    }
    no_parts(&out);
    no_parts(&quarantine);
    // An output directory inside the input is refused, and so is a quarantine inside the
    // output or the input.
    let o = run(&key, &input, &input.join("out"), &[]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    for q in [out.join("q"), input.join("q"), out.clone()] {
        let o = run(&key, &input, &out, &["--quarantine", q.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(3), "{}", text(&o));
        assert!(
            text(&o).contains("quarantine folder must lie outside"),
            "{}",
            text(&o)
        );
    }
    assert!(!out.join("q").exists() && !input.join("q").exists());
    // A quarantine given elsewhere is used.
    let elsewhere = dir.path().join("keyholder/dicom-q");
    let out2 = dir.path().join("out2");
    let o = run(
        &key,
        &input,
        &out2,
        &["--quarantine", elsewhere.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(elsewhere.join("report.jsonl").is_file());
    assert_eq!(mode(&elsewhere), 0o700);
    assert!(!dir.path().join("out2.quarantine").exists());
}

#[test]
fn dicom_runs_are_recorded_in_the_audit_log() {
    let db = crate::support::TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "k");
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::copy(data("CT_small.dcm"), input.join("a.dcm")).unwrap();
    std::fs::write(input.join("notes.txt"), "not dicom").unwrap();
    let out = registrar_cmd()
        .arg("--database-url")
        .arg(db.database_url_arg())
        .arg("--key-file")
        .arg(&key)
        .args(["dicom", "pseudonymise", "--in"])
        .arg(&input)
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a quarantined file gives exit 1: {}",
        text(&out)
    );
    let detail: String = db
        .client()
        .query_one(
            "SELECT detail FROM registry.audit_log WHERE action = 'dicom file pseudonymised'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        detail.contains("\"pseudonymised\":1")
            && detail.contains("\"quarantined\":1")
            && detail.contains("uids_remapped"),
        "{detail}"
    );
    assert!(
        !detail.contains(input.to_str().unwrap()),
        "no raw path in the audit log"
    );
}

/// Images larger than the head the batch reads first keep their pixel data in the input file
/// until the kernel copies it to the output: the output is byte for byte what the in-memory
/// path gives, in every encoding, and files the shortcut does not fit (pixel data followed by
/// padding, deflated, truncated pixel data) take the whole-file path.
#[test]
fn dicom_large_images_match_the_in_memory_path() {
    use registrar_anonymizer::dicom::{DicomProfile, DicomPseudonymiser, Outcome};
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "k");
    let input = dir.path().join("in");
    let base = read(&data("MR_small_implicit.dcm")).dataset;
    // 320 x 320 x 16 bits: 200 KiB of noise (deflated, it stays that large), three times the
    // head.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let pixels: Vec<u8> = (0..320 * 320 * 2u32)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let big = |n: u32, pixel_vr: VR| {
        let mut obj = base.clone();
        put(
            &mut obj,
            SOP_INSTANCE,
            VR::UI,
            &format!("1.2.826.0.1.3680043.9.7433.77.{n}"),
        );
        put(&mut obj, PATIENT_ID, VR::LO, &format!("BIG-{n}"));
        obj.put(DataElement::new(
            Tag(0x0028, 0x0010),
            VR::US,
            PrimitiveValue::from(320u16),
        ));
        obj.put(DataElement::new(
            Tag(0x0028, 0x0011),
            VR::US,
            PrimitiveValue::from(320u16),
        ));
        obj.put(DataElement::new(
            PIXEL_DATA,
            pixel_vr,
            PrimitiveValue::U8(pixels.clone().into()),
        ));
        obj
    };
    let implicit = write_input(&input, "implicit.dcm", big(1, VR::OW), "1.2.840.10008.1.2");
    let explicit = write_input(
        &input,
        "explicit.dcm",
        big(2, VR::OW),
        "1.2.840.10008.1.2.1",
    );
    let big_endian = write_input(
        &input,
        "big-endian.dcm",
        big(3, VR::OB),
        "1.2.840.10008.1.2.2",
    );
    let deflated = write_input(
        &input,
        "deflated.dcm",
        big(4, VR::OW),
        "1.2.840.10008.1.2.1.99",
    );
    let mut padded_obj = big(5, VR::OW);
    padded_obj.put(DataElement::new(
        Tag(0xFFFC, 0xFFFC),
        VR::OB,
        PrimitiveValue::U8(vec![0u8; 64].into()),
    ));
    let padded = write_input(&input, "padded.dcm", padded_obj, "1.2.840.10008.1.2.1");
    // Pixel data cut short: quarantined as truncated, as with the whole-file path.
    let cut = write_input(&input, "cut.dcm", big(6, VR::OW), "1.2.840.10008.1.2.1");
    let len = std::fs::metadata(&cut).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&cut)
        .unwrap()
        .set_len(len - 1000)
        .unwrap();

    let out = dir.path().join("out");
    let o = run(&key, &input, &out, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let report = std::fs::read_to_string(dir.path().join("out.quarantine/report.jsonl")).unwrap();
    assert_eq!(report.lines().count(), 1, "{report}");
    assert!(report.contains("\"reason\":\"truncated\""), "{report}");

    let d = DicomPseudonymiser::new(
        pseudonymiser(&key),
        DatePolicy::default(),
        &DicomProfile::default(),
    )
    .unwrap();
    let mut expected = BTreeMap::new();
    for f in [&implicit, &explicit, &big_endian, &deflated, &padded] {
        let bytes = std::fs::read(f).unwrap();
        assert!(bytes.len() > 3 * 64 * 1024);
        match d.pseudonymise(&bytes) {
            Outcome::Pseudonymised(p) => {
                expected.insert(p.relative_path.clone(), p.to_bytes().unwrap());
            }
            other => panic!("{}: {other:?}", f.display()),
        }
    }
    let got = outputs(&out);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &expected {
        assert!(
            got[name] == *bytes,
            "{name} differs from the in-memory path"
        );
        let res = parse::parse(bytes).unwrap();
        assert_eq!(pixel_bytes(&res), vec![pixels.clone()], "{name}");
        assert!(res.dataset.get(Tag(0xFFFC, 0xFFFC)).is_none());
    }
}

/// A bare Implicit VR Little Endian data set: the identifying elements a CT needs, and a
/// Referenced Series Sequence nested `depth` deep (undefined lengths throughout).
fn nested_file(depth: usize, sop: &str) -> Vec<u8> {
    fn el(out: &mut Vec<u8>, g: u16, e: u16, v: &[u8]) {
        let mut v = v.to_vec();
        if v.len() % 2 == 1 {
            v.push(0);
        }
        out.extend(g.to_le_bytes());
        out.extend(e.to_le_bytes());
        out.extend((v.len() as u32).to_le_bytes());
        out.extend(v);
    }
    let mut out = Vec::new();
    el(&mut out, 0x0008, 0x0016, CT_CLASS.as_bytes());
    el(&mut out, 0x0008, 0x0018, sop.as_bytes());
    for _ in 0..depth {
        out.extend([0x08, 0x00, 0x15, 0x11, 0xFF, 0xFF, 0xFF, 0xFF]);
        out.extend([0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
    }
    for _ in 0..depth {
        out.extend([0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
        out.extend([0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
    }
    el(&mut out, 0x0010, 0x0020, b"MRN-DEEP");
    el(&mut out, 0x0020, 0x000D, b"1.2.3.4.5");
    el(&mut out, 0x0020, 0x000E, b"1.2.3.4.5.6");
    out
}

/// The audit entries of the DICOM runs of a registry: (action, detail).
fn dicom_audit(db: &crate::support::TestDb) -> Vec<(String, serde_json::Value)> {
    db.client()
        .query(
            "SELECT action, detail FROM registry.audit_log WHERE action LIKE 'dicom %' ORDER BY seq",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| {
            let d: String = r.get(1);
            (r.get(0), serde_json::from_str(&d).unwrap())
        })
        .collect()
}

/// Issue 19, case 1: a sequence nested 1,500 deep (93 KB) used to overflow the stack and
/// abort the whole run (exit 134, outputs without records, no summary). Now such a file is
/// quarantined `too_deep`, a file beyond the profile's size bounds `too_large`, and every
/// other file of the tree is pseudonymised; the records, the summary and the audit entries
/// (one before the first file, one after the last) account for every file.
#[test]
fn dicom_pathological_files_are_quarantined_and_the_run_goes_on() {
    let db = crate::support::TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "k");
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("deep.dcm"), nested_file(1500, "1.2.3.4.5.6.7")).unwrap();
    // Deep but legal (40 levels) passes.
    std::fs::write(input.join("legal.dcm"), nested_file(40, "1.2.3.4.5.6.8")).unwrap();
    // A header of 60,000 elements, beyond a profile's max-elements of 50,000.
    let mut many = nested_file(1, "1.2.3.4.5.6.9");
    for i in 0..60_000u32 {
        // Private elements of one block (removed anyway): 12 bytes each.
        many.extend(0x0009u16.to_le_bytes());
        many.extend(((0x1000 + (i % 0xF000)) as u16).to_le_bytes());
        many.extend(2u32.to_le_bytes());
        many.extend(b"AB");
    }
    std::fs::write(input.join("many.dcm"), many).unwrap();
    let base = read(&data("CT_small.dcm")).dataset;
    for i in 0..30 {
        let mut o = base.clone();
        put(
            &mut o,
            SOP_INSTANCE,
            VR::UI,
            &format!("1.2.826.0.1.3680043.99.{i}"),
        );
        write_input(&input, &format!("ct{i:02}.dcm"), o, parse::EXPLICIT_VR_LE);
    }
    let profile = dir.path().join("profile.toml");
    std::fs::write(&profile, "[limits]\nmax-elements = 50000\n").unwrap();
    let records = dir.path().join("records.jsonl");
    let out = dir.path().join("out");
    let o = registrar_cmd()
        .arg("--database-url")
        .arg(db.database_url_arg())
        .args(["--json", "--key-file"])
        .arg(&key)
        .args(["dicom", "pseudonymise", "--jobs", "2", "--in"])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .arg("--profile")
        .arg(&profile)
        .arg("--records")
        .arg(&records)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "quarantined files: exit 1: {}",
        text(&o)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["files"], 33, "{v}");
    assert_eq!(v["pseudonymised"], 31, "{v}");
    assert_eq!(v["quarantined"], 2, "{v}");
    let recs: Vec<serde_json::Value> = std::fs::read_to_string(&records)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 33);
    let mut reasons: Vec<&str> = recs
        .iter()
        .filter(|r| r["status"] == "quarantined")
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    reasons.sort();
    assert_eq!(reasons, ["too_deep", "too_large"]);
    // Every output has its record, and every pseudonymised record its output.
    let written: std::collections::BTreeSet<String> = outputs(&out)
        .into_keys()
        .filter(|k| k.ends_with(".dcm"))
        .collect();
    let recorded: std::collections::BTreeSet<String> = recs
        .iter()
        .filter(|r| r["status"] == "pseudonymised")
        .map(|r| r["output"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(written, recorded);
    let audit = dicom_audit(&db);
    let actions: Vec<&str> = audit.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(actions, ["dicom run started", "dicom file pseudonymised"]);
    assert_eq!(audit[0].1["limits"]["max-elements"], 50000);
    assert_eq!(audit[1].1["files"], 33);
    assert_eq!(audit[1].1["complete"], true);
}

/// Issue 19, case 7: symbolic links that lead nowhere, loop, or lead to a folder are
/// reported as skipped with their reason (a link to a file is read).
#[test]
fn dicom_symbolic_links_are_accounted_for() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "k");
    let input = dir.path().join("in");
    std::fs::create_dir_all(input.join("sub")).unwrap();
    std::fs::copy(data("CT_small.dcm"), dir.path().join("elsewhere.dcm")).unwrap();
    let link =
        |target: &Path, name: &str| std::os::unix::fs::symlink(target, input.join(name)).unwrap();
    link(&dir.path().join("elsewhere.dcm"), "to_file.dcm");
    link(&dir.path().join("missing.dcm"), "dangling.dcm");
    link(&input.join("loop_b"), "loop_a");
    link(&input.join("loop_a"), "loop_b");
    link(&input.join("sub"), "to_dir");
    let records = dir.path().join("records.jsonl");
    let out = dir.path().join("out");
    let o = run(
        &key,
        &input,
        &out,
        &["--records", records.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let mut reasons: Vec<String> = std::fs::read_to_string(&records)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|r| {
            format!(
                "{} {}",
                r["status"].as_str().unwrap(),
                r["reason"].as_str().unwrap_or("")
            )
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "pseudonymised ",
            "skipped dangling_symlink",
            "skipped symlink_loop",
            "skipped symlink_loop",
            "skipped symlink_to_directory",
        ]
    );
    assert!(
        text(&o).contains("5 files: 1 pseudonymised, 4 skipped"),
        "{}",
        text(&o)
    );
}

/// Issue 19, cases 2 and 5: attributes table E.1-1 does not list leave only if the allow-list
/// (generated from the standard's module tables) says they carry no identity. Alternative-
/// calendar birth and death dates, a scheduled step's comments, retired order numbers, an HL7
/// structured name, a document title, and an undefined public tag holding the name are
/// removed and counted; the time zone offset becomes +0000; a date written under a wrong VR
/// (Instance Creation Date as LO) is shifted like any date.
#[test]
fn dicom_unlisted_attributes_are_removed_and_dates_are_found_by_tag() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "k");
    let input = dir.path().join("in");
    let mut o = read(&data("CT_small.dcm")).dataset;
    let pid = get(&o, PATIENT_ID);
    put(&mut o, Tag(0x0010, 0x0033), VR::LO, "1383^1^7");
    put(&mut o, Tag(0x0010, 0x0034), VR::LO, "1444^3^2");
    put(
        &mut o,
        Tag(0x0040, 0x0400),
        VR::LT,
        "Mr Jansen, room 12, call wife 0470123456",
    );
    put(&mut o, Tag(0x0040, 0x1006), VR::SH, "ORD-PJ-7781");
    put(&mut o, Tag(0x0040, 0x1007), VR::SH, "FIL-PJ-7782");
    put(
        &mut o,
        Tag(0x0040, 0xE001),
        VR::ST,
        "HL7^JANSEN^PIETER^19620315",
    );
    put(
        &mut o,
        Tag(0x0042, 0x0010),
        VR::ST,
        "Letter for JANSEN PIETER",
    );
    put(&mut o, Tag(0x0010, 0x0011), VR::LO, "JANSENPIETER");
    put(&mut o, Tag(0x0008, 0x0201), VR::SH, "+0100");
    o.remove_element(Tag(0x0008, 0x0012));
    put(&mut o, Tag(0x0008, 0x0012), VR::LO, "20200115");
    write_input(&input, "ct.dcm", o, parse::EXPLICIT_VR_LE);
    let records = dir.path().join("records.jsonl");
    let out = dir.path().join("out");
    run_ok(
        &key,
        &input,
        &out,
        &["--records", records.to_str().unwrap()],
    );
    let (_, bytes, parsed) = only_output(&out);
    assert_absent(
        &bytes,
        &[
            "JANSEN",
            "Jansen",
            "0470123456",
            "ORD-PJ",
            "FIL-PJ",
            "1383^1^7",
            "1444^3^2",
            "+0100",
        ],
    );
    let ds = &parsed.dataset;
    for t in [
        (0x0010, 0x0033),
        (0x0010, 0x0034),
        (0x0040, 0x0400),
        (0x0040, 0x1006),
        (0x0040, 0x1007),
        (0x0040, 0xE001),
        (0x0042, 0x0010),
        (0x0010, 0x0011),
    ] {
        assert!(
            ds.get(Tag(t.0, t.1)).is_none(),
            "({:04X},{:04X}) kept",
            t.0,
            t.1
        );
    }
    assert_eq!(get(ds, Tag(0x0008, 0x0201)), "+0000");
    let p = pseudonymiser(&key);
    assert_eq!(get(ds, Tag(0x0008, 0x0012)), shift(&p, &pid, "20200115"));
    // What the allow-list keeps is still there.
    for t in [
        (0x0028, 0x0010),
        (0x0028, 0x0030),
        (0x0020, 0x0032),
        (0x0018, 0x0050),
    ] {
        assert!(
            ds.get(Tag(t.0, t.1)).is_some(),
            "({:04X},{:04X}) removed",
            t.0,
            t.1
        );
    }
    let rec: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&records).unwrap().trim()).unwrap();
    let counts = &rec["counts"];
    assert!(counts["not_allowed"].as_u64().unwrap() >= 6, "{counts}");
    assert!(
        counts["not_allowed"].as_u64().unwrap() + counts["undefined_removed"].as_u64().unwrap()
            >= 8,
        "{counts}"
    );
    assert_eq!(counts["timezones_cleaned"], 1, "{counts}");
}

/// Issue 19, case 4: the ROI-name scrub compares whole words, with case and diacritics
/// folded, and never treats an anatomical or TG-263 word as a name: for patient
/// `boost^breast` the ROI "Breast" stays; for `ART^OLA`, "Heart" and "Areola" stay; for
/// `Müller^Hélène`, `PTV MÜLLER`, `CTV Helene`, `CTV Mueller` lose the name and keep their
/// TG-263 name, and `Boost Muller` (no recognisable structure left without the name)
/// is emptied, as the profile says.
#[test]
fn dicom_roi_names_lose_the_patient_name_and_keep_anatomy() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "k");
    let input = dir.path().join("in");
    let base = read(&data("rtstruct.dcm")).dataset;
    const ROI_SEQ: Tag = Tag(0x3006, 0x0020);
    const ROI_NAME: Tag = Tag(0x3006, 0x0026);
    /// (Patient ID, Patient's Name, [(ROI name as typed, as pseudonymised)]).
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
    let cases: [Case; 3] = [
        (
            "MRN-B1",
            "boost^breast",
            &[("Breast", "Breast"), ("Lt Lung", "Lt Lung")],
        ),
        (
            "MRN-A1",
            "ART^OLA",
            &[("Heart", "Heart"), ("Areola", "Areola"), ("Ola PTV", "PTV")],
        ),
        (
            "MRN-M1",
            "Müller^Hélène",
            &[
                ("PTV MÜLLER", "PTV"),
                ("CTV Helene", "CTV"),
                ("CTV Mueller", "CTV"),
                ("CTV Breast L Muller", "CTVp_Breast_L"),
                ("Boost Muller", ""),
                ("Heart", "Heart"),
            ],
        ),
    ];
    for (i, (pid, name, rois)) in cases.iter().enumerate() {
        let mut o = base.clone();
        put(&mut o, Tag(0x0008, 0x0005), VR::CS, "ISO_IR 192");
        put(&mut o, PATIENT_ID, VR::LO, pid);
        put(&mut o, PATIENT_NAME, VR::PN, name);
        put(
            &mut o,
            SOP_INSTANCE,
            VR::UI,
            &format!("1.2.826.0.1.3680043.98.{i}"),
        );
        put(
            &mut o,
            SERIES_UID,
            VR::UI,
            &format!("1.2.826.0.1.3680043.97.{i}"),
        );
        o.remove_element(ROI_SEQ);
        for (j, (typed, _)) in rois.iter().enumerate() {
            set_at(&mut o, &[(ROI_SEQ, j)], ROI_NAME, VR::LO, typed);
        }
        write_input(&input, &format!("rs{i}.dcm"), o, parse::EXPLICIT_VR_LE);
    }
    let out = dir.path().join("out");
    run_ok(&key, &input, &out, &[]);
    let p = pseudonymiser(&key);
    let all = outputs(&out);
    for (pid, _, rois) in cases {
        let person = p.person(IdentifierType::Mrn, pid).unwrap();
        let (bytes, parsed) = all
            .values()
            .filter(|b| b.len() > 132)
            .map(|b| (b, parse::parse(b).unwrap()))
            .find(|(_, p)| get(&p.dataset, PATIENT_ID) == person.as_str())
            .expect("the patient's output");
        let names: Vec<String> = items(&parsed.dataset, ROI_SEQ)
            .iter()
            .map(|i| get(i, ROI_NAME))
            .collect();
        let expected: Vec<&str> = rois.iter().map(|(_, want)| *want).collect();
        assert_eq!(names, expected, "{pid}");
        assert_absent(
            bytes,
            &[
                "MÜLLER", "Müller", "Muller", "Mueller", "Helene", "Hélène", "OLA", "Ola", "ART^",
            ],
        );
    }
}

/// The check before the first write (the registry's audit entry of the run's start, written
/// while the first files are read) refuses a run: nothing is written, neither outputs nor
/// quarantine copies; when it passes, it is asked once.
#[test]
fn dicom_a_run_whose_start_cannot_be_recorded_writes_nothing() {
    use registrar_anonymizer::dicom::{
        batch, BatchError, BatchOptions, DicomProfile, DicomPseudonymiser,
    };
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "k");
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    for i in 0..6 {
        std::fs::copy(data("CT_small.dcm"), input.join(format!("ct{i}.dcm"))).unwrap();
    }
    std::fs::write(input.join("junk.dcm"), "not dicom").unwrap();
    let d = DicomPseudonymiser::new(
        pseudonymiser(&key),
        DatePolicy::default(),
        &DicomProfile::default(),
    )
    .unwrap();
    let opts = BatchOptions {
        jobs: 2,
        ..Default::default()
    };
    let out = dir.path().join("out");
    let asked = std::sync::atomic::AtomicUsize::new(0);
    let refuse = || {
        asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err("the audit log cannot be written".to_string())
    };
    let failure = batch::run(&d, &input, &out, &opts, &|_| {}, &refuse).unwrap_err();
    assert!(matches!(failure.error, BatchError::Refused(_)), "{failure}");
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(
        outputs(&out).keys().all(|k| !k.ends_with(".dcm")),
        "no output"
    );
    assert!(
        !dir.path().join("out.quarantine").exists(),
        "no quarantine copy"
    );
    let allow = || {
        asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    };
    let summary = batch::run(&d, &input, &out, &opts, &|_| {}, &allow).unwrap();
    assert_eq!(
        asked.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "asked once per run"
    );
    assert_eq!(
        (summary.pseudonymised, summary.skipped, summary.quarantined),
        (1, 5, 1)
    );
}
