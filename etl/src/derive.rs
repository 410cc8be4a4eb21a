//! Tables derived from the loaded facts, rebuilt by the nightly after its sources: the
//! `cdm_source` row OHDSI tools start from, and one `observation_period` per person.
//!
//! - `cdm.cdm_source`: one row naming the registry (the node id of `federation.policy`), the
//!   CDM version (`v5.4`, concept 756265 "OMOP CDM Version 5.4.0", as OHDSI's ETL-Synthea
//!   writes it: inst/sql/sql_server/cdm_version/v540/insert_cdm_source.sql), today's release
//!   dates and the loaded vocabulary's version (`vocabulary_id = 'None'`), or `none loaded`.
//! - `cdm.observation_period`: per person, from the earliest to the latest date of any of
//!   the person's facts (conditions, drugs, procedures, measurements, observations, visits,
//!   specimens, images, episodes, death), with period type 32882 "Derived value" (as
//!   ETL-Synthea does: .../v540/insert_observation_period.sql). A person with no dated fact has
//!   none. The dates are the registry's (shifted, when dates are shifted), so a period holds
//!   its person's facts.
//!
//! Both are rebuilt whole in one transaction: they depend only on what is loaded, so a run
//! killed half-way leaves the previous ones, and the next run rebuilds them.

use anyhow::{Context, Result};

/// OMOP CDM Version 5.4.0 (see the module doc for the source).
pub const CDM_V54_CONCEPT: i32 = 756_265;
/// Period type "Derived value" (see the module doc for the source).
pub const DERIVED_VALUE_TYPE: i32 = 32_882;

/// The dated facts an observation period spans: (table, start column, end column).
const DATED: &[(&str, &str, Option<&str>)] = &[
    (
        "condition_occurrence",
        "condition_start_date",
        Some("condition_end_date"),
    ),
    (
        "drug_exposure",
        "drug_exposure_start_date",
        Some("drug_exposure_end_date"),
    ),
    (
        "procedure_occurrence",
        "procedure_date",
        Some("procedure_end_date"),
    ),
    ("measurement", "measurement_date", None),
    ("observation", "observation_date", None),
    (
        "visit_occurrence",
        "visit_start_date",
        Some("visit_end_date"),
    ),
    ("specimen", "specimen_date", None),
    ("image_occurrence", "image_occurrence_date", None),
    ("episode", "episode_start_date", Some("episode_end_date")),
    ("death", "death_date", None),
];

/// What was rebuilt.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Derived {
    pub observation_periods: i64,
}

/// Rebuild `cdm_source` and `observation_period`.
pub fn rebuild(client: &mut postgres::Client) -> Result<Derived> {
    let mut tx = client.transaction()?;
    tx.batch_execute(&format!(
        "DELETE FROM cdm.cdm_source;
         INSERT INTO cdm.cdm_source (cdm_source_name, cdm_source_abbreviation, cdm_holder,
                source_description, cdm_etl_reference, source_release_date, cdm_release_date,
                cdm_version, cdm_version_concept_id, vocabulary_version)
         SELECT 'registrar breast-cancer registry, node ' || p.node_id, left(p.node_id, 25),
                p.node_id,
                'Pseudonymised hospital, study, FHIR and DICOM sources of a multi-institutional breast-cancer research registry',
                'registrar {}', current_date, current_date, 'v5.4', {CDM_V54_CONCEPT},
                coalesce((SELECT left(v.vocabulary_version, 20) FROM cdm.vocabulary v
                           WHERE v.vocabulary_id = 'None' AND v.vocabulary_version IS NOT NULL
                           LIMIT 1), 'none loaded')
           FROM federation.policy p;",
        env!("CARGO_PKG_VERSION")
    ))
    .context("could not write cdm.cdm_source")?;
    let spans: Vec<String> = DATED
        .iter()
        .map(|(t, start, end)| match end {
            Some(e) => {
                format!("SELECT person_id, {start} AS s, coalesce({e}, {start}) AS e FROM cdm.{t}")
            }
            None => format!("SELECT person_id, {start}, {start} FROM cdm.{t}"),
        })
        .collect();
    tx.batch_execute("DELETE FROM cdm.observation_period")?;
    let n = tx
        .execute(
            &format!(
                "INSERT INTO cdm.observation_period (observation_period_id, person_id,
                        observation_period_start_date, observation_period_end_date,
                        period_type_concept_id)
                 SELECT row_number() OVER (ORDER BY person_id)::int, person_id, min(s),
                        greatest(max(e), max(s)), {DERIVED_VALUE_TYPE}
                   FROM ({}) f
                  WHERE person_id IN (SELECT person_id FROM cdm.person)
                  GROUP BY person_id",
                spans.join(" UNION ALL ")
            ),
            &[],
        )
        .context("could not write cdm.observation_period")?;
    tx.commit()?;
    Ok(Derived {
        observation_periods: n as i64,
    })
}
