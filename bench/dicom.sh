#!/usr/bin/env bash
# DICOM pseudonymisation throughput: `registrar dicom pseudonymise` (release build, all cores)
# side by side with peers on the same corpora, in one run:
#   - dicognito and deid (PyPI, in a virtualenv under bench/out/dicom/venv),
#   - dcmanon from the crate dicom-anonymization (cargo install --root bench/out/dicom/cargo),
#   - cp -r (the floor: reading and writing the bytes).
# Corpora, generated here with Python's standard library (no DICOM library):
#   ct-small: tests/data/dicom/CT_small.dcm (128x128 CT with private groups) copied N times
#             with distinct SOP Instance UIDs,
#   ct-512:   M synthetic 512x512 16-bit CT slices (one series, realistic header).
# Prints files/s per tool and corpus (best and median of ROUNDS rounds) and the ratios.
#
#   bench/dicom.sh [N] [M]        (defaults N = 1000, M = 300; ROUNDS=5, PEER_ROUNDS=3)
#   REGISTRAR=path/to/registrar bench/dicom.sh   to use a given binary instead of building one
set -euo pipefail

N="${1:-1000}"
M="${2:-300}"
cd "$(dirname "$0")/.."
OUT=bench/out/dicom
mkdir -p "$OUT"

if [ -z "${REGISTRAR:-}" ]; then
  cargo build --release --quiet -p registrar-etl --bin registrar
  REGISTRAR=target/release/registrar
fi

# Peers (installed once; bench/out is not committed).
if [ ! -x "$OUT/venv/bin/python" ]; then
  python3 -m venv "$OUT/venv"
fi
"$OUT/venv/bin/python" -c 'import dicognito, deid' 2>/dev/null ||
  "$OUT/venv/bin/pip" install --quiet dicognito deid
if [ ! -x "$OUT/cargo/bin/dcmanon" ]; then
  cargo install --quiet --locked dicom-anonymization --root "$OUT/cargo"
fi
DCMANON="$OUT/cargo/bin/dcmanon"

# Corpora (made again only when N or M change).
DELETED=0
if [ "$(cat "$OUT/corpus/.params" 2>/dev/null)" != "$N $M" ]; then
DELETED=1
python3 - "$OUT/corpus" "$N" "$M" tests/data/dicom/CT_small.dcm <<'PY'
import os, shutil, struct, sys
out, n, m, ct_small = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

def fresh(d):
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)

# ct-small: the same file with a distinct SOP Instance UID each (same length: the last UID
# component is replaced, in the file meta and in the data set).
src = open(ct_small, "rb").read()
uid = b"1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"
assert src.count(uid) == 2, "CT_small.dcm changed?"
d = os.path.join(out, "ct-small")
fresh(d)
assert n <= 90000
for i in range(n):
    new = uid[:-5] + str(10000 + i).encode()
    open(os.path.join(d, "img%05d.dcm" % i), "wb").write(src.replace(uid, new))

# ct-512: Part 10, explicit VR little endian, one series of M slices.
def el(group, elem, vr, value):
    if isinstance(value, str):
        value = value.encode("latin-1")
    if len(value) % 2:
        value += b"\0" if vr == b"UI" else b" "
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT", b"UC", b"UR", b"OF", b"OD", b"OL"):
        return struct.pack("<HH2sHI", group, elem, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr, len(value)) + value

def us(v):
    return struct.pack("<H", v)

size = 512
# A circle phantom (water 1000, air 0, a denser insert), 16-bit little endian.
row_bytes = []
for y in range(size):
    row = bytearray(size * 2)
    for x in range(size):
        dx, dy = x - 256, y - 256
        v = 0
        if dx * dx + dy * dy < 200 * 200:
            v = 1000
            if (dx - 60) ** 2 + dy * dy < 30 * 30:
                v = 1400
        row[2 * x : 2 * x + 2] = us(v)
    row_bytes.append(bytes(row))
pixels = b"".join(row_bytes)
root = "1.2.826.0.1.3680043.9.7433.1"
study, series, frame = root + ".1", root + ".2", root + ".3"
ct_class = "1.2.840.10008.5.1.4.1.1.2"
d = os.path.join(out, "ct-512")
fresh(d)
for i in range(m):
    sop = "%s.4.%d" % (root, i + 1)
    meta = (
        el(0x0002, 0x0001, b"OB", b"\0\1")
        + el(0x0002, 0x0002, b"UI", ct_class)
        + el(0x0002, 0x0003, b"UI", sop)
        + el(0x0002, 0x0010, b"UI", "1.2.840.10008.1.2.1")
        + el(0x0002, 0x0012, b"UI", root + ".99")
    )
    meta = el(0x0002, 0x0000, b"UL", struct.pack("<I", len(meta))) + meta
    z = -150.0 + 1.25 * i
    ds = b"".join([
        el(0x0008, 0x0005, b"CS", "ISO_IR 100"),
        el(0x0008, 0x0008, b"CS", "ORIGINAL\\PRIMARY\\AXIAL"),
        el(0x0008, 0x0012, b"DA", "20240312"),
        el(0x0008, 0x0013, b"TM", "101500"),
        el(0x0008, 0x0016, b"UI", ct_class),
        el(0x0008, 0x0018, b"UI", sop),
        el(0x0008, 0x0020, b"DA", "20240312"),
        el(0x0008, 0x0021, b"DA", "20240312"),
        el(0x0008, 0x0022, b"DA", "20240312"),
        el(0x0008, 0x0023, b"DA", "20240312"),
        el(0x0008, 0x0030, b"TM", "100000"),
        el(0x0008, 0x0050, b"SH", "ACC20240312"),
        el(0x0008, 0x0060, b"CS", "CT"),
        el(0x0008, 0x0070, b"LO", "ACME Medical"),
        el(0x0008, 0x0080, b"LO", "Saint Example Hospital"),
        el(0x0008, 0x0090, b"PN", "Referrer^Rita"),
        el(0x0008, 0x1010, b"SH", "CTSTATION1"),
        el(0x0008, 0x1030, b"LO", "CT thorax planning"),
        el(0x0008, 0x103E, b"LO", "Thorax 1.25mm"),
        el(0x0008, 0x1070, b"PN", "Operator^Otto"),
        el(0x0010, 0x0010, b"PN", "Doe^Jane"),
        el(0x0010, 0x0020, b"LO", "MRN0001234"),
        el(0x0010, 0x0030, b"DA", "19620405"),
        el(0x0010, 0x0040, b"CS", "F"),
        el(0x0010, 0x1010, b"AS", "061Y"),
        el(0x0018, 0x0050, b"DS", "1.25"),
        el(0x0018, 0x1000, b"LO", "SN123456"),
        el(0x0018, 0x1030, b"LO", "Thorax RT"),
        el(0x0019, 0x0010, b"LO", "ACME PRIVATE"),
        el(0x0019, 0x1001, b"LO", "Doe^Jane scanned by Otto"),
        el(0x0020, 0x000D, b"UI", study),
        el(0x0020, 0x000E, b"UI", series),
        el(0x0020, 0x0010, b"SH", "S1"),
        el(0x0020, 0x0011, b"IS", "1"),
        el(0x0020, 0x0013, b"IS", str(i + 1)),
        el(0x0020, 0x0032, b"DS", "-250\\-250\\%g" % z),
        el(0x0020, 0x0037, b"DS", "1\\0\\0\\0\\1\\0"),
        el(0x0020, 0x0052, b"UI", frame),
        el(0x0020, 0x1041, b"DS", "%g" % z),
        el(0x0028, 0x0002, b"US", us(1)),
        el(0x0028, 0x0004, b"CS", "MONOCHROME2"),
        el(0x0028, 0x0010, b"US", us(size)),
        el(0x0028, 0x0011, b"US", us(size)),
        el(0x0028, 0x0030, b"DS", "0.9765625\\0.9765625"),
        el(0x0028, 0x0100, b"US", us(16)),
        el(0x0028, 0x0101, b"US", us(12)),
        el(0x0028, 0x0102, b"US", us(11)),
        el(0x0028, 0x0103, b"US", us(0)),
        el(0x0028, 0x1050, b"DS", "40"),
        el(0x0028, 0x1051, b"DS", "400"),
        el(0x0028, 0x1052, b"DS", "-1024"),
        el(0x0028, 0x1053, b"DS", "1"),
        el(0x7FE0, 0x0010, b"OW", pixels),
    ])
    with open(os.path.join(d, "slice%04d.dcm" % (i + 1)), "wb") as f:
        f.write(b"\0" * 128 + b"DICM" + meta + ds)
PY
echo "$N $M" >"$OUT/corpus/.params"
fi

"$REGISTRAR" key new --out "$OUT/bench.key" >/dev/null 2>&1 || true
# The registry (DATABASE_URL, else the embedded cluster) is up before timing, as in
# production: each run still writes its audit entry, but does not start a server.
"$REGISTRAR" db migrate >/dev/null

# Timing. Every run writes into a new folder and nothing is deleted while timing: ext4
# without a journal (this machine's disk) scans past recently deleted inodes when it creates
# files, so deleting the previous round's output would tax whichever tool runs next. Outputs of
# earlier bench runs are deleted first, then the bench waits out the file system's "recently
# deleted" window (vm.dirty_expire_centisecs, 30 s).
ROUNDS="${ROUNDS:-5}"
RUNS="$OUT/run"
if [ -e "$RUNS" ]; then
  rm -rf "$RUNS"
  DELETED=1
fi
if [ "$DELETED" = 1 ]; then
  sync
  sleep "$(( $(cat /proc/sys/vm/dirty_expire_centisecs 2>/dev/null || echo 3000) / 100 + 2 ))"
fi
mkdir -p "$RUNS"
RESULTS="$OUT/results.tsv"
: >"$RESULTS"
# One timed run: round, tool name, corpus, command...; appends "tool corpus files seconds".
timed() {
  local round="$1" tool="$2" corpus="$3"
  shift 3
  local dest="$RUNS/$round/$tool/$corpus"
  mkdir -p "$(dirname "$dest")"
  # Inputs in the page cache for every tool (this machine reclaims cold pages in the
  # background), earlier outputs on disk.
  find "$OUT/corpus/$corpus" -type f -exec cat {} + >/dev/null
  sync
  local t0 t1
  t0=$(date +%s.%N)
  "$@" "$OUT/corpus/$corpus" "$dest" >"$RUNS/$round-$tool-$corpus.log" 2>&1 || {
    echo "$tool on $corpus failed (exit $?), see $RUNS/$round-$tool-$corpus.log" >&2
    return 0
  }
  t1=$(date +%s.%N)
  local files
  files=$(find "$dest" -type f -name '*.dcm' -not -path '*/quarantine/*' | wc -l)
  printf '%s\t%s\t%s\t%s\n' "$tool" "$corpus" "$files" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" >>"$RESULTS"
}

run_registrar() {
  "$REGISTRAR" --key-file "$OUT/bench.key" dicom pseudonymise --in "$1" --out "$2"
}
run_dicognito() {
  "$OUT/venv/bin/python" -m dicognito --quiet --output-directory "$2" "$1"
}
run_deid() {
  mkdir -p "$2"
  "$OUT/venv/bin/python" - "$1" "$2" <<'PY'
import sys
from deid.dicom import get_files, replace_identifiers
files = list(get_files(sys.argv[1]))
replace_identifiers(dicom_files=files, save=True, output_folder=sys.argv[2], overwrite=True)
PY
}
run_dcmanon() {
  mkdir -p "$2"
  "$DCMANON" anonymize --recursive --input "$1" --output "$2"
}
run_cp() {
  cp -r "$1" "$2"
}

# Rounds interleave the tools; the slow Python peers (seconds to minutes each) run in the
# first PEER_ROUNDS rounds only.
PEER_ROUNDS="${PEER_ROUNDS:-3}"
for round in $(seq "$ROUNDS"); do
  for corpus in ct-small ct-512; do
    for tool in registrar dcmanon cp dicognito deid; do
      case "$tool" in dicognito | deid) [ "$round" -le "$PEER_ROUNDS" ] || continue ;; esac
      timed "$round" "$tool" "$corpus" "run_$tool"
    done
  done
done

echo
echo "cores: $(nproc); corpora: ct-small = $N x CT_small.dcm (39 KB), ct-512 = $M x 512x512 CT (514 KB)"
echo "rounds: $ROUNDS (dicognito and deid: at most $PEER_ROUNDS); files/s from each tool's best and median round"
awk -F'\t' '
  { k = $1 SUBSEP $2; n[k]++; t[k, n[k]] = $4; files[k] = $3
    if (!($2 in seen)) { seen[$2] = 1; order[++nc] = $2 } }
  function sortk(k,   i, j, x) {
    for (i = 2; i <= n[k]; i++) { x = t[k, i]; for (j = i - 1; j >= 1 && t[k, j] > x; j--) t[k, j + 1] = t[k, j]; t[k, j + 1] = x }
  }
  END {
    split("registrar dcmanon cp dicognito deid", tl, " ")
    for (kk in n) sortk(kk)
    printf "%-10s %-9s %6s %5s %9s %9s %11s %11s %13s\n", "tool", "corpus", "files", "runs", "best s", "median s", "best f/s", "median f/s", "registrar is"
    for (i = 1; i <= nc; i++) {
      c = order[i]
      r = "registrar" SUBSEP c
      for (j = 1; j <= 5; j++) {
        k = tl[j] SUBSEP c
        if (!(k in n)) { printf "%-10s %-9s %6s\n", tl[j], c, "failed"; continue }
        best = t[k, 1]; med = t[k, int((n[k] + 1) / 2)]
        rbest = t[r, 1]
        printf "%-10s %-9s %6d %5d %9.3f %9.3f %11.0f %11.0f %12.2fx\n", tl[j], c, files[k], n[k], best, med, files[k] / best, files[k] / med, (files[r] / rbest) / (files[k] / best)
      }
    }
    print ""
    print "registrar is: registrar best files/s divided by the tool best files/s (for cp: the share of the physical bound)"
  }' "$RESULTS"
