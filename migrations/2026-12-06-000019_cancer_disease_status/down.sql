DROP VIEW research.disease_status;
CREATE OR REPLACE FUNCTION mart.build(p_all boolean) RETURNS void
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
REVOKE ALL ON FUNCTION mart.build(boolean) FROM PUBLIC;
DROP TABLE mart.disease_status;
DROP VIEW mart.disease_status_src;
DELETE FROM research.concept_role WHERE role IN ('disease_status_assessment', 'disease_status');
