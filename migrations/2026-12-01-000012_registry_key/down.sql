DROP TABLE registry.registry_key;
