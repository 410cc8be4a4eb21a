#!/usr/bin/env bash
# Issue 5 benchmark: the full import pipeline (decode, parse, pseudonymise, map, binary COPY
# with lineage) on the synthetic 1,000,000-row laboratory export, side by side with a bare
# `psql \copy` of the same rows already shaped into cdm.measurement's columns, in one run.
# Also: a re-run with the file unchanged, and the pipeline's peak memory.
#
# Usage: bench/import.sh [PATIENTS]   (10000 patients ~ 1,000,000 rows)
# Needs a PostgreSQL server: DATABASE_URL (a maintenance database URL) or 127.0.0.1:5432.
set -euo pipefail
cd "$(dirname "$0")/.."
PATIENTS=${1:-10000}
OUT=bench/out/import
SERVER=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB=registrar_bench_import
BIN=target/release/registrar
cargo build --release -q -p registrar-etl
rm -rf "$OUT"; mkdir -p "$OUT"
$BIN synth --patients "$PATIENTS" --seed 1 --out "$OUT/src" >/dev/null
FILE="$OUT/src/his/measurements.csv"
ROWS=$(($(wc -l < "$FILE") - 1))
URL="${SERVER%/*}/$DB"
psql -q "$SERVER" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
$BIN --database-url "$URL" db migrate >/dev/null
$BIN key new --out "$OUT/bench.key" >/dev/null

t() { /usr/bin/time -f "%e %M" -o "$OUT/time" "$@"; read -r secs kb < "$OUT/time"; }

t $BIN --database-url "$URL" --key-file "$OUT/bench.key" --json import csv \
  --mapping mappings/hospital/measurements.toml "$FILE" > "$OUT/first.json" || true
PIPE_S=$secs; PIPE_KB=$kb
LOADED=$(psql -Atq "$URL" -c "SELECT count(*) FROM cdm.measurement")

t $BIN --database-url "$URL" --key-file "$OUT/bench.key" --json import csv \
  --mapping mappings/hospital/measurements.toml "$FILE" > "$OUT/second.json" || true
RERUN_S=$secs

# The bare peer: the same rows, already shaped, loaded by psql \copy into a table with the
# same columns and indexes.
psql -q "$URL" -c "\copy (SELECT * FROM cdm.measurement) TO '$OUT/shaped.tsv'"
psql -q "$URL" -c "CREATE TABLE cdm.measurement_bare (LIKE cdm.measurement INCLUDING ALL)"
t psql -q "$URL" -c "\copy cdm.measurement_bare FROM '$OUT/shaped.tsv'"
BARE_S=$secs

python3 - "$ROWS" "$LOADED" "$PIPE_S" "$PIPE_KB" "$RERUN_S" "$BARE_S" <<'PY'
import sys
rows, loaded, pipe, kb, rerun, bare = int(sys.argv[1]), int(sys.argv[2]), *map(float, sys.argv[3:])
print(f"rows in file                 {rows:>12,}")
print(f"rows loaded                  {loaded:>12,}")
print(f"registrar import (pipeline)  {pipe:>9.2f} s  {rows/pipe:>12,.0f} rows/s  peak RSS {kb/1024:.0f} MB")
print(f"psql \\copy (bare, shaped)   {bare:>9.2f} s  {loaded/bare:>12,.0f} rows/s")
print(f"pipeline / bare rate         {(rows/pipe)/(loaded/bare):>12.0%}   (goal >= 50%)")
print(f"re-run, file unchanged       {rerun:>9.2f} s  = {rerun/pipe:.1%} of the first run (goal <= 5%)")
PY
psql -q "$SERVER" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
