-- Back to the research views computed from cdm on every query (migration
-- 2026-12-02-000015_omop_semantics), recreated from the definitions up.sql kept.
CREATE OR REPLACE FUNCTION research.refresh_concept_set() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM research.refresh_concept_sets();
    RETURN NULL;
END $$;
DROP VIEW research.luminal_cohort, research.her2_positive_cohort, research.tnbc_cohort,
          research.modeling_cohort, research.recurrence, research.recurrence_event,
          research.pathologic_response, research.neoadjuvant_treatment, research.subtype,
          research.receptor_status, research.breast_cancer_patient, research.first_treatment,
          research.surgery, research.systemic_therapy, research.tumour_fact,
          research.diagnosis, research.radiotherapy, research.rt_structure_set;
DO $$
DECLARE
    v record;
BEGIN
    FOR v IN SELECT * FROM mart.superseded_view ORDER BY ordinal LOOP
        EXECUTE format('CREATE VIEW research.%I WITH (security_barrier = %s) AS %s',
                       v.name, v.barrier, v.definition);
        IF v.comment IS NOT NULL THEN
            EXECUTE format('COMMENT ON VIEW research.%I IS %L', v.name, v.comment);
        END IF;
    END LOOP;
END $$;
DROP SCHEMA mart CASCADE;
DROP TABLE registry.changed_person;
