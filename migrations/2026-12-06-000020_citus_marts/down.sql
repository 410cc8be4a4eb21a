CREATE OR REPLACE VIEW mart.diagnosis_src AS
SELECT DISTINCT ON (co.person_id)
       co.person_id, co.condition_occurrence_id, co.condition_start_date AS diagnosis_date,
       co.condition_concept_id AS diagnosis_concept_id
  FROM mart.refresh_scope sc
  JOIN cdm.condition_occurrence co ON co.person_id = sc.person_id
  JOIN research.concept_set cs ON cs.role = 'breast_cancer' AND cs.concept_id = co.condition_concept_id
 WHERE NOT EXISTS (SELECT 1 FROM research.concept_set r
                    WHERE r.role = 'recurrence' AND r.concept_id = co.condition_concept_id)
 ORDER BY co.person_id, co.condition_start_date, co.condition_occurrence_id;

CREATE OR REPLACE VIEW mart.breast_cancer_patient_src AS
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


CREATE OR REPLACE FUNCTION mart.build(p_all boolean) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_name text;
    v_big  boolean := p_all OR (SELECT count(*) FROM mart.refresh_scope) > 1000;
BEGIN
    FOREACH v_name IN ARRAY ARRAY['diagnosis', 'tumour_fact', 'systemic_therapy', 'surgery',
        'first_treatment', 'breast_cancer_patient', 'receptor_status', 'subtype',
        'neoadjuvant_treatment', 'pathologic_response', 'recurrence_event', 'recurrence',
        'radiotherapy', 'modeling_cohort', 'rt_structure_set', 'disease_status'] LOOP
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
REVOKE ALL ON FUNCTION mart.build(boolean) FROM PUBLIC;
