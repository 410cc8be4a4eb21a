//! `registrar check`: data-quality checks in the spirit of OHDSI's DataQualityDashboard.
//!
//! Each check counts the rows that violate it (numerator) among the rows it applies to
//! (denominator); it fails when the violating percentage exceeds its threshold. A failed
//! check of severity `fatal` makes the command exit non-zero.

use anyhow::{Context, Result};
use serde::Serialize;

/// Severity of a failed check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Fatal,
    Warning,
}

/// A check definition.
pub struct Check {
    pub id: &'static str,
    pub category: &'static str,
    pub description: &'static str,
    pub severity: Severity,
    /// Violating share, in percent, that is still accepted.
    pub threshold_pct: f64,
    /// `SELECT count(*)` of violating rows.
    pub numerator: String,
    /// `SELECT count(*)` of rows the check applies to.
    pub denominator: String,
}

/// The outcome of one check.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Outcome {
    pub id: String,
    pub category: String,
    pub description: String,
    pub severity: Severity,
    pub threshold_pct: f64,
    pub violating: i64,
    pub total: i64,
    pub pct: f64,
    pub passed: bool,
}

const EVENT_TABLES: &[(&str, &str)] = &[
    ("condition_occurrence", "condition_start_date"),
    ("measurement", "measurement_date"),
    ("observation", "observation_date"),
    ("drug_exposure", "drug_exposure_start_date"),
    ("procedure_occurrence", "procedure_date"),
    ("specimen", "specimen_date"),
];

fn union_events(date_alias: &str) -> String {
    EVENT_TABLES
        .iter()
        .map(|(t, d)| format!("SELECT person_id, {d} AS {date_alias} FROM cdm.{t}"))
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

// What the checks read, by the research views' concept roles (research.concept_role), never
// by a source's own codes: any mapping, or another ETL's cdm, is checked alike. Each is read
// as a list (not correlated with the fact: the concept sets stay on a Citus coordinator).
const PERCENT: &str = "measurement_concept_id IN (SELECT concept_id FROM research.concept_set WHERE role IN ('er_pct', 'pr_pct', 'ki67_pct'))";
const GRADE: &str = "measurement_concept_id IN (SELECT concept_id FROM research.concept_set WHERE role = 'grade_measurement')";
const RECEPTOR: &str = "measurement_concept_id IN (SELECT concept_id FROM research.concept_set WHERE role IN ('er_status', 'er_pct', 'er_allred', 'pr_status', 'pr_pct', 'pr_allred', 'her2_ihc', 'her2_ish', 'her2_overall'))";
const PATHOLOGICAL: &str = "measurement_concept_id IN (SELECT concept_id FROM research.concept_set WHERE role IN ('pathological_t', 'pathological_n'))";

/// Every check registrar runs.
pub fn checks() -> Vec<Check> {
    let events = union_events("d");
    let birth =
        "make_date(p.year_of_birth, coalesce(p.month_of_birth, 1), coalesce(p.day_of_birth, 1))";
    let mut v = vec![
        Check {
            id: "plausibility.event_before_birth",
            category: "plausibility",
            description: "clinical events dated before the person's birth",
            severity: Severity::Fatal,
            threshold_pct: 0.0,
            numerator: format!("SELECT count(*) FROM ({events}) e JOIN cdm.person p USING (person_id) WHERE e.d < {birth}"),
            denominator: format!("SELECT count(*) FROM ({events}) e"),
        },
        Check {
            id: "plausibility.event_after_death",
            category: "plausibility",
            description: "clinical events more than 60 days after death",
            severity: Severity::Warning,
            threshold_pct: 1.0,
            numerator: format!("SELECT count(*) FROM ({events}) e JOIN cdm.death x USING (person_id) WHERE e.d > x.death_date + 60"),
            denominator: format!("SELECT count(*) FROM ({events}) e"),
        },
        Check {
            id: "plausibility.year_of_birth",
            category: "plausibility",
            description: "year of birth before the registry's limit (registrar limits) or in the future",
            severity: Severity::Warning,
            threshold_pct: 0.0,
            numerator: "SELECT count(*) FROM cdm.person WHERE year_of_birth < (SELECT min_birth_year FROM registry.plausibility) OR year_of_birth > extract(year FROM current_date)".into(),
            denominator: "SELECT count(*) FROM cdm.person".into(),
        },
        Check {
            id: "plausibility.age_at_event",
            category: "plausibility",
            description: "clinical events at an age above the registry's limit (registrar limits)",
            severity: Severity::Warning,
            threshold_pct: 0.0,
            numerator: format!("SELECT count(*) FROM ({events}) e JOIN cdm.person p USING (person_id) WHERE extract(year FROM e.d) - p.year_of_birth > (SELECT max_age_years FROM registry.plausibility)"),
            denominator: format!("SELECT count(*) FROM ({events}) e"),
        },
        Check {
            id: "plausibility.event_before_limit",
            category: "plausibility",
            description: "clinical events dated before the registry's earliest event year (registrar limits)",
            severity: Severity::Warning,
            threshold_pct: 0.0,
            numerator: format!("SELECT count(*) FROM ({events}) e WHERE extract(year FROM e.d) < (SELECT min_event_year FROM registry.plausibility)"),
            denominator: format!("SELECT count(*) FROM ({events}) e"),
        },
        Check {
            id: "plausibility.receptor_percent_range",
            category: "plausibility",
            description: "ER, PR or Ki-67 percentages outside 0-100",
            severity: Severity::Fatal,
            threshold_pct: 0.0,
            numerator: format!("SELECT count(*) FROM cdm.measurement WHERE {PERCENT} AND (value_as_number < 0 OR value_as_number > 100)"),
            denominator: format!("SELECT count(*) FROM cdm.measurement WHERE {PERCENT}"),
        },
        Check {
            id: "plausibility.grade_range",
            category: "plausibility",
            description: "histological grade other than 1, 2 or 3",
            severity: Severity::Fatal,
            threshold_pct: 0.0,
            numerator: format!("SELECT count(*) FROM cdm.measurement WHERE {GRADE} AND value_as_number NOT IN (1, 2, 3)"),
            denominator: format!("SELECT count(*) FROM cdm.measurement WHERE {GRADE}"),
        },
        Check {
            id: "plausibility.observation_period_order",
            category: "plausibility",
            description: "observation periods that end before they start",
            severity: Severity::Fatal,
            threshold_pct: 0.0,
            numerator: "SELECT count(*) FROM cdm.observation_period WHERE observation_period_end_date < observation_period_start_date".into(),
            denominator: "SELECT count(*) FROM cdm.observation_period".into(),
        },
        Check {
            id: "completeness.receptor_without_diagnosis",
            category: "completeness",
            description: "persons with receptor results but no breast cancer diagnosis",
            severity: Severity::Fatal,
            threshold_pct: 0.0,
            numerator: format!("SELECT count(DISTINCT m.person_id) FROM cdm.measurement m WHERE m.{RECEPTOR} AND NOT EXISTS (SELECT 1 FROM research.diagnosis d WHERE d.person_id = m.person_id)"),
            denominator: format!("SELECT count(DISTINCT person_id) FROM cdm.measurement WHERE {RECEPTOR}"),
        },
        Check {
            id: "completeness.pcr_without_surgery",
            category: "completeness",
            description: "persons with a pathological T or N (pT, ypT) but no breast surgery",
            severity: Severity::Fatal,
            threshold_pct: 0.0,
            numerator: format!("SELECT count(DISTINCT m.person_id) FROM cdm.measurement m WHERE m.{PATHOLOGICAL} AND NOT EXISTS (SELECT 1 FROM research.surgery s WHERE s.person_id = m.person_id)"),
            denominator: format!("SELECT count(DISTINCT person_id) FROM cdm.measurement WHERE {PATHOLOGICAL}"),
        },
        Check {
            id: "completeness.person_without_diagnosis",
            category: "completeness",
            description: "persons without a breast cancer diagnosis",
            severity: Severity::Warning,
            threshold_pct: 5.0,
            numerator: "SELECT count(*) FROM cdm.person p WHERE NOT EXISTS (SELECT 1 FROM research.diagnosis d WHERE d.person_id = p.person_id)".into(),
            denominator: "SELECT count(*) FROM cdm.person".into(),
        },
        Check {
            id: "completeness.unknown_gender",
            category: "completeness",
            description: "persons with gender concept 0",
            severity: Severity::Warning,
            threshold_pct: 1.0,
            numerator: "SELECT count(*) FROM cdm.person WHERE gender_concept_id = 0".into(),
            denominator: "SELECT count(*) FROM cdm.person".into(),
        },
        Check {
            id: "conformance.episode_event_orphan",
            category: "conformance",
            description: "episode_event rows whose episode does not exist",
            severity: Severity::Fatal,
            threshold_pct: 0.0,
            // episode_event has no person_id (local to a Citus coordinator, episode is
            // distributed): the episode ids are read first, then compared.
            numerator: "WITH e AS MATERIALIZED (SELECT episode_id FROM cdm.episode) SELECT count(*) FROM cdm.episode_event ee WHERE NOT EXISTS (SELECT 1 FROM e WHERE e.episode_id = ee.episode_id)".into(),
            denominator: "SELECT count(*) FROM cdm.episode_event".into(),
        },
        Check {
            id: "conformance.lineage_orphan",
            category: "conformance",
            description: "lineage rows whose source file is not in the ledger",
            severity: Severity::Fatal,
            threshold_pct: 0.0,
            numerator: "SELECT count(*) FROM registry.lineage l WHERE NOT EXISTS (SELECT 1 FROM registry.source_file f WHERE f.source_file_id = l.source_file_id)".into(),
            denominator: "SELECT count(*) FROM registry.lineage".into(),
        },
        Check {
            id: "conformance.image_feature_orphan",
            category: "conformance",
            description: "image_feature rows whose image_occurrence (of the same person) does not exist",
            severity: Severity::Fatal,
            threshold_pct: 0.0,
            numerator: "SELECT count(*) FROM cdm.image_feature f WHERE NOT EXISTS (SELECT 1 FROM cdm.image_occurrence i WHERE i.person_id = f.person_id AND i.image_occurrence_id = f.image_occurrence_id)".into(),
            denominator: "SELECT count(*) FROM cdm.image_feature".into(),
        },
    ];
    for (t, _) in EVENT_TABLES
        .iter()
        .chain([("death", ""), ("observation_period", "")].iter())
    {
        v.push(Check {
            id: Box::leak(format!("conformance.{t}_person_orphan").into_boxed_str()),
            category: "conformance",
            description: Box::leak(format!("{t} rows whose person_id is not in cdm.person").into_boxed_str()),
            severity: Severity::Fatal,
            threshold_pct: 0.0,
            numerator: format!("SELECT count(*) FROM cdm.{t} x WHERE NOT EXISTS (SELECT 1 FROM cdm.person p WHERE p.person_id = x.person_id)"),
            denominator: format!("SELECT count(*) FROM cdm.{t}"),
        });
    }
    for (t, c, sev, thr) in [
        (
            "condition_occurrence",
            "condition_concept_id",
            Severity::Warning,
            5.0,
        ),
        ("drug_exposure", "drug_concept_id", Severity::Warning, 5.0),
    ] {
        v.push(Check {
            id: Box::leak(format!("conformance.{c}_unmapped").into_boxed_str()),
            category: "conformance",
            description: Box::leak(
                format!("{t} rows with {c} 0 (no standard concept)").into_boxed_str(),
            ),
            severity: sev,
            threshold_pct: thr,
            numerator: format!("SELECT count(*) FROM cdm.{t} WHERE {c} = 0"),
            denominator: format!("SELECT count(*) FROM cdm.{t}"),
        });
        // Concepts not in the loaded vocabulary (only when a vocabulary is loaded).
        v.push(Check {
            id: Box::leak(format!("conformance.{c}_not_in_vocabulary").into_boxed_str()),
            category: "conformance",
            description: Box::leak(format!("{t}.{c} not found among standard concepts of the loaded vocabulary").into_boxed_str()),
            severity: Severity::Warning,
            threshold_pct: 0.0,
            numerator: format!("SELECT CASE WHEN EXISTS (SELECT 1 FROM cdm.concept) THEN (SELECT count(*) FROM cdm.{t} x WHERE x.{c} <> 0 AND NOT EXISTS (SELECT 1 FROM cdm.concept k WHERE k.concept_id = x.{c} AND k.standard_concept = 'S')) ELSE 0 END"),
            denominator: format!("SELECT count(*) FROM cdm.{t}"),
        });
    }
    // The research views read the marts: a person whose facts changed after the last refresh
    // is seen by researchers as before.
    v.push(Check {
        id: "conformance.research_marts_current",
        category: "conformance",
        description: "persons whose facts changed since the research marts were refreshed (run `registrar research refresh`)",
        severity: Severity::Warning,
        threshold_pct: 0.0,
        numerator: "SELECT CASE WHEN (SELECT refreshed_at IS NULL FROM mart.refresh_state) THEN (SELECT count(*) FROM cdm.person) ELSE (SELECT count(*) FROM registry.changed_person) END".into(),
        denominator: "SELECT greatest((SELECT count(*) FROM cdm.person), (SELECT count(*) FROM registry.changed_person))".into(),
    });
    v
}

/// Run every check.
pub fn run(client: &mut postgres::Client) -> Result<Vec<Outcome>> {
    let mut out = Vec::new();
    for c in checks() {
        let n: i64 = client
            .query_one(&c.numerator, &[])
            .with_context(|| format!("check {} failed to run", c.id))?
            .get(0);
        let d: i64 = client.query_one(&c.denominator, &[])?.get(0);
        let pct = if d == 0 {
            0.0
        } else {
            100.0 * n as f64 / d as f64
        };
        out.push(Outcome {
            id: c.id.into(),
            category: c.category.into(),
            description: c.description.into(),
            severity: c.severity,
            threshold_pct: c.threshold_pct,
            violating: n,
            total: d,
            pct,
            passed: pct <= c.threshold_pct,
        });
    }
    Ok(out)
}

/// A terminal table.
pub fn text(out: &[Outcome]) -> String {
    let mut s = format!(
        "{:<6} {:<8} {:<44} {:>10} {:>10} {:>8}  {}\n",
        "status", "severity", "check", "violating", "of", "%", "description"
    );
    for o in out {
        s.push_str(&format!(
            "{:<6} {:<8} {:<44} {:>10} {:>10} {:>7.2}%  {}\n",
            if o.passed { "ok" } else { "FAIL" },
            format!("{:?}", o.severity).to_lowercase(),
            o.id,
            o.violating,
            o.total,
            o.pct,
            o.description
        ));
    }
    let failed = out.iter().filter(|o| !o.passed).count();
    s.push_str(&format!("{} checks, {failed} failed\n", out.len()));
    s
}

/// A self-contained HTML page.
pub fn html(out: &[Outcome]) -> String {
    use crate::privacy::report::html_escape;
    let mut s = String::from("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>registrar data quality</title><style>body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;font-size:.9em}td.n{text-align:right}tr.fail td{background:#fde2e2}</style></head><body><h1>Data quality</h1><table><tr><th>status</th><th>severity</th><th>check</th><th>violating</th><th>of</th><th>%</th><th>threshold %</th><th>description</th></tr>");
    for o in out {
        s.push_str(&format!(
            "<tr class=\"{}\"><td>{}</td><td>{:?}</td><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{:.2}</td><td class=n>{}</td><td>{}</td></tr>",
            if o.passed { "ok" } else { "fail" },
            if o.passed { "ok" } else { "FAIL" },
            o.severity,
            html_escape(&o.id),
            o.violating,
            o.total,
            o.pct,
            o.threshold_pct,
            html_escape(&o.description)
        ));
    }
    s.push_str("</table></body></html>\n");
    s
}
