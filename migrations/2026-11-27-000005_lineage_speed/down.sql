ALTER TABLE registry.lineage ALTER COLUMN cdm_table TYPE text COLLATE "default";
ALTER TABLE registry.lineage ADD CONSTRAINT lineage_run_id_fkey FOREIGN KEY (run_id) REFERENCES registry.import_run (run_id);
ALTER TABLE registry.lineage ADD CONSTRAINT lineage_source_file_id_fkey FOREIGN KEY (source_file_id) REFERENCES registry.source_file (source_file_id);
