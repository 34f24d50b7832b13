//! A message body (an SQS message, a Kinesis record) as queue lines: one
//! JSON value (pretty-printed or not) is one event, a JSON array is one
//! event per element, anything else is taken line by line as NDJSON (so
//! lines that are not JSON reach the dead-letter store with their bytes).
//! With SNS unwrapping on, an SNS notification envelope gives its `Message`
//! instead. Also the one way a JSON text is put on one line, which HTTP
//! bodies and object arrays use too.

use serde_json::value::RawValue;

/// Appends the events of `body` to `out`, one line each; returns how many.
pub fn append_lines(body: &str, unwrap_sns: bool, out: &mut Vec<u8>) -> u64 {
    let unwrapped = if unwrap_sns { sns_message(body) } else { None };
    let body = unwrapped.as_deref().unwrap_or(body).trim();
    if body.is_empty() {
        return 0;
    }
    if let Ok(value) = serde_json::from_str::<&RawValue>(body) {
        let text = value.get();
        if text.starts_with('[')
            && let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(text)
        {
            for item in &items {
                push_one_line(item.get().as_bytes(), out);
            }
            return items.len() as u64;
        }
        push_one_line(text.as_bytes(), out);
        return 1;
    }
    let mut lines = 0;
    for line in body.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
        lines += 1;
    }
    lines
}

/// Appends the events of a binary body: UTF-8 as [`append_lines`], other
/// bytes as one line (line breaks made spaces), which validation then
/// refuses with its bytes kept.
pub fn append_bytes(body: &[u8], out: &mut Vec<u8>) -> u64 {
    match std::str::from_utf8(body) {
        Ok(text) => append_lines(text, false, out),
        Err(_) => {
            push_one_line(body, out);
            1
        }
    }
}

/// Appends `text` as one line: line breaks become spaces. For a JSON text
/// this changes no value (inside strings breaks are always escaped).
pub(crate) fn push_one_line(text: &[u8], out: &mut Vec<u8>) {
    out.extend(text.iter().map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }));
    out.push(b'\n');
}

/// The `Message` of an SNS notification envelope.
fn sns_message(body: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        #[serde(rename = "Type")]
        kind: String,
        #[serde(rename = "Message")]
        message: String,
    }
    let envelope: Envelope = serde_json::from_str(body).ok()?;
    (envelope.kind == "Notification").then_some(envelope.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(body: &str, sns: bool) -> (u64, String) {
        let mut out = Vec::new();
        let n = append_lines(body, sns, &mut out);
        (n, String::from_utf8(out).unwrap())
    }

    #[test]
    fn one_value_an_array_or_ndjson() {
        assert_eq!(lines("{\"a\": 1}", false), (1, "{\"a\": 1}\n".into()));
        assert_eq!(
            lines("{\n  \"a\": \"x\\ny\"\n}\n", false),
            (1, "{   \"a\": \"x\\ny\" }\n".into())
        );
        assert_eq!(
            lines("[{\"a\":1},\n{\"a\":2}]", false),
            (2, "{\"a\":1}\n{\"a\":2}\n".into())
        );
        assert_eq!(
            lines("{\"a\":1}\n{\"a\":2}\nnot json\n", false),
            (3, "{\"a\":1}\n{\"a\":2}\nnot json\n".into())
        );
        assert_eq!(lines("  \n", false), (0, String::new()));
    }

    #[test]
    fn sns_envelopes_unwrapped_only_when_asked() {
        let inner = "{\"a\":1}\n{\"a\":2}";
        let envelope =
            serde_json::json!({"Type": "Notification", "MessageId": "m", "TopicArn": "arn", "Message": inner})
                .to_string();
        assert_eq!(lines(&envelope, true), (2, "{\"a\":1}\n{\"a\":2}\n".into()));
        assert_eq!(lines(&envelope, false).0, 1);
        let not_one = serde_json::json!({"Type": "SubscriptionConfirmation", "Message": "x"}).to_string();
        assert_eq!(lines(&not_one, true), (1, format!("{not_one}\n")));
    }
}
