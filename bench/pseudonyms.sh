#!/usr/bin/env bash
# Pseudonym throughput on one core: registrar-anonymizer (release) against a peer reference in
# Python's standard library (hmac + hashlib, the same HKDF/HMAC construction, the same
# pre-keyed-state-copy approach). Also checks that both compute the same pseudonyms.
#
#   bench/pseudonyms.sh [N]      (default N = 10000000)
set -euo pipefail

N="${1:-10000000}"
cd "$(dirname "$0")/.."

cargo build --release --quiet -p registrar-anonymizer --example pseudonym_bench
rust_out="$(cargo run --release --quiet -p registrar-anonymizer --example pseudonym_bench -- "$N")"
echo "$rust_out"

py_out="$(python3 - "$N" <<'PY'
import base64, hashlib, hmac, sys, time

n = int(sys.argv[1])

# Domain key: HKDF-SHA256(salt="registrar/v1", ikm=key, info="domain:person"), 32 bytes.
key = bytes([0x42]) * 32
prk = hmac.new(b"registrar/v1", key, hashlib.sha256).digest()
domain_key = hmac.new(prk, b"domain:person\x01", hashlib.sha256).digest()
base = hmac.new(domain_key, digestmod=hashlib.sha256)

def niss(i):
    b = (i * 2654435761) % 1_000_000_000
    return "%09d%02d" % (b, 97 - b % 97)

def person(raw):
    digits = "".join(c for c in raw if c.isdigit()) if not raw.isdigit() else raw
    if len(digits) != 11:
        raise ValueError("not a valid NISS")
    nine, check = int(digits[:9]), int(digits[9:])
    if check != 97 - nine % 97 and check != 97 - (2_000_000_000 + nine) % 97:
        raise ValueError("not a valid NISS (check digits)")
    h = base.copy()
    h.update(b"person\x00niss\x00" + digits.encode())
    return base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()

inputs = [niss(i) for i in range(n)]
start = time.perf_counter()
out = None
for raw in inputs:
    out = person(raw)
secs = time.perf_counter() - start
print("python: %d pseudonyms in %.3f s on one thread" % (n, secs))
print("python: %.0f pseudonyms/s" % (n / secs))
print("first: " + person(inputs[0]))
print("last: " + person(inputs[-1]))
PY
)"
echo "$py_out"

field() { sed -n "s/^$1 *//p" <<<"$2"; }
rust_rate="$(field 'rust:' "$rust_out" | sed -n 's/ pseudonyms\/s$//p')"
py_rate="$(field 'python:' "$py_out" | sed -n 's/ pseudonyms\/s$//p')"
awk -v r="$rust_rate" -v p="$py_rate" 'BEGIN {
    printf "rust %.0f pseudonyms/s, python %.0f pseudonyms/s, ratio rust/python %.1fx\n", r, p, r / p
}'

if [[ "$(field first: "$rust_out")" == "$(field first: "$py_out")" &&
      "$(field last: "$rust_out")" == "$(field last: "$py_out")" ]]; then
    echo "outputs agree: the Python reference computes the same pseudonyms"
else
    echo "MISMATCH: the Rust and Python pseudonyms differ" >&2
    exit 1
fi
