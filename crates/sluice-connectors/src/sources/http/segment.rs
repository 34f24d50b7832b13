//! Segment's HTTP tracking API on the collector (`protocol = "segment"`):
//! `POST /v1/batch` (`{"batch": [...], "sentAt": ...}`) and one message
//! per request on `/v1/track`, `/identify`, `/page`, `/screen`, `/group`,
//! `/alias`. Each message becomes one event line, completed as Segment
//! completes it on receipt:
//!
//! * `type` from the path when the message has none;
//! * `messageId` kept (the event id a `validate` transform takes with
//!   `event_id = "/messageId"`), or made up (a UUID) when missing;
//! * `receivedAt`: when the collector got the request;
//! * `originalTimestamp`: the client's `timestamp`; `timestamp` corrected
//!   for the client's clock skew when `sentAt` is known
//!   (`receivedAt - (sentAt - timestamp)`), else the client's, else
//!   `receivedAt`;
//! * `sentAt` from the batch when the message has none.
//!
//! Anything that is not an object (in `batch`, or as the body) is kept as
//! its own line, so it reaches the dead-letter store with its bytes.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

/// The message types Segment's API takes, each at `/v1/<type>`.
pub const TYPES: [&str; 6] = ["track", "identify", "page", "screen", "group", "alias"];

/// The event lines of a request to `/v1/<kind>` (`kind` = `batch` or a
/// type) received at `received_at`; `Err` when the body is not JSON.
pub fn lines(kind: &str, body: &[u8], received_at: DateTime<Utc>) -> Result<Vec<u8>, String> {
    let body: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let (messages, sent_at) = match (kind, body) {
        ("batch", Value::Object(mut request)) => match request.remove("batch") {
            Some(Value::Array(messages)) => (messages, request.remove("sentAt")),
            _ => return Err("a batch request needs a \"batch\" array".into()),
        },
        ("batch", _) => return Err("a batch request is a JSON object".into()),
        (_, message) => (vec![message], None),
    };
    let received = received_at.to_rfc3339_opts(SecondsFormat::Millis, true);
    let mut out = Vec::new();
    for message in messages {
        let line = match message {
            Value::Object(mut m) => {
                complete(&mut m, kind, sent_at.as_ref(), received_at, &received);
                Value::Object(m).to_string()
            }
            other => other.to_string(),
        };
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    Ok(out)
}

fn complete(
    m: &mut Map<String, Value>,
    kind: &str,
    batch_sent_at: Option<&Value>,
    received_at: DateTime<Utc>,
    received: &str,
) {
    if kind != "batch" && !m.contains_key("type") {
        m.insert("type".into(), kind.into());
    }
    if !m.get("messageId").is_some_and(Value::is_string) {
        m.insert("messageId".into(), uuid::Uuid::new_v4().to_string().into());
    }
    if let (None, Some(sent_at)) = (m.get("sentAt"), batch_sent_at) {
        m.insert("sentAt".into(), sent_at.clone());
    }
    m.insert("receivedAt".into(), received.into());
    let time = |key: &str| {
        m.get(key)
            .and_then(Value::as_str)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let (timestamp, sent_at) = (time("timestamp"), time("sentAt"));
    let corrected = match (timestamp, sent_at) {
        (Some(t), Some(s)) => received_at - (s - t),
        (Some(t), None) => t,
        (None, _) => received_at,
    };
    if let Some(original) = m.get("timestamp").cloned() {
        m.insert("originalTimestamp".into(), original);
    }
    m.insert(
        "timestamp".into(),
        corrected.to_rfc3339_opts(SecondsFormat::Millis, true).into(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn parsed(lines: &[u8]) -> Vec<Value> {
        std::str::from_utf8(lines)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or(Value::String(l.into())))
            .collect()
    }

    #[test]
    fn a_batch_corrects_each_timestamp_for_the_clients_clock_skew() {
        // The client's clock is 10 s behind: it sent at 11:59:50 what
        // arrived at 12:00:00.
        let body = br#"{"sentAt":"2026-12-03T11:59:50.000Z","batch":[
            {"type":"track","event":"Order Completed","messageId":"m1","timestamp":"2026-12-03T11:59:40.000Z"},
            {"type":"identify","userId":"u1"},
            "not a message"
        ]}"#;
        let out = parsed(&lines("batch", body, at("2026-12-03T12:00:00Z")).unwrap());
        assert_eq!(out.len(), 3);
        assert_eq!(out[0]["messageId"], "m1");
        assert_eq!(out[0]["originalTimestamp"], "2026-12-03T11:59:40.000Z");
        assert_eq!(out[0]["timestamp"], "2026-12-03T11:59:50.000Z");
        assert_eq!(out[0]["receivedAt"], "2026-12-03T12:00:00.000Z");
        assert_eq!(out[0]["sentAt"], "2026-12-03T11:59:50.000Z");
        assert_eq!(
            out[1]["timestamp"], "2026-12-03T12:00:00.000Z",
            "none given: receivedAt"
        );
        assert!(out[1]["messageId"].as_str().is_some_and(|id| id.len() == 36), "made up");
        assert_eq!(out[2], "not a message", "kept as its own line, for its dead letter");
    }

    #[test]
    fn a_single_call_takes_its_type_from_the_path() {
        let body = br#"{"userId":"u1","event":"Signed Up","messageId":"m2","timestamp":"2026-12-03T11:00:00Z"}"#;
        let out = parsed(&lines("track", body, at("2026-12-03T12:00:00Z")).unwrap());
        assert_eq!(out[0]["type"], "track");
        assert_eq!(out[0]["timestamp"], "2026-12-03T11:00:00.000Z", "no sentAt: kept");
        assert!(lines("batch", b"[1]", Utc::now()).is_err());
        assert!(lines("track", b"{", Utc::now()).is_err());
    }
}
