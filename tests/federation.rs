//! Federated cohorts: three registries answer with aggregates only; the coordinator pools them.

use crate::support::{import_hospital, new_key, registrar_cmd, synth_institution, text, TestDb};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const FEDERATION: &str = "registrar_federation";

type Key = BTreeMap<String, String>;

/// The stratifying categories of one patient of research.modeling_cohort, computed here
/// independently of the SQL function.
fn patient_categories(db: &TestDb) -> (Vec<Key>, Vec<i32>) {
    let mut c = db.client();
    let rows = c
        .query(
            "SELECT subtype, age_at_diagnosis, diagnosis_year, neoadjuvant, pcr, rfs_event
               FROM research.modeling_cohort",
            &[],
        )
        .unwrap();
    let mut out = Vec::new();
    let mut ages = Vec::new();
    for r in rows {
        let subtype: Option<String> = r.get(0);
        let age: Option<i32> = r.get(1);
        let year: Option<i32> = r.get(2);
        let neo: Option<bool> = r.get(3);
        let pcr: Option<bool> = r.get(4);
        let event: Option<bool> = r.get(5);
        ages.extend(age);
        let age_band = match age {
            None => "unknown",
            Some(a) if a < 40 => "<40",
            Some(a) if a < 50 => "40-49",
            Some(a) if a < 60 => "50-59",
            Some(a) if a < 70 => "60-69",
            Some(_) => "70+",
        };
        let pcr = match (neo.unwrap_or(false), pcr) {
            (false, _) => "no neoadjuvant",
            (true, Some(true)) => "pCR",
            (true, Some(false)) => "non-pCR",
            (true, None) => "unknown",
        };
        let recurrence = match event {
            Some(true) => "event",
            Some(false) => "no event",
            None => "unknown",
        };
        out.push(Key::from([
            (
                "subtype".into(),
                subtype.unwrap_or_else(|| "unknown".into()),
            ),
            ("age_band".into(), age_band.into()),
            (
                "diagnosis_year".into(),
                year.map(|y| y.to_string())
                    .unwrap_or_else(|| "unknown".into()),
            ),
            ("pcr".into(), pcr.into()),
            ("recurrence".into(), recurrence.into()),
        ]));
    }
    (out, ages)
}

fn key_of(v: &Value) -> Key {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

fn count_matching(patients: &[Key], key: &Key) -> i64 {
    patients
        .iter()
        .filter(|p| key.iter().all(|(d, v)| p.get(d) == Some(v)))
        .count() as i64
}

/// Every published count is 0 or at least `min`, and no group tied by a published sum holds
/// exactly one suppressed cell; returns the number of suppressed cells.
fn check_disclosure_control(summary: &Value, min: i64) -> usize {
    let tables = summary["tables"].as_array().unwrap();
    let mut suppressed: BTreeMap<Key, bool> = BTreeMap::new();
    for t in tables {
        for c in t["cells"].as_array().unwrap() {
            let s = c["suppressed"].as_bool().unwrap();
            if !s {
                let n = c["n"].as_i64().unwrap();
                assert!(n == 0 || n >= min, "published small cell {c} (min {min})");
            } else {
                assert!(c["n"].is_null(), "a suppressed cell carries its count: {c}");
            }
            suppressed.insert(key_of(&c["key"]), s);
        }
    }
    let mut groups: Vec<Vec<Key>> = Vec::new();
    for t in tables {
        let dims: Vec<String> = t["dimensions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_string())
            .collect();
        let keys: Vec<Key> = t["cells"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| key_of(&c["key"]))
            .collect();
        match dims.len() {
            0 => {}
            1 => {
                let mut g = keys.clone();
                g.push(Key::new());
                groups.push(g);
            }
            2 => {
                for d in &dims {
                    let values: std::collections::BTreeSet<&String> =
                        keys.iter().map(|k| &k[d]).collect();
                    for v in values {
                        let mut g: Vec<Key> = keys.iter().filter(|k| &k[d] == v).cloned().collect();
                        g.push(Key::from([(d.clone(), v.clone())]));
                        groups.push(g);
                    }
                }
            }
            _ => panic!("unexpected table {t}"),
        }
    }
    for g in &groups {
        let n = g.iter().filter(|k| suppressed[*k]).count();
        assert_ne!(
            n, 1,
            "group {g:?} has exactly one suppressed cell: recoverable"
        );
    }
    suppressed.values().filter(|s| **s).count()
}

fn summary_as_federation(db: &TestDb, cohort: &str) -> Value {
    let mut c = db.connect_as(FEDERATION);
    let t: String = c
        .query_one("SELECT federation.cohort_summary($1)::text", &[&cohort])
        .unwrap()
        .get(0);
    serde_json::from_str(&t).unwrap()
}

/// `registrar federation publish` on `db`.
fn publish(db: &TestDb) -> Value {
    let out = db.registrar(&["--json", "federation", "publish"]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)))
}

fn write_nodes(path: &Path, nodes: &[(&str, String)]) {
    let mut t = String::new();
    for (id, url) in nodes {
        t.push_str(&format!(
            "[[node]]\nid = \"{id}\"\nurl = \"{url}\"\nconnect_timeout = 3\n\n"
        ));
    }
    std::fs::write(path, t).unwrap();
}

fn federate(args: &[&str]) -> (Option<i32>, Value) {
    let out = registrar_cmd().arg("federate").args(args).output().unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)));
    (out.status.code(), v)
}

fn status_of<'a>(pooled: &'a Value, node: &str) -> &'a str {
    pooled["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == node)
        .unwrap_or_else(|| panic!("node {node} missing in {pooled}"))["status"]
        .as_str()
        .unwrap()
}

#[test]
fn three_registries_pool_to_the_pooled_counts_and_failures_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "registry.key");
    let specs = [("ghent", 11, 1), ("leuven", 22, 5001), ("lille", 33, 9001)];
    let mut nodes = Vec::new();
    for (id, seed, first) in specs {
        let db = TestDb::new();
        let src = synth_institution(&dir.path().join(id), 120, seed, 0.0, id, first);
        import_hospital(&db, &key, &src);
        let out = db.registrar(&["roles", "apply"]);
        assert!(out.status.success(), "{}", text(&out));
        let out = db.registrar(&["federation", "configure", "--node-id", id]);
        assert!(out.status.success(), "{}", text(&out));
        publish(&db);
        nodes.push((id, db));
    }

    // A coordinator asks the three nodes as registrar_federation, plus one that is down.
    let nodes_toml = dir.path().join("nodes.toml");
    let mut entries: Vec<(&str, String)> = nodes
        .iter()
        .map(|(id, db)| (*id, db.url_as(FEDERATION)))
        .collect();
    entries.push((
        "stopped",
        format!("postgresql://{FEDERATION}@127.0.0.1:1/registry"),
    ));
    write_nodes(&nodes_toml, &entries);
    let nodes_arg = nodes_toml.to_str().unwrap();
    let (code, pooled) = federate(&[
        "--nodes",
        nodes_arg,
        "--cohort",
        "modeling_cohort",
        "--format",
        "json",
    ]);
    assert_eq!(code, Some(1), "a node is down: exit 1\n{pooled:#}");
    assert_eq!(status_of(&pooled, "stopped"), "unavailable");
    for (id, _) in &nodes {
        assert_eq!(status_of(&pooled, id), "answered");
    }
    assert_eq!(pooled["pooled_nodes"], json!(["ghent", "leuven", "lille"]));

    // Every published count equals the count computed here from the rows; pooled sums equal
    // the pooled rows wherever no node suppressed the cell.
    let per_node: Vec<(Vec<Key>, Vec<i32>)> =
        nodes.iter().map(|(_, db)| patient_categories(db)).collect();
    let all: Vec<Key> = per_node.iter().flat_map(|(p, _)| p.clone()).collect();
    let mut complete_cells = 0;
    let mut incomplete_cells = 0;
    for t in pooled["tables"].as_array().unwrap() {
        for c in t["cells"].as_array().unwrap() {
            let k = key_of(&c["key"]);
            for (i, v) in c["per_node"].as_array().unwrap().iter().enumerate() {
                if let Some(n) = v.as_i64() {
                    assert_eq!(n, count_matching(&per_node[i].0, &k), "node {i} cell {k:?}");
                }
            }
            if c["complete"].as_bool().unwrap() {
                complete_cells += 1;
                assert_eq!(
                    c["n"].as_i64().unwrap(),
                    count_matching(&all, &k),
                    "pooled {k:?}"
                );
            } else {
                incomplete_cells += 1;
                assert!(c["n"].as_i64().unwrap() <= count_matching(&all, &k));
                assert!(!c["suppressed_at"].as_array().unwrap().is_empty());
            }
        }
    }
    assert!(complete_cells > 20, "{complete_cells} complete cells");
    assert!(
        incomplete_cells > 0,
        "120 patients per node leave some small cells"
    );
    let total = &pooled["tables"][0]["cells"][0];
    assert_eq!(total["n"].as_i64().unwrap(), all.len() as i64);
    assert_eq!(total["complete"], json!(true));

    // The pooled mean age is the mean over all patients, within half of the band each node
    // publishes its mean as (1 year), plus the pooled mean's rounding.
    let ages: Vec<i32> = per_node.iter().flat_map(|(_, a)| a.clone()).collect();
    let mean = ages.iter().map(|a| *a as f64).sum::<f64>() / ages.len() as f64;
    let stat = pooled["statistics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["variable"] == "age_at_diagnosis" && s["stratum"] == json!({}))
        .unwrap();
    let pooled_mean = stat["pooled_mean"].as_f64().unwrap();
    assert!(
        (pooled_mean - mean).abs() <= 0.55,
        "{pooled_mean} vs {mean}"
    );

    // Disclosure control at every node.
    for a in pooled["nodes"].as_array().unwrap() {
        if a["status"] == "answered" {
            check_disclosure_control(&a["summary"], 5);
        }
    }

    // Every answer comes from a release in the node's audit log, with the policy, and the
    // chain verifies.
    for a in pooled["nodes"].as_array().unwrap() {
        if a["status"] != "answered" {
            continue;
        }
        let (_, db) = nodes.iter().find(|(id, _)| a["node"] == *id).unwrap();
        let seq = a["summary"]["policy"]["audit_seq"].as_i64().unwrap();
        let r = db
            .client()
            .query_one(
                "SELECT action, detail FROM registry.audit_log WHERE seq = $1",
                &[&seq],
            )
            .unwrap();
        assert_eq!(r.get::<_, String>(0), "federation release");
        let detail: Value = serde_json::from_str(&r.get::<_, String>(1)).unwrap();
        assert_eq!(detail["min_cell"], json!(5));
        assert_eq!(detail["node_id"], a["node"]);
        assert_eq!(detail["release_id"], a["summary"]["release_id"]);
        assert!(
            detail["cohorts"]["modeling_cohort"]["published"]
                .as_i64()
                .unwrap()
                > 0
        );
    }
    for (id, db) in &nodes {
        let out = db.registrar(&["audit", "verify"]);
        assert!(out.status.success(), "{id}: {}", text(&out));
    }

    // Nodes that cannot open a port export files; merging them pools the same numbers.
    let mut files = Vec::new();
    for (id, db) in &nodes {
        let f = dir.path().join(format!("{id}.json"));
        let out = db.registrar(&[
            "federation",
            "export",
            "--cohort",
            "modeling_cohort",
            "--out",
            f.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out));
        files.push(f);
    }
    let file_args: Vec<&str> = files.iter().map(|f| f.to_str().unwrap()).collect();
    let mut args = vec!["merge", "--format", "json"];
    args.extend(&file_args);
    let (code, merged) = federate(&args);
    assert_eq!(code, Some(0), "{merged:#}");
    assert_eq!(merged["tables"], pooled["tables"]);

    // An altered file is reported by name and left out.
    let altered = dir.path().join("ghent-altered.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    v["summary"]["n"] = json!(v["summary"]["n"].as_i64().unwrap() + 1);
    std::fs::write(&altered, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    let mut args = vec!["merge", "--format", "json", altered.to_str().unwrap()];
    args.extend(&file_args[1..]);
    let (code, merged) = federate(&args);
    assert_eq!(code, Some(1));
    assert_eq!(status_of(&merged, "ghent-altered"), "altered");
    assert_eq!(merged["pooled_nodes"], json!(["leuven", "lille"]));

    // A stricter policy suppresses more, still complementarily, and is audited.
    let ghent = &nodes[0].1;
    let before = check_disclosure_control(&summary_as_federation(ghent, "modeling_cohort"), 5);
    let out = ghent.registrar(&["federation", "configure", "--min-cell", "30"]);
    assert!(out.status.success(), "{}", text(&out));
    // The policy applies from the next release.
    assert_eq!(
        summary_as_federation(ghent, "modeling_cohort")["policy"]["min_cell"],
        json!(5)
    );
    publish(ghent);
    let strict = summary_as_federation(ghent, "modeling_cohort");
    let after = check_disclosure_control(&strict, 30);
    assert!(after > before, "{after} suppressed at 30 vs {before} at 5");
    assert_eq!(strict["policy"]["min_cell"], json!(30));
    for s in strict["statistics"].as_array().unwrap() {
        if s.get("suppressed").is_none() {
            let n = s["n"].as_i64().unwrap();
            assert!(n == 0 || n >= 30, "{s}");
        }
    }
    assert_eq!(
        ghent.count(
            "SELECT count(*) FROM registry.audit_log WHERE action = 'configuration change'
               AND detail LIKE '%federation disclosure policy%'"
        ),
        2,
        "node id and min cell changes are audited"
    );

    // A node on another schema version is reported, not pooled.
    nodes[2]
        .1
        .client()
        .batch_execute("INSERT INTO __diesel_schema_migrations (version) VALUES ('29991231000000')")
        .unwrap();
    let (code, pooled) = federate(&[
        "--nodes",
        nodes_arg,
        "--cohort",
        "tnbc_cohort",
        "--format",
        "json",
    ]);
    assert_eq!(code, Some(1));
    assert_eq!(status_of(&pooled, "lille"), "schema_mismatch");
    assert_eq!(pooled["pooled_nodes"], json!(["ghent", "leuven"]));

    // The askable cohorts come from the nodes.
    let out = registrar_cmd()
        .args(["federate", "--nodes", nodes_arg, "--list"])
        .output()
        .unwrap();
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(
        t.contains("ghent") && t.contains("tnbc_cohort"),
        "{}",
        text(&out)
    );
    assert!(
        t.contains("stopped") && t.contains("UNAVAILABLE"),
        "{}",
        text(&out)
    );
}

#[test]
fn suppression_keeps_a_protection_interval() {
    use registrar_etl::federation::protection::{protect, Model, Quantity};
    let q = |vars: Vec<usize>, values: &[i64], region: u128| Quantity {
        value: vars.iter().map(|v| values[*v]).sum(),
        vars,
        region: vec![region],
        weight: 1.0,
        derived: false,
    };
    // One-way table: cells a = 2, b = 10, c = 20 and their total. a is small; the audit
    // finds a complement and every suppressed count keeps at least min_cell + 1 values.
    let v = [2, 10, 20];
    let model = Model {
        values: v.to_vec(),
        links: vec![],
        quantities: vec![
            q(vec![0, 1, 2], &v, 0b111),
            q(vec![0], &v, 0b001),
            q(vec![1], &v, 0b010),
            q(vec![2], &v, 0b100),
        ],
    };
    let p = protect(&model, 5).unwrap();
    assert_eq!(
        p.published,
        [true, false, false, true],
        "b is the complement"
    );
    for (i, r) in p.ranges.iter().enumerate() {
        if !p.published[i] {
            let r = r.unwrap();
            assert!(r.hi.unwrap() - r.lo >= 5, "{i}: {r:?}");
        }
    }
    // Two complements of 1 would leave a range of 3 values: a = 1, b = 1, c = 30 with
    // min_cell 5 must suppress c too (the total is then the only constraint).
    let v = [1, 1, 30];
    let model = Model {
        values: v.to_vec(),
        links: vec![],
        quantities: vec![
            q(vec![0, 1, 2], &v, 0b111),
            q(vec![0], &v, 0b001),
            q(vec![1], &v, 0b010),
            q(vec![2], &v, 0b100),
        ],
    };
    let p = protect(&model, 5).unwrap();
    assert_eq!(p.published, [true, false, false, false]);
    // Linked tables: x + y (one table) = u + w (another), x = 3 small. Publishing y, u
    // and w would give x = u + w - y: some other count must go, and every suppressed one
    // keeps a wide range (here unbounded: nothing bounds the link from above).
    let v = [3, 9, 6, 6];
    let model = Model {
        values: v.to_vec(),
        links: vec![vec![(0, 1), (1, 1), (2, -1), (3, -1)]],
        quantities: vec![
            q(vec![0], &v, 0b0001),
            q(vec![1], &v, 0b0010),
            q(vec![2], &v, 0b0100),
            q(vec![3], &v, 0b1000),
        ],
    };
    let p = protect(&model, 5).unwrap();
    assert!(!p.published[0], "{:?}", p.published);
    assert!(p.published[1..].iter().any(|p| !*p), "{:?}", p.published);
    for (i, r) in p.ranges.iter().enumerate() {
        if !p.published[i] {
            assert!(r.unwrap().protects(5), "{i}: {r:?}");
        }
    }
    // A minimum of 1 suppresses nothing.
    assert!(protect(&model, 1).unwrap().published.iter().all(|p| *p));
}

#[test]
fn the_federation_role_executes_the_summary_and_nothing_else() {
    let db = TestDb::new();
    let out = db.registrar(&["roles", "apply"]);
    assert!(out.status.success(), "{}", text(&out));
    let mut admin = db.client();
    let relations: Vec<String> = admin
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname IN ('cdm', 'registry', 'research', 'federation', 'public')
                AND c.relkind IN ('r', 'v', 'm', 'p', 'f', 'S')
              ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(relations.len() > 80, "{} relations", relations.len());
    let mut f = db.connect_as(FEDERATION);
    for rel in &relations {
        let e = f
            .batch_execute(&format!("SELECT * FROM {rel} LIMIT 1"))
            .expect_err(rel);
        assert!(
            format!("{e:?}").contains("permission denied"),
            "{rel}: {e:?}"
        );
    }
    for denied in [
        "SELECT registry.audit_append('x', NULL, NULL, NULL, '{}', 'y')",
        "SELECT federation.latest_release()",
        "UPDATE federation.policy SET min_cell = 1",
        "INSERT INTO registry.audit_log (seq) VALUES (1)",
        "CREATE TABLE federation.mine (x int)",
        "CREATE TABLE public.mine (x int)",
        "CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    ] {
        let e = f.batch_execute(denied).expect_err(denied);
        assert!(
            format!("{e:?}").contains("permission denied"),
            "{denied}: {e:?}"
        );
    }
    // The API works, and only for askable cohorts.
    let v: String = f
        .query_one("SELECT federation.schema_version()", &[])
        .unwrap()
        .get(0);
    assert_eq!(v, registrar_etl::db::latest_migration_version().unwrap());
    let n: i64 = f
        .query_one("SELECT count(*) FROM federation.cohorts()", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "no release yet: no askable cohort");
    let e = f
        .query_one("SELECT federation.cohort_summary('tnbc_cohort')", &[])
        .expect_err("no release yet");
    assert!(
        format!("{e:?}").contains("registrar federation publish"),
        "the operator is told what to run: {e:?}"
    );
    publish(&db);
    let n: i64 = f
        .query_one("SELECT count(*) FROM federation.cohorts()", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 4);
    let s = summary_as_federation(&db, "tnbc_cohort");
    assert_eq!(s["n"], json!(0));
    for bad in [
        "person_map",
        "modeling_cohort; DROP TABLE cdm.person",
        "../registry.reject",
    ] {
        let e = f
            .query_one("SELECT federation.cohort_summary($1)", &[&bad])
            .expect_err(bad);
        assert!(
            format!("{e:?}").contains("no askable cohort"),
            "{bad}: {e:?}"
        );
    }
}

/// The askable cohorts and their subtypes, as an attacker knows the design
/// (federation.cohort's descriptions).
const DESIGN: [(&str, &[&str]); 4] = [
    (
        "modeling_cohort",
        &[
            "luminal_a",
            "luminal_b_her2neg",
            "luminal_b_her2pos",
            "luminal_unknown",
            "her2_enriched",
            "tnbc",
            "unknown",
        ],
    ),
    (
        "luminal_cohort",
        &["luminal_a", "luminal_b_her2neg", "luminal_unknown"],
    ),
    (
        "her2_positive_cohort",
        &["luminal_b_her2pos", "her2_enriched"],
    ),
    ("tnbc_cohort", &["tnbc"]),
];
const AGE_BANDS: [&str; 6] = ["<40", "40-49", "50-59", "60-69", "70+", "unknown"];
const PCRS: [&str; 4] = ["pCR", "non-pCR", "unknown", "no neoadjuvant"];
const RECURRENCES: [&str; 3] = ["event", "no event", "unknown"];

/// The pillar (or "none") of a subtype.
fn group_of(subtype: &str) -> &'static str {
    DESIGN[1..]
        .iter()
        .find(|(_, s)| s.contains(&subtype))
        .map(|(c, _)| *c)
        .unwrap_or("none")
}

/// A registry of `patients` synthetic patients, roles applied and a release published.
fn published_registry(dir: &Path, patients: u64, seed: u64) -> TestDb {
    let db = TestDb::new();
    let key = new_key(dir, "registry.key");
    let src = synth_institution(&dir.join("src"), patients, seed, 0.0, "ghent", 1);
    import_hospital(&db, &key, &src);
    let out = db.registrar(&["roles", "apply"]);
    assert!(out.status.success(), "{}", text(&out));
    publish(&db);
    db
}

/// Everything the node answers, collected as registrar_federation.
fn all_answers(db: &TestDb) -> Vec<Value> {
    let mut f = db.connect_as(FEDERATION);
    let names: Vec<String> = f
        .query("SELECT name FROM federation.cohorts()", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(names.len(), DESIGN.len());
    names.iter().map(|n| summary_as_federation(db, n)).collect()
}

/// The attacker's integer programme over everything published (written here, independently
/// of registrar's audit). Variables: the tables subtype x age band, subtype x pCR, subtype x
/// recurrence, subtype x whether rfs_days is known, and pillar x diagnosis year, linked by
/// their subtype and pillar totals; every published count is a sum over one of them, and any
/// non-negative integer tables with equal totals are realised by some set of patients, so
/// the attacker knows exactly what these tables allow.
struct Attack {
    vars: BTreeMap<String, usize>,
    links: Vec<Vec<(usize, f64)>>,
    published: Vec<(Vec<usize>, i64)>,
    suppressed: BTreeMap<Vec<usize>, String>,
}

impl Attack {
    fn var(&mut self, name: String) -> usize {
        let n = self.vars.len();
        *self.vars.entry(name).or_insert(n)
    }

    /// The variables summed by a count of `cohort`: a table cell (`table`, `key`) or a
    /// statistic's n (`table` = "n:" + variable, `key` = its stratum).
    fn count(&mut self, cohort: &str, table: &str, key: &Key, years: &[String]) -> Vec<usize> {
        let subtypes = DESIGN.iter().find(|(c, _)| *c == cohort).unwrap().1;
        self.count_of(subtypes, table, key, years)
    }

    /// The variables summed by a count over the patients of `subtypes` (any subgroup, not
    /// only a cohort).
    fn count_of(
        &mut self,
        subtypes: &[&str],
        table: &str,
        key: &Key,
        years: &[String],
    ) -> Vec<usize> {
        let subtypes: Vec<&str> = subtypes
            .iter()
            .copied()
            .filter(|s| key.get("subtype").is_none_or(|k| k == s))
            .collect();
        let mut out = Vec::new();
        let want = |d: &str, v: &str| key.get(d).is_none_or(|k| k == v);
        match table {
            "total" | "subtype" | "age_band" | "n:age_at_diagnosis" => {
                for s in &subtypes {
                    for a in AGE_BANDS {
                        if want("age_band", a) && !(table.starts_with("n:") && a == "unknown") {
                            out.push(self.var(format!("sa {s} {a}")));
                        }
                    }
                }
            }
            "pcr" | "subtype_by_pcr" => {
                for s in &subtypes {
                    for p in PCRS.iter().filter(|p| want("pcr", p)) {
                        out.push(self.var(format!("sp {s} {p}")));
                    }
                }
            }
            "recurrence" | "subtype_by_recurrence" => {
                for s in &subtypes {
                    for r in RECURRENCES.iter().filter(|r| want("recurrence", r)) {
                        out.push(self.var(format!("sr {s} {r}")));
                    }
                }
            }
            "n:rfs_days" => {
                for s in &subtypes {
                    out.push(self.var(format!("sk {s} known")));
                }
            }
            "diagnosis_year" => {
                let groups: BTreeSet<&str> = subtypes.iter().map(|s| group_of(s)).collect();
                for g in groups {
                    for y in years.iter().filter(|y| want("diagnosis_year", y)) {
                        out.push(self.var(format!("gy {g} {y}")));
                    }
                }
            }
            _ => panic!("unknown table {table}"),
        }
        out.sort_unstable();
        out
    }

    fn new(answers: &[Value]) -> Self {
        let mut a = Attack {
            vars: BTreeMap::new(),
            links: vec![],
            published: vec![],
            suppressed: BTreeMap::new(),
        };
        let modeling = answers
            .iter()
            .find(|s| s["cohort"] == "modeling_cohort")
            .unwrap();
        let years: Vec<String> = modeling["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "diagnosis_year")
            .unwrap()["cells"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["key"]["diagnosis_year"].as_str().unwrap().to_string())
            .collect();
        for (_, subtypes) in &DESIGN[..1] {
            for s in *subtypes {
                let margin: Vec<(usize, f64)> = AGE_BANDS
                    .iter()
                    .map(|b| (a.var(format!("sa {s} {b}")), -1.0))
                    .collect();
                let others: [Vec<String>; 3] = [
                    PCRS.iter().map(|p| format!("sp {s} {p}")).collect(),
                    RECURRENCES.iter().map(|r| format!("sr {s} {r}")).collect(),
                    vec![format!("sk {s} known"), format!("sk {s} unknown")],
                ];
                for o in others {
                    let mut l = margin.clone();
                    l.extend(o.into_iter().map(|n| (a.var(n), 1.0)));
                    a.links.push(l);
                }
            }
        }
        for g in [
            "luminal_cohort",
            "her2_positive_cohort",
            "tnbc_cohort",
            "none",
        ] {
            let mut l: Vec<(usize, f64)> = years
                .iter()
                .map(|y| (a.var(format!("gy {g} {y}")), 1.0))
                .collect();
            for s in DESIGN[0].1.iter().filter(|s| group_of(s) == g) {
                for b in AGE_BANDS {
                    l.push((a.var(format!("sa {s} {b}")), -1.0));
                }
            }
            a.links.push(l);
        }
        for ans in answers {
            let cohort = ans["cohort"].as_str().unwrap();
            for t in ans["tables"].as_array().unwrap() {
                let table = t["name"].as_str().unwrap();
                for c in t["cells"].as_array().unwrap() {
                    let key = key_of(&c["key"]);
                    let vars = a.count(cohort, table, &key, &years);
                    let label = format!("{cohort} {table} {key:?}");
                    a.observe(vars, c["n"].as_i64(), label);
                }
            }
            for st in ans["statistics"].as_array().unwrap() {
                let table = format!("n:{}", st["variable"].as_str().unwrap());
                let key = key_of(&st["stratum"]);
                let vars = a.count(cohort, &table, &key, &years);
                let label = format!("{cohort} {table} {key:?}");
                a.observe(vars, st["n"].as_i64(), label);
            }
        }
        for (vars, _) in &a.published {
            a.suppressed.remove(vars);
        }
        a
    }

    fn observe(&mut self, vars: Vec<usize>, n: Option<i64>, label: String) {
        match n {
            Some(n) => self.published.push((vars, n)),
            None => {
                self.suppressed.entry(vars).or_insert(label);
            }
        }
    }

    /// The proven integer min and max of a sum of variables (max None: unbounded).
    fn range(&self, target: &[usize]) -> (i64, Option<i64>) {
        use microlp::{ComparisonOp, OptimizationDirection, Problem};
        let solve = |dir| {
            let mut p = Problem::new(dir);
            let vars: Vec<_> = (0..self.vars.len())
                .map(|i| {
                    let obj = if target.contains(&i) { 1.0 } else { 0.0 };
                    p.add_integer_var(obj, (0, 100_000))
                })
                .collect();
            for l in &self.links {
                let t: Vec<_> = l.iter().map(|(v, c)| (vars[*v], *c)).collect();
                p.add_constraint(t.as_slice(), ComparisonOp::Eq, 0.0);
            }
            for (vs, n) in &self.published {
                if !vs.is_empty() {
                    let t: Vec<_> = vs.iter().map(|v| (vars[*v], 1.0)).collect();
                    p.add_constraint(t.as_slice(), ComparisonOp::Eq, *n as f64);
                }
            }
            let out = p.solve().expect("the published numbers are consistent");
            assert!(out.is_optimal(), "the attacker's optimum is proven");
            out.solution().unwrap().objective().round() as i64
        };
        let lo = solve(OptimizationDirection::Minimize);
        let hi = solve(OptimizationDirection::Maximize);
        (lo, (hi < 50_000).then_some(hi))
    }
}

#[test]
fn an_attacker_solving_the_integer_programme_of_every_answer_pins_no_suppressed_count() {
    let dir = tempfile::tempdir().unwrap();
    let db = published_registry(dir.path(), 160, 7);
    // Some patients lose their HER2 result: subtype "unknown", in modeling_cohort but in no
    // pillar, so modeling_cohort's tables minus the pillars' give a small subgroup's counts.
    let gone = db
        .client()
        .execute(
            "DELETE FROM cdm.measurement WHERE measurement_source_value = 'HER2_IHC'
                AND person_id IN (SELECT person_id FROM research.modeling_cohort
                                   WHERE person_id % 9 = 0)",
            &[],
        )
        .unwrap();
    assert!(gone > 0);
    let info = publish(&db);
    eprintln!("release: {info}");
    let answers = all_answers(&db);
    let min_cell = answers[0]["policy"]["min_cell"].as_i64().unwrap();
    assert_eq!(min_cell, 5);
    let attack = Attack::new(&answers);
    assert!(
        !attack.suppressed.is_empty(),
        "160 patients leave small cells to suppress"
    );

    // The attacker's model fits the data: the true tables meet every published number.
    let mut truth = vec![0i64; attack.vars.len()];
    let rows = db
        .client()
        .query(
            "SELECT coalesce(subtype, 'unknown'), age_at_diagnosis, neoadjuvant, pcr,
                    rfs_event, rfs_days IS NOT NULL, diagnosis_year
               FROM research.modeling_cohort",
            &[],
        )
        .unwrap();
    for r in &rows {
        let s: String = r.get(0);
        let age: Option<i32> = r.get(1);
        let band = match age {
            None => "unknown",
            Some(a) if a < 40 => "<40",
            Some(a) if a < 50 => "40-49",
            Some(a) if a < 60 => "50-59",
            Some(a) if a < 70 => "60-69",
            Some(_) => "70+",
        };
        let pcr = match (r.get::<_, Option<bool>>(2).unwrap_or(false), r.get(3)) {
            (false, _) => "no neoadjuvant",
            (true, Some(true)) => "pCR",
            (true, Some(false)) => "non-pCR",
            (true, None) => "unknown",
        };
        let rec = match r.get::<_, Option<bool>>(4) {
            Some(true) => "event",
            Some(false) => "no event",
            None => "unknown",
        };
        let known = if r.get(5) { "known" } else { "unknown" };
        let year = r
            .get::<_, Option<i32>>(6)
            .map(|y| y.to_string())
            .unwrap_or_else(|| "unknown".into());
        for name in [
            format!("sa {s} {band}"),
            format!("sp {s} {pcr}"),
            format!("sr {s} {rec}"),
            format!("sk {s} {known}"),
            format!("gy {} {year}", group_of(&s)),
        ] {
            truth[attack.vars[&name]] += 1;
        }
    }
    for (vars, n) in &attack.published {
        assert_eq!(vars.iter().map(|v| truth[*v]).sum::<i64>(), *n);
    }

    // Every suppressed count keeps at least min_cell + 1 possible values.
    let mut bounded = 0;
    for (vars, label) in &attack.suppressed {
        let (lo, hi) = attack.range(vars);
        let value: i64 = vars.iter().map(|v| truth[*v]).sum();
        assert!(lo <= value && hi.is_none_or(|h| value <= h), "{label}");
        if let Some(hi) = hi {
            bounded += 1;
            assert!(
                hi - lo >= min_cell,
                "{label}: pinned to [{lo}, {hi}] (true {value})"
            );
        }
    }
    assert!(bounded > 0, "the attacker bounds some suppressed count");

    // Derived subgroup counts: the pillars are disjoint unions of subtypes of
    // modeling_cohort, so sums and differences of published cells give the counts of every
    // union of pillar groups and of the patients in no pillar (subtype "unknown"), per cell
    // of every table without a subtype dimension and per statistic's n. None of them that is
    // small may be pinned closer than min_cell either.
    let groups = [
        "luminal_cohort",
        "her2_positive_cohort",
        "tnbc_cohort",
        "none",
    ];
    let cohort_sets: BTreeSet<BTreeSet<&str>> = DESIGN
        .iter()
        .map(|(_, s)| s.iter().copied().collect())
        .collect();
    let modeling = answers
        .iter()
        .find(|s| s["cohort"] == "modeling_cohort")
        .unwrap();
    let mut cells: Vec<(String, Key)> = Vec::new();
    for t in modeling["tables"].as_array().unwrap() {
        let dims = t["dimensions"].as_array().unwrap();
        if dims.iter().any(|d| d == "subtype") {
            continue;
        }
        for c in t["cells"].as_array().unwrap() {
            cells.push((t["name"].as_str().unwrap().to_string(), key_of(&c["key"])));
        }
    }
    cells.push(("n:age_at_diagnosis".into(), Key::new()));
    cells.push(("n:rfs_days".into(), Key::new()));
    let years: Vec<String> = modeling["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "diagnosis_year")
        .unwrap()["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"]["diagnosis_year"].as_str().unwrap().to_string())
        .collect();
    let mut attack = attack;
    let mut derived = 0;
    let mut pinned = Vec::new();
    let mut seen: BTreeSet<Vec<usize>> = BTreeSet::new();
    for mask in 1u32..(1 << groups.len()) {
        let subtypes: Vec<&str> = DESIGN[0]
            .1
            .iter()
            .copied()
            .filter(|s| {
                groups
                    .iter()
                    .enumerate()
                    .any(|(i, g)| mask & (1 << i) != 0 && group_of(s) == *g)
            })
            .collect();
        if cohort_sets.contains(&subtypes.iter().copied().collect()) {
            continue;
        }
        for (table, key) in &cells {
            let vars = attack.count_of(&subtypes, table, key, &years);
            let value: i64 = vars.iter().map(|v| truth[*v]).sum();
            if !(1..min_cell).contains(&value) || !seen.insert(vars.clone()) {
                continue;
            }
            derived += 1;
            let (lo, hi) = attack.range(&vars);
            assert!(lo <= value && hi.is_none_or(|h| value <= h));
            if hi.is_some_and(|hi| hi - lo < min_cell) {
                pinned.push(format!(
                    "{subtypes:?} {table} {key:?}: [{lo}, {}] (true {value})",
                    hi.unwrap()
                ));
            }
        }
    }
    assert!(
        derived > 0,
        "160 patients, some of subtype unknown, leave small derived subgroup counts"
    );
    assert!(
        pinned.is_empty(),
        "{derived} small derived subgroup counts, pinned: {pinned:#?}"
    );
}

#[test]
fn a_rolled_back_query_reads_a_release_already_in_the_audit_log() {
    let db = TestDb::new();
    let out = db.registrar(&["roles", "apply"]);
    assert!(out.status.success(), "{}", text(&out));
    publish(&db);
    let head = |db: &TestDb| db.count("SELECT coalesce(max(seq), 0) FROM registry.audit_log");
    let before = head(&db);

    let mut f = db.connect_as(FEDERATION);
    let mut tx = f.transaction().unwrap();
    let answer: String = tx
        .query_one(
            "SELECT federation.cohort_summary('modeling_cohort')::text",
            &[],
        )
        .unwrap()
        .get(0);
    tx.rollback().unwrap();
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["format"], json!("registrar-federation-summary-v1"));

    // The answer is the release's, and the release's entry was already in the log.
    let seq = answer["policy"]["audit_seq"].as_i64().unwrap();
    assert!(seq <= before, "entry {seq}, head {before}");
    assert_eq!(head(&db), before, "serving writes nothing");
    let mut admin = db.client();
    let r = admin
        .query_one(
            "SELECT a.action, a.detail, s.summary::text FROM registry.audit_log a
               JOIN federation.release r ON r.audit_seq = a.seq
               JOIN federation.release_summary s ON s.release_id = r.release_id
              WHERE a.seq = $1 AND s.cohort = 'modeling_cohort'",
            &[&seq],
        )
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "federation release");
    let detail: Value = serde_json::from_str(&r.get::<_, String>(1)).unwrap();
    assert_eq!(detail["release_id"], answer["release_id"]);
    let stored: Value = serde_json::from_str(&r.get::<_, String>(2)).unwrap();
    assert_eq!(stored, answer);
    let info: Value = f
        .query_one("SELECT federation.release_info()", &[])
        .unwrap()
        .get(0);
    assert_eq!(info["audit_seq"], json!(seq));
    assert_eq!(info["content_sha256"], detail["content_sha256"]);
    let out = db.registrar(&["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out));

    // Nothing the federation role can call reads live data: the definer that runs the API
    // can read no table or view of cdm, registry or research, and the role can execute the
    // API and nothing else of the federation schema.
    let readable: Vec<String> = admin
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname IN ('cdm', 'registry', 'research')
                AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
                AND has_table_privilege('registrar_federation_definer', c.oid, 'SELECT')",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(readable.is_empty(), "the definer reads {readable:?}");
    for schema in ["cdm", "registry", "research"] {
        let usage: bool = admin
            .query_one(
                "SELECT has_schema_privilege('registrar_federation_definer', $1, 'USAGE')",
                &[&schema],
            )
            .unwrap()
            .get(0);
        assert!(!usage, "{schema}");
    }
    let callable: Vec<String> = admin
        .query(
            "SELECT p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname = 'federation'
                AND has_function_privilege('registrar_federation', p.oid, 'EXECUTE')
              ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        callable,
        [
            "cohort_summary",
            "cohorts",
            "release_info",
            "schema_version"
        ]
    );

    // The same answers again make no new release; a forced one is a new audited release.
    let again = publish(&db);
    assert_eq!(again["new"], json!(false));
    assert_eq!(head(&db), before);
    let out = db.registrar(&["--json", "federation", "publish", "--force"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(head(&db), before + 1);
    let newer = summary_as_federation(&db, "modeling_cohort");
    assert_eq!(newer["policy"]["audit_seq"], json!(before + 1));
}

#[test]
fn published_means_and_quartiles_are_bands_never_a_patients_value() {
    use registrar_etl::federation::release::{quantile_window, windowed_quantile};
    // The rule itself: no quartile under 2w values; the mean of the w nearest otherwise.
    let w = quantile_window(5);
    assert_eq!(w, 5);
    let nine: Vec<i32> = (1..=9).collect();
    assert_eq!(windowed_quantile(&nine, 0.5, w), None);
    let ten: Vec<i32> = (1..=10).collect();
    assert_eq!(windowed_quantile(&ten, 0.5, w), Some(6.0));

    let dir = tempfile::tempdir().unwrap();
    let db = published_registry(dir.path(), 160, 11);
    let answers = all_answers(&db);
    let mut c = db.client();
    let mut quartiles = 0;
    let mut means = 0;
    for a in &answers {
        let cohort = a["cohort"].as_str().unwrap();
        for st in a["statistics"].as_array().unwrap() {
            if st.get("suppressed").is_some() {
                continue;
            }
            let var = st["variable"].as_str().unwrap();
            let width = if var == "rfs_days" { 7.0 } else { 1.0 };
            let subtype = st["stratum"]["subtype"].as_str();
            let values: Vec<i32> = c
                .query(
                    &format!(
                        "SELECT {var}::int FROM research.{cohort}
                          WHERE {var} IS NOT NULL AND ($1::text IS NULL OR coalesce(subtype, 'unknown') = $1)"
                    ),
                    &[&subtype],
                )
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            let n = st["n"].as_i64().unwrap();
            assert_eq!(n, values.len() as i64, "{cohort} {st}");
            if n == 0 {
                continue;
            }
            assert!(n >= 5, "{st}");
            // The mean is its band's midpoint: n x mean is not the sum, which can be any of
            // n x width values.
            let mean = st["mean"].as_f64().unwrap();
            let band = (mean - width / 2.0) / width;
            assert_eq!(band, band.round(), "{cohort} {st}: not a band midpoint");
            let true_mean = values.iter().map(|v| *v as f64).sum::<f64>() / n as f64;
            assert!(
                (true_mean - mean).abs() <= width / 2.0,
                "{cohort} {st}: {true_mean}"
            );
            means += 1;
            for q in ["q1", "median", "q3"] {
                match st[q].as_f64() {
                    None => assert!((n as usize) < 2 * w, "{cohort} {st}: {q} missing"),
                    Some(x) => {
                        assert!((n as usize) >= 2 * w, "{cohort} {st}: {q} with small n");
                        assert!(
                            !values.iter().any(|v| *v as f64 == x),
                            "{cohort} {st}: {q} is a patient's value"
                        );
                        quartiles += 1;
                    }
                }
            }
        }
    }
    assert!(
        means > 4 && quartiles > 4,
        "{means} means, {quartiles} quartiles"
    );
}

/// What a researcher reads: on a registry of about the demo's size, the release keeps most of
/// the cells that are not small. (Complements chosen greedily, one at a time, suppressed
/// about three such cells per small one, and most of modeling_cohort's subtype-by-pCR table.)
#[test]
fn a_release_keeps_most_cells_that_are_not_small() {
    let dir = tempfile::tempdir().unwrap();
    let db = published_registry(dir.path(), 700, 1);
    let answers = all_answers(&db);
    let min_cell = answers[0]["policy"]["min_cell"].as_i64().unwrap();
    let (patients, _) = patient_categories(&db);
    let (mut small, mut large, mut large_suppressed) = (0, 0, 0);
    // Non-small cells of modeling_cohort's subtype-by-pCR and subtype-by-recurrence tables,
    // and how many of them are published.
    let (mut by_subtype, mut by_subtype_shown) = (0, 0);
    for a in &answers {
        let cohort = a["cohort"].as_str().unwrap();
        let subtypes = DESIGN.iter().find(|(c, _)| *c == cohort).unwrap().1;
        let members: Vec<Key> = patients
            .iter()
            .filter(|p| subtypes.contains(&p["subtype"].as_str()))
            .cloned()
            .collect();
        for t in a["tables"].as_array().unwrap() {
            for c in t["cells"].as_array().unwrap() {
                let n = count_matching(&members, &key_of(&c["key"]));
                let shown = c["n"].as_i64();
                if (1..min_cell).contains(&n) {
                    assert_eq!(shown, None);
                    small += 1;
                    continue;
                }
                if n == 0 {
                    continue;
                }
                large += 1;
                if shown.is_none() {
                    large_suppressed += 1;
                }
                if cohort == "modeling_cohort"
                    && t["name"].as_str().unwrap().starts_with("subtype_by_")
                {
                    by_subtype += 1;
                    if shown.is_some() {
                        by_subtype_shown += 1;
                    }
                }
            }
        }
    }
    assert!(small > 0, "700 patients leave small cells");
    assert!(
        large_suppressed <= 2 * small,
        "{large_suppressed} of {large} cells of at least {min_cell} suppressed for {small} small cells"
    );
    assert!(
        2 * by_subtype_shown >= by_subtype,
        "modeling_cohort publishes {by_subtype_shown} of its {by_subtype} subtype-by-pCR and -recurrence cells of at least {min_cell}"
    );
}
