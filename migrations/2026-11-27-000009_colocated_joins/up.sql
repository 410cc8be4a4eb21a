-- Joins between two patient tables also match person_id, so that on a Citus cluster
-- (scripts/citus-distribute.sql, tables co-located by person_id) they run shard by shard.
-- An image_feature and its image_occurrence always belong to one person, so the result is
-- unchanged.
CREATE OR REPLACE VIEW research.rt_structure_set AS
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
