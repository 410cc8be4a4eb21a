//! Describe diesel columns through their diesel types, so the Rust definitions can be compared
//! with the catalog of a migrated database.
//!
//! [`describe`] turns a diesel column type (e.g. `crate::cdm::person::person_id`) into a
//! [`ColumnInfo`]: table, column name (`Column::NAME`, i.e. the SQL name), the PostgreSQL type
//! name its SQL type stands for (as in `pg_type.typname`) and whether it is nullable. Nothing
//! is read from a database here; a test reads `information_schema` / `pg_catalog` and compares.
//!
//! # `text` and `varchar`
//!
//! diesel has no distinct varchar SQL type: `diesel::sql_types::Varchar` is a type alias of
//! [`Text`], so a column declared `varchar(50)` in SQL and `Varchar` in `table!` is described
//! with `pg_type == "text"`. The catalog reports its `typname` as `varchar`. A comparison must
//! therefore accept `text` *and* `varchar` for a column described as `text` (see
//! [`ColumnInfo::matches_catalog_type`]); every other type must match exactly.

use diesel::sql_types::{
    BigInt, Binary, Bool, Date, Double, Float, Integer, Interval, Json, Jsonb, Nullable, Numeric,
    SmallInt, Text, Time, Timestamp, Timestamptz, Uuid,
};

/// One diesel column, as its diesel type describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ColumnInfo {
    /// Table name without schema (e.g. `"person"`).
    pub table: &'static str,
    /// Column name in SQL (`diesel::Column::NAME`).
    pub column: &'static str,
    /// PostgreSQL `pg_type.typname` of the column's SQL type: `"int4"`, `"int8"`, `"numeric"`,
    /// `"date"`, `"timestamp"`, `"timestamptz"`, `"text"`, `"bool"`, ... For diesel's `Text`
    /// (and its alias `Varchar`) this is `"text"`; see the module documentation.
    pub pg_type: &'static str,
    /// Whether the diesel type is `Nullable<_>`, i.e. the column should lack `NOT NULL`.
    pub nullable: bool,
}

impl ColumnInfo {
    /// Whether a catalog type name (`pg_type.typname`, or `udt_name` of
    /// `information_schema.columns`) is the type this column describes. `text` columns accept
    /// `varchar` too, because diesel's `Varchar` is an alias of `Text`.
    pub fn matches_catalog_type(&self, typname: &str) -> bool {
        typname == self.pg_type || (self.pg_type == "text" && typname == "varchar")
    }
}

/// The PostgreSQL type a diesel SQL type stands for.
pub trait DescribeSqlType {
    /// `pg_type.typname` of the type (for `Nullable<T>`: that of `T`).
    const PG_TYPE: &'static str;
    /// `true` only for `Nullable<T>`.
    const NULLABLE: bool;
}

macro_rules! describe_not_null {
    ($($sql_type:ty => $typname:literal),+ $(,)?) => {
        $(
            impl DescribeSqlType for $sql_type {
                const PG_TYPE: &'static str = $typname;
                const NULLABLE: bool = false;
            }
        )+
    };
}

// The aliases Int2/Int4/Int8, Float4/Float8, Decimal, Varchar, Bytea, Timestamp(tz) variants
// all resolve to one of these.
describe_not_null! {
    SmallInt => "int2",
    Integer => "int4",
    BigInt => "int8",
    Float => "float4",
    Double => "float8",
    Numeric => "numeric",
    Bool => "bool",
    Text => "text",
    Binary => "bytea",
    Date => "date",
    Time => "time",
    Timestamp => "timestamp",
    Timestamptz => "timestamptz",
    Interval => "interval",
    Json => "json",
    Jsonb => "jsonb",
    Uuid => "uuid",
}

impl<T: DescribeSqlType> DescribeSqlType for Nullable<T> {
    const PG_TYPE: &'static str = T::PG_TYPE;
    const NULLABLE: bool = true;
}

/// Describe diesel column `C` of `table` (the table name without schema).
///
/// ```
/// use registrar_schema::introspect::describe;
/// let info = describe::<registrar_schema::cdm::person::year_of_birth>("person");
/// assert_eq!((info.column, info.pg_type, info.nullable), ("year_of_birth", "int4", false));
/// ```
pub fn describe<C>(table: &'static str) -> ColumnInfo
where
    C: diesel::Column,
    C::SqlType: DescribeSqlType,
{
    ColumnInfo {
        table,
        column: C::NAME,
        pg_type: <C::SqlType as DescribeSqlType>::PG_TYPE,
        nullable: <C::SqlType as DescribeSqlType>::NULLABLE,
    }
}
