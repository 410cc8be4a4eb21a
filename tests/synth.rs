//! `registrar synth`: the synthetic sources are deterministic, every source has the promised
//! shape, the truth file agrees with the sources, and dirt appears (and is counted) exactly
//! when asked for. No database needed.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use registrar_synth::codes::{
    DRUGS, FHIR_TYPES, HER2_ISH_NEGATIVE, HER2_ISH_POSITIVE, HIS_TABLES, MEASUREMENT_CODES,
    PATHOLOGY_CODES, SSIN_SYSTEM, STUDY_SHEETS,
};
use registrar_synth::{
    generate, niss_is_male, niss_is_valid, SynthOptions, SynthReport, ARCHIVE_PATIENTS, EMPTY_FILE,
    PATHOLOGY_EARLIER, PATHOLOGY_FINAL,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn run(dir: &Path, patients: u64, seed: u64, dirt: f64) -> SynthReport {
    let mut opts = SynthOptions::new(patients, seed, dir);
    opts.dirt = dirt;
    // A coarse CT grid: these tests read the CSV, FHIR and DICOM headers, not the geometry.
    opts.dicom_slices = 16;
    opts.dicom_matrix = 64;
    generate(&opts, &|_| {}).expect("synth runs")
}

struct Run {
    _dir: tempfile::TempDir,
    root: PathBuf,
    report: SynthReport,
    summary: Value,
    truth: Vec<Value>,
}

fn synth(patients: u64, seed: u64, dirt: f64) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("out");
    let report = run(&root, patients, seed, dirt);
    let summary: Value =
        serde_json::from_slice(&std::fs::read(root.join("truth_summary.json")).unwrap()).unwrap();
    let truth = std::fs::read_to_string(root.join("truth.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("truth line is JSON"))
        .collect();
    Run {
        _dir: dir,
        root,
        report,
        summary,
        truth,
    }
}

/// sha256 of every file under `root`, by relative path.
fn hash_tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(
                    rel,
                    hex::encode(Sha256::digest(std::fs::read(&path).unwrap())),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Windows-1252 decoding (written out here so that the test does not trust the generator).
fn decode_cp1252(bytes: &[u8]) -> String {
    const HIGH: [char; 32] = [
        '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8D}', 'Ž',
        '\u{8F}', '\u{90}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9D}',
        'ž', 'Ÿ',
    ];
    bytes
        .iter()
        .map(|&b| {
            if (0x80..0xA0).contains(&b) {
                HIGH[usize::from(b - 0x80)]
            } else {
                char::from(b)
            }
        })
        .collect()
}

/// Decodes a HIS file by what it really is (from the truth summary).
fn decode_actual(bytes: &[u8], actual: &str) -> String {
    match actual {
        "windows-1252" => decode_cp1252(bytes),
        "iso-8859-1" => bytes.iter().map(|&b| char::from(b)).collect(),
        "utf-8 with BOM" => {
            assert!(
                bytes.starts_with(b"\xEF\xBB\xBF"),
                "a BOM file starts with the BOM"
            );
            String::from_utf8(bytes[3..].to_vec()).expect("UTF-8 after the BOM")
        }
        other => panic!("unexpected encoding {other}"),
    }
}

/// Header and rows (fields) of a HIS CSV; checks CRLF line ends on the way.
fn read_csv(r: &Run, file: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let bytes = std::fs::read(r.root.join(file)).unwrap();
    let actual = r.summary["files"][file]["actual_encoding"]
        .as_str()
        .unwrap();
    let text = decode_actual(&bytes, actual);
    assert!(text.ends_with("\r\n"), "{file} ends with CRLF");
    let body = &text[..text.len() - 2];
    assert!(
        !body.replace("\r\n", "").contains(['\r', '\n']),
        "{file}: only CRLF line ends"
    );
    let mut lines = body.split("\r\n");
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split(';')
        .map(str::to_string)
        .collect();
    let rows = lines
        .map(|l| l.split(';').map(str::to_string).collect())
        .collect();
    (header, rows)
}

fn be_date(s: &str) -> Option<NaiveDate> {
    if s.len() != 10 {
        return None;
    }
    NaiveDate::parse_from_str(s, "%d/%m/%Y").ok()
}

fn iso(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn his_files() -> impl Iterator<Item = (String, &'static [&'static str])> {
    HIS_TABLES.iter().map(|(f, h)| (format!("his/{f}"), *h))
}

fn unzip_available() -> bool {
    std::process::Command::new("unzip")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn unzip_member(file: &Path, member: &str) -> String {
    let out = std::process::Command::new("unzip")
        .arg("-p")
        .arg(file)
        .arg(member)
        .output()
        .unwrap();
    assert!(out.status.success(), "unzip -p {member}");
    String::from_utf8(out.stdout).unwrap()
}

/// Known local codes per CSV column that carries one.
fn known_codes(file: &str) -> Option<(usize, HashSet<&'static str>)> {
    match file {
        "his/pathology.csv" | "his/pathology_2025-06.csv" => {
            Some((3, PATHOLOGY_CODES.iter().copied().collect()))
        }
        "his/measurements.csv" => Some((2, MEASUREMENT_CODES.iter().map(|(c, _)| *c).collect())),
        "his/systemic_therapy.csv" => Some((2, DRUGS.iter().map(|d| d.code).collect())),
        _ => None,
    }
}

fn date_columns(header: &[&str]) -> Vec<usize> {
    header
        .iter()
        .enumerate()
        .filter(|(_, h)| h.ends_with("_date"))
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn synth_same_seed_gives_identical_files_and_another_seed_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let c = dir.path().join("c");
    run(&a, 40, 11, 0.03);
    run(&b, 40, 11, 0.03);
    run(&c, 40, 12, 0.03);
    let (ha, hb, hc) = (hash_tree(&a), hash_tree(&b), hash_tree(&c));
    assert!(ha.len() > 20, "all sources written: {:?}", ha.keys());
    assert_eq!(ha, hb, "same seed, same bytes");
    for file in [
        "his/patients.csv",
        "his/measurements.csv",
        "fhir/Patient.ndjson",
        "study/study_nurse.xlsx",
        "truth.jsonl",
    ] {
        assert_ne!(ha.get(file), hc.get(file), "{file} changes with the seed");
    }
    // A non-empty output directory is refused rather than mixed with old files.
    let mut opts = SynthOptions::new(5, 11, &a);
    opts.dirt = 0.0;
    assert!(generate(&opts, &|_| {}).is_err());
}

#[test]
fn synth_csv_sources_have_the_promised_shape() {
    let r = synth(60, 3, 0.0);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(r.root.join("his/_manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["delimiter"], ";");
    for (file, header) in his_files() {
        let name = file.trim_start_matches("his/");
        let entry = manifest["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["file"] == name)
            .expect("in manifest");
        assert_eq!(entry["encoding"], "windows-1252", "{file}");
        let (h, rows) = read_csv(&r, &file);
        assert_eq!(h, header, "{file} header");
        assert_eq!(
            rows.len() as u64,
            r.summary["files"][&file]["rows"].as_u64().unwrap(),
            "{file} rows"
        );
        let dates = date_columns(header);
        for row in &rows {
            assert_eq!(row.len(), header.len(), "{file}: {row:?}");
            for &c in &dates {
                if !(file.ends_with("radiotherapy.csv") && row[c].is_empty()) {
                    assert!(be_date(&row[c]).is_some(), "{file}: date {:?}", row[c]);
                }
            }
            assert!(
                row[0].starts_with("MRN") && row[0].len() == 10,
                "{file}: MRN {:?}",
                row[0]
            );
        }
    }
    let (_, patients) = read_csv(&r, "his/patients.csv");
    assert_eq!(patients.len(), 60);
    for p in &patients {
        assert!(niss_is_valid(&p[1]), "valid NISS {}", p[1]);
        let n = &p[1];
        assert_eq!(n.len(), 15);
        assert_eq!(
            (&n[2..3], &n[5..6], &n[8..9], &n[12..13]),
            (".", ".", "-", "."),
            "YY.MM.DD-XXX.CC: {n}"
        );
        assert_eq!(niss_is_male(n), p[5] == "M", "sex digit parity: {n}");
        let birth = be_date(&p[4]).unwrap();
        assert_eq!(
            &n[..8],
            &birth.format("%y.%m.%d").to_string(),
            "NISS starts with the birth date"
        );
        assert!(
            p[6].len() == 4 && p[6].bytes().all(|b| b.is_ascii_digit()),
            "postcode {}",
            p[6]
        );
    }
    // Decimal commas in the lab export, about 100 rows per patient.
    let (_, labs) = read_csv(&r, "his/measurements.csv");
    assert!(
        (60 * 80..60 * 120).contains(&labs.len()),
        "{} lab rows",
        labs.len()
    );
    assert!(labs.iter().any(|l| l[2] == "HB" && l[3].contains(',')));
    assert!(labs.iter().all(|l| !l[3].contains('.')));
    // Accents are single Windows-1252 bytes, not UTF-8.
    let bytes = std::fs::read(r.root.join("his/patients.csv")).unwrap();
    assert!(
        String::from_utf8(bytes.clone()).is_err(),
        "patients.csv is not UTF-8"
    );
    assert!(
        decode_cp1252(&bytes).contains(['é', 'è', 'ë', 'ï', 'ü', 'ö', 'ç']),
        "accented names"
    );
    assert!(!r.root.join(EMPTY_FILE).exists());
}

#[test]
fn synth_workbook_has_the_study_sheets() {
    let r = synth(400, 5, 0.0);
    let xlsx = r.root.join("study/study_nurse.xlsx");
    let bytes = std::fs::read(&xlsx).unwrap();
    assert!(bytes.starts_with(b"PK\x03\x04"), "an xlsx is a zip");
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(contains(b"xl/workbook.xml") && contains(b"xl/worksheets/sheet2.xml"));
    let sheets = &r.summary["files"]["study/study_nurse.xlsx"]["sheets"];
    let enrolled: u64 = STUDY_SHEETS
        .iter()
        .map(|s| sheets[*s].as_u64().unwrap())
        .sum();
    assert!(enrolled > 0, "some patients are enrolled");
    let in_truth: usize = r
        .truth
        .iter()
        .map(|t| t["studies"].as_array().unwrap().len())
        .sum();
    assert_eq!(in_truth as u64, enrolled);
    if !unzip_available() {
        return;
    }
    let workbook = unzip_member(&xlsx, "xl/workbook.xml");
    for s in STUDY_SHEETS {
        assert!(
            workbook.contains(&format!("name=\"{s}\"")),
            "sheet {s}: {workbook}"
        );
    }
    let sheet_xml: Vec<String> = (1..=STUDY_SHEETS.len())
        .map(|i| unzip_member(&xlsx, &format!("xl/worksheets/sheet{i}.xml")))
        .collect();
    for xml in &sheet_xml {
        assert!(xml.contains("<mergeCell ref=\"A1:"), "merged title");
        assert!(xml.contains("<row r=\"4\""), "table header on row 4");
        assert!(!xml.contains("<row r=\"3\""), "row 3 is the empty spacer");
    }
    for t in &r.truth {
        for e in t["studies"].as_array().unwrap() {
            let i = STUDY_SHEETS.iter().position(|s| *s == e["study"]).unwrap();
            let row = e["excel_row"].as_u64().unwrap();
            let xml = &sheet_xml[i];
            assert!(xml.contains(e["subject"].as_str().unwrap()));
            assert!(xml.contains(t["patient_nr"].as_str().unwrap()));
            assert!(
                xml.contains(&format!("<f>F{row}/(G{row}/100)^2</f><v>")),
                "BMI formula with cached value, row {row}"
            );
        }
        for name in t["comment_names"].as_array().unwrap() {
            let name = name.as_str().unwrap();
            assert!(
                sheet_xml.iter().any(|x| x.contains(name)),
                "comment names {name}"
            );
        }
    }
    assert!(
        r.truth.iter().any(|t| t["has_name_in_comment"] == true),
        "some comments name someone"
    );
}

#[test]
fn synth_fhir_lines_are_resources_of_the_same_patients() {
    let r = synth(50, 8, 0.0);
    let mut patient_ids = HashSet::new();
    let mut refs = Vec::new();
    let mrns: HashSet<String> = r
        .truth
        .iter()
        .map(|t| t["patient_nr"].as_str().unwrap().to_string())
        .collect();
    for ty in FHIR_TYPES {
        let text = std::fs::read_to_string(r.root.join(format!("fhir/{ty}.ndjson"))).unwrap();
        let mut n = 0;
        for line in text.lines() {
            n += 1;
            let v: Value = serde_json::from_str(line).expect("one JSON resource per line");
            assert_eq!(v["resourceType"], *ty);
            let id = v["id"].as_str().unwrap();
            assert!(!mrns.contains(id) && !id.starts_with("MRN"), "opaque ids");
            assert!(v["meta"]["lastUpdated"].as_str().unwrap().contains('T'));
            if *ty == "Patient" {
                patient_ids.insert(id.to_string());
                let ids = v["identifier"].as_array().unwrap();
                let ssin = ids
                    .iter()
                    .find(|i| i["system"] == SSIN_SYSTEM)
                    .expect("SSIN identifier");
                assert!(niss_is_valid(ssin["value"].as_str().unwrap()));
                assert!(
                    ids.iter()
                        .any(|i| mrns.contains(i["value"].as_str().unwrap())),
                    "MRN identifier"
                );
                assert!(["female", "male"].contains(&v["gender"].as_str().unwrap()));
            } else {
                refs.push(v["subject"]["reference"].as_str().unwrap().to_string());
            }
            if *ty == "Observation" {
                assert_eq!(v["status"], "final");
            }
            if *ty == "MedicationAdministration" {
                let atc = &v["medicationCodeableConcept"]["coding"][0];
                assert_eq!(atc["system"], "http://www.whocc.no/atc");
                assert!(DRUGS.iter().any(|d| d.atc == atc["code"]));
            }
        }
        assert_eq!(
            n,
            r.summary["files"][format!("fhir/{ty}.ndjson")]["rows"]
                .as_u64()
                .unwrap(),
            "{ty}"
        );
    }
    assert_eq!(patient_ids.len(), 50);
    for reference in refs {
        let id = reference.strip_prefix("Patient/").expect("Patient/<id>");
        assert!(patient_ids.contains(id), "reference to a known patient");
    }
    for t in &r.truth {
        assert!(patient_ids.contains(t["fhir_patient_id"].as_str().unwrap()));
    }
}

/// St Gallen surrogate rules, written independently of the generator.
fn expected_subtype(er: u64, pr: u64, her2_positive: bool, ki67: u64) -> &'static str {
    let hr = er >= 1 || pr >= 1;
    match (hr, her2_positive) {
        (true, true) => "luminal_b_her2pos",
        (false, true) => "her2_enriched",
        (false, false) => "tnbc",
        (true, false) if ki67 < 20 && pr >= 20 => "luminal_a",
        (true, false) => "luminal_b_her2neg",
    }
}

#[test]
fn synth_truth_agrees_with_the_sources() {
    let r = synth(200, 21, 0.0);
    let (_, patients) = read_csv(&r, "his/patients.csv");
    let by_mrn: HashMap<&str, &Vec<String>> = patients.iter().map(|p| (p[0].as_str(), p)).collect();
    let (_, pathology) = read_csv(&r, "his/pathology.csv");
    let mut results: HashMap<(&str, &str), &str> = HashMap::new();
    for row in &pathology {
        assert!(results
            .insert((row[0].as_str(), row[3].as_str()), row[4].as_str())
            .is_none());
    }
    let (_, surgery) = read_csv(&r, "his/surgery.csv");
    let (_, deaths) = read_csv(&r, "his/deaths.csv");
    let (_, therapy) = read_csv(&r, "his/systemic_therapy.csv");
    let mut row_sums: BTreeMap<String, u64> = BTreeMap::new();
    assert_eq!(r.truth.len(), 200);
    for t in &r.truth {
        let mrn = t["patient_nr"].as_str().unwrap();
        let p = by_mrn
            .get(mrn)
            .expect("every truth patient has a patients.csv row");
        assert_eq!(
            be_date(&p[4]).unwrap(),
            iso(t["birth_date"].as_str().unwrap())
        );
        let er = t["er_pct"].as_u64().unwrap();
        let pr = t["pr_pct"].as_u64().unwrap();
        let ki = t["ki67"].as_u64().unwrap();
        assert_eq!(results[&(mrn, "ER_PCT")], er.to_string());
        assert_eq!(results[&(mrn, "PR_PCT")], pr.to_string());
        assert_eq!(results[&(mrn, "KI67_PCT")], ki.to_string());
        let ihc = results[&(mrn, "HER2_IHC")];
        assert_eq!(ihc, t["her2_ihc"].as_str().unwrap());
        let ish = results.get(&(mrn, "HER2_ISH")).map(|v| {
            assert!(
                HER2_ISH_POSITIVE.contains(v) || HER2_ISH_NEGATIVE.contains(v),
                "ISH value {v}"
            );
            HER2_ISH_POSITIVE.contains(v)
        });
        assert_eq!(ish.is_some(), ihc == "2+", "ISH only for IHC 2+");
        let her2 = ihc == "3+" || ish == Some(true);
        assert_eq!(t["her2_status"], if her2 { "positive" } else { "negative" });
        assert_eq!(
            t["subtype"],
            expected_subtype(er, pr, her2, ki),
            "subtype consistent with receptors: {t}"
        );
        let neo = t["neoadjuvant"].as_bool().unwrap();
        if !t["pcr"].is_null() {
            assert!(neo, "pCR only after neoadjuvant therapy");
            let yp = &t["yptnm"];
            if t["pcr"] == true {
                assert!(["T0", "Tis"].contains(&yp["t"].as_str().unwrap()) && yp["n"] == "N0");
            }
        }
        let age = t["age_at_diagnosis"].as_i64().unwrap();
        assert!((30..=85).contains(&age));
        let dx = iso(t["diagnosis_date"].as_str().unwrap());
        assert!((2008..=2024).contains(&chrono::Datelike::year(&dx)));
        let s_rows: Vec<_> = surgery.iter().filter(|s| s[0] == mrn).collect();
        match t["surgery_date"].as_str() {
            Some(d) => {
                assert_eq!(s_rows.len(), 1);
                let sd = iso(d);
                assert_eq!(be_date(&s_rows[0][1]).unwrap(), sd);
                assert!(sd > dx);
                for a in therapy
                    .iter()
                    .filter(|a| a[0] == mrn && a[8] == "neoadjuvant")
                {
                    assert!(
                        be_date(&a[1]).unwrap() < sd,
                        "neoadjuvant therapy before surgery"
                    );
                }
            }
            None => assert!(s_rows.is_empty()),
        }
        let d_rows: Vec<_> = deaths.iter().filter(|d| d[0] == mrn).collect();
        assert_eq!(d_rows.len(), usize::from(!t["death_date"].is_null()));
        if !her2 {
            assert!(
                !therapy
                    .iter()
                    .any(|a| a[0] == mrn && (a[2] == "MAB-TRAS" || a[2] == "MAB-PERT")),
                "trastuzumab only for HER2+"
            );
        }
        for (file, n) in t["rows"].as_object().unwrap() {
            *row_sums.entry(file.clone()).or_default() += n.as_u64().unwrap();
        }
        assert!(t["dirt"].as_array().unwrap().is_empty());
        assert_eq!(
            t["structure_sets"].as_u64().unwrap() as usize,
            t["dicom"]["structure_sets"].as_array().map_or(0, Vec::len)
        );
    }
    for (file, n) in &row_sums {
        assert_eq!(
            *n,
            r.summary["files"][file]["rows"].as_u64().unwrap(),
            "{file}: per-patient rows add up"
        );
    }
    // The cohort looks like breast cancer care.
    let count = |f: &dyn Fn(&Value) -> bool| r.truth.iter().filter(|t| f(t)).count();
    assert!(count(&|t| t["sex"] == "F") >= 190);
    let neo = count(&|t| t["neoadjuvant"] == true);
    assert!((40..=110).contains(&neo), "{neo} neoadjuvant");
    assert!(count(&|t| iso(t["diagnosis_date"].as_str().unwrap()) < iso("2015-01-01")) > 50);
    assert!(count(&|t| iso(t["diagnosis_date"].as_str().unwrap()) >= iso("2015-01-01")) > 50);
    let subtypes: BTreeSet<&str> = r
        .truth
        .iter()
        .map(|t| t["subtype"].as_str().unwrap())
        .collect();
    assert_eq!(subtypes.len(), 5, "{subtypes:?}");
    assert!(count(&|t| !t["recurrence"].is_null()) > 5);
    assert!(count(&|t| !t["death_date"].is_null()) > 3);
}

#[test]
fn synth_dirt_appears_and_is_counted() {
    let r = synth(150, 4, 0.05);
    let d = &r.report.dirt;
    for (kind, n) in [
        ("bad_date", d.bad_date),
        ("unknown_code", d.unknown_code),
        ("duplicate_row", d.duplicate_row),
        ("extra_field", d.extra_field),
        ("identifier_in_text", d.identifier_in_text),
    ] {
        assert!(n > 10, "{kind}: {n}");
        assert_eq!(r.summary["dirt"][kind].as_u64().unwrap(), n);
    }
    assert_eq!(
        (
            d.bom,
            d.latin1_declared_utf8,
            d.empty_file,
            d.fhir_invalid_code
        ),
        (1, 1, 1, 2)
    );

    // Every event in the truth file is where it says, and every other row is clean.
    let mut events: HashMap<(String, u64), String> = HashMap::new();
    let mut per_kind: BTreeMap<String, u64> = BTreeMap::new();
    for t in &r.truth {
        for e in t["dirt"].as_array().unwrap() {
            let key = (
                e["file"].as_str().unwrap().to_string(),
                e["row"].as_u64().unwrap(),
            );
            let kind = e["kind"].as_str().unwrap().to_string();
            *per_kind.entry(kind.clone()).or_default() += 1;
            assert!(events.insert(key, kind).is_none());
        }
    }
    for (kind, n) in &per_kind {
        assert_eq!(r.summary["dirt"][kind].as_u64().unwrap(), *n, "{kind}");
    }
    let us_file = r.summary["patterns"]["us_dates"]["file"]
        .as_str()
        .unwrap()
        .to_string();
    for (file, header) in his_files() {
        // With dirt, pathology comes as two dated exports; the final one carries the events.
        let file = if file == "his/pathology.csv" {
            PATHOLOGY_FINAL.to_string()
        } else {
            file
        };
        let (_, rows) = read_csv(&r, &file);
        let dates = date_columns(header);
        let be_date = |s: &str| {
            if file == us_file {
                // Month first: swap back before reading it the Belgian way.
                let b = s.as_bytes();
                if b.len() == 10 && b[2] == b'/' && b[5] == b'/' {
                    return be_date(&format!("{}/{}{}", &s[3..5], &s[..2], &s[5..]));
                }
            }
            be_date(s)
        };
        let codes = known_codes(&file);
        let mut dirty = 0;
        for (i, row) in rows.iter().enumerate() {
            let n = i as u64 + 1;
            let kind = events.get(&(file.clone(), n)).map(String::as_str);
            dirty += u64::from(kind.is_some());
            if kind == Some("extra_field") {
                assert_eq!(row.len(), header.len() + 1, "{file} row {n}");
                continue;
            }
            assert_eq!(row.len(), header.len(), "{file} row {n}: {row:?}");
            let dates_ok = dates.iter().all(|&c| be_date(&row[c]).is_some());
            assert_eq!(
                dates_ok,
                kind != Some("bad_date"),
                "{file} row {n}: {row:?}"
            );
            if let Some((c, known)) = &codes {
                assert_eq!(
                    known.contains(row[*c].as_str()),
                    !matches!(kind, Some("unknown_code") | Some("identifier_in_text")),
                    "{file} row {n}"
                );
                if kind == Some("identifier_in_text") {
                    let (code, niss) = row[*c].split_once(' ').expect("code, space, NISS");
                    assert!(known.contains(code), "{file} row {n}");
                    assert!(
                        registrar_anonymizer::pseudonym::is_valid_niss(niss),
                        "{file} row {n}"
                    );
                }
            }
            let same_as_previous = i > 0 && rows[i - 1] == *row;
            assert_eq!(
                same_as_previous,
                kind == Some("duplicate_row"),
                "{file} row {n}"
            );
        }
        assert_eq!(
            dirty,
            r.summary["files"][&file]["dirty"].as_u64().unwrap(),
            "{file} dirty rows"
        );
        if file == "his/patients.csv" {
            assert!(
                rows.iter().all(|p| be_date(&p[4]).is_some()),
                "patients only get duplicates"
            );
        }
    }

    // File-level dirt.
    let bom = r.summary["file_dirt"]["bom"].as_str().unwrap();
    assert!(std::fs::read(r.root.join(bom))
        .unwrap()
        .starts_with(b"\xEF\xBB\xBF"));
    let latin1 = r.summary["file_dirt"]["latin1_declared_utf8"]
        .as_str()
        .unwrap();
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(r.root.join("his/_manifest.json")).unwrap()).unwrap();
    let declared = |f: &str| {
        let name = f.trim_start_matches("his/");
        manifest["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["file"] == name)
            .unwrap()["encoding"]
            .clone()
    };
    assert_eq!(declared(latin1), "utf-8");
    assert_eq!(declared(bom), "utf-8");
    assert!(
        String::from_utf8(std::fs::read(r.root.join(latin1)).unwrap()).is_err(),
        "{latin1} is not the UTF-8 it claims"
    );
    assert_eq!(std::fs::metadata(r.root.join(EMPTY_FILE)).unwrap().len(), 0);

    // The patterns of real exports. Month-first dates, shown by a day above 12.
    assert_eq!(d.us_dates, 1);
    assert_eq!(r.summary["patterns"]["us_dates"]["detectable"], true);
    let (_, us_rows) = read_csv(&r, &us_file);
    assert!(us_rows
        .iter()
        .any(|row| row[1].len() == 10 && row[1][3..5] > *"12"));
    // A merged hospital's archive: same file name, another folder, births before 1900.
    let (header, archive) = read_csv(&r, ARCHIVE_PATIENTS);
    assert_eq!(header[0], "patient_nr");
    assert_eq!(
        archive.len() as u64,
        r.summary["patterns"]["archive_patients"]["born_before_1900"]
            .as_u64()
            .unwrap()
    );
    assert!(archive.iter().all(|p| {
        let y: i32 = p[4][6..].parse().unwrap();
        (1892..1900).contains(&y)
    }));
    // Two dated pathology exports of the same records: the earlier lacks the patients
    // reported late and holds grades corrected since.
    assert!(!r.root.join("his/pathology.csv").exists());
    let (_, earlier) = read_csv(&r, PATHOLOGY_EARLIER);
    let (_, last) = read_csv(&r, PATHOLOGY_FINAL);
    let key = |row: &Vec<String>| (row[1].clone(), row[3].clone());
    // Rows with a stray field (dirt) have their fields shifted: left out here.
    let last_by_key: HashMap<_, _> = last
        .iter()
        .filter(|row| row.len() == 6)
        .map(|row| (key(row), row))
        .collect();
    let mut corrected = HashSet::new();
    for row in earlier.iter().filter(|row| row.len() == 6) {
        let l = last_by_key
            .get(&key(row))
            .expect("every earlier record is in the final");
        if l[4] != row[4] {
            // A grade, unless the row's code cell is dirt (an unknown code, a pasted NISS)
            // in both exports.
            let (_, known) = known_codes("his/pathology.csv").unwrap();
            assert!(
                row[3] == "GRADE"
                    || row[3].starts_with("GRADE ")
                    || !known.contains(row[3].as_str()),
                "{row:?}"
            );
            corrected.insert(key(row));
        }
    }
    let corrected = corrected.len() as u64;
    let late_patients: HashSet<&str> = last
        .iter()
        .map(|r| r[0].as_str())
        .filter(|p| !earlier.iter().any(|e| e[0] == *p))
        .collect();
    let pattern = &r.summary["patterns"]["dated_reexport"];
    assert_eq!(corrected, pattern["corrected_rows"].as_u64().unwrap());
    assert!(corrected > 0);
    assert_eq!(
        late_patients.len() as u64,
        pattern["patients_reported_late"].as_u64().unwrap()
    );
    let mut bad_status = 0;
    for line in std::fs::read_to_string(r.root.join("fhir/Observation.ndjson"))
        .unwrap()
        .lines()
    {
        let v: Value = serde_json::from_str(line).unwrap();
        bad_status += usize::from(v["status"] == "finalised");
    }
    let mut bad_gender = 0;
    for line in std::fs::read_to_string(r.root.join("fhir/Patient.ndjson"))
        .unwrap()
        .lines()
    {
        let v: Value = serde_json::from_str(line).unwrap();
        bad_gender += usize::from(v["gender"] == "femme");
    }
    assert_eq!((bad_status, bad_gender), (1, 1));

    // Dirt does not change the cohort.
    let clean = synth(150, 4, 0.0);
    for (a, b) in r.truth.iter().zip(&clean.truth) {
        for key in [
            "patient_nr",
            "subtype",
            "diagnosis_date",
            "surgery_date",
            "death_date",
            "pcr",
        ] {
            assert_eq!(a[key], b[key], "{key}");
        }
    }
}

#[test]
fn synth_without_dirt_is_clean() {
    let r = synth(80, 6, 0.0);
    assert_eq!(r.report.dirt, registrar_synth::DirtCounts::default());
    for kind in r.summary["dirt"].as_object().unwrap().values() {
        assert_eq!(kind, 0);
    }
    assert!(!r.root.join(EMPTY_FILE).exists());
    for (file, header) in his_files() {
        let bytes = std::fs::read(r.root.join(&file)).unwrap();
        assert!(!bytes.starts_with(b"\xEF\xBB\xBF"), "{file}: no BOM");
        assert_eq!(r.summary["files"][&file]["actual_encoding"], "windows-1252");
        let (_, rows) = read_csv(&r, &file);
        let codes = known_codes(&file);
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row.len(), header.len());
            if let Some((c, known)) = &codes {
                assert!(known.contains(row[*c].as_str()), "{file}: {}", row[*c]);
            }
            assert!(i == 0 || rows[i - 1] != *row, "{file}: no duplicates");
        }
    }
    assert!(r
        .truth
        .iter()
        .all(|t| t["dirt"].as_array().unwrap().is_empty()));
}

#[test]
fn synth_institutions_with_disjoint_numbers_have_disjoint_patients() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen_mrn = HashSet::new();
    let mut seen_niss = HashSet::new();
    for (i, first) in [1u64, 1001, 2001].into_iter().enumerate() {
        let mut opts = SynthOptions::new(30, 77, dir.path().join(format!("site{i}")));
        opts.dicom = false;
        opts.first_patient_number = first;
        opts.institution = format!("Clinique fictive {i}");
        generate(&opts, &|_| {}).unwrap();
        let text = std::fs::read(opts.out.join("his/patients.csv")).unwrap();
        for line in decode_cp1252(&text).lines().skip(1) {
            let f: Vec<&str> = line.trim_end().split(';').collect();
            assert!(
                seen_mrn.insert(f[0].to_string()),
                "MRN {} unique across sites",
                f[0]
            );
            assert!(
                seen_niss.insert(f[1].to_string()),
                "NISS {} unique across sites",
                f[1]
            );
        }
    }
    assert_eq!(seen_niss.len(), 90);
}
