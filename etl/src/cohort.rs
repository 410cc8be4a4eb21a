//! `registrar cohort export`: a research view as a file for analysis tools, with small-cell
//! warnings so a researcher notices before sharing a table that could single someone out.

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::Path;

/// Below this many patients a category is a small cell.
pub const SMALL_CELL: i64 = 5;

/// The research views a cohort can be exported from.
pub fn cohorts(client: &mut postgres::Client) -> Result<Vec<String>> {
    Ok(client
        .query(
            "SELECT table_name::text FROM information_schema.views WHERE table_schema = 'research' ORDER BY 1",
            &[],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// A small cell: a category value of a column held by fewer than [`SMALL_CELL`] rows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SmallCell {
    pub column: String,
    pub value: String,
    pub rows: i64,
}

/// Export `research.<name>` as CSV (header row, RFC 4180 quoting) to `out`; returns the row
/// count and the small cells of its categorical (text and boolean) columns.
pub fn export_csv(
    client: &mut postgres::Client,
    name: &str,
    out: &Path,
) -> Result<(i64, Vec<SmallCell>)> {
    let known = cohorts(client)?;
    if !known.iter().any(|c| c == name) {
        bail!("no cohort `{name}`; cohorts: {}", known.join(", "));
    }
    let q = format!("research.{}", crate::db::quote_ident(name));
    let mut file =
        std::fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut reader = client.copy_out(&format!(
        "COPY (SELECT * FROM {q}) TO STDOUT (FORMAT csv, HEADER)"
    ))?;
    std::io::copy(&mut reader, &mut file)?;
    drop(reader);
    file.flush()?;
    let rows: i64 = client
        .query_one(&format!("SELECT count(*) FROM {q}"), &[])?
        .get(0);
    let cols: Vec<String> = client
        .query(
            "SELECT column_name::text FROM information_schema.columns
              WHERE table_schema = 'research' AND table_name = $1 AND data_type IN ('text', 'character varying', 'boolean')
              ORDER BY ordinal_position",
            &[&name],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut small = Vec::new();
    for c in cols {
        let qc = crate::db::quote_ident(&c);
        for r in client.query(
            &format!("SELECT coalesce({qc}::text, '(null)'), count(*) FROM {q} GROUP BY 1 HAVING count(*) < $1 ORDER BY 1"),
            &[&SMALL_CELL],
        )? {
            small.push(SmallCell { column: c.clone(), value: r.get(0), rows: r.get(1) });
        }
    }
    Ok((rows, small))
}
