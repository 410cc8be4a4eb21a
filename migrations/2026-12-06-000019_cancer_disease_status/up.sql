-- Cancer disease status (mCODE CancerDiseaseStatus): a clinician's judgment, on a date, of
-- whether the cancer is absent, improving, stable or worsening. OHDSI's vocabularies (in the
-- public sources cited in vocabulary/SOURCES.tsv) hold no standard concept for the judgment
-- or its answers, so they are registrar's local concepts (vocabulary/registrar/CONCEPT.csv);
-- "Distant metastasis present" is SNOMED's standard concept. A site that loads another
-- concept for the same judgment adds it to the role with one INSERT.
INSERT INTO research.concept_role (role, concept_id, label, description) VALUES
    ('disease_status_assessment', 2000000601, '', 'Cancer disease status (registrar local; mCODE CancerDiseaseStatus, LOINC 97509-4)'),
    ('disease_status', 2000000611, 'no_evidence_of_disease', 'No evidence of disease (registrar local; SNOMED 281900007, 260415000)'),
    ('disease_status', 2000000612, 'improved', 'Improved, responding (registrar local; SNOMED 268910001)'),
    ('disease_status', 2000000613, 'stable', 'Stable (registrar local; SNOMED 359746009)'),
    ('disease_status', 2000000614, 'worsened', 'Worsened, progressing (registrar local; SNOMED 271299001)'),
    ('disease_status', 2000000615, 'undetermined', 'Undetermined (registrar local; SNOMED 709137006)'),
    ('disease_status', 2000000616, 'full_remission', 'In full remission (registrar local; SNOMED 103338009, 550991000124107)'),
    ('disease_status', 2000000617, 'partial_remission', 'In partial remission (registrar local; SNOMED 103337004, 551001000124108)'),
    ('disease_status', 4163446, 'distant_metastasis', 'Distant metastasis present (SNOMED 399409002)');

-- A research mart like the others (mart.build keeps it current for the changed persons).
CREATE VIEW mart.disease_status_src AS
SELECT o.person_id, o.observation_id, o.observation_date AS status_date, s.label AS status
  FROM mart.refresh_scope sc
  JOIN cdm.observation o ON o.person_id = sc.person_id
  JOIN research.concept_set a ON a.role = 'disease_status_assessment'
                             AND a.concept_id = o.observation_concept_id
  JOIN research.concept_set s ON s.role = 'disease_status' AND s.concept_id = o.value_as_concept_id;
CREATE TABLE mart.disease_status AS SELECT * FROM mart.disease_status_src WITH NO DATA;
ALTER TABLE mart.disease_status ADD PRIMARY KEY (person_id, observation_id);
COMMENT ON TABLE mart.disease_status IS
    'Research mart behind research.disease_status; built by mart.refresh() from mart.disease_status_src.';

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

CREATE VIEW research.disease_status WITH (security_barrier = true) AS
SELECT person_id, status_date, status FROM mart.disease_status;
COMMENT ON VIEW research.disease_status IS
    'Cancer disease status assessments (mCODE CancerDiseaseStatus): date and status (no_evidence_of_disease, improved, stable, worsened, undetermined, full_remission, partial_remission, distant_metastasis). (Read from the research mart mart.disease_status, refreshed by registrar.)';

-- Build it from what the registry holds now.
SELECT mart.refresh(true);
