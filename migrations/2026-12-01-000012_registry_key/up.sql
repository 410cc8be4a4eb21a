-- The registry's key: the key (and pseudonym domain) its person map is under. An import with
-- another key would give every person a second pseudonym and a second person_id; it is
-- refused before anything is read, unless `registrar key rotate` declared the change (the
-- new key becomes current, the old one previous).
CREATE TABLE registry.registry_key (
    key_id   text        NOT NULL,
    domain   text        NOT NULL,
    status   text        NOT NULL CHECK (status IN ('current', 'previous')),
    since    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (key_id, domain)
);
CREATE UNIQUE INDEX idx_registry_key_current ON registry.registry_key ((status)) WHERE status = 'current';
-- A registry from before: the key of its newest person-map row is current, the others previous.
INSERT INTO registry.registry_key (key_id, domain, status)
SELECT key_id, domain, CASE WHEN rank = 1 THEN 'current' ELSE 'previous' END
  FROM (SELECT key_id, domain, row_number() OVER (ORDER BY max(created_at) DESC) AS rank
          FROM registry.person_map GROUP BY key_id, domain) k;
