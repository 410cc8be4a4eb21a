DROP TABLE registry.identifier_type;
DROP FUNCTION registry.identifier_type_frozen();
