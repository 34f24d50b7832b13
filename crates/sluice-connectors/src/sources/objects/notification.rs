//! Object-created notifications: S3 event JSON (`{"Records": [...]}`), the
//! same inside an SNS envelope (`{"Type": "Notification", "Message":
//! "..."}`), or an EventBridge "Object Created" event, as a JetStream
//! or SQS message body. Only what they say about created objects is kept; S3's test
//! event and other event names (removals) announce nothing.

use serde_json::Value;

/// An object a notification says was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub bucket: String,
    /// The key, URL-decoded (S3 event records encode it as a form value).
    pub key: String,
    pub size: Option<u64>,
    /// As the notification gives it (S3 leaves out the quotes a listing shows).
    pub etag: Option<String>,
}

/// The created objects `payload` announces; an error says why it is not a notification.
pub fn parse(payload: &[u8]) -> Result<Vec<Created>, String> {
    let value: Value = serde_json::from_slice(payload).map_err(|e| format!("not JSON: {e}"))?;
    parse_value(&value, 0)
}

fn parse_value(value: &Value, depth: u8) -> Result<Vec<Created>, String> {
    let object = value.as_object().ok_or("not a JSON object")?;
    if let Some(message) = object.get("Message").and_then(Value::as_str)
        && object.get("Type").and_then(Value::as_str) == Some("Notification")
    {
        if depth > 0 {
            return Err("an SNS envelope inside an SNS envelope".into());
        }
        let inner: Value = serde_json::from_str(message).map_err(|e| format!("SNS Message is not JSON: {e}"))?;
        return parse_value(&inner, depth + 1);
    }
    if object.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Vec::new());
    }
    if let Some(records) = object.get("Records") {
        let records = records.as_array().ok_or("Records is not an array")?;
        return records.iter().filter_map(|r| s3_record(r).transpose()).collect();
    }
    if let Some(kind) = object.get("detail-type").and_then(Value::as_str) {
        if kind != "Object Created" {
            return Ok(Vec::new());
        }
        let detail = object.get("detail").ok_or("EventBridge event without detail")?;
        let bucket = text(detail, &["bucket", "name"])?;
        let key = text(detail, &["object", "key"])?;
        return Ok(vec![Created {
            bucket,
            key,
            size: detail.pointer("/object/size").and_then(Value::as_u64),
            etag: detail
                .pointer("/object/etag")
                .and_then(Value::as_str)
                .map(str::to_string),
        }]);
    }
    Err("not an S3 event notification (no Records, SNS Message or EventBridge detail-type)".into())
}

/// One record of an S3 event, if it announces a created object.
fn s3_record(record: &Value) -> Result<Option<Created>, String> {
    let name = record
        .get("eventName")
        .and_then(Value::as_str)
        .ok_or("a record without eventName")?;
    if !name.starts_with("ObjectCreated:") {
        return Ok(None);
    }
    let s3 = record.get("s3").ok_or("a record without s3")?;
    let key = text(s3, &["object", "key"])?;
    Ok(Some(Created {
        bucket: text(s3, &["bucket", "name"])?,
        key: form_decode(&key).ok_or_else(|| format!("object key {key:?} is not URL-encoded UTF-8"))?,
        size: s3.pointer("/object/size").and_then(Value::as_u64),
        etag: s3.pointer("/object/eTag").and_then(Value::as_str).map(str::to_string),
    }))
}

fn text(value: &Value, path: &[&str]) -> Result<String, String> {
    path.iter()
        .try_fold(value, |v, k| v.get(k))
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| format!("no {}", path.join(".")))
}

/// A form-encoded value (`+` is a space) decoded.
fn form_decode(s: &str) -> Option<String> {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3_event(name: &str, key: &str) -> Value {
        serde_json::json!({"Records": [{
            "eventVersion": "2.1", "eventSource": "aws:s3", "eventName": name,
            "s3": {"bucket": {"name": "landing"},
                   "object": {"key": key, "size": 42, "eTag": "0123abcd", "sequencer": "0A1B"}}
        }]})
    }

    #[test]
    fn s3_events_plain_and_in_an_sns_envelope() {
        let event = s3_event("ObjectCreated:Put", "clicks/day+1/a%2Bb.ndjson");
        let want = vec![Created {
            bucket: "landing".into(),
            key: "clicks/day 1/a+b.ndjson".into(),
            size: Some(42),
            etag: Some("0123abcd".into()),
        }];
        assert_eq!(parse(event.to_string().as_bytes()).unwrap(), want);
        let sns = serde_json::json!({"Type": "Notification", "MessageId": "m", "Message": event.to_string()});
        assert_eq!(parse(sns.to_string().as_bytes()).unwrap(), want);
    }

    #[test]
    fn other_events_announce_nothing_and_garbage_is_an_error() {
        let removed = s3_event("ObjectRemoved:Delete", "a");
        assert!(parse(removed.to_string().as_bytes()).unwrap().is_empty());
        let test = serde_json::json!({"Service": "Amazon S3", "Event": "s3:TestEvent"});
        assert!(parse(test.to_string().as_bytes()).unwrap().is_empty());
        assert!(parse(b"not json").unwrap_err().starts_with("not JSON"));
        assert!(parse(b"{\"hello\": 1}").unwrap_err().contains("not an S3 event"));
        let no_key =
            serde_json::json!({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}}}]});
        assert_eq!(parse(no_key.to_string().as_bytes()).unwrap_err(), "no object.key");
    }

    #[test]
    fn eventbridge_object_created() {
        let event = serde_json::json!({"detail-type": "Object Created", "source": "aws.s3",
            "detail": {"bucket": {"name": "landing"}, "object": {"key": "a b.json", "size": 3, "etag": "ff"}}});
        assert_eq!(parse(event.to_string().as_bytes()).unwrap()[0].key, "a b.json");
    }
}
