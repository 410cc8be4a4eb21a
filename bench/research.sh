#!/usr/bin/env bash
# Issue 24 benchmark: the research layer at 1k, 10k and 50k patients (or the sizes given).
# Per size: a synthetic institution (HIS CSV export and study workbook) loaded by a first
# nightly; then, each the median of 5 runs in one psql session (client-side \timing):
#   the pillar count, the full select and the per-person query on research.modeling_cohort;
# then `registrar check`, `cohort export modeling_cohort --format parquet`, `federation
# publish --force` (best of 3), and a nightly after 1% of the patients' ER results changed
# (its research mart refresh against the whole night). Up to OLD_MAX patients (default
# 10000) the same three queries run on the views as they were before the marts, side by side.
# Ends with a table and the growth from each size to the next.
# Usage: bench/research.sh [SIZES...]   (default: 1000 10000 50000; KEEP=1 keeps the databases).
# Needs PostgreSQL (DATABASE_URL or :5432).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=("$@")
[ ${#SIZES[@]} -eq 0 ] && SIZES=(1000 10000 50000)
OUT=$(realpath -m bench/out/research)
SERVER=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
BIN=$PWD/target/release/registrar
cargo build --release -q -p registrar-etl
rm -rf "$OUT"; mkdir -p "$OUT"
RESULTS="$OUT/results.tsv"
: > "$RESULTS"

# median of the \timing lines psql printed (milliseconds)
median_ms() { grep -o 'Time: [0-9.]*' | awk '{print $2}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }

for N in "${SIZES[@]}"; do
  DB=registrar_bench_research_$N
  D="$OUT/$N"
  mkdir -p "$D"
  psql -q "$SERVER" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
  URL="${SERVER%/*}/$DB"
  $BIN synth --patients "$N" --seed 1 --out "$D/src" --no-dicom >/dev/null
  $BIN key new --out "$D/k" >/dev/null
  {
    printf '[registry]\ndatabase_url = "%s"\nkey_file = "k"\nreport_dir = "reports"\n\n' "$URL"
    # the patterns of demo::his_pattern (the archive's patients, the dated pathology exports)
    for t in patients diagnoses pathology tnm surgery systemic_therapy radiotherapy recurrences deaths measurements; do
      case $t in patients) pat='**/patients.csv';; pathology) pat='pathology*.csv';; *) pat="$t.csv";; esac
      printf '[[source]]\nname = "his-%s"\nkind = "csv"\nfolder = "src/his"\npattern = "%s"\nmapping = "%s/mappings/hospital/%s.toml"\n\n' "$t" "$pat" "$PWD" "$t"
    done
    for s in study_neoadj-2019 study_rt-boost; do
      printf '[[source]]\nname = "%s"\nkind = "xlsx"\nfolder = "src/study"\npattern = "*.xlsx"\nmapping = "%s/mappings/hospital/%s.toml"\n\n' "$s" "$PWD" "$s"
    done
  } > "$D/registrar.toml"
  DATABASE_URL=$URL $BIN vocab load >/dev/null
  T0=$(now)
  (cd "$D" && $BIN --json nightly --config registrar.toml > first.json) || true
  T1=$(now)
  first=$(echo "$T1 - $T0" | bc)
  DATABASE_URL=$URL $BIN federation configure --node-id bench >/dev/null
  P=$(psql -At "$URL" -c "SELECT person_id FROM research.modeling_cohort ORDER BY person_id OFFSET $((N / 2)) LIMIT 1")
  q() { # the median of 5 runs of one query, in one session
    { echo '\o /dev/null'; echo '\timing on'; for _ in 1 2 3 4 5; do echo "$1;"; done; } \
      | psql -X -q "$URL" 2>&1 | median_ms
  }
  pillar=$(q "SELECT pillar, count(*) FROM research.modeling_cohort GROUP BY 1")
  full=$(q "SELECT * FROM research.modeling_cohort")
  one=$(q "SELECT * FROM research.modeling_cohort WHERE person_id = $P")
  # The peer: the views as they were before the marts (migration *_omop_semantics, kept in
  # mart.superseded_view), computed from cdm on every query; up to OLD_MAX patients.
  old_pillar=nan; old_full=nan; old_one=nan
  if [ "$N" -le "${OLD_MAX:-10000}" ]; then
    psql -q "$URL" <<'SQL'
CREATE SCHEMA bench_old;
DO $$
DECLARE v record; d text; n text;
BEGIN
  FOR v IN SELECT * FROM mart.superseded_view ORDER BY ordinal LOOP
    d := v.definition;
    FOR n IN SELECT name FROM mart.superseded_view LOOP
      d := regexp_replace(d, '\mresearch\.' || n || '\M', 'bench_old.' || n, 'g');
    END LOOP;
    EXECUTE format('CREATE VIEW bench_old.%I AS %s', v.name, d);
  END LOOP;
END $$;
SQL
    q3() { { echo '\o /dev/null'; echo '\timing on'; for _ in 1 2 3; do echo "$1;"; done; } \
      | psql -X -q "$URL" 2>&1 | median_ms; }
    old_pillar=$(q3 "SELECT pillar, count(*) FROM bench_old.modeling_cohort GROUP BY 1")
    old_full=$(q3 "SELECT * FROM bench_old.modeling_cohort")
    old_one=$(q3 "SELECT * FROM bench_old.modeling_cohort WHERE person_id = $P")
  fi
  S=$(now); DATABASE_URL=$URL $BIN check --out "$D/check.txt" >/dev/null || true; E=$(now)
  check=$(echo "$E - $S" | bc)
  S=$(now); DATABASE_URL=$URL $BIN cohort export modeling_cohort --format parquet --out "$D/cohort.parquet" >/dev/null; E=$(now)
  parquet=$(echo "$E - $S" | bc)
  release=
  for _ in 1 2 3; do
    S=$(now); DATABASE_URL=$URL $BIN federation publish --force >/dev/null; E=$(now)
    t=$(echo "$E - $S" | bc)
    if [ -z "$release" ] || [ "$(echo "$t < $release" | bc)" = 1 ]; then release=$t; fi
  done
  # 1% of the patients: their ER results in the final pathology export become 0 %
  python3 - "$D/src/his" "$N" <<'PY'
import glob, sys
his, n = sys.argv[1], int(sys.argv[2])
path = sorted(glob.glob(f"{his}/pathology*.csv"))[-1]
data = open(path, "rb").read().decode("latin-1").split("\r\n")
head = [h.strip('"') for h in data[0].split(";")]
code, result, patient = head.index("lab_code"), head.index("result"), head.index("patient_nr")
want, changed = max(1, n // 100), set()
for i, line in enumerate(data[1:], 1):
    f = line.split(";")
    if len(f) > result and f[code].strip('"') == "ER_PCT" and f[result] not in ("0", "") and \
            (f[patient] in changed or len(changed) < want):
        changed.add(f[patient]); f[result] = "0"; data[i] = ";".join(f)
open(path, "wb").write("\r\n".join(data).encode("latin-1"))
print(f"changed the ER results of {len(changed)} patients", file=sys.stderr)
PY
  T2=$(now)
  (cd "$D" && $BIN --json nightly --config registrar.toml > second.json) || true
  T3=$(now)
  second=$(echo "$T3 - $T2" | bc)
  python3 - "$D" "$N" "$first" "$pillar" "$full" "$one" "$check" "$parquet" "$release" "$second" \
      "$old_pillar" "$old_full" "$old_one" >> "$RESULTS" <<'PY'
import json, sys
d, n, first, pillar, full, one, check, parquet, release, second, op, of, oo = sys.argv[1:]
r1 = json.load(open(f"{d}/first.json"))
r2 = json.load(open(f"{d}/second.json"))
m1, m2 = r1["research_marts"], r2["research_marts"]
print("\t".join(map(str, [n, first, float(pillar) / 1000, float(full) / 1000, float(one), check,
                          parquet, release, second, m2["seconds"], m2["persons"], m1["seconds"],
                          r1["exit_code"], r2["exit_code"],
                          float(op) / 1000, float(of) / 1000, float(oo)])))
PY
  [ -n "${KEEP:-}" ] || psql -q "$SERVER" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
done

python3 - "$RESULTS" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
cols = [("first nightly", 1, "s"), ("pillar count", 2, "s"), ("full select", 3, "s"),
        ("per person", 4, "ms"), ("registrar check", 5, "s"), ("parquet export", 6, "s"),
        ("federation publish", 7, "s"), ("nightly, 1% changed", 8, "s"),
        ("  its mart refresh", 9, "s"),
        ("old views: pillar", 14, "s"), ("old views: full select", 15, "s"),
        ("old views: per person", 16, "ms")]
print(f"{'patients':<24}" + "".join(f"{r[0]:>12}" for r in rows)
      + "".join(f"{rows[i+1][0] + '/' + rows[i][0]:>14}" for i in range(len(rows) - 1)))
for name, i, unit in cols:
    vals = [float(r[i]) for r in rows]
    line = f"{name + ' (' + unit + ')':<24}" + "".join(f"{v:>12.3f}" for v in vals)
    line += "".join(f"{(vals[k+1] / vals[k] if vals[k] else float('nan')):>13.1f}x" for k in range(len(vals) - 1))
    print(line)
for r in rows:
    if r[14] != "nan":
        print(f"{r[0]} patients, old views / marts: pillar count {float(r[14]) / float(r[2]):.0f}x, "
              f"full select {float(r[15]) / float(r[3]):.0f}x, per person {float(r[16]) / float(r[4]):.0f}x")
    print(f"{r[0]} patients: the 1% nightly recomputed {r[10]} persons; its mart refresh was "
          f"{float(r[9]) / float(r[8]):.1%} of the night (goal <= 10%); first-night refresh {float(r[11]):.2f} s; "
          f"exit codes {r[12]}, {r[13]}")
PY
