-- Nightly runs: one registry.import_run (command 'nightly') per night, and one row per
-- configured source with what happened to it.
CREATE TABLE registry.nightly_source (
    run_id          bigint      NOT NULL REFERENCES registry.import_run (run_id),
    source_name     text        NOT NULL,
    source_kind     text        NOT NULL,
    status          text        NOT NULL CHECK (status IN ('ok', 'rejects', 'failed')),
    files_seen      bigint      NOT NULL DEFAULT 0,
    files_loaded    bigint      NOT NULL DEFAULT 0,
    files_skipped   bigint      NOT NULL DEFAULT 0,
    files_rejected  bigint      NOT NULL DEFAULT 0,
    rows_in         bigint      NOT NULL DEFAULT 0,
    rows_loaded     bigint      NOT NULL DEFAULT 0,
    rows_rejected   bigint      NOT NULL DEFAULT 0,
    rows_skipped    bigint      NOT NULL DEFAULT 0,
    duration_ms     bigint      NOT NULL DEFAULT 0,
    error           text,
    PRIMARY KEY (run_id, source_name)
);
