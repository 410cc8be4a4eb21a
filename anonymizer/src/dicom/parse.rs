//! Reading DICOM files into dicom-object's in-memory model, tolerantly and strictly at once:
//! tolerant of what real archives contain (no preamble, no file meta, a file meta without a
//! transfer syntax, implicit or big-endian data sets, deflated data sets, sequences encoded as
//! UN), strict about what would make the output wrong (a value, item or pixel fragment running
//! past the end of the file, a sequence that is never closed).
//!
//! Element values are kept as the bytes of the file (only DS and IS are read as text, because
//! dicom-rs writes those as text), so every value this program does not change is written back
//! byte for byte, in any character set: the program never decodes and re-encodes text it keeps,
//! and pixel data (native or encapsulated) is never decoded.

use std::io::Read;

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::value::{DataSetSequence, PixelFragmentSequence, Value, C};
use dicom_core::{DataElement, Length, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use dicom_encoding::transfer_syntax::{Codec, Endianness, TransferSyntaxIndex};
use dicom_object::mem::InMemElement;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

/// A data element of the in-memory model.
pub type Elem = InMemElement;

const UNDEFINED: u32 = 0xFFFF_FFFF;
const ITEM: Tag = Tag(0xFFFE, 0xE000);
const ITEM_DELIMITER: Tag = Tag(0xFFFE, 0xE00D);
const SEQUENCE_DELIMITER: Tag = Tag(0xFFFE, 0xE0DD);
const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);

/// Implicit VR Little Endian.
pub const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
/// Explicit VR Little Endian.
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
/// Explicit VR Big Endian (retired, still found in archives).
pub const EXPLICIT_VR_BE: &str = "1.2.840.10008.1.2.2";

/// How a data set is encoded (after inflation, for deflated transfer syntaxes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Implicit VR Little Endian.
    ImplicitLittle,
    /// Explicit VR Little Endian (also every encapsulated transfer syntax).
    ExplicitLittle,
    /// Explicit VR Big Endian.
    ExplicitBig,
}

impl Encoding {
    /// The transfer syntax UID whose data set encoding this is.
    pub fn uid(self) -> &'static str {
        match self {
            Encoding::ImplicitLittle => IMPLICIT_VR_LE,
            Encoding::ExplicitLittle => EXPLICIT_VR_LE,
            Encoding::ExplicitBig => EXPLICIT_VR_BE,
        }
    }

    fn little(self) -> bool {
        self != Encoding::ExplicitBig
    }
}

/// Why a file could not be read. Messages name tags and offsets, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not a DICOM file (no preamble or file meta, and no data set either).
    #[error("not a DICOM file ({0})")]
    NotDicom(String),
    /// The file ends in the middle of an element, item or pixel data.
    #[error("truncated ({0})")]
    Truncated(String),
    /// The structure is inconsistent.
    #[error("malformed ({0})")]
    Malformed(String),
    /// A transfer syntax this program cannot read (its UID, which identifies nobody).
    #[error("unsupported transfer syntax {0}")]
    UnsupportedTransferSyntax(String),
    /// Sequences nested deeper than [`Limits::max_depth`].
    #[error("too deep ({0})")]
    TooDeep(String),
    /// More data elements than [`Limits::max_elements`], or a deflated data set inflating
    /// beyond [`MAX_INFLATED`].
    #[error("too large ({0})")]
    TooLarge(String),
}

/// Bounds on what one file may make the reader build, so that no input can exhaust the
/// stack or the memory of a run: a file beyond them is refused with
/// [`ParseError::TooDeep`] or [`ParseError::TooLarge`] (and quarantined by the
/// pseudonymiser), never read further.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct Limits {
    /// Sequences inside sequences, counted from the top-level data set (an item of a
    /// top-level sequence is at depth 1). Real objects stay below 20 (SR content trees are
    /// the deepest); default 64.
    pub max_depth: u32,
    /// Data elements in the whole file, at every depth; default 2,000,000 (the largest real
    /// headers hold tens of thousands).
    pub max_elements: u64,
    /// Bytes of a file (checked before it is read); default 4 GiB.
    pub max_file_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 64,
            max_elements: 2_000_000,
            max_file_bytes: 4 << 30,
        }
    }
}

/// A parsed file.
#[derive(Debug)]
pub struct Parsed {
    /// The data set.
    pub dataset: InMemDicomObject,
    /// The transfer syntax UID of the file (from its file meta, or detected).
    pub transfer_syntax: String,
    /// The data set encoding.
    pub encoding: Encoding,
    /// Whether the data set was deflated.
    pub deflated: bool,
    /// Whether the file had a file meta group.
    pub had_meta: bool,
    /// The file meta's Media Storage SOP Class UID, if any.
    pub meta_sop_class: Option<String>,
    /// Native pixel data left in the file ([`parse_head`]); `None` after [`parse`].
    pub pixel_tail: Option<PixelTail>,
}

/// Native pixel data that ends the file and was not read: the writer copies it from the input
/// file (in the kernel, without passing through this process), byte for byte, as the last
/// element of the output data set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PixelTail {
    /// The VR of the element (OB or OW).
    pub vr: VR,
    /// Where the value starts in the input file.
    pub offset: u64,
    /// The value length (even).
    pub len: u32,
}

/// The largest inflated data set accepted (a bound against deflate bombs).
pub const MAX_INFLATED: u64 = 4 << 30;

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    enc: Encoding,
    elements: usize,
    /// Sequences open around the current position.
    depth: u32,
    limits: Limits,
    /// `data` is all there is (not the head of a longer file).
    complete: bool,
    /// For a head: the length the data would have if complete; top-level pixel data whose
    /// value ends exactly there is left unread.
    tail_end: Option<usize>,
    /// The pixel data left unread: VR, value position, length.
    tail: Option<(VR, usize, u32)>,
}

struct Header {
    tag: Tag,
    vr: VR,
    len: u32,
}

enum End {
    Eof,
    At(usize),
    Delimiter,
}

fn truncated(what: &str, pos: usize) -> ParseError {
    ParseError::Truncated(format!(
        "{what} at offset {pos} runs past the end of the data"
    ))
}

fn tag_text(t: Tag) -> String {
    format!("({:04X},{:04X})", t.0, t.1)
}

/// The VR of two header bytes (a match on bytes: dicom-core's `from_binary` goes through text).
fn vr_of(b: [u8; 2]) -> Option<VR> {
    Some(match &b {
        b"AE" => VR::AE,
        b"AS" => VR::AS,
        b"AT" => VR::AT,
        b"CS" => VR::CS,
        b"DA" => VR::DA,
        b"DS" => VR::DS,
        b"DT" => VR::DT,
        b"FD" => VR::FD,
        b"FL" => VR::FL,
        b"IS" => VR::IS,
        b"LO" => VR::LO,
        b"LT" => VR::LT,
        b"OB" => VR::OB,
        b"OD" => VR::OD,
        b"OF" => VR::OF,
        b"OL" => VR::OL,
        b"OV" => VR::OV,
        b"OW" => VR::OW,
        b"PN" => VR::PN,
        b"SH" => VR::SH,
        b"SL" => VR::SL,
        b"SQ" => VR::SQ,
        b"SS" => VR::SS,
        b"ST" => VR::ST,
        b"SV" => VR::SV,
        b"TM" => VR::TM,
        b"UC" => VR::UC,
        b"UI" => VR::UI,
        b"UL" => VR::UL,
        b"UN" => VR::UN,
        b"UR" => VR::UR,
        b"US" => VR::US,
        b"UT" => VR::UT,
        b"UV" => VR::UV,
        _ => return VR::from_binary(b),
    })
}

/// VRs whose explicit header has a 4-byte length.
pub(crate) fn long_length(vr: VR) -> bool {
    matches!(
        vr,
        VR::OB
            | VR::OD
            | VR::OF
            | VR::OL
            | VR::OV
            | VR::OW
            | VR::SQ
            | VR::SV
            | VR::UC
            | VR::UN
            | VR::UR
            | VR::UT
            | VR::UV
    )
}

/// The VR of a tag in an implicit VR data set (as dicom-rs's implicit decoder would give it).
pub(crate) fn dictionary_vr(tag: Tag) -> Option<VR> {
    if tag.1 == 0 {
        return Some(VR::UL);
    }
    if tag.0 % 2 == 1 {
        return (0x0010..=0x00FF).contains(&tag.1).then_some(VR::LO);
    }
    match StandardDataDictionary.by_tag(tag)?.vr() {
        VirtualVr::Exact(vr) => Some(vr),
        VirtualVr::Xs => Some(VR::US),
        VirtualVr::Ox | VirtualVr::Px | VirtualVr::Lt => Some(VR::OW),
        _ => None,
    }
}

/// VRs whose value is text (byte order does not matter).
pub(crate) fn is_text(vr: VR) -> bool {
    matches!(
        vr,
        VR::AE
            | VR::AS
            | VR::CS
            | VR::DA
            | VR::DS
            | VR::DT
            | VR::IS
            | VR::LO
            | VR::LT
            | VR::PN
            | VR::SH
            | VR::ST
            | VR::TM
            | VR::UC
            | VR::UI
            | VR::UR
            | VR::UT
    )
}

/// Bytes read as Latin-1 text (one allocation for the usual ASCII).
pub(crate) fn latin1(b: &[u8]) -> String {
    if b.is_ascii() {
        // ASCII is UTF-8 as it stands.
        return String::from_utf8(b.to_vec()).expect("ASCII is UTF-8");
    }
    b.iter().map(|&c| c as char).collect()
}

/// A value from the bytes of the file: DS and IS as text, everything else as bytes.
pub(crate) fn primitive(vr: VR, bytes: &[u8]) -> PrimitiveValue {
    if bytes.is_empty() {
        return PrimitiveValue::Empty;
    }
    match vr {
        VR::DS | VR::IS => PrimitiveValue::Strs(bytes.split(|&b| b == b'\\').map(latin1).collect()),
        _ => PrimitiveValue::U8(C::from_vec(bytes.to_vec())),
    }
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8], enc: Encoding, limits: Limits) -> Self {
        Reader {
            data,
            pos: 0,
            enc,
            elements: 0,
            depth: 0,
            limits,
            complete: true,
            tail_end: None,
            tail: None,
        }
    }

    fn left(&self) -> usize {
        self.data.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ParseError> {
        if self.left() < n {
            return Err(truncated(what, self.pos));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u16(&mut self) -> Result<u16, ParseError> {
        let b = self.take(2, "element header")?;
        Ok(if self.enc.little() {
            u16::from_le_bytes([b[0], b[1]])
        } else {
            u16::from_be_bytes([b[0], b[1]])
        })
    }

    fn u32(&mut self) -> Result<u32, ParseError> {
        let b = self.take(4, "element header")?;
        let a = [b[0], b[1], b[2], b[3]];
        Ok(if self.enc.little() {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        })
    }

    fn tag(&mut self) -> Result<Tag, ParseError> {
        let g = self.u16()?;
        let e = self.u16()?;
        Ok(Tag(g, e))
    }

    fn peek_group(&self) -> Option<u16> {
        let b = self.data.get(self.pos..self.pos + 2)?;
        Some(if self.enc.little() {
            u16::from_le_bytes([b[0], b[1]])
        } else {
            u16::from_be_bytes([b[0], b[1]])
        })
    }

    /// An element header (or an item header, for group FFFE, whose VR is reported as UN).
    fn header(&mut self) -> Result<Header, ParseError> {
        let at = self.pos;
        let tag = self.tag()?;
        if tag.0 == 0xFFFE {
            let len = self.u32()?;
            return Ok(Header {
                tag,
                vr: VR::UN,
                len,
            });
        }
        match self.enc {
            Encoding::ImplicitLittle => {
                let len = self.u32()?;
                Ok(Header {
                    tag,
                    vr: dictionary_vr(tag).unwrap_or(VR::UN),
                    len,
                })
            }
            _ => {
                let b = self.take(2, "element header")?;
                let vr = vr_of([b[0], b[1]]).ok_or_else(|| {
                    ParseError::Malformed(format!(
                        "element {} at offset {at} has no valid VR",
                        tag_text(tag)
                    ))
                })?;
                let len = if long_length(vr) {
                    self.take(2, "element header")?;
                    self.u32()?
                } else {
                    u32::from(self.u16()?)
                };
                Ok(Header { tag, vr, len })
            }
        }
    }

    fn dataset(&mut self, end: End) -> Result<Vec<Elem>, ParseError> {
        // Room for the elements the bytes left can hold (about one per 48 bytes in common
        // headers), within bounds: the vector does not grow again and again.
        let room = match end {
            End::Eof => self.left(),
            End::At(e) => e.saturating_sub(self.pos),
            End::Delimiter => 256,
        };
        let mut out = Vec::with_capacity((room / 48).clamp(4, 512));
        loop {
            match end {
                End::At(e) if self.pos == e => break,
                End::At(e) if self.pos > e => {
                    return Err(ParseError::Malformed(format!(
                        "item content overruns its length (ends at {e}, reached {})",
                        self.pos
                    )))
                }
                End::Eof if self.left() == 0 => {
                    if self.complete {
                        break;
                    }
                    return Err(truncated("the head of the file", self.pos));
                }
                _ => {}
            }
            if let End::Eof = end {
                // Trailing zero padding after the last element (seen in archives).
                if self.complete && self.left() < 8 && self.data[self.pos..].iter().all(|&b| b == 0)
                {
                    break;
                }
            }
            let at = self.pos;
            let h = self.header()?;
            if let (End::Eof, Some(total)) = (&end, self.tail_end) {
                if h.tag == PIXEL_DATA
                    && h.len != UNDEFINED
                    && h.len % 2 == 0
                    && matches!(h.vr, VR::OB | VR::OW)
                    && self.pos + h.len as usize == total
                {
                    self.tail = Some((h.vr, self.pos, h.len));
                    self.elements += 1;
                    return Ok(out);
                }
            }
            if h.tag.0 == 0xFFFE {
                if h.tag == ITEM_DELIMITER && matches!(end, End::Delimiter) {
                    return Ok(out);
                }
                return Err(ParseError::Malformed(format!(
                    "unexpected {} at offset {at}",
                    tag_text(h.tag)
                )));
            }
            self.elements += 1;
            if self.elements as u64 > self.limits.max_elements {
                return Err(ParseError::TooLarge(format!(
                    "more than {} data elements",
                    self.limits.max_elements
                )));
            }
            out.push(self.element(h)?);
        }
        if let End::Delimiter = end {
            return Err(truncated("item without its delimiter", self.pos));
        }
        Ok(out)
    }

    fn element(&mut self, h: Header) -> Result<Elem, ParseError> {
        if h.tag == PIXEL_DATA && h.len == UNDEFINED {
            let (table, fragments) = self.fragments()?;
            // Encapsulated pixel data is OB (some writers say OW or UN); dicom-rs writes a
            // fragment sequence only under OB.
            return Ok(DataElement::new(
                h.tag,
                VR::OB,
                Value::PixelSequence(PixelFragmentSequence::new(table, fragments)),
            ));
        }
        if h.vr == VR::SQ || h.len == UNDEFINED {
            // A sequence; an undefined-length UN holds a sequence in Implicit VR Little Endian.
            let saved = self.enc;
            if h.vr == VR::UN {
                self.enc = Encoding::ImplicitLittle;
            }
            let items = self.sequence(h.len);
            self.enc = saved;
            return Ok(sequence_element(h.tag, items?));
        }
        if self.left() < h.len as usize {
            return Err(truncated(&format!("element {}", tag_text(h.tag)), self.pos));
        }
        let bytes = self.take(h.len as usize, "element")?;
        if h.vr == VR::UN && h.tag.0.is_multiple_of(2) {
            return un_to_known(self, h.tag, bytes);
        }
        Ok(DataElement::new_with_len(
            h.tag,
            h.vr,
            Length(h.len),
            primitive(h.vr, bytes),
        ))
    }

    fn sequence(&mut self, len: u32) -> Result<Vec<InMemDicomObject>, ParseError> {
        if self.depth >= self.limits.max_depth {
            return Err(ParseError::TooDeep(format!(
                "sequences nested more than {} deep at offset {}",
                self.limits.max_depth, self.pos
            )));
        }
        self.depth += 1;
        let items = self.sequence_items(len);
        self.depth -= 1;
        items
    }

    fn sequence_items(&mut self, len: u32) -> Result<Vec<InMemDicomObject>, ParseError> {
        let end = if len == UNDEFINED {
            None
        } else {
            if self.left() < len as usize {
                return Err(truncated("sequence", self.pos));
            }
            Some(self.pos + len as usize)
        };
        let mut items = Vec::new();
        loop {
            if let Some(e) = end {
                if self.pos == e {
                    break;
                }
                if self.pos > e {
                    return Err(ParseError::Malformed(format!(
                        "sequence content overruns its length (ends at {e}, reached {})",
                        self.pos
                    )));
                }
            }
            if end.is_none() && self.left() == 0 {
                return Err(truncated("sequence without its delimiter", self.pos));
            }
            let at = self.pos;
            let tag = self.tag()?;
            let item_len = self.u32()?;
            match tag {
                ITEM => {
                    let elems = if item_len == UNDEFINED {
                        self.dataset(End::Delimiter)?
                    } else {
                        if self.left() < item_len as usize {
                            return Err(truncated("item", at));
                        }
                        let e = self.pos + item_len as usize;
                        self.dataset(End::At(e))?
                    };
                    items.push(InMemDicomObject::from_element_iter(elems));
                }
                SEQUENCE_DELIMITER => break,
                _ => {
                    return Err(ParseError::Malformed(format!(
                        "expected an item at offset {at}, found {}",
                        tag_text(tag)
                    )))
                }
            }
        }
        Ok(items)
    }

    fn fragments(&mut self) -> Result<(C<u32>, Vec<Vec<u8>>), ParseError> {
        let mut table = C::new();
        let mut fragments = Vec::new();
        let mut first = true;
        loop {
            let at = self.pos;
            let tag = self.tag()?;
            let len = self.u32()?;
            match tag {
                ITEM if len != UNDEFINED => {
                    let bytes = self.take(len as usize, "pixel data fragment")?;
                    if first {
                        if len % 4 != 0 {
                            return Err(ParseError::Malformed(
                                "basic offset table length is not a multiple of 4".into(),
                            ));
                        }
                        table = bytes
                            .chunks_exact(4)
                            .map(|c| {
                                let a = [c[0], c[1], c[2], c[3]];
                                if self.enc.little() {
                                    u32::from_le_bytes(a)
                                } else {
                                    u32::from_be_bytes(a)
                                }
                            })
                            .collect();
                        first = false;
                    } else {
                        fragments.push(bytes.to_vec());
                    }
                }
                SEQUENCE_DELIMITER => break,
                _ => {
                    return Err(ParseError::Malformed(format!(
                        "expected a pixel data item at offset {at}, found {}",
                        tag_text(tag)
                    )))
                }
            }
        }
        Ok((table, fragments))
    }
}

pub(crate) fn sequence_element(tag: Tag, items: Vec<InMemDicomObject>) -> Elem {
    DataElement::new(
        tag,
        VR::SQ,
        Value::from(DataSetSequence::new(items, Length::UNDEFINED)),
    )
}

/// A standard attribute encoded as UN (explicit VR, defined length) gets its dictionary VR
/// back, so that the profile sees (and cleans) what is inside: a sequence is parsed as Implicit
/// VR Little Endian items (within the limits of the file around it); text takes its VR; binary
/// values take theirs in little-endian data sets. Anything that does not parse stays UN, except
/// a sequence beyond the limits, which refuses the file.
fn un_to_known(outer: &mut Reader<'_>, tag: Tag, bytes: &[u8]) -> Result<Elem, ParseError> {
    let enc = outer.enc;
    Ok(match dictionary_vr(tag) {
        Some(VR::SQ) => {
            let mut r = Reader::new(bytes, Encoding::ImplicitLittle, outer.limits);
            r.depth = outer.depth;
            r.elements = outer.elements;
            let items = r.sequence(bytes.len() as u32);
            outer.elements = r.elements;
            match items {
                Ok(items) => sequence_element(tag, items),
                Err(e @ (ParseError::TooDeep(_) | ParseError::TooLarge(_))) => return Err(e),
                Err(_) => DataElement::new(tag, VR::UN, primitive(VR::UN, bytes)),
            }
        }
        Some(vr)
            if (is_text(vr) || enc.little())
                && (long_length(vr) || bytes.len() <= usize::from(u16::MAX)) =>
        {
            DataElement::new(tag, vr, primitive(vr, bytes))
        }
        _ => DataElement::new(tag, VR::UN, primitive(VR::UN, bytes)),
    })
}

/// The encoding of a raw data set starting at `pos`, from its first element header: explicit if
/// bytes 4..6 are a VR, little endian if the group reads smaller that way. `None` if it does not
/// look like a data set.
fn detect(data: &[u8], pos: usize) -> Option<Encoding> {
    let b = data.get(pos..pos + 8)?;
    let g_le = u16::from_le_bytes([b[0], b[1]]);
    let g_be = u16::from_be_bytes([b[0], b[1]]);
    let explicit =
        b[4].is_ascii_uppercase() && b[5].is_ascii_uppercase() && vr_of([b[4], b[5]]).is_some();
    let little = g_le <= g_be;
    let group = if little { g_le } else { g_be };
    // A data set starts with a low group (0002 meta, 0004 directory, 0008 identification...).
    if group > 0x00FF {
        return None;
    }
    match (explicit, little) {
        (true, true) => Some(Encoding::ExplicitLittle),
        (true, false) => Some(Encoding::ExplicitBig),
        (false, true) => Some(Encoding::ImplicitLittle),
        (false, false) => None,
    }
}

fn trim_uid(b: &[u8]) -> String {
    latin1(b)
        .trim_matches(|c: char| c == '\0' || c == ' ')
        .to_string()
}

struct Meta {
    transfer_syntax: Option<String>,
    sop_class: Option<String>,
    end: usize,
}

/// Reads the file meta group (group 0002, explicit VR little endian, or implicit as some
/// writers did) starting at `start`.
fn read_meta(data: &[u8], start: usize) -> Result<Meta, ParseError> {
    let enc = match detect(data, start) {
        Some(Encoding::ImplicitLittle) => Encoding::ImplicitLittle,
        _ => Encoding::ExplicitLittle,
    };
    let mut r = Reader::new(data, enc, Limits::default());
    r.pos = start;
    let mut meta = Meta {
        transfer_syntax: None,
        sop_class: None,
        end: start,
    };
    while r.peek_group() == Some(0x0002) {
        let h = r.header()?;
        if h.len == UNDEFINED {
            return Err(ParseError::Malformed(
                "file meta element of undefined length".into(),
            ));
        }
        let v = r.take(h.len as usize, "file meta element")?;
        match h.tag.1 {
            0x0010 => meta.transfer_syntax = Some(trim_uid(v)).filter(|s| !s.is_empty()),
            0x0002 => meta.sop_class = Some(trim_uid(v)).filter(|s| !s.is_empty()),
            _ => {}
        }
    }
    meta.end = r.pos;
    Ok(meta)
}

/// Parses a whole file (Part 10 with or without preamble, or a bare data set) within the
/// default [`Limits`].
pub fn parse(data: &[u8]) -> Result<Parsed, ParseError> {
    parse_within(data, Limits::default())
}

/// [`parse`] within the given limits.
pub fn parse_within(data: &[u8], limits: Limits) -> Result<Parsed, ParseError> {
    if data.len() as u64 > limits.max_file_bytes {
        return Err(too_big(limits));
    }
    parse_data(data, None, limits)
}

fn too_big(limits: Limits) -> ParseError {
    ParseError::TooLarge(format!(
        "the file is larger than {} bytes",
        limits.max_file_bytes
    ))
}

/// Parses the first bytes (`head`) of a file of `total` bytes whose native pixel data (defined
/// length, OB or OW, top level, not deflated) runs to the end of the file: the pixel data is
/// left in the file ([`Parsed::pixel_tail`]) and never read. Everything before it must be in
/// `head`. `None` when that is not so, or on any error: then read the whole file and
/// [`parse`] it, which also gives the authoritative error. The result, once the tail is
/// copied, is what [`parse`] would have given for the whole file.
pub fn parse_head(head: &[u8], total: u64) -> Option<Parsed> {
    parse_head_within(head, total, Limits::default())
}

/// [`parse_head`] within the given limits (the pixel data left in the file counts towards
/// [`Limits::max_file_bytes`]).
pub fn parse_head_within(head: &[u8], total: u64, limits: Limits) -> Option<Parsed> {
    if total > limits.max_file_bytes {
        return None;
    }
    let total = usize::try_from(total).ok()?;
    if head.len() >= total {
        return None;
    }
    parse_data(head, Some(total), limits)
        .ok()
        .filter(|p| p.pixel_tail.is_some())
}

/// `total`: `data` is the head of a file of this length.
fn parse_data(data: &[u8], total: Option<usize>, limits: Limits) -> Result<Parsed, ParseError> {
    let meta_start = if data.len() >= 132 && &data[128..132] == b"DICM" {
        Some(132)
    } else if data.starts_with(b"DICM") {
        Some(4)
    } else if detect(data, 0).is_some() && data.get(0..2) == Some(&[0x02, 0x00]) {
        Some(0)
    } else {
        None
    };
    let meta = match meta_start {
        Some(start) => Some(read_meta(data, start)?),
        None => None,
    };
    let body_start = meta.as_ref().map_or(0, |m| m.end);
    let (ts_uid, encoding, deflated) = match meta.as_ref().and_then(|m| m.transfer_syntax.clone()) {
        Some(uid) => {
            let ts = TransferSyntaxRegistry
                .get(&uid)
                .ok_or_else(|| ParseError::UnsupportedTransferSyntax(uid.clone()))?;
            let deflated = matches!(ts.codec(), Codec::Dataset(_));
            // Implicit VR Little Endian is the only implicit transfer syntax.
            let encoding = match (ts.uid() != IMPLICIT_VR_LE, ts.endianness()) {
                (false, Endianness::Little) => Encoding::ImplicitLittle,
                (true, Endianness::Little) => Encoding::ExplicitLittle,
                (true, Endianness::Big) => Encoding::ExplicitBig,
                (false, Endianness::Big) => return Err(ParseError::UnsupportedTransferSyntax(uid)),
            };
            (uid, encoding, deflated)
        }
        None => {
            let enc = detect(data, body_start).ok_or_else(|| {
                ParseError::NotDicom(if meta.is_some() {
                    "file meta without a transfer syntax, and the data set is not recognisable"
                        .into()
                } else {
                    "no DICM preamble or file meta, and no data set".into()
                })
            })?;
            (enc.uid().to_string(), enc, false)
        }
    };
    if deflated && total.is_some() {
        return Err(ParseError::Malformed(
            "a deflated data set is read whole".into(),
        ));
    }
    let inflated;
    let body: &[u8] = if deflated {
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(&data[body_start..])
            .take(MAX_INFLATED + 1)
            .read_to_end(&mut out)
            .map_err(|_| ParseError::Malformed("the deflated data set does not inflate".into()))?;
        if out.len() as u64 > MAX_INFLATED {
            return Err(ParseError::TooLarge(
                "the deflated data set inflates beyond the size limit".into(),
            ));
        }
        inflated = out;
        &inflated
    } else {
        &data[body_start..]
    };
    let mut r = Reader::new(body, encoding, limits);
    if let Some(total) = total {
        r.complete = false;
        r.tail_end = total.checked_sub(body_start);
    }
    let elements = match r.dataset(End::Eof) {
        Ok(e) => e,
        // Without file meta, a file that breaks down within its first few elements was
        // probably never DICOM.
        Err(e)
            if meta.is_none()
                && r.elements < 4
                && !matches!(e, ParseError::TooDeep(_) | ParseError::TooLarge(_)) =>
        {
            return Err(ParseError::NotDicom(format!(
                "no DICM preamble or file meta, and the content is not a data set: {e}"
            )))
        }
        Err(e) => return Err(e),
    };
    if elements.is_empty() {
        return Err(ParseError::NotDicom("empty data set".into()));
    }
    Ok(Parsed {
        dataset: InMemDicomObject::from_element_iter(elements),
        transfer_syntax: ts_uid,
        encoding,
        deflated,
        had_meta: meta.is_some(),
        meta_sop_class: meta.and_then(|m| m.sop_class),
        pixel_tail: r.tail.map(|(vr, pos, len)| PixelTail {
            vr,
            offset: (body_start + pos) as u64,
            len,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(tag: (u16, u16), vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend(tag.0.to_le_bytes());
        v.extend(tag.1.to_le_bytes());
        v.extend(vr);
        v.extend((value.len() as u16).to_le_bytes());
        v.extend(value);
        v
    }

    /// Nested sequences of undefined length in Implicit VR Little Endian, `depth` deep.
    fn nested_implicit(depth: usize) -> Vec<u8> {
        let mut v = Vec::new();
        for _ in 0..depth {
            v.extend([0x08, 0x00, 0x15, 0x11, 0xFF, 0xFF, 0xFF, 0xFF]);
            v.extend([0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        }
        for _ in 0..depth {
            v.extend([0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
            v.extend([0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        }
        v
    }

    #[test]
    fn depth_and_element_limits_hold_also_inside_un() {
        let mut part10 = vec![0u8; 128];
        part10.extend(b"DICM");
        part10.extend(el((0x0002, 0x0010), b"UI", b"1.2.840.10008.1.2.1\0"));
        let head = [
            el((0x0008, 0x0016), b"UI", b"1.2.840.10008.5.1.4.1.1.2\0"),
            el((0x0008, 0x0018), b"UI", b"1.2.3.4\0"),
        ]
        .concat();
        // A standard sequence (Referenced Series Sequence) encoded as UN of defined length:
        // its content is read as implicit VR, within the limits of the file.
        let un = |depth: usize| {
            let inner = nested_implicit(depth);
            let mut v = Vec::new();
            v.extend(0x0008u16.to_le_bytes());
            v.extend(0x1115u16.to_le_bytes());
            v.extend(b"UN\0\0");
            // The UN holds the items of the outer sequence (its own header is the UN's).
            v.extend(((inner.len() - 16) as u32).to_le_bytes());
            v.extend(&inner[8..inner.len() - 8]);
            v
        };
        let file = |depth| [part10.clone(), head.clone(), un(depth)].concat();
        assert!(parse(&file(10)).is_ok(), "{:?}", parse(&file(10)).err());
        assert!(
            matches!(parse(&file(100)), Err(ParseError::TooDeep(_))),
            "{:?}",
            parse(&file(100)).err()
        );
        let limits = Limits {
            max_depth: 8,
            ..Limits::default()
        };
        assert!(matches!(
            parse_within(&file(10), limits),
            Err(ParseError::TooDeep(_))
        ));
        let limits = Limits {
            max_elements: 5,
            ..Limits::default()
        };
        assert!(matches!(
            parse_within(&file(10), limits),
            Err(ParseError::TooLarge(_))
        ));
        let limits = Limits {
            max_file_bytes: 100,
            ..Limits::default()
        };
        assert!(matches!(
            parse_within(&file(10), limits),
            Err(ParseError::TooLarge(_))
        ));
    }

    #[test]
    fn head_leaves_final_pixel_data_in_the_file() {
        let mut file = vec![0u8; 128];
        file.extend(b"DICM");
        file.extend(el((0x0002, 0x0010), b"UI", b"1.2.840.10008.1.2.1\0"));
        file.extend(el((0x0008, 0x0016), b"UI", b"1.2.3\0"));
        file.extend(el((0x0010, 0x0010), b"PN", b"Doe^J "));
        let pixels: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        let mut pixel_el = vec![0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0];
        pixel_el.extend((pixels.len() as u32).to_le_bytes());
        let value_at = file.len() + pixel_el.len();
        pixel_el.extend(&pixels);
        let whole = [file.clone(), pixel_el.clone()].concat();
        let total = whole.len() as u64;

        let head = parse_head(&whole[..4096], total).expect("pixel data ends the file");
        let tail = head.pixel_tail.expect("left in the file");
        assert_eq!(tail.offset as usize, value_at);
        assert_eq!(tail.len as usize, pixels.len());
        assert_eq!(tail.vr, VR::OW);
        let full = parse(&whole).unwrap();
        assert!(full.pixel_tail.is_none());
        let mut rest = full.dataset.clone();
        rest.remove_element(PIXEL_DATA);
        assert_eq!(head.dataset, rest);

        // Something after the pixel data, a truncated file, a head that ends before the pixel
        // data, a whole file: not for the head path.
        let padding = [0xFC, 0xFF, 0xFC, 0xFF, b'O', b'B', 0, 0, 2, 0, 0, 0, 0, 0];
        let padded = [whole.clone(), padding.to_vec()].concat();
        assert!(parse(&padded).is_ok());
        assert!(parse_head(&padded[..4096], padded.len() as u64).is_none());
        assert!(parse_head(&whole[..4096], total - 2).is_none());
        assert!(parse_head(&whole[..150], total).is_none());
        assert!(parse_head(&whole, total).is_none());
    }

    #[test]
    fn vr_bytes_agree_with_dicom_core() {
        for a in b'A'..=b'Z' {
            for b in b'A'..=b'Z' {
                assert_eq!(
                    vr_of([a, b]),
                    VR::from_binary([a, b]),
                    "{}{}",
                    a as char,
                    b as char
                );
            }
        }
    }

    #[test]
    fn bare_explicit_dataset_is_detected() {
        let mut d = el((0x0008, 0x0016), b"UI", b"1.2.3\0");
        d.extend(el((0x0010, 0x0010), b"PN", b"Doe^J "));
        let p = parse(&d).unwrap();
        assert_eq!(p.encoding, Encoding::ExplicitLittle);
        assert!(!p.had_meta);
        assert_eq!(p.dataset.iter().count(), 2);
        let pn = p.dataset.get(Tag(0x0010, 0x0010)).unwrap();
        assert_eq!(pn.vr(), VR::PN);
        assert_eq!(pn.value().to_bytes().unwrap().as_ref(), b"Doe^J ");
    }

    #[test]
    fn truncation_and_garbage() {
        let d = el((0x0010, 0x0010), b"PN", b"Doe^John");
        assert!(matches!(
            parse(&d[..d.len() - 3]),
            Err(ParseError::NotDicom(_))
        ));
        assert!(matches!(
            parse(b"hello, this is not DICOM at all"),
            Err(ParseError::NotDicom(_))
        ));
        assert!(matches!(parse(b""), Err(ParseError::NotDicom(_))));
        let mut part10 = vec![0u8; 128];
        part10.extend(b"DICM");
        part10.extend(el((0x0002, 0x0010), b"UI", b"1.2.840.10008.1.2.1\0"));
        let mut body = Vec::new();
        for i in 0..5u16 {
            body.extend(el((0x0008, 0x0100 + i), b"SH", b"ABCD"));
        }
        let full = [part10.clone(), body.clone()].concat();
        assert!(parse(&full).is_ok());
        let cut = &full[..full.len() - 2];
        assert!(
            matches!(parse(cut), Err(ParseError::Truncated(_))),
            "{:?}",
            parse(cut)
        );
        let mut unknown = part10.clone();
        unknown.truncate(132);
        unknown.extend(el((0x0002, 0x0010), b"UI", b"1.2.3.4.5\0"));
        unknown.extend(&body);
        assert_eq!(
            parse(&unknown).unwrap_err(),
            ParseError::UnsupportedTransferSyntax("1.2.3.4.5".into())
        );
    }
}
