DROP TABLE registry.audit_log;
DROP FUNCTION registry.audit_log_append_only();
DROP TABLE registry.person_map;
DROP SEQUENCE registry.seq_person_id;
DROP TABLE registry.lineage;
DROP TABLE registry.reject;
DROP TABLE registry.source_file;
DROP TABLE registry.import_run;
-- the schema itself goes with the last migration that uses it (cdm's down drops its sequences)
