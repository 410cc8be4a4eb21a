DROP VIEW research.dose_volume;
DELETE FROM mart.catalog WHERE name = 'dose_volume';
DROP TABLE mart.dose_volume;
DROP VIEW mart.dose_volume_src;
DELETE FROM research.concept_role WHERE role = 'dose_volume';
