ALTER TABLE registry.fhir_watermark DROP COLUMN swept_at;
