//! Turning a request body into an NDJSON batch payload.
//!
//! * `Content-Encoding`: none, `identity` or `gzip` (decompressed up to a cap,
//!   so a gzip bomb is refused, not inflated).
//! * `Content-Type`: none, `application/x-ndjson`, `application/jsonl`,
//!   `application/json` or `text/plain`. A JSON body whose first non-blank
//!   byte is `[` is an array of events: each element becomes one line (line
//!   breaks between tokens become spaces; inside JSON strings they are always
//!   escaped, so values are unchanged). A body that is not a valid array is
//!   kept line by line, so its lines reach the dead-letter store.

use std::io::Read;

use bytes::Bytes;
use serde_json::value::RawValue;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("unsupported Content-Encoding {0:?}; use gzip or none")]
    UnsupportedEncoding(String),
    #[error("unsupported Content-Type {0:?}; use application/x-ndjson or application/json")]
    UnsupportedContentType(String),
    #[error("body is not valid gzip: {0}")]
    BadGzip(String),
    #[error("body is larger than {0} bytes after decompression")]
    TooLarge(usize),
}

/// Decodes a body into NDJSON; `max_decompressed` caps gzip output.
pub fn decode_body(
    encoding: Option<&str>,
    content_type: Option<&str>,
    body: Bytes,
    max_decompressed: usize,
) -> Result<Bytes, BodyError> {
    let media = content_type.map(|c| c.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    let json = match media.as_deref() {
        None
        | Some("")
        | Some("application/x-ndjson")
        | Some("application/jsonl")
        | Some("application/ndjson")
        | Some("text/plain") => false,
        Some("application/json") => true,
        Some(other) => return Err(BodyError::UnsupportedContentType(other.to_string())),
    };
    let body = match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("identity") => body,
        Some("gzip") | Some("x-gzip") => gunzip(&body, max_decompressed)?,
        Some(other) => return Err(BodyError::UnsupportedEncoding(other.to_string())),
    };
    let starts_array = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    if json
        && starts_array
        && let Ok(items) = serde_json::from_slice::<Vec<&RawValue>>(&body)
    {
        let mut out = Vec::with_capacity(body.len());
        for item in items {
            crate::sources::message_body::push_one_line(item.get().as_bytes(), &mut out);
        }
        return Ok(Bytes::from(out));
    }
    Ok(body)
}

fn gunzip(body: &[u8], max: usize) -> Result<Bytes, BodyError> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(body)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| BodyError::BadGzip(e.to_string()))?;
    if out.len() > max {
        return Err(BodyError::TooLarge(max));
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Bytes {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        Bytes::from(e.finish().unwrap())
    }

    #[test]
    fn ndjson_passes_through() {
        let body = Bytes::from_static(b"{\"a\":1}\n{\"a\":2}\n");
        assert_eq!(
            decode_body(None, Some("application/x-ndjson"), body.clone(), 100).unwrap(),
            body
        );
    }

    #[test]
    fn json_array_becomes_one_line_per_element() {
        let body = Bytes::from_static(b" [ {\"a\":\n 1}, {\"s\":\"x\\ny\"}, 3 ]");
        let out = decode_body(None, Some("application/json; charset=utf-8"), body, 100).unwrap();
        assert_eq!(out, Bytes::from_static(b"{\"a\":  1}\n{\"s\":\"x\\ny\"}\n3\n"));
    }

    #[test]
    fn broken_array_is_kept_for_dead_letters() {
        let body = Bytes::from_static(b"[{\"a\":1},\n{\"b\":");
        assert_eq!(
            decode_body(None, Some("application/json"), body.clone(), 100).unwrap(),
            body
        );
    }

    #[test]
    fn gzip_is_decoded_and_bombs_refused() {
        let plain = b"{\"a\":1}\n".repeat(100);
        assert_eq!(
            decode_body(Some("gzip"), None, gz(&plain), 10_000).unwrap(),
            Bytes::from(plain.clone())
        );
        assert_eq!(
            decode_body(Some("gzip"), None, gz(&plain), 100),
            Err(BodyError::TooLarge(100))
        );
        assert!(matches!(
            decode_body(Some("gzip"), None, Bytes::from_static(b"nope"), 100),
            Err(BodyError::BadGzip(_))
        ));
    }

    #[test]
    fn unknown_encodings_and_types_are_refused() {
        assert!(matches!(
            decode_body(Some("br"), None, Bytes::new(), 1),
            Err(BodyError::UnsupportedEncoding(_))
        ));
        assert!(matches!(
            decode_body(None, Some("image/png"), Bytes::new(), 1),
            Err(BodyError::UnsupportedContentType(_))
        ));
    }
}
