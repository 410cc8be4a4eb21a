//! The person map: keyed pseudonyms -> stable integer `person_id`s.
//!
//! A source row names a person by one or more identifiers (NISS, MRN, a study subject
//! number). Each is pseudonymised with the current key; a person already known under any of
//! those pseudonyms keeps their `person_id`, and the pseudonyms not yet in the map are added
//! to it, so the same person arriving through two sources, or with a second identifier,
//! stays one person.
//!
//! Key rotation: with previous keys configured, an identifier whose current pseudonym is
//! unknown is also pseudonymised with each previous key; if that finds the person, the new
//! pseudonym is bridged to the same `person_id`. Nothing else is ever needed, because no
//! identifier is stored: the bridge is built from the identifiers the sources deliver.
//!
//! The date shift of a person is keyed on the pseudonym of the row's *first* identifier (the
//! source's primary identifier, the MRN for hospital sources, as in DICOM PatientID).

use super::keys::Keys;
use crate::ledger::{Ledger, PersonMapRow};
use anyhow::Result;
use postgres::GenericClient;
use registrar_anonymizer::dateshift::DatePolicy;
use registrar_anonymizer::pseudonym::{IdentifierType, NormaliseError, Pseudonym};
use std::collections::HashMap;

/// The lock an import holds for its transaction while it resolves persons in bulk, so two
/// imports never give one new person two person_ids. A table lock in a mode that needs write
/// privileges on the person map (only the ETL role has them): no reader can take or block it.
pub const PERSON_MAP_LOCK: &str = "LOCK TABLE registry.person_map IN SHARE ROW EXCLUSIVE MODE";

/// A resolved person.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub person_id: i32,
    /// Pseudonym of the primary identifier (fits `person_source_value`).
    pub pseudonym: Pseudonym,
    /// Days to add to every date of this person (0 when true dates are kept).
    pub shift_days: i32,
    /// Whether this call created the person.
    pub created: bool,
}

/// Why a row's person could not be resolved (never contains the identifier).
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("no identifier: the row names no person")]
    NoIdentifier,
    #[error("{0}: {1}")]
    Invalid(IdentifierType, NormaliseError),
    #[error(
        "identifiers disagree: this {0} and this {1} belong to two different persons in the \
         registry (person_id {2} and {3}); fix the source"
    )]
    Conflict(IdentifierType, IdentifierType, i32, i32),
    #[error("database error: {0:#}")]
    Db(anyhow::Error),
}

/// Counters for the audit log.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct PersonCounts {
    pub identifiers_pseudonymised: u64,
    pub persons_created: u64,
    pub pseudonyms_added: u64,
    pub bridged_from_previous_key: u64,
}

/// Resolves identifiers to persons within one import run, caching the map.
pub struct PersonResolver<'k> {
    keys: &'k Keys,
    policy: DatePolicy,
    run_id: Option<i64>,
    cache: HashMap<String, i32>,
    /// The cache holds the whole person map (see [`Self::preload`]): a miss means unknown.
    complete: bool,
    /// Bulk mode: new person-map rows are collected here instead of inserted at once.
    deferred: Option<Vec<PersonMapRow>>,
    id_block: Vec<i32>,
    pub counts: PersonCounts,
}

impl<'k> PersonResolver<'k> {
    pub fn new(keys: &'k Keys, policy: DatePolicy, run_id: Option<i64>) -> Self {
        Self {
            keys,
            policy,
            run_id,
            cache: HashMap::new(),
            complete: false,
            deferred: None,
            id_block: Vec::new(),
            counts: PersonCounts::default(),
        }
    }

    /// Bulk mode for importers: load the whole person map once (inside the import
    /// transaction, which holds [`PERSON_MAP_LOCK`] so no other import adds to it meanwhile),
    /// then resolve without lookups; new person-map rows are collected for
    /// [`Self::take_new`] and written by the caller in the same transaction. `db` is then
    /// only used to draw new person ids from the (non-transactional) sequence.
    pub fn preload(&mut self, db: &mut impl GenericClient) -> Result<()> {
        self.cache = Ledger::person_map(db)?;
        self.complete = true;
        self.deferred = Some(Vec::new());
        Ok(())
    }

    /// A new person_id: one at a time, or (bulk mode) from a block drawn in one round trip;
    /// unused ids of a block are gaps, as with any sequence.
    fn next_person_id(&mut self, db: &mut impl GenericClient) -> Result<i32> {
        if self.deferred.is_none() {
            return Ok(db
                .query_one("SELECT nextval('registry.seq_person_id')::int4", &[])?
                .get(0));
        }
        if self.id_block.is_empty() {
            self.id_block = db
                .query(
                    "SELECT nextval('registry.seq_person_id')::int4 FROM generate_series(1, 1000)",
                    &[],
                )?
                .iter()
                .rev()
                .map(|r| r.get(0))
                .collect();
        }
        Ok(self.id_block.pop().expect("refilled"))
    }

    /// The person-map rows created since the last call (bulk mode).
    pub fn take_new(&mut self) -> Vec<PersonMapRow> {
        self.deferred
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    pub fn policy(&self) -> &DatePolicy {
        &self.policy
    }

    fn lookup(&mut self, db: &mut impl GenericClient, pseudonym: &str) -> Result<Option<i32>> {
        if let Some(&id) = self.cache.get(pseudonym) {
            return Ok(Some(id));
        }
        if self.complete {
            return Ok(None);
        }
        let id = Ledger::person_of(db, pseudonym)?;
        if let Some(id) = id {
            self.cache.insert(pseudonym.to_string(), id);
        }
        Ok(id)
    }

    fn insert(
        &mut self,
        db: &mut impl GenericClient,
        pseudonym: &str,
        person_id: i32,
        ty: IdentifierType,
    ) -> Result<()> {
        let row = PersonMapRow {
            pseudonym: pseudonym.to_string(),
            person_id,
            identifier_type: ty.as_str(),
        };
        if let Some(pending) = self.deferred.as_mut() {
            pending.push(row);
            self.cache.insert(pseudonym.to_string(), person_id);
            self.counts.pseudonyms_added += 1;
            return Ok(());
        }
        let cur = &self.keys.current;
        Ledger::add_person(db, &row, cur.key_id().as_str(), cur.domain(), self.run_id)?;
        self.cache.insert(pseudonym.to_string(), person_id);
        self.counts.pseudonyms_added += 1;
        Ok(())
    }

    /// Resolve a row's identifiers (primary first) to one person, creating it if new.
    pub fn resolve(
        &mut self,
        db: &mut impl GenericClient,
        ids: &[(IdentifierType, &str)],
    ) -> Result<Resolved, ResolveError> {
        let present: Vec<(IdentifierType, &str)> = ids
            .iter()
            .copied()
            .filter(|(_, v)| !v.trim().is_empty())
            .collect();
        if present.is_empty() {
            return Err(ResolveError::NoIdentifier);
        }
        let mut pseudos = Vec::with_capacity(present.len());
        for (ty, raw) in &present {
            let p = self
                .keys
                .current
                .person(*ty, raw)
                .map_err(|e| ResolveError::Invalid(*ty, e))?;
            self.counts.identifiers_pseudonymised += 1;
            pseudos.push((*ty, p, *raw));
        }
        let db_err = ResolveError::Db;
        let mut found: Option<(IdentifierType, i32)> = None;
        let mut missing = Vec::new();
        for (ty, p, raw) in &pseudos {
            match self.lookup(db, p.as_str()).map_err(db_err)? {
                Some(id) => match found {
                    Some((fty, fid)) if fid != id => {
                        return Err(ResolveError::Conflict(fty, *ty, fid, id))
                    }
                    _ => found = Some((*ty, id)),
                },
                None => missing.push((*ty, p.clone(), *raw)),
            }
        }
        // Key rotation: look the unknown identifiers up under the previous keys.
        if !missing.is_empty() && !self.keys.previous.is_empty() {
            for (ty, _, raw) in &missing {
                for prev in &self.keys.previous {
                    let Ok(old) = prev.person(*ty, raw) else {
                        continue;
                    };
                    if let Some(id) = self.lookup(db, old.as_str()).map_err(ResolveError::Db)? {
                        match found {
                            Some((fty, fid)) if fid != id => {
                                return Err(ResolveError::Conflict(fty, *ty, fid, id))
                            }
                            None => {
                                self.counts.bridged_from_previous_key += 1;
                                found = Some((*ty, id));
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        let (person_id, created) = match found {
            Some((_, id)) => (id, false),
            None => {
                let id = self.next_person_id(db).map_err(ResolveError::Db)?;
                self.counts.persons_created += 1;
                (id, true)
            }
        };
        for (ty, p, _) in &missing {
            self.insert(db, p.as_str(), person_id, *ty)
                .map_err(ResolveError::Db)?;
        }
        let primary = pseudos.swap_remove(0).1;
        let shift_days = self.keys.current.date_shift_days(&self.policy, &primary);
        Ok(Resolved {
            person_id,
            pseudonym: primary,
            shift_days,
            created,
        })
    }

    /// Forget cached lookups (after a rolled-back transaction, the cache may name rows that
    /// were never committed).
    pub fn clear_cache(&mut self) {
        self.cache.clear();
    }
}

/// Re-identification by recomputation: the `person_id` an identifier maps to, if any.
pub fn lookup_person(
    db: &mut impl GenericClient,
    keys: &Keys,
    ty: IdentifierType,
    raw: &str,
) -> Result<(Pseudonym, Option<i32>)> {
    let p = keys
        .current
        .person(ty, raw)
        .map_err(|e| anyhow::anyhow!("{ty}: {e}"))?;
    if let Some(id) = Ledger::person_of(db, p.as_str())? {
        return Ok((p, Some(id)));
    }
    for prev in &keys.previous {
        let old = prev
            .person(ty, raw)
            .map_err(|e| anyhow::anyhow!("{ty}: {e}"))?;
        if let Some(id) = Ledger::person_of(db, old.as_str())? {
            return Ok((p, Some(id)));
        }
    }
    Ok((p, None))
}
