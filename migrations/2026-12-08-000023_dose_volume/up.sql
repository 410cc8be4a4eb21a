-- Dose-volume metrics (written by `registrar dicom index`: one image feature per RT Dose and
-- structure of a structure set on the dose's frame of reference, local concept 2000000504,
-- the metrics as JSON in alg_system).

INSERT INTO research.concept_role (role, concept_id, label, description) VALUES
    ('dose_volume', 2000000504, '', 'Dose-volume metrics of one RT structure under one RT dose (registrar local)');

CREATE VIEW mart.dose_volume_src AS
WITH f AS (
    SELECT f.image_feature_id, f.person_id, f.image_occurrence_id, f.alg_system::jsonb AS a
      FROM mart.refresh_scope sc
      JOIN cdm.image_feature f ON f.person_id = sc.person_id
      JOIN research.concept_set cs ON cs.role = 'dose_volume' AND cs.concept_id = f.image_feature_concept_id
)
SELECT f.image_feature_id,
       f.person_id,
       f.a ->> 'institution'                   AS institution,
       o.image_series_uid                      AS dose_series_uid,
       f.a ->> 'tg263'                         AS tg263_name,
       f.a ->> 'roi_type'                      AS roi_type,
       f.a ->> 'observer'                      AS observer,
       (f.a ->> 'structure_set_date')::date    AS structure_set_date,
       f.a ->> 'guideline_era'                 AS guideline_era,
       CASE f.a ->> 'guideline_era' WHEN 'before' THEN true WHEN 'after' THEN false END AS before_2016,
       (f.a ->> 'planned_on')::boolean         AS planned_on,
       (f.a ->> 'prescription_gy')::float8     AS prescription_gy,
       (f.a ->> 'dmean_gy')::float8            AS dmean_gy,
       (f.a ->> 'd95_gy')::float8              AS d95_gy,
       (f.a ->> 'd2_gy')::float8               AS d2_gy,
       (f.a ->> 'v95_pct')::float8             AS v95_pct,
       (f.a ->> 'volume_cc')::float8           AS volume_cc,
       (f.a ->> 'planes_outside_dose')::int    AS planes_outside_dose,
       ARRAY(SELECT jsonb_array_elements_text(f.a -> 'dose_grid_mm')::float8) AS dose_grid_mm
  FROM f
  JOIN cdm.image_occurrence o ON o.image_occurrence_id = f.image_occurrence_id
                           AND o.person_id = f.person_id;
CREATE TABLE mart.dose_volume AS SELECT * FROM mart.dose_volume_src WITH NO DATA;
ALTER TABLE mart.dose_volume ADD PRIMARY KEY (person_id, image_feature_id);
COMMENT ON TABLE mart.dose_volume IS
    'Research mart behind research.dose_volume; built by mart.refresh() from mart.dose_volume_src.';
INSERT INTO mart.catalog (position, name) VALUES ((SELECT max(position) + 1 FROM mart.catalog), 'dose_volume');

CREATE VIEW research.dose_volume WITH (security_barrier = true) AS SELECT * FROM mart.dose_volume;
COMMENT ON VIEW research.dose_volume IS
    'Dose-volume metrics: one row per RT Dose and ROI of every structure set on the dose''s frame of reference (every observer''s, so that a delineation difference reads as a dose-coverage difference), sampled as dicompyler-core''s dvhcalc samples them. (Read from the research mart mart.dose_volume, refreshed by registrar.)';
COMMENT ON COLUMN research.dose_volume.image_feature_id IS 'The cdm.image_feature row holding the metrics.';
COMMENT ON COLUMN research.dose_volume.person_id IS 'The person.';
COMMENT ON COLUMN research.dose_volume.institution IS 'The DICOM source the objects were indexed from.';
COMMENT ON COLUMN research.dose_volume.dose_series_uid IS 'Series Instance UID (pseudonymous) of the RT Dose.';
COMMENT ON COLUMN research.dose_volume.tg263_name IS 'The structure''s TG-263 name.';
COMMENT ON COLUMN research.dose_volume.roi_type IS 'RT ROI Interpreted Type.';
COMMENT ON COLUMN research.dose_volume.observer IS 'Pseudonym of the observer who drew the structure.';
COMMENT ON COLUMN research.dose_volume.structure_set_date IS 'Structure Set Date (shifted).';
COMMENT ON COLUMN research.dose_volume.guideline_era IS '"before" or "after" the ESTRO consensus guidelines, from the structure set''s true date (see research.rt_structure_set.before_2016).';
COMMENT ON COLUMN research.dose_volume.before_2016 IS 'True when the structure set was drawn before the guidelines, false after, null when unknown.';
COMMENT ON COLUMN research.dose_volume.planned_on IS 'True for the structure set the dose''s RT Plan references (the one the plan was made on).';
COMMENT ON COLUMN research.dose_volume.prescription_gy IS 'The prescription, Gy: the largest Target Prescription Dose of the RT Plan''s dose references of type TARGET; null when the plan is not in the tree.';
COMMENT ON COLUMN research.dose_volume.dmean_gy IS 'Mean dose, Gy, over the structure''s points: the dose-grid points inside each contour plane (even-odd rule), each plane''s dose the frame at its position or linearly interpolated between the two around it, every point the same volume.';
COMMENT ON COLUMN research.dose_volume.d95_gy IS 'D95%, Gy: the largest dose received by at least 95% of the structure''s volume (points by dose, rank floor(0.05 n)).';
COMMENT ON COLUMN research.dose_volume.d2_gy IS 'D2%, Gy: the largest dose received by at least 2% of the volume (near-maximum dose).';
COMMENT ON COLUMN research.dose_volume.v95_pct IS 'V95%, percent of the structure''s volume receiving at least 95% of the prescription; null without a prescription.';
COMMENT ON COLUMN research.dose_volume.volume_cc IS 'The structure''s volume inside the dose grid, cc (points times dose-grid pixel area times the structure''s plane spacing).';
COMMENT ON COLUMN research.dose_volume.planes_outside_dose IS 'Contour planes beyond the dose grid''s first or last frame (they add nothing).';
COMMENT ON COLUMN research.dose_volume.dose_grid_mm IS 'The dose grid: column spacing, row spacing and smallest frame distance, mm.';

SELECT mart.refresh(true);
