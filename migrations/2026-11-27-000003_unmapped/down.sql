DROP TABLE registry.unmapped_code;
