//! The migrated schema against the OMOP CDM 5.4 column list, the diesel definitions against
//! the migrated catalog, and up/down/up reversibility.

use crate::support::{repo_file, TestDb};
use std::collections::BTreeMap;

/// (table, column) -> (type as in the TSV, nullable, pk)
type Spec = BTreeMap<(String, String), (String, bool, bool)>;

fn tsv_spec() -> Spec {
    let text = std::fs::read_to_string(repo_file("tests/data/cdm54_columns.tsv")).unwrap();
    let mut spec = Spec::new();
    for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        spec.insert(
            (f[0].to_string(), f[1].to_string()),
            (f[2].to_string(), f[3] == "NULL", f[4] == "PK"),
        );
    }
    spec
}

fn db_spec(db: &TestDb) -> Spec {
    let mut c = db.client();
    let rows = c
        .query(
            "SELECT c.relname::text, a.attname::text,
                    format_type(a.atttypid, a.atttypmod),
                    NOT a.attnotnull,
                    EXISTS (SELECT 1 FROM pg_constraint k
                             WHERE k.conrelid = c.oid AND k.contype = 'p'
                               AND a.attnum = ANY (k.conkey))
               FROM pg_attribute a
               JOIN pg_class c ON c.oid = a.attrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'cdm' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped",
            &[],
        )
        .unwrap();
    rows.iter()
        .map(|r| {
            let ty: String = r.get(2);
            // Normalise PostgreSQL's spelling to the DDL's.
            let ty = ty
                .replace("character varying", "varchar")
                .replace("timestamp without time zone", "timestamp");
            ((r.get(0), r.get(1)), (ty, r.get(3), r.get(4)))
        })
        .collect()
}

#[test]
fn cdm_schema_conforms_to_omop_cdm_54_column_by_column() {
    let db = TestDb::new();
    let want = tsv_spec();
    let got = db_spec(&db);
    let tables: std::collections::BTreeSet<_> = want.keys().map(|(t, _)| t.clone()).collect();
    assert_eq!(
        tables.len(),
        41,
        "39 CDM tables plus image_occurrence and image_feature"
    );
    let mut problems = Vec::new();
    for (k, w) in &want {
        match got.get(k) {
            None => problems.push(format!("missing column cdm.{}.{}", k.0, k.1)),
            Some(g) if g != w => problems.push(format!(
                "cdm.{}.{}: want (type {}, nullable {}, pk {}), got (type {}, nullable {}, pk {})",
                k.0, k.1, w.0, w.1, w.2, g.0, g.1, g.2
            )),
            _ => {}
        }
    }
    for k in got.keys().filter(|k| !want.contains_key(*k)) {
        problems.push(format!("unexpected column cdm.{}.{}", k.0, k.1));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn conformance_check_catches_a_mistyped_or_missing_column() {
    // The comparison above must fail when the schema drifts: break a copy and compare again.
    let db = TestDb::new();
    let mut c = db.client();
    c.batch_execute(
        "DROP SCHEMA research CASCADE;
         ALTER TABLE cdm.measurement ALTER COLUMN value_as_number TYPE integer;
         ALTER TABLE cdm.person DROP COLUMN ethnicity_source_value;
         ALTER TABLE cdm.episode ALTER COLUMN episode_end_date SET NOT NULL;",
    )
    .unwrap();
    let want = tsv_spec();
    let got = db_spec(&db);
    let m = ("measurement".to_string(), "value_as_number".to_string());
    assert_ne!(want[&m], got[&m]);
    assert!(!got.contains_key(&("person".into(), "ethnicity_source_value".into())));
    let e = ("episode".to_string(), "episode_end_date".to_string());
    assert_ne!(want[&e], got[&e]);
}

#[test]
fn diesel_definitions_match_the_migrated_catalog() {
    let db = TestDb::new();
    let mut c = db.client();
    let rows = c
        .query(
            "SELECT n.nspname::text, c.relname::text, a.attname::text, t.typname::text, NOT a.attnotnull
               FROM pg_attribute a
               JOIN pg_class c ON c.oid = a.attrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_type t ON t.oid = a.atttypid
              WHERE n.nspname IN ('cdm', 'registry') AND c.relkind = 'r'
                AND a.attnum > 0 AND NOT a.attisdropped",
            &[],
        )
        .unwrap();
    let catalog: BTreeMap<(String, String, String), (String, bool)> = rows
        .iter()
        .map(|r| ((r.get(0), r.get(1), r.get(2)), (r.get(3), r.get(4))))
        .collect();
    let mut described = Vec::new();
    for col in registrar_schema::cdm_columns::columns() {
        described.push(("cdm", col));
    }
    for col in registrar_schema::registry::columns() {
        described.push(("registry", col));
    }
    let mut problems = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (schema, col) in &described {
        let key = (
            schema.to_string(),
            col.table.to_string(),
            col.column.to_string(),
        );
        seen.insert(key.clone());
        match catalog.get(&key) {
            None => problems.push(format!(
                "diesel column {schema}.{}.{} not in database",
                col.table, col.column
            )),
            Some((typname, nullable)) => {
                let type_ok =
                    typname == col.pg_type || (col.pg_type == "text" && typname == "varchar");
                if !type_ok || *nullable != col.nullable {
                    problems.push(format!(
                        "{schema}.{}.{}: diesel says {} nullable={}, database has {} nullable={}",
                        col.table, col.column, col.pg_type, col.nullable, typname, nullable
                    ));
                }
            }
        }
    }
    for k in catalog.keys().filter(|k| !seen.contains(*k)) {
        problems.push(format!(
            "database column {}.{}.{} has no diesel definition",
            k.0, k.1, k.2
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Everything that makes up the schemas, as text, for comparison.
fn catalog_snapshot(db: &TestDb) -> Vec<String> {
    let mut c = db.client();
    let q = "
        SELECT 'col ' || table_schema || '.' || table_name || '.' || column_name || ' ' || data_type
               || coalesce('(' || character_maximum_length || ')', '') || ' ' || is_nullable
               || ' ' || coalesce(column_default, '')
          FROM information_schema.columns WHERE table_schema IN ('cdm','registry','research','mart')
        UNION ALL
        SELECT 'idx ' || schemaname || '.' || indexname || ' ' || indexdef
          FROM pg_indexes WHERE schemaname IN ('cdm','registry','research','mart')
        UNION ALL
        SELECT 'con ' || n.nspname || '.' || conname || ' ' || pg_get_constraintdef(k.oid)
          FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace
         WHERE n.nspname IN ('cdm','registry','research','mart')
        UNION ALL
        SELECT 'seq ' || sequence_schema || '.' || sequence_name || ' ' || data_type
          FROM information_schema.sequences WHERE sequence_schema IN ('cdm','registry','research','mart')
        UNION ALL
        SELECT 'trg ' || event_object_schema || '.' || trigger_name || ' ' || event_manipulation
          FROM information_schema.triggers WHERE event_object_schema IN ('cdm','registry','research','mart')
        UNION ALL
        SELECT 'fn ' || n.nspname || '.' || p.proname || ' ' || md5(p.prosrc)
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname IN ('cdm','registry','research','mart')
        UNION ALL
        SELECT 'view ' || schemaname || '.' || viewname || ' ' || md5(definition)
          FROM pg_views WHERE schemaname IN ('cdm','registry','research','mart')
        UNION ALL
        SELECT 'schema ' || nspname FROM pg_namespace WHERE nspname IN ('cdm','registry','research','mart')
        ORDER BY 1";
    c.query(q, &[]).unwrap().iter().map(|r| r.get(0)).collect()
}

#[test]
fn migrations_up_down_up_leave_the_same_schema() {
    let db = TestDb::empty();
    let mut conn = db.target.diesel().unwrap();
    registrar_etl::db::migrate(&mut conn).unwrap();
    let first = catalog_snapshot(&db);
    assert!(
        first.len() > 500,
        "schema looks incomplete: {} catalog items",
        first.len()
    );
    registrar_etl::db::revert_all(&mut conn).unwrap();
    let empty = catalog_snapshot(&db);
    assert!(empty.is_empty(), "down migrations left: {empty:?}");
    registrar_etl::db::migrate(&mut conn).unwrap();
    let again = catalog_snapshot(&db);
    assert_eq!(first, again);
}

#[test]
fn researchers_indexes_exist() {
    let db = TestDb::new();
    for (table, column) in [
        ("measurement", "person_id"),
        ("measurement", "measurement_concept_id"),
        ("measurement", "measurement_date"),
        ("condition_occurrence", "condition_concept_id"),
        ("episode", "episode_start_date"),
        ("image_feature", "image_occurrence_id"),
        ("concept", "concept_code"),
    ] {
        let n = db.count(&format!(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = 'cdm' AND tablename = '{table}'
               AND indexdef LIKE '%({column})%'"
        ));
        assert!(n >= 1, "no index on cdm.{table}({column})");
    }
}

/// The cdm schema stays distributable on Citus (scripts/citus-distribute.sql): no foreign
/// keys, triggers or extra unique constraints on cdm tables (Citus needs every unique
/// constraint of a distributed table to contain person_id), and the script decides for
/// every cdm table how it is distributed, dropping exactly the primary keys the catalog has.
#[test]
fn cdm_schema_stays_distributable_on_citus() {
    let db = TestDb::new();
    let mut c = db.client();
    let q = |c: &mut postgres::Client, sql: &str| -> Vec<String> {
        c.query(sql, &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let blockers = q(
        &mut c,
        "SELECT format('%s on %s', k.conname, k.conrelid::regclass) FROM pg_constraint k
           JOIN pg_class t ON t.oid = k.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
          WHERE n.nspname = 'cdm' AND k.contype IN ('f', 'u', 'x')
         UNION ALL
         SELECT format('trigger %s on %s', g.tgname, g.tgrelid::regclass) FROM pg_trigger g
           JOIN pg_class t ON t.oid = g.tgrelid JOIN pg_namespace n ON n.oid = t.relnamespace
          WHERE n.nspname = 'cdm' AND NOT g.tgisinternal",
    );
    assert!(blockers.is_empty(), "not distributable: {blockers:?}");

    let script = std::fs::read_to_string(repo_file("scripts/citus-distribute.sql")).unwrap();
    let handled = |t: &str| {
        [
            "create_reference_table",
            "create_distributed_table",
            "citus_add_local_table_to_metadata",
        ]
        .iter()
        .filter(|f| script.contains(&format!("SELECT {f}('cdm.{t}'")))
        .count()
    };
    let tables = q(
        &mut c,
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'cdm' ORDER BY 1",
    );
    assert_eq!(tables.len(), 41);
    for t in &tables {
        assert_eq!(
            handled(t),
            1,
            "cdm.{t}: distribute, replicate or keep local, once"
        );
    }
    // Every table with a person_id is distributed by it, co-located with cdm.person, with its
    // primary key (as the catalog names it) widened to contain person_id.
    let person_tables = q(
        &mut c,
        "SELECT table_name::text FROM information_schema.columns
          WHERE table_schema = 'cdm' AND column_name = 'person_id' ORDER BY 1",
    );
    for t in &person_tables {
        let call = if t == "person" {
            "SELECT create_distributed_table('cdm.person', 'person_id');".to_string()
        } else {
            format!(
                "SELECT create_distributed_table('cdm.{t}', 'person_id', colocate_with => 'cdm.person');"
            )
        };
        assert!(
            script.contains(&call),
            "cdm.{t} is not distributed by person_id"
        );
        let pk = c
            .query_opt(
                "SELECT k.conname::text, a.attname::text FROM pg_constraint k
                   JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
                  WHERE k.conrelid = ('cdm.' || $1)::regclass AND k.contype = 'p'",
                &[t],
            )
            .unwrap();
        if let Some(pk) = pk {
            let (name, col): (String, String) = (pk.get(0), pk.get(1));
            if col != "person_id" {
                let widen = format!(
                    "ALTER TABLE cdm.{t} DROP CONSTRAINT {name}, ADD CONSTRAINT {name} PRIMARY KEY (person_id, {col});"
                );
                assert!(script.contains(&widen), "missing: {widen}");
            }
        }
    }
}
