#!/usr/bin/env bash
# Issue 22 benchmark: `registrar dicom index` with masks, inter-observer agreement and
# dose-volume metrics, side by side with the index as it was before them (OLD_BIN, a release
# build of an earlier commit: `git worktree add /tmp/old b72aa0e && (cd /tmp/old &&
# CARGO_TARGET_DIR=/tmp/old-target cargo build --release -p registrar-etl)`), on the demo's
# radiotherapy sets (the second institution: 200 patients, seed 2027, 54 CT slices of 160x160,
# 3 mm). Each round indexes the same pseudonymised tree into a fresh database with each binary
# (interleaved); the median of ROUNDS (default 3) is reported, and the new index's peak
# resident memory.
# Usage: OLD_BIN=/tmp/old-target/release/registrar bench/imaging.sh
# Needs PostgreSQL (DATABASE_URL or :5432).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$(realpath -m bench/out/imaging)
SERVER=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
BIN=$PWD/target/release/registrar
OLD_BIN=${OLD_BIN:?set OLD_BIN to a release build of the index before issue 22}
ROUNDS=${ROUNDS:-3}
cargo build --release -q -p registrar-etl
rm -rf "$OUT"; mkdir -p "$OUT"
$BIN synth --patients 200 --seed 2027 --first-patient-number 100001 --dicom-slices 54 \
  --dicom-matrix 160 --out "$OUT/src" >/dev/null
$BIN key new --out "$OUT/k" >/dev/null
URL0="${SERVER%/*}/registrar_bench_imaging_tree"
psql -q "$SERVER" -c "DROP DATABASE IF EXISTS registrar_bench_imaging_tree WITH (FORCE)" \
  -c "CREATE DATABASE registrar_bench_imaging_tree"
# The audit log needs a registry: pseudonymise once, index the same tree every round.
DATABASE_URL=$URL0 $BIN --key-file "$OUT/k" dicom pseudonymise --in "$OUT/src/dicom" \
  --out "$OUT/tree" >/dev/null
echo "tree: $(find "$OUT/tree" -name '*.dcm' | wc -l) files, $(du -sh "$OUT/tree" | cut -f1)"

now() { date +%s.%N; }
run() { # binary label round
  local db=registrar_bench_imaging_$2_$3
  psql -q "$SERVER" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
  local url="${SERVER%/*}/$db"
  DATABASE_URL=$url $1 --key-file "$OUT/k" import csv --mapping mappings/hospital/patients.toml \
    "$OUT/src/his/patients.csv" >/dev/null
  local t0 t1
  t0=$(now)
  DATABASE_URL=$url /usr/bin/time -f "%M" -o "$OUT/$2_$3.rss" $1 --json --key-file "$OUT/k" \
    dicom index --in "$OUT/tree" > "$OUT/$2_$3.json"
  t1=$(now)
  echo "$2 $(echo "$t1 - $t0" | bc)" >> "$OUT/times"
  psql -q "$SERVER" -c "DROP DATABASE $db WITH (FORCE)"
}
: > "$OUT/times"
for r in $(seq 1 "$ROUNDS"); do
  run "$OLD_BIN" old "$r"
  run "$BIN" new "$r"
done
median() { grep "^$1 " "$OUT/times" | awk '{print $2}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
OLD=$(median old); NEW=$(median new)
python3 - "$OUT" "$OLD" "$NEW" <<'EOF'
import json, sys, glob
out, old, new = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
v = json.load(open(sorted(glob.glob(out + "/new_*.json"))[0]))
rss = max(int(open(f).read().split()[-1]) for f in glob.glob(out + "/new_*.rss"))
rss_old = max(int(open(f).read().split()[-1]) for f in glob.glob(out + "/old_*.rss"))
print(f"index before issue 22 (median): {old:8.2f} s   peak RSS {rss_old / 1024:7.1f} MiB")
print(f"index with masks and metrics:   {new:8.2f} s   peak RSS {rss / 1024:7.1f} MiB")
print(f"ratio new / old: {new / old:.2f}  (goal <= 2)")
print(f"agreement pairs {v['agreement_pairs']}, dose-volume rows {v['dose_volumes']}, "
      f"unmeasured {v['agreement_unmeasured']} {v['dose_unmeasured']}")
EOF
psql -q "$SERVER" -c "DROP DATABASE registrar_bench_imaging_tree WITH (FORCE)"
