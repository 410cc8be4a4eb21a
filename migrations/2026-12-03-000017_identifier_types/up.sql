-- Identifier types a registry declares beyond the built-in NISS, MRN and study-subject
-- (a US social security number, another country's national id): each is a pseudonym domain
-- of its own. A type's rules decide its pseudonyms, so a row is never changed or removed.
CREATE TABLE registry.identifier_type (
    name           text PRIMARY KEY
                   CHECK (name ~ '^[a-z][a-z0-9-]{1,31}$' AND name NOT IN ('niss', 'mrn', 'study-subject')),
    normalisation  text NOT NULL CHECK (normalisation IN ('trim', 'upper', 'digits', 'alnum-upper')),
    min_length     int  NOT NULL CHECK (min_length BETWEEN 1 AND 64),
    max_length     int  NOT NULL CHECK (max_length BETWEEN min_length AND 64),
    check_digit    text CHECK (check_digit IN ('luhn', 'mod97')),
    description    text NOT NULL DEFAULT '',
    declared_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (check_digit IS NULL OR normalisation = 'digits')
);
COMMENT ON TABLE registry.identifier_type IS
    'Declared identifier types (registrar identifiers declare): name, normalisation, length and check digit; never updated or deleted';

CREATE FUNCTION registry.identifier_type_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'an identifier type is never changed or removed once declared: its rules decide its pseudonyms';
END $$;
CREATE TRIGGER identifier_type_frozen BEFORE UPDATE OR DELETE ON registry.identifier_type
    FOR EACH ROW EXECUTE FUNCTION registry.identifier_type_frozen();
