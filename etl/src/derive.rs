//! Tables derived from the loaded facts, rebuilt by the nightly after its sources: the
//! `cdm_source` row OHDSI tools start from, one `observation_period` per person, and the
//! condition and drug eras.
//!
//! - `cdm.cdm_source`: one row naming the registry (the node id of `federation.policy`), the
//!   CDM version (`v5.4`, concept 756265 "OMOP CDM Version 5.4.0", as OHDSI's ETL-Synthea
//!   writes it: inst/sql/sql_server/cdm_version/v540/insert_cdm_source.sql), today's release
//!   dates and the loaded vocabulary's version (`vocabulary_id = 'None'`), or `none loaded`.
//! - `cdm.observation_period`: per person, from the earliest to the latest date of any of
//!   the person's facts (conditions, drugs, procedures, measurements, observations, visits,
//!   specimens, images, episodes, death), with period type 32882 "Standard algorithm from EHR" (as
//!   ETL-Synthea does: .../v540/insert_observation_period.sql). A person with no dated fact has
//!   none. The dates are the registry's (shifted, when dates are shifted), so a period holds
//!   its person's facts.
//! - `cdm.condition_era`: OHDSI's standard era logic, as ETL-Synthea's
//!   .../v540/insert_condition_era.sql (taken from ETL-CMS's create_CDMv5_condition_era.sql)
//!   defines it. Per person and `condition_concept_id` (a standard concept; 0, "no standard
//!   concept", makes no era: the filter the script's comment recommends, though ETL-Synthea's
//!   copy has it commented out), an occurrence ends on `condition_end_date`, or the day after
//!   its start when that is empty. Ends are padded by the 30-day persistence window, and an
//!   era closes where every occurrence begun so far has reached its padded end (a start on the
//!   day of a padded end continues the era): so occurrences at most 30 days apart are one era.
//!   Its start is its first occurrence's start, its end the padded end minus the 30 days (the
//!   era's latest end), `condition_occurrence_count` its occurrences.
//! - `cdm.drug_era`: likewise, after .../v540/insert_drug_era.sql (ETL-CMS's
//!   create_CDMv5_drug_era_non_stockpile.sql). Exposures are rolled up to their ingredients:
//!   the `concept_ancestor` ancestors in vocabulary `RxNorm` of class `Ingredient` (one row per
//!   ingredient of a combination drug); a `drug_concept_id` that is itself an RxNorm
//!   Ingredient in `cdm.concept` is its own, even without the self row (`concept_ancestor`
//!   from Athena has it; a trimmed one may not). Concept 0, no ingredient, or a negative
//!   `days_supply` (the script skips those as a data-quality issue) make no era. An exposure
//!   ends on `drug_exposure_end_date`, else start + `days_supply` (when not 0), else the day
//!   after its start (CDM 5.4 requires the end date, so the others are a fallback).
//!   Overlapping or touching exposures are first merged, without a window, into
//!   sub-exposures; those are merged into eras with the 30-day window as above.
//!   `drug_exposure_count` counts the exposures, `gap_days` is the era's length minus the
//!   days its sub-exposures cover, floored at 0 (the script does not floor it; it is never
//!   negative unless an exposure ends before it starts).
//!
//! - Oncology (OHDSI Oncology Working Group conventions): a tumour fact (a measurement whose
//!   concept is a TNM, stage, grade, laterality or histology role of `research.concept_role`)
//!   with no event link is linked to the person's first breast-cancer diagnosis
//!   (`meas_event_field_concept_id` 1147127 `condition_occurrence.condition_occurrence_id`,
//!   `measurement_event_id`), as are the ones whose linked diagnosis is gone; a link the source
//!   gave is kept. Each diagnosis of `research.diagnosis` gets a "Disease First Occurrence"
//!   episode (32528; type 32882), whose object is the diagnosis concept and whose
//!   `episode_event` is the condition. These episodes change only when the diagnosis does
//!   (the concept ids are cited in vocabulary/SOURCES.tsv).
//!
//! Eras are built from the facts of persons in `cdm.person` only (as observation periods
//! are), and numbered by person, concept and start, so a rebuild of the same facts gives the
//! same rows.
//!
//! The same transaction first refreshes the research marts of the persons whose facts
//! changed ([`crate::marts`]): the episodes read the diagnosis mart, and researchers see the
//! marts and the derived tables change together.
//!
//! All are rebuilt whole in one transaction: they depend only on what is loaded, so a run
//! killed half-way leaves the previous ones, and the next run rebuilds them.

use anyhow::{Context, Result};

/// Episode "Disease First Occurrence" (OHDSI Oncology conventions).
pub const DISEASE_FIRST_OCCURRENCE: i32 = 32_528;
/// CDM field concept `condition_occurrence.condition_occurrence_id`.
pub const FIELD_CONDITION_OCCURRENCE_ID: i32 = 1_147_127;
/// The roles of `research.concept_role` whose measurements describe the tumour.
const TUMOUR_ROLES: &str = "'clinical_t', 'clinical_n', 'clinical_m', 'clinical_stage', \
    'pathological_t', 'pathological_n', 'pathological_m', 'pathological_stage', 't', 'n', 'm', \
    'stage', 'grade', 'grade_measurement', 'laterality_of', 'histology_of'";

/// OMOP CDM Version 5.4.0 (see the module doc for the source).
pub const CDM_V54_CONCEPT: i32 = 756_265;
/// Period type "Standard algorithm from EHR" (see the module doc for the source).
pub const PERIOD_TYPE_ALGORITHM: i32 = 32_882;
/// Days between two occurrences (or sub-exposures) that still make one era (OHDSI's
/// persistence window; see the module doc for the source).
pub const PERSISTENCE_WINDOW_DAYS: i32 = 30;

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
    pub condition_eras: i64,
    pub drug_eras: i64,
    /// Tumour facts newly linked to their diagnosis.
    pub modifiers_linked: i64,
    /// Disease First Occurrence episodes written (new or changed diagnoses).
    pub first_occurrence_episodes: i64,
    /// The research marts' refresh (the persons whose facts changed).
    pub marts: crate::marts::Refreshed,
}

/// The dates on which eras close, over the intervals of the query `src` (columns
/// `person_id, concept_id, s, e`, start and end dates), each end padded by `pad` days: walking
/// each person's and concept's starts and padded ends by date (a start before an end of the
/// same day), an era closes at the event after which as many intervals have ended as have
/// begun. The padding is taken off again. Columns `person_id, concept_id, era_end`.
fn era_closes(src: &str, pad: i32) -> String {
    format!(
        "SELECT person_id, concept_id, d - {pad} AS era_end
           FROM (SELECT person_id, concept_id, d,
                        sum(step) OVER (PARTITION BY person_id, concept_id
                                        ORDER BY d, step DESC ROWS UNBOUNDED PRECEDING) AS open
                   FROM (SELECT person_id, concept_id, s AS d, 1 AS step FROM {src}
                         UNION ALL
                         SELECT person_id, concept_id, e + {pad}, -1 FROM {src}) events) walk
          WHERE open = 0"
    )
}

/// `cdm.condition_era` from `cdm.condition_occurrence` (see the module doc).
fn condition_era_sql() -> String {
    let w = PERSISTENCE_WINDOW_DAYS;
    format!(
        "WITH occ AS (
             SELECT condition_occurrence_id AS id, person_id, condition_concept_id AS concept_id,
                    condition_start_date AS s,
                    coalesce(condition_end_date, condition_start_date + 1) AS e
               FROM cdm.condition_occurrence
              WHERE condition_concept_id <> 0
                AND person_id IN (SELECT person_id FROM cdm.person)),
         closes AS ({closes}),
         -- each occurrence belongs to the era that closes first on or after its start
         placed AS (
             SELECT o.id, o.person_id, o.concept_id, o.s, min(c.era_end) AS era_end
               FROM occ o
               JOIN closes c ON c.person_id = o.person_id AND c.concept_id = o.concept_id
                            AND c.era_end >= o.s
              GROUP BY o.id, o.person_id, o.concept_id, o.s)
         INSERT INTO cdm.condition_era (condition_era_id, person_id, condition_concept_id,
                condition_era_start_date, condition_era_end_date, condition_occurrence_count)
         SELECT row_number() OVER (ORDER BY person_id, concept_id, min(s))::int, person_id,
                concept_id, min(s), era_end, count(*)::int
           FROM placed
          GROUP BY person_id, concept_id, era_end",
        closes = era_closes("occ", w),
    )
}

/// `cdm.drug_era` from `cdm.drug_exposure`, rolled up to ingredients (see the module doc).
fn drug_era_sql() -> String {
    let w = PERSISTENCE_WINDOW_DAYS;
    format!(
        "WITH ingredient AS (
             SELECT ca.descendant_concept_id AS drug, ca.ancestor_concept_id AS ingredient
               FROM cdm.concept_ancestor ca
               JOIN cdm.concept c ON c.concept_id = ca.ancestor_concept_id
              WHERE c.vocabulary_id = 'RxNorm' AND c.concept_class_id = 'Ingredient'
             UNION
             SELECT concept_id, concept_id FROM cdm.concept
              WHERE vocabulary_id = 'RxNorm' AND concept_class_id = 'Ingredient'),
         exposure AS (
             SELECT d.drug_exposure_id AS id, d.person_id, i.ingredient AS concept_id,
                    d.drug_exposure_start_date AS s,
                    coalesce(d.drug_exposure_end_date,
                             nullif(d.drug_exposure_start_date + d.days_supply,
                                    d.drug_exposure_start_date),
                             d.drug_exposure_start_date + 1) AS e
               FROM cdm.drug_exposure d
               JOIN ingredient i ON i.drug = d.drug_concept_id
              WHERE d.drug_concept_id <> 0 AND coalesce(d.days_supply, 0) >= 0
                AND d.person_id IN (SELECT person_id FROM cdm.person)),
         sub_closes AS ({sub_closes}),
         placed AS (
             SELECT x.id, x.person_id, x.concept_id, x.s, min(c.era_end) AS sub_end
               FROM exposure x
               JOIN sub_closes c ON c.person_id = x.person_id AND c.concept_id = x.concept_id
                                AND c.era_end >= x.s
              GROUP BY x.id, x.person_id, x.concept_id, x.s),
         -- overlapping or touching exposures, merged without a window
         sub AS (
             SELECT person_id, concept_id, min(s) AS s, sub_end AS e, count(*) AS n,
                    sub_end - min(s) AS exposed
               FROM placed
              GROUP BY person_id, concept_id, sub_end),
         closes AS ({closes}),
         sub_placed AS (
             SELECT u.person_id, u.concept_id, u.s, u.n, u.exposed, min(c.era_end) AS era_end
               FROM sub u
               JOIN closes c ON c.person_id = u.person_id AND c.concept_id = u.concept_id
                            AND c.era_end >= u.s
              GROUP BY u.person_id, u.concept_id, u.s, u.n, u.exposed)
         INSERT INTO cdm.drug_era (drug_era_id, person_id, drug_concept_id, drug_era_start_date,
                drug_era_end_date, drug_exposure_count, gap_days)
         SELECT row_number() OVER (ORDER BY person_id, concept_id, min(s))::int, person_id,
                concept_id, min(s), era_end, sum(n)::int,
                greatest((era_end - min(s)) - sum(exposed), 0)::int
           FROM sub_placed
          GROUP BY person_id, concept_id, era_end",
        sub_closes = era_closes("exposure", 0),
        closes = era_closes("sub", w),
    )
}

/// Rebuild `cdm_source`, `observation_period`, `condition_era` and `drug_era`.
pub fn rebuild(client: &mut postgres::Client) -> Result<Derived> {
    // Fresh statistics for what was just loaded: the research marts below (and a
    // researcher's first query) are planned on them. Outside the transaction: statistics
    // need none, and on Citus an ANALYZE (run on every shard at once) cannot follow the
    // transaction's first writes.
    client
        .batch_execute(
            "ANALYZE cdm.person, cdm.condition_occurrence, cdm.measurement, cdm.observation,
                     cdm.drug_exposure, cdm.procedure_occurrence, cdm.episode, cdm.episode_event,
                     cdm.death",
        )
        .context("could not analyze the cdm tables")?;
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
    // The views' concept sets follow the vocabulary, however it was loaded.
    tx.batch_execute("SELECT research.refresh_concept_sets()")
        .context("could not refresh the research concept sets")?;
    // The research marts of the persons whose facts changed (the episodes below read the
    // diagnosis mart), in this transaction: researchers see them change with the rest.
    let marts = crate::marts::refresh(&mut tx, crate::marts::Scope::Changed)?;
    let modifiers_linked = tx
        .execute(
            &format!(
                "UPDATE cdm.measurement m
                    SET meas_event_field_concept_id = {FIELD_CONDITION_OCCURRENCE_ID},
                        measurement_event_id = d.condition_occurrence_id
                   FROM research.diagnosis d, research.concept_set cs
                  WHERE m.person_id = d.person_id AND cs.concept_id = m.measurement_concept_id
                    AND cs.role IN ({TUMOUR_ROLES})
                    AND (m.measurement_event_id IS NULL
                         OR m.meas_event_field_concept_id = {FIELD_CONDITION_OCCURRENCE_ID}
                            AND m.measurement_event_id <> d.condition_occurrence_id
                            AND NOT EXISTS (SELECT 1 FROM cdm.condition_occurrence c
                                             WHERE c.person_id = m.person_id
                                               AND c.condition_occurrence_id = m.measurement_event_id))"
            ),
            &[],
        )
        .context("could not link tumour facts to their diagnosis")? as i64;
    // First-occurrence episodes: drop the ones whose diagnosis is gone or changed, add the
    // missing ones.
    // (episode_event has no person_id: local to a Citus coordinator, so it is read apart
    // from the distributed tables, here and below.)
    let stale = format!(
        "WITH ee AS MATERIALIZED (SELECT episode_id, event_id FROM cdm.episode_event)
         SELECT e.episode_id FROM cdm.episode e
           LEFT JOIN ee ON ee.episode_id = e.episode_id
           LEFT JOIN research.diagnosis d ON d.person_id = e.person_id
          WHERE e.episode_concept_id = {DISEASE_FIRST_OCCURRENCE}
            AND e.episode_type_concept_id = {PERIOD_TYPE_ALGORITHM}
            AND (d.person_id IS NULL OR ee.event_id IS DISTINCT FROM d.condition_occurrence_id
                 OR e.episode_start_date <> d.diagnosis_date
                 OR e.episode_object_concept_id <> d.diagnosis_concept_id)"
    );
    // The ids travel through here, not a temporary table: on Citus, episode_event is read
    // over a connection of its own, which sees no temporary table of this session.
    let stale: Vec<i64> = tx
        .query(&format!("SELECT episode_id::bigint FROM ({stale}) s"), &[])
        .context("could not find changed first-occurrence episodes")?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !stale.is_empty() {
        tx.execute(
            "DELETE FROM cdm.episode_event WHERE episode_id = ANY($1::bigint[])",
            &[&stale],
        )
        .and_then(|_| {
            tx.execute(
                "DELETE FROM cdm.episode WHERE episode_id = ANY($1::bigint[])",
                &[&stale],
            )
        })
        .context("could not remove changed first-occurrence episodes")?;
    }
    // The missing episodes: found among the distributed tables, numbered here, then written
    // to episode (distributed) and episode_event (local) each by a statement of its own.
    let missing = tx
        .query(
            &format!(
                "SELECT d.person_id::bigint, d.diagnosis_date, d.diagnosis_concept_id::bigint,
                        d.condition_occurrence_id::bigint
                   FROM research.diagnosis d
                  WHERE NOT EXISTS (SELECT 1 FROM cdm.episode e
                                     WHERE e.person_id = d.person_id
                                       AND e.episode_concept_id = {DISEASE_FIRST_OCCURRENCE}
                                       AND e.episode_type_concept_id = {PERIOD_TYPE_ALGORITHM})"
            ),
            &[],
        )
        .context("could not find the missing first-occurrence episodes")?;
    let mut first_occurrence_episodes = 0i64;
    if !missing.is_empty() {
        let ids: Vec<i64> = tx
            .query(
                "SELECT nextval('registry.seq_episode_id') FROM generate_series(1, $1::int)",
                &[&(missing.len() as i32)],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let col = |i: usize| -> Vec<i64> { missing.iter().map(|r| r.get(i)).collect() };
        let dates: Vec<chrono::NaiveDate> = missing.iter().map(|r| r.get(1)).collect();
        let (persons, concepts, conditions) = (col(0), col(2), col(3));
        first_occurrence_episodes = tx
            .execute(
                &format!(
                    "INSERT INTO cdm.episode (episode_id, person_id, episode_concept_id,
                            episode_start_date, episode_number, episode_object_concept_id,
                            episode_type_concept_id)
                     SELECT e, p, {DISEASE_FIRST_OCCURRENCE}, d, 1, c, {PERIOD_TYPE_ALGORITHM}
                       FROM unnest($1::bigint[], $2::bigint[], $3::date[], $4::bigint[]) AS n(e, p, d, c)"
                ),
                &[&ids, &persons, &dates, &concepts],
            )
            .context("could not write first-occurrence episodes")? as i64;
        tx.execute(
            &format!(
                "INSERT INTO cdm.episode_event (episode_id, event_id, episode_event_field_concept_id)
                 SELECT e, o, {FIELD_CONDITION_OCCURRENCE_ID}
                   FROM unnest($1::bigint[], $2::bigint[]) AS n(e, o)"
            ),
            &[&ids, &conditions],
        )
        .context("could not write first-occurrence episode events")?;
    }
    tx.batch_execute("DELETE FROM cdm.observation_period")?;
    let n = tx
        .execute(
            &format!(
                "INSERT INTO cdm.observation_period (observation_period_id, person_id,
                        observation_period_start_date, observation_period_end_date,
                        period_type_concept_id)
                 SELECT row_number() OVER (ORDER BY person_id)::int, person_id, min(s),
                        greatest(max(e), max(s)), {PERIOD_TYPE_ALGORITHM}
                   FROM ({}) f
                  WHERE person_id IN (SELECT person_id FROM cdm.person)
                  GROUP BY person_id",
                spans.join(" UNION ALL ")
            ),
            &[],
        )
        .context("could not write cdm.observation_period")?;
    tx.batch_execute("DELETE FROM cdm.condition_era")?;
    let condition_eras = tx
        .execute(&condition_era_sql(), &[])
        .context("could not write cdm.condition_era")?;
    tx.batch_execute("DELETE FROM cdm.drug_era")?;
    let drug_eras = tx
        .execute(&drug_era_sql(), &[])
        .context("could not write cdm.drug_era")?;
    tx.commit()?;
    Ok(Derived {
        observation_periods: n as i64,
        condition_eras: condition_eras as i64,
        drug_eras: drug_eras as i64,
        modifiers_linked,
        first_occurrence_episodes,
        marts,
    })
}
