#!/usr/bin/env bash
# The import pipeline (decode, parse, records, pseudonymise, map, binary COPY with lineage) on
# the synthetic laboratory export, side by side with a bare `psql \copy` of the same rows
# already shaped into cdm.measurement's columns, interleaved, ROUNDS rounds (best and median).
# Each round also times a re-run of the unchanged file and a re-export of the same file with
# 1% of its records changed (the mapping has a record key: only those records are replaced).
#
# Usage: bench/import.sh [PATIENTS] [ROUNDS]   (10000 patients ~ 1,000,000 rows; 3 rounds)
# Needs a PostgreSQL server: DATABASE_URL (a maintenance database URL) or 127.0.0.1:5432.
set -euo pipefail
cd "$(dirname "$0")/.."
PATIENTS=${1:-10000}
ROUNDS=${2:-3}
OUT=bench/out/import
SERVER=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB=registrar_bench_import
BIN=target/release/registrar
cargo build --release -q -p registrar-etl
rm -rf "$OUT"; mkdir -p "$OUT/drop"
$BIN synth --patients "$PATIENTS" --seed 1 --out "$OUT/src" --no-dicom >/dev/null
FILE="$OUT/drop/measurements.csv"
ROWS=$(($(wc -l < "$OUT/src/his/measurements.csv") - 1))
# The re-export: the same file with the value of every 100th record changed.
python3 - "$OUT/src/his/measurements.csv" "$OUT/changed.csv" <<'PY'
import sys
src, dst = sys.argv[1:]
with open(src, "rb") as f, open(dst, "wb") as o:
    for i, line in enumerate(f):
        if i > 0 and i % 100 == 0:
            fields = line.rstrip(b"\r\n").split(b";")
            fields[3] = fields[3] + b"1" if b"," in fields[3] else fields[3] + b",5"
            line = b";".join(fields) + b"\r\n"
        o.write(line)
PY
URL="${SERVER%/*}/$DB"
$BIN key new --out "$OUT/bench.key" >/dev/null
IMPORT=($BIN --database-url "$URL" --key-file "$OUT/bench.key" --json import csv
  --root "$OUT/drop" --mapping mappings/hospital/measurements.toml "$FILE")
# Time a command (its exit code does not matter here: rejects give 1).
t() { /usr/bin/time -f "%e %M" -o "$OUT/time" "$@" || true; read -r secs kb < <(tail -n1 "$OUT/time"); }
import() { t "${IMPORT[@]}"; }
fresh() { psql -q "$SERVER" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB";
          $BIN --database-url "$URL" db migrate >/dev/null; }

: > "$OUT/rounds.tsv"
for r in $(seq 1 "$ROUNDS"); do
  fresh
  cp "$OUT/src/his/measurements.csv" "$FILE"
  import > "$OUT/first.json"; PIPE=$secs; KB=$kb
  import > "$OUT/unchanged.json"; RERUN=$secs
  cp "$OUT/changed.csv" "$FILE"
  import > "$OUT/changed.json"; CHANGED=$secs
  python3 - "$OUT/changed.json" <<'PY'
import json, sys
f = json.load(open(sys.argv[1]))["files"][0]
print(f"  re-export: {f['records_updated']} updated, {f['records_unchanged']} unchanged, {f['records_added']} added")
PY
  # The bare peer: the same rows, already shaped, loaded by psql \copy into a table with the
  # same columns and indexes.
  psql -q "$URL" -c "\copy (SELECT * FROM cdm.measurement) TO '$OUT/shaped.tsv'"
  psql -q "$URL" -c "CREATE TABLE cdm.measurement_bare (LIKE cdm.measurement INCLUDING ALL)"
  t psql -q "$URL" -c "\copy cdm.measurement_bare FROM '$OUT/shaped.tsv'"; BARE=$secs
  LOADED=$(psql -Atq "$URL" -c "SELECT count(*) FROM cdm.measurement")
  echo -e "$PIPE\t$KB\t$RERUN\t$CHANGED\t$BARE\t$LOADED" >> "$OUT/rounds.tsv"
  echo "round $r: pipeline ${PIPE}s, unchanged ${RERUN}s, 1% changed ${CHANGED}s, psql \\copy ${BARE}s"
done

python3 - "$ROWS" "$OUT/rounds.tsv" <<'PY'
import statistics, sys
rows = int(sys.argv[1])
r = [list(map(float, l.split("\t"))) for l in open(sys.argv[2]) if l.strip()]
pipe, kb, rerun, changed, bare, loaded = zip(*r)
best = lambda v: min(v)
med = statistics.median
print(f"rows in file                 {rows:>12,}   rows loaded {int(loaded[0]):,}")
for name, f in (("best", best), ("median", med)):
    p, b = f(pipe), f(bare)
    print(f"[{name}] registrar import      {p:>8.2f} s  {rows/p:>12,.0f} rows/s  peak RSS {max(kb)/1024:.0f} MB")
    print(f"[{name}] psql \\copy (bare)     {b:>8.2f} s  {loaded[0]/b:>12,.0f} rows/s")
    print(f"[{name}] pipeline / bare rate  {(rows/p)/(loaded[0]/b):>11.0%}   (goal >= 60%)")
    print(f"[{name}] re-run, unchanged     {f(rerun):>8.2f} s  = {f(rerun)/p:.1%} of the first load")
    print(f"[{name}] re-export, 1% changed {f(changed):>8.2f} s  = {f(changed)/p:.1%} of the first load (goal <= 10%)")
PY
psql -q "$SERVER" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
