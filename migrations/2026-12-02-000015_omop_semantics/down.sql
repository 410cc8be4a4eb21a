-- Back to the views on registrar's source strings (migrations 2026-11-27-000004_research
-- and 2026-11-27-000009_colocated_joins).
DROP VIEW research.luminal_cohort, research.her2_positive_cohort, research.tnbc_cohort,
          research.modeling_cohort, research.recurrence, research.recurrence_event,
          research.pathologic_response, research.neoadjuvant_treatment, research.subtype,
          research.receptor_status, research.subtype_rule, research.breast_cancer_patient,
          research.first_treatment, research.surgery, research.systemic_therapy,
          research.tumour_fact, research.diagnosis, research.radiotherapy,
          research.rt_structure_set;
DROP MATERIALIZED VIEW research.concept_set;
DROP TABLE research.concept_role;
DROP FUNCTION research.refresh_concept_set();
DROP FUNCTION research.refresh_concept_sets();

-- Subtype rules and cut-offs, in one place (St Gallen 2013 / ESMO surrogate definitions).
CREATE VIEW research.subtype_rule AS
SELECT * FROM (VALUES
    ('er_positive_min_pct',  1::numeric, 'ER positive when >= 1 % of tumour cells stain (ASCO/CAP)'),
    ('pr_positive_min_pct',  1::numeric, 'PR positive when >= 1 % of tumour cells stain (ASCO/CAP)'),
    ('luminal_a_min_pr_pct', 20::numeric, 'luminal A-like needs PR >= 20 % (St Gallen 2013)'),
    ('luminal_a_max_ki67_pct', 20::numeric, 'luminal A-like needs Ki-67 < 20 % (St Gallen 2013)')
) AS r(rule, value, description);

CREATE VIEW research.breast_cancer_patient AS
WITH dx AS (
    SELECT DISTINCT ON (person_id) person_id, condition_start_date AS diagnosis_date,
           condition_source_value AS icd10
      FROM cdm.condition_occurrence
     WHERE condition_concept_id = 4112853 OR condition_source_value LIKE 'C50%'
     ORDER BY person_id, condition_start_date, condition_occurrence_id
), tnm AS (
    SELECT person_id,
           max(value_source_value) FILTER (WHERE measurement_source_value = 'cT') AS ct,
           max(value_source_value) FILTER (WHERE measurement_source_value = 'cN') AS cn,
           max(value_source_value) FILTER (WHERE measurement_source_value = 'cM') AS cm,
           max(value_source_value) FILTER (WHERE measurement_source_value = 'cStage') AS clinical_stage
      FROM cdm.measurement
     WHERE measurement_source_value IN ('cT', 'cN', 'cM', 'cStage')
     GROUP BY person_id
)
SELECT d.person_id,
       d.diagnosis_date,
       extract(year FROM d.diagnosis_date)::int AS diagnosis_year,
       d.icd10,
       CASE lat.value_source_value WHEN 'L' THEN 'left' WHEN 'R' THEN 'right' END AS laterality,
       CASE WHEN p.month_of_birth IS NOT NULL AND p.day_of_birth IS NOT NULL
            THEN extract(year FROM age(d.diagnosis_date,
                   make_date(p.year_of_birth, p.month_of_birth, p.day_of_birth)))::int
            ELSE extract(year FROM d.diagnosis_date)::int - p.year_of_birth END AS age_at_diagnosis,
       t.ct, t.cn, t.cm, t.clinical_stage,
       g.value_as_number::int AS grade,
       h.value_source_value AS histology_icdo3
  FROM dx d
  JOIN cdm.person p USING (person_id)
  LEFT JOIN tnm t USING (person_id)
  LEFT JOIN LATERAL (SELECT value_source_value FROM cdm.observation o
                      WHERE o.person_id = d.person_id AND o.observation_source_value = 'laterality'
                      ORDER BY o.observation_date LIMIT 1) lat ON true
  LEFT JOIN LATERAL (SELECT value_as_number FROM cdm.measurement m
                      WHERE m.person_id = d.person_id AND m.measurement_source_value = 'GRADE'
                      ORDER BY m.measurement_date LIMIT 1) g ON true
  LEFT JOIN LATERAL (SELECT value_source_value FROM cdm.observation o
                      WHERE o.person_id = d.person_id AND o.observation_source_value = 'icdo3_morphology'
                      ORDER BY o.observation_date LIMIT 1) h ON true;

-- First treatment: surgery or systemic therapy, whichever comes first.
CREATE VIEW research.first_treatment AS
SELECT person_id, min(d) AS first_treatment_date FROM (
    SELECT person_id, procedure_date AS d FROM cdm.procedure_occurrence WHERE procedure_source_value LIKE 'CHIR-%'
    UNION ALL
    SELECT person_id, drug_exposure_start_date FROM cdm.drug_exposure
) t GROUP BY person_id;

CREATE VIEW research.receptor_status AS
WITH r AS (
    -- per code, the result closest before the first treatment (else the earliest)
    SELECT DISTINCT ON (m.person_id, m.measurement_source_value)
           m.person_id, m.measurement_source_value AS code, m.value_as_number AS num,
           m.value_source_value AS txt, m.measurement_date
      FROM cdm.measurement m
      LEFT JOIN research.first_treatment f USING (person_id)
     WHERE m.measurement_source_value IN ('ER_PCT', 'PR_PCT', 'HER2_IHC', 'HER2_ISH', 'KI67_PCT')
     ORDER BY m.person_id, m.measurement_source_value,
              (f.first_treatment_date IS NOT NULL AND m.measurement_date > f.first_treatment_date),
              CASE WHEN f.first_treatment_date IS NOT NULL AND m.measurement_date <= f.first_treatment_date
                   THEN f.first_treatment_date - m.measurement_date END,
              m.measurement_date
), p AS (
    SELECT person_id,
           max(num) FILTER (WHERE code = 'ER_PCT') AS er_pct,
           max(num) FILTER (WHERE code = 'PR_PCT') AS pr_pct,
           max(txt) FILTER (WHERE code = 'HER2_IHC') AS her2_ihc,
           max(txt) FILTER (WHERE code = 'HER2_ISH') AS her2_ish,
           max(num) FILTER (WHERE code = 'KI67_PCT') AS ki67_pct,
           max(measurement_date) AS result_date
      FROM r GROUP BY person_id
)
SELECT p.person_id, p.result_date,
       p.er_pct, p.er_pct >= (SELECT value FROM research.subtype_rule WHERE rule = 'er_positive_min_pct') AS er_positive,
       p.pr_pct, p.pr_pct >= (SELECT value FROM research.subtype_rule WHERE rule = 'pr_positive_min_pct') AS pr_positive,
       p.her2_ihc, p.her2_ish,
       CASE WHEN p.her2_ihc = '3+' THEN 'positive'
            WHEN p.her2_ihc = '2+' AND p.her2_ish = 'positive' THEN 'positive'
            WHEN p.her2_ihc = '2+' AND p.her2_ish = 'negative' THEN 'negative'
            WHEN p.her2_ihc = '2+' THEN 'equivocal'
            WHEN p.her2_ihc IN ('0', '1+') THEN 'negative'
       END AS her2_status,
       p.ki67_pct
  FROM p;

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

COMMENT ON VIEW research.breast_cancer_patient IS 'First breast cancer diagnosis per patient with laterality, age at diagnosis (whole years; computed on shifted dates, so it can differ by one from the true age when the diagnosis falls within a day of a birthday across a 29 February), cTNM, clinical stage, grade and ICD-O-3 histology.';

COMMENT ON VIEW research.subtype IS 'St Gallen 2013 / ESMO surrogate subtypes from research.receptor_status, cut-offs in research.subtype_rule: luminal_a (HR+, HER2-, Ki-67 < 20 %, PR >= 20 %), luminal_b_her2neg, luminal_b_her2pos (HR+ HER2+), her2_enriched (HR- HER2+), tnbc (HR- HER2-), unknown.';

CREATE VIEW research.surgery AS
SELECT DISTINCT ON (person_id) person_id, procedure_date AS surgery_date,
       CASE procedure_source_value WHEN 'CHIR-MAST' THEN 'mastectomy' WHEN 'CHIR-BCS' THEN 'breast_conserving'
            ELSE procedure_source_value END AS surgery_type
  FROM cdm.procedure_occurrence
 WHERE procedure_source_value LIKE 'CHIR-%'
 ORDER BY person_id, procedure_date;

CREATE VIEW research.neoadjuvant_treatment AS
SELECT d.person_id,
       min(d.drug_exposure_start_date) AS start_date,
       max(d.drug_exposure_start_date) AS last_administration_date,
       string_agg(DISTINCT s.qualifier_source_value, ', ') AS regimens,
       string_agg(DISTINCT d.drug_source_value, ', ' ORDER BY d.drug_source_value) AS agents,
       count(*) AS administrations
  FROM cdm.drug_exposure d
  JOIN cdm.observation s ON s.person_id = d.person_id AND s.observation_date = d.drug_exposure_start_date
                        AND s.observation_source_value = 'systemic_therapy_setting'
                        AND s.value_source_value = 'neoadjuvant'
  LEFT JOIN research.surgery su ON su.person_id = d.person_id
 WHERE su.surgery_date IS NULL OR d.drug_exposure_start_date < su.surgery_date
 GROUP BY d.person_id;

CREATE VIEW research.pathologic_response AS
SELECT n.person_id,
       yp.ypt, yp.ypn,
       CASE WHEN su.surgery_date IS NULL OR yp.ypt IS NULL OR yp.ypn IS NULL THEN 'unknown'
            WHEN yp.ypt IN ('T0', 'Tis') AND yp.ypn = 'N0' THEN 'pCR'
            ELSE 'non-pCR' END AS response,
       CASE WHEN su.surgery_date IS NULL OR yp.ypt IS NULL OR yp.ypn IS NULL THEN NULL
            ELSE yp.ypt IN ('T0', 'Tis') AND yp.ypn = 'N0' END AS pcr
  FROM research.neoadjuvant_treatment n
  LEFT JOIN research.surgery su USING (person_id)
  LEFT JOIN LATERAL (
      SELECT max(value_source_value) FILTER (WHERE measurement_source_value = 'ypT') AS ypt,
             max(value_source_value) FILTER (WHERE measurement_source_value = 'ypN') AS ypn
        FROM cdm.measurement m
       WHERE m.person_id = n.person_id AND m.measurement_source_value IN ('ypT', 'ypN')) yp ON true;

COMMENT ON VIEW research.pathologic_response IS 'pCR = ypT0/Tis ypN0 after neoadjuvant therapy; non-pCR otherwise; unknown without surgery or ypTNM.';

CREATE VIEW research.recurrence AS
WITH rec AS (
    SELECT person_id,
           min(observation_date) FILTER (WHERE value_source_value = 'local') AS first_local,
           min(observation_date) FILTER (WHERE value_source_value = 'regional') AS first_regional,
           min(observation_date) FILTER (WHERE value_source_value = 'distant') AS first_distant
      FROM cdm.observation WHERE observation_source_value = 'recurrence'
     GROUP BY person_id
), last_contact AS (
    SELECT person_id, max(d) AS last_contact_date FROM (
        SELECT person_id, measurement_date AS d FROM cdm.measurement
        UNION ALL SELECT person_id, observation_date FROM cdm.observation
        UNION ALL SELECT person_id, drug_exposure_start_date FROM cdm.drug_exposure
        UNION ALL SELECT person_id, procedure_date FROM cdm.procedure_occurrence
        UNION ALL SELECT person_id, condition_start_date FROM cdm.condition_occurrence
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

COMMENT ON VIEW research.recurrence IS 'Recurrence-free survival from surgery: event = first local, regional or distant recurrence or death; censored at the last recorded contact.';

-- One modeling-ready row per patient and pillar: features and outcomes.
CREATE VIEW research.modeling_cohort AS
SELECT b.person_id,
       CASE WHEN st.subtype IN ('luminal_a', 'luminal_b_her2neg', 'luminal_unknown') THEN 'luminal'
            WHEN st.subtype IN ('luminal_b_her2pos', 'her2_enriched') THEN 'her2_positive'
            WHEN st.subtype = 'tnbc' THEN 'tnbc' END AS pillar,
       st.subtype, b.age_at_diagnosis, b.diagnosis_year, b.laterality, b.ct, b.cn, b.cm,
       b.clinical_stage, b.grade, b.histology_icdo3,
       r.er_pct, r.pr_pct, r.her2_status, r.ki67_pct,
       n.person_id IS NOT NULL AS neoadjuvant, n.regimens AS neoadjuvant_regimens,
       s.surgery_type,
       pr.pcr,
       rc.rfs_days, rc.rfs_event
  FROM research.breast_cancer_patient b
  LEFT JOIN research.receptor_status r USING (person_id)
  LEFT JOIN research.subtype st USING (person_id)
  LEFT JOIN research.neoadjuvant_treatment n USING (person_id)
  LEFT JOIN research.surgery s USING (person_id)
  LEFT JOIN research.pathologic_response pr USING (person_id)
  LEFT JOIN research.recurrence rc USING (person_id);

CREATE VIEW research.luminal_cohort AS SELECT * FROM research.modeling_cohort WHERE pillar = 'luminal';
CREATE VIEW research.her2_positive_cohort AS SELECT * FROM research.modeling_cohort WHERE pillar = 'her2_positive';
CREATE VIEW research.tnbc_cohort AS SELECT * FROM research.modeling_cohort WHERE pillar = 'tnbc';

-- Joins between two patient tables also match person_id, so that on a Citus cluster
-- (scripts/citus-distribute.sql, tables co-located by person_id) they run shard by shard.
-- An image_feature and its image_occurrence always belong to one person, so the result is
-- unchanged.
CREATE VIEW research.rt_structure_set AS
WITH f AS (
    SELECT f.image_feature_id, f.person_id, f.image_occurrence_id,
           CASE WHEN f.alg_system LIKE '{"kind":"rtstruct-roi"%' THEN f.alg_system::jsonb END AS a
      FROM cdm.image_feature f
     WHERE f.image_feature_type_concept_id = 32817
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
                           AND o.person_id = f.person_id
 WHERE f.a IS NOT NULL;

DO $$
DECLARE v record;
BEGIN
    FOR v IN SELECT format('%I.%I', n.nspname, c.relname) AS name
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'research' AND c.relkind = 'v' LOOP
        EXECUTE format('ALTER VIEW %s SET (security_barrier = true)', v.name);
    END LOOP;
END $$;
