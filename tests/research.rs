//! The curated research views against the synthetic generator's truth file.

use crate::support::{import_hospital, new_key, synth, TestDb};
use registrar_anonymizer::pseudonym::IdentifierType;
use std::collections::HashMap;

/// Pseudonym -> person_id, from the person map.
fn person_ids(c: &mut postgres::Client) -> HashMap<String, i32> {
    c.query("SELECT pseudonym, person_id FROM registry.person_map", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// A research view's rows by person_id.
fn by_person(c: &mut postgres::Client, sql: &str) -> HashMap<i32, postgres::Row> {
    c.query(sql, &[])
        .unwrap()
        .into_iter()
        .map(|r| (r.get::<_, i32>("person_id"), r))
        .collect()
}

/// The synthetic generator's truth file, one value per patient.
fn truth_of(src: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(src.join("truth.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn research_views_agree_with_the_truth_file() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let src = synth(dir.path(), 250, 31, 0.0);
    let key = new_key(dir.path(), "k");
    import_hospital(&db, &key, &src);
    let keys = crate::support::registry_keys(&key);
    let mut c = db.client();
    let ids = person_ids(&mut c);
    let bcp = by_person(&mut c, "SELECT * FROM research.breast_cancer_patient");
    let sub = by_person(&mut c, "SELECT * FROM research.subtype");
    let model = by_person(&mut c, "SELECT * FROM research.modeling_cohort");
    let neo = by_person(&mut c, "SELECT * FROM research.neoadjuvant_treatment");
    let rec = by_person(&mut c, "SELECT * FROM research.recurrence");
    assert_eq!(bcp.len(), 250);
    let truth = truth_of(&src);
    let mut compared = HashMap::<&str, usize>::new();
    for t in &truth {
        let p = keys
            .current
            .person(IdentifierType::Mrn, t["patient_nr"].as_str().unwrap())
            .unwrap();
        let id = ids[p.as_str()];
        let who = t["patient_nr"].as_str().unwrap();
        let b = &bcp[&id];
        assert_eq!(
            b.get::<_, Option<String>>("laterality").as_deref(),
            t["laterality"].as_str(),
            "{who}"
        );
        // Shifting both dates by the same days keeps the interval, not always the calendar:
        // near a birthday across a 29 February, the age in whole years can move by one.
        let age = b.get::<_, Option<i32>>("age_at_diagnosis").unwrap() as i64;
        let true_age = t["age_at_diagnosis"].as_i64().unwrap();
        assert!(
            (age - true_age).abs() <= 1,
            "{who}: age {age} vs {true_age}"
        );
        *compared.entry("age_exact").or_default() += (age == true_age) as usize;
        assert_eq!(
            b.get::<_, Option<String>>("ct").as_deref(),
            t["ctnm"]["t"].as_str(),
            "{who}"
        );
        assert_eq!(
            b.get::<_, Option<String>>("cn").as_deref(),
            t["ctnm"]["n"].as_str(),
            "{who}"
        );
        assert_eq!(
            b.get::<_, Option<i32>>("grade"),
            t["grade"].as_i64().map(|g| g as i32),
            "{who}"
        );
        assert_eq!(
            sub[&id].get::<_, String>("subtype"),
            t["subtype"].as_str().unwrap(),
            "{who}: subtype"
        );
        *compared.entry("subtype").or_default() += 1;
        let m = &model[&id];
        let neoadjuvant = t["neoadjuvant"].as_bool().unwrap();
        assert_eq!(neo.contains_key(&id), neoadjuvant, "{who}: neoadjuvant");
        assert_eq!(
            m.get::<_, Option<bool>>("pcr"),
            t["pcr"].as_bool(),
            "{who}: pCR"
        );
        if !t["pcr"].is_null() {
            *compared.entry("pcr").or_default() += 1;
        }
        if let Some(r) = rec.get(&id) {
            assert_eq!(
                r.get::<_, bool>("rfs_event"),
                t["rfs_event"].as_bool().unwrap(),
                "{who}: RFS event"
            );
            if t["rfs_event"].as_bool().unwrap() {
                assert_eq!(
                    r.get::<_, Option<i32>>("rfs_days").map(i64::from),
                    t["rfs_days"].as_i64(),
                    "{who}: RFS days"
                );
                *compared.entry("rfs_event").or_default() += 1;
            } else {
                assert!(
                    r.get::<_, Option<i32>>("rfs_days").map(i64::from) <= t["rfs_days"].as_i64(),
                    "{who}: censored before the cut-off"
                );
            }
        } else {
            assert!(
                t["surgery_date"].is_null(),
                "{who}: a surgery must give a recurrence row"
            );
        }
        let pillar = match t["subtype"].as_str().unwrap() {
            "luminal_a" | "luminal_b_her2neg" => "luminal",
            "luminal_b_her2pos" | "her2_enriched" => "her2_positive",
            _ => "tnbc",
        };
        assert_eq!(
            m.get::<_, Option<String>>("pillar").as_deref(),
            Some(pillar),
            "{who}"
        );
    }
    assert!(compared["age_exact"] >= 240, "{compared:?}");
    assert!(
        compared["pcr"] > 10 && compared["rfs_event"] > 5,
        "{compared:?}"
    );
    // The pillar views partition the cohort.
    let n: i64 = c
        .query_one(
            "SELECT (SELECT count(*) FROM research.luminal_cohort) + (SELECT count(*) FROM research.her2_positive_cohort)
                  + (SELECT count(*) FROM research.tnbc_cohort)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 250);
}

/// person_id, age at diagnosis, subtype, pCR.
type CohortRow = (i64, Option<i64>, Option<String>, Option<bool>);

#[test]
fn a_cohort_exports_as_csv_with_small_cell_warnings() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let src = synth(dir.path(), 40, 4, 0.0);
    let key = new_key(dir.path(), "k");
    import_hospital(&db, &key, &src);
    let out = db.registrar(&["cohort", "list"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("tnbc_cohort"),
        "{}",
        crate::support::text(&out)
    );
    let f = dir.path().join("cohort.csv");
    let out = db.registrar(&[
        "cohort",
        "export",
        "modeling_cohort",
        "--out",
        f.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", crate::support::text(&out));
    let csv = std::fs::read_to_string(&f).unwrap();
    assert!(csv.starts_with("person_id,pillar,subtype,"), "{csv}");
    assert_eq!(csv.lines().count(), 41);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("small cell"),
        "40 patients make small cells"
    );
    let out = db.registrar(&["cohort", "export", "no_such", "--out", f.to_str().unwrap()]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("cohorts:"));

    // Parquet: the same rows, typed columns, NULLs kept, readable by a Parquet reader.
    let pq = dir.path().join("cohort.parquet");
    let out = db.registrar(&[
        "cohort",
        "export",
        "modeling_cohort",
        "--format",
        "parquet",
        "--out",
        pq.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", crate::support::text(&out));
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(std::fs::File::open(&pq).unwrap()).unwrap();
    let meta = reader.metadata();
    assert_eq!(meta.file_metadata().num_rows(), 40);
    let schema = meta.file_metadata().schema_descr();
    let col = |name: &str| {
        (0..schema.num_columns())
            .find(|i| schema.column(*i).name() == name)
            .map(|i| schema.column(i).physical_type().to_string())
            .unwrap_or_else(|| panic!("no column {name}"))
    };
    assert_eq!(col("age_at_diagnosis"), "INT32");
    assert_eq!(col("subtype"), "BYTE_ARRAY");
    assert_eq!(col("pcr"), "BOOLEAN");
    assert_eq!(col("er_pct"), "DOUBLE");
    // Row by row against the view.
    let mut from_file: Vec<CohortRow> = Vec::new();
    for row in reader.get_row_iter(None).unwrap() {
        let row = row.unwrap();
        let mut person = 0;
        let (mut age, mut subtype, mut pcr) = (None, None, None);
        for (name, field) in row.get_column_iter() {
            use parquet::record::Field;
            match (name.as_str(), field) {
                ("person_id", Field::Int(v)) => person = *v as i64,
                ("age_at_diagnosis", Field::Int(v)) => age = Some(*v as i64),
                ("subtype", Field::Str(v)) => subtype = Some(v.clone()),
                ("pcr", Field::Bool(v)) => pcr = Some(*v),
                _ => {}
            }
        }
        from_file.push((person, age, subtype, pcr));
    }
    from_file.sort();
    let mut from_db: Vec<CohortRow> = db
        .client()
        .query(
            "SELECT person_id::int8, age_at_diagnosis::int8, subtype, pcr FROM research.modeling_cohort",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    from_db.sort();
    assert_eq!(from_file, from_db);
    assert!(
        from_db.iter().any(|r| r.3.is_none()),
        "NULLs are in the test"
    );
}

/// A digest of every research view's rows (optionally leaving one person out), by view.
fn research_digest(c: &mut postgres::Client, without: Option<i32>) -> Vec<(String, i64, String)> {
    let views: Vec<String> = c
        .query(
            "SELECT c.relname::text FROM pg_class c
              WHERE c.relnamespace = 'research'::regnamespace AND c.relkind = 'v'
                AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'person_id')
              ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(views.len() >= 18, "{views:?}");
    views
        .into_iter()
        .map(|v| {
            let r = c
                .query_one(
                    &format!(
                        "SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '')
                           FROM research.{v} t WHERE t.person_id IS DISTINCT FROM $1"
                    ),
                    &[&without],
                )
                .unwrap();
            (v, r.get(0), r.get(1))
        })
        .collect()
}

/// The marts follow the facts person by person: the first night recomputes everyone, a
/// corrected record recomputes its person only, and what the increments built is exactly what
/// a full rebuild builds.
#[test]
fn research_marts_refresh_the_changed_persons_and_match_a_full_rebuild() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let src = synth(dir.path(), 60, 32, 0.0);
    let key = new_key(dir.path(), "k");
    assert!(db.registrar(&["vocab", "load"]).status.success());
    let cfg = crate::support::nightly_config(&db, &dir.path().join("night"), &src, &key);
    let first = crate::support::nightly(&cfg);
    let report: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    let mut c = db.client();
    let persons: i64 = c
        .query_one(
            "SELECT count(DISTINCT person_id) FROM registry.lineage",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(report["research_marts"]["persons"], persons, "{report}");
    assert_eq!(report["research_marts"]["full_rebuild"], false);
    let pending: i64 = c
        .query_one("SELECT count(*) FROM registry.changed_person", &[])
        .unwrap()
        .get(0);
    assert_eq!(pending, 0);
    let night1 = research_digest(&mut c, None);
    let cohort: i64 = c
        .query_one("SELECT count(*) FROM research.modeling_cohort", &[])
        .unwrap()
        .get(0);
    assert_eq!(cohort, 60);

    // A full rebuild gives the same rows.
    let out = db.registrar(&["--json", "research", "refresh", "--full"]);
    assert!(out.status.success(), "{}", crate::support::text(&out));
    let full: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(full["full_rebuild"], true);
    assert_eq!(research_digest(&mut c, None), night1);

    // A corrected ER result of one sample: that person, and only that person, changes.
    let files = crate::support::his_files(&src, "pathology");
    let newest = files.last().unwrap();
    // windows-1252, `;`, CRLF: edit bytes as Latin-1 characters so the rest stays as it was
    let text: String = std::fs::read(newest)
        .unwrap()
        .iter()
        .map(|&b| b as char)
        .collect();
    let mut lines: Vec<String> = text.split("\r\n").map(String::from).collect();
    let unquote = |s: &str| s.trim_matches('"').to_string();
    let header: Vec<String> = lines[0].split(';').map(unquote).collect();
    let col = |n: &str| header.iter().position(|h| h == n).unwrap();
    let (code, value, patient) = (col("lab_code"), col("result"), col("patient_nr"));
    let at = lines
        .iter()
        .position(|l| {
            let f: Vec<String> = l.split(';').map(unquote).collect();
            f.get(code).map(String::as_str) == Some("ER_PCT")
                && f[value]
                    .replace(',', ".")
                    .parse::<f64>()
                    .is_ok_and(|v| v >= 50.0)
        })
        .expect("an ER-positive result");
    let mut f: Vec<String> = lines[at].split(';').map(String::from).collect();
    f[value] = "0".into();
    let patient_nr = unquote(&f[patient]);
    lines[at] = f.join(";");
    let bytes: Vec<u8> = lines.join("\r\n").chars().map(|c| c as u8).collect();
    std::fs::write(newest, bytes).unwrap();
    let keys = crate::support::registry_keys(&key);
    let pseudonym = keys
        .current
        .person(IdentifierType::Mrn, &patient_nr)
        .unwrap();
    let person: i32 = c
        .query_one(
            "SELECT person_id FROM registry.person_map WHERE pseudonym = $1",
            &[&pseudonym.as_str()],
        )
        .unwrap()
        .get(0);
    let before: Option<f64> = c
        .query_one(
            "SELECT er_pct::float8 FROM research.receptor_status WHERE person_id = $1",
            &[&person],
        )
        .unwrap()
        .get(0);
    assert!(before.unwrap() >= 50.0);
    let others_before = research_digest(&mut c, Some(person));

    let second = crate::support::nightly(&cfg);
    let report: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(report["research_marts"]["persons"], 1, "{report}");
    let after: Option<f64> = c
        .query_one(
            "SELECT er_pct::float8 FROM research.receptor_status WHERE person_id = $1",
            &[&person],
        )
        .unwrap()
        .get(0);
    assert_eq!(after, Some(0.0));
    assert_eq!(
        research_digest(&mut c, Some(person)),
        others_before,
        "only the corrected person's rows changed"
    );
    let night2 = research_digest(&mut c, None);
    assert_ne!(night2, night1);
    let out = db.registrar(&["research", "refresh", "--full"]);
    assert!(out.status.success(), "{}", crate::support::text(&out));
    assert_eq!(research_digest(&mut c, None), night2);

    // Changing the roles rebuilds every person at once.
    c.batch_execute(
        "INSERT INTO research.concept_role (role, concept_id, label, description)
         VALUES ('her2_ish', 2000000999, '', 'a site''s own ISH concept')",
    )
    .unwrap();
    let (n, whole): (i64, bool) = {
        let r = c
            .query_one("SELECT persons, full_rebuild FROM mart.refresh_state", &[])
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!(whole && n >= 60, "{n} {whole}");
    let out = db.registrar(&["research", "status"]);
    assert!(
        crate::support::text(&out).contains("0 person(s) changed since"),
        "{}",
        crate::support::text(&out)
    );
}

/// The cBioPortal clinical file and the Rotterdam-style trial CSV that `registrar synth`
/// writes (ages, years and months instead of dates; `NA` among numbers) load through the
/// shipped mappings alone, and the research views built from them agree with the truth:
/// subtype, clinical T and N, grade, neoadjuvant therapy, pCR, and the RFS event and days.
#[test]
fn cbioportal_and_trial_exports_reach_the_research_views_through_mappings_alone() {
    use crate::support::import_json;
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let src = synth(dir.path(), 300, 41, 0.0);
    let key = new_key(dir.path(), "k");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../mappings");
    let truth = truth_of(&src);
    let in_trial = truth.iter().filter(|t| !t["trial_pid"].is_null()).count();
    for (mapping, file, rows) in [
        (
            "cbioportal/data_clinical_patient.toml",
            "cbioportal/data_clinical_patient.txt",
            300,
        ),
        ("trial/rotterdam.toml", "trial/rotterdam.csv", in_trial),
    ] {
        let (code, v, t) = import_json(
            &db,
            &key,
            "csv",
            &root.join(mapping),
            &[&src.join(file)],
            &[],
        );
        assert_eq!(code, Some(0), "{mapping}: {t}");
        let f = &v["files"][0];
        assert_eq!(
            f["rows_loaded"].as_u64(),
            Some(rows as u64),
            "{mapping}: {t}"
        );
    }
    assert!(in_trial > 100, "{in_trial} trial patients");

    let keys = crate::support::registry_keys(&key);
    let mut c = db.client();
    let ids = person_ids(&mut c);
    let bcp = by_person(&mut c, "SELECT * FROM research.breast_cancer_patient");
    let sub = by_person(&mut c, "SELECT * FROM research.subtype");
    let model = by_person(&mut c, "SELECT * FROM research.modeling_cohort");
    let neo = by_person(&mut c, "SELECT * FROM research.neoadjuvant_treatment");
    let rec = by_person(&mut c, "SELECT * FROM research.recurrence");
    assert_eq!(bcp.len(), 300 + in_trial);
    let person = |id: &str| {
        let p = keys
            .current
            .person(IdentifierType::StudySubject, id)
            .unwrap();
        ids[p.as_str()]
    };
    let mut compared = HashMap::<&str, usize>::new();
    for t in &truth {
        let cbio = person(&format!(
            "cbio-brca:{}",
            t["cbio_patient_id"].as_str().unwrap()
        ));
        let trial = t["trial_pid"]
            .as_u64()
            .map(|pid| person(&format!("rotterdam-style:{pid}")));
        let who = t["cbio_patient_id"].as_str().unwrap();
        for (id, source) in [(Some(cbio), "cbioportal"), (trial, "trial")] {
            let Some(id) = id else { continue };
            let b = &bcp[&id];
            assert_eq!(
                sub[&id].get::<_, String>("subtype"),
                t["subtype"].as_str().unwrap(),
                "{who} ({source}): subtype"
            );
            assert_eq!(
                b.get::<_, Option<i32>>("grade"),
                t["grade"].as_i64().map(|g| g as i32),
                "{who} ({source}): grade"
            );
            *compared.entry(source).or_default() += 1;
            let Some(r) = rec.get(&id) else {
                assert!(
                    t["surgery_date"].is_null(),
                    "{who} ({source}): no recurrence row"
                );
                continue;
            };
            assert_eq!(
                r.get::<_, bool>("rfs_event"),
                t["rfs_event"].as_bool().unwrap(),
                "{who} ({source}): RFS event"
            );
            if t["rfs_event"].as_bool().unwrap() {
                assert_eq!(
                    r.get::<_, Option<i32>>("rfs_days").map(i64::from),
                    t["rfs_days"].as_i64(),
                    "{who} ({source}): RFS days"
                );
                *compared.entry("rfs_event").or_default() += 1;
            }
        }
        let b = &bcp[&cbio];
        assert_eq!(
            b.get::<_, Option<String>>("ct").as_deref(),
            t["ctnm"]["t"].as_str(),
            "{who}"
        );
        assert_eq!(
            b.get::<_, Option<String>>("cn").as_deref(),
            t["ctnm"]["n"].as_str(),
            "{who}"
        );
        let age = b.get::<_, Option<i32>>("age_at_diagnosis").unwrap() as i64;
        assert!(
            (age - t["age_at_diagnosis"].as_i64().unwrap()).abs() <= 1,
            "{who}: age {age}"
        );
        assert_eq!(
            neo.contains_key(&cbio),
            t["neoadjuvant"].as_bool().unwrap(),
            "{who}: neoadjuvant"
        );
        assert_eq!(
            model[&cbio].get::<_, Option<bool>>("pcr"),
            t["pcr"].as_bool(),
            "{who}: pCR"
        );
        if !t["pcr"].is_null() {
            *compared.entry("pcr").or_default() += 1;
        }
    }
    // Enough of each kind compared for the test to mean something.
    assert_eq!(compared["cbioportal"], 300);
    assert_eq!(compared["trial"], in_trial);
    assert!(compared["pcr"] >= 20, "{compared:?}");
    assert!(compared["rfs_event"] >= 20, "{compared:?}");
}
