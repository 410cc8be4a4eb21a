-- Local codes seen without a concept in a concept map, with counts, for the data manager to
-- map next (`registrar mapping unmapped`). Codes are local codes, never identifying values.
CREATE TABLE registry.unmapped_code (
    mapping_name  text        NOT NULL,
    concept_map   text        NOT NULL,
    source_code   text        NOT NULL,
    occurrences   bigint      NOT NULL,
    first_seen    timestamptz NOT NULL DEFAULT now(),
    last_seen     timestamptz NOT NULL DEFAULT now(),
    last_run_id   bigint REFERENCES registry.import_run (run_id),
    PRIMARY KEY (mapping_name, concept_map, source_code)
);
