DROP SCHEMA federation CASCADE;
DROP FUNCTION registry.audit_append(text, text, text);
DROP FUNCTION registry.audit_field(text);
