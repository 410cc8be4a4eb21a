#!/usr/bin/env bash
# What field expressions cost: the synthetic laboratory export imported with the shipped
# mapping (columns, lookups) and with the same mapping whose date, number and code fields are
# written as expressions giving the same values, interleaved, ROUNDS rounds (best and median),
# each into a fresh database. The two must load the same rows.
#
# Usage: bench/expressions.sh [PATIENTS] [ROUNDS]   (10000 patients ~ 1,000,000 rows; 3 rounds)
# Needs a PostgreSQL server: DATABASE_URL (a maintenance database URL) or 127.0.0.1:5432.
set -euo pipefail
cd "$(dirname "$0")/.."
PATIENTS=${1:-10000}
ROUNDS=${2:-3}
OUT=bench/out/expressions
SERVER=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB=registrar_bench_expr
BIN=target/release/registrar
cargo build --release -q -p registrar-etl
rm -rf "$OUT"; mkdir -p "$OUT/drop"
$BIN synth --patients "$PATIENTS" --seed 1 --out "$OUT/src" --no-dicom >/dev/null
cp "$OUT/src/his/measurements.csv" "$OUT/drop/measurements.csv"
ROWS=$(($(wc -l < "$OUT/drop/measurements.csv") - 1))
# The shipped mapping, and the same with expressions (concept maps resolved from its folder).
cp -r mappings/hospital/concept_maps "$OUT/"
cp mappings/hospital/measurements.toml "$OUT/columns.toml"
sed -e 's/^measurement_date = { column = "sample_date" }/measurement_date = { expr = "date(sample_date)" }/' \
    -e 's/^value_as_number = { column = "value" }/value_as_number = { expr = "number(value) * 1" }/' \
    -e 's/^measurement_source_value = { column = "lab_code" }/measurement_source_value = { expr = "trim(lab_code)" }/' \
    -e 's/^unit_source_value = { column = "unit" }/unit_source_value = { expr = "if(is_empty(unit), null, trim(unit))" }/' \
    mappings/hospital/measurements.toml > "$OUT/expressions.toml"
[ "$(grep -c 'expr =' "$OUT/expressions.toml")" = 4 ] || { echo "the expression variant did not take" >&2; exit 1; }
URL="${SERVER%/*}/$DB"
$BIN key new --out "$OUT/bench.key" >/dev/null
t() { /usr/bin/time -f "%e" -o "$OUT/time" "$@" >/dev/null || true; secs=$(tail -n1 "$OUT/time"); }
run() {
  psql -q "$SERVER" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
  $BIN --database-url "$URL" db migrate >/dev/null
  t $BIN --database-url "$URL" --key-file "$OUT/bench.key" --json import csv \
    --root "$OUT/drop" --mapping "$OUT/$1.toml" "$OUT/drop/measurements.csv"
  psql -Atq "$URL" -c "SELECT count(*), md5(string_agg(concat_ws('|', measurement_concept_id, measurement_date, value_as_number, measurement_source_value, unit_concept_id, unit_source_value), ',' ORDER BY measurement_id)) FROM cdm.measurement" > "$OUT/$1.sum"
}
: > "$OUT/rounds.tsv"
for r in $(seq 1 "$ROUNDS"); do
  run columns; COLS=$secs
  run expressions; EXPR=$secs
  cmp -s "$OUT/columns.sum" "$OUT/expressions.sum" || { echo "the two mappings loaded different rows" >&2; exit 1; }
  echo -e "$COLS\t$EXPR" >> "$OUT/rounds.tsv"
  echo "round $r: columns ${COLS}s, expressions ${EXPR}s ($(cut -d'|' -f1 "$OUT/columns.sum") rows, identical)"
done
python3 - "$ROWS" "$OUT/rounds.tsv" <<'PY'
import statistics, sys
rows = int(sys.argv[1])
cols, expr = zip(*[map(float, l.split("\t")) for l in open(sys.argv[2]) if l.strip()])
for name, f in (("best", min), ("median", statistics.median)):
    c, e = f(cols), f(expr)
    print(f"[{name}] columns {c:.2f} s ({rows/c:,.0f} rows/s), expressions {e:.2f} s: {e/c-1:+.1%} (goal <= +10%)")
PY
psql -q "$SERVER" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
