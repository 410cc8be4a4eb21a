//! Encoding pseudonymised data sets, straight from the in-memory model to bytes.
//!
//! The values this crate holds are the file's own bytes ([`parse`](super::parse)), DS and IS
//! as text, or empty; sequences of undefined length; encapsulated pixel fragments. Encoding
//! them needs no text codec and no token stream, so it is done here in one pass into one
//! buffer. The bytes are those dicom-rs's `DataSetWriter` gives for the same object (tests
//! compare the two on every test file), except for a value of odd length, which dicom-rs
//! pads without counting the pad in the length: here the length includes it.

use dicom_core::header::Header as _;
use dicom_core::value::{PrimitiveValue, Value};
use dicom_core::{Tag, VR};
use dicom_object::{FileMetaTable, InMemDicomObject};

use super::parse::{is_text, long_length, Elem, Encoding};

const UNDEFINED: u32 = 0xFFFF_FFFF;
const ITEM: Tag = Tag(0xFFFE, 0xE000);
const ITEM_DELIMITER: Tag = Tag(0xFFFE, 0xE00D);
const SEQUENCE_DELIMITER: Tag = Tag(0xFFFE, 0xE0DD);

/// What this encoder does not handle; the caller encodes with dicom-rs instead (or refuses).
#[derive(Debug)]
pub(crate) enum Unencodable {
    /// A value type other than bytes, text, or empty (numbers held as numbers).
    ValueType,
    /// A value longer than its VR's 16-bit length field allows in an explicit VR encoding.
    TooLong(Tag),
}

struct Encoder<'a> {
    out: &'a mut Vec<u8>,
    little: bool,
    explicit: bool,
}

impl<'a> Encoder<'a> {
    fn new(out: &'a mut Vec<u8>, enc: Encoding) -> Self {
        Encoder {
            out,
            little: enc != Encoding::ExplicitBig,
            explicit: enc != Encoding::ImplicitLittle,
        }
    }

    fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&if self.little {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        });
    }

    fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&if self.little {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        });
    }

    fn tag(&mut self, t: Tag) {
        self.u16(t.0);
        self.u16(t.1);
    }

    /// An item or delimiter header (no VR in any encoding).
    fn item(&mut self, t: Tag, len: u32) {
        self.tag(t);
        self.u32(len);
    }

    fn header(&mut self, tag: Tag, vr: VR, len: u32) -> Result<(), Unencodable> {
        self.tag(tag);
        if !self.explicit {
            self.u32(len);
        } else if long_length(vr) {
            self.out.extend_from_slice(&vr.to_bytes());
            self.out.extend_from_slice(&[0, 0]);
            self.u32(len);
        } else {
            let len = u16::try_from(len).map_err(|_| Unencodable::TooLong(tag))?;
            self.out.extend_from_slice(&vr.to_bytes());
            self.u16(len);
        }
        Ok(())
    }

    fn dataset(&mut self, obj: &InMemDicomObject) -> Result<(), Unencodable> {
        for e in obj.iter() {
            self.element(e)?;
        }
        Ok(())
    }

    fn element(&mut self, e: &Elem) -> Result<(), Unencodable> {
        let (tag, vr) = (e.tag(), e.vr());
        match e.value() {
            Value::Primitive(p) => self.primitive(tag, vr, p),
            Value::Sequence(seq) => {
                self.header(tag, VR::SQ, UNDEFINED)?;
                for item in seq.items() {
                    self.item(ITEM, UNDEFINED);
                    self.dataset(item)?;
                    self.item(ITEM_DELIMITER, 0);
                }
                self.item(SEQUENCE_DELIMITER, 0);
                Ok(())
            }
            Value::PixelSequence(ps) => {
                self.header(tag, VR::OB, UNDEFINED)?;
                let table = ps.offset_table();
                self.item(ITEM, (table.len() * 4) as u32);
                for &o in table {
                    self.u32(o);
                }
                for f in ps.fragments() {
                    self.item(ITEM, f.len() as u32);
                    self.out.extend_from_slice(f);
                }
                self.item(SEQUENCE_DELIMITER, 0);
                Ok(())
            }
        }
    }

    fn primitive(&mut self, tag: Tag, vr: VR, p: &PrimitiveValue) -> Result<(), Unencodable> {
        let pad = if vr == VR::UI || !is_text(vr) {
            0
        } else {
            b' '
        };
        match p {
            PrimitiveValue::Empty => self.header(tag, vr, 0),
            PrimitiveValue::U8(b) => self.bytes(tag, vr, b, pad),
            PrimitiveValue::Str(s) => self.bytes(tag, vr, s.as_bytes(), pad),
            PrimitiveValue::Strs(list) => {
                let joined = list.join("\\");
                self.bytes(tag, vr, joined.as_bytes(), pad)
            }
            _ => Err(Unencodable::ValueType),
        }
    }

    fn bytes(&mut self, tag: Tag, vr: VR, b: &[u8], pad: u8) -> Result<(), Unencodable> {
        let odd = b.len() % 2;
        let len = u32::try_from(b.len() + odd).map_err(|_| Unencodable::TooLong(tag))?;
        self.header(tag, vr, len)?;
        self.out.extend_from_slice(b);
        if odd == 1 {
            self.out.push(pad);
        }
        Ok(())
    }
}

/// Appends `obj` encoded in `enc` to `out`. On error `out` may hold part of the encoding.
pub(crate) fn dataset(
    out: &mut Vec<u8>,
    obj: &InMemDicomObject,
    enc: Encoding,
) -> Result<(), Unencodable> {
    Encoder::new(out, enc).dataset(obj)
}

/// Appends one element header (tag, the VR where `enc` has one, length) to `out`.
pub(crate) fn element_header(
    out: &mut Vec<u8>,
    tag: Tag,
    vr: VR,
    len: u32,
    enc: Encoding,
) -> Result<(), Unencodable> {
    Encoder::new(out, enc).header(tag, vr, len)
}

/// Appends the file meta group (explicit VR little endian, with its group length) to `out`.
pub(crate) fn file_meta(out: &mut Vec<u8>, meta: &FileMetaTable) {
    let mut body = Vec::with_capacity(256);
    let mut e = Encoder::new(&mut body, Encoding::ExplicitLittle);
    let short = "file meta values are short";
    e.bytes(Tag(0x0002, 0x0001), VR::OB, &meta.information_version, 0)
        .expect(short);
    for (element, uid) in [
        (0x0002, &meta.media_storage_sop_class_uid),
        (0x0003, &meta.media_storage_sop_instance_uid),
        (0x0010, &meta.transfer_syntax),
        (0x0012, &meta.implementation_class_uid),
    ] {
        let uid = uid.trim_end_matches('\0').as_bytes();
        e.bytes(Tag(0x0002, element), VR::UI, uid, 0).expect(short);
    }
    if let Some(name) = &meta.implementation_version_name {
        e.bytes(
            Tag(0x0002, 0x0013),
            VR::SH,
            name.trim_end().as_bytes(),
            b' ',
        )
        .expect(short);
    }
    let mut g = Encoder::new(out, Encoding::ExplicitLittle);
    g.header(Tag(0x0002, 0x0000), VR::UL, 4).expect(short);
    g.u32(body.len() as u32);
    out.extend_from_slice(&body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dateshift::DatePolicy;
    use crate::dicom::{parse, DicomProfile, DicomPseudonymiser, Outcome};
    use crate::key::Key;
    use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
    use dicom_parser::dataset::write::DataSetWriter;
    use dicom_parser::dataset::IntoTokens;
    use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

    fn dicom_rs(obj: &InMemDicomObject, enc: Encoding) -> Vec<u8> {
        let ts = TransferSyntaxRegistry.get(enc.uid()).unwrap();
        let mut out = Vec::new();
        let mut w = DataSetWriter::with_ts(&mut out, ts).unwrap();
        w.write_sequence(obj.clone().into_tokens()).unwrap();
        drop(w);
        out
    }

    fn ours(obj: &InMemDicomObject, enc: Encoding) -> Vec<u8> {
        let mut out = Vec::new();
        dataset(&mut out, obj, enc).unwrap();
        out
    }

    /// Every test file, as read and as pseudonymised, in its own encoding and the other two:
    /// the same bytes as dicom-rs's writer.
    #[test]
    fn same_bytes_as_dicom_rs() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/dicom");
        let d = DicomPseudonymiser::new(
            Key::from_bytes([7u8; 32])
                .domain("registry")
                .unwrap()
                .pseudonymiser(),
            DatePolicy::default(),
            &DicomProfile::default(),
        )
        .unwrap();
        let mut compared = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "dcm") {
                continue;
            }
            let data = std::fs::read(&path).unwrap();
            let Ok(parsed) = parse::parse(&data) else {
                continue;
            };
            let encapsulated = parsed
                .dataset
                .iter()
                .any(|e| matches!(e.value(), dicom_core::value::Value::PixelSequence(_)));
            let mut objects = vec![parsed.dataset.clone()];
            if let Outcome::Pseudonymised(p) = d.pseudonymise(&data) {
                objects.push(p.dataset().clone());
            }
            for obj in &objects {
                for enc in [
                    Encoding::ExplicitLittle,
                    Encoding::ImplicitLittle,
                    Encoding::ExplicitBig,
                ] {
                    if encapsulated && enc == Encoding::ExplicitBig {
                        continue;
                    }
                    assert!(
                        ours(obj, enc) == dicom_rs(obj, enc),
                        "{} in {enc:?}",
                        path.display()
                    );
                    compared += 1;
                }
            }
        }
        assert!(compared > 40, "{compared}");
    }

    #[test]
    fn odd_values_are_padded_within_their_length() {
        let mut obj = InMemDicomObject::new_empty();
        obj.put(Elem::new(
            Tag(0x0010, 0x0010),
            VR::PN,
            PrimitiveValue::U8(b"Doe".as_slice().into()),
        ));
        obj.put(Elem::new(
            Tag(0x0008, 0x0018),
            VR::UI,
            PrimitiveValue::U8(b"1.2.3".as_slice().into()),
        ));
        let b = ours(&obj, Encoding::ExplicitLittle);
        assert_eq!(&b[..8], &[0x08, 0, 0x18, 0, b'U', b'I', 6, 0]);
        assert_eq!(&b[8..14], b"1.2.3\0");
        assert_eq!(&b[14..22], &[0x10, 0, 0x10, 0, b'P', b'N', 4, 0]);
        assert_eq!(&b[22..], b"Doe ");
        // A short-length VR cannot hold more than 65535 bytes in explicit VR.
        let mut long = InMemDicomObject::new_empty();
        long.put(Elem::new(
            Tag(0x0008, 0x0080),
            VR::LO,
            PrimitiveValue::U8(vec![b'a'; 70_000].into()),
        ));
        let mut out = Vec::new();
        assert!(matches!(
            dataset(&mut out, &long, Encoding::ExplicitLittle),
            Err(Unencodable::TooLong(_))
        ));
        out.clear();
        assert!(dataset(&mut out, &long, Encoding::ImplicitLittle).is_ok());
    }

    #[test]
    fn file_meta_matches_dicom_rs() {
        for (class, instance) in [
            ("1.2.840.10008.5.1.4.1.1.2", "2.25.1234"),
            ("1.2.3", "1.2.34"),
        ] {
            for ts in ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"] {
                let meta = super::super::write::file_meta(class, instance, ts);
                let mut ours = Vec::new();
                file_meta(&mut ours, &meta);
                let mut theirs = Vec::new();
                meta.write(&mut theirs).unwrap();
                assert_eq!(ours, theirs, "{class} {instance} {ts}");
            }
        }
    }
}
