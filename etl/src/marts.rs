//! The research marts: the tables behind the `research` views (migration
//! `*_research_marts`).
//!
//! Each view of schema `research` reads a table of schema `mart`, keyed by `person_id`, built
//! by SQL that lives next to it (`mart.<name>_src`). The import path notes every person whose
//! cdm facts it adds, replaces or deletes (`registry.changed_person`, see [`crate::ledger`]);
//! [`refresh`] recomputes exactly those persons, in the caller's transaction, so a researcher
//! sees the marts before or after a refresh and never half of one. A full rebuild
//! recomputes every person: after a vocabulary load, a change of `research.concept_role`
//! (done by its trigger), or a cdm written by something other than registrar's import path.
//!
//! Who refreshes: the nightly (inside [`crate::derive::rebuild`], before the derived tables
//! that read the diagnosis mart), every import command when it ends, `registrar vocab load`
//! (whole), and `registrar research refresh [--full]`.

use anyhow::{Context, Result};
use postgres::GenericClient;
use serde::Serialize;
use std::time::Instant;

/// What a refresh did.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Refreshed {
    /// Persons recomputed.
    pub persons: i64,
    /// Every person was recomputed (asked for, or the marts had never been built).
    pub full_rebuild: bool,
    /// Wall time of the refresh.
    pub seconds: f64,
}

impl std::fmt::Display for Refreshed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "research marts: {} person(s) recomputed{} in {:.2} s",
            self.persons,
            if self.full_rebuild {
                " (full rebuild)"
            } else {
                ""
            },
            self.seconds
        )
    }
}

/// Which persons to recompute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Those whose facts changed since the last refresh (every person if never built).
    Changed,
    /// Every person.
    Full,
}

/// Refresh the marts in the caller's transaction (or, on a plain client, in a transaction of
/// its own: one statement).
pub fn refresh(client: &mut impl GenericClient, scope: Scope) -> Result<Refreshed> {
    let t0 = Instant::now();
    let row = client
        .query_one(
            "SELECT persons, full_rebuild FROM mart.refresh($1)",
            &[&(scope == Scope::Full)],
        )
        .context("could not refresh the research marts")?;
    Ok(Refreshed {
        persons: row.get(0),
        full_rebuild: row.get(1),
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// How current the marts are.
#[derive(Debug, Clone, Serialize)]
pub struct State {
    /// When the last refresh committed (`None`: never).
    pub refreshed_at: Option<String>,
    /// When the last full rebuild committed.
    pub full_rebuild_at: Option<String>,
    /// Persons the last refresh recomputed, and whether it was whole.
    pub last: Refreshed,
    /// Persons whose facts changed since then (0 when the marts are current).
    pub pending: i64,
}

/// The marts' refresh state.
pub fn state(client: &mut impl GenericClient) -> Result<State> {
    let r = client
        .query_one(
            "SELECT to_char(refreshed_at, 'YYYY-MM-DD HH24:MI:SS TZ'),
                    to_char(full_rebuild_at, 'YYYY-MM-DD HH24:MI:SS TZ'),
                    persons, full_rebuild, seconds,
                    (SELECT count(*) FROM registry.changed_person)
               FROM mart.refresh_state",
            &[],
        )
        .context("could not read the research marts' state")?;
    Ok(State {
        refreshed_at: r.get(0),
        full_rebuild_at: r.get(1),
        last: Refreshed {
            persons: r.get(2),
            full_rebuild: r.get(3),
            seconds: r.get(4),
        },
        pending: r.get(5),
    })
}
