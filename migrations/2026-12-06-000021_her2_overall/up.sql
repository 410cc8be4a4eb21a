-- HER2's overall interpretation (LOINC 48676-1 "HER2 [Interpretation] in Tissue", what
-- mCODE TumorMarkerTest and many pathology systems send instead of the IHC score): no
-- standard concept for it is in the public OHDSI sources cited in vocabulary/SOURCES.tsv, so
-- it is registrar's local concept 2000000109. research.receptor_status reads it when a
-- person has neither an IHC nor an ISH result.
INSERT INTO research.concept_role (role, concept_id, label, description) VALUES
    ('her2_overall', 2000000109, '', 'HER2 overall interpretation (registrar local; LOINC 48676-1)');

CREATE OR REPLACE VIEW mart.receptor_status_src AS
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
                                                  'pr_allred', 'her2_ihc', 'her2_ish', 'her2_overall', 'ki67_pct')
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
           max(value_label) FILTER (WHERE role = 'her2_overall' AND value_role = 'result') AS her2_overall,
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
            -- neither IHC nor ISH: the pathologist's overall interpretation
            WHEN s.ihc IS NULL AND s.her2_ish IS NULL THEN s.her2_overall
       END AS her2_status,
       s.ki67_pct
  FROM s;
