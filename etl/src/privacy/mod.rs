//! The database side of pseudonymisation: which key and domain a command uses, the person map
//! (pseudonym -> stable `person_id`), the hash-chained audit log, and re-identification by
//! recomputation. The keyed computations themselves live in `registrar-anonymizer`.

pub mod audit;
pub mod identifiers;
pub mod keys;
pub mod persons;
pub mod report;
