-- OMOP semantics: the research views select by standard concept ids and their descendants
-- (cdm.concept_ancestor), never by a source string, so any OMOP CDM (another institution's
-- mappings, an mCODE FHIR endpoint, another ETL) feeds them.
--
-- research.concept_role names what each view reads: a role (e.g. `er_status`), an anchor
-- concept and the label the view returns for it. research.concept_set expands every anchor to
-- its descendants; a concept under several anchors of one role takes the label of the nearest
-- (fewest levels of separation). The anchors are standard concepts of OHDSI's vocabularies
-- (cited in vocabulary/SOURCES.tsv) or, where none exists in a public source, registrar's
-- local concepts (vocabulary `registrar`, ids >= 2000000000, vocabulary/registrar/).
-- A site adds a role member with one INSERT; no view changes.

CREATE TABLE research.concept_role (
    role        text    NOT NULL,
    concept_id  integer NOT NULL,
    label       text    NOT NULL DEFAULT '',
    description text    NOT NULL DEFAULT '',
    PRIMARY KEY (role, concept_id)
);
COMMENT ON TABLE research.concept_role IS 'What the research views read: role, anchor concept (its descendants too) and the label a view returns for it.';

-- A materialized view (a few hundred rows, indexed, with statistics): the views join it in
-- every subquery, and a plain view's estimates make the planner recompute whole views in
-- nested loops. It is refreshed when concept_role changes (trigger below) and by
-- `registrar vocab load` (concept_ancestor).
CREATE MATERIALIZED VIEW research.concept_set AS
SELECT DISTINCT ON (role, concept_id) role, concept_id, label, anchor_concept_id, levels
  FROM (SELECT r.role, r.concept_id, r.label, r.concept_id AS anchor_concept_id, 0 AS levels
          FROM research.concept_role r
        UNION ALL
        SELECT r.role, a.descendant_concept_id, r.label, r.concept_id, a.min_levels_of_separation
          FROM research.concept_role r
          JOIN cdm.concept_ancestor a ON a.ancestor_concept_id = r.concept_id
         WHERE a.descendant_concept_id <> r.concept_id) x
 ORDER BY role, concept_id, levels, anchor_concept_id;
CREATE UNIQUE INDEX concept_set_role_concept ON research.concept_set (role, concept_id);
CREATE INDEX concept_set_concept ON research.concept_set (concept_id);
COMMENT ON MATERIALIZED VIEW research.concept_set IS 'research.concept_role expanded to descendants (cdm.concept_ancestor); the nearest anchor gives the label.';

-- Refreshing takes the owner's rights: the nightly's role calls this function (granted by
-- `registrar roles apply`), not REFRESH itself.
CREATE FUNCTION research.refresh_concept_sets() RETURNS void LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    REFRESH MATERIALIZED VIEW research.concept_set;
    ANALYZE research.concept_set;
END $$;
REVOKE ALL ON FUNCTION research.refresh_concept_sets() FROM PUBLIC;
-- A registry whose roles were applied before this migration: the nightly's role can refresh
-- at once (`registrar roles apply` grants it too).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'registrar_etl') THEN
        GRANT EXECUTE ON FUNCTION research.refresh_concept_sets() TO registrar_etl;
    END IF;
END $$;
CREATE FUNCTION research.refresh_concept_set() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM research.refresh_concept_sets();
    RETURN NULL;
END $$;
CREATE TRIGGER concept_role_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON research.concept_role FOR EACH STATEMENT EXECUTE FUNCTION research.refresh_concept_set();

DROP VIEW research.luminal_cohort, research.her2_positive_cohort, research.tnbc_cohort,
          research.modeling_cohort, research.recurrence, research.pathologic_response,
          research.neoadjuvant_treatment, research.surgery, research.subtype,
          research.receptor_status, research.first_treatment, research.breast_cancer_patient,
          research.rt_structure_set;

-- The first breast-cancer diagnosis of each person (role breast_cancer).
CREATE VIEW research.diagnosis AS
SELECT DISTINCT ON (co.person_id)
       co.person_id, co.condition_occurrence_id, co.condition_start_date AS diagnosis_date,
       co.condition_concept_id AS diagnosis_concept_id
  FROM cdm.condition_occurrence co
  JOIN research.concept_set cs ON cs.role = 'breast_cancer' AND cs.concept_id = co.condition_concept_id
 WHERE NOT EXISTS (SELECT 1 FROM research.concept_set r
                    WHERE r.role = 'recurrence' AND r.concept_id = co.condition_concept_id)
 ORDER BY co.person_id, co.condition_start_date, co.condition_occurrence_id;
COMMENT ON VIEW research.diagnosis IS 'First breast cancer diagnosis per person: a condition under role breast_cancer (Malignant tumor of breast and descendants).';

-- Every Cancer Modifier style fact of a person: TNM, stage, grade, laterality, histology.
-- A measurement whose concept is in a role carries its label; a measurement or observation
-- whose value concept is in a role (laterality, histology) carries the value's label.
CREATE VIEW research.tumour_fact AS
SELECT m.person_id, cs.role, cs.label, m.value_as_number, m.measurement_date AS fact_date,
       m.measurement_id AS fact_id
  FROM cdm.measurement m
  JOIN research.concept_set cs ON cs.concept_id = m.measurement_concept_id
 WHERE cs.role IN ('clinical_t', 'clinical_n', 'clinical_m', 'clinical_stage',
                   'pathological_t', 'pathological_n', 'pathological_m', 'pathological_stage',
                   't', 'n', 'm', 'stage', 'grade', 'grade_measurement')
UNION ALL
SELECT m.person_id, vs.role, vs.label, NULL, m.measurement_date, m.measurement_id
  FROM cdm.measurement m
  JOIN research.concept_set cs ON cs.concept_id = m.measurement_concept_id
                              AND cs.role IN ('laterality_of', 'histology_of')
  JOIN research.concept_set vs ON vs.concept_id = m.value_as_concept_id
                              AND vs.role = CASE cs.role WHEN 'laterality_of' THEN 'laterality' ELSE 'histology' END
UNION ALL
SELECT o.person_id, vs.role, vs.label, NULL, o.observation_date, o.observation_id
  FROM cdm.observation o
  JOIN research.concept_set cs ON cs.concept_id = o.observation_concept_id
                              AND cs.role IN ('laterality_of', 'histology_of')
  JOIN research.concept_set vs ON vs.concept_id = o.value_as_concept_id
                              AND vs.role = CASE cs.role WHEN 'laterality_of' THEN 'laterality' ELSE 'histology' END;
COMMENT ON VIEW research.tumour_fact IS 'TNM, stage, grade, laterality and histology facts by role and label (concept-driven).';

-- Systemic antineoplastic drug exposures (role antineoplastic: RxNorm ingredients and
-- their descendants) and breast surgery (role breast_surgery).
CREATE VIEW research.systemic_therapy AS
SELECT d.person_id, d.drug_exposure_id, d.drug_exposure_start_date AS start_date,
       coalesce(d.drug_exposure_end_date, d.drug_exposure_start_date) AS end_date,
       cs.anchor_concept_id AS ingredient_concept_id, cs.label AS agent, st.label AS setting
  FROM cdm.drug_exposure d
  JOIN research.concept_set cs ON cs.role = 'antineoplastic' AND cs.concept_id = d.drug_concept_id
  LEFT JOIN (SELECT DISTINCT ON (o.person_id, o.observation_date) o.person_id, o.observation_date, v.label
               FROM cdm.observation o
               JOIN research.concept_set s ON s.role = 'therapy_setting_of' AND s.concept_id = o.observation_concept_id
               JOIN research.concept_set v ON v.role = 'therapy_setting' AND v.concept_id = o.value_as_concept_id
              ORDER BY o.person_id, o.observation_date, o.observation_id) st
         ON st.person_id = d.person_id AND st.observation_date = d.drug_exposure_start_date;
COMMENT ON VIEW research.systemic_therapy IS 'Antineoplastic and endocrine drug exposures, by ingredient (role antineoplastic), with the setting the source recorded for the day (neoadjuvant, adjuvant, palliative), if any.';

CREATE VIEW research.surgery AS
SELECT DISTINCT ON (p.person_id) p.person_id, p.procedure_date AS surgery_date,
       cs.label AS surgery_type, p.procedure_concept_id
  FROM cdm.procedure_occurrence p
  JOIN research.concept_set cs ON cs.role = 'breast_surgery' AND cs.concept_id = p.procedure_concept_id
 ORDER BY p.person_id, p.procedure_date, p.procedure_occurrence_id;
COMMENT ON VIEW research.surgery IS 'First breast cancer surgery per person: mastectomy or breast_conserving (role breast_surgery).';

CREATE VIEW research.first_treatment AS
SELECT person_id, min(d) AS first_treatment_date FROM (
    SELECT person_id, surgery_date AS d FROM research.surgery
    UNION ALL
    SELECT person_id, start_date FROM research.systemic_therapy
) t GROUP BY person_id;

CREATE VIEW research.breast_cancer_patient AS
WITH f AS (
    SELECT t.*, d.diagnosis_date, ft.first_treatment_date
      FROM research.tumour_fact t
      JOIN research.diagnosis d USING (person_id)
      LEFT JOIN research.first_treatment ft USING (person_id)
), pick AS (
    -- per role, the fact of the diagnosis (on or before the first treatment), else the earliest
    SELECT DISTINCT ON (person_id, role) person_id, role, label, value_as_number, fact_date,
           first_treatment_date
      FROM f
     ORDER BY person_id, role,
              (first_treatment_date IS NOT NULL AND fact_date > first_treatment_date),
              fact_date, fact_id
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
  FROM research.diagnosis d
  JOIN cdm.person p USING (person_id)
  LEFT JOIN baseline b USING (person_id);
COMMENT ON VIEW research.breast_cancer_patient IS 'First breast cancer diagnosis per patient with laterality, age at diagnosis (whole years; computed on shifted dates, so it can differ by one from the true age when the diagnosis falls within a day of a birthday across a 29 February), cTNM, clinical stage, grade and ICD-O-3 histology, all read from concepts (research.concept_role).';

CREATE VIEW research.receptor_status AS
WITH m AS (
    -- a percentage on a qualitative receptor concept (unit percent) counts as the percentage
    SELECT m.person_id, m.measurement_date,
           CASE WHEN cs.role IN ('er_status', 'pr_status') AND m.value_as_number IS NOT NULL
                     AND m.unit_concept_id = 8554
                THEN replace(cs.role, '_status', '_pct') ELSE cs.role END AS role,
           m.value_as_number AS num, v.label AS value_label, v.role AS value_role
      FROM cdm.measurement m
      JOIN research.concept_set cs ON cs.concept_id = m.measurement_concept_id
                                  AND cs.role IN ('er_status', 'er_pct', 'er_allred', 'pr_status', 'pr_pct',
                                                  'pr_allred', 'her2_ihc', 'her2_ish', 'ki67_pct')
      LEFT JOIN research.concept_set v ON v.concept_id = m.value_as_concept_id
                                      AND v.role IN ('result', 'her2_ihc_score')
), r AS (
    -- per kind of result, the one closest before the first treatment (else the earliest)
    SELECT DISTINCT ON (m.person_id, m.role) m.*
      FROM m
      LEFT JOIN research.first_treatment f USING (person_id)
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
COMMENT ON VIEW research.receptor_status IS 'ER, PR (percentage, else qualitative result, else Allred score >= 3), HER2 (IHC score or result, ISH) and Ki-67 per patient, the results closest before the first treatment; read from LOINC measurements and value concepts (research.concept_role).';

CREATE VIEW research.subtype AS
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
  FROM research.receptor_status r;
COMMENT ON VIEW research.subtype IS 'St Gallen 2013 / ESMO surrogate subtypes from research.receptor_status, cut-offs in research.subtype_rule: luminal_a (HR+, HER2-, Ki-67 < 20 %, PR >= 20 %), luminal_b_her2neg, luminal_b_her2pos (HR+ HER2+), her2_enriched (HR- HER2+), tnbc (HR- HER2-), luminal_unknown (HR+ HER2- without Ki-67 or PR %), unknown.';

-- Neoadjuvant therapy: systemic therapy from the diagnosis to the first breast surgery.
CREATE VIEW research.neoadjuvant_treatment AS
SELECT t.person_id,
       min(t.start_date) AS start_date,
       max(t.start_date) AS last_administration_date,
       string_agg(DISTINCT t.agent, ', ' ORDER BY t.agent) AS agents,
       count(*) AS administrations
  FROM research.systemic_therapy t
  JOIN research.diagnosis d USING (person_id)
  JOIN research.surgery su USING (person_id)
 WHERE t.start_date >= d.diagnosis_date AND t.start_date < su.surgery_date
 GROUP BY t.person_id;
COMMENT ON VIEW research.neoadjuvant_treatment IS 'Systemic antineoplastic therapy given between the breast cancer diagnosis and the first breast surgery.';

CREATE VIEW research.pathologic_response AS
WITH n AS MATERIALIZED (SELECT * FROM research.neoadjuvant_treatment),
yp AS (
    -- pathological staging after the start of neoadjuvant therapy (ypTNM)
    SELECT DISTINCT ON (t.person_id, t.role) t.person_id, t.role, t.label
      FROM research.tumour_fact t
      JOIN n USING (person_id)
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
  LEFT JOIN research.surgery su USING (person_id)
  LEFT JOIN y USING (person_id);
COMMENT ON VIEW research.pathologic_response IS 'pCR = ypT0/Tis ypN0 (pathological TNM after the start of neoadjuvant therapy); non-pCR otherwise; unknown without surgery or ypTNM.';

-- Recurrences: conditions of a recurrence kind (role recurrence: local recurrence of breast
-- cancer, regional lymph node metastasis, distant metastasis of breast cancer).
CREATE VIEW research.recurrence_event AS
SELECT c.person_id, c.condition_start_date AS event_date, k.label AS kind
  FROM cdm.condition_occurrence c
  JOIN research.concept_set k ON k.role = 'recurrence' AND k.concept_id = c.condition_concept_id;
COMMENT ON VIEW research.recurrence_event IS 'Local, regional and distant recurrences (conditions under role recurrence).';

CREATE VIEW research.recurrence AS
WITH rec AS (
    SELECT e.person_id,
           min(e.event_date) FILTER (WHERE e.kind = 'local') AS first_local,
           min(e.event_date) FILTER (WHERE e.kind = 'regional') AS first_regional,
           min(e.event_date) FILTER (WHERE e.kind = 'distant') AS first_distant
      FROM research.recurrence_event e
      JOIN research.surgery s USING (person_id)
     WHERE e.event_date > s.surgery_date
     GROUP BY e.person_id
), last_contact AS (
    SELECT person_id, max(d) AS last_contact_date FROM (
        SELECT person_id, measurement_date AS d FROM cdm.measurement
        UNION ALL SELECT person_id, observation_date FROM cdm.observation
        UNION ALL SELECT person_id, drug_exposure_start_date FROM cdm.drug_exposure
        UNION ALL SELECT person_id, procedure_date FROM cdm.procedure_occurrence
        UNION ALL SELECT person_id, condition_start_date FROM cdm.condition_occurrence
        UNION ALL SELECT person_id, episode_start_date FROM cdm.episode
        UNION ALL SELECT person_id, death_date FROM cdm.death
    ) x GROUP BY person_id
)
SELECT s.person_id, s.surgery_date,
       r.first_local, r.first_regional, r.first_distant,
       dt.death_date,
       least(r.first_local, r.first_regional, r.first_distant, dt.death_date) AS rfs_event_date,
       least(r.first_local, r.first_regional, r.first_distant, dt.death_date) IS NOT NULL AS rfs_event,
       (coalesce(least(r.first_local, r.first_regional, r.first_distant, dt.death_date), lc.last_contact_date)
          - s.surgery_date) AS rfs_days
  FROM research.surgery s
  LEFT JOIN rec r USING (person_id)
  LEFT JOIN cdm.death dt USING (person_id)
  LEFT JOIN last_contact lc USING (person_id);
COMMENT ON VIEW research.recurrence IS 'Recurrence-free survival from surgery: event = first local, regional or distant recurrence after surgery, or death; censored at the last recorded contact.';

-- Radiotherapy courses (role radiotherapy; the label says the target) with the total dose in
-- gray recorded for the course (an observation of role rt_total_dose linked to the procedure
-- by observation_event_id, else of the course's start date).
CREATE VIEW research.radiotherapy AS
WITH dose AS (
    SELECT o.person_id, o.observation_id, o.observation_event_id, o.observation_date, o.value_as_number
      FROM cdm.observation o
      JOIN research.concept_set d ON d.role = 'rt_total_dose' AND d.concept_id = o.observation_concept_id
     WHERE o.unit_concept_id IS NULL OR o.unit_concept_id = 9519
)
SELECT p.person_id, p.procedure_occurrence_id, p.procedure_date AS start_date,
       p.procedure_end_date AS end_date, cs.label AS target, p.quantity AS fractions,
       coalesce(by_event.value_as_number, by_date.value_as_number) AS total_dose_gy
  FROM cdm.procedure_occurrence p
  JOIN research.concept_set cs ON cs.role = 'radiotherapy' AND cs.concept_id = p.procedure_concept_id
  LEFT JOIN (SELECT DISTINCT ON (observation_event_id) * FROM dose
              WHERE observation_event_id IS NOT NULL ORDER BY observation_event_id, observation_id) by_event
         ON by_event.observation_event_id = p.procedure_occurrence_id AND by_event.person_id = p.person_id
  LEFT JOIN (SELECT DISTINCT ON (person_id, observation_date) * FROM dose
              WHERE observation_event_id IS NULL ORDER BY person_id, observation_date, observation_id) by_date
         ON by_date.person_id = p.person_id AND by_date.observation_date = p.procedure_date;
COMMENT ON VIEW research.radiotherapy IS 'Radiotherapy courses: dates, target (whole_breast, chest_wall, boost, or radiotherapy when unstated), fractions and total dose in Gy.';

-- One modeling-ready row per patient and pillar: features and outcomes. Each part is
-- computed once (MATERIALIZED): a filter on the pillar would otherwise be estimated to keep
-- one row and the planner would recompute whole views inside nested loops.
CREATE VIEW research.modeling_cohort AS
WITH b AS MATERIALIZED (SELECT * FROM research.breast_cancer_patient),
     r AS MATERIALIZED (SELECT * FROM research.receptor_status),
     st AS MATERIALIZED (SELECT * FROM research.subtype),
     n AS MATERIALIZED (SELECT * FROM research.neoadjuvant_treatment),
     s AS MATERIALIZED (SELECT * FROM research.surgery),
     pr AS MATERIALIZED (SELECT * FROM research.pathologic_response),
     rc AS MATERIALIZED (SELECT * FROM research.recurrence)
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
  FROM b
  LEFT JOIN r USING (person_id)
  LEFT JOIN st USING (person_id)
  LEFT JOIN n USING (person_id)
  LEFT JOIN s USING (person_id)
  LEFT JOIN pr USING (person_id)
  LEFT JOIN rc USING (person_id);

CREATE VIEW research.luminal_cohort AS SELECT * FROM research.modeling_cohort WHERE pillar = 'luminal';
CREATE VIEW research.her2_positive_cohort AS SELECT * FROM research.modeling_cohort WHERE pillar = 'her2_positive';
CREATE VIEW research.tnbc_cohort AS SELECT * FROM research.modeling_cohort WHERE pillar = 'tnbc';

-- RT structure sets: image features of role rt_structure_roi (written by
-- `registrar dicom index`; the ROI facts are a JSON object in alg_system).
CREATE VIEW research.rt_structure_set AS
WITH f AS (
    SELECT f.image_feature_id, f.person_id, f.image_occurrence_id, f.alg_system::jsonb AS a
      FROM cdm.image_feature f
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


-- The roles (vocabulary/SOURCES.tsv cites every standard concept; registrar's local concepts
-- are in vocabulary/registrar/CONCEPT.csv).
INSERT INTO research.concept_role (role, concept_id, label, description) VALUES
    ('breast_cancer', 4112853, '', 'Malignant tumor of breast (SNOMED 254837009) and descendants'),
    ('recurrence', 4201477, 'local', 'Local recurrence of malignant tumor of breast (SNOMED 314955001)'),
    ('recurrence', 4163438, 'regional', 'Regional lymph node metastasis present (SNOMED 399374009)'),
    ('recurrence', 4198446, 'distant', 'Metastasis from malignant tumor of breast (SNOMED 315004001)'),
    ('recurrence', 4163446, 'distant', 'Distant metastasis present (SNOMED 399409002)'),
    ('clinical_t', 1635155, 'T0', 'AJCC/UICC clinical T0 Category'),
    ('clinical_t', 1635661, 'T1', 'AJCC/UICC clinical T1 Category'),
    ('clinical_t', 1635832, 'T1mi', 'AJCC/UICC clinical T1mi Category'),
    ('clinical_t', 1633742, 'T1a', 'AJCC/UICC clinical T1a Category'),
    ('clinical_t', 1635039, 'T1b', 'AJCC/UICC clinical T1b Category'),
    ('clinical_t', 1634320, 'T1c', 'AJCC/UICC clinical T1c Category'),
    ('clinical_t', 1635033, 'T2', 'AJCC/UICC clinical T2 Category'),
    ('clinical_t', 1635895, 'T3', 'AJCC/UICC clinical T3 Category'),
    ('clinical_t', 1635558, 'T4', 'AJCC/UICC clinical T4 Category'),
    ('clinical_t', 1634192, 'T4a', 'AJCC/UICC clinical T4a Category'),
    ('clinical_t', 1634291, 'T4b', 'AJCC/UICC clinical T4b Category'),
    ('clinical_t', 1634877, 'T4c', 'AJCC/UICC clinical T4c Category'),
    ('clinical_t', 1635368, 'T4d', 'AJCC/UICC clinical T4d Category'),
    ('clinical_t', 1634460, 'TX', 'AJCC/UICC clinical TX Category'),
    ('clinical_n', 1634145, 'N0', 'AJCC/UICC clinical N0 Category'),
    ('clinical_n', 1635729, 'N1', 'AJCC/UICC clinical N1 Category'),
    ('clinical_n', 1635121, 'N1mi', 'AJCC/UICC clinical N1mi Category'),
    ('clinical_n', 1635164, 'N1a', 'AJCC/UICC clinical N1a Category'),
    ('clinical_n', 1635599, 'N1b', 'AJCC/UICC clinical N1b Category'),
    ('clinical_n', 1634934, 'N1c', 'AJCC/UICC clinical N1c Category'),
    ('clinical_n', 1634523, 'N2', 'AJCC/UICC clinical N2 Category'),
    ('clinical_n', 1633429, 'N2a', 'AJCC/UICC clinical N2a Category'),
    ('clinical_n', 1634977, 'N2b', 'AJCC/UICC clinical N2b Category'),
    ('clinical_n', 1633914, 'N3', 'AJCC/UICC clinical N3 Category'),
    ('clinical_n', 1634649, 'N3a', 'AJCC/UICC clinical N3a Category'),
    ('clinical_n', 1635610, 'N3b', 'AJCC/UICC clinical N3b Category'),
    ('clinical_n', 1634650, 'N3c', 'AJCC/UICC clinical N3c Category'),
    ('clinical_n', 1634722, 'NX', 'AJCC/UICC clinical NX Category'),
    ('clinical_m', 1635291, 'M0', 'AJCC/UICC clinical M0 Category'),
    ('clinical_m', 1635085, 'M1', 'AJCC/UICC clinical M1 Category'),
    ('pathological_t', 1635740, 'T0', 'AJCC/UICC pathological T0 Category'),
    ('pathological_t', 1634581, 'Tis', 'AJCC/UICC pathological Tis Category'),
    ('pathological_t', 1634004, 'T1', 'AJCC/UICC pathological T1 Category'),
    ('pathological_t', 1634428, 'T1mi', 'AJCC/UICC pathological T1mi Category'),
    ('pathological_t', 1633722, 'T1a', 'AJCC/UICC pathological T1a Category'),
    ('pathological_t', 1633693, 'T1b', 'AJCC/UICC pathological T1b Category'),
    ('pathological_t', 1635017, 'T1c', 'AJCC/UICC pathological T1c Category'),
    ('pathological_t', 1633978, 'T2', 'AJCC/UICC pathological T2 Category'),
    ('pathological_t', 1634406, 'T3', 'AJCC/UICC pathological T3 Category'),
    ('pathological_t', 1633943, 'T4', 'AJCC/UICC pathological T4 Category'),
    ('pathological_t', 1633300, 'T4a', 'AJCC/UICC pathological T4a Category'),
    ('pathological_t', 1634957, 'T4b', 'AJCC/UICC pathological T4b Category'),
    ('pathological_t', 1635446, 'T4c', 'AJCC/UICC pathological T4c Category'),
    ('pathological_t', 1635003, 'T4d', 'AJCC/UICC pathological T4d Category'),
    ('pathological_t', 1633925, 'TX', 'AJCC/UICC pathological TX Category'),
    ('pathological_n', 1635597, 'N0', 'AJCC/UICC pathological N0 Category'),
    ('pathological_n', 1635613, 'N1', 'AJCC/UICC pathological N1 Category'),
    ('pathological_n', 1633502, 'N1mi', 'AJCC/UICC pathological N1mi Category'),
    ('pathological_n', 1634206, 'N1a', 'AJCC/UICC pathological N1a Category'),
    ('pathological_n', 1633830, 'N1b', 'AJCC/UICC pathological N1b Category'),
    ('pathological_n', 1634589, 'N1c', 'AJCC/UICC pathological N1c Category'),
    ('pathological_n', 1633864, 'N2', 'AJCC/UICC pathological N2 Category'),
    ('pathological_n', 1633890, 'N2a', 'AJCC/UICC pathological N2a Category'),
    ('pathological_n', 1633460, 'N2b', 'AJCC/UICC pathological N2b Category'),
    ('pathological_n', 1635706, 'N3', 'AJCC/UICC pathological N3 Category'),
    ('pathological_n', 1633401, 'N3a', 'AJCC/UICC pathological N3a Category'),
    ('pathological_n', 1633384, 'N3b', 'AJCC/UICC pathological N3b Category'),
    ('pathological_n', 1634305, 'N3c', 'AJCC/UICC pathological N3c Category'),
    ('pathological_n', 1635170, 'NX', 'AJCC/UICC pathological NX Category'),
    ('pathological_m', 1635505, 'M1', 'AJCC/UICC pathological M1 Category'),
    ('t', 1634530, 'Tis', 'AJCC/UICC Tis Category (basis unstated)'),
    ('t', 1635564, 'T1', 'AJCC/UICC T1 Category (basis unstated)'),
    ('t', 1635562, 'T2', 'AJCC/UICC T2 Category (basis unstated)'),
    ('n', 1633440, 'N0', 'AJCC/UICC N0 Category (basis unstated)'),
    ('n', 1634434, 'N1', 'AJCC/UICC N1 Category (basis unstated)'),
    ('n', 1635335, 'N1mi', 'AJCC/UICC N1mi Category (basis unstated)'),
    ('n', 1633735, 'N1a', 'AJCC/UICC N1a Category (basis unstated)'),
    ('n', 1635130, 'N1b', 'AJCC/UICC N1b Category (basis unstated)'),
    ('n', 1634620, 'N1c', 'AJCC/UICC N1c Category (basis unstated)'),
    ('n', 1634119, 'N2', 'AJCC/UICC N2 Category (basis unstated)'),
    ('n', 1635644, 'N2a', 'AJCC/UICC N2a Category (basis unstated)'),
    ('n', 1634134, 'N2b', 'AJCC/UICC N2b Category (basis unstated)'),
    ('n', 1635320, 'N3', 'AJCC/UICC N3 Category (basis unstated)'),
    ('n', 1635590, 'N3a', 'AJCC/UICC N3a Category (basis unstated)'),
    ('n', 1633422, 'N3b', 'AJCC/UICC N3b Category (basis unstated)'),
    ('n', 1634735, 'N3c', 'AJCC/UICC N3c Category (basis unstated)'),
    ('n', 1633885, 'NX', 'AJCC/UICC NX Category (basis unstated)'),
    ('m', 1635624, 'M0', 'AJCC/UICC M0 Category (basis unstated)'),
    ('m', 1635142, 'M1', 'AJCC/UICC M1 Category (basis unstated)'),
    ('m', 1633547, 'MX', 'AJCC/UICC MX Category (basis unstated)'),
    ('stage', 1634946, '0', 'Stage 0'),
    ('stage', 1635838, 'I', 'Stage 1'),
    ('stage', 1633544, 'IA', 'Stage 1A'),
    ('stage', 1635041, 'IB', 'Stage 1B'),
    ('stage', 1635131, 'II', 'Stage 2'),
    ('stage', 1634370, 'IIA', 'Stage 2A'),
    ('stage', 1634764, 'IIB', 'Stage 2B'),
    ('stage', 1634191, 'III', 'Stage 3'),
    ('stage', 1633965, 'IIIA', 'Stage 3A'),
    ('stage', 1634175, 'IIIB', 'Stage 3B'),
    ('stage', 1635305, 'IIIC', 'Stage 3C'),
    ('stage', 1633987, 'IV', 'Stage 4'),
    ('stage', 1634494, 'IB', 'AJCC/UICC Stage 1B'),
    ('stage', 1634123, 'IIA', 'AJCC/UICC Stage 2A'),
    ('stage', 1634028, 'IIB', 'AJCC/UICC Stage 2B'),
    ('stage', 1635855, 'IIIA', 'AJCC/UICC Stage 3A'),
    ('stage', 1634411, 'IIIB', 'AJCC/UICC Stage 3B'),
    ('stage', 1634150, 'IIIC', 'AJCC/UICC Stage 3C'),
    ('grade_measurement', 2000000110, '', 'Histologic grade (Nottingham), value_as_number 1-3 (registrar local)'),
    ('laterality_of', 2000000111, '', 'Laterality of the primary breast tumour (registrar local)'),
    ('laterality', 2000000121, 'left', 'Left (registrar local)'),
    ('laterality', 2000000122, 'right', 'Right (registrar local)'),
    ('histology_of', 2000000112, '', 'Histology of the primary tumour, ICD-O-3 morphology (registrar local)'),
    ('histology', 2000000131, '8500/3', 'ICD-O-3 8500/3 (registrar local value concept)'),
    ('histology', 2000000132, '8520/3', 'ICD-O-3 8520/3 (registrar local value concept)'),
    ('histology', 2000000133, '8522/3', 'ICD-O-3 8522/3 (registrar local value concept)'),
    ('histology', 2000000134, '8480/3', 'ICD-O-3 8480/3 (registrar local value concept)'),
    ('histology', 2000000135, '8211/3', 'ICD-O-3 8211/3 (registrar local value concept)'),
    ('er_status', 36203168, '', 'Estrogen receptor Ag [Presence] in Breast cancer specimen by Immune stain (LOINC 85337-4)'),
    ('pr_status', 36203170, '', 'Progesterone receptor Ag [Presence] in Breast cancer specimen by Immune stain (LOINC 85339-0)'),
    ('er_pct', 2000000101, '', 'ER % of tumour cell nuclei positive (registrar local)'),
    ('pr_pct', 2000000102, '', 'PR % of tumour cell nuclei positive (registrar local)'),
    ('er_allred', 2000000103, '', 'ER Allred score (registrar local)'),
    ('pr_allred', 2000000104, '', 'PR Allred score (registrar local)'),
    ('her2_ihc', 36203114, '', 'HER2 [Presence] in Breast cancer specimen by Immune stain (LOINC 85319-2)'),
    ('her2_ish', 36203113, '', 'ERBB2 gene duplication [Presence] in Breast cancer specimen by FISH (LOINC 85318-4)'),
    ('ki67_pct', 2000000105, '', 'Ki-67 % of tumour cell nuclei positive (registrar local)'),
    ('result', 9191, 'positive', 'Positive (SNOMED 10828004)'),
    ('result', 45884084, 'positive', 'Positive (LOINC LA6576-8)'),
    ('result', 9189, 'negative', 'Negative (SNOMED 260385009)'),
    ('result', 45878583, 'negative', 'Negative (LOINC LA6577-6)'),
    ('result', 2000000141, 'equivocal', 'Equivocal (registrar local)'),
    ('her2_ihc_score', 45877013, '0', '0 - absent (LOINC LA16631-6)'),
    ('her2_ihc_score', 45878548, '1+', '1+ (LOINC LA11841-6)'),
    ('her2_ihc_score', 45881916, '2+', '2+ (LOINC LA11842-4)'),
    ('her2_ihc_score', 45876467, '3+', '3+ (LOINC LA11843-2)'),
    ('antineoplastic', 1338512, 'doxorubicin', 'doxorubicin (RxNorm ingredient)'),
    ('antineoplastic', 1310317, 'cyclophosphamide', 'cyclophosphamide (RxNorm ingredient)'),
    ('antineoplastic', 1378382, 'paclitaxel', 'paclitaxel (RxNorm ingredient)'),
    ('antineoplastic', 1315942, 'docetaxel', 'docetaxel (RxNorm ingredient)'),
    ('antineoplastic', 1344905, 'carboplatin', 'carboplatin (RxNorm ingredient)'),
    ('antineoplastic', 1387104, 'trastuzumab', 'trastuzumab (RxNorm ingredient)'),
    ('antineoplastic', 42801287, 'pertuzumab', 'pertuzumab (RxNorm ingredient)'),
    ('antineoplastic', 1436678, 'tamoxifen', 'tamoxifen (RxNorm ingredient)'),
    ('antineoplastic', 1348265, 'anastrozole', 'anastrozole (RxNorm ingredient)'),
    ('antineoplastic', 1337620, 'capecitabine', 'capecitabine (RxNorm ingredient)'),
    ('antineoplastic', 1344354, 'epirubicin', 'epirubicin (RxNorm ingredient)'),
    ('antineoplastic', 955632, 'fluorouracil', 'fluorouracil (RxNorm ingredient)'),
    ('antineoplastic', 1366310, 'goserelin', 'goserelin (RxNorm ingredient)'),
    ('antineoplastic', 19022830, 'letrozole', 'letrozole 2.5 MG Oral Tablet (RxNorm clinical drug; the ingredient is not in the cited sources)'),
    ('antineoplastic', 19077218, 'exemestane', 'exemestane 25 MG Oral Tablet (RxNorm clinical drug; the ingredient is not in the cited sources)'),
    ('therapy_setting_of', 2000000161, '', 'Systemic therapy setting (registrar local)'),
    ('therapy_setting', 2000000162, 'neoadjuvant', 'Neoadjuvant (registrar local)'),
    ('therapy_setting', 2000000163, 'adjuvant', 'Adjuvant (registrar local)'),
    ('therapy_setting', 2000000164, 'palliative', 'Palliative (registrar local)'),
    ('breast_surgery', 4213045, 'breast_conserving', 'Lumpectomy of breast (SNOMED 392021009)'),
    ('breast_surgery', 4286804, 'mastectomy', 'Excision of breast tissue / mastectomy (SNOMED 69031006)'),
    ('breast_surgery', 4231761, 'mastectomy', 'Radical mastectomy (SNOMED 359728003)'),
    ('breast_surgery', 4297155, 'mastectomy', 'Bilateral radical mastectomy (SNOMED 76468001)'),
    ('radiotherapy', 4029715, 'radiotherapy', 'Radiation oncology AND/OR radiotherapy (SNOMED 108290001)'),
    ('radiotherapy', 4141448, 'radiotherapy', 'Teleradiotherapy procedure (SNOMED 33195004)'),
    ('radiotherapy', 40486537, 'brachytherapy', 'Brachytherapy of breast (SNOMED 447759004)'),
    ('radiotherapy', 2000000181, 'whole_breast', 'External beam radiotherapy to the whole breast (registrar local)'),
    ('radiotherapy', 2000000182, 'chest_wall', 'External beam radiotherapy to the chest wall (registrar local)'),
    ('radiotherapy', 2000000183, 'boost', 'Boost to the tumour bed (registrar local)'),
    ('rt_total_dose', 2000000173, '', 'Radiotherapy course: total prescribed dose, Gy (registrar local)'),
    ('rt_structure_roi', 2000000501, '', 'RT structure set region of interest (registrar local)');

DO $$
DECLARE v record;
BEGIN
    FOR v IN SELECT format('%I.%I', n.nspname, c.relname) AS name
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'research' AND c.relkind = 'v' LOOP
        EXECUTE format('ALTER VIEW %s SET (security_barrier = true)', v.name);
    END LOOP;
END $$;
