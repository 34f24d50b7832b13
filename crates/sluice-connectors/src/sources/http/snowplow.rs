//! Snowplow's tracker protocol on the collector (`protocol = "snowplow"`):
//! `POST /com.snowplowanalytics.snowplow/tp2` (a `payload_data`
//! self-describing envelope whose `data` lists events) and `GET /i` (one
//! event in the query string, answered with a 1x1 GIF).
//!
//! The collector, as Snowplow's does, keeps what it received and adds what
//! only it knows; the `snowplow` transform turns that into Snowplow's
//! canonical event. Each tracker event becomes one line:
//!
//! ```json
//! {"collector_tstamp": "2026-12-03T12:00:00.123Z", "user_ipaddress": "203.0.113.9",
//!  "useragent": "...", "network_userid": "...", "parameters": {"e": "pv", "eid": "...", ...}}
//! ```
//!
//! `parameters` holds the tracker's parameters as sent (strings; `ue_px`
//! and `cx` still base64). A payload element that is not an object is kept
//! as its own line (`"parameters"` holding it), so the transform
//! dead-letters it with its bytes.

use serde_json::{Map, Value};

/// Where trackers POST.
pub const POST_PATH: &str = "/com.snowplowanalytics.snowplow/tp2";
/// Where trackers (and hand-made pixels) GET.
pub const PIXEL_PATH: &str = "/i";
/// The pixel's answer: a transparent 1x1 GIF.
pub const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff,
    0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02,
    0x02, 0x44, 0x01, 0x00, 0x3b,
];
/// The cookie holding the network user id, as Snowplow's collector names it.
pub const COOKIE: &str = "sp";
/// `SP-Anonymous: *`: the tracker asks that neither the IP address nor a
/// network user id be kept.
pub const ANONYMOUS_HEADER: &str = "sp-anonymous";

/// What the collector knows about a request.
#[derive(Debug, Clone, Default)]
pub struct Collected {
    /// When the request arrived, RFC 3339 with milliseconds.
    pub collector_tstamp: String,
    pub user_ipaddress: Option<String>,
    pub useragent: Option<String>,
    pub network_userid: Option<String>,
}

/// The lines of a `tp2` POST body; `Err` when the body is not a
/// `payload_data` envelope.
pub fn post_lines(body: &[u8], collected: &Collected) -> Result<Vec<u8>, String> {
    let body: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let Value::Object(mut envelope) = body else {
        return Err("the body is not a payload_data envelope ({\"schema\": ..., \"data\": [...]})".into());
    };
    let is_payload_data = envelope
        .get("schema")
        .and_then(Value::as_str)
        .is_some_and(|s| s.starts_with("iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-"));
    if !is_payload_data {
        return Err(
            "the body's \"schema\" is not iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-*-*".into(),
        );
    }
    let Some(Value::Array(events)) = envelope.remove("data") else {
        return Err("the body's \"data\" is not an array of events".into());
    };
    let mut out = Vec::new();
    for event in events {
        push_line(&mut out, event, collected);
    }
    Ok(out)
}

/// The line of a pixel request's query string (URL-encoded); `None` when it
/// carries no parameter.
pub fn pixel_line(query: &str, collected: &Collected) -> Option<Vec<u8>> {
    let parameters: Map<String, Value> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect();
    if parameters.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    push_line(&mut out, Value::Object(parameters), collected);
    Some(out)
}

fn push_line(out: &mut Vec<u8>, parameters: Value, collected: &Collected) {
    let mut line = Map::new();
    line.insert("collector_tstamp".into(), collected.collector_tstamp.clone().into());
    let optional = [
        ("user_ipaddress", &collected.user_ipaddress),
        ("useragent", &collected.useragent),
        ("network_userid", &collected.network_userid),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            line.insert(name.into(), value.clone().into());
        }
    }
    line.insert("parameters".into(), parameters);
    out.extend_from_slice(Value::Object(line).to_string().as_bytes());
    out.push(b'\n');
}

/// The network user id a request's `Cookie` header carries, if it is a UUID.
pub fn cookie_user_id(cookie_header: &str) -> Option<String> {
    cookie_header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim_matches('"'))
        .filter(|value| uuid::Uuid::parse_str(value).is_ok())
        .map(str::to_string)
}

/// The client's address: the first of `X-Forwarded-For` (a load balancer in
/// front), else the connection's peer.
pub fn client_ip(forwarded_for: Option<&str>, peer: Option<std::net::SocketAddr>) -> Option<String> {
    forwarded_for
        .and_then(|list| list.split(',').next())
        .map(str::trim)
        .filter(|ip| !ip.is_empty())
        .map(str::to_string)
        .or_else(|| peer.map(|p| p.ip().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collected() -> Collected {
        Collected {
            collector_tstamp: "2026-12-03T12:00:00.000Z".into(),
            user_ipaddress: Some("203.0.113.9".into()),
            useragent: Some("node".into()),
            network_userid: None,
        }
    }

    fn parsed(lines: &[u8]) -> Vec<Value> {
        std::str::from_utf8(lines)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn a_post_becomes_one_line_per_event_with_what_the_collector_knows() {
        let body = br#"{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
            "data":[{"e":"pv","eid":"a"},{"e":"se","eid":"b"},"junk"]}"#;
        let out = parsed(&post_lines(body, &collected()).unwrap());
        assert_eq!(out.len(), 3);
        assert_eq!(out[0]["parameters"]["e"], "pv");
        assert_eq!(out[1]["parameters"]["eid"], "b");
        assert_eq!(out[2]["parameters"], "junk", "kept for its dead letter");
        assert_eq!(out[0]["collector_tstamp"], "2026-12-03T12:00:00.000Z");
        assert_eq!(out[0]["user_ipaddress"], "203.0.113.9");
        assert!(out[0].get("network_userid").is_none());
    }

    #[test]
    fn a_post_that_is_no_payload_data_envelope_is_refused() {
        assert!(post_lines(b"{", &collected()).unwrap_err().contains("not JSON"));
        assert!(post_lines(br#"[{"e":"pv"}]"#, &collected()).is_err());
        let wrong = br#"{"schema":"iglu:com.acme/x/jsonschema/1-0-0","data":[]}"#;
        assert!(post_lines(wrong, &collected()).unwrap_err().contains("payload_data"));
        let no_data = br#"{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"}"#;
        assert!(post_lines(no_data, &collected()).is_err());
    }

    #[test]
    fn the_pixel_is_a_whole_gif() {
        // Header, 1x1 screen, a 2-colour table, transparency, one image
        // descriptor, 2 bytes of LZW data, trailer: 43 bytes.
        assert_eq!(PIXEL.len(), 43);
        assert!(PIXEL.starts_with(b"GIF89a") && PIXEL.ends_with(b";"));
    }

    #[test]
    fn a_pixel_decodes_its_query_string() {
        let out = pixel_line("e=se&se_ca=shop%20floor&se_ac=a+b&eid=x", &collected()).unwrap();
        let out = parsed(&out);
        assert_eq!(out[0]["parameters"]["se_ca"], "shop floor");
        assert_eq!(out[0]["parameters"]["se_ac"], "a b");
        assert!(pixel_line("", &collected()).is_none());
    }

    #[test]
    fn the_network_user_id_comes_from_a_uuid_cookie_and_the_ip_from_the_proxy() {
        let id = "0b3a8d4e-3c5c-4f1a-9a6e-0e5f5d4c3b2a";
        assert_eq!(cookie_user_id(&format!("a=1; sp={id}; b=2")).as_deref(), Some(id));
        assert_eq!(cookie_user_id("sp=not-a-uuid"), None);
        assert_eq!(cookie_user_id("spx=1"), None);
        let peer = "10.0.0.1:5000".parse().ok();
        assert_eq!(
            client_ip(Some("198.51.100.7, 10.0.0.2"), peer).as_deref(),
            Some("198.51.100.7")
        );
        assert_eq!(client_ip(None, peer).as_deref(), Some("10.0.0.1"));
    }
}
