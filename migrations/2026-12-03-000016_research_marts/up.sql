-- Research marts: the research layer becomes tables, built from cdm by registrar and kept
-- current person by person, so a researcher's query reads a few indexed rows instead of
-- recomputing every view over cdm.
--
-- - `mart.<name>` is a table with the columns and meaning of the view research.<name> had
--   (migration 2026-12-02-000015_omop_semantics); research.<name> is now a thin view over it,
--   so every query written against the views keeps working. The marts are keyed and indexed
--   by person_id; researchers read them through the views and need no privilege on cdm or on
--   the mart schema.
-- - `mart.<name>_src` is the logic: set-based SQL (DISTINCT ON, window-free aggregates, one
--   pass per cdm table) over the persons in `mart.refresh_scope`, reading cdm and the marts
--   built before it (`mart.refresh()` builds them in dependency order). The scope join lets
--   the planner read only those persons' facts through the person_id indexes on an
--   incremental refresh, and hash-join whole tables on a full rebuild.
-- - `registry.changed_person` holds the persons whose cdm facts the import path added,
--   replaced or deleted since the last refresh (ledger.rs writes it with the lineage).
-- - `mart.refresh(full)` recomputes those persons (or every person) in the caller's
--   transaction: a researcher sees the marts before or after a refresh, never half of one.
--   The nightly, every import command and `registrar research refresh` call it; a change of
--   research.concept_role rebuilds every person at once (trigger); `registrar vocab load`
--   rebuilds after loading.

CREATE SCHEMA mart;
COMMENT ON SCHEMA mart IS 'Research marts: the tables behind the research views, and the SQL that builds them (registrar only).';

CREATE TABLE registry.changed_person (person_id integer PRIMARY KEY);
COMMENT ON TABLE registry.changed_person IS
    'Persons whose cdm facts changed since the research marts were last refreshed (written by the import path, emptied by mart.refresh).';

CREATE TABLE mart.refresh_scope (person_id integer PRIMARY KEY);
COMMENT ON TABLE mart.refresh_scope IS
    'The persons a running mart.refresh() recomputes; empty outside one (its rows are never committed).';

CREATE TABLE mart.refresh_state (
    singleton        boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    refreshed_at     timestamptz,
    full_rebuild_at  timestamptz,
    persons          bigint      NOT NULL DEFAULT 0,
    full_rebuild     boolean     NOT NULL DEFAULT false,
    seconds          double precision NOT NULL DEFAULT 0
);
INSERT INTO mart.refresh_state DEFAULT VALUES;
COMMENT ON TABLE mart.refresh_state IS 'The last research mart refresh: when, how many persons, full or incremental, how long.';

-- Keep the definitions and comments of the views this migration replaces: down.sql recreates
-- them from here, exactly.
CREATE TABLE mart.superseded_view (
    ordinal    integer PRIMARY KEY,
    name       text    NOT NULL,
    definition text    NOT NULL,
    comment    text,
    barrier    boolean NOT NULL
);
INSERT INTO mart.superseded_view
SELECT row_number() OVER (ORDER BY c.oid), c.relname, pg_get_viewdef(c.oid), obj_description(c.oid, 'pg_class'),
       coalesce('security_barrier=true' = ANY (c.reloptions), false)
  FROM pg_class c
 WHERE c.relnamespace = 'research'::regnamespace AND c.relkind = 'v'
   AND c.relname IN ('diagnosis', 'tumour_fact', 'systemic_therapy', 'surgery', 'first_treatment',
                     'breast_cancer_patient', 'receptor_status', 'subtype', 'neoadjuvant_treatment',
                     'pathologic_response', 'recurrence_event', 'recurrence', 'radiotherapy',
                     'modeling_cohort', 'luminal_cohort', 'her2_positive_cohort', 'tnbc_cohort',
                     'rt_structure_set');

-- ---- the logic, one view per mart, in build order -----------------------------------------

-- The first breast-cancer diagnosis of each person (role breast_cancer, not a recurrence).
CREATE VIEW mart.diagnosis_src AS
SELECT DISTINCT ON (co.person_id)
       co.person_id, co.condition_occurrence_id, co.condition_start_date AS diagnosis_date,
       co.condition_concept_id AS diagnosis_concept_id
  FROM mart.refresh_scope sc
  JOIN cdm.condition_occurrence co ON co.person_id = sc.person_id
  JOIN research.concept_set cs ON cs.role = 'breast_cancer' AND cs.concept_id = co.condition_concept_id
 WHERE NOT EXISTS (SELECT 1 FROM research.concept_set r
                    WHERE r.role = 'recurrence' AND r.concept_id = co.condition_concept_id)
 ORDER BY co.person_id, co.condition_start_date, co.condition_occurrence_id;
CREATE TABLE mart.diagnosis AS SELECT * FROM mart.diagnosis_src WITH NO DATA;
ALTER TABLE mart.diagnosis ADD PRIMARY KEY (person_id);

-- TNM, stage, grade (measurement concepts), laterality and histology (value concepts).
CREATE VIEW mart.tumour_fact_src AS
SELECT m.person_id, cs.role, cs.label, m.value_as_number, m.measurement_date AS fact_date,
       m.measurement_id AS fact_id
  FROM mart.refresh_scope sc
  JOIN cdm.measurement m ON m.person_id = sc.person_id
  JOIN research.concept_set cs ON cs.concept_id = m.measurement_concept_id
 WHERE cs.role IN ('clinical_t', 'clinical_n', 'clinical_m', 'clinical_stage',
                   'pathological_t', 'pathological_n', 'pathological_m', 'pathological_stage',
                   't', 'n', 'm', 'stage', 'grade', 'grade_measurement')
UNION ALL
SELECT m.person_id, vs.role, vs.label, NULL, m.measurement_date, m.measurement_id
  FROM mart.refresh_scope sc
  JOIN cdm.measurement m ON m.person_id = sc.person_id
  JOIN research.concept_set cs ON cs.concept_id = m.measurement_concept_id
                              AND cs.role IN ('laterality_of', 'histology_of')
  JOIN research.concept_set vs ON vs.concept_id = m.value_as_concept_id
                              AND vs.role = CASE cs.role WHEN 'laterality_of' THEN 'laterality' ELSE 'histology' END
UNION ALL
SELECT o.person_id, vs.role, vs.label, NULL, o.observation_date, o.observation_id
  FROM mart.refresh_scope sc
  JOIN cdm.observation o ON o.person_id = sc.person_id
  JOIN research.concept_set cs ON cs.concept_id = o.observation_concept_id
                              AND cs.role IN ('laterality_of', 'histology_of')
  JOIN research.concept_set vs ON vs.concept_id = o.value_as_concept_id
                              AND vs.role = CASE cs.role WHEN 'laterality_of' THEN 'laterality' ELSE 'histology' END;
CREATE TABLE mart.tumour_fact AS SELECT * FROM mart.tumour_fact_src WITH NO DATA;
CREATE INDEX ON mart.tumour_fact (person_id);

CREATE VIEW mart.systemic_therapy_src AS
WITH setting AS (
    SELECT DISTINCT ON (o.person_id, o.observation_date) o.person_id, o.observation_date, v.label
      FROM mart.refresh_scope sc
      JOIN cdm.observation o ON o.person_id = sc.person_id
      JOIN research.concept_set s ON s.role = 'therapy_setting_of' AND s.concept_id = o.observation_concept_id
      JOIN research.concept_set v ON v.role = 'therapy_setting' AND v.concept_id = o.value_as_concept_id
     ORDER BY o.person_id, o.observation_date, o.observation_id
)
SELECT d.person_id, d.drug_exposure_id, d.drug_exposure_start_date AS start_date,
       coalesce(d.drug_exposure_end_date, d.drug_exposure_start_date) AS end_date,
       cs.anchor_concept_id AS ingredient_concept_id, cs.label AS agent, st.label AS setting
  FROM mart.refresh_scope sc
  JOIN cdm.drug_exposure d ON d.person_id = sc.person_id
  JOIN research.concept_set cs ON cs.role = 'antineoplastic' AND cs.concept_id = d.drug_concept_id
  LEFT JOIN setting st ON st.person_id = d.person_id AND st.observation_date = d.drug_exposure_start_date;
CREATE TABLE mart.systemic_therapy AS SELECT * FROM mart.systemic_therapy_src WITH NO DATA;
ALTER TABLE mart.systemic_therapy ADD PRIMARY KEY (person_id, drug_exposure_id);

CREATE VIEW mart.surgery_src AS
SELECT DISTINCT ON (p.person_id) p.person_id, p.procedure_date AS surgery_date,
       cs.label AS surgery_type, p.procedure_concept_id
  FROM mart.refresh_scope sc
  JOIN cdm.procedure_occurrence p ON p.person_id = sc.person_id
  JOIN research.concept_set cs ON cs.role = 'breast_surgery' AND cs.concept_id = p.procedure_concept_id
 ORDER BY p.person_id, p.procedure_date, p.procedure_occurrence_id;
CREATE TABLE mart.surgery AS SELECT * FROM mart.surgery_src WITH NO DATA;
ALTER TABLE mart.surgery ADD PRIMARY KEY (person_id);

CREATE VIEW mart.first_treatment_src AS
SELECT person_id, min(d) AS first_treatment_date FROM (
    SELECT s.person_id, s.surgery_date AS d
      FROM mart.refresh_scope sc JOIN mart.surgery s ON s.person_id = sc.person_id
    UNION ALL
    SELECT t.person_id, t.start_date
      FROM mart.refresh_scope sc JOIN mart.systemic_therapy t ON t.person_id = sc.person_id
) t GROUP BY person_id;
CREATE TABLE mart.first_treatment AS SELECT * FROM mart.first_treatment_src WITH NO DATA;
ALTER TABLE mart.first_treatment ADD PRIMARY KEY (person_id);

CREATE VIEW mart.breast_cancer_patient_src AS
WITH d AS (
    SELECT d.* FROM mart.refresh_scope sc JOIN mart.diagnosis d ON d.person_id = sc.person_id
), pick AS (
    -- per role, the fact of the diagnosis (on or before the first treatment), else the earliest
    SELECT DISTINCT ON (t.person_id, t.role) t.person_id, t.role, t.label, t.value_as_number,
           t.fact_date, ft.first_treatment_date
      FROM d
      JOIN mart.tumour_fact t ON t.person_id = d.person_id
      LEFT JOIN mart.first_treatment ft ON ft.person_id = d.person_id
     ORDER BY t.person_id, t.role,
              (ft.first_treatment_date IS NOT NULL AND t.fact_date > ft.first_treatment_date),
              t.fact_date, t.fact_id
), baseline AS (
    -- a TNM of unstated basis counts as clinical when it dates from before the first treatment
    SELECT person_id,
           coalesce(max(label) FILTER (WHERE role = 'clinical_t'), max(label) FILTER (WHERE role = 't')) AS ct,
           coalesce(max(label) FILTER (WHERE role = 'clinical_n'), max(label) FILTER (WHERE role = 'n')) AS cn,
           coalesce(max(label) FILTER (WHERE role = 'clinical_m'), max(label) FILTER (WHERE role = 'm')) AS cm,
           coalesce(max(label) FILTER (WHERE role = 'clinical_stage'), max(label) FILTER (WHERE role = 'stage')) AS clinical_stage,
           coalesce(max(label) FILTER (WHERE role = 'grade'),
                    max(value_as_number::int::text) FILTER (WHERE role = 'grade_measurement')) AS grade,
           max(label) FILTER (WHERE role = 'laterality') AS laterality,
           max(label) FILTER (WHERE role = 'histology') AS histology_icdo3
      FROM pick p
     WHERE role NOT IN ('t', 'n', 'm', 'stage')
        OR first_treatment_date IS NULL OR fact_date <= first_treatment_date
     GROUP BY person_id
)
SELECT d.person_id,
       d.diagnosis_date,
       extract(year FROM d.diagnosis_date)::int AS diagnosis_year,
       d.diagnosis_concept_id,
       b.laterality,
       CASE WHEN p.month_of_birth IS NOT NULL AND p.day_of_birth IS NOT NULL
            THEN extract(year FROM age(d.diagnosis_date,
                   make_date(p.year_of_birth, p.month_of_birth, p.day_of_birth)))::int
            ELSE extract(year FROM d.diagnosis_date)::int - p.year_of_birth END AS age_at_diagnosis,
       b.ct, b.cn, b.cm, b.clinical_stage,
       b.grade::int AS grade,
       b.histology_icdo3
  FROM d
  JOIN cdm.person p ON p.person_id = d.person_id
  LEFT JOIN baseline b ON b.person_id = d.person_id;
CREATE TABLE mart.breast_cancer_patient AS SELECT * FROM mart.breast_cancer_patient_src WITH NO DATA;
ALTER TABLE mart.breast_cancer_patient ADD PRIMARY KEY (person_id);

CREATE VIEW mart.receptor_status_src AS
WITH m AS (
    -- a percentage on a qualitative receptor concept (unit percent) counts as the percentage
    SELECT m.person_id, m.measurement_date,
           CASE WHEN cs.role IN ('er_status', 'pr_status') AND m.value_as_number IS NOT NULL
                     AND m.unit_concept_id = 8554
                THEN replace(cs.role, '_status', '_pct') ELSE cs.role END AS role,
           m.value_as_number AS num, v.label AS value_label, v.role AS value_role
      FROM mart.refresh_scope sc
      JOIN cdm.measurement m ON m.person_id = sc.person_id
      JOIN research.concept_set cs ON cs.concept_id = m.measurement_concept_id
                                  AND cs.role IN ('er_status', 'er_pct', 'er_allred', 'pr_status', 'pr_pct',
                                                  'pr_allred', 'her2_ihc', 'her2_ish', 'ki67_pct')
      LEFT JOIN research.concept_set v ON v.concept_id = m.value_as_concept_id
                                      AND v.role IN ('result', 'her2_ihc_score')
), r AS (
    -- per kind of result, the one closest before the first treatment (else the earliest)
    SELECT DISTINCT ON (m.person_id, m.role) m.*
      FROM m
      LEFT JOIN mart.first_treatment f ON f.person_id = m.person_id
     WHERE m.num IS NOT NULL OR m.value_label IS NOT NULL
     ORDER BY m.person_id, m.role,
              (f.first_treatment_date IS NOT NULL AND m.measurement_date > f.first_treatment_date),
              CASE WHEN f.first_treatment_date IS NOT NULL AND m.measurement_date <= f.first_treatment_date
                   THEN f.first_treatment_date - m.measurement_date END,
              m.measurement_date
), p AS (
    SELECT person_id,
           max(num) FILTER (WHERE role = 'er_pct') AS er_pct,
           max(value_label) FILTER (WHERE role = 'er_status' AND value_role = 'result') AS er_result,
           max(num) FILTER (WHERE role = 'er_allred') AS er_allred,
           max(num) FILTER (WHERE role = 'pr_allred') AS pr_allred,
           max(num) FILTER (WHERE role = 'pr_pct') AS pr_pct,
           max(value_label) FILTER (WHERE role = 'pr_status' AND value_role = 'result') AS pr_result,
           coalesce(max(value_label) FILTER (WHERE role = 'her2_ihc' AND value_role = 'her2_ihc_score'),
                    max(CASE num WHEN 0 THEN '0' WHEN 1 THEN '1+' WHEN 2 THEN '2+' WHEN 3 THEN '3+' END)
                        FILTER (WHERE role = 'her2_ihc')) AS her2_ihc,
           max(value_label) FILTER (WHERE role = 'her2_ihc' AND value_role = 'result') AS her2_ihc_result,
           max(value_label) FILTER (WHERE role = 'her2_ish' AND value_role = 'result') AS her2_ish,
           max(num) FILTER (WHERE role = 'ki67_pct') AS ki67_pct,
           max(measurement_date) AS result_date
      FROM r GROUP BY person_id
), s AS (
    SELECT p.*,
           coalesce(CASE p.her2_ihc WHEN '3+' THEN 'positive' WHEN '2+' THEN 'equivocal'
                                    WHEN '1+' THEN 'negative' WHEN '0' THEN 'negative' END,
                    p.her2_ihc_result) AS ihc
      FROM p
)
SELECT s.person_id, s.result_date,
       s.er_pct,
       CASE WHEN s.er_pct IS NOT NULL
            THEN s.er_pct >= (SELECT value FROM research.subtype_rule WHERE rule = 'er_positive_min_pct')
            WHEN s.er_result IN ('positive', 'negative') THEN s.er_result = 'positive'
            WHEN s.er_allred IS NOT NULL THEN s.er_allred >= 3 END AS er_positive,
       s.pr_pct,
       CASE WHEN s.pr_pct IS NOT NULL
            THEN s.pr_pct >= (SELECT value FROM research.subtype_rule WHERE rule = 'pr_positive_min_pct')
            WHEN s.pr_result IN ('positive', 'negative') THEN s.pr_result = 'positive'
            WHEN s.pr_allred IS NOT NULL THEN s.pr_allred >= 3 END AS pr_positive,
       s.her2_ihc, s.her2_ish,
       CASE WHEN s.ihc = 'positive' THEN 'positive'
            WHEN s.ihc = 'equivocal' AND s.her2_ish = 'positive' THEN 'positive'
            WHEN s.ihc = 'equivocal' AND s.her2_ish = 'negative' THEN 'negative'
            WHEN s.ihc = 'equivocal' THEN 'equivocal'
            WHEN s.ihc = 'negative' THEN 'negative'
       END AS her2_status,
       s.ki67_pct
  FROM s;
CREATE TABLE mart.receptor_status AS SELECT * FROM mart.receptor_status_src WITH NO DATA;
ALTER TABLE mart.receptor_status ADD PRIMARY KEY (person_id);

CREATE VIEW mart.subtype_src AS
SELECT r.person_id,
       CASE
         WHEN r.er_positive IS NULL AND r.pr_positive IS NULL OR r.her2_status IS NULL
              OR r.her2_status = 'equivocal' THEN 'unknown'
         WHEN coalesce(r.er_positive, false) OR coalesce(r.pr_positive, false) THEN
           CASE WHEN r.her2_status = 'positive' THEN 'luminal_b_her2pos'
                WHEN r.ki67_pct < (SELECT value FROM research.subtype_rule WHERE rule = 'luminal_a_max_ki67_pct')
                 AND r.pr_pct >= (SELECT value FROM research.subtype_rule WHERE rule = 'luminal_a_min_pr_pct')
                THEN 'luminal_a'
                WHEN r.ki67_pct IS NULL THEN 'luminal_unknown'
                ELSE 'luminal_b_her2neg' END
         WHEN r.her2_status = 'positive' THEN 'her2_enriched'
         ELSE 'tnbc'
       END AS subtype
  FROM mart.refresh_scope sc
  JOIN mart.receptor_status r ON r.person_id = sc.person_id;
CREATE TABLE mart.subtype AS SELECT * FROM mart.subtype_src WITH NO DATA;
ALTER TABLE mart.subtype ADD PRIMARY KEY (person_id);

-- Neoadjuvant therapy: systemic therapy from the diagnosis to the first breast surgery.
CREATE VIEW mart.neoadjuvant_treatment_src AS
SELECT t.person_id,
       min(t.start_date) AS start_date,
       max(t.start_date) AS last_administration_date,
       string_agg(DISTINCT t.agent, ', ' ORDER BY t.agent) AS agents,
       count(*) AS administrations
  FROM mart.refresh_scope sc
  JOIN mart.systemic_therapy t ON t.person_id = sc.person_id
  JOIN mart.diagnosis d ON d.person_id = t.person_id
  JOIN mart.surgery su ON su.person_id = t.person_id
 WHERE t.start_date >= d.diagnosis_date AND t.start_date < su.surgery_date
 GROUP BY t.person_id;
CREATE TABLE mart.neoadjuvant_treatment AS SELECT * FROM mart.neoadjuvant_treatment_src WITH NO DATA;
ALTER TABLE mart.neoadjuvant_treatment ADD PRIMARY KEY (person_id);

CREATE VIEW mart.pathologic_response_src AS
WITH n AS (
    SELECT n.* FROM mart.refresh_scope sc JOIN mart.neoadjuvant_treatment n ON n.person_id = sc.person_id
), yp AS (
    -- pathological staging after the start of neoadjuvant therapy (ypTNM)
    SELECT DISTINCT ON (t.person_id, t.role) t.person_id, t.role, t.label
      FROM n
      JOIN mart.tumour_fact t ON t.person_id = n.person_id
     WHERE t.role IN ('pathological_t', 'pathological_n', 't', 'n') AND t.fact_date > n.start_date
     ORDER BY t.person_id, t.role, t.fact_date, t.fact_id
), y AS (
    SELECT person_id,
           coalesce(max(label) FILTER (WHERE role = 'pathological_t'), max(label) FILTER (WHERE role = 't')) AS ypt,
           coalesce(max(label) FILTER (WHERE role = 'pathological_n'), max(label) FILTER (WHERE role = 'n')) AS ypn
      FROM yp GROUP BY person_id
)
SELECT n.person_id, y.ypt, y.ypn,
       CASE WHEN su.surgery_date IS NULL OR y.ypt IS NULL OR y.ypn IS NULL THEN 'unknown'
            WHEN y.ypt IN ('T0', 'Tis') AND y.ypn = 'N0' THEN 'pCR'
            ELSE 'non-pCR' END AS response,
       CASE WHEN su.surgery_date IS NULL OR y.ypt IS NULL OR y.ypn IS NULL THEN NULL
            ELSE y.ypt IN ('T0', 'Tis') AND y.ypn = 'N0' END AS pcr
  FROM n
  LEFT JOIN mart.surgery su ON su.person_id = n.person_id
  LEFT JOIN y ON y.person_id = n.person_id;
CREATE TABLE mart.pathologic_response AS SELECT * FROM mart.pathologic_response_src WITH NO DATA;
ALTER TABLE mart.pathologic_response ADD PRIMARY KEY (person_id);

CREATE VIEW mart.recurrence_event_src AS
SELECT c.person_id, c.condition_start_date AS event_date, k.label AS kind
  FROM mart.refresh_scope sc
  JOIN cdm.condition_occurrence c ON c.person_id = sc.person_id
  JOIN research.concept_set k ON k.role = 'recurrence' AND k.concept_id = c.condition_concept_id;
CREATE TABLE mart.recurrence_event AS SELECT * FROM mart.recurrence_event_src WITH NO DATA;
CREATE INDEX ON mart.recurrence_event (person_id);

CREATE VIEW mart.recurrence_src AS
WITH s AS (
    SELECT s.* FROM mart.refresh_scope sc JOIN mart.surgery s ON s.person_id = sc.person_id
), rec AS (
    SELECT e.person_id,
           min(e.event_date) FILTER (WHERE e.kind = 'local') AS first_local,
           min(e.event_date) FILTER (WHERE e.kind = 'regional') AS first_regional,
           min(e.event_date) FILTER (WHERE e.kind = 'distant') AS first_distant
      FROM s
      JOIN mart.recurrence_event e ON e.person_id = s.person_id
     WHERE e.event_date > s.surgery_date
     GROUP BY e.person_id
), last_contact AS (
    -- one pass per fact table, each restricted to the scope
    SELECT person_id, max(d) AS last_contact_date FROM (
        SELECT x.person_id, max(x.measurement_date) AS d FROM s JOIN cdm.measurement x ON x.person_id = s.person_id GROUP BY 1
        UNION ALL SELECT x.person_id, max(x.observation_date) FROM s JOIN cdm.observation x ON x.person_id = s.person_id GROUP BY 1
        UNION ALL SELECT x.person_id, max(x.drug_exposure_start_date) FROM s JOIN cdm.drug_exposure x ON x.person_id = s.person_id GROUP BY 1
        UNION ALL SELECT x.person_id, max(x.procedure_date) FROM s JOIN cdm.procedure_occurrence x ON x.person_id = s.person_id GROUP BY 1
        UNION ALL SELECT x.person_id, max(x.condition_start_date) FROM s JOIN cdm.condition_occurrence x ON x.person_id = s.person_id GROUP BY 1
        UNION ALL SELECT x.person_id, max(x.episode_start_date) FROM s JOIN cdm.episode x ON x.person_id = s.person_id GROUP BY 1
        UNION ALL SELECT x.person_id, max(x.death_date) FROM s JOIN cdm.death x ON x.person_id = s.person_id GROUP BY 1
    ) x GROUP BY person_id
)
SELECT s.person_id, s.surgery_date,
       r.first_local, r.first_regional, r.first_distant,
       dt.death_date,
       least(r.first_local, r.first_regional, r.first_distant, dt.death_date) AS rfs_event_date,
       least(r.first_local, r.first_regional, r.first_distant, dt.death_date) IS NOT NULL AS rfs_event,
       (coalesce(least(r.first_local, r.first_regional, r.first_distant, dt.death_date), lc.last_contact_date)
          - s.surgery_date) AS rfs_days
  FROM s
  LEFT JOIN rec r ON r.person_id = s.person_id
  LEFT JOIN cdm.death dt ON dt.person_id = s.person_id
  LEFT JOIN last_contact lc ON lc.person_id = s.person_id;
CREATE TABLE mart.recurrence AS SELECT * FROM mart.recurrence_src WITH NO DATA;
ALTER TABLE mart.recurrence ADD PRIMARY KEY (person_id);

CREATE VIEW mart.radiotherapy_src AS
WITH dose AS (
    SELECT o.person_id, o.observation_id, o.observation_event_id, o.observation_date, o.value_as_number
      FROM mart.refresh_scope sc
      JOIN cdm.observation o ON o.person_id = sc.person_id
      JOIN research.concept_set d ON d.role = 'rt_total_dose' AND d.concept_id = o.observation_concept_id
     WHERE o.unit_concept_id IS NULL OR o.unit_concept_id = 9519
)
SELECT p.person_id, p.procedure_occurrence_id, p.procedure_date AS start_date,
       p.procedure_end_date AS end_date, cs.label AS target, p.quantity AS fractions,
       coalesce(by_event.value_as_number, by_date.value_as_number) AS total_dose_gy
  FROM mart.refresh_scope sc
  JOIN cdm.procedure_occurrence p ON p.person_id = sc.person_id
  JOIN research.concept_set cs ON cs.role = 'radiotherapy' AND cs.concept_id = p.procedure_concept_id
  LEFT JOIN (SELECT DISTINCT ON (observation_event_id) * FROM dose
              WHERE observation_event_id IS NOT NULL ORDER BY observation_event_id, observation_id) by_event
         ON by_event.observation_event_id = p.procedure_occurrence_id AND by_event.person_id = p.person_id
  LEFT JOIN (SELECT DISTINCT ON (person_id, observation_date) * FROM dose
              WHERE observation_event_id IS NULL ORDER BY person_id, observation_date, observation_id) by_date
         ON by_date.person_id = p.person_id AND by_date.observation_date = p.procedure_date;
CREATE TABLE mart.radiotherapy AS SELECT * FROM mart.radiotherapy_src WITH NO DATA;
ALTER TABLE mart.radiotherapy ADD PRIMARY KEY (person_id, procedure_occurrence_id);

CREATE VIEW mart.modeling_cohort_src AS
SELECT b.person_id,
       CASE WHEN st.subtype IN ('luminal_a', 'luminal_b_her2neg', 'luminal_unknown') THEN 'luminal'
            WHEN st.subtype IN ('luminal_b_her2pos', 'her2_enriched') THEN 'her2_positive'
            WHEN st.subtype = 'tnbc' THEN 'tnbc' END AS pillar,
       st.subtype, b.age_at_diagnosis, b.diagnosis_year, b.laterality, b.ct, b.cn, b.cm,
       b.clinical_stage, b.grade, b.histology_icdo3,
       r.er_pct, r.pr_pct, r.her2_status, r.ki67_pct,
       n.person_id IS NOT NULL AS neoadjuvant, n.agents AS neoadjuvant_agents,
       s.surgery_type,
       pr.pcr,
       rc.rfs_days, rc.rfs_event
  FROM mart.refresh_scope sc
  JOIN mart.breast_cancer_patient b ON b.person_id = sc.person_id
  LEFT JOIN mart.receptor_status r ON r.person_id = b.person_id
  LEFT JOIN mart.subtype st ON st.person_id = b.person_id
  LEFT JOIN mart.neoadjuvant_treatment n ON n.person_id = b.person_id
  LEFT JOIN mart.surgery s ON s.person_id = b.person_id
  LEFT JOIN mart.pathologic_response pr ON pr.person_id = b.person_id
  LEFT JOIN mart.recurrence rc ON rc.person_id = b.person_id;
CREATE TABLE mart.modeling_cohort AS SELECT * FROM mart.modeling_cohort_src WITH NO DATA;
ALTER TABLE mart.modeling_cohort ADD PRIMARY KEY (person_id);

-- RT structure sets: image features of role rt_structure_roi (written by
-- `registrar dicom index`; the ROI facts are a JSON object in alg_system).
CREATE VIEW mart.rt_structure_set_src AS
WITH f AS (
    SELECT f.image_feature_id, f.person_id, f.image_occurrence_id, f.alg_system::jsonb AS a
      FROM mart.refresh_scope sc
      JOIN cdm.image_feature f ON f.person_id = sc.person_id
      JOIN research.concept_set cs ON cs.role = 'rt_structure_roi' AND cs.concept_id = f.image_feature_concept_id
)
SELECT f.image_feature_id,
       f.person_id,
       o.image_series_uid                              AS structure_set_series_uid,
       f.a ->> 'observer'                              AS observer,
       (f.a ->> 'structure_set_date')::date            AS structure_set_date,
       extract(year FROM (f.a ->> 'structure_set_date')::date)::int AS year,
       (f.a ->> 'structure_set_date')::date < DATE '2016-01-01' AS before_2016,
       f.a ->> 'roi_name'                              AS roi_name,
       f.a ->> 'tg263'                                 AS tg263_name,
       f.a ->> 'roi_type'                              AS roi_type,
       (f.a ->> 'volume_cc')::numeric                  AS volume_cc,
       (f.a ->> 'contour_slices')::int                 AS contour_slices,
       f.a ->> 'referenced_ct_series'                  AS referenced_ct_series
  FROM f
  JOIN cdm.image_occurrence o ON o.image_occurrence_id = f.image_occurrence_id
                           AND o.person_id = f.person_id;
CREATE TABLE mart.rt_structure_set AS SELECT * FROM mart.rt_structure_set_src WITH NO DATA;
ALTER TABLE mart.rt_structure_set ADD PRIMARY KEY (person_id, image_feature_id);

CREATE INDEX ON mart.modeling_cohort (pillar);

-- ---- refresh ------------------------------------------------------------------------------
-- Rebuild every mart for the persons of mart.refresh_scope, in dependency order (p_all: the
-- scope is every person, so the marts are emptied first).
CREATE FUNCTION mart.build(p_all boolean) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_name text;
    v_big  boolean := p_all OR (SELECT count(*) FROM mart.refresh_scope) > 1000;
BEGIN
    FOREACH v_name IN ARRAY ARRAY['diagnosis', 'tumour_fact', 'systemic_therapy', 'surgery',
        'first_treatment', 'breast_cancer_patient', 'receptor_status', 'subtype',
        'neoadjuvant_treatment', 'pathologic_response', 'recurrence_event', 'recurrence',
        'radiotherapy', 'modeling_cohort', 'rt_structure_set'] LOOP
        IF p_all THEN
            EXECUTE format('DELETE FROM mart.%I', v_name);
        ELSE
            EXECUTE format('DELETE FROM mart.%I t USING mart.refresh_scope s WHERE t.person_id = s.person_id', v_name);
        END IF;
        EXECUTE format('INSERT INTO mart.%I SELECT * FROM mart.%I', v_name, v_name || '_src');
        -- the next mart's plan reads this one: give the planner its size
        IF v_big THEN
            EXECUTE format('ANALYZE mart.%I', v_name);
        END IF;
    END LOOP;
END $$;

-- The same for a scope of a few persons, by index only: every fact and mart row is reached
-- through its person_id index from the scope, so the work follows the persons recomputed,
-- not the size of the registry (a hash join would read whole tables for a few rows).
CREATE FUNCTION mart.build_by_person() RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
    SET enable_seqscan = off SET enable_mergejoin = off AS $$
BEGIN
    PERFORM mart.build(false);
END $$;

-- Recompute the changed persons (registry.changed_person), or every person when p_full (or
-- when the marts were never built). In the caller's transaction; one refresh at a time.
-- Returns how many persons were recomputed and whether it was whole.
CREATE FUNCTION mart.refresh(p_full boolean) RETURNS TABLE (persons bigint, full_rebuild boolean)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_full  boolean := p_full;
    v_n     bigint;
    v_start timestamptz := clock_timestamp();
BEGIN
    LOCK TABLE mart.refresh_scope IN EXCLUSIVE MODE;
    IF NOT v_full THEN
        SELECT s.refreshed_at IS NULL INTO v_full FROM mart.refresh_state s;
    END IF;
    -- (the scope's rows never outlive a refresh; TRUNCATE leaves no dead rows behind)
    TRUNCATE mart.refresh_scope;
    IF v_full THEN
        -- every person with a fact any mart reads
        INSERT INTO mart.refresh_scope
        SELECT person_id FROM cdm.person
        UNION SELECT person_id FROM cdm.condition_occurrence
        UNION SELECT person_id FROM cdm.measurement
        UNION SELECT person_id FROM cdm.observation
        UNION SELECT person_id FROM cdm.drug_exposure
        UNION SELECT person_id FROM cdm.procedure_occurrence
        UNION SELECT person_id FROM cdm.image_feature;
    ELSE
        INSERT INTO mart.refresh_scope SELECT c.person_id FROM registry.changed_person c;
    END IF;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    IF v_full THEN
        ANALYZE mart.refresh_scope;
        PERFORM mart.build(true);
    ELSIF v_n > 0 THEN
        ANALYZE mart.refresh_scope;
        -- a few persons among many: by index; a large share of the registry: whole tables
        IF v_n * 20 < (SELECT count(*) FROM cdm.person) THEN
            PERFORM mart.build_by_person();
        ELSE
            PERFORM mart.build(false);
        END IF;
    END IF;
    IF v_full THEN
        DELETE FROM registry.changed_person;
    ELSE
        DELETE FROM registry.changed_person c USING mart.refresh_scope s WHERE c.person_id = s.person_id;
    END IF;
    TRUNCATE mart.refresh_scope;
    UPDATE mart.refresh_state
       SET refreshed_at = now(),
           full_rebuild_at = CASE WHEN v_full THEN now() ELSE full_rebuild_at END,
           persons = v_n, full_rebuild = v_full,
           seconds = extract(epoch FROM clock_timestamp() - v_start);
    RETURN QUERY SELECT v_n, v_full;
END $$;
REVOKE ALL ON FUNCTION mart.build(boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION mart.build_by_person() FROM PUBLIC;
REVOKE ALL ON FUNCTION mart.refresh(boolean) FROM PUBLIC;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'registrar_etl') THEN
        GRANT USAGE ON SCHEMA mart TO registrar_etl;
        GRANT EXECUTE ON FUNCTION mart.refresh(boolean) TO registrar_etl;
        GRANT SELECT ON mart.refresh_state TO registrar_etl;
        GRANT SELECT, INSERT, UPDATE, DELETE ON registry.changed_person TO registrar_etl;
    END IF;
END $$;

-- A change of the roles changes what every view selects: the concept sets and then every
-- person's marts are rebuilt in the same statement.
CREATE OR REPLACE FUNCTION research.refresh_concept_set() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM research.refresh_concept_sets();
    PERFORM mart.refresh(true);
    RETURN NULL;
END $$;

-- ---- the research views, now over the marts ----------------------------------------------
DROP VIEW research.luminal_cohort, research.her2_positive_cohort, research.tnbc_cohort,
          research.modeling_cohort, research.recurrence, research.recurrence_event,
          research.pathologic_response, research.neoadjuvant_treatment, research.subtype,
          research.receptor_status, research.breast_cancer_patient, research.first_treatment,
          research.surgery, research.systemic_therapy, research.tumour_fact,
          research.diagnosis, research.radiotherapy, research.rt_structure_set;
CREATE VIEW research.diagnosis AS SELECT * FROM mart.diagnosis;
CREATE VIEW research.tumour_fact AS SELECT * FROM mart.tumour_fact;
CREATE VIEW research.systemic_therapy AS SELECT * FROM mart.systemic_therapy;
CREATE VIEW research.surgery AS SELECT * FROM mart.surgery;
CREATE VIEW research.first_treatment AS SELECT * FROM mart.first_treatment;
CREATE VIEW research.breast_cancer_patient AS SELECT * FROM mart.breast_cancer_patient;
CREATE VIEW research.receptor_status AS SELECT * FROM mart.receptor_status;
CREATE VIEW research.subtype AS SELECT * FROM mart.subtype;
CREATE VIEW research.neoadjuvant_treatment AS SELECT * FROM mart.neoadjuvant_treatment;
CREATE VIEW research.pathologic_response AS SELECT * FROM mart.pathologic_response;
CREATE VIEW research.recurrence_event AS SELECT * FROM mart.recurrence_event;
CREATE VIEW research.recurrence AS SELECT * FROM mart.recurrence;
CREATE VIEW research.radiotherapy AS SELECT * FROM mart.radiotherapy;
CREATE VIEW research.modeling_cohort AS SELECT * FROM mart.modeling_cohort;
CREATE VIEW research.luminal_cohort AS SELECT * FROM research.modeling_cohort WHERE pillar = 'luminal';
CREATE VIEW research.her2_positive_cohort AS SELECT * FROM research.modeling_cohort WHERE pillar = 'her2_positive';
CREATE VIEW research.tnbc_cohort AS SELECT * FROM research.modeling_cohort WHERE pillar = 'tnbc';
CREATE VIEW research.rt_structure_set AS SELECT * FROM mart.rt_structure_set;

-- The views keep their descriptions; each mart says which view reads it.
DO $$
DECLARE
    v record;
BEGIN
    FOR v IN SELECT name, comment FROM mart.superseded_view LOOP
        IF v.comment IS NOT NULL THEN
            EXECUTE format('COMMENT ON VIEW research.%I IS %L', v.name,
                           v.comment || ' (Read from the research mart mart.' || v.name || ', refreshed by registrar.)');
        END IF;
        IF to_regclass(format('mart.%I', v.name)) IS NOT NULL THEN
            EXECUTE format('COMMENT ON TABLE mart.%I IS %L', v.name,
                           'Research mart behind research.' || v.name || '; built by mart.refresh() from mart.' || v.name || '_src.');
        END IF;
    END LOOP;
    FOR v IN SELECT format('%I.%I', n.nspname, c.relname) AS name
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'research' AND c.relkind = 'v' LOOP
        EXECUTE format('ALTER VIEW %s SET (security_barrier = true)', v.name);
    END LOOP;
END $$;

-- Build the marts from what the registry holds now.
SELECT mart.refresh(true);
