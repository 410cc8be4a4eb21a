#!/usr/bin/env bash
# Issues 7 and 20 benchmark: resources per second pulled from a local FHIR R4 server
# (sekmet-fhir) and loaded into the registry by `registrar import fhir`, side by side, in one
# run, with a bare paging loop over the same server. The bare loop (Python's urllib doing
# nothing but GET, json.loads and follow `next`) makes the same requests registrar makes:
# GET /metadata, then per type the same search (`_count`, and `_include` where registrar
# asks it: MedicationAdministration:medication, for the mapping's medicationReference), every
# page to the end. Both request counts are printed. Goal: registrar at >= 90% of the bare
# loop's rate, best of three rounds each, interleaved.
#
# Usage: bench/fhir.sh [PATIENTS] [COUNT]     (defaults 300 patients, _count 500)
# Needs: sekmet (SEKMET_BIN, or .ci/venv from .ci/run), PostgreSQL (DATABASE_URL or :5432).
set -euo pipefail
cd "$(dirname "$0")/.."
PATIENTS=${1:-300}
COUNT=${2:-500}
OUT=bench/out/fhir
SERVER=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB=registrar_bench_fhir
BIN=target/release/registrar
SEKMET=${SEKMET_BIN:-.ci/venv/bin/sekmet}
PORT=18655
BASE="http://127.0.0.1:$PORT/fhir"
TYPES="Patient Condition Observation Procedure MedicationAdministration"
cargo build --release -q -p registrar-etl
rm -rf "$OUT"; mkdir -p "$OUT/data"
$BIN synth --patients "$PATIENTS" --seed 1 --out "$OUT/src" --no-dicom >/dev/null
cat > "$OUT/settings.yaml" <<YAML
base_url: $BASE
host: 127.0.0.1
port: $PORT
data_dir: $PWD/$OUT/data
simulator: {enabled: false}
log_inbound: false
validation: {inbound: warn}
YAML
"$SEKMET" serve -c "$OUT/settings.yaml" > "$OUT/server.log" 2>&1 &
SPID=$!
trap 'kill $SPID 2>/dev/null || true' EXIT
until curl -sf "$BASE/metadata" >/dev/null; do sleep 0.2; done

python3 - "$BASE" "$OUT/src/fhir" <<'PY'
import json, sys, glob, urllib.request
base, d = sys.argv[1], sys.argv[2]
res = [json.loads(l) for f in glob.glob(d + "/*.ndjson") for l in open(f) if l.strip()]
for i in range(0, len(res), 2000):
    b = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in res[i:i+2000]]}
    req = urllib.request.Request(base, json.dumps(b).encode(), {"Content-Type": "application/fhir+json"})
    urllib.request.urlopen(req).read()
print(f"loaded {len(res)} resources into the server", file=sys.stderr)
PY

bare() {
python3 - "$BASE" "$COUNT" $TYPES <<'PY'
import json, sys, time, urllib.request
base, count, types = sys.argv[1], sys.argv[2], sys.argv[3:]
include = {"MedicationAdministration": "&_include=MedicationAdministration:medication"}
t0 = time.time(); n = 0; nbytes = 0; requests = 1
json.loads(urllib.request.urlopen(f"{base}/metadata").read())
for t in types:
    url = f"{base}/{t}?_count={count}{include.get(t, '')}"
    while url:
        body = urllib.request.urlopen(url).read(); nbytes += len(body); requests += 1
        b = json.loads(body)
        n += sum(1 for e in b.get("entry", []) if e.get("search", {}).get("mode", "match") == "match")
        url = next((l["url"] for l in b.get("link", []) if l["relation"] == "next"), None)
print(n, time.time() - t0, nbytes, requests)
PY
}

URL="${SERVER%/*}/$DB"
MAPS=""; for m in patient condition observation procedure medication_administration; do MAPS="$MAPS mappings/fhir/$m.toml"; done
$BIN key new --out "$OUT/bench.key" >/dev/null
# Three rounds, each a bare pass then a registrar pull into a fresh registry; the server and
# the machine are shared, so the rounds interleave and the best of each side is compared.
BARES=(); REGS=(); 
for round in 1 2 3; do
  read -r BARE_N s BARE_B BARE_REQ < <(bare); BARES+=("$s")
  psql -q "$SERVER" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" 2>/dev/null
  $BIN --database-url "$URL" db migrate >/dev/null
  /usr/bin/time -f "%e %M" -o "$OUT/time" $BIN --database-url "$URL" --key-file "$OUT/bench.key" --json \
    import fhir --endpoint "$BASE" --count "$COUNT" --mapping $MAPS > "$OUT/first.json" || true
  read -r s REG_KB < "$OUT/time"; REGS+=("$s")
done
REG_N=$(jq '[.mappings[].units[].rows_in] | add' "$OUT/first.json")
# registrar's requests: /metadata and one per page (its units are the pages).
REG_REQ=$(jq '[.mappings[].units | length] | add + 1' "$OUT/first.json")
LOADED=$(jq '[.mappings[].units[].rows_loaded] | add' "$OUT/first.json")
/usr/bin/time -f "%e %M" -o "$OUT/time" $BIN --database-url "$URL" --key-file "$OUT/bench.key" --json \
  import fhir --endpoint "$BASE" --count "$COUNT" --mapping $MAPS > "$OUT/second.json" || true
read -r INC_S _ < "$OUT/time"

python3 - <<PY
bares = [float(x) for x in "${BARES[*]}".split()]; regs = [float(x) for x in "${REGS[*]}".split()]
bare, reg = min(bares), min(regs)
print(f"resources of the 5 mapped types: {$BARE_N} (bare loop) / {$REG_N} pulled by registrar, {$LOADED} loaded rows")
print(f"bare paging loop:  best {bare:6.2f} s  {$BARE_N/bare:8.0f} resources/s  (rounds: {', '.join(f'{x:.2f}' for x in bares)} s; {$BARE_B/1e6:.1f} MB)")
print(f"registrar import:  best {reg:6.2f} s  {$REG_N/reg:8.0f} resources/s  (rounds: {', '.join(f'{x:.2f}' for x in regs)} s; pulled, checked, pseudonymised, mapped, loaded; max RSS {$REG_KB/1024:.0f} MB)")
print(f"requests: {$BARE_REQ} (bare loop) / {$REG_REQ} (registrar)")
print(f"ratio: {($REG_N/reg)/($BARE_N/bare)*100:.0f}% of the bare loop's rate (goal >= 90%)")
print(f"incremental run with nothing changed: {$INC_S:.2f} s")
PY
