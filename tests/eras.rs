//! `cdm.condition_era` and `cdm.drug_era`, derived with OHDSI's era logic (etl/src/derive.rs)
//! from a small hand-written CDM with known occurrences and exposures.

use crate::support::TestDb;
use registrar_etl::derive;

/// Concepts, as in the Athena extract of OHDSI/EunomiaDatasets
/// (datasets/Synthea27Nj/Synthea27Nj_5.4.zip, CONCEPT.csv).
const BREAST_TUMOUR: i32 = 4_112_853; // Malignant tumor of breast, SNOMED 254837009
const SINUSITIS: i32 = 4_283_893; // Sinusitis, SNOMED 36971009
const HYPERTENSION: i32 = 320_128; // Essential hypertension, SNOMED 59621000
const IBUPROFEN: i32 = 1_177_480; // ibuprofen, RxNorm Ingredient 5640
const IBUPROFEN_100_TABLET: i32 = 19_019_979; // ibuprofen 100 MG Oral Tablet, Clinical Drug 198405
const LISINOPRIL: i32 = 1_308_216; // lisinopril, RxNorm Ingredient 29046
const LISINOPRIL_10_TABLET: i32 = 19_080_128; // lisinopril 10 MG Oral Tablet, Clinical Drug 314076

/// The hand-written CDM: person 1 has conditions, person 2 drug exposures, person 3 is not in
/// `cdm.person` (facts loaded for nobody make no era).
fn load(db: &TestDb) {
    db.client()
        .batch_execute(&format!(
            "INSERT INTO cdm.person (person_id, gender_concept_id, year_of_birth, race_concept_id,
                    ethnicity_concept_id)
             VALUES (1, 8532, 1960, 0, 0), (2, 8532, 1971, 0, 0);

             INSERT INTO cdm.concept (concept_id, concept_name, domain_id, vocabulary_id,
                    concept_class_id, standard_concept, concept_code, valid_start_date,
                    valid_end_date)
             VALUES ({IBUPROFEN}, 'ibuprofen', 'Drug', 'RxNorm', 'Ingredient', 'S', '5640',
                     '1970-01-01', '2099-12-31'),
                    ({IBUPROFEN_100_TABLET}, 'ibuprofen 100 MG Oral Tablet', 'Drug', 'RxNorm',
                     'Clinical Drug', 'S', '198405', '1970-01-01', '2099-12-31'),
                    ({LISINOPRIL}, 'lisinopril', 'Drug', 'RxNorm', 'Ingredient', 'S', '29046',
                     '1970-01-01', '2099-12-31'),
                    ({LISINOPRIL_10_TABLET}, 'lisinopril 10 MG Oral Tablet', 'Drug', 'RxNorm',
                     'Clinical Drug', 'S', '314076', '1970-01-01', '2099-12-31');

             -- The extract's CONCEPT_ANCESTOR.csv is empty: the tablet's ingredient (RxNorm 198405
             -- has ingredient 5640) is known only through this row, plus ibuprofen's self row
             -- (as Athena has). Lisinopril has no self row, and its tablet no ancestor at all.
             INSERT INTO cdm.concept_ancestor (ancestor_concept_id, descendant_concept_id,
                    min_levels_of_separation, max_levels_of_separation)
             VALUES ({IBUPROFEN}, {IBUPROFEN_100_TABLET}, 1, 1), ({IBUPROFEN}, {IBUPROFEN}, 0, 0);

             INSERT INTO cdm.condition_occurrence (condition_occurrence_id, person_id,
                    condition_concept_id, condition_start_date, condition_end_date,
                    condition_type_concept_id)
             VALUES -- 20 days apart: one era
                    (1, 1, {BREAST_TUMOUR}, '2020-01-01', '2020-01-10', 32817),
                    (2, 1, {BREAST_TUMOUR}, '2020-01-30', '2020-02-05', 32817),
                    -- no end (the day after its start), then 40 days later: two eras
                    (3, 1, {SINUSITIS}, '2020-03-01', NULL, 32817),
                    (4, 1, {SINUSITIS}, '2020-04-11', '2020-04-15', 32817),
                    -- 30 days apart is still one era (with one inside it), 31 is not
                    (5, 1, {HYPERTENSION}, '2021-01-01', '2021-01-01', 32817),
                    (6, 1, {HYPERTENSION}, '2021-01-31', '2021-02-01', 32817),
                    (7, 1, {HYPERTENSION}, '2021-01-31', '2021-01-31', 32817),
                    (8, 1, {HYPERTENSION}, '2021-03-04', '2021-03-10', 32817),
                    -- no standard concept: no era
                    (9, 1, 0, '2020-01-05', '2020-01-06', 32817),
                    -- a person not in cdm.person: no era
                    (10, 3, {BREAST_TUMOUR}, '2020-01-01', '2020-01-02', 32817);

             INSERT INTO cdm.drug_exposure (drug_exposure_id, person_id, drug_concept_id,
                    drug_exposure_start_date, drug_exposure_end_date, days_supply,
                    drug_type_concept_id)
             VALUES -- ibuprofen through the tablet's ancestor row: two overlapping exposures
                    -- (Jan 1-20, 19 days), a third 21 days later (Feb 10-20, 10 days): one era
                    -- of 50 days, 21 of them gaps
                    (1, 2, {IBUPROFEN_100_TABLET}, '2020-01-01', '2020-01-15', 14, 32838),
                    (2, 2, {IBUPROFEN_100_TABLET}, '2020-01-10', '2020-01-20', 10, 32838),
                    (3, 2, {IBUPROFEN_100_TABLET}, '2020-02-10', '2020-02-20', 10, 32838),
                    -- 41 days later: a second era, a tablet and the ingredient itself (through
                    -- its self row and as an ingredient, counted once), overlapping
                    (4, 2, {IBUPROFEN_100_TABLET}, '2020-04-01', '2020-04-05', 4, 32838),
                    (5, 2, {IBUPROFEN}, '2020-04-03', '2020-04-10', 7, 32838),
                    -- a negative days_supply: skipped (no era in 2021)
                    (6, 2, {IBUPROFEN_100_TABLET}, '2021-06-01', '2021-06-10', -9, 32838),
                    -- lisinopril, the ingredient directly, without a self row: 15 days apart,
                    -- one era Jan 1 - Mar 15 2020 (74 days, 30 + 29 exposed)
                    (7, 2, {LISINOPRIL}, '2020-01-01', '2020-01-31', 30, 32838),
                    (8, 2, {LISINOPRIL}, '2020-02-15', '2020-03-15', 29, 32838),
                    -- a drug with no known ingredient, and concept 0: no era
                    (9, 2, {LISINOPRIL_10_TABLET}, '2020-06-01', '2020-06-30', 29, 32838),
                    (10, 2, 0, '2020-06-01', '2020-06-30', 29, 32838),
                    -- a person not in cdm.person: no era
                    (11, 3, {IBUPROFEN}, '2020-01-01', '2020-01-02', 1, 32838);"
        ))
        .unwrap();
}

type Era = (i32, i32, i32, String, String, i32, Option<i32>);

/// Both era tables, as (id, person, concept, start, end, count, gap days), by id.
fn eras(db: &TestDb) -> (Vec<Era>, Vec<Era>) {
    let mut c = db.client();
    let mut rows = |sql: &str| -> Vec<Era> {
        c.query(sql, &[])
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    r.get(1),
                    r.get(2),
                    r.get(3),
                    r.get(4),
                    r.get(5),
                    r.get(6),
                )
            })
            .collect()
    };
    let conditions = rows(
        "SELECT condition_era_id, person_id, condition_concept_id, condition_era_start_date::text,
                condition_era_end_date::text, condition_occurrence_count, NULL::int
           FROM cdm.condition_era ORDER BY 1",
    );
    let drugs = rows(
        "SELECT drug_era_id, person_id, drug_concept_id, drug_era_start_date::text,
                drug_era_end_date::text, drug_exposure_count, gap_days
           FROM cdm.drug_era ORDER BY 1",
    );
    (conditions, drugs)
}

fn era(
    id: i32,
    person: i32,
    concept: i32,
    start: &str,
    end: &str,
    n: i32,
    gap: Option<i32>,
) -> Era {
    (id, person, concept, start.into(), end.into(), n, gap)
}

#[test]
fn condition_and_drug_eras_follow_ohdsis_era_logic_and_a_rebuild_gives_the_same_rows() {
    let db = TestDb::new();
    load(&db);
    let derived = derive::rebuild(&mut db.client()).unwrap();
    assert_eq!((derived.condition_eras, derived.drug_eras), (5, 3));

    let (conditions, drugs) = eras(&db);
    // Numbered by person, concept and start.
    assert_eq!(
        conditions,
        vec![
            era(1, 1, HYPERTENSION, "2021-01-01", "2021-02-01", 3, None),
            era(2, 1, HYPERTENSION, "2021-03-04", "2021-03-10", 1, None),
            era(3, 1, BREAST_TUMOUR, "2020-01-01", "2020-02-05", 2, None),
            era(4, 1, SINUSITIS, "2020-03-01", "2020-03-02", 1, None),
            era(5, 1, SINUSITIS, "2020-04-11", "2020-04-15", 1, None),
        ]
    );
    assert_eq!(
        drugs,
        vec![
            era(1, 2, IBUPROFEN, "2020-01-01", "2020-02-20", 3, Some(21)),
            era(2, 2, IBUPROFEN, "2020-04-01", "2020-04-10", 2, Some(0)),
            era(3, 2, LISINOPRIL, "2020-01-01", "2020-03-15", 2, Some(15)),
        ]
    );
    // The other derived tables are still there, in the same transaction.
    assert_eq!(db.count("SELECT count(*) FROM cdm.observation_period"), 2);

    // A rebuild of the same facts gives the same rows, ids included.
    let again = derive::rebuild(&mut db.client()).unwrap();
    assert_eq!((again.condition_eras, again.drug_eras), (5, 3));
    assert_eq!(eras(&db), (conditions, drugs));
}

#[test]
fn without_a_vocabulary_there_are_condition_eras_but_no_drug_eras() {
    let db = TestDb::new();
    load(&db);
    db.client()
        .batch_execute("DELETE FROM cdm.concept_ancestor; DELETE FROM cdm.concept;")
        .unwrap();
    let derived = derive::rebuild(&mut db.client()).unwrap();
    assert_eq!((derived.condition_eras, derived.drug_eras), (5, 0));

    // And a rebuild after the facts are gone empties the tables.
    db.client()
        .batch_execute("DELETE FROM cdm.condition_occurrence; DELETE FROM cdm.drug_exposure;")
        .unwrap();
    let derived = derive::rebuild(&mut db.client()).unwrap();
    assert_eq!((derived.condition_eras, derived.drug_eras), (0, 0));
    assert_eq!(db.count("SELECT count(*) FROM cdm.condition_era"), 0);
}
