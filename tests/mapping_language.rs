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
