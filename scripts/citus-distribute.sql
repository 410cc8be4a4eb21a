-- Distributing a registry over a Citus cluster (distributed PostgreSQL).
--
-- Run once on the Citus coordinator, after `registrar db migrate` and before loading data,
-- naming the host and port the workers reach the coordinator on (ARCHITECTURE.md, "Scale-out
-- on Citus", says how to bring a cluster up and explains the choices):
--
--   psql -v ON_ERROR_STOP=1 -v coordinator_host=10.0.0.1 -v coordinator_port=5432 \
--        -f scripts/citus-distribute.sql "$(registrar db url)"
--
-- The registry and federation schemas stay local to the coordinator: they are small, and
-- the audit log's hash chain and advisory locks need one place.
--
-- tests/schema_conformance.rs checks that every cdm table is handled here, so a new table
-- cannot be added without deciding how it is distributed; tests/citus_sql.rs checks
-- registrar's queries against this distribution.

CREATE EXTENSION IF NOT EXISTS citus;
-- The coordinator in Citus's metadata: tables kept local to it (section 3) need it there.
SELECT citus_set_coordinator_host(:'coordinator_host', :coordinator_port);
SET citus.shard_count = 32;
-- registrar's transactions write and then read the same distributed tables (a unit's load
-- then its bookkeeping; a mart refresh deletes a mart's rows, rebuilds them and reads them
-- for the next mart). Citus refuses to read placements that the transaction modified over
-- several connections ("modified over multiple connections"), or after it read some locally
-- on the coordinator, which holds a placement of every reference table ("a local execution
-- has accessed a placement"). So: one connection per worker for multi-shard writes, and the
-- coordinator reaches its own placements like any node's.
DO $$ BEGIN
    EXECUTE format('ALTER DATABASE %I SET citus.multi_shard_modify_mode TO sequential', current_database());
    EXECUTE format('ALTER DATABASE %I SET citus.enable_local_execution TO off', current_database());
END $$;

-- 1. Vocabulary and small shared tables: reference tables, replicated to every worker, so
--    joins from any shard to a concept are local.
SELECT create_reference_table('cdm.concept');
SELECT create_reference_table('cdm.vocabulary');
SELECT create_reference_table('cdm.domain');
SELECT create_reference_table('cdm.concept_class');
SELECT create_reference_table('cdm.concept_relationship');
SELECT create_reference_table('cdm.relationship');
SELECT create_reference_table('cdm.concept_synonym');
SELECT create_reference_table('cdm.concept_ancestor');
SELECT create_reference_table('cdm.source_to_concept_map');
SELECT create_reference_table('cdm.drug_strength');
SELECT create_reference_table('cdm.cdm_source');
SELECT create_reference_table('cdm.metadata');
SELECT create_reference_table('cdm.location');
SELECT create_reference_table('cdm.care_site');
SELECT create_reference_table('cdm.provider');
SELECT create_reference_table('cdm.cohort_definition');

-- 2. Patient data: hash-distributed by person_id and co-located with cdm.person, so every
--    research view (which joins on person_id) runs shard by shard on the workers.
--    Citus requires a distributed table's primary key to contain the distribution column:
--    the CDM's single-column keys become (person_id, <id>). Ids stay unique on their own
--    (registry sequences on the coordinator hand them out).
SELECT create_distributed_table('cdm.person', 'person_id');
ALTER TABLE cdm.condition_era DROP CONSTRAINT xpk_condition_era, ADD CONSTRAINT xpk_condition_era PRIMARY KEY (person_id, condition_era_id);
SELECT create_distributed_table('cdm.condition_era', 'person_id', colocate_with => 'cdm.person');
ALTER TABLE cdm.condition_occurrence DROP CONSTRAINT xpk_condition_occurrence, ADD CONSTRAINT xpk_condition_occurrence PRIMARY KEY (person_id, condition_occurrence_id);
SELECT create_distributed_table('cdm.condition_occurrence', 'person_id', colocate_with => 'cdm.person');
SELECT create_distributed_table('cdm.death', 'person_id', colocate_with => 'cdm.person');
ALTER TABLE cdm.device_exposure DROP CONSTRAINT xpk_device_exposure, ADD CONSTRAINT xpk_device_exposure PRIMARY KEY (person_id, device_exposure_id);
SELECT create_distributed_table('cdm.device_exposure', 'person_id', colocate_with => 'cdm.person');
ALTER TABLE cdm.dose_era DROP CONSTRAINT xpk_dose_era, ADD CONSTRAINT xpk_dose_era PRIMARY KEY (person_id, dose_era_id);
SELECT create_distributed_table('cdm.dose_era', 'person_id', colocate_with => 'cdm.person');
ALTER TABLE cdm.drug_era DROP CONSTRAINT xpk_drug_era, ADD CONSTRAINT xpk_drug_era PRIMARY KEY (person_id, drug_era_id);
SELECT create_distributed_table('cdm.drug_era', 'person_id', colocate_with => 'cdm.person');
ALTER TABLE cdm.drug_exposure DROP CONSTRAINT xpk_drug_exposure, ADD CONSTRAINT xpk_drug_exposure PRIMARY KEY (person_id, drug_exposure_id);
SELECT create_distributed_table('cdm.drug_exposure', 'person_id', colocate_with => 'cdm.person');
ALTER TABLE cdm.episode DROP CONSTRAINT xpk_episode, ADD CONSTRAINT xpk_episode PRIMARY KEY (person_id, episode_id);
SELECT create_distributed_table('cdm.episode', 'person_id', colocate_with => 'cdm.person');
ALTER TABLE cdm.image_feature DROP CONSTRAINT xpk_image_feature, ADD CONSTRAINT xpk_image_feature PRIMARY KEY (person_id, image_feature_id);
SELECT create_distributed_table('cdm.image_feature', 'person_id', colocate_with => 'cdm.person');
ALTER TABLE cdm.image_occurrence DROP CONSTRAINT xpk_image_occurrence, ADD CONSTRAINT xpk_image_occurrence PRIMARY KEY (person_id, image_occurrence_id);
SELECT create_distributed_table('cdm.image_occurrence', 'person_id', colocate_with => 'cdm.person');
ALTER TABLE cdm.measurement DROP CONSTRAINT xpk_measurement, ADD CONSTRAINT xpk_measurement PRIMARY KEY (person_id, measurement_id);
SELECT create_distributed_table('cdm.measurement', 'person_id', colocate_with => 'cdm.person');
ALTER TABLE cdm.note DROP CONSTRAINT xpk_note, ADD CONSTRAINT xpk_note PRIMARY KEY (person_id, note_id);
SELECT create_distributed_table('cdm.note', 'person_id', colocate_with => 'cdm.person');
ALTER TABLE cdm.observation DROP CONSTRAINT xpk_observation, ADD CONSTRAINT xpk_observation PRIMARY KEY (person_id, observation_id);
SELECT create_distributed_table('cdm.observation', 'person_id', colocate_with => 'cdm.person');
ALTER TABLE cdm.observation_period DROP CONSTRAINT xpk_observation_period, ADD CONSTRAINT xpk_observation_period PRIMARY KEY (person_id, observation_period_id);
SELECT create_distributed_table('cdm.observation_period', 'person_id', colocate_with => 'cdm.person');
ALTER TABLE cdm.payer_plan_period DROP CONSTRAINT xpk_payer_plan_period, ADD CONSTRAINT xpk_payer_plan_period PRIMARY KEY (person_id, payer_plan_period_id);
SELECT create_distributed_table('cdm.payer_plan_period', 'person_id', colocate_with => 'cdm.person');
ALTER TABLE cdm.procedure_occurrence DROP CONSTRAINT xpk_procedure_occurrence, ADD CONSTRAINT xpk_procedure_occurrence PRIMARY KEY (person_id, procedure_occurrence_id);
SELECT create_distributed_table('cdm.procedure_occurrence', 'person_id', colocate_with => 'cdm.person');
ALTER TABLE cdm.specimen DROP CONSTRAINT xpk_specimen, ADD CONSTRAINT xpk_specimen PRIMARY KEY (person_id, specimen_id);
SELECT create_distributed_table('cdm.specimen', 'person_id', colocate_with => 'cdm.person');
ALTER TABLE cdm.visit_detail DROP CONSTRAINT xpk_visit_detail, ADD CONSTRAINT xpk_visit_detail PRIMARY KEY (person_id, visit_detail_id);
SELECT create_distributed_table('cdm.visit_detail', 'person_id', colocate_with => 'cdm.person');
ALTER TABLE cdm.visit_occurrence DROP CONSTRAINT xpk_visit_occurrence, ADD CONSTRAINT xpk_visit_occurrence PRIMARY KEY (person_id, visit_occurrence_id);
SELECT create_distributed_table('cdm.visit_occurrence', 'person_id', colocate_with => 'cdm.person');

-- cdm.cohort is keyed by subject_id, which is a person_id.
SELECT create_distributed_table('cdm.cohort', 'subject_id', colocate_with => 'cdm.person');

-- 3. Tables without a person_id. registrar writes none of them today; before it does, give
--    each a person_id (a registry-side companion table behind a CDM-shaped view, so OHDSI
--    tools still see the standard columns) and move it to section 2. Until then they stay
--    local tables on the coordinator (Citus joins them with distributed tables by pulling
--    the smaller side):
--      cdm.episode_event     (episode_id, event_id): its episode and event rows are one
--                            person's; add person_id and co-locate with cdm.episode.
--      cdm.fact_relationship (fact_id_1, fact_id_2): usually two facts of one person; add
--                            person_id for those, keep cross-person facts local.
--      cdm.note_nlp          (note_id): add person_id, co-locate with cdm.note.
--      cdm.cost              (cost_event_id): add person_id, co-locate with its event.
SELECT citus_add_local_table_to_metadata('cdm.episode_event');
SELECT citus_add_local_table_to_metadata('cdm.fact_relationship');
SELECT citus_add_local_table_to_metadata('cdm.note_nlp');
SELECT citus_add_local_table_to_metadata('cdm.cost');

-- 4. Research marts: hash-distributed by person_id and co-located with cdm.person, so a
--    refresh (mart.refresh: each mart's rows from the same person's cdm rows and earlier marts)
--    and a researcher's query run shard by shard. Every mart's key starts with person_id.
--    The refresh scope is joined by every shard: a reference table. research.concept_set is a
--    materialized view local to the coordinator (a few hundred rows), which Citus ships to the
--    workers as an intermediate result when a refresh joins it.
SELECT create_reference_table('mart.refresh_scope');
SELECT create_distributed_table('mart.' || name, 'person_id', colocate_with => 'cdm.person')
  FROM mart.catalog ORDER BY position;
