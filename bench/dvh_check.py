#!/usr/bin/env python3
"""Cross-check of the dose-volume metrics against dicompyler-core's dvhcalc (issue 22).

`registrar synth` writes, per plan, the expected Dmean, D95%, D2% and V95% of the clinical
structure set's ROIs (truth.jsonl, computed as registrar's index computes them; the e2e test
`delineation_agreement_matches_the_synthetic_truth` checks the registry against it). This
script computes the same figures with dicompyler-core 0.5.6 on the same (source) files and
prints the differences, so the registry's figures can be checked against dicompyler.

Usage: python3 -m venv /tmp/dvhv && /tmp/dvhv/bin/pip install dicompyler-core==0.5.6
       /tmp/dvhv/bin/python bench/dvh_check.py SYNTH_OUT_DIR [MAX_PLANS]
"""
import json
import sys
from pathlib import Path

from dicompylercore import dvhcalc

root = Path(sys.argv[1])
max_plans = int(sys.argv[2]) if len(sys.argv) > 2 else 40
rows = []
for line in open(root / "truth.jsonl"):
    t = json.loads(line)
    d = t.get("dicom")
    if not isinstance(d, dict):
        continue
    clinical = next(s for s in d["structure_sets"] if s["clinical"])
    number = {r["tg263"]: r["number"] for r in clinical["rois"]}
    for plan in d["plans"]:
        if len(rows) >= max_plans * 10:
            break
        rx = plan["total_dose_gy"]
        for e in plan["dvh"]:
            roi = number.get(e["tg263"])
            if roi is None:
                continue
            dvh = dvhcalc.get_dvh(str(root / clinical["file"]), str(root / plan["dose_file"]), roi)
            if dvh.volume == 0:
                continue
            rel = dvh.relative_volume
            rows.append(
                (
                    e["tg263"],
                    (dvh.mean, e["dmean_gy"]),
                    (dvh.statistic("D95").value, e["d95_gy"]),
                    (dvh.statistic("D2").value, e["d2_gy"]),
                    (rel.statistic(f"V{0.95 * rx}Gy").value, e["v95_pct"]),
                )
            )

def worst(i, relative=True):
    out = 0.0
    for r in rows:
        got, want = r[i]
        diff = abs(got - want) / max(abs(want), 1.0) if relative else abs(got - want)
        out = max(out, diff)
    return out

print(f"{len(rows)} ROIs compared with dicompyler-core dvhcalc")
print(f"largest relative difference: Dmean {worst(1):.4f}, D95 {worst(2):.4f}, D2 {worst(3):.4f}")
print(f"largest V95% difference (percentage points): {worst(4, relative=False):.2f}")
within = sum(
    1
    for r in rows
    if all(abs(r[i][0] - r[i][1]) / max(abs(r[i][1]), 1.0) <= 0.01 for i in (1, 2, 3))
)
print(f"ROIs with Dmean, D95 and D2 within 1%: {within} of {len(rows)}")
