//! OMOP semantics: the shipped vocabulary subset covers every concept the mappings and views
//! use, with the right domain and standard flag; and the research views classify a CDM
//! written the way another OMOP ETL writes it (standard concepts only, none of registrar's
//! source strings or local concepts).

use crate::support::{repo_file, text, TestDb};
use std::collections::BTreeSet;

fn mapping_files() -> Vec<std::path::PathBuf> {
    // Every folder of shipped mappings, so a new one is covered without being listed here.
    let mut out = Vec::new();
    let dirs: Vec<_> = std::fs::read_dir(repo_file("mappings"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert!(dirs.len() >= 5, "{dirs:?}");
    for dir in dirs {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_shipped_concept_is_in_the_shipped_vocabulary_with_its_domain_and_standard_flag() {
    let db = TestDb::new();
    let out = db.registrar(&["vocab", "load"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("merged"), "{stdout}");

    // Every mapping: its concepts exist, are standard, and are of the column's domain
    // (mapping check's lint says so when one is not).
    let files = mapping_files();
    let mut args = vec!["mapping", "check"];
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    args.extend(names.iter().map(String::as_str));
    let out = db.registrar(&args);
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    for bad in [
        "not in the loaded vocabulary",
        "not a standard concept",
        "the column expects",
    ] {
        assert!(!report.contains(bad), "{bad}:\n{report}");
    }
    // The hospital and FHIR mappings write no concept 0 into a fact and feed the views;
    // the GBSG2 trial spreadsheet (a real public file mapped as-is) is the known exception.
    for line in report.lines().filter(|l| l.contains("can be concept 0")) {
        assert!(line.contains("gbsg2.toml"), "{line}");
    }
    for m in [
        "diagnoses",
        "pathology",
        "tnm",
        "surgery",
        "systemic_therapy",
        "recurrences",
        "data_clinical_patient",
        "rotterdam",
    ] {
        let i = report
            .find(&format!("{m}.toml: ok"))
            .unwrap_or_else(|| panic!("{m}:\n{report}"));
        let feeds = report[i..].lines().nth(1).unwrap();
        assert!(feeds.contains("feeds research."), "{m}: {feeds}");
    }

    // Every role of the research views names a concept of the vocabulary, standard.
    assert_eq!(
        db.count(
            "SELECT count(*) FROM research.concept_role r
              LEFT JOIN cdm.concept c USING (concept_id)
             WHERE c.concept_id IS NULL OR c.standard_concept IS DISTINCT FROM 'S'"
        ),
        0,
        "role concepts missing or not standard"
    );
    // Roles read by the views are the ones the lint knows.
    let mut c = db.client();
    let roles: BTreeSet<String> = c
        .query("SELECT DISTINCT role FROM research.concept_role", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for r in &roles {
        assert!(
            !registrar_etl::mapping::lint::views_of(r).is_empty(),
            "role {r} has no views in lint::ROLE_VIEWS"
        );
    }
    for (_, views) in registrar_etl::mapping::lint::ROLE_VIEWS {
        for v in *views {
            assert_eq!(
                db.count(&format!(
                    "SELECT count(*) FROM pg_views WHERE schemaname = 'research' AND viewname = '{v}'"
                )),
                1,
                "{v}"
            );
        }
    }
    // The concepts the code writes are registrar's local concepts.
    for id in [
        registrar_etl::vocab::local::DICOM_SERIES,
        registrar_etl::vocab::local::RT_STRUCTURE_ROI,
    ] {
        assert_eq!(
            db.count(&format!(
                "SELECT count(*) FROM cdm.concept WHERE concept_id = {id} AND vocabulary_id = 'registrar' AND standard_concept = 'S'"
            )),
            1
        );
    }
    // Local concepts are >= 2000000000 and only there; every concept's vocabulary, domain
    // and class is a row of its table (what DQD's foreign-key checks ask).
    assert_eq!(
        db.count(
            "SELECT count(*) FROM cdm.concept
              WHERE vocabulary_id = 'registrar' AND concept_id < 2000000000
                 OR concept_id >= 2000000000 AND vocabulary_id NOT IN ('registrar', 'Vocabulary')"
        ),
        0
    );
    for (col, table) in [
        ("vocabulary_id", "vocabulary"),
        ("domain_id", "domain"),
        ("concept_class_id", "concept_class"),
    ] {
        assert_eq!(
            db.count(&format!(
                "SELECT count(*) FROM cdm.concept c WHERE NOT EXISTS (SELECT 1 FROM cdm.{table} t WHERE t.{col} = c.{col})"
            )),
            0,
            "concept.{col} not in cdm.{table}"
        );
    }

    // Loading twice is the same; a full Athena download keeps registrar's concepts.
    let before = db.count("SELECT count(*) FROM cdm.concept");
    let out = db.registrar(&["vocab", "load"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(db.count("SELECT count(*) FROM cdm.concept"), before);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("CONCEPT.csv"),
        "concept_id\tconcept_name\tdomain_id\tvocabulary_id\tconcept_class_id\tstandard_concept\tconcept_code\tvalid_start_date\tvalid_end_date\tinvalid_reason\n\
         4112853\tMalignant tumor of breast\tCondition\tSNOMED\tClinical Finding\tS\t254837009\t20020131\t20991231\t\n",
    )
    .unwrap();
    let out = db.registrar(&["vocab", "load", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        db.count("SELECT count(*) FROM cdm.concept WHERE concept_id < 2000000000"),
        1
    );
    assert!(db.count("SELECT count(*) FROM cdm.concept WHERE vocabulary_id = 'registrar'") > 20);
}

/// A CDM as another OMOP ETL writes it: standard concepts only (Cancer Modifier TNM, LOINC
/// receptors with LOINC answers or SNOMED values, RxNorm ingredients, SNOMED procedures and
/// recurrence conditions), no source values, no registrar local concept.
const FOREIGN_CDM: &str = "
INSERT INTO cdm.person (person_id, gender_concept_id, year_of_birth, month_of_birth, day_of_birth,
                        race_concept_id, ethnicity_concept_id)
VALUES (1, 8532, 1960, 3, 1, 0, 0), (2, 8532, 1975, 6, 15, 0, 0), (3, 8532, 1980, 1, 20, 0, 0),
       (4, 8532, 1950, 9, 9, 0, 0);
INSERT INTO cdm.condition_occurrence (condition_occurrence_id, person_id, condition_concept_id,
                                      condition_start_date, condition_type_concept_id)
VALUES (11, 1, 4112853, '2020-01-10', 32817),
       (12, 1, 4198446, '2022-05-01', 32817),   -- distant metastasis of breast cancer
       (21, 2, 4112853, '2021-02-01', 32817),
       (31, 3, 4112853, '2021-03-01', 32817),
       (32, 3, 4201477, '2023-01-15', 32817),   -- local recurrence
       (41, 4, 4112853, '2019-05-05', 32817);
INSERT INTO cdm.measurement (measurement_id, person_id, measurement_concept_id, measurement_date,
                             measurement_type_concept_id, value_as_number, value_as_concept_id,
                             unit_concept_id, meas_event_field_concept_id, measurement_event_id)
VALUES
  -- 1: ER 80 % (on the presence LOINC, unit percent), PR positive, HER2 IHC 1+; cT2 cN0 cM0
  (101, 1, 36203168, '2020-01-12', 32817, 80, NULL, 8554, NULL, NULL),
  (102, 1, 36203170, '2020-01-12', 32817, NULL, 9191, NULL, NULL, NULL),
  (103, 1, 36203114, '2020-01-12', 32817, NULL, 45878548, NULL, NULL, NULL),
  (104, 1, 1635033, '2020-01-12', 32817, NULL, NULL, NULL, 1147127, 11),
  (105, 1, 1634145, '2020-01-12', 32817, NULL, NULL, NULL, 1147127, 11),
  (106, 1, 1635291, '2020-01-12', 32817, NULL, NULL, NULL, 1147127, 11),
  -- 2: ER and PR negative (LOINC answers), HER2 IHC 0; cT3 cN1; after neoadjuvant ypT0 ypN0
  (201, 2, 36203168, '2021-02-03', 32817, NULL, 45878583, NULL, NULL, NULL),
  (202, 2, 36203170, '2021-02-03', 32817, NULL, 45878583, NULL, NULL, NULL),
  (203, 2, 36203114, '2021-02-03', 32817, NULL, 45877013, NULL, NULL, NULL),
  (204, 2, 1635895, '2021-02-03', 32817, NULL, NULL, NULL, 1147127, 21),
  (205, 2, 1635729, '2021-02-03', 32817, NULL, NULL, NULL, 1147127, 21),
  (206, 2, 1635740, '2021-08-01', 32817, NULL, NULL, NULL, 1147127, 21),
  (207, 2, 1635597, '2021-08-01', 32817, NULL, NULL, NULL, 1147127, 21),
  -- 3: ER, PR negative (SNOMED), HER2 IHC 2+ and ISH positive; after neoadjuvant ypT1a ypN1
  (301, 3, 36203168, '2021-03-02', 32817, NULL, 9189, NULL, NULL, NULL),
  (302, 3, 36203170, '2021-03-02', 32817, NULL, 9189, NULL, NULL, NULL),
  (303, 3, 36203114, '2021-03-02', 32817, NULL, 45881916, NULL, NULL, NULL),
  (304, 3, 36203113, '2021-03-05', 32817, NULL, 9191, NULL, NULL, NULL),
  (305, 3, 1633722, '2021-09-01', 32817, NULL, NULL, NULL, 1147127, 31),
  (306, 3, 1635613, '2021-09-01', 32817, NULL, NULL, NULL, 1147127, 31),
  -- 4: ER positive by value, HER2 IHC 3+: luminal B HER2+; stage 2A (Cancer Modifier)
  (401, 4, 36203168, '2019-05-06', 32817, NULL, 45884084, NULL, NULL, NULL),
  (402, 4, 36203114, '2019-05-06', 32817, NULL, 45876467, NULL, NULL, NULL),
  (403, 4, 1634370, '2019-05-06', 32817, NULL, NULL, NULL, NULL, NULL);
INSERT INTO cdm.drug_exposure (drug_exposure_id, person_id, drug_concept_id, drug_exposure_start_date,
                               drug_exposure_end_date, drug_type_concept_id)
VALUES (2001, 2, 1378382, '2021-02-20', '2021-02-20', 32817),
       (2002, 2, 1344905, '2021-02-20', '2021-02-20', 32817),
       (2003, 2, 1378382, '2021-05-20', '2021-05-20', 32817),
       (3001, 3, 1387104, '2021-03-20', '2021-03-20', 32817),
       (3002, 3, 1315942, '2021-03-20', '2021-03-20', 32817),
       (1001, 1, 1436678, '2020-03-01', '2020-03-01', 32817);  -- adjuvant tamoxifen
INSERT INTO cdm.procedure_occurrence (procedure_occurrence_id, person_id, procedure_concept_id,
                                      procedure_date, procedure_type_concept_id)
VALUES (1101, 1, 4213045, '2020-02-10', 32817),   -- lumpectomy
       (2101, 2, 4286804, '2021-08-01', 32817),   -- mastectomy
       (3101, 3, 4231761, '2021-09-01', 32817),   -- radical mastectomy
       (1102, 1, 40480519, '2020-04-01', 32817);  -- IMRT, a descendant of radiotherapy
-- IMRT 'Is a' radiotherapy (OHDSI/EunomiaDatasets Synthea27Nj_5.4.zip CONCEPT_RELATIONSHIP.csv),
-- as a full Athena download's concept_ancestor holds it.
INSERT INTO cdm.concept_ancestor VALUES (4029715, 40480519, 1, 1), (40480519, 40480519, 0, 0);
";

#[test]
fn the_research_views_classify_a_cdm_written_by_another_etl() {
    let db = TestDb::new();
    let out = db.registrar(&["vocab", "load"]);
    assert!(out.status.success(), "{}", text(&out));
    let mut c = db.client();
    c.batch_execute(FOREIGN_CDM).unwrap();
    // cdm and concept_ancestor were written behind registrar's back: refresh the views'
    // concept sets (as `registrar vocab load` and the nightly do) and rebuild the research
    // marts, as a site whose cdm another ETL writes does after each load.
    c.batch_execute("SELECT research.refresh_concept_sets()")
        .unwrap();
    let out = db.registrar(&["research", "refresh", "--full"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("(full rebuild)"), "{}", text(&out));
    let rows = c
        .query(
            "SELECT person_id, pillar, subtype, ct, cn, cm, clinical_stage, her2_status, neoadjuvant,
                    surgery_type, pcr, rfs_event
               FROM research.modeling_cohort ORDER BY person_id",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), 4);
    // Each row as "pillar subtype cT cN cM stage HER2 neoadjuvant surgery pCR RFS-event",
    // "-" for NULL.
    let row = |i: usize| -> String {
        let r = &rows[i];
        let mut out: Vec<String> = (1..=7)
            .map(|c| r.get::<_, Option<String>>(c).unwrap_or_else(|| "-".into()))
            .collect();
        out.push(r.get::<_, bool>(8).to_string());
        out.push(r.get::<_, Option<String>>(9).unwrap_or_else(|| "-".into()));
        for c in [10, 11] {
            out.push(
                r.get::<_, Option<bool>>(c)
                    .map_or("-".into(), |b| b.to_string()),
            );
        }
        out.join(" ")
    };
    // 1: HR+ HER2- without Ki-67: luminal (subtype luminal_unknown); distant metastasis
    // after surgery is an RFS event.
    assert_eq!(
        row(0),
        "luminal luminal_unknown T2 N0 M0 - negative false breast_conserving - true"
    );
    // 2: triple negative, neoadjuvant paclitaxel + carboplatin, ypT0 ypN0 = pCR.
    assert_eq!(
        row(1),
        "tnbc tnbc T3 N1 - - negative true mastectomy true false"
    );
    // 3: HER2 IHC 2+ with ISH positive: HER2-enriched; ypT1a ypN1 = no pCR; local recurrence.
    assert_eq!(
        row(2),
        "her2_positive her2_enriched - - - - positive true mastectomy false true"
    );
    // 4: ER positive, HER2 3+: luminal B HER2+; stage from the Cancer Modifier stage group;
    // no surgery, so no RFS.
    assert_eq!(
        row(3),
        "her2_positive luminal_b_her2pos - - - IIA positive false - - -"
    );
    // The neoadjuvant agents are the ingredients' names; recurrences are dated.
    let agents: String = c
        .query_one(
            "SELECT agents FROM research.neoadjuvant_treatment WHERE person_id = 2",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(agents, "carboplatin, paclitaxel");
    let local: Option<chrono::NaiveDate> = c
        .query_one(
            "SELECT first_local FROM research.recurrence WHERE person_id = 3",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(local, chrono::NaiveDate::from_ymd_opt(2023, 1, 15));
    // A descendant (IMRT under radiotherapy, through concept_ancestor) is read too.
    assert_eq!(
        db.count("SELECT count(*) FROM research.radiotherapy WHERE person_id = 1 AND target = 'radiotherapy'"),
        1
    );
    // The derived oncology rows: a tumour fact without a link is linked to its diagnosis, a
    // source's link is kept; one Disease First Occurrence episode per diagnosis, whose event
    // is the condition, kept as is by the next rebuild.
    let d = registrar_etl::derive::rebuild(&mut c).unwrap();
    assert_eq!((d.modifiers_linked, d.first_occurrence_episodes), (1, 4));
    assert_eq!(
        db.count("SELECT count(*) FROM cdm.measurement WHERE measurement_id = 403 AND meas_event_field_concept_id = 1147127 AND measurement_event_id = 41"),
        1
    );
    let episodes = "SELECT string_agg(e.person_id || ':' || ee.event_id || ':' || e.episode_object_concept_id, ' ' ORDER BY e.person_id)
                      FROM cdm.episode e JOIN cdm.episode_event ee USING (episode_id)
                     WHERE e.episode_concept_id = 32528 AND ee.episode_event_field_concept_id = 1147127";
    let first: String = c.query_one(episodes, &[]).unwrap().get(0);
    assert_eq!(first, "1:11:4112853 2:21:4112853 3:31:4112853 4:41:4112853");
    let ids = "SELECT string_agg(episode_id::text, ',' ORDER BY episode_id) FROM cdm.episode";
    let before: String = c.query_one(ids, &[]).unwrap().get(0);
    let d = registrar_etl::derive::rebuild(&mut c).unwrap();
    assert_eq!((d.modifiers_linked, d.first_occurrence_episodes), (0, 0));
    assert_eq!(c.query_one(ids, &[]).unwrap().get::<_, String>(0), before);
    // A changed diagnosis date moves its episode (written behind registrar's back, so the
    // marts are rebuilt first, as after any foreign write).
    c.batch_execute("UPDATE cdm.condition_occurrence SET condition_start_date = '2019-05-01' WHERE condition_occurrence_id = 41")
        .unwrap();
    assert!(db
        .registrar(&["research", "refresh", "--full"])
        .status
        .success());
    let d = registrar_etl::derive::rebuild(&mut c).unwrap();
    assert_eq!(d.first_occurrence_episodes, 1);
    assert_eq!(
        db.count("SELECT count(*) FROM cdm.episode WHERE person_id = 4 AND episode_start_date = '2019-05-01'"),
        1
    );
    assert_eq!(db.count("SELECT count(*) FROM cdm.episode"), 4);
    // The recurrence (a descendant of breast cancer) is not taken for the diagnosis.
    assert_eq!(
        db.count("SELECT count(*) FROM research.diagnosis WHERE person_id = 3 AND diagnosis_date = '2021-03-01'"),
        1
    );
}
