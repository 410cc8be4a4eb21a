//! `registrar vocab load` on a small vocabulary in Athena's exact format.

use crate::support::{text, TestDb};
use std::path::Path;

const CONCEPT: &str = "concept_id\tconcept_name\tdomain_id\tvocabulary_id\tconcept_class_id\tstandard_concept\tconcept_code\tvalid_start_date\tvalid_end_date\tinvalid_reason
8507\tMALE\tGender\tGender\tGender\tS\tM\t19700101\t20991231\t
8532\tFEMALE\tGender\tGender\tGender\tS\tF\t19700101\t20991231\t
35917234\tBreast, \"NOS\" (C50.9)\tSpec Anatomic Site\tICDO3\tICDO Topography\t\tC50.9\t19700101\t20991231\t
1310149\tHer2 receptor (old)\tMeasurement\tLOINC\tLab Test\t\t99999-9\t19700101\t20200101\tD
";
const VOCABULARY: &str = "vocabulary_id\tvocabulary_name\tvocabulary_reference\tvocabulary_version\tvocabulary_concept_id
Gender\tOMOP Gender\tOMOP generated\t\t44819217
ICDO3\tInternational Classification of Diseases for Oncology, Third Edition, WHO\thttps://seer.cancer.gov/icd-o-3/\tICDO3 SEER Site/Histology Released 06/2020\t44819266
";
const DOMAIN: &str = "domain_id\tdomain_name\tdomain_concept_id\nGender\tGender\t2\n";
const CONCEPT_CLASS: &str =
    "concept_class_id\tconcept_class_name\tconcept_class_concept_id\nGender\tGender\t44819225\n";
const RELATIONSHIP: &str = "relationship_id\trelationship_name\tis_hierarchical\tdefines_ancestry\treverse_relationship_id\trelationship_concept_id
Maps to\tNon-standard to Standard map (OMOP)\t0\t0\tMapped from\t44818977
";
const CONCEPT_RELATIONSHIP: &str =
    "concept_id_1\tconcept_id_2\trelationship_id\tvalid_start_date\tvalid_end_date\tinvalid_reason
8507\t8507\tMaps to\t19700101\t20991231\t
8532\t8532\tMaps to\t19700101\t20991231\t
";
const CONCEPT_ANCESTOR: &str =
    "ancestor_concept_id\tdescendant_concept_id\tmin_levels_of_separation\tmax_levels_of_separation
8507\t8507\t0\t0
";
const CONCEPT_SYNONYM: &str = "concept_id\tconcept_synonym_name\tlanguage_concept_id
8532\tFemme\t4180190
8532\tVrouw\t4182503
";
const DRUG_STRENGTH: &str = "drug_concept_id\tingredient_concept_id\tamount_value\tamount_unit_concept_id\tnumerator_value\tnumerator_unit_concept_id\tdenominator_value\tdenominator_unit_concept_id\tbox_size\tvalid_start_date\tvalid_end_date\tinvalid_reason
19010309\t1378382\t\t\t2.5\t8576\t1\t8587\t\t19700101\t20991231\t
1000560\t1000560\t0.00005\t8576\t\t\t\t\t30\t20050101\t20991231\t
";

fn write_vocab(dir: &Path) {
    for (name, body) in [
        ("CONCEPT.csv", CONCEPT),
        ("VOCABULARY.csv", VOCABULARY),
        ("DOMAIN.csv", DOMAIN),
        ("CONCEPT_CLASS.csv", CONCEPT_CLASS),
        ("RELATIONSHIP.csv", RELATIONSHIP),
        ("CONCEPT_RELATIONSHIP.csv", CONCEPT_RELATIONSHIP),
        ("CONCEPT_ANCESTOR.csv", CONCEPT_ANCESTOR),
        ("CONCEPT_SYNONYM.csv", CONCEPT_SYNONYM),
        ("DRUG_STRENGTH.csv", DRUG_STRENGTH),
        ("readme.txt", "Athena download\n"),
    ] {
        std::fs::write(dir.join(name), body).unwrap();
    }
}

fn counts(db: &TestDb) -> Vec<i64> {
    [
        "concept",
        "vocabulary",
        "domain",
        "concept_class",
        "relationship",
        "concept_relationship",
        "concept_ancestor",
        "concept_synonym",
        "drug_strength",
    ]
    .iter()
    .map(|t| {
        // registrar's own vocabulary is merged into every load: count the download's rows.
        let own = match *t {
            "concept" => "WHERE concept_id < 2000000000",
            "vocabulary" => "WHERE vocabulary_id <> 'registrar'",
            "concept_ancestor" => "WHERE descendant_concept_id < 2000000000",
            _ => "",
        };
        db.count(&format!("SELECT count(*) FROM cdm.{t} {own}"))
    })
    .collect()
}

#[test]
fn vocab_load_is_typed_complete_and_idempotent() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    write_vocab(dir.path());
    let out = db.registrar(&["vocab", "load", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("readme.txt"),
        "ignored files are reported: {stdout}"
    );
    assert_eq!(counts(&db), vec![4, 2, 1, 1, 1, 2, 1, 2, 2]);

    let mut c = db.client();
    let r = c
        .query_one(
            "SELECT concept_name, valid_end_date::text, invalid_reason FROM cdm.concept WHERE concept_id = 1310149",
            &[],
        )
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "Her2 receptor (old)");
    assert_eq!(r.get::<_, String>(1), "2020-01-01");
    assert_eq!(r.get::<_, Option<String>>(2).as_deref(), Some("D"));
    let quoted: String = c
        .query_one(
            "SELECT concept_name FROM cdm.concept WHERE concept_id = 35917234",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        quoted, "Breast, \"NOS\" (C50.9)",
        "Athena files are not quoted"
    );
    let amount: String = c
        .query_one(
            "SELECT amount_value::text FROM cdm.drug_strength WHERE drug_concept_id = 1000560",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(amount, "0.00005");
    assert_eq!(
        db.count("SELECT count(*) FROM cdm.drug_strength WHERE amount_value IS NULL AND box_size IS NULL"),
        1
    );

    // Loading the same download again leaves the same tables.
    let out = db.registrar(&["vocab", "load", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(counts(&db), vec![4, 2, 1, 1, 1, 2, 1, 2, 2]);
    assert_eq!(
        db.count("SELECT count(*) FROM registry.import_run WHERE command = 'vocab load' AND status = 'succeeded'"),
        2
    );
}

#[test]
fn a_malformed_vocabulary_line_loads_nothing_and_names_file_and_line() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    write_vocab(dir.path());
    let out = db.registrar(&["vocab", "load", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let before = counts(&db);

    // A new download whose third concept line has a bad date, and which would add rows.
    let broken = CONCEPT.replacen(
        "19700101\t20991231\t\n35917234",
        "1970-13-45\t20991231\t\n35917234",
        1,
    );
    assert_ne!(broken, CONCEPT);
    std::fs::write(dir.path().join("CONCEPT.csv"), broken).unwrap();
    std::fs::write(
        dir.path().join("CONCEPT_SYNONYM.csv"),
        format!("{CONCEPT_SYNONYM}8507\tHomme\t4180190\n"),
    )
    .unwrap();
    let out = db.registrar(&["vocab", "load", dir.path().to_str().unwrap()]);
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("CONCEPT.csv: line 3"),
        "error names file and line: {err}"
    );
    assert!(
        err.contains("valid_start_date"),
        "error names the column: {err}"
    );
    assert_eq!(
        counts(&db),
        before,
        "nothing of the broken download was loaded"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM registry.import_run WHERE command = 'vocab load' AND status = 'failed'"),
        1
    );

    // A ragged line is caught too.
    std::fs::write(
        dir.path().join("CONCEPT.csv"),
        format!("{CONCEPT}42\tonly two\n"),
    )
    .unwrap();
    let out = db.registrar(&["vocab", "load", dir.path().to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("line 6: too few fields"),
        "{}",
        text(&out)
    );
}
