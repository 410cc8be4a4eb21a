-- Import identity: what a file and a record are.
--
-- A file's identity is its source (the mapping's name, or the nightly source's name) plus its
-- path relative to the root it was imported from, stored as a keyed hash (locator_hash): a
-- second site's file of the same name is another file. A file may be a member of a declared
-- series (`[source] series = "rott2_*.csv"`): its newest member (by version_key, the natural
-- order of the part the `*` matched) supersedes the older ones. A mapping may declare a
-- record key: its rows are then records (registry.source_record), updated one by one.
ALTER TABLE registry.source_file
    ADD COLUMN source_name       text,
    ADD COLUMN mapping_sha256    text,
    ADD COLUMN series_hash       text,
    ADD COLUMN version_key       text,
    ADD COLUMN reason_code       text,
    ADD COLUMN rows_unchanged    bigint NOT NULL DEFAULT 0,
    ADD COLUMN cells_nulled      bigint NOT NULL DEFAULT 0,
    ADD COLUMN records_added     bigint NOT NULL DEFAULT 0,
    ADD COLUMN records_updated   bigint NOT NULL DEFAULT 0,
    ADD COLUMN records_unchanged bigint NOT NULL DEFAULT 0,
    ADD COLUMN records_deleted   bigint NOT NULL DEFAULT 0;
UPDATE registry.source_file SET source_name = coalesce(mapping_name, source_kind);
ALTER TABLE registry.source_file ALTER COLUMN source_name SET NOT NULL;
COMMENT ON COLUMN registry.source_file.locator_hash IS
    'keyed hash of source name and the path relative to the import root (never the path itself)';
COMMENT ON COLUMN registry.source_file.version_key IS
    'order of the file among the versions of its source: the series label in natural order, else the import order';
CREATE INDEX idx_source_file_series ON registry.source_file (series_hash, status)
    WHERE series_hash IS NOT NULL;
CREATE INDEX idx_source_file_source ON registry.source_file (source_name, status);

-- Records: rows of a source with a logical identity (a mapping's record key, a FHIR
-- resource). Each loaded unit writes one record set: the records it added, changed or deleted,
-- as fixed 33-byte entries (in this order: the first 128 bits of the keyed hash of the
-- record's identity; 64 bits, little endian, of SipHash-2-4 of the row as read and the
-- mapping's fingerprint, under a secret derived from the key; the unit's source row, whose
-- lineage holds the record's cdm rows; a flag byte, 1 = deleted). A record's state is its entry
-- in the newest set of its source (by version_key, then source_file_id) among loaded units:
-- an unchanged record costs nothing, an older version never replaces a newer one, and a
-- deletion stays a deletion (an older file cannot bring the record back). Sets are written
-- whole, once per unit: no index is kept per record.
CREATE TABLE registry.record_set (
    source_file_id  bigint  PRIMARY KEY,
    source_name     text    NOT NULL,
    version_key     text    NOT NULL,
    entries         bigint  NOT NULL,
    records         bytea   NOT NULL CHECK (length(records) = 33 * entries)
);
CREATE INDEX idx_record_set_source ON registry.record_set (source_name);
-- Keyed hashes do not compress: stored out of line as they are.
ALTER TABLE registry.record_set ALTER COLUMN records SET STORAGE EXTERNAL;
-- FHIR resources loaded before records existed: known records whose content is unknown, so
-- their next version replaces their rows.
INSERT INTO registry.record_set (source_file_id, source_name, version_key, entries, records)
SELECT l.source_file_id, max(coalesce(f.mapping_name, f.source_kind)), '', count(*),
       string_agg(substring(decode(translate(l.source_key, '-_', '+/') || '=', 'base64') FROM 1 FOR 16)
                  || '\x0000000000000000'::bytea
                  || substring(int8send(coalesce(l.source_row, 0)) FROM 8 FOR 1)
                  || substring(int8send(coalesce(l.source_row, 0)) FROM 7 FOR 1)
                  || substring(int8send(coalesce(l.source_row, 0)) FROM 6 FOR 1)
                  || substring(int8send(coalesce(l.source_row, 0)) FROM 5 FOR 1)
                  || substring(int8send(coalesce(l.source_row, 0)) FROM 4 FOR 1)
                  || substring(int8send(coalesce(l.source_row, 0)) FROM 3 FOR 1)
                  || substring(int8send(coalesce(l.source_row, 0)) FROM 2 FOR 1)
                  || substring(int8send(coalesce(l.source_row, 0)) FROM 1 FOR 1)
                  || '\x00'::bytea, ''::bytea ORDER BY l.source_row)
  FROM (SELECT DISTINCT ON (source_file_id, source_key) source_file_id, source_key, source_row
          FROM registry.lineage WHERE source_key IS NOT NULL) l
  JOIN registry.source_file f USING (source_file_id)
 GROUP BY l.source_file_id;
-- A record's rows are found by the unit and row that loaded them.
DROP INDEX registry.idx_lineage_file;
CREATE INDEX idx_lineage_file_row ON registry.lineage (source_file_id, source_row);

-- Lineage knows the person of each row (deletes and one-per-person checks by person; on
-- Citus, routable) and which emit of the mapping wrote it.
ALTER TABLE registry.lineage ADD COLUMN person_id integer, ADD COLUMN emit smallint;
UPDATE registry.lineage l SET person_id = l.cdm_row_id::int WHERE cdm_table IN ('person', 'death');
UPDATE registry.lineage l SET person_id = t.person_id FROM cdm.condition_occurrence t
 WHERE l.cdm_table = 'condition_occurrence' AND t.condition_occurrence_id = l.cdm_row_id;
UPDATE registry.lineage l SET person_id = t.person_id FROM cdm.measurement t
 WHERE l.cdm_table = 'measurement' AND t.measurement_id = l.cdm_row_id;
UPDATE registry.lineage l SET person_id = t.person_id FROM cdm.observation t
 WHERE l.cdm_table = 'observation' AND t.observation_id = l.cdm_row_id;
UPDATE registry.lineage l SET person_id = t.person_id FROM cdm.drug_exposure t
 WHERE l.cdm_table = 'drug_exposure' AND t.drug_exposure_id = l.cdm_row_id;
UPDATE registry.lineage l SET person_id = t.person_id FROM cdm.procedure_occurrence t
 WHERE l.cdm_table = 'procedure_occurrence' AND t.procedure_occurrence_id = l.cdm_row_id;
UPDATE registry.lineage l SET person_id = t.person_id FROM cdm.episode t
 WHERE l.cdm_table = 'episode' AND t.episode_id = l.cdm_row_id;
UPDATE registry.lineage l SET person_id = t.person_id FROM cdm.image_occurrence t
 WHERE l.cdm_table = 'image_occurrence' AND t.image_occurrence_id = l.cdm_row_id;
UPDATE registry.lineage l SET person_id = t.person_id FROM cdm.image_feature t
 WHERE l.cdm_table = 'image_feature' AND t.image_feature_id = l.cdm_row_id;

-- Rejects: what happened (a row rejected or skipped, a cell nulled, a whole file), the
-- source column (column_name) and the mapping field (table.column, file and line) it concerns.
ALTER TABLE registry.reject
    ADD COLUMN outcome      text    NOT NULL DEFAULT 'row_rejected'
        CHECK (outcome IN ('row_rejected', 'row_skipped', 'cell_nulled', 'file_rejected')),
    ADD COLUMN field        text,
    ADD COLUMN mapping_file text,
    ADD COLUMN mapping_line integer;
UPDATE registry.reject SET field = column_name, column_name = NULL,
       outcome = CASE WHEN reason_code LIKE 'skipped%' THEN 'row_skipped'
                      WHEN row_number IS NULL THEN 'file_rejected'
                      ELSE 'row_rejected' END;
COMMENT ON COLUMN registry.reject.column_name IS 'the source column the reason concerns (a header name, never a value)';
COMMENT ON COLUMN registry.reject.field IS 'the mapping field (cdm table.column) the reason concerns';

ALTER TABLE registry.import_run
    ADD COLUMN rows_unchanged bigint NOT NULL DEFAULT 0,
    ADD COLUMN cells_nulled   bigint NOT NULL DEFAULT 0;
ALTER TABLE registry.nightly_source
    ADD COLUMN rows_unchanged bigint NOT NULL DEFAULT 0,
    ADD COLUMN cells_nulled   bigint NOT NULL DEFAULT 0,
    ADD COLUMN records_deleted bigint NOT NULL DEFAULT 0;

-- Plausibility limits: one registry-wide policy that imports (unless a mapping overrides a
-- limit for its source) and `registrar check` apply alike.
CREATE TABLE registry.plausibility (
    singleton       boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    min_birth_year  integer     NOT NULL DEFAULT 1850,
    min_event_year  integer     NOT NULL DEFAULT 1900,
    max_age_years   integer     NOT NULL DEFAULT 120,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (min_birth_year <= min_event_year AND max_age_years > 0)
);
INSERT INTO registry.plausibility DEFAULT VALUES;
