//! The mapping language on shapes real exports have: value maps that map some values and let
//! the rest through, numeric bins (node counts to pN, Ki-67 bands), and the errors
//! `mapping check` gives for a field it cannot use.

use crate::support::{import_json, new_key, text, TestDb};
use std::path::{Path, PathBuf};

fn write(path: &Path, body: &str) -> PathBuf {
    std::fs::write(path, body).unwrap();
    path.to_path_buf()
}

const LABS: &str = r#"
[source]
name = "labs"
format = "csv"
date_formats = ["%Y-%m-%d"]

[person]
identifiers = [{ column = "mrn", type = "mrn" }]

[[emit]]
table = "measurement"
[emit.fields]
measurement_concept_id = { const = 0 }
measurement_source_value = { const = "KI67" }
measurement_date = { column = "date" }
measurement_type_concept_id = { const = 32817 }
# `<1` means below one percent; any other cell is the number itself
value_as_number = { column = "ki67", values = { "<1" = 0.5 }, default = "pass" }
# Ki-67 bands; a cell that is no number ("n/a") leaves the band empty
value_source_value = { column = "ki67", values = { "<1" = "low" }, bins = [[0, 13.99, "low"], [14, 29.99, "intermediate"], [30, 100, "high"]], default = "null" }
# only the recognised statuses; anything else is kept as "other"
unit_source_value = { column = "status", values = { pos = "positive", neg = "negative" }, default = "other" }

[[emit]]
table = "observation"
[emit.fields]
observation_concept_id = { const = 0 }
observation_source_value = { const = "pN" }
observation_date = { column = "date" }
observation_type_concept_id = { const = 32817 }
# positive nodes to pN (TNM 8: 1-3 N1, 4-9 N2, 10 or more N3); "NX" and the like pass
value_source_value = { column = "nodes", bins = [[0, 0, "N0"], [1, 3, "N1"], [4, 9, "N2"], [10, inf, "N3"]], default = "pass" }
"#;

#[test]
fn value_maps_fall_through_and_bins_translate_numbers() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let k = new_key(dir.path(), "k");
    let m = write(&dir.path().join("labs.toml"), LABS);
    let f = write(
        &dir.path().join("labs.csv"),
        "mrn,date,ki67,status,nodes\n\
         L1,2020-01-05,<1,pos,0\n\
         L2,2020-01-05,15,neg,2\n\
         L3,2020-01-05,42.5,unknown,12\n\
         L4,2020-01-05,n/a,pos,NX\n\
         L5,2020-01-05,13.995,,4\n",
    );
    let (code, v, t) = import_json(&db, &k, "csv", &m, &[&f], &[]);
    // L4: `n/a` passes the value map and is no number: that cell rejects its row. L5: 13.995
    // falls between two bins (null band), the rest loads.
    assert_eq!(code, Some(1), "{t}");
    let file = &v["files"][0];
    assert_eq!(
        (file["rows_loaded"].as_i64(), file["rows_rejected"].as_i64()),
        (Some(4), Some(1)),
        "{t}"
    );
    let mut c = db.client();
    let rows: Vec<(Option<f64>, Option<String>, Option<String>)> = c
        .query(
            "SELECT value_as_number::float8, value_source_value, unit_source_value
               FROM cdm.measurement ORDER BY measurement_id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        rows,
        vec![
            (Some(0.5), s("low"), s("positive")),
            (Some(15.0), s("intermediate"), s("negative")),
            (Some(42.5), s("high"), s("other")),
            (Some(13.995), None, None),
        ]
    );
    let pn: Vec<Option<String>> = c
        .query(
            "SELECT value_source_value FROM cdm.observation ORDER BY observation_id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(pn, vec![s("N0"), s("N1"), s("N3"), s("N2")]);
    let (column, code): (String, String) = {
        let r = c
            .query_one(
                "SELECT column_name, reason_code FROM registry.reject WHERE row_number = 4",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((column.as_str(), code.as_str()), ("ki67", "unparseable"));
}

#[test]
fn mapping_check_names_a_bad_bin_or_default_with_its_line() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "bins = [[0, 3, \"N1\"], [3, 9, \"N2\"]]",
            "bin 2 starts at 3, inside or before bin 1",
        ),
        ("bins = [[5, 1, \"x\"]]", "bin 1 must be [low, high, value]"),
        (
            "bins = [[0, \"x\", \"y\"]]",
            "bin 1 must be [low, high, value]",
        ),
        (
            "default = \"pass\"",
            "default applies to a value that values or bins do not translate",
        ),
        (
            "values = { a = \"b\" }, default = \"c\", otherwise = \"d\"",
            "default and otherwise say the same thing",
        ),
    ];
    for (i, (keys, want)) in cases.iter().enumerate() {
        let mapping = format!(
            "[source]\nname = \"t\"\nformat = \"csv\"\n\n[person]\nidentifiers = [{{ column = \"mrn\", type = \"mrn\" }}]\n\n\
             [[emit]]\ntable = \"observation\"\n[emit.fields]\nobservation_concept_id = {{ const = 0 }}\n\
             observation_date = {{ const = \"2020-01-01\" }}\nobservation_type_concept_id = {{ const = 32817 }}\n\
             value_source_value = {{ column = \"v\", {keys} }}\n"
        );
        let m = write(&dir.path().join(format!("m{i}.toml")), &mapping);
        let out = db.registrar(&["mapping", "check", m.to_str().unwrap()]);
        let t = text(&out);
        assert!(!out.status.success(), "{keys}: {t}");
        assert!(t.contains(want), "{keys}: {t}");
        // the field's line in the file
        assert!(t.contains(&format!("m{i}.toml:14")), "{keys}: {t}");
    }
}

/// A cBioPortal clinical file (tab-separated, four `#` header lines, ages and months since
/// diagnosis instead of dates, `NA` among numbers, statuses written `1:DECEASED`).
const CBIO: &str = r#"
[source]
name = "cbio"
format = "csv"
delimiter = "\t"
header_row = 5

[person]
identifiers = [{ column = "PATIENT_ID", type = "study-subject", prefix = "cbio:" }]

[[emit]]
table = "person"
[emit.fields]
gender_concept_id = { const = 8532 }
# the age is in years with decimals: born in the year of diagnosis less the whole years
year_of_birth = { expr = "DX_YEAR - floor(AGE_AT_DIAGNOSIS)" }
race_concept_id = { const = 0 }
ethnicity_concept_id = { const = 0 }

[[emit]]
table = "condition_occurrence"
[emit.fields]
condition_concept_id = { const = 4112853 }
condition_source_value = { const = "C50.9" }
# only the year is known: the middle of it
condition_start_date = { expr = "make_date(DX_YEAR, 7, 1)" }
condition_type_concept_id = { const = 32879 }

[[emit]]
table = "death"
when = "OS_STATUS == '1:DECEASED'"
[emit.fields]
death_date = { expr = "add_days(make_date(DX_YEAR, 7, 1), round(OS_MONTHS * 30.4375))" }
death_type_concept_id = { const = 32879 }

[[emit]]
table = "observation"
when = "starts_with(RFS_STATUS, '1:') and RFS_MONTHS != 'NA'"
[emit.fields]
observation_concept_id = { const = 0 }
observation_source_value = { const = "recurrence" }
observation_date = { expr = "add_days(make_date(DX_YEAR, 7, 1), round(RFS_MONTHS * 30.4375))" }
observation_type_concept_id = { const = 32879 }

[[emit]]
table = "measurement"
# an ER result, coded or as a percentage; "Positve" is how the file spells it
when = "ER_IHC in ['Positive', 'Positve', 'Negative'] or matches(ER_IHC, '^[0-9]+%$')"
[emit.fields]
measurement_concept_id = { const = 0 }
measurement_source_value = { const = "ER" }
measurement_date = { expr = "make_date(DX_YEAR, 7, 1)" }
measurement_type_concept_id = { const = 32879 }
# a percentage is the number; a coded result has none
value_as_number = { expr = "number(capture(ER_IHC, '^([0-9]+)%$'))" }
# 1 % or more is positive (ASCO/CAP)
value_source_value = { expr = "case(@value_as_number >= 1, 'POS', @value_as_number < 1, 'NEG', ER_IHC == 'Negative', 'NEG', 'POS')" }
"#;

#[test]
fn expressions_load_a_cbioportal_file_with_ages_and_months() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let k = new_key(dir.path(), "k");
    let m = write(&dir.path().join("cbio.toml"), CBIO);
    let f = write(
        &dir.path().join("data_clinical_patient.txt"),
        "#Patient Identifier\tAge at Diagnosis\tYear\tOverall Survival (Months)\tOverall Survival Status\tRelapse Free Status (Months)\tRelapse Free Status\tER Status\n\
         #Identifier\tAge\tYear\tMonths\tStatus\tMonths\tStatus\tER\n\
         #STRING\tNUMBER\tNUMBER\tNUMBER\tSTRING\tNUMBER\tSTRING\tSTRING\n\
         #1\t1\t1\t1\t1\t1\t1\t1\n\
         PATIENT_ID\tAGE_AT_DIAGNOSIS\tDX_YEAR\tOS_MONTHS\tOS_STATUS\tRFS_MONTHS\tRFS_STATUS\tER_IHC\n\
         MB-0001\t75.65\t2001\t140.5\t0:LIVING\t138.65\t0:Not Recurred\tPositve\n\
         MB-0002\t43.19\t2003\t84.63\t1:DECEASED\t40.2\t1:Recurred\t80%\n\
         MB-0003\t48.87\t1999\t163.7\t1:DECEASED\tNA\t1:Recurred\tNegative\n\
         MB-0004\t60.1\t2005\tNA\t1:DECEASED\t12\t0:Not Recurred\t0%\n\
         MB-0005\t55\t2002\t10\t0:LIVING\t5\t1:Recurred\tNA\n\
         MB-0006\t50\t2004\t30\t0:LIVING\t30\t0:Not Recurred\t0%\n",
    );
    let (code, v, t) = import_json(&db, &k, "csv", &m, &[&f], &[]);
    // MB-0004 died, but its survival is NA: the death date cannot be computed, the row is
    // rejected (nothing of it is loaded) and says which column.
    assert_eq!(code, Some(1), "{t}");
    let file = &v["files"][0];
    assert_eq!(
        (file["rows_loaded"].as_i64(), file["rows_rejected"].as_i64()),
        (Some(5), Some(1)),
        "{t}"
    );
    let mut c = db.client();
    let r = c
        .query_one(
            "SELECT column_name, field, reason_code, reason FROM registry.reject",
            &[],
        )
        .unwrap();
    let (column, field, code, reason): (String, String, String, String) =
        (r.get(0), r.get(1), r.get(2), r.get(3));
    assert_eq!(
        (column.as_str(), field.as_str(), code.as_str()),
        ("OS_MONTHS", "death.death_date", "unparseable"),
        "{reason}"
    );
    assert!(
        !reason.contains("NA") && reason.contains("`OS_MONTHS`"),
        "{reason}"
    );

    // Years of birth: the diagnosis year less the whole years of age.
    let years: Vec<i32> = c
        .query(
            "SELECT year_of_birth FROM cdm.person ORDER BY year_of_birth",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // (date shifts move dates, not years of birth)
    assert_eq!(years, vec![1926, 1947, 1951, 1954, 1960]);
    // Death and recurrence dates, in days after the (shifted) diagnosis date.
    let after: Vec<(String, i32)> = c
        .query(
            "SELECT 'death', d.death_date - co.condition_start_date
               FROM cdm.death d JOIN cdm.condition_occurrence co USING (person_id)
             UNION ALL
             SELECT 'recurrence', o.observation_date - co.condition_start_date
               FROM cdm.observation o JOIN cdm.condition_occurrence co USING (person_id)
              ORDER BY 1, 2",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // 84.63 and 163.7 months of survival; 40.2 and 5 months to recurrence (MB-0003's NA
    // leaves its recurrence out: the condition does not hold).
    let n = |m: f64| (m * 30.4375_f64).round() as i32;
    assert_eq!(
        after,
        vec![
            ("death".to_string(), n(84.63)),
            ("death".to_string(), n(163.7)),
            ("recurrence".to_string(), n(5.0)),
            ("recurrence".to_string(), n(40.2)),
        ]
    );
    let er: Vec<(Option<f64>, String)> = c
        .query(
            "SELECT value_as_number::float8, value_source_value FROM cdm.measurement
              ORDER BY value_source_value, value_as_number",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // MB-0005's NA is no ER result: no row (and no empty one).
    assert_eq!(
        er,
        vec![
            (Some(0.0), "NEG".to_string()),
            (None, "NEG".to_string()),
            (Some(80.0), "POS".to_string()),
            (None, "POS".to_string()),
        ]
    );
}

#[test]
fn mapping_check_points_at_the_expression_error() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        // (the replacement for line 16's expression, column of the error in the file, message)
        ("DX_YEAR - floor(AGE_AT_DIAGNOSIS", 59, "`)` expected here"),
        ("DX_YEAR - flor(AGE_AT_DIAGNOSIS)", 37, "no function `flor`"),
        ("upper(1)", 33, "text is needed here, but this is a number"),
        ("year(DX_YEAR)", 32, "no date format is declared"),
        ("DX_YEAR = 1", 35, "write `==`"),
    ];
    for (i, (expr, col, want)) in cases.iter().enumerate() {
        let mapping = CBIO.replace("DX_YEAR - floor(AGE_AT_DIAGNOSIS)", expr);
        let m = write(&dir.path().join(format!("m{i}.toml")), &mapping);
        let out = db.registrar(&["mapping", "check", m.to_str().unwrap()]);
        let t = text(&out);
        assert!(!out.status.success(), "{expr}: {t}");
        assert!(t.contains(want), "{expr}: {t}");
        assert!(t.contains(&format!("m{i}.toml:16:{col}:")), "{expr}: {t}");
    }
    // A field that reads the person's identifier, an unknown @field, a type error in a
    // condition, an unknown function in a field that another refers to: all reported, each
    // with its line.
    let mapping = CBIO
        .replace(
            "DX_YEAR - floor(AGE_AT_DIAGNOSIS)",
            "DX_YEAR - length(PATIENT_ID)",
        )
        .replace("OS_STATUS == '1:DECEASED'", "OS_STATUS + 1")
        .replace("@value_as_number >= 1", "@value_as_numbr >= 1")
        .replace("number(capture(", "numbr(capture(");
    let m = write(&dir.path().join("all.toml"), &mapping);
    let out = db.registrar(&["mapping", "check", m.to_str().unwrap()]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    for want in [
        "all.toml:16: `year_of_birth` reads `PATIENT_ID`, a column that identifies the person",
        "all.toml:31:9: emit into cdm.death: when: true or false is needed here, but this is a number",
        "`value_source_value`: this emit has no field `value_as_numbr`",
        "`value_as_number`: no function `numbr`",
    ] {
        assert!(t.contains(want), "{want}: {t}");
    }
    // A refused field is not also reported missing.
    assert!(!t.contains("required column"), "{t}");
    assert!(!t.contains("MB-0"), "{t}");
}

#[test]
fn concept_maps_give_code_strings_and_expressions_feed_them() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let k = new_key(dir.path(), "k");
    write(
        &dir.path().join("histology.csv"),
        "source_code,target_concept_id,target_code,source_code_description\n\
         IDC,4112853,8500/3,invasive ductal carcinoma\n\
         ILC,4112853,8520/3,invasive lobular carcinoma\n\
         DCIS,0,,ductal carcinoma in situ (no ICD-O-3 code kept here)\n",
    );
    let m = write(
        &dir.path().join("histo.toml"),
        r#"
[source]
name = "histo"
format = "csv"
date_formats = ["%Y-%m-%d"]

[person]
identifiers = [{ column = "mrn", type = "mrn" }]

[concept_maps]
histo = "histology.csv"

[[emit]]
table = "condition_occurrence"
[emit.fields]
condition_concept_id = { expr = "upper(split(histo, '-', 1))", lookup = "histo" }
condition_start_date = { column = "date" }
condition_type_concept_id = { const = 32879 }
# the local code's ICD-O-3 morphology, a code string from the same map
condition_source_value = { expr = "upper(split(histo, '-', 1))", lookup = "histo", field = "target_code" }
"#,
    );
    let f = write(
        &dir.path().join("histo.csv"),
        "mrn,date,histo\n\
         H1,2020-01-05,idc-G2\n\
         H2,2020-01-05,ILC\n\
         H3,2020-01-05,DCIS\n\
         H4,2020-01-05,XYZ\n",
    );
    let (code, v, t) = import_json(&db, &k, "csv", &m, &[&f], &[]);
    assert_eq!(code, Some(0), "{t}");
    assert_eq!(v["files"][0]["rows_loaded"].as_i64(), Some(4), "{t}");
    let mut c = db.client();
    let rows: Vec<(i32, Option<String>)> = c
        .query(
            "SELECT condition_concept_id, condition_source_value FROM cdm.condition_occurrence
              ORDER BY condition_occurrence_id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let s = |v: &str| Some(v.to_string());
    // XYZ is unknown to the map: concept 0 and no code, and it is listed as unmapped.
    assert_eq!(
        rows,
        vec![
            (4112853, s("8500/3")),
            (4112853, s("8520/3")),
            (0, None),
            (0, None)
        ]
    );
    let out = db.registrar(&["mapping", "unmapped"]);
    let t = text(&out);
    assert!(t.contains("XYZ"), "{t}");
}

#[test]
fn declared_identifier_types_pseudonymise_like_built_in_ones() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let k = new_key(dir.path(), "k");
    let run = |args: &[&str]| {
        let out = db.registrar(args);
        (out.status.success(), text(&out))
    };
    let (ok, t) = run(&[
        "identifiers",
        "declare",
        "us-ssn",
        "--normalise",
        "digits",
        "--length",
        "9",
        "--description",
        "US social security number",
    ]);
    assert!(ok, "{t}");
    let (ok, t) = run(&[
        "identifiers",
        "declare",
        "ca-sin",
        "--normalise",
        "digits",
        "--length",
        "9",
        "--check-digit",
        "luhn",
    ]);
    assert!(ok, "{t}");
    // The same rules again change nothing; other rules under the name are refused, and so
    // is a check digit on text, a built-in name, or an unknown normalisation.
    assert!(
        run(&[
            "identifiers",
            "declare",
            "us-ssn",
            "--normalise",
            "digits",
            "--length",
            "9"
        ])
        .0
    );
    for (args, want) in [
        (
            vec!["us-ssn", "--normalise", "trim", "--length", "9"],
            "already declared with other rules",
        ),
        (
            vec![
                "x-id",
                "--normalise",
                "upper",
                "--length",
                "9",
                "--check-digit",
                "luhn",
            ],
            "needs `digits`",
        ),
        (
            vec!["mrn", "--normalise", "upper", "--length", "9"],
            "built-in",
        ),
        (
            vec!["x-id", "--normalise", "soundex", "--length", "9"],
            "unknown normalisation",
        ),
    ] {
        let mut a = vec!["identifiers", "declare"];
        a.extend(args);
        let (ok, t) = run(&a);
        assert!(!ok && t.contains(want), "{want}: {t}");
    }
    let (ok, t) = run(&["identifiers", "list"]);
    assert!(
        ok && t.contains("us-ssn (digits, 9 characters): US social security number"),
        "{t}"
    );
    assert!(
        t.contains("ca-sin (digits, 9 characters, luhn check)"),
        "{t}"
    );
    // Rows are never changed once declared.
    let mut c = db.client();
    assert!(c
        .execute(
            "UPDATE registry.identifier_type SET normalisation = 'trim'",
            &[]
        )
        .is_err());

    let m = write(
        &dir.path().join("ssn.toml"),
        r#"
[source]
name = "us-site"
format = "csv"
date_formats = ["%Y-%m-%d"]

[person]
identifiers = [{ column = "ssn", type = "us-ssn" }, { column = "sin", type = "ca-sin" }]

[[emit]]
table = "condition_occurrence"
[emit.fields]
condition_concept_id = { const = 4112853 }
condition_start_date = { column = "date" }
condition_type_concept_id = { const = 32879 }
"#,
    );
    let f = write(
        &dir.path().join("ssn.csv"),
        "ssn,sin,date\n\
         123-45-6789,,2020-01-05\n\
         123456789,046 454 286,2021-01-05\n\
         12345,,2020-01-05\n\
         ,046 454 287,2020-01-05\n",
    );
    let (code, v, t) = import_json(&db, &k, "csv", &m, &[&f], &[]);
    assert_eq!(code, Some(1), "{t}");
    let file = &v["files"][0];
    assert_eq!(
        (file["rows_loaded"].as_i64(), file["rows_rejected"].as_i64()),
        (Some(2), Some(2)),
        "{t}"
    );
    // Both spellings of one SSN are one person; the SIN joins them.
    assert_eq!(
        db.count("SELECT count(DISTINCT person_id) FROM cdm.condition_occurrence"),
        1
    );
    let reasons: Vec<String> = c
        .query(
            "SELECT reason FROM registry.reject ORDER BY row_number",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        reasons[0].contains("not a valid us-ssn (length)"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].contains("not a valid ca-sin (check digit)"),
        "{reasons:?}"
    );
    assert!(
        !reasons
            .iter()
            .any(|r| r.contains("12345") || r.contains("046")),
        "{reasons:?}"
    );
    // The person map says which type each pseudonym is of.
    let types: Vec<String> = c
        .query(
            "SELECT identifier_type FROM registry.person_map ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(types, vec!["ca-sin", "us-ssn"]);
    // An undeclared type is named with the ones the registry knows.
    let bad = write(
        &dir.path().join("bad.toml"),
        &std::fs::read_to_string(&m)
            .unwrap()
            .replace("\"ca-sin\"", "\"uk-nhs\""),
    );
    let (ok, t) = run(&["mapping", "check", bad.to_str().unwrap()]);
    assert!(!ok, "{t}");
    assert!(t.contains("unknown identifier type `uk-nhs` (the registry knows niss, mrn, study-subject, ca-sin, us-ssn"), "{t}");
    // Re-identification by recomputation knows the declared types too.
    let lookup = |ty: &str, id: &str| {
        let out = db.registrar(&[
            "--json",
            "--key-file",
            k.to_str().unwrap(),
            "pseudonym",
            "lookup",
            "--type",
            ty,
            "--identifier",
            id,
            "--why",
            "test of a declared type",
        ]);
        (out.status.success(), text(&out), out.stdout)
    };
    let (ok, t, stdout) = lookup("us-ssn", "123 45 6789");
    assert!(ok, "{t}");
    let v: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(
        v["person_id"].as_i64(),
        Some(db.count("SELECT min(person_id)::bigint FROM cdm.condition_occurrence")),
        "{t}"
    );
    let (ok, t, _) = lookup("uk-nhs", "943 476 5919");
    assert!(!ok, "{t}");
    assert!(
        t.contains("unknown identifier type `uk-nhs` (the registry knows niss, mrn, study-subject, ca-sin, us-ssn") && !t.contains("5919"),
        "{t}"
    );
}
