#!/usr/bin/env python3
"""Generate the OMOP CDM 5.4 `cdm` schema of registrar from its column list.

Input:  tests/data/cdm54_columns.tsv  (table, column, type, nullable, primary_key,
        distribution_hint), the column list of the OHDSI CDM 5.4 PostgreSQL DDL.
Output: migrations/2026-11-26-000001_cdm/up.sql and down.sql  (diesel migration)
        schema/src/cdm.rs          (diesel `table!` definitions)
        schema/src/cdm_columns.rs  (every diesel column, described through its diesel type)

Usage (from anywhere; paths are resolved from this file's location):
    python3 schema/gen/gen_cdm.py           # (re)write the generated files
    python3 schema/gen/gen_cdm.py --check   # exit 1 if a generated file is stale

Python 3 standard library only. Output is deterministic: same TSV, same bytes.
"""

import argparse
import csv
import re
import sys
from collections import OrderedDict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
TSV = REPO / "tests" / "data" / "cdm54_columns.tsv"
MIGRATION_DIR = REPO / "migrations" / "2026-11-26-000001_cdm"
CDM_RS = REPO / "schema" / "src" / "cdm.rs"
CDM_COLUMNS_RS = REPO / "schema" / "src" / "cdm_columns.rs"

SCHEMA = "cdm"
SEQ_SCHEMA = "registry"
GENERATOR = "schema/gen/gen_cdm.py"
PG_MAX_IDENTIFIER = 63
RUSTFMT_MAX_WIDTH = 100

# --------------------------------------------------------------------------------------------
# Policy: keys, indexes, sequences
# --------------------------------------------------------------------------------------------

# diesel's table! needs a primary key; CDM 5.4 declares none for these tables, so the diesel
# key is the natural key. The SQL gets no constraint for them (the CDM DDL has none either).
NATURAL_KEYS = {
    "cohort": ["cohort_definition_id", "subject_id", "cohort_start_date"],
    "episode_event": ["episode_id", "event_id"],
    "fact_relationship": ["domain_concept_id_1", "fact_id_1", "domain_concept_id_2",
                          "fact_id_2", "relationship_concept_id"],
    "death": ["person_id"],
    "cdm_source": ["cdm_source_name"],
    "concept_relationship": ["concept_id_1", "concept_id_2", "relationship_id"],
    "concept_ancestor": ["ancestor_concept_id", "descendant_concept_id"],
    "concept_synonym": ["concept_id", "concept_synonym_name", "language_concept_id"],
    "drug_strength": ["drug_concept_id", "ingredient_concept_id"],
    "source_to_concept_map": ["source_code", "source_vocabulary_id", "target_concept_id",
                              "valid_end_date"],
    "cohort_definition": ["cohort_definition_id"],
    # any other PK-less table: its first column
}

# Clinical event tables: their main domain concept and main event date get an index.
CLINICAL_EVENT_TABLES = [
    "condition_occurrence", "drug_exposure", "procedure_occurrence", "device_exposure",
    "measurement", "observation", "visit_occurrence", "visit_detail", "specimen", "episode",
    "note", "death", "image_occurrence", "image_feature", "observation_period", "drug_era",
    "dose_era", "condition_era", "payer_plan_period",
]

# The main domain concept column(s) of a table. *_type_concept_id, *_source_concept_id,
# *_status_concept_id, unit_concept_id and value_as_concept_id are never indexed (checked).
# observation_period has no domain concept (only period_type_concept_id).
MAIN_CONCEPT_COLUMNS = {
    "person": ["gender_concept_id"],
    "condition_occurrence": ["condition_concept_id"],
    "drug_exposure": ["drug_concept_id"],
    "procedure_occurrence": ["procedure_concept_id"],
    "device_exposure": ["device_concept_id"],
    "measurement": ["measurement_concept_id"],
    "observation": ["observation_concept_id"],
    "visit_occurrence": ["visit_concept_id"],
    "visit_detail": ["visit_detail_concept_id"],
    "specimen": ["specimen_concept_id"],
    "episode": ["episode_concept_id", "episode_object_concept_id"],
    "note": ["note_class_concept_id"],
    "death": ["cause_concept_id"],
    "image_occurrence": ["modality_concept_id"],
    "image_feature": ["image_feature_concept_id"],
    "drug_era": ["drug_concept_id"],
    "dose_era": ["drug_concept_id"],
    "condition_era": ["condition_concept_id"],
    "payer_plan_period": ["payer_concept_id"],
}
EXCLUDED_CONCEPT_SUFFIXES = ("_type_concept_id", "_source_concept_id", "_status_concept_id")
EXCLUDED_CONCEPT_COLUMNS = ("unit_concept_id", "value_as_concept_id")

# Main event date of tables whose event date is not called *_start_date.
MAIN_EVENT_DATE_COLUMNS = {
    "procedure_occurrence": "procedure_date",
    "measurement": "measurement_date",
    "observation": "observation_date",
    "death": "death_date",
    "image_occurrence": "image_occurrence_date",
    "specimen": "specimen_date",
    "note": "note_date",
}
# *_start_date columns that are vocabulary validity, not event dates: not indexed.
NOT_EVENT_START_DATES = {"valid_start_date"}

# Further indexes researchers (and the loader) need, in this order.
EXTRA_INDEXES = [
    ("episode_event", ["episode_id"]),
    ("episode_event", ["event_id", "episode_event_field_concept_id"]),
    ("image_feature", ["image_occurrence_id"]),
    ("image_occurrence", ["procedure_occurrence_id"]),
    ("concept", ["concept_code"]),
    ("concept", ["vocabulary_id"]),
    ("concept", ["domain_id"]),
    ("concept", ["concept_class_id"]),
    ("concept_relationship", ["concept_id_1"]),
    ("concept_relationship", ["concept_id_2"]),
    ("concept_relationship", ["relationship_id"]),
    ("concept_ancestor", ["ancestor_concept_id"]),
    ("concept_ancestor", ["descendant_concept_id"]),
    ("concept_synonym", ["concept_id"]),
    ("drug_strength", ["drug_concept_id"]),
    ("drug_strength", ["ingredient_concept_id"]),
    ("source_to_concept_map", ["source_code"]),
    ("source_to_concept_map", ["target_concept_id"]),
    ("fact_relationship", ["fact_id_1"]),
    ("fact_relationship", ["fact_id_2"]),
    ("cohort", ["cohort_definition_id"]),
    ("cohort", ["subject_id"]),
]

# Sequences created by another migration; this one must not create (or drop) them.
# registry.seq_person_id allocates person_ids for registry.person_map.
SEQUENCES_OWNED_ELSEWHERE = {
    "seq_person_id": "2026-11-26-000002_registry (allocates person_id for registry.person_map)",
}

# --------------------------------------------------------------------------------------------
# Identifiers
# --------------------------------------------------------------------------------------------

# PostgreSQL keywords that are reserved (also "reserved, can be function or type"): they must
# be quoted as column names. CDM 5.4 has one: note_nlp."offset".
PG_RESERVED = set("""
all analyse analyze and any array as asc asymmetric authorization binary both case cast check
collate collation column concurrently constraint create cross current_catalog current_date
current_role current_schema current_time current_timestamp current_user default deferrable
desc distinct do else end except false fetch for foreign freeze from full grant group having
ilike in initially inner intersect into is isnull join lateral leading left like limit
localtime localtimestamp natural not notnull null offset on only or order outer overlaps
placing primary references returning right select session_user similar some symmetric
system_user table tablesample then to trailing true union unique user using variadic verbose
when where window with
""".split())

RUST_KEYWORDS = set("""
as break const continue crate else enum extern false fn for if impl in let loop match mod move
mut pub ref return self Self static struct super trait true type unsafe use where while async
await dyn abstract become box do final macro override priv typeof unsized virtual yield try gen
""".split())

# Names the diesel table! macro itself defines inside each table module.
DIESEL_RESERVED = {"table", "star", "all_columns", "columns", "dsl", "is_nullable", "SqlType"}

IDENT_RE = re.compile(r"^[a-z_][a-z0-9_]*$")


def sql_ident(name):
    if IDENT_RE.match(name) and name not in PG_RESERVED:
        return name
    return '"' + name.replace('"', '""') + '"'


def rust_column_name(table, column):
    """(rust identifier, sql_name or None) for a column of `table`."""
    if column in RUST_KEYWORDS or column in DIESEL_RESERVED or column == table:
        return column + "_", column
    return column, None


# --------------------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------------------

TYPE_RE = re.compile(r"^(integer|numeric|date|timestamp|text|varchar\((\d+)\))$")
DIESEL_TYPES = {"integer": "Int4", "numeric": "Numeric", "date": "Date",
                "timestamp": "Timestamp", "text": "Text"}
EXPECTED_HEADER = ["table", "column", "type", "nullable", "primary_key", "distribution_hint"]


class Column:
    def __init__(self, table, name, sql_type, not_null, pk, line):
        self.table, self.name, self.sql_type = table, name, sql_type
        self.not_null, self.pk, self.line = not_null, pk, line

    @property
    def diesel_type(self):
        base = "Varchar" if self.sql_type.startswith("varchar(") else DIESEL_TYPES[self.sql_type]
        return base if self.not_null else "Nullable<%s>" % base


def fail(msg):
    sys.exit("%s: error: %s" % (GENERATOR, msg))


def read_tsv(path):
    """OrderedDict table -> [Column], tables in order of first appearance, columns in file order."""
    tables = OrderedDict()
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows or [c.strip() for c in rows[0]] != EXPECTED_HEADER:
        fail("%s: header must be %s" % (path, "\t".join(EXPECTED_HEADER)))
    last_table = None
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(EXPECTED_HEADER):
            fail("%s:%d: expected %d fields, got %d" % (path, lineno, len(EXPECTED_HEADER), len(row)))
        table, name, sql_type, nullable, pk = (c.strip() for c in row[:5])
        for what, ident in (("table", table), ("column", name)):
            if not IDENT_RE.match(ident):
                fail("%s:%d: bad %s name %r" % (path, lineno, what, ident))
        if not TYPE_RE.match(sql_type):
            fail("%s:%d: unsupported type %r" % (path, lineno, sql_type))
        if nullable not in ("NULL", "NOT NULL"):
            fail("%s:%d: nullable must be NULL or NOT NULL, got %r" % (path, lineno, nullable))
        if pk not in ("", "PK"):
            fail("%s:%d: primary_key must be empty or PK, got %r" % (path, lineno, pk))
        if pk and nullable != "NOT NULL":
            fail("%s:%d: primary key column %s.%s is nullable" % (path, lineno, table, name))
        if table in tables and table != last_table:
            fail("%s:%d: rows of table %s are not contiguous" % (path, lineno, table))
        cols = tables.setdefault(table, [])
        if any(c.name == name for c in cols):
            fail("%s:%d: duplicate column %s.%s" % (path, lineno, table, name))
        cols.append(Column(table, name, sql_type, nullable == "NOT NULL", pk == "PK", lineno))
        last_table = table
    if not tables:
        fail("%s: no rows" % path)
    return tables


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------

def pk_columns(cols):
    return [c.name for c in cols if c.pk]


def diesel_key(table, cols):
    """(key columns, is_natural_key)."""
    pk = pk_columns(cols)
    if pk:
        if table in NATURAL_KEYS:
            fail("table %s has a primary key in the TSV but also a NATURAL_KEYS entry" % table)
        return pk, False
    key = NATURAL_KEYS.get(table, [cols[0].name])
    names = {c.name for c in cols}
    for k in key:
        if k not in names:
            fail("natural key column %s.%s is not in the TSV" % (table, k))
    return key, True


def index_name(table, columns):
    name = "idx_%s_%s" % (table, "_".join(columns))
    if len(name) > PG_MAX_IDENTIFIER:
        fail("index name %s is longer than %d bytes" % (name, PG_MAX_IDENTIFIER))
    return name


def plan_indexes(tables):
    """[(name, table, [columns])] in a stable order, without duplicates or PK copies."""
    wanted = []  # (table, [columns])
    for table, cols in tables.items():
        names = [c.name for c in cols]
        # person_id everywhere
        if "person_id" in names:
            wanted.append((table, ["person_id"]))
        # main domain concepts
        for col in MAIN_CONCEPT_COLUMNS.get(table, []):
            if col not in names:
                fail("main concept column %s.%s is not in the TSV" % (table, col))
            if (not col.endswith("_concept_id") or col.endswith(EXCLUDED_CONCEPT_SUFFIXES)
                    or col in EXCLUDED_CONCEPT_COLUMNS):
                fail("%s.%s is not a main domain concept column" % (table, col))
            wanted.append((table, [col]))
        # event start dates and main event dates
        for c in cols:
            if (c.name.endswith("_start_date") and c.name not in NOT_EVENT_START_DATES
                    and c.sql_type == "date"):
                wanted.append((table, [c.name]))
        if table in MAIN_EVENT_DATE_COLUMNS:
            col = MAIN_EVENT_DATE_COLUMNS[table]
            if col not in names:
                fail("main event date column %s.%s is not in the TSV" % (table, col))
            wanted.append((table, [col]))
    for table, icols in EXTRA_INDEXES:
        if table not in tables:
            fail("extra index on unknown table %s" % table)
        names = {c.name for c in tables[table]}
        for col in icols:
            if col not in names:
                fail("extra index column %s.%s is not in the TSV" % (table, col))
        wanted.append((table, list(icols)))
    for table in CLINICAL_EVENT_TABLES + list(MAIN_CONCEPT_COLUMNS) + list(MAIN_EVENT_DATE_COLUMNS):
        if table not in tables:
            fail("table %s named in the index policy is not in the TSV" % table)

    out, seen, skipped = [], set(), []
    for table, icols in wanted:
        key = (table, tuple(icols))
        if key in seen:
            continue
        seen.add(key)
        if icols == pk_columns(tables[table]):
            skipped.append("%s(%s)" % (table, ", ".join(icols)))  # the PK index already serves
            continue
        out.append((index_name(table, icols), table, icols))
    names = [n for n, _, _ in out]
    if len(names) != len(set(names)):
        fail("index names collide")
    return out, skipped


def plan_sequences(tables):
    """[(sequence name, table)] for every table with an integer single-column PK,
    and [(sequence name, owner)] for those left to another migration."""
    out, elsewhere = [], []
    for table, cols in tables.items():
        pk = [c for c in cols if c.pk]
        if len(pk) == 1 and pk[0].sql_type == "integer":
            seq = "seq_%s_id" % table
            if len(seq) > PG_MAX_IDENTIFIER:
                fail("sequence name %s too long" % seq)
            if seq in SEQUENCES_OWNED_ELSEWHERE:
                elsewhere.append((seq, SEQUENCES_OWNED_ELSEWHERE[seq]))
            else:
                out.append((seq, table))
    return out, elsewhere


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------

def sql_header(what):
    return [
        "-- %s of the OMOP CDM 5.4 schema `cdm`." % what,
        "-- GENERATED by %s from the OHDSI CDM 5.4 DDL column list" % GENERATOR,
        "-- (tests/data/cdm54_columns.tsv). Do not edit by hand: change the generator or the list,",
        "-- then run `python3 %s` from the repository root." % GENERATOR,
    ]


def gen_up_sql(tables, indexes, sequences, seq_elsewhere):
    n_cols = sum(len(c) for c in tables.values())
    out = sql_header("Up migration")
    out += [
        "--",
        "-- %d tables, %d columns; primary keys exactly as in the CDM DDL (constraints xpk_<table>);" % (len(tables), n_cols),
        "-- no other keys and no foreign keys (rows are bulk-loaded and vocabularies replaced",
        "-- wholesale); %d indexes idx_<table>_<columns> for research queries and vocabulary look-ups." % len(indexes),
        "",
        "CREATE SCHEMA %s;" % SCHEMA,
        "COMMENT ON SCHEMA %s IS 'OMOP CDM 5.4 (OHDSI): clinical data, health-system data, standardized "
        "vocabularies, derived eras, oncology episodes and the medical-imaging extension. "
        "Generated by %s. Pseudonymised: no identifying values.';" % (SCHEMA, GENERATOR),
        "",
    ]
    for table, cols in tables.items():
        width = max(len(sql_ident(c.name)) for c in cols)
        tw = max(len(c.sql_type) for c in cols)
        lines = []
        for c in cols:
            line = "    %-*s %-*s %s" % (width, sql_ident(c.name), tw, c.sql_type,
                                           "NOT NULL" if c.not_null else "")
            lines.append(line.rstrip())
        pk = pk_columns(cols)
        if pk:
            lines.append("    CONSTRAINT xpk_%s PRIMARY KEY (%s)" % (table, ", ".join(sql_ident(p) for p in pk)))
        out.append("CREATE TABLE %s.%s (" % (SCHEMA, table))
        out.append(",\n".join(lines))
        out.append(");")
        out.append("")
    out.append("-- Indexes.")
    for name, table, icols in indexes:
        out.append("CREATE INDEX %s ON %s.%s (%s);" % (name, SCHEMA, table, ", ".join(sql_ident(c) for c in icols)))
    out += [
        "",
        "-- Sequences allocating cdm row ids (one per table with an integer single-column primary key).",
        "-- Schema `registry` is shared with a later migration, hence IF NOT EXISTS.",
        "CREATE SCHEMA IF NOT EXISTS %s;" % SEQ_SCHEMA,
    ]
    for seq, table in sequences:
        if table == "concept":
            # Local (site) concepts live at 2,000,000,000 and above, clear of OHDSI's ids.
            out.append(
                "CREATE SEQUENCE %s.%s AS integer MINVALUE 2000000000 START WITH 2000000000;"
                % (SEQ_SCHEMA, seq)
            )
        else:
            out.append("CREATE SEQUENCE %s.%s AS integer;" % (SEQ_SCHEMA, seq))
    for seq, owner in seq_elsewhere:
        out.append("-- %s.%s is created by migration %s." % (SEQ_SCHEMA, seq, owner))
    return "\n".join(out) + "\n"


def gen_down_sql(sequences, seq_elsewhere):
    out = sql_header("Down migration")
    out += [
        "--",
        "-- Schema `registry` is dropped last, without CASCADE: by then every later migration that",
        "-- put objects in it has been reverted, so it is empty (or the drop fails loudly).",
        "",
    ]
    for seq, _ in reversed(sequences):
        out.append("DROP SEQUENCE IF EXISTS %s.%s;" % (SEQ_SCHEMA, seq))
    for seq, owner in seq_elsewhere:
        out.append("-- %s.%s is dropped by migration %s." % (SEQ_SCHEMA, seq, owner.split(" ")[0]))
    out += ["", "DROP SCHEMA %s CASCADE;" % SCHEMA, "DROP SCHEMA IF EXISTS %s;" % SEQ_SCHEMA]
    return "\n".join(out) + "\n"


def gen_cdm_rs(tables):
    out = [
        "//! OMOP CDM 5.4 tables (schema `cdm`). Generated by schema/gen/gen_cdm.py; do not edit by hand.",
        "//!",
        "//! Source: the OHDSI CDM 5.4 DDL column list `tests/data/cdm54_columns.tsv`; the SQL side is",
        "//! `migrations/2026-11-26-000001_cdm/up.sql`, generated from the same list. SQL `varchar(n)`",
        "//! columns are `Varchar` (an alias of diesel's `Text`; the length is in each column's doc).",
        "//! Tables without a primary key in CDM 5.4 use their natural key as the diesel key; that key",
        "//! is not enforced by the database.",
        "",
    ]
    for table, cols in tables.items():
        key, natural = diesel_key(table, cols)
        key_rs = [rust_column_name(table, k)[0] for k in key]
        if natural:
            out.append("// no primary key in CDM 5.4; diesel key = natural key")
        out.append("diesel::table! {")
        out.append("    /// `cdm.%s`%s" % (table, " (no primary key in CDM 5.4)" if natural else ""))
        out.append("    %s.%s (%s) {" % (SCHEMA, table, ", ".join(key_rs)))
        for c in cols:
            rust_name, sql_name = rust_column_name(table, c.name)
            out.append("        /// `%s%s`" % (c.sql_type, " NOT NULL" if c.not_null else ""))
            if sql_name:
                out.append('        #[sql_name = "%s"]' % sql_name)
            out.append("        %s -> %s," % (rust_name, c.diesel_type))
        out.append("    }")
        out.append("}")
        out.append("")
    out.append("diesel::allow_tables_to_appear_in_same_query!(")
    for table in tables:
        out.append("    %s," % table)
    out.append(");")
    return "\n".join(out) + "\n"


def gen_cdm_columns_rs(tables):
    out = [
        "//! Generated by schema/gen/gen_cdm.py: every diesel column of crate::cdm, described through its diesel type.",
        "",
        "use crate::introspect::{describe, ColumnInfo};",
        "",
        "/// Every column of every `cdm` table, tables and columns in CDM DDL order.",
        "pub fn columns() -> Vec<ColumnInfo> {",
        "    vec![",
    ]
    for table, cols in tables.items():
        for c in cols:
            rust_name, _ = rust_column_name(table, c.name)
            line = '        describe::<crate::cdm::%s::%s>("%s"),' % (table, rust_name, table)
            if len(line) > RUSTFMT_MAX_WIDTH:  # wrap as rustfmt does, so `cargo fmt --check` passes
                line = ('        describe::<crate::cdm::%s::%s>(\n            "%s",\n        ),'
                        % (table, rust_name, table))
            out.append(line)
    out += ["    ]", "}"]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="do not write; exit 1 if any generated file differs from its committed copy")
    args = ap.parse_args()

    tables = read_tsv(TSV)
    for table, cols in tables.items():
        if len(cols) > 32:
            fail("table %s has %d columns; diesel is built with 32-column-tables" % (table, len(cols)))
    indexes, skipped_indexes = plan_indexes(tables)
    sequences, seq_elsewhere = plan_sequences(tables)

    outputs = [
        (MIGRATION_DIR / "up.sql", gen_up_sql(tables, indexes, sequences, seq_elsewhere)),
        (MIGRATION_DIR / "down.sql", gen_down_sql(sequences, seq_elsewhere)),
        (CDM_RS, gen_cdm_rs(tables)),
        (CDM_COLUMNS_RS, gen_cdm_columns_rs(tables)),
    ]
    stale = []
    for path, text in outputs:
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print("wrote %s" % path.relative_to(REPO))
    n_cols = sum(len(c) for c in tables.values())
    print("%d tables, %d columns, %d indexes, %d sequences (%s left to another migration)"
          % (len(tables), n_cols, len(indexes), len(sequences),
             ", ".join(s for s, _ in seq_elsewhere) or "none"))
    if skipped_indexes:
        print("index not created (the primary key index covers it): %s" % ", ".join(skipped_indexes))
    if stale:
        for path in stale:
            print("stale: %s" % path.relative_to(REPO), file=sys.stderr)
        print("run `python3 %s` and commit the result" % GENERATOR, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
