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

CREATE VIEW research.disease_status WITH (security_barrier = true) AS
SELECT o.person_id, o.observation_date AS status_date, s.label AS status
  FROM cdm.observation o
  JOIN research.concept_set a ON a.role = 'disease_status_assessment'
                             AND a.concept_id = o.observation_concept_id
  JOIN research.concept_set s ON s.role = 'disease_status' AND s.concept_id = o.value_as_concept_id;
COMMENT ON VIEW research.disease_status IS
    'Cancer disease status assessments (mCODE CancerDiseaseStatus): date and status (no_evidence_of_disease, improved, stable, worsened, undetermined, full_remission, partial_remission, distant_metastasis).';
