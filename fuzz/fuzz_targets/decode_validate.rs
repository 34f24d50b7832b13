//! Fuzz target: an HTTP body (optionally gzip, NDJSON or a JSON array) is
//! decoded into lines and every line validated against the example
//! clickstream schema. Nothing may panic; every line is either an event with
//! id and time or a rejection with a reason.

#![no_main]

use std::sync::LazyLock;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice_connectors::sources::http::decode_body;
use sluice_core::{Event, split_lines};
use sluice_schema::ValidateTransform;

static VALIDATOR: LazyLock<ValidateTransform> = LazyLock::new(|| {
    let schema = serde_json::from_str(include_str!(
        "../../examples/clickstream/schemas/clickstream.schema.json"
    ))
    .expect("the example schema is JSON");
    ValidateTransform::new(&schema, "/event_id", "/ts").expect("the example schema compiles")
});

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let encoding = if mode & 1 == 1 { Some("gzip") } else { None };
    let content_type = if mode & 2 == 2 {
        Some("application/json")
    } else {
        Some("application/x-ndjson")
    };
    let Ok(payload) = decode_body(encoding, content_type, Bytes::copy_from_slice(body), 1 << 20) else {
        return;
    };
    for (line, bytes) in split_lines(&payload) {
        let mut event = Event::from_line(line, bytes);
        match VALIDATOR.check(&mut event) {
            Ok(()) => assert!(event.id.is_some() && event.time_us.is_some()),
            Err((reason, _)) => assert!(!reason.is_empty()),
        }
    }
});
