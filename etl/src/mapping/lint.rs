//! `mapping check`'s OMOP lint: which research views a mapping feeds, and what it writes that
//! neither a view nor an OHDSI tool will find.
//!
//! For every concept field of every emit, the lint collects the concept ids the field can
//! write (a constant, the values of a value map, every target of a concept map) and checks
//! them against the registry:
//! - a fact concept (`measurement_concept_id`, `condition_concept_id`, ...) that can be 0 is
//!   a fact no concept-driven query finds;
//! - with a vocabulary loaded, every concept must exist, be standard, and belong to the
//!   domain its column expects (a unit to `Unit`, a type to `Type Concept`, ...);
//! - the concepts are matched to `research.concept_set` (the roles the research views read):
//!   the mapping feeds the views of the roles its concepts fall in. A mapping that feeds a
//!   view is a breast-cancer mapping: its other fact concepts feed none, and say so.
//!
//! The lint only warns: a mapping that loads facts no view reads is legal (routine labs are).

use super::check::{Compiled, Src};
use crate::load::copy::Value;
use anyhow::Result;
use std::collections::{BTreeMap, BTreeSet};

/// The research views that read each role of `research.concept_role`.
pub const ROLE_VIEWS: &[(&str, &[&str])] = &[
    (
        "breast_cancer",
        &["diagnosis", "breast_cancer_patient", "modeling_cohort"],
    ),
    ("clinical_t", TUMOUR),
    ("clinical_n", TUMOUR),
    ("clinical_m", TUMOUR),
    ("clinical_stage", TUMOUR),
    ("t", TUMOUR_YP),
    ("n", TUMOUR_YP),
    ("m", TUMOUR),
    ("stage", TUMOUR),
    ("pathological_t", TUMOUR_YP),
    ("pathological_n", TUMOUR_YP),
    ("pathological_m", &["tumour_fact"]),
    ("pathological_stage", &["tumour_fact"]),
    ("grade", TUMOUR),
    ("grade_measurement", TUMOUR),
    ("laterality_of", TUMOUR),
    ("laterality", TUMOUR),
    ("histology_of", TUMOUR),
    ("histology", TUMOUR),
    ("er_status", RECEPTOR),
    ("er_pct", RECEPTOR),
    ("er_allred", RECEPTOR),
    ("pr_allred", RECEPTOR),
    ("pr_status", RECEPTOR),
    ("pr_pct", RECEPTOR),
    ("her2_ihc", RECEPTOR),
    ("her2_ihc_score", RECEPTOR),
    ("her2_ish", RECEPTOR),
    ("her2_overall", RECEPTOR),
    ("ki67_pct", RECEPTOR),
    ("result", RECEPTOR),
    (
        "antineoplastic",
        &[
            "systemic_therapy",
            "neoadjuvant_treatment",
            "modeling_cohort",
        ],
    ),
    ("therapy_setting_of", &["systemic_therapy"]),
    ("therapy_setting", &["systemic_therapy"]),
    (
        "breast_surgery",
        &["surgery", "recurrence", "modeling_cohort"],
    ),
    ("recurrence", &["recurrence_event", "recurrence"]),
    ("disease_status_assessment", &["disease_status"]),
    ("disease_status", &["disease_status"]),
    ("radiotherapy", &["radiotherapy"]),
    ("rt_total_dose", &["radiotherapy"]),
    ("rt_structure_roi", &["rt_structure_set"]),
    ("delineation_agreement", &["delineation_agreement"]),
    ("dose_volume", &["dose_volume"]),
];
const TUMOUR: &[&str] = &["tumour_fact", "breast_cancer_patient", "modeling_cohort"];
const TUMOUR_YP: &[&str] = &[
    "tumour_fact",
    "breast_cancer_patient",
    "pathologic_response",
    "modeling_cohort",
];
const RECEPTOR: &[&str] = &["receptor_status", "subtype", "modeling_cohort"];

/// The views that read `role` (empty for a role no view reads).
pub fn views_of(role: &str) -> &'static [&'static str] {
    ROLE_VIEWS
        .iter()
        .find(|(r, _)| *r == role)
        .map(|(_, v)| *v)
        .unwrap_or(&[])
}

/// What the lint found for one mapping.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Lint {
    /// Research views the mapping's facts feed.
    pub feeds: BTreeSet<String>,
    /// Warnings, each naming the mapping line.
    pub warnings: Vec<String>,
}

/// The domain a concept column expects (None: any domain).
pub fn expected_domain(column: &str) -> Option<&'static str> {
    Some(match column {
        c if c.ends_with("_type_concept_id") => "Type Concept",
        "unit_concept_id" | "dose_unit_concept_id" => "Unit",
        "gender_concept_id" => "Gender",
        "race_concept_id" => "Race",
        "ethnicity_concept_id" => "Ethnicity",
        "condition_status_concept_id" => "Condition Status",
        "route_concept_id" => "Route",
        "visit_concept_id" => "Visit",
        "condition_concept_id" => "Condition",
        "drug_concept_id" => "Drug",
        "procedure_concept_id" => "Procedure",
        "measurement_concept_id" => "Measurement",
        "observation_concept_id" => "Observation",
        "device_concept_id" => "Device",
        "episode_concept_id" => "Episode",
        "specimen_concept_id" => "Specimen",
        "anatomic_site_concept_id" => "Spec Anatomic Site",
        _ => return None,
    })
}

/// The table's fact concept column (what a fact is about).
fn is_fact_column(table: &str, column: &str) -> bool {
    let main = match table {
        "condition_occurrence" => "condition_concept_id",
        "drug_exposure" => "drug_concept_id",
        "procedure_occurrence" => "procedure_concept_id",
        "measurement" => "measurement_concept_id",
        "observation" => "observation_concept_id",
        "device_exposure" => "device_concept_id",
        "specimen" => "specimen_concept_id",
        "episode" => "episode_concept_id",
        "note" => "note_type_concept_id",
        _ => return false,
    };
    column == main
}

/// One concept a field can write.
struct Written {
    table: String,
    column: String,
    line: usize,
    concept: i32,
}

fn written(c: &Compiled) -> Vec<Written> {
    let mut out = Vec::new();
    for e in &c.emits {
        let layout = &c.layouts[e.layout];
        for (ci, x) in &e.fields {
            let column = layout.columns[*ci].name.clone();
            if !column.ends_with("concept_id") {
                continue;
            }
            let mut ids: Vec<i32> = Vec::new();
            match (&x.src, &x.values, x.lookup) {
                (_, _, Some((mi, col))) => {
                    ids.extend(c.concept_maps[mi].values(col).map(|v| v.unwrap_or(0)));
                }
                (_, values, None) if values.is_some() || !x.bins.is_empty() => {
                    let values = values.iter().flat_map(|v| v.values());
                    let bins = x.bins.iter().map(|b| &b.value);
                    ids.extend(values.chain(bins).filter_map(|v| v.parse::<i32>().ok()));
                    if let crate::mapping::check::Fallback::Value(o) = &x.fallback {
                        ids.extend(o.parse::<i32>().ok());
                    }
                }
                (Src::Const(Value::Int4(i)), None, None) => ids.push(*i),
                (Src::Expr(p), None, None) => ids.extend(p.literal_results()),
                _ => {}
            }
            ids.sort_unstable();
            ids.dedup();
            for concept in ids {
                out.push(Written {
                    table: e.table.clone(),
                    column: column.clone(),
                    line: x.line,
                    concept,
                });
            }
        }
    }
    out
}

/// Run the lint for one compiled mapping against the registry.
pub fn run(c: &Compiled, client: &mut postgres::Client) -> Result<Lint> {
    let w = written(c);
    let ids: Vec<i32> = w
        .iter()
        .map(|x| x.concept)
        .filter(|&i| i != 0)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let vocabulary_loaded: bool = client
        .query_one("SELECT EXISTS (SELECT 1 FROM cdm.concept)", &[])?
        .get(0);
    let mut concept: BTreeMap<i32, (String, String, Option<String>)> = BTreeMap::new();
    for r in client.query(
        "SELECT concept_id, concept_name, domain_id, standard_concept FROM cdm.concept
          WHERE concept_id = ANY($1)",
        &[&ids],
    )? {
        concept.insert(r.get(0), (r.get(1), r.get(2), r.get(3)));
    }
    let mut roles: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for r in client.query(
        "SELECT concept_id, role FROM research.concept_set WHERE concept_id = ANY($1)",
        &[&ids],
    )? {
        roles.entry(r.get(0)).or_default().push(r.get(1));
    }
    let file = &c.file_name;
    let mut lint = Lint::default();
    let mut unread = Vec::new();
    for x in &w {
        let at = format!("{file}:{}: {}.{}", x.line, x.table, x.column);
        if x.concept == 0 {
            if is_fact_column(&x.table, &x.column) {
                lint.warnings.push(format!(
                    "{at} can be concept 0: no concept-driven query (research views, OHDSI tools) finds these facts; map them to a standard concept"
                ));
            }
            continue;
        }
        match concept.get(&x.concept) {
            None if vocabulary_loaded => lint.warnings.push(format!(
                "{at}: concept {} is not in the loaded vocabulary",
                x.concept
            )),
            None => {}
            Some((name, domain, standard)) => {
                if standard.as_deref() != Some("S") {
                    lint.warnings.push(format!(
                        "{at}: concept {} ({name}) is not a standard concept",
                        x.concept
                    ));
                }
                if let Some(want) = expected_domain(&x.column) {
                    if domain != want {
                        lint.warnings.push(format!(
                            "{at}: concept {} ({name}) is in domain {domain}, the column expects {want}",
                            x.concept
                        ));
                    }
                }
            }
        }
        // Only what a fact is (its concept) or holds (its value concept) feeds a view.
        if !is_fact_column(&x.table, &x.column) && x.column != "value_as_concept_id" {
            continue;
        }
        let views: BTreeSet<&str> = roles
            .get(&x.concept)
            .into_iter()
            .flatten()
            .flat_map(|r| views_of(r).iter().copied())
            .collect();
        if views.is_empty() {
            if is_fact_column(&x.table, &x.column) {
                unread.push((at, x.concept));
            }
        } else {
            lint.feeds.extend(views.into_iter().map(String::from));
        }
    }
    if !lint.feeds.is_empty() {
        for (at, id) in unread {
            let name = concept
                .get(&id)
                .map(|(n, _, _)| format!(" ({n})"))
                .unwrap_or_default();
            lint.warnings.push(format!(
                "{at}: concept {id}{name} feeds no research view (research.concept_role has no role for it)"
            ));
        }
    }
    Ok(lint)
}
