//! A small DICOM encoder: Explicit VR Little Endian data sets with defined-length sequences,
//! and Part 10 files (preamble, `DICM`, file meta group). Written by hand rather than through
//! a DICOM library so that the bytes depend on nothing but this crate (a dependency update
//! never changes the output).

use std::io::Write;

use super::tags::vr;

/// Explicit VR Little Endian.
pub(crate) const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
/// Fixed implementation class UID of this generator (never changes with the run).
pub(crate) const IMPLEMENTATION_CLASS_UID: &str = "2.25.137038119482756373853920419307429120455";
/// Fixed implementation version name (at most 16 characters).
pub(crate) const IMPLEMENTATION_VERSION_NAME: &str = "REGISTRAR_SYNTH1";

/// A tag as `group << 16 | element`, so that tags sort in DICOM order.
pub(crate) type Tag = u32;

/// How text values are encoded: the Specific Character Set of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Charset {
    /// `ISO_IR 100`: ISO-8859-1.
    Latin1,
    /// `ISO_IR 192`: UTF-8.
    Utf8,
}

impl Charset {
    /// The cheapest character set that holds every string of `texts`.
    pub(crate) fn for_texts<'a>(texts: impl IntoIterator<Item = &'a str>) -> Charset {
        if texts
            .into_iter()
            .all(|t| t.chars().all(|c| u32::from(c) <= 0xFF))
        {
            Charset::Latin1
        } else {
            Charset::Utf8
        }
    }

    /// The value of Specific Character Set (0008,0005).
    pub(crate) fn term(self) -> &'static str {
        match self {
            Charset::Latin1 => "ISO_IR 100",
            Charset::Utf8 => "ISO_IR 192",
        }
    }

    fn encode(self, s: &str, out: &mut Vec<u8>) {
        match self {
            Charset::Utf8 => out.extend_from_slice(s.as_bytes()),
            Charset::Latin1 => out.extend(s.chars().map(|c| {
                debug_assert!(u32::from(c) <= 0xFF, "{c:?} is not Latin-1");
                u8::try_from(u32::from(c)).unwrap_or(b'?')
            })),
        }
    }
}

/// VRs whose explicit header has a 4-byte length (after two reserved bytes).
fn long_header(vr: &[u8; 2]) -> bool {
    matches!(
        vr,
        b"OB"
            | b"OD"
            | b"OF"
            | b"OL"
            | b"OV"
            | b"OW"
            | b"SQ"
            | b"SV"
            | b"UC"
            | b"UN"
            | b"UR"
            | b"UT"
            | b"UV"
    )
}

/// Text VRs affected by the Specific Character Set.
fn is_text(vr: &[u8; 2]) -> bool {
    matches!(vr, b"SH" | b"LO" | b"ST" | b"LT" | b"UT" | b"PN" | b"UC")
}

/// Formats a decimal string value: at most `decimals` decimals, trailing zeros dropped, no
/// `-0`. The value must fit the 16 bytes of a DS.
pub(crate) fn ds(v: f64, decimals: usize) -> String {
    let mut s = format!("{v:.decimals$}");
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    if s == "-0" {
        s = "0".to_string();
    }
    debug_assert!(s.len() <= 16, "DS value {s} too long");
    s
}

/// The value a reader gets back from [`ds`]`(v, decimals)`.
pub(crate) fn quantise(v: f64, decimals: usize) -> f64 {
    ds(v, decimals).parse().expect("formatted number parses")
}

/// One data set (or sequence item) under construction: elements in any order, encoded as they
/// are added and sorted by tag when serialised.
#[derive(Debug, Clone)]
pub(crate) struct DataSet {
    charset: Charset,
    elements: Vec<(Tag, Vec<u8>)>,
}

impl DataSet {
    pub(crate) fn new(charset: Charset) -> DataSet {
        DataSet {
            charset,
            elements: Vec::new(),
        }
    }

    /// An empty item with the same character set.
    pub(crate) fn item(&self) -> DataSet {
        DataSet::new(self.charset)
    }

    fn header(tag: Tag, vr: &[u8; 2], len: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(&((tag >> 16) as u16).to_le_bytes());
        out.extend_from_slice(&(tag as u16).to_le_bytes());
        out.extend_from_slice(vr);
        if long_header(vr) {
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&u32::try_from(len).expect("value fits").to_le_bytes());
        } else {
            out.extend_from_slice(&u16::try_from(len).expect("short value fits").to_le_bytes());
        }
    }

    fn push(&mut self, tag: Tag, bytes: Vec<u8>) {
        debug_assert!(
            self.elements.iter().all(|(t, _)| *t != tag),
            "tag {tag:08X} set twice"
        );
        self.elements.push((tag, bytes));
    }

    /// An element with raw value bytes (padded to even length with `pad`).
    pub(crate) fn raw(&mut self, tag: Tag, vr: &[u8; 2], value: &[u8], pad: u8) {
        let len = value.len() + value.len() % 2;
        let mut out = Vec::with_capacity(12 + len);
        Self::header(tag, vr, len, &mut out);
        out.extend_from_slice(value);
        if value.len() % 2 == 1 {
            out.push(pad);
        }
        self.push(tag, out);
    }

    /// A string element in an explicit VR (text VRs in the data set's character set, others
    /// ASCII). An empty string gives a zero-length element (type 2 "present but empty").
    pub(crate) fn str_vr(&mut self, tag: Tag, vr: &[u8; 2], value: &str) {
        let mut bytes = Vec::with_capacity(value.len() + 1);
        if is_text(vr) {
            self.charset.encode(value, &mut bytes);
        } else {
            debug_assert!(value.is_ascii(), "{value:?} in a {vr:?}");
            bytes.extend_from_slice(value.as_bytes());
        }
        let pad = if vr == b"UI" { 0 } else { b' ' };
        self.raw(tag, vr, &bytes, pad);
    }

    /// A string element of the tag's own VR (CS, DA, TM, SH, LO, PN, UI …).
    pub(crate) fn str(&mut self, tag: Tag, value: &str) {
        let vr = vr(tag);
        debug_assert!(
            !matches!(vr, b"SQ" | b"US" | b"UL" | b"FL" | b"AT" | b"OW" | b"OB"),
            "{tag:08X} is not a string"
        );
        self.str_vr(tag, vr, value);
    }

    /// A UI element.
    pub(crate) fn uid(&mut self, tag: Tag, uid: &str) {
        debug_assert!(uid.len() <= 64, "UID too long: {uid}");
        debug_assert_eq!(vr(tag), b"UI");
        self.str_vr(tag, b"UI", uid);
    }

    /// A string element with several values.
    pub(crate) fn strs(&mut self, tag: Tag, values: &[&str]) {
        self.str(tag, &values.join("\\"));
    }

    /// An IS element.
    pub(crate) fn int(&mut self, tag: Tag, value: i64) {
        debug_assert_eq!(vr(tag), b"IS", "{tag:08X}");
        self.str_vr(tag, b"IS", &value.to_string());
    }

    /// An IS element with several values.
    pub(crate) fn ints(&mut self, tag: Tag, values: &[i64]) {
        debug_assert_eq!(vr(tag), b"IS", "{tag:08X}");
        let s: Vec<String> = values.iter().map(i64::to_string).collect();
        self.str_vr(tag, b"IS", &s.join("\\"));
    }

    /// A DS element with `decimals` decimals at most per value.
    pub(crate) fn dec(&mut self, tag: Tag, values: &[f64], decimals: usize) {
        let mut s = String::with_capacity(values.len() * 8);
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                s.push('\\');
            }
            s.push_str(&ds(*v, decimals));
        }
        self.dec_text(tag, &s);
    }

    /// A DS element already formatted.
    pub(crate) fn dec_text(&mut self, tag: Tag, text: &str) {
        debug_assert_eq!(vr(tag), b"DS", "{tag:08X}");
        self.str_vr(tag, b"DS", text);
    }

    /// A US element with one or more values.
    pub(crate) fn us(&mut self, tag: Tag, values: &[u16]) {
        debug_assert_eq!(vr(tag), b"US", "{tag:08X}");
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.raw(tag, b"US", &bytes, 0);
    }

    /// An FL element.
    pub(crate) fn fl(&mut self, tag: Tag, value: f32) {
        debug_assert_eq!(vr(tag), b"FL", "{tag:08X}");
        self.raw(tag, b"FL", &value.to_le_bytes(), 0);
    }

    /// An AT element (one tag).
    pub(crate) fn at(&mut self, tag: Tag, value: Tag) {
        debug_assert_eq!(vr(tag), b"AT", "{tag:08X}");
        let mut bytes = Vec::with_capacity(4);
        bytes.extend_from_slice(&((value >> 16) as u16).to_le_bytes());
        bytes.extend_from_slice(&(value as u16).to_le_bytes());
        self.raw(tag, b"AT", &bytes, 0);
    }

    /// 16-bit pixel data (OW), already as little-endian bytes.
    pub(crate) fn pixels(&mut self, tag: Tag, bytes: &[u8]) {
        debug_assert_eq!(vr(tag), b"OW", "{tag:08X}");
        debug_assert_eq!(bytes.len() % 2, 0);
        self.raw(tag, b"OW", bytes, 0);
    }

    /// A sequence of items, with defined lengths (zero items: an empty type 2 sequence).
    pub(crate) fn seq(&mut self, tag: Tag, items: Vec<DataSet>) {
        debug_assert_eq!(vr(tag), b"SQ", "{tag:08X}");
        let bodies: Vec<Vec<u8>> = items.iter().map(DataSet::to_bytes).collect();
        let len: usize = bodies.iter().map(|b| 8 + b.len()).sum();
        let mut out = Vec::with_capacity(12 + len);
        Self::header(tag, b"SQ", len, &mut out);
        for body in bodies {
            out.extend_from_slice(&0xFFFEu16.to_le_bytes());
            out.extend_from_slice(&0xE000u16.to_le_bytes());
            out.extend_from_slice(&u32::try_from(body.len()).expect("fits").to_le_bytes());
            out.extend_from_slice(&body);
        }
        self.push(tag, out);
    }

    fn sorted(&self) -> Vec<&(Tag, Vec<u8>)> {
        let mut v: Vec<&(Tag, Vec<u8>)> = self.elements.iter().collect();
        v.sort_by_key(|(t, _)| *t);
        v
    }

    /// The encoded data set, elements in tag order.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.elements.iter().map(|(_, b)| b.len()).sum());
        for (_, b) in self.sorted() {
            out.extend_from_slice(b);
        }
        out
    }

    /// Byte offset of the value of top-level element `tag` within [`DataSet::to_bytes`], and
    /// its value length.
    pub(crate) fn value_span(&self, tag: Tag) -> Option<(usize, usize)> {
        let mut pos = 0;
        for (t, b) in self.sorted() {
            if *t == tag {
                let vr: [u8; 2] = [b[4], b[5]];
                let head = if long_header(&vr) { 12 } else { 8 };
                return Some((pos + head, b.len() - head));
            }
            pos += b.len();
        }
        None
    }
}

/// Writes a Part 10 file: 128-byte preamble, `DICM`, the file meta information group, then the
/// data set in Explicit VR Little Endian. Returns the offset of the data set in the file.
pub(crate) fn write_part10(
    out: &mut impl Write,
    sop_class: &str,
    sop_instance: &str,
    data: &[u8],
) -> std::io::Result<usize> {
    let mut meta = DataSet::new(Charset::Latin1);
    meta.raw(0x0002_0001, b"OB", &[0, 1], 0);
    meta.str_vr(0x0002_0002, b"UI", sop_class);
    meta.str_vr(0x0002_0003, b"UI", sop_instance);
    meta.str_vr(0x0002_0010, b"UI", EXPLICIT_VR_LE);
    meta.str_vr(0x0002_0012, b"UI", IMPLEMENTATION_CLASS_UID);
    meta.str_vr(0x0002_0013, b"SH", IMPLEMENTATION_VERSION_NAME);
    let body = meta.to_bytes();
    let mut group = DataSet::new(Charset::Latin1);
    let len = u32::try_from(body.len()).expect("fits");
    group.raw(0x0002_0000, b"UL", &len.to_le_bytes(), 0);
    let head = group.to_bytes();
    out.write_all(&[0u8; 128])?;
    out.write_all(b"DICM")?;
    out.write_all(&head)?;
    out.write_all(&body)?;
    out.write_all(data)?;
    Ok(132 + head.len() + body.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_strings() {
        assert_eq!(ds(1.0, 3), "1");
        assert_eq!(ds(-0.0001, 2), "0");
        assert_eq!(ds(12.3456, 2), "12.35");
        assert_eq!(ds(-240.0, 4), "-240");
        assert_eq!(quantise(1.23456, 3), 1.235);
    }

    #[test]
    fn elements_are_sorted_and_padded() {
        let mut d = DataSet::new(Charset::Latin1);
        d.str(0x0010_0010, "Noël^Inès");
        d.uid(0x0008_0018, "1.2.3");
        d.us(0x0028_0010, &[64]);
        let b = d.to_bytes();
        // (0008,0018) UI, length 6 ("1.2.3\0").
        assert_eq!(&b[..8], &[0x08, 0, 0x18, 0, b'U', b'I', 6, 0]);
        assert_eq!(&b[8..14], b"1.2.3\0");
        // Latin-1 name, padded with a space to 10 bytes.
        let pn = d.value_span(0x0010_0010).unwrap();
        assert_eq!(pn.1, 10);
        assert_eq!(&b[pn.0..pn.0 + 10], b"No\xEBl^In\xE8s ");
        assert_eq!(
            Charset::for_texts(["Dubois^Anaïs", "Hôpital"]),
            Charset::Latin1
        );
        assert_eq!(Charset::for_texts(["Żak^Ana"]), Charset::Utf8);
    }

    #[test]
    fn sequences_have_defined_lengths() {
        let mut d = DataSet::new(Charset::Utf8);
        let mut item = d.item();
        item.int(0x3006_0022, 1);
        d.seq(0x3006_0020, vec![item.clone(), item]);
        let b = d.to_bytes();
        // SQ header (12) + 2 x (item header 8 + IS element 8 + "1 " 2).
        assert_eq!(b.len(), 12 + 2 * 18);
        assert_eq!(&b[4..6], b"SQ");
        assert_eq!(u32::from_le_bytes([b[8], b[9], b[10], b[11]]), 36);
    }
}
