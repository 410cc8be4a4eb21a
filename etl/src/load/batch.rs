//! The writing half of the load path: a batch of mapped rows with their lineage, rejects,
//! new person-map rows and records, written into the unit's transaction with binary COPY.
//! The reader builds the next batch while this one is written.

use super::copy::{TableLayout, Value};
use crate::ledger::{Ledger, LineageRow, PersonMapRow, RejectRow, RowOrigin};
use anyhow::{Context, Result};
use postgres::types::ToSql;

/// Ids of one cdm table, drawn from its sequence in blocks (one round trip per block; unused
/// ids are gaps, as with any sequence).
pub struct IdPool {
    seq: String,
    ids: Vec<i32>,
}

impl IdPool {
    /// The pool of `registry.seq_<table>_id`.
    pub fn new(table: &str) -> Self {
        Self {
            seq: format!("registry.seq_{table}_id"),
            ids: Vec::new(),
        }
    }

    pub fn next(&mut self, db: &mut impl postgres::GenericClient) -> Result<i32> {
        if self.ids.is_empty() {
            let rows = db.query(
                "SELECT nextval($1::text::regclass)::int4 FROM generate_series(1, 10000)",
                &[&self.seq],
            )?;
            self.ids = rows.iter().rev().map(|r| r.get(0)).collect();
        }
        Ok(self.ids.pop().expect("refilled"))
    }
}

/// One mapped cdm row.
pub struct Pending {
    /// Index of its table's layout.
    pub layout: usize,
    pub values: Vec<Value>,
    /// Its id (tables with an id column).
    pub id: Option<i32>,
    pub person_id: i32,
    pub source_row: i64,
    /// Which emit of the mapping wrote it.
    pub emit: i16,
}

/// What the reader hands the writer.
#[derive(Default)]
pub struct Batch {
    pub pending: Vec<Pending>,
    pub rejects: Vec<RejectRow>,
    pub persons: Vec<PersonMapRow>,
    /// Where the earlier versions of records this batch replaces or deletes came from.
    pub replaced: Vec<RowOrigin>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
            && self.rejects.is_empty()
            && self.persons.is_empty()
            && self.replaced.is_empty()
    }
}

/// Where a unit's batches go.
pub struct Target<'a> {
    pub ledger: &'a Ledger,
    pub layouts: &'a [TableLayout],
    pub file_id: i64,
    pub mapping_file: Option<&'a str>,
    pub key_id: &'a str,
    pub domain: &'a str,
}

/// Write one batch: replaced records' rows go first, then new persons, cdm rows, lineage and
/// rejects.
pub fn write(tx: &mut impl postgres::GenericClient, t: &Target<'_>, b: &Batch) -> Result<()> {
    t.ledger.delete_rows_of(tx, &b.replaced)?;
    t.ledger.copy_persons(tx, t.key_id, t.domain, &b.persons)?;
    for (li, layout) in t.layouts.iter().enumerate() {
        if !b.pending.iter().any(|p| p.layout == li) {
            continue;
        }
        let cols: Vec<usize> = (0..layout.columns.len()).collect();
        let mut w = layout.copy_in(tx, &cols)?;
        for p in b.pending.iter().filter(|p| p.layout == li) {
            let refs: Vec<&(dyn ToSql + Sync)> =
                p.values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
            w.write(&refs)
                .with_context(|| format!("COPY into cdm.{} failed", layout.table))?;
        }
        w.finish()
            .with_context(|| format!("COPY into cdm.{} failed", layout.table))?;
    }
    if !b.pending.is_empty() {
        let rows = b.pending.iter().filter_map(|p| {
            let table = t.layouts[p.layout].table.as_str();
            let row_id = match p.id {
                Some(id) => i64::from(id),
                // episode_event rows go with their episode; person and death are keyed by
                // person_id.
                None if table == "episode_event" => return None,
                None => i64::from(p.person_id),
            };
            Some(LineageRow {
                table,
                row_id,
                source_row: Some(p.source_row),
                person_id: Some(p.person_id),
                emit: Some(p.emit),
            })
        });
        t.ledger.copy_lineage(tx, t.file_id, rows)?;
    }
    t.ledger
        .copy_rejects(tx, Some(t.file_id), t.mapping_file, &b.rejects)?;
    Ok(())
}
