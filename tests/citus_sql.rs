//! registrar's SQL against the query shapes Citus cannot run, without Citus: every view and
//! function of a migrated registry (the catalog's own text) and every SQL literal of the
//! registrar library, checked against the distribution in scripts/citus-distribute.sql.
//!
//! - A subquery (`EXISTS`, `NOT EXISTS`) that correlates a distributed table with another
//!   distributed table must match `person_id` (else: "complex joins are only supported when
//!   all distributed tables are co-located and joined on their distribution columns").
//! - A join of two distributed tables must match `person_id` in its condition.
//! - A statement that reads a coordinator-local cdm table (no person_id) and a distributed
//!   one must read the distributed side in a MATERIALIZED CTE (else: "direct joins between
//!   distributed and local tables are not supported").

use crate::support::{repo_file, TestDb};
use std::collections::BTreeSet;

struct Layout {
    distributed: BTreeSet<String>,
    local: BTreeSet<String>,
}

impl Layout {
    fn from_recipe() -> Self {
        let script = std::fs::read_to_string(repo_file("scripts/citus-distribute.sql")).unwrap();
        let names = |f: &str| -> BTreeSet<String> {
            let re = regex_lite::Regex::new(&format!(r"{f}\('([a-z_.]+)'")).unwrap();
            re.captures_iter(&script)
                .map(|c| c[1].to_string())
                .collect()
        };
        let mut distributed = names("create_distributed_table");
        // The marts: `create_distributed_table('mart.' || name, ...) FROM mart.catalog`, whose
        // rows are the marts the migrations create from their `_src` views.
        assert!(
            script.contains("FROM mart.catalog"),
            "the recipe distributes the marts of mart.catalog"
        );
        let mart = regex_lite::Regex::new(
            r"CREATE TABLE (mart\.[a-z_]+) AS SELECT \* FROM mart\.[a-z_]+_src",
        )
        .unwrap();
        let mut dir: Vec<_> = std::fs::read_dir(repo_file("migrations"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        dir.sort();
        for m in dir {
            if let Ok(sql) = std::fs::read_to_string(m.join("up.sql")) {
                for c in mart.captures_iter(&sql) {
                    distributed.insert(c[1].to_string());
                }
            }
        }
        distributed.remove("mart.");
        assert!(distributed.contains("cdm.person") && distributed.contains("mart.modeling_cohort"));
        Layout {
            distributed,
            local: names("citus_add_local_table_to_metadata"),
        }
    }

    fn is_distributed(&self, t: &str) -> bool {
        // `cdm.{t}`: a format string over the patient tables
        self.distributed.contains(t) || t.starts_with("cdm.{")
    }
}

/// Table references (`cdm.x`, `mart.x`, `cdm.{t}`) with their offsets.
fn tables(sql: &str) -> Vec<(usize, String)> {
    let re = regex_lite::Regex::new(r"\b(cdm|mart)\.(\{[a-z_]*\}|[a-z_]+)").unwrap();
    re.find_iter(sql)
        .map(|m| (m.start(), m.as_str().to_string()))
        .collect()
}

/// The text from an opening parenthesis at `open` to its match.
fn balanced(sql: &str, open: usize) -> &str {
    let mut depth = 0;
    for (i, ch) in sql[open..].char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &sql[open..=open + i];
                }
            }
            _ => {}
        }
    }
    &sql[open..]
}

/// What is wrong with one statement on Citus (empty: nothing).
fn problems(layout: &Layout, sql: &str) -> Vec<String> {
    let sql = sql
        .to_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let refs = tables(&sql);
    let distributed: Vec<&(usize, String)> = refs
        .iter()
        .filter(|(_, t)| layout.is_distributed(t))
        .collect();
    let mut out = Vec::new();
    // Correlated subqueries between distributed tables.
    let exists = regex_lite::Regex::new(r"\bexists\s*\(").unwrap();
    for m in exists.find_iter(&sql) {
        let open = m.end() - 1;
        let sub = balanced(&sql, open);
        let (from, to) = (open, open + sub.len());
        let inside = distributed.iter().any(|(p, _)| (from..to).contains(p));
        let outside = distributed.iter().any(|(p, _)| !(from..to).contains(p));
        if inside && outside && !sub.contains("person_id") {
            out.push(format!(
                "a subquery correlates distributed tables without person_id: {sub}"
            ));
        }
    }
    // Joins of two distributed tables.
    let join = regex_lite::Regex::new(
        r"\bjoin ((?:cdm|mart)\.(?:\{[a-z_]*\}|[a-z_]+))(?: (?:as )?[a-z_]+)? (on|using) ",
    )
    .unwrap();
    for c in join.captures_iter(&sql) {
        let whole = c.get(0).unwrap();
        if !layout.is_distributed(&c[1]) || distributed.len() < 2 {
            continue;
        }
        let rest = &sql[whole.end()..];
        let cond = if &c[2] == "using" {
            balanced(rest, 0)
        } else {
            // up to the next clause at this level
            let mut depth = 0i32;
            let mut end = rest.len();
            for (i, ch) in rest.char_indices() {
                match ch {
                    '(' => depth += 1,
                    ')' if depth == 0 => {
                        end = i;
                        break;
                    }
                    ')' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    let tail = &rest[i..];
                    if [
                        " join ",
                        " where ",
                        " group by ",
                        " order by ",
                        " union ",
                        " left join ",
                    ]
                    .iter()
                    .any(|k| tail.starts_with(k))
                    {
                        end = i;
                        break;
                    }
                }
            }
            &rest[..end]
        };
        if !cond.contains("person_id") {
            out.push(format!(
                "a join of distributed tables without person_id: join {} {}",
                &c[1], cond
            ));
        }
    }
    // Coordinator-local cdm tables with distributed ones (in a query: ANALYZE may list both).
    let local = refs.iter().any(|(_, t)| layout.local.contains(t));
    let query = ["select", "insert", "update", "delete", "with"]
        .iter()
        .any(|k| sql.trim_start().starts_with(k));
    if query && local && !distributed.is_empty() && !sql.contains("as materialized") {
        out.push(
            "a coordinator-local table read with a distributed one outside a MATERIALIZED CTE"
                .into(),
        );
    }
    out
}

/// The string literals of a Rust source file that hold SQL of cdm or the marts.
fn rust_sql(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        // skip comments
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if b[i] == b'\'' {
            // a char literal ('"') or a lifetime: step over the quote
            if b.get(i + 2) == Some(&b'\'') {
                i += 3;
            } else if b.get(i + 1) == Some(&b'\\') && b.get(i + 3) == Some(&b'\'') {
                i += 4;
            } else {
                i += 1;
            }
            continue;
        }
        let raw = b[i] == b'r' && matches!(b.get(i + 1), Some(b'#') | Some(b'"'));
        if raw && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) {
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                i += 1;
                continue;
            }
            let close = format!("\"{}", "#".repeat(hashes));
            let start = j + 1;
            let end = text[start..]
                .find(&close)
                .map(|e| start + e)
                .unwrap_or(b.len());
            out.push(text[start..end].to_string());
            i = end + close.len();
            continue;
        }
        if b[i] == b'"' {
            let mut j = i + 1;
            let mut s = String::new();
            while j < b.len() && b[j] != b'"' {
                if b[j] == b'\\' {
                    j += 1;
                    if b.get(j) == Some(&b'\n') {
                        // a continued line: its leading blanks are not part of the string
                        j += 1;
                        while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
                            j += 1;
                        }
                        continue;
                    }
                    s.push(' ');
                    j += 1;
                    continue;
                }
                s.push(b[j] as char);
                j += 1;
            }
            out.push(s);
            i = j + 1;
            continue;
        }
        i += 1;
    }
    out.retain(|s| {
        let l = s.to_lowercase();
        (l.contains("cdm.") || l.contains("mart."))
            && ["select", "insert", "update", "delete"]
                .iter()
                .any(|k| l.contains(k))
    });
    out
}

fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().and_then(|x| x.to_str()) == Some("rs") {
            out.push(p);
        }
    }
}

#[test]
fn the_scanner_catches_the_shapes_citus_refuses() {
    let layout = Layout::from_recipe();
    for (bad, why) in [
        (
            "SELECT count(*) FROM cdm.image_feature f WHERE NOT EXISTS (SELECT 1 FROM cdm.image_occurrence i WHERE i.image_occurrence_id = f.image_occurrence_id)",
            "subquery",
        ),
        (
            "SELECT count(*) FROM cdm.episode_event ee WHERE NOT EXISTS (SELECT 1 FROM cdm.episode e WHERE e.episode_id = ee.episode_id)",
            "coordinator-local",
        ),
        (
            "SELECT 1 FROM cdm.drug_exposure d JOIN cdm.visit_occurrence v ON v.visit_occurrence_id = d.visit_occurrence_id WHERE true",
            "join of distributed",
        ),
    ] {
        let p = problems(&layout, bad);
        assert!(p.iter().any(|m| m.contains(why)), "{bad}: {p:?}");
    }
    for good in [
        "SELECT count(*) FROM cdm.image_feature f WHERE NOT EXISTS (SELECT 1 FROM cdm.image_occurrence i WHERE i.person_id = f.person_id AND i.image_occurrence_id = f.image_occurrence_id)",
        "WITH e AS MATERIALIZED (SELECT episode_id FROM cdm.episode) SELECT count(*) FROM cdm.episode_event ee WHERE NOT EXISTS (SELECT 1 FROM e WHERE e.episode_id = ee.episode_id)",
        "SELECT 1 FROM cdm.drug_exposure d JOIN cdm.visit_occurrence v ON v.person_id = d.person_id AND v.visit_occurrence_id = d.visit_occurrence_id",
        "SELECT 1 FROM cdm.measurement m JOIN cdm.concept c ON c.concept_id = m.measurement_concept_id",
        "SELECT 1 FROM cdm.person p JOIN cdm.death d USING (person_id)",
    ] {
        assert!(problems(&layout, good).is_empty(), "{good}: {:?}", problems(&layout, good));
    }
    let lits = rust_sql("let q = \"SELECT 1 FROM cdm.person p \\\n     JOIN cdm.death d USING (person_id)\"; // \"cdm.x\"\nlet r = r#\"SELECT \"a\" FROM cdm.note\"#;");
    assert_eq!(lits.len(), 2, "{lits:?}");
    assert!(lits[0].contains("cdm.person p JOIN cdm.death"), "{lits:?}");
}

#[test]
fn registrar_sql_runs_on_citus() {
    let layout = Layout::from_recipe();
    let db = TestDb::new();
    let mut c = db.client();
    let mut statements: Vec<(String, String)> = c
        .query(
            "SELECT format('view %s', c.oid::regclass), pg_get_viewdef(c.oid)
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname IN ('cdm', 'research', 'mart', 'registry', 'federation')
                AND c.relkind IN ('v', 'm')
             UNION ALL
             SELECT format('function %s', p.oid::regprocedure), p.prosrc
               FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname IN ('cdm', 'research', 'mart', 'registry', 'federation')",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(statements.len() > 30, "{}", statements.len());
    let mut files = Vec::new();
    rust_files(&repo_file("etl/src"), &mut files);
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let shown = f
            .strip_prefix(repo_file(""))
            .unwrap_or(f)
            .display()
            .to_string();
        for s in rust_sql(&text) {
            statements.push((shown.clone(), s));
        }
    }
    let mut found = Vec::new();
    for (at, text) in &statements {
        // one statement at a time (a batch or a function body holds several)
        for sql in text.split(';') {
            for p in problems(&layout, sql) {
                found.push(format!("{at}: {p}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "{} problem(s):\n{}",
        found.len(),
        found.join("\n")
    );
}
