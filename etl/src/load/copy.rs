//! Typed binary COPY into any table, driven by the table's catalog definition.
//!
//! Every loader (vocabulary, CSV, spreadsheet, FHIR, DICOM index) ends here: rows are
//! [`Value`]s checked against a [`TableLayout`] read from the database, then streamed with
//! PostgreSQL's binary COPY protocol.

use anyhow::{bail, Context, Result};
use chrono::{NaiveDate, NaiveDateTime};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use rust_decimal::Decimal;
use std::str::FromStr;

/// The column types registrar writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgType {
    Int4,
    Int8,
    Numeric,
    Date,
    Timestamp,
    Text,
}

impl PgType {
    fn from_catalog(typname: &str) -> Option<Self> {
        Some(match typname {
            "int4" => PgType::Int4,
            "int8" => PgType::Int8,
            "numeric" => PgType::Numeric,
            "date" => PgType::Date,
            "timestamp" => PgType::Timestamp,
            "text" | "varchar" | "bpchar" => PgType::Text,
            _ => return None,
        })
    }

    /// The wire type for binary COPY.
    pub fn wire(self, typname: &str) -> Type {
        match self {
            PgType::Int4 => Type::INT4,
            PgType::Int8 => Type::INT8,
            PgType::Numeric => Type::NUMERIC,
            PgType::Date => Type::DATE,
            PgType::Timestamp => Type::TIMESTAMP,
            PgType::Text if typname == "varchar" => Type::VARCHAR,
            PgType::Text if typname == "bpchar" => Type::BPCHAR,
            PgType::Text => Type::TEXT,
        }
    }
}

/// One column of a target table.
#[derive(Debug, Clone)]
pub struct ColumnDef {
    pub name: String,
    pub ty: PgType,
    pub typname: String,
    pub not_null: bool,
    /// `varchar(N)` limit in characters.
    pub max_chars: Option<usize>,
}

/// A table's columns in catalog order.
#[derive(Debug, Clone)]
pub struct TableLayout {
    pub schema: String,
    pub table: String,
    pub columns: Vec<ColumnDef>,
}

impl TableLayout {
    /// Read the layout of `schema.table` from the catalog.
    pub fn read(
        client: &mut impl postgres::GenericClient,
        schema: &str,
        table: &str,
    ) -> Result<Self> {
        let rows = client.query(
            "SELECT a.attname, t.typname, a.attnotnull,
                    CASE WHEN t.typname IN ('varchar','bpchar') AND a.atttypmod > 4
                         THEN a.atttypmod - 4 END
               FROM pg_attribute a
               JOIN pg_class c ON c.oid = a.attrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_type t ON t.oid = a.atttypid
              WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum",
            &[&schema, &table],
        )?;
        if rows.is_empty() {
            bail!("table {schema}.{table} does not exist (run `registrar db migrate`)");
        }
        let mut columns = Vec::with_capacity(rows.len());
        for r in rows {
            let name: String = r.get(0);
            let typname: String = r.get(1);
            let ty = PgType::from_catalog(&typname).with_context(|| {
                format!("{schema}.{table}.{name} has type {typname}, which registrar cannot load")
            })?;
            let max: Option<i32> = r.get(3);
            columns.push(ColumnDef {
                name,
                ty,
                typname,
                not_null: r.get(2),
                max_chars: max.map(|m| m as usize),
            });
        }
        Ok(Self {
            schema: schema.to_string(),
            table: table.to_string(),
            columns,
        })
    }

    /// Index of a column by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Qualified, quoted table name.
    pub fn qualified(&self) -> String {
        format!(
            "{}.{}",
            crate::db::quote_ident(&self.schema),
            crate::db::quote_ident(&self.table)
        )
    }

    /// Start a binary COPY of the given columns (by index, in that order).
    pub fn copy_in<'a>(
        &self,
        client: &'a mut impl postgres::GenericClient,
        cols: &[usize],
    ) -> Result<BinaryCopyInWriter<'a>> {
        let names: Vec<String> = cols
            .iter()
            .map(|&i| crate::db::quote_ident(&self.columns[i].name))
            .collect();
        let types: Vec<Type> = cols
            .iter()
            .map(|&i| {
                let c = &self.columns[i];
                c.ty.wire(&c.typname)
            })
            .collect();
        let sql = format!(
            "COPY {} ({}) FROM STDIN (FORMAT binary)",
            self.qualified(),
            names.join(", ")
        );
        let sink = client
            .copy_in(&sql)
            .with_context(|| format!("could not start COPY into {}", self.qualified()))?;
        Ok(BinaryCopyInWriter::new(sink, &types))
    }
}

/// A typed cell value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int4(i32),
    Int8(i64),
    Numeric(Decimal),
    Date(NaiveDate),
    Timestamp(NaiveDateTime),
    Text(String),
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int4(v) => v.to_sql(ty, out),
            Value::Int8(v) => v.to_sql(ty, out),
            Value::Numeric(v) => v.to_sql(ty, out),
            Value::Date(v) => v.to_sql(ty, out),
            Value::Timestamp(v) => v.to_sql(ty, out),
            Value::Text(v) => v.as_str().to_sql(ty, out),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Parse one text cell into the column's type. Empty text is NULL. Dates accept
/// `YYYYMMDD` (Athena) and ISO `YYYY-MM-DD`; timestamps ISO with `T` or space.
/// Errors describe the problem without repeating the value.
pub fn parse_cell(col: &ColumnDef, raw: &str) -> Result<Value, String> {
    if raw.is_empty() {
        if col.not_null {
            return Err(format!("{} is required but empty", col.name));
        }
        return Ok(Value::Null);
    }
    let v = match col.ty {
        PgType::Int4 => Value::Int4(
            raw.trim()
                .parse()
                .map_err(|_| format!("{} is not a 32-bit integer", col.name))?,
        ),
        PgType::Int8 => Value::Int8(
            raw.trim()
                .parse()
                .map_err(|_| format!("{} is not an integer", col.name))?,
        ),
        PgType::Numeric => {
            let t = raw.trim();
            let d = Decimal::from_str(t)
                .or_else(|_| Decimal::from_scientific(t))
                .map_err(|_| format!("{} is not a number", col.name))?;
            Value::Numeric(d)
        }
        PgType::Date => Value::Date(parse_date(raw.trim()).ok_or_else(|| {
            format!(
                "{} is not a date (expected YYYYMMDD or YYYY-MM-DD)",
                col.name
            )
        })?),
        PgType::Timestamp => {
            let t = raw.trim();
            let ts = NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f")
                .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f"))
                .ok()
                .or_else(|| parse_date(t).and_then(|d| d.and_hms_opt(0, 0, 0)))
                .ok_or_else(|| format!("{} is not a timestamp", col.name))?;
            Value::Timestamp(ts)
        }
        PgType::Text => {
            if let Some(max) = col.max_chars {
                let n = raw.chars().count();
                if n > max {
                    return Err(format!(
                        "{} is {n} characters long, the limit is {max}",
                        col.name
                    ));
                }
            }
            Value::Text(raw.to_string())
        }
    };
    Ok(v)
}

fn parse_date(t: &str) -> Option<NaiveDate> {
    if t.len() == 8 && t.bytes().all(|b| b.is_ascii_digit()) {
        NaiveDate::parse_from_str(t, "%Y%m%d").ok()
    } else {
        NaiveDate::parse_from_str(t, "%Y-%m-%d").ok()
    }
}
