-- Servers without type-level _history (Medplum, many façades) cannot say what was deleted:
-- a periodic sweep of the ids they still hold finds it. `swept_at` is when the last complete
-- list of ids (a sweep, or a full pull) was compared with the registry's records.
ALTER TABLE registry.fhir_watermark ADD COLUMN swept_at timestamptz;
COMMENT ON COLUMN registry.fhir_watermark.swept_at IS
    'When the ids the server holds were last compared with the registry (id sweep or full pull); NULL: never';
