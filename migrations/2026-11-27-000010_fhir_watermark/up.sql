-- FHIR endpoint pulls: how far each (endpoint, resource type, mapping) has been read. A run
-- asks only for resources updated after `last_updated`; the row advances only after every
-- page of the pull has committed, so a run that dies mid-way is repeated from the old
-- watermark (re-read resources replace their own rows: no duplicates).
CREATE TABLE registry.fhir_watermark (
    endpoint_hash  text        NOT NULL,
    resource_type  text        NOT NULL,
    mapping_name   text        NOT NULL,
    last_updated   text        NOT NULL,
    run_id         bigint      NOT NULL REFERENCES registry.import_run (run_id),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (endpoint_hash, resource_type, mapping_name)
);
