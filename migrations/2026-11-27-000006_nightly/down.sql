DROP TABLE registry.nightly_source;
