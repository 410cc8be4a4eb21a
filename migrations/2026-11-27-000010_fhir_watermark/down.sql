DROP TABLE registry.fhir_watermark;
