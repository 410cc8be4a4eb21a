-- Inter-observer delineation agreement (written by `registrar dicom index`: one image feature
-- per observer pair and structure, local concept 2000000503, the metrics as JSON in
-- alg_system), the guideline era from the true date, and the list of marts as a table.

INSERT INTO research.concept_role (role, concept_id, label, description) VALUES
    ('delineation_agreement', 2000000503, '', 'Delineation agreement of two observers of one RT structure (registrar local)');

-- ---- the marts, in build order (mart.build reads it; so does scripts/citus-distribute.sql) --
CREATE TABLE mart.catalog (
    position integer PRIMARY KEY,
    name     text    NOT NULL UNIQUE
);
COMMENT ON TABLE mart.catalog IS
    'The research marts in build order: mart.build() rebuilds each mart.<name> from mart.<name>_src in this order (a mart may read the marts before it).';
INSERT INTO mart.catalog (position, name)
SELECT ordinality, name
  FROM unnest(ARRAY['diagnosis', 'tumour_fact', 'systemic_therapy', 'surgery',
        'first_treatment', 'breast_cancer_patient', 'receptor_status', 'subtype',
        'neoadjuvant_treatment', 'pathologic_response', 'recurrence_event', 'recurrence',
        'radiotherapy', 'modeling_cohort', 'rt_structure_set', 'disease_status',
        'delineation_agreement']) WITH ORDINALITY AS m(name, ordinality);

CREATE OR REPLACE FUNCTION mart.build(p_all boolean) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_name  text;
    v_big   boolean := p_all OR (SELECT count(*) FROM mart.refresh_scope) > 1000;
    v_citus boolean := EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus');
BEGIN
    FOR v_name IN SELECT name FROM mart.catalog ORDER BY position LOOP
        IF p_all THEN
            EXECUTE format('DELETE FROM mart.%I', v_name);
        ELSE
            EXECUTE format('DELETE FROM mart.%I t USING mart.refresh_scope s WHERE t.person_id = s.person_id', v_name);
        END IF;
        IF v_citus THEN
            EXECUTE format('WITH s AS MATERIALIZED (SELECT * FROM mart.%I) INSERT INTO mart.%I SELECT * FROM s',
                           v_name || '_src', v_name);
        ELSE
            EXECUTE format('INSERT INTO mart.%I SELECT * FROM mart.%I', v_name, v_name || '_src');
        END IF;
        -- the next mart's plan reads this one: give the planner its size
        IF v_big THEN
            EXECUTE format('ANALYZE mart.%I', v_name);
        END IF;
    END LOOP;
END $$;
REVOKE ALL ON FUNCTION mart.build(boolean) FROM PUBLIC;

-- ---- RT structure sets: the guideline era from the true date ---------------------------------
CREATE OR REPLACE VIEW mart.rt_structure_set_src AS
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
       CASE f.a ->> 'guideline_era' WHEN 'before' THEN true WHEN 'after' THEN false END AS before_2016,
       f.a ->> 'roi_name'                              AS roi_name,
       f.a ->> 'tg263'                                 AS tg263_name,
       f.a ->> 'roi_type'                              AS roi_type,
       (f.a ->> 'volume_cc')::numeric                  AS volume_cc,
       (f.a ->> 'contour_slices')::int                 AS contour_slices,
       f.a ->> 'referenced_ct_series'                  AS referenced_ct_series,
       f.a ->> 'guideline_era'                         AS guideline_era
  FROM f
  JOIN cdm.image_occurrence o ON o.image_occurrence_id = f.image_occurrence_id
                           AND o.person_id = f.person_id;
ALTER TABLE mart.rt_structure_set ADD COLUMN guideline_era text;
DROP VIEW research.rt_structure_set;
CREATE VIEW research.rt_structure_set WITH (security_barrier = true) AS SELECT * FROM mart.rt_structure_set;
COMMENT ON VIEW research.rt_structure_set IS
    'One row per ROI of an RT Structure Set indexed by `registrar dicom index`: observer pseudonym, structure set date (shifted), the guideline era, ROI name as typed, TG-263 name, type, volume in cc (closed planar contours, holes subtracted), contour planes and referenced CT series. (Read from the research mart mart.rt_structure_set, refreshed by registrar.)';
COMMENT ON COLUMN research.rt_structure_set.before_2016 IS
    'True when the structure set was drawn before the ESTRO consensus guidelines (its true Structure Set Date before the policy date, 2016-01-01 by default), false after, null when unknown. Decided at pseudonymisation on the true date, never on the shifted one; it reveals only the era.';
COMMENT ON COLUMN research.rt_structure_set.guideline_era IS
    '"before" or "after" the ESTRO consensus guidelines (see before_2016); null when the file carried no era mark (a structure set without a date, or pseudonymised by another tool).';
COMMENT ON COLUMN research.rt_structure_set.year IS
    'Year of the shifted structure set date: do not use it for the guideline era (use before_2016).';

-- ---- delineation agreement ------------------------------------------------------------------
CREATE VIEW mart.delineation_agreement_src AS
WITH f AS (
    SELECT f.image_feature_id, f.person_id, f.alg_system::jsonb AS a
      FROM mart.refresh_scope sc
      JOIN cdm.image_feature f ON f.person_id = sc.person_id
      JOIN research.concept_set cs ON cs.role = 'delineation_agreement' AND cs.concept_id = f.image_feature_concept_id
)
SELECT f.image_feature_id,
       f.person_id,
       f.a ->> 'institution'                     AS institution,
       f.a ->> 'tg263'                           AS tg263_name,
       f.a ->> 'roi_type'                        AS roi_type,
       f.a ->> 'observer_a'                      AS observer_a,
       f.a ->> 'observer_b'                      AS observer_b,
       (f.a ->> 'structure_set_date_a')::date    AS structure_set_date_a,
       (f.a ->> 'structure_set_date_b')::date    AS structure_set_date_b,
       CASE WHEN f.a ->> 'guideline_era_a' = f.a ->> 'guideline_era_b' THEN f.a ->> 'guideline_era_a'
            WHEN f.a ->> 'guideline_era_a' IS NOT NULL AND f.a ->> 'guideline_era_b' IS NOT NULL THEN 'mixed'
       END                                       AS guideline_era,
       CASE WHEN f.a ->> 'guideline_era_a' = 'before' AND f.a ->> 'guideline_era_b' = 'before' THEN true
            WHEN f.a ->> 'guideline_era_a' = 'after' AND f.a ->> 'guideline_era_b' = 'after' THEN false
       END                                       AS before_2016,
       (f.a ->> 'dice')::float8                  AS dice,
       (f.a ->> 'jaccard')::float8               AS jaccard,
       (f.a ->> 'hd95_mm')::float8               AS hd95_mm,
       (f.a ->> 'hd95_plastimatch_mm')::float8   AS hd95_plastimatch_mm,
       (f.a ->> 'hd_max_mm')::float8             AS hd_max_mm,
       (f.a ->> 'msd_mm')::float8                AS msd_mm,
       (f.a ->> 'volume_a_cc')::float8           AS volume_a_cc,
       (f.a ->> 'volume_b_cc')::float8           AS volume_b_cc,
       (f.a ->> 'observers')::int                AS observers,
       (f.a ->> 'volume_cv')::float8             AS volume_cv,
       (f.a ->> 'consensus_dice_mean')::float8   AS consensus_dice_mean,
       ARRAY(SELECT jsonb_array_elements_text(f.a -> 'voxel_mm')::float8) AS voxel_mm
  FROM f;
CREATE TABLE mart.delineation_agreement AS SELECT * FROM mart.delineation_agreement_src WITH NO DATA;
ALTER TABLE mart.delineation_agreement ADD PRIMARY KEY (person_id, image_feature_id);
COMMENT ON TABLE mart.delineation_agreement IS
    'Research mart behind research.delineation_agreement; built by mart.refresh() from mart.delineation_agreement_src.';

CREATE VIEW research.delineation_agreement WITH (security_barrier = true) AS
SELECT * FROM mart.delineation_agreement;
COMMENT ON VIEW research.delineation_agreement IS
    'Inter-observer agreement of RT structure delineations: one row per patient, TG-263 structure and pair of observers who drew it on one frame of reference (masks rasterised on the referenced CT grid by `registrar dicom index`). (Read from the research mart mart.delineation_agreement, refreshed by registrar.)';
COMMENT ON COLUMN research.delineation_agreement.image_feature_id IS 'The cdm.image_feature row holding the pair''s metrics.';
COMMENT ON COLUMN research.delineation_agreement.person_id IS 'The person.';
COMMENT ON COLUMN research.delineation_agreement.institution IS 'The DICOM source the structure sets were indexed from (the institution''s source name in the registry''s configuration).';
COMMENT ON COLUMN research.delineation_agreement.tg263_name IS 'The structure''s TG-263 name (ESTRO consensus names for breast targets).';
COMMENT ON COLUMN research.delineation_agreement.roi_type IS 'RT ROI Interpreted Type of observer a''s ROI (CTV, PTV, ORGAN, EXTERNAL, ...).';
COMMENT ON COLUMN research.delineation_agreement.observer_a IS 'Pseudonym of the first observer (ROI Interpreter): the one of the earlier structure set.';
COMMENT ON COLUMN research.delineation_agreement.observer_b IS 'Pseudonym of the second observer.';
COMMENT ON COLUMN research.delineation_agreement.structure_set_date_a IS 'Structure Set Date of observer a''s set (shifted).';
COMMENT ON COLUMN research.delineation_agreement.structure_set_date_b IS 'Structure Set Date of observer b''s set (shifted).';
COMMENT ON COLUMN research.delineation_agreement.guideline_era IS '"before" or "after" the ESTRO consensus guidelines when both sets were drawn in that era (decided on the true dates at pseudonymisation), "mixed" when they straddle it, null when a set has no era mark.';
COMMENT ON COLUMN research.delineation_agreement.before_2016 IS 'True when both sets were drawn before the guidelines, false when both after, null otherwise (see guideline_era).';
COMMENT ON COLUMN research.delineation_agreement.dice IS 'Dice similarity coefficient 2|A∩B| / (|A| + |B|) of the two masks (volumes; voxels whose centre is inside the contours by the even-odd rule, holes subtracted, each contoured slice one slab, no interpolation between planes).';
COMMENT ON COLUMN research.delineation_agreement.jaccard IS 'Jaccard index |A∩B| / |A∪B| of the two masks.';
COMMENT ON COLUMN research.delineation_agreement.hd95_mm IS '95th percentile Hausdorff distance, mm: the 95th percentile (linear interpolation between ranks, as numpy and MedPy''s hd95) of the directed surface distances of both directions pooled; surfaces are the masks'' voxels with a face neighbour outside, distances between voxel centres with the CT spacing.';
COMMENT ON COLUMN research.delineation_agreement.hd95_plastimatch_mm IS 'plastimatch''s "Percent (0.95) Hausdorff distance (boundary)", mm: the mean of the two directed 95th percentiles, each the distance of 0-based rank floor(0.95 n - 1); same surface distances as hd95_mm (plastimatch measures a boundary voxel inside the other mask to its nearest outside voxel, which can differ by up to a voxel).';
COMMENT ON COLUMN research.delineation_agreement.hd_max_mm IS 'Hausdorff distance, mm: the largest directed surface distance in either direction.';
COMMENT ON COLUMN research.delineation_agreement.msd_mm IS 'Mean surface distance, mm: the mean of the directed surface distances of both directions pooled (each surface voxel of either mask counted once; tools that average the two directed means differ when the surfaces differ in size).';
COMMENT ON COLUMN research.delineation_agreement.volume_a_cc IS 'Volume of observer a''s mask, cc.';
COMMENT ON COLUMN research.delineation_agreement.volume_b_cc IS 'Volume of observer b''s mask, cc.';
COMMENT ON COLUMN research.delineation_agreement.observers IS 'Observers who drew the structure for this person and frame of reference (the group the pair belongs to).';
COMMENT ON COLUMN research.delineation_agreement.volume_cv IS 'Coefficient of variation of the group''s mask volumes (sample standard deviation, n - 1, over the mean).';
COMMENT ON COLUMN research.delineation_agreement.consensus_dice_mean IS 'Majority-vote consensus agreement of the group: the mean over its observers of the Dice between their mask and the voxels inside more than half of the group''s masks (for two observers, their intersection).';
COMMENT ON COLUMN research.delineation_agreement.voxel_mm IS 'The CT grid: column spacing, row spacing and smallest slice distance, mm.';

SELECT mart.refresh(true);
