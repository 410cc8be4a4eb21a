#!/usr/bin/env bash
# Issue 9 benchmark: an end-to-end nightly for N synthetic patients (HIS CSV export and study
# workbook) plus a second institution of B patients (FHIR Bulk Data export and DICOM RT
# sets), total time and per-source split, then a second night with nothing changed (goal: at
# most 5% of the first).
# Usage: bench/nightly.sh [PATIENTS] [SECOND]   (defaults 10000, 1000).
# Needs PostgreSQL (DATABASE_URL or :5432).
set -euo pipefail
cd "$(dirname "$0")/.."
PATIENTS=${1:-10000}
SECOND=${2:-1000}
OUT=$(realpath -m bench/out/nightly)
SERVER=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB=registrar_bench_nightly
BIN=target/release/registrar
cargo build --release -q -p registrar-etl
rm -rf "$OUT"; mkdir -p "$OUT"
psql -q "$SERVER" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
URL="${SERVER%/*}/$DB"
S0=$(date +%s.%N)
$BIN synth --patients "$PATIENTS" --seed 1 --out "$OUT/src" --no-dicom >/dev/null
$BIN synth --patients "$SECOND" --seed 2 --first-patient-number 500001 --dicom-slices 8 \
  --dicom-matrix 32 --out "$OUT/src-b" >/dev/null
mkdir -p "$OUT/fhir-exports" && mv "$OUT/src-b/fhir" "$OUT/fhir-exports/export-1"
S1=$(date +%s.%N)
$BIN key new --out "$OUT/k" >/dev/null
{
  printf '[registry]\ndatabase_url = "%s"\nkey_file = "k"\nreport_dir = "reports"\n\n' "$URL"
  for t in patients diagnoses pathology tnm surgery systemic_therapy radiotherapy recurrences deaths measurements; do
    printf '[[source]]\nname = "his-%s"\nkind = "csv"\nfolder = "src/his"\npattern = "%s.csv"\nmapping = "%s/mappings/hospital/%s.toml"\n\n' "$t" "$t" "$PWD" "$t"
  done
  for s in study_neoadj-2019 study_rt-boost; do
    printf '[[source]]\nname = "%s"\nkind = "xlsx"\nfolder = "src/study"\npattern = "*.xlsx"\nmapping = "%s/mappings/hospital/%s.toml"\n\n' "$s" "$PWD" "$s"
  done
  printf '[[source]]\nname = "fhir-exports"\nkind = "fhir-bulk"\nfolder = "fhir-exports"\nmappings = ['
  sep=""; for m in patient condition observation procedure medication_administration; do
    printf '%s"%s/mappings/fhir/%s.toml"' "$sep" "$PWD" "$m"; sep=", "; done
  printf ']\n\n[[source]]\nname = "rt-dicom"\nkind = "dicom"\nfolder = "src-b/dicom"\noutput = "dicom-out"\n'
} > "$OUT/registrar.toml"
T0=$(date +%s.%N)
$BIN --json nightly --config "$OUT/registrar.toml" > "$OUT/first.json" || true
T1=$(date +%s.%N)
$BIN --json nightly --config "$OUT/registrar.toml" > "$OUT/second.json" || true
T2=$(date +%s.%N)
python3 - "$OUT" "$S0" "$S1" "$T0" "$T1" "$T2" <<'PY'
import json, sys
out, s0, s1, t0, t1, t2 = sys.argv[1], *map(float, sys.argv[2:])
first = json.load(open(f"{out}/first.json"))
rows = sum(s["rows_in"] for s in first["sources"])
print(f"synth (generation, not part of the night)   {s1-s0:8.2f} s")
print(f"first night                                 {t1-t0:8.2f} s   {rows:,} rows in, exit {first['exit_code']}")
for s in first["sources"]:
    print(f"  {s['name']:<28} {s['duration_ms']/1000:8.2f} s   {s['rows_in']:>10,} rows")
report = first["duration_ms"]/1000 - sum(s["duration_ms"] for s in first["sources"])/1000
print(f"  {'setup + report + checks':<28} {report:8.2f} s")
print(f"second night, nothing changed               {t2-t1:8.2f} s   = {(t2-t1)/(t1-t0):.1%} of the first (goal <= 5%)")
PY
psql -q "$SERVER" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
