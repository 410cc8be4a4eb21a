//! `registrar cohort export`: a research view as a file for analysis tools (CSV, or Parquet
//! with typed columns), with small-cell warnings so a researcher notices before sharing a
//! table that could single someone out.

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

fn check_cohort(client: &mut postgres::Client, name: &str) -> Result<String> {
    let known = cohorts(client)?;
    if !known.iter().any(|c| c == name) {
        bail!("no cohort `{name}`; cohorts: {}", known.join(", "));
    }
    Ok(format!("research.{}", crate::db::quote_ident(name)))
}

/// Export `research.<name>` as CSV (header row, RFC 4180 quoting) to `out`; returns the row
/// count and the small cells of its categorical (text and boolean) columns.
pub fn export_csv(
    client: &mut postgres::Client,
    name: &str,
    out: &Path,
) -> Result<(i64, Vec<SmallCell>)> {
    let q = check_cohort(client, name)?;
    let mut file = crate::files::create_report(out)
        .with_context(|| format!("cannot create {}", out.display()))?;
    let mut reader = client.copy_out(&format!(
        "COPY (SELECT * FROM {q}) TO STDOUT (FORMAT csv, HEADER)"
    ))?;
    std::io::copy(&mut reader, &mut file)?;
    drop(reader);
    file.flush()?;
    let rows: i64 = client
        .query_one(&format!("SELECT count(*) FROM {q}"), &[])?
        .get(0);
    Ok((rows, small_cells(client, name, &q)?))
}

/// The small cells of a view's categorical (text and boolean) columns.
fn small_cells(client: &mut postgres::Client, name: &str, q: &str) -> Result<Vec<SmallCell>> {
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
    Ok(small)
}

/// A column's Parquet representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PqType {
    Bool,
    Int32,
    Int64,
    Double,
    Date,
    Text,
}

/// Export `research.<name>` as a Parquet file (snappy; integers, numbers, booleans and dates
/// typed; other types as UTF-8 text; every column nullable), written atomically; returns the
/// row count and the small cells, as [`export_csv`].
pub fn export_parquet(
    client: &mut postgres::Client,
    name: &str,
    out: &Path,
) -> Result<(i64, Vec<SmallCell>)> {
    use parquet::basic::Compression;
    use parquet::column::writer::ColumnWriter;
    use parquet::data_type::ByteArray;
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use std::sync::Arc;

    let q = check_cohort(client, name)?;
    let cols: Vec<(String, PqType)> = client
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns
              WHERE table_schema = 'research' AND table_name = $1 ORDER BY ordinal_position",
            &[&name],
        )?
        .iter()
        .map(|r| {
            let t: String = r.get(1);
            let pt = match t.as_str() {
                "boolean" => PqType::Bool,
                "integer" | "smallint" => PqType::Int32,
                "bigint" => PqType::Int64,
                "numeric" | "double precision" | "real" => PqType::Double,
                "date" => PqType::Date,
                _ => PqType::Text,
            };
            (r.get::<_, String>(0), pt)
        })
        .collect();
    let mut message = String::from("message cohort {\n");
    for (c, t) in &cols {
        if !c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            bail!("column `{c}` of {q} is not a plain name");
        }
        let decl = match t {
            PqType::Bool => "BOOLEAN",
            PqType::Int32 => "INT32",
            PqType::Int64 => "INT64",
            PqType::Double => "DOUBLE",
            PqType::Date => "INT32",
            PqType::Text => "BYTE_ARRAY",
        };
        let logical = match t {
            PqType::Date => " (DATE)",
            PqType::Text => " (UTF8)",
            _ => "",
        };
        message.push_str(&format!("  OPTIONAL {decl} {c}{logical};\n"));
    }
    message.push('}');
    let schema = Arc::new(parquet::schema::parser::parse_message_type(&message)?);
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build(),
    );
    // Every value as text from the server, parsed to its type here.
    let select: Vec<String> = cols
        .iter()
        .map(|(c, t)| {
            let qc = crate::db::quote_ident(c);
            match t {
                PqType::Date => format!("({qc} - DATE '1970-01-01')::text"),
                _ => format!("{qc}::text"),
            }
        })
        .collect();
    let rows = client.query(&format!("SELECT {} FROM {q}", select.join(", ")), &[])?;
    let mut buf: Vec<u8> = Vec::new();
    {
        let mut w = SerializedFileWriter::new(&mut buf, schema, props)?;
        for chunk in rows.chunks(65_536) {
            let mut rg = w.next_row_group()?;
            let mut ci = 0;
            while let Some(mut col) = rg.next_column()? {
                let t = cols[ci].1;
                let vals: Vec<Option<String>> = chunk.iter().map(|r| r.get(ci)).collect();
                let defs: Vec<i16> = vals.iter().map(|v| i16::from(v.is_some())).collect();
                let present = vals.iter().flatten();
                let bad = |v: &str| anyhow::anyhow!("{}: unexpected value `{v}`", cols[ci].0);
                match (col.untyped(), t) {
                    (ColumnWriter::BoolColumnWriter(cw), _) => {
                        let v: Vec<bool> = present.map(|s| s == "true").collect();
                        cw.write_batch(&v, Some(&defs), None)?;
                    }
                    (ColumnWriter::Int32ColumnWriter(cw), _) => {
                        let v = present
                            .map(|s| s.parse::<i32>().map_err(|_| bad(s)))
                            .collect::<Result<Vec<_>>>()?;
                        cw.write_batch(&v, Some(&defs), None)?;
                    }
                    (ColumnWriter::Int64ColumnWriter(cw), _) => {
                        let v = present
                            .map(|s| s.parse::<i64>().map_err(|_| bad(s)))
                            .collect::<Result<Vec<_>>>()?;
                        cw.write_batch(&v, Some(&defs), None)?;
                    }
                    (ColumnWriter::DoubleColumnWriter(cw), _) => {
                        let v = present
                            .map(|s| s.parse::<f64>().map_err(|_| bad(s)))
                            .collect::<Result<Vec<_>>>()?;
                        cw.write_batch(&v, Some(&defs), None)?;
                    }
                    (ColumnWriter::ByteArrayColumnWriter(cw), _) => {
                        let v: Vec<ByteArray> =
                            present.map(|s| ByteArray::from(s.as_str())).collect();
                        cw.write_batch(&v, Some(&defs), None)?;
                    }
                    _ => bail!("{}: no Parquet writer for this column", cols[ci].0),
                }
                col.close()?;
                ci += 1;
            }
            rg.close()?;
        }
        w.close()?;
    }
    crate::files::write_atomically(out, &buf)?;
    Ok((rows.len() as i64, small_cells(client, name, &q)?))
}
