DROP TABLE registry.plausibility;
ALTER TABLE registry.nightly_source DROP COLUMN rows_unchanged, DROP COLUMN cells_nulled, DROP COLUMN records_deleted;
ALTER TABLE registry.import_run DROP COLUMN rows_unchanged, DROP COLUMN cells_nulled;
UPDATE registry.reject SET column_name = coalesce(field, column_name);
ALTER TABLE registry.reject DROP COLUMN outcome, DROP COLUMN field, DROP COLUMN mapping_file, DROP COLUMN mapping_line;
ALTER TABLE registry.lineage DROP COLUMN person_id, DROP COLUMN emit;
DROP TABLE registry.record_set;
DROP INDEX registry.idx_lineage_file_row;
CREATE INDEX idx_lineage_file ON registry.lineage (source_file_id);
DROP INDEX registry.idx_source_file_series;
DROP INDEX registry.idx_source_file_source;
ALTER TABLE registry.source_file
    DROP COLUMN source_name, DROP COLUMN mapping_sha256, DROP COLUMN series_hash,
    DROP COLUMN version_key, DROP COLUMN reason_code, DROP COLUMN rows_unchanged,
    DROP COLUMN cells_nulled, DROP COLUMN records_added, DROP COLUMN records_updated,
    DROP COLUMN records_unchanged, DROP COLUMN records_deleted;
