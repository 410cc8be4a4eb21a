//! Roles: researchers see the curated views only; auditors the audit log only.

use crate::support::{text, TestDb};

#[test]
fn researchers_read_views_only_and_auditors_the_audit_log_only() {
    let db = TestDb::new();
    let out = db.registrar(&["roles", "apply"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = db.registrar(&["roles", "apply"]);
    assert!(out.status.success(), "idempotent: {}", text(&out));
    let dbname = db.target.dbname();
    let (alice, bob) = (format!("{dbname}_alice"), format!("{dbname}_bob"));
    let mut admin = db.client();
    admin
        .batch_execute(&format!(
            "CREATE ROLE {alice} LOGIN; GRANT registrar_researcher TO {alice};
             CREATE ROLE {bob} LOGIN; GRANT registrar_auditor TO {bob};"
        ))
        .unwrap();
    let mut r = db.connect_as(&alice);
    for ok in [
        "SELECT count(*) FROM research.modeling_cohort",
        "SELECT count(*) FROM research.subtype",
        // the marts behind the views (the same rows; what Citus's workers check)
        "SELECT count(*) FROM mart.modeling_cohort",
    ] {
        r.query(ok, &[]).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for denied in [
        "SELECT * FROM registry.person_map",
        "SELECT * FROM registry.audit_log",
        "SELECT * FROM registry.lineage",
        "SELECT * FROM registry.reject",
        "SELECT * FROM cdm.person",
        // the marts' sources and bookkeeping, and writes to a mart
        "SELECT * FROM mart.modeling_cohort_src",
        "SELECT * FROM mart.refresh_state",
        "DELETE FROM mart.modeling_cohort",
        "SELECT mart.refresh(true)",
        "INSERT INTO cdm.person (person_id, gender_concept_id, year_of_birth, race_concept_id, ethnicity_concept_id) VALUES (1, 0, 1, 0, 0)",
        "CREATE TABLE research.mine (x int)",
        "CREATE TABLE public.mine (x int)",
    ] {
        let e = r.batch_execute(denied).expect_err(denied);
        assert!(format!("{e:?}").contains("permission denied"), "{denied}: {e:?}");
    }
    let mut a = db.connect_as(&bob);
    a.query("SELECT count(*) FROM registry.audit_log", &[])
        .unwrap();
    for denied in [
        "SELECT * FROM registry.person_map",
        "SELECT * FROM cdm.person",
        "SELECT * FROM research.subtype",
        "DELETE FROM registry.audit_log",
    ] {
        assert!(a.batch_execute(denied).is_err(), "{denied}");
    }
    // Optionally researchers may read cdm.
    let out = db.registrar(&["roles", "apply", "--researcher-reads-cdm"]);
    assert!(out.status.success(), "{}", text(&out));
    r.query("SELECT count(*) FROM cdm.person", &[]).unwrap();
    assert!(r
        .batch_execute("SELECT * FROM registry.person_map")
        .is_err());
    drop((r, a));
    admin
        .batch_execute(&format!(
            "DROP OWNED BY {alice}, {bob}; DROP ROLE {alice}; DROP ROLE {bob};"
        ))
        .unwrap();
}

/// A researcher and the federation role can neither stop a night nor hold up an audit append
/// (every lock registrar takes needs write privileges they lack), and the ETL role cannot
/// write an audit entry of its own making: it has no INSERT, and the one function it may call
/// computes seq, time, role and hash itself.
#[test]
fn no_reader_can_block_a_night_and_the_etl_role_cannot_forge_the_audit_log() {
    use crate::support::{new_key, nightly, nightly_config, synth};
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let src = synth(dir.path(), 20, 3, 0.0);
    let key = new_key(dir.path(), "k");
    let cfg = nightly_config(&db, dir.path(), &src, &key);
    let out = nightly(&cfg);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = db.registrar(&["roles", "apply"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = db.registrar(&["federation", "publish"]);
    assert!(out.status.success(), "{}", text(&out));
    let dbname = db.target.dbname();
    let (res, etl) = (format!("{dbname}_res"), format!("{dbname}_etl"));
    let mut admin = db.client();
    admin
        .batch_execute(&format!(
            "CREATE ROLE {res} LOGIN; GRANT registrar_researcher TO {res};
             CREATE ROLE {etl} LOGIN; GRANT registrar_etl TO {etl};"
        ))
        .unwrap();

    // The researcher and the federation role try every lock they can think of, and hold
    // their transactions open.
    let mut r = db.connect_as(&res);
    let mut f = db.connect_as("registrar_federation");
    for (i, c) in [&mut r, &mut f].into_iter().enumerate() {
        c.batch_execute("BEGIN").unwrap();
        for attempt in [
            "LOCK TABLE registry.run_lock IN EXCLUSIVE MODE NOWAIT",
            "LOCK TABLE registry.audit_log IN EXCLUSIVE MODE NOWAIT",
            "LOCK TABLE registry.person_map IN SHARE ROW EXCLUSIVE MODE NOWAIT",
            "LOCK TABLE public.__diesel_schema_migrations IN SHARE UPDATE EXCLUSIVE MODE NOWAIT",
        ] {
            c.batch_execute("SAVEPOINT s").unwrap();
            let e = c.batch_execute(attempt).expect_err(attempt);
            assert!(
                format!("{e:?}").contains("permission denied"),
                "{attempt}: {e:?}"
            );
            c.batch_execute("ROLLBACK TO SAVEPOINT s").unwrap();
        }
        // Advisory locks are still open to every login, but registrar no longer uses any.
        let first = 1 + 64 * i as i64;
        c.execute(
            "SELECT pg_advisory_lock(x) FROM generate_series($1::int8, $1 + 63) x",
            &[&first],
        )
        .unwrap();
    }
    f.query("SELECT federation.cohort_summary('modeling_cohort')", &[])
        .unwrap();

    // The night runs (new files force a full import unit, person map and audit appends).
    std::fs::create_dir_all(src.join("his/late")).unwrap();
    std::fs::copy(
        src.join("his/patients.csv"),
        src.join("his/late/patients.csv"),
    )
    .unwrap();
    let heads = db.count("SELECT max(seq) FROM registry.audit_log");
    let out = nightly(&cfg);
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "{}",
        text(&out)
    );
    assert!(db.count("SELECT max(seq) FROM registry.audit_log") > heads);
    drop((r, f));

    // The ETL role: no INSERT, no lock; appends through the function get the seq, time and
    // role the database gives them.
    let mut e = db.connect_as(&etl);
    let head = db.count("SELECT max(seq) FROM registry.audit_log");
    for denied in [
        format!(
            "INSERT INTO registry.audit_log SELECT {}, now(), 'privacy-officer', 'postgres', \
             'lookup', NULL, NULL, NULL, '{{}}', repeat('0', 64), repeat('a', 64)",
            head + 1000
        ),
        "LOCK TABLE registry.audit_log IN EXCLUSIVE MODE".to_string(),
        "DELETE FROM registry.audit_log".to_string(),
        "TRUNCATE registry.audit_log".to_string(),
    ] {
        let err = e
            .batch_execute(&format!("BEGIN; {denied}"))
            .expect_err(&denied);
        assert!(
            format!("{err:?}").contains("permission denied"),
            "{denied}: {err:?}"
        );
        e.batch_execute("ROLLBACK").unwrap();
    }
    let row = e
        .query_one(
            "SELECT seq FROM registry.audit_append('lookup', NULL, NULL, NULL, '{}', 'privacy-officer')",
            &[],
        )
        .unwrap();
    let seq: i64 = row.get(0);
    assert_eq!(seq, head + 1);
    let role: String = admin
        .query_one(
            "SELECT actor_db_role FROM registry.audit_log WHERE seq = $1",
            &[&seq],
        )
        .unwrap()
        .get(0);
    assert_eq!(role, etl, "the entry names the login that wrote it");
    let out = db.registrar(&["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out));
    drop(e);

    // PUBLIC can no longer connect or make temporary objects; registrar's roles can connect.
    let stranger = format!("{dbname}_stranger");
    admin
        .batch_execute(&format!("CREATE ROLE {stranger} LOGIN"))
        .unwrap();
    let err = match postgres::Client::connect(&db.url_as(&stranger), postgres::NoTls) {
        Ok(_) => panic!("a login without a registrar role connected"),
        Err(e) => e,
    };
    assert!(format!("{err:?}").contains("permission denied"), "{err:?}");
    let mut r = db.connect_as(&res);
    let err = r
        .batch_execute("CREATE TEMP TABLE t (x int)")
        .expect_err("no TEMP");
    assert!(format!("{err:?}").contains("permission denied"), "{err:?}");
    let err = r
        .batch_execute(
            "CREATE FUNCTION pg_temp.leak(text) RETURNS bool LANGUAGE sql AS 'SELECT true'",
        )
        .expect_err("no temporary functions");
    assert!(format!("{err:?}").contains("permission denied"), "{err:?}");
    drop(r);
    // Every research view is a security barrier.
    let leaky = db.count(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'research' AND c.relkind = 'v'
            AND NOT coalesce(c.reloptions @> ARRAY['security_barrier=true'], false)",
    );
    assert_eq!(leaky, 0);
    admin
        .batch_execute(&format!(
            "DROP OWNED BY {res}, {etl}, {stranger}; DROP ROLE {res}; DROP ROLE {etl}; DROP ROLE {stranger};"
        ))
        .unwrap();
}

/// A researcher's function in a WHERE clause sees only the rows a research view shows (the
/// views are security barriers): here the series UIDs of a CT the structure-set view hides.
#[test]
fn a_leaky_function_sees_no_row_a_research_view_hides() {
    let db = TestDb::new();
    let out = db.registrar(&["roles", "apply"]);
    assert!(out.status.success(), "{}", text(&out));
    let dbname = db.target.dbname();
    let res = format!("{dbname}_leaky");
    let mut admin = db.client();
    admin
        .batch_execute(&format!(
            "CREATE ROLE {res} LOGIN; GRANT registrar_researcher TO {res};
             INSERT INTO cdm.image_occurrence (image_occurrence_id, person_id, procedure_occurrence_id,
                    image_occurrence_date, image_study_uid, image_series_uid, modality_concept_id)
             VALUES (1, 7, 1, DATE '2020-01-01', '1.2.3', 'HIDDEN-CT-SERIES', 0),
                    (2, 7, 1, DATE '2020-01-01', '1.2.3', 'VISIBLE-RS-SERIES', 0);
             INSERT INTO cdm.image_feature (image_feature_id, person_id, image_occurrence_id,
                    image_feature_concept_id, image_feature_type_concept_id, alg_system)
             VALUES (1, 7, 2, {roi}, 32817, '{{\"kind\":\"rtstruct-roi\",\"roi_name\":\"CTV\"}}');
             ANALYZE cdm.image_occurrence, cdm.image_feature;
             SELECT mart.refresh(true);
             CREATE FUNCTION public.leak(text) RETURNS boolean LANGUAGE plpgsql COST 0.0000001
                 AS $$ BEGIN RAISE NOTICE 'saw %', $1; RETURN true; END $$;
             GRANT EXECUTE ON FUNCTION public.leak(text) TO {res};",
            roi = registrar_etl::vocab::local::RT_STRUCTURE_ROI
        ))
        .unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = seen.clone();
    let mut config: postgres::Config = db.url_as(&res).parse().unwrap();
    config.notice_callback(move |n| sink.lock().unwrap().push(n.message().to_string()));
    let mut r = config.connect(postgres::NoTls).unwrap();
    let rows = r
        .query(
            "SELECT structure_set_series_uid FROM research.rt_structure_set
              WHERE leak(structure_set_series_uid)",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), 1);
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(|s| s.contains("VISIBLE-RS-SERIES")),
        "{seen:?}"
    );
    assert!(!seen.iter().any(|s| s.contains("HIDDEN")), "{seen:?}");
    drop(r);
    admin
        .batch_execute(&format!(
            "DROP FUNCTION public.leak(text); DROP OWNED BY {res}; DROP ROLE {res};"
        ))
        .unwrap();
}
