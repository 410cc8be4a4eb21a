//! Writing a pseudonymised object as a DICOM Part 10 file with dicom-rs: preamble, `DICM`, a
//! new file meta group, and the data set in the transfer syntax the object came in (deflated
//! again when it came deflated). Pixel data is written as it was read.

use std::io::{BufWriter, Write};

use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::{FileMetaTable, InMemDicomObject};
use dicom_parser::dataset::write::DataSetWriter;
use dicom_parser::dataset::IntoTokens;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::encode::{self, Unencodable};
use super::parse::Encoding;

/// The Implementation Class UID of files written by registrar:
/// `"2.25."` + the first 16 bytes of SHA-256(`"registrar/dicom/implementation-class/v1"`).
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.262927202838867826553424655523046979165";

/// The Implementation Version Name (at most 16 characters).
pub const IMPLEMENTATION_VERSION_NAME: &str = "REGISTRAR_0_1";

/// Writing failed (I/O, or dicom-rs refused the object).
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The output could not be written.
    #[error("cannot write: {0}")]
    Io(#[from] std::io::Error),
    /// dicom-rs could not encode the object.
    #[error("cannot encode the DICOM object: {0}")]
    Encode(String),
}

/// The file meta group of an output file.
pub(crate) fn file_meta(
    sop_class: &str,
    sop_instance: &str,
    transfer_syntax: &str,
) -> FileMetaTable {
    let mut meta = FileMetaTable {
        information_group_length: 0,
        information_version: [0, 1],
        media_storage_sop_class_uid: sop_class.to_string(),
        media_storage_sop_instance_uid: sop_instance.to_string(),
        transfer_syntax: transfer_syntax.to_string(),
        implementation_class_uid: IMPLEMENTATION_CLASS_UID.to_string(),
        implementation_version_name: Some(IMPLEMENTATION_VERSION_NAME.to_string()),
        source_application_entity_title: None,
        sending_application_entity_title: None,
        receiving_application_entity_title: None,
        private_information_creator_uid: None,
        private_information: None,
    };
    meta.update_information_group_length();
    meta
}

fn write_dataset<W: Write>(to: W, obj: InMemDicomObject, enc: Encoding) -> Result<(), WriteError> {
    let ts = TransferSyntaxRegistry
        .get(enc.uid())
        .expect("the three base transfer syntaxes are registered");
    let mut w = DataSetWriter::with_ts(to, ts).map_err(|e| WriteError::Encode(e.to_string()))?;
    w.write_sequence(obj.into_tokens())
        .map_err(|e| WriteError::Encode(e.to_string()))?;
    Ok(())
}

/// Encodes `obj` into `out`; gives the object back when it holds values the encoder does not
/// (for dicom-rs's writer), with `out` as it was.
fn encode_or_return(
    out: &mut Vec<u8>,
    obj: InMemDicomObject,
    enc: Encoding,
) -> Result<Option<InMemDicomObject>, WriteError> {
    let start = out.len();
    match encode::dataset(out, &obj, enc) {
        Ok(()) => Ok(None),
        Err(Unencodable::TooLong(tag)) => Err(WriteError::Encode(format!(
            "the value of ({:04X},{:04X}) is too long for its VR",
            tag.0, tag.1
        ))),
        Err(Unencodable::ValueType) => {
            out.truncate(start);
            Ok(Some(obj))
        }
    }
}

thread_local! {
    /// Each thread's encoding buffer, reused from file to file.
    static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Writes preamble, `DICM`, meta, data set and `trailer` (bytes that follow the data set: the
/// header of pixel data copied afterwards; not for deflated data sets), in one write call for
/// an uncompressed data set. The data set is encoded by [`encode`](super::encode) (dicom-rs's
/// writer for values that encoder does not hold).
pub(crate) fn write_part10<W: Write>(
    mut to: W,
    meta: &FileMetaTable,
    obj: InMemDicomObject,
    enc: Encoding,
    deflated: bool,
    trailer: &[u8],
) -> Result<(), WriteError> {
    debug_assert!(!deflated || trailer.is_empty());
    BUFFER.with(|cell| {
        let mut taken = cell.take();
        taken.clear();
        let buf = &mut taken;
        buf.extend_from_slice(&[0u8; 128]);
        buf.extend_from_slice(b"DICM");
        encode::file_meta(buf, meta);
        let result = (|| {
            // Writers that go in small pieces (deflate, dicom-rs) get a buffer; the encoded
            // data set goes out in one call.
            if deflated {
                let mut w = BufWriter::with_capacity(64 << 10, &mut to);
                w.write_all(buf)?;
                buf.clear();
                let mut z =
                    flate2::write::DeflateEncoder::new(&mut w, flate2::Compression::default());
                match encode_or_return(buf, obj, enc)? {
                    None => z.write_all(buf)?,
                    Some(obj) => write_dataset(&mut z, obj, enc)?,
                }
                z.finish()?;
                w.flush()?;
            } else {
                let head = buf.len();
                match encode_or_return(buf, obj, enc)? {
                    None => {
                        buf.extend_from_slice(trailer);
                        to.write_all(buf)?;
                    }
                    Some(obj) => {
                        let mut w = BufWriter::with_capacity(64 << 10, &mut to);
                        w.write_all(&buf[..head])?;
                        write_dataset(&mut w, obj, enc)?;
                        w.write_all(trailer)?;
                        w.flush()?;
                    }
                }
            }
            to.flush()?;
            Ok(())
        })();
        // Keep the buffer for the next file unless it grew unusually large.
        if taken.capacity() <= 8 << 20 {
            cell.replace(taken);
        }
        result
    })
}

fn uid_text(obj: &InMemDicomObject, tag: dicom_core::Tag) -> String {
    use dicom_core::value::Value;
    use dicom_core::PrimitiveValue;
    let s = match obj.get(tag).map(|e| e.value()) {
        Some(Value::Primitive(PrimitiveValue::U8(b))) => b.iter().map(|&c| c as char).collect(),
        Some(Value::Primitive(p)) => p.to_str().into_owned(),
        _ => String::new(),
    };
    s.trim_matches(|c: char| c == '\0' || c == ' ').to_string()
}

/// Writes any data set as a Part 10 file in `transfer_syntax`, with a file meta taken from the
/// data set's SOP Class and SOP Instance UIDs. Values are written as they are held (see
/// [`parse`](super::parse)); encapsulated transfer syntaxes need encapsulated pixel data. For
/// tools and tests that prepare inputs; pseudonymised objects are written with
/// [`Prepared::write_to`](super::Prepared::write_to).
pub fn write_file<W: Write>(
    to: W,
    dataset: InMemDicomObject,
    transfer_syntax: &str,
) -> Result<(), WriteError> {
    let ts = TransferSyntaxRegistry
        .get(transfer_syntax)
        .ok_or_else(|| WriteError::Encode(format!("unknown transfer syntax {transfer_syntax}")))?;
    let deflated = matches!(
        ts.codec(),
        dicom_encoding::transfer_syntax::Codec::Dataset(_)
    );
    let enc = match transfer_syntax {
        super::parse::IMPLICIT_VR_LE => Encoding::ImplicitLittle,
        super::parse::EXPLICIT_VR_BE => Encoding::ExplicitBig,
        _ => Encoding::ExplicitLittle,
    };
    let meta = file_meta(
        &uid_text(&dataset, dicom_core::Tag(0x0008, 0x0016)),
        &uid_text(&dataset, dicom_core::Tag(0x0008, 0x0018)),
        transfer_syntax,
    );
    write_part10(to, &meta, dataset, enc, deflated, &[])
}
