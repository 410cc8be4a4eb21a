-- registry: the toolkit's own bookkeeping. Nothing identifying is ever stored here:
-- source locators (file paths, FHIR ids) are keyed hashes, persons are pseudonyms.
CREATE SCHEMA IF NOT EXISTS registry;
COMMENT ON SCHEMA registry IS 'registrar bookkeeping: runs, source files, rejects, lineage, person map, audit log. No identifying values.';

-- One row per command invocation that changes the registry (import, vocab load, nightly ...).
CREATE TABLE registry.import_run (
    run_id            bigserial PRIMARY KEY,
    command           text        NOT NULL,
    started_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz,
    status            text        NOT NULL DEFAULT 'running'
                      CHECK (status IN ('running', 'succeeded', 'partial', 'failed')),
    actor_os_user     text        NOT NULL,
    actor_db_role     text        NOT NULL DEFAULT current_user,
    key_id            text,
    registrar_version text        NOT NULL,
    rows_in           bigint      NOT NULL DEFAULT 0,
    rows_loaded       bigint      NOT NULL DEFAULT 0,
    rows_rejected     bigint      NOT NULL DEFAULT 0,
    rows_skipped      bigint      NOT NULL DEFAULT 0,
    message           text
);

-- Every source file (or FHIR page, DICOM file) seen, by keyed hash of its locator and the
-- SHA-256 of its content. A file whose content hash is already loaded is skipped; a changed
-- file supersedes its earlier version (whose cdm rows are found through lineage).
CREATE TABLE registry.source_file (
    source_file_id  bigserial PRIMARY KEY,
    source_kind     text        NOT NULL,
    locator_hash    text        NOT NULL,
    content_sha256  text        NOT NULL,
    byte_size       bigint      NOT NULL,
    mapping_name    text,
    run_id          bigint      NOT NULL REFERENCES registry.import_run (run_id),
    status          text        NOT NULL
                    CHECK (status IN ('loading', 'loaded', 'rejected', 'skipped', 'quarantined', 'superseded')),
    rows_in         bigint      NOT NULL DEFAULT 0,
    rows_loaded     bigint      NOT NULL DEFAULT 0,
    rows_rejected   bigint      NOT NULL DEFAULT 0,
    rows_skipped    bigint      NOT NULL DEFAULT 0,
    reason          text,
    seen_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_source_file_locator ON registry.source_file (locator_hash, status);
CREATE INDEX idx_source_file_content ON registry.source_file (content_sha256);

-- Rows (or files) that could not be loaded, with the reason. No cell values are stored.
CREATE TABLE registry.reject (
    reject_id       bigserial PRIMARY KEY,
    run_id          bigint      NOT NULL REFERENCES registry.import_run (run_id),
    source_file_id  bigint      REFERENCES registry.source_file (source_file_id),
    row_number      bigint,
    column_name     text,
    reason_code     text        NOT NULL,
    reason          text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_reject_run ON registry.reject (run_id);
CREATE INDEX idx_reject_file ON registry.reject (source_file_id);

-- Row lineage: every cdm row points back at the source file (and row, or keyed record id)
-- it came from, so a re-export replaces exactly the rows of its earlier version.
CREATE TABLE registry.lineage (
    cdm_table       text    NOT NULL,
    cdm_row_id      bigint  NOT NULL,
    source_file_id  bigint  NOT NULL REFERENCES registry.source_file (source_file_id),
    source_row      bigint,
    source_key      text,
    run_id          bigint  NOT NULL REFERENCES registry.import_run (run_id),
    PRIMARY KEY (cdm_table, cdm_row_id)
);
CREATE INDEX idx_lineage_file ON registry.lineage (source_file_id);
CREATE INDEX idx_lineage_key ON registry.lineage (source_key) WHERE source_key IS NOT NULL;

-- Person map: keyed pseudonym -> stable integer person_id. A person has one row per
-- (identifier type, key): NISS and MRN pseudonyms of one person share a person_id, and after
-- a key rotation the new key's pseudonyms are bridged to the same person_id.
-- No original identifier is stored anywhere: re-identification is by recomputation only.
CREATE SEQUENCE registry.seq_person_id AS integer;
CREATE TABLE registry.person_map (
    pseudonym        text        PRIMARY KEY CHECK (length(pseudonym) = 43),
    person_id        integer     NOT NULL,
    identifier_type  text        NOT NULL,
    key_id           text        NOT NULL,
    domain           text        NOT NULL,
    first_run_id     bigint      REFERENCES registry.import_run (run_id),
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_person_map_person ON registry.person_map (person_id);

-- Append-only, hash-chained audit log for the privacy officer. Entry hashes are computed by
-- the anonymizer crate (registrar-audit-v1 canonical encoding); appends are serialised with
-- an advisory lock so the chain never forks. UPDATE, DELETE and TRUNCATE are refused.
CREATE TABLE registry.audit_log (
    seq            bigint      PRIMARY KEY CHECK (seq >= 1),
    logged_at      timestamptz NOT NULL,
    actor_os_user  text        NOT NULL,
    actor_db_role  text        NOT NULL,
    action         text        NOT NULL,
    run_id         bigint,
    locator_hash   text,
    key_id         text,
    detail         text        NOT NULL,
    prev_hash      text        NOT NULL,
    entry_hash     text        NOT NULL UNIQUE
);
CREATE INDEX idx_audit_log_time ON registry.audit_log (logged_at);

CREATE FUNCTION registry.audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'registry.audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER audit_log_no_update_delete
    BEFORE UPDATE OR DELETE ON registry.audit_log
    FOR EACH ROW EXECUTE FUNCTION registry.audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON registry.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION registry.audit_log_append_only();
