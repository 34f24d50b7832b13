//! A collector line (`sluice-connectors`' `snowplow.rs`) made the atomic
//! fields of Snowplow's canonical event, as Snowplow's enrich does without
//! optional enrichments:
//!
//! * each tracker parameter goes to its field ([`PARAMETERS`]), parsed to
//!   the field's type (`dtm` etc. are milliseconds since the epoch; `res`,
//!   `vp` and `ds` are `WIDTHxHEIGHT`); a value that does not parse is a
//!   [`ProtocolError`] naming the parameter;
//! * `ip`, `ua` and `nuid`/`tnuid` override what the collector saw;
//! * `page_url` and `page_referrer` are split into scheme, host, port (the
//!   scheme's default when absent), path, query and fragment; a URL that
//!   does not parse keeps only its text;
//! * `derived_tstamp` is `true_tstamp` when the tracker set one, else
//!   `collector_tstamp - (dvce_sent_tstamp - dvce_created_tstamp)` when
//!   both device times are there and the event was created before it was
//!   sent, else `collector_tstamp`;
//! * `event_vendor`, `event_name`, `event_format`, `event_version` name the
//!   event's schema (the self-describing event's, or Snowplow's schema of a
//!   built-in event);
//! * `event_id` is the tracker's `eid`, or, when a hand-made pixel has
//!   none, a UUID derived from the line's bytes (a redelivered line gets
//!   the same one).

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde_json::{Map, Value};

use crate::registry::SchemaKey;

/// A tracker parameter that does not follow the tracker protocol.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtocolError {
    /// The parameter (or collector field) at fault.
    pub parameter: String,
    pub detail: String,
}

impl ProtocolError {
    pub fn new(parameter: &str, detail: impl Into<String>) -> Self {
        ProtocolError {
            parameter: parameter.to_string(),
            detail: detail.into(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Text,
    Integer,
    Number,
    Flag,
    Millis,
}

/// Tracker parameter, atomic field, and how the value is read.
const PARAMETERS: &[(&str, &str, Kind)] = {
    use Kind::*;
    &[
        ("aid", "app_id", Text),
        ("p", "platform", Text),
        ("tna", "name_tracker", Text),
        ("tv", "v_tracker", Text),
        ("eid", "event_id", Text),
        ("tid", "txn_id", Integer),
        ("uid", "user_id", Text),
        ("fp", "user_fingerprint", Text),
        ("duid", "domain_userid", Text),
        ("vid", "domain_sessionidx", Integer),
        ("sid", "domain_sessionid", Text),
        ("url", "page_url", Text),
        ("page", "page_title", Text),
        ("refr", "page_referrer", Text),
        ("dtm", "dvce_created_tstamp", Millis),
        ("stm", "dvce_sent_tstamp", Millis),
        ("ttm", "true_tstamp", Millis),
        ("se_ca", "se_category", Text),
        ("se_ac", "se_action", Text),
        ("se_la", "se_label", Text),
        ("se_pr", "se_property", Text),
        ("se_va", "se_value", Number),
        ("tr_id", "tr_orderid", Text),
        ("tr_af", "tr_affiliation", Text),
        ("tr_tt", "tr_total", Number),
        ("tr_tx", "tr_tax", Number),
        ("tr_sh", "tr_shipping", Number),
        ("tr_ci", "tr_city", Text),
        ("tr_st", "tr_state", Text),
        ("tr_co", "tr_country", Text),
        ("tr_cu", "tr_currency", Text),
        ("ti_id", "ti_orderid", Text),
        ("ti_sk", "ti_sku", Text),
        ("ti_nm", "ti_name", Text),
        ("ti_ca", "ti_category", Text),
        ("ti_pr", "ti_price", Number),
        ("ti_qu", "ti_quantity", Integer),
        ("ti_cu", "ti_currency", Text),
        ("pp_mix", "pp_xoffset_min", Integer),
        ("pp_max", "pp_xoffset_max", Integer),
        ("pp_miy", "pp_yoffset_min", Integer),
        ("pp_may", "pp_yoffset_max", Integer),
        ("lang", "br_lang", Text),
        ("cs", "doc_charset", Text),
        ("tz", "os_timezone", Text),
        ("cd", "br_colordepth", Text),
        ("cookie", "br_cookies", Flag),
        ("f_pdf", "br_features_pdf", Flag),
        ("f_fla", "br_features_flash", Flag),
        ("f_java", "br_features_java", Flag),
        ("f_dir", "br_features_director", Flag),
        ("f_qt", "br_features_quicktime", Flag),
        ("f_realp", "br_features_realplayer", Flag),
        ("f_wma", "br_features_windowsmedia", Flag),
        ("f_gears", "br_features_gears", Flag),
        ("f_ag", "br_features_silverlight", Flag),
        ("ip", "user_ipaddress", Text),
        ("ua", "useragent", Text),
        ("nuid", "network_userid", Text),
        ("tnuid", "network_userid", Text),
    ]
};

/// `WIDTHxHEIGHT` parameters and their two fields.
const DIMENSIONS: &[(&str, &str, &str)] = &[
    ("res", "dvce_screenwidth", "dvce_screenheight"),
    ("vp", "br_viewwidth", "br_viewheight"),
    ("ds", "doc_width", "doc_height"),
];

/// `e` values, the `event` field, and the schema of a built-in event.
const EVENTS: &[(&str, &str, Option<&str>)] = &[
    (
        "pv",
        "page_view",
        Some("iglu:com.snowplowanalytics.snowplow/page_view/jsonschema/1-0-0"),
    ),
    (
        "pp",
        "page_ping",
        Some("iglu:com.snowplowanalytics.snowplow/page_ping/jsonschema/1-0-0"),
    ),
    ("se", "struct", Some("iglu:com.google.analytics/event/jsonschema/1-0-0")),
    (
        "tr",
        "transaction",
        Some("iglu:com.snowplowanalytics.snowplow/transaction/jsonschema/1-0-0"),
    ),
    (
        "ti",
        "transaction_item",
        Some("iglu:com.snowplowanalytics.snowplow/transaction_item/jsonschema/1-0-0"),
    ),
    ("ue", "unstruct", None),
];

/// The atomic fields of one collector line, its collector time (µs), and
/// its parameters (for the self-describing parts).
#[derive(Debug)]
pub struct Atomic {
    pub fields: Map<String, Value>,
    pub collector_us: i64,
    pub parameters: Map<String, Value>,
    /// `e = ue`: the self-describing event's schema names the event.
    pub self_describing: bool,
}

/// What the collector recorded, and the parameters, read from a line.
pub fn atomic(line: Value, raw: &[u8], etl_tstamp: &str) -> Result<Atomic, ProtocolError> {
    let Value::Object(mut line) = line else {
        return Err(ProtocolError::new("line", "not a collector line (a JSON object)"));
    };
    let parameters = match line.remove("parameters") {
        Some(Value::Object(p)) => p,
        _ => {
            return Err(ProtocolError::new(
                "parameters",
                "the tracker's event is not an object of parameters",
            ));
        }
    };
    let collector = line
        .get("collector_tstamp")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| ProtocolError::new("collector_tstamp", "missing or not an RFC 3339 time"))?;
    let mut fields = Map::new();
    for name in ["user_ipaddress", "useragent", "network_userid", "v_collector"] {
        if let Some(v @ Value::String(_)) = line.get(name) {
            fields.insert(name.into(), v.clone());
        }
    }
    let text = |name: &str| -> Result<Option<&str>, ProtocolError> {
        match parameters.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(ProtocolError::new(name, format!("{other} is not a string"))),
        }
    };
    let e = text("e")?.ok_or_else(|| ProtocolError::new("e", "no event type"))?;
    let (_, event, builtin) = EVENTS
        .iter()
        .find(|(code, ..)| *code == e)
        .ok_or_else(|| ProtocolError::new("e", format!("{e:?} is not an event type (pv, pp, se, ue, tr, ti)")))?;
    fields.insert("event".into(), (*event).into());
    for (parameter, field, kind) in PARAMETERS {
        let Some(value) = text(parameter)?.filter(|v| !v.is_empty()) else {
            continue;
        };
        fields.insert((*field).into(), read(parameter, value, *kind)?);
    }
    for (parameter, width, height) in DIMENSIONS {
        if let Some(value) = text(parameter)?.filter(|v| !v.is_empty()) {
            let (w, h) = dimensions(value)
                .ok_or_else(|| ProtocolError::new(parameter, format!("{value:?} is not WIDTHxHEIGHT")))?;
            fields.insert((*width).into(), w.into());
            fields.insert((*height).into(), h.into());
        }
    }
    if !fields.contains_key("event_id") {
        let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, raw);
        fields.insert("event_id".into(), id.to_string().into());
    }
    fields.insert("collector_tstamp".into(), rfc3339(collector).into());
    fields.insert("etl_tstamp".into(), etl_tstamp.into());
    fields.insert("v_etl".into(), concat!("sluice-", env!("CARGO_PKG_VERSION")).into());
    let derived = derived_tstamp(&fields, collector);
    fields.insert("derived_tstamp".into(), rfc3339(derived).into());
    for (url_field, prefix) in [("page_url", "page_url"), ("page_referrer", "refr_url")] {
        if let Some(Value::String(url)) = fields.get(url_field).cloned() {
            url_parts(&url, prefix, &mut fields);
        }
    }
    if let Some(schema) = builtin {
        name_event(&schema.parse().expect("the built-in keys parse"), &mut fields);
    }
    Ok(Atomic {
        fields,
        collector_us: collector.timestamp_micros(),
        parameters,
        self_describing: builtin.is_none(),
    })
}

/// Sets `event_vendor`, `event_name`, `event_format`, `event_version`.
pub fn name_event(key: &SchemaKey, fields: &mut Map<String, Value>) {
    fields.insert("event_vendor".into(), key.vendor.clone().into());
    fields.insert("event_name".into(), key.name.clone().into());
    fields.insert("event_format".into(), key.format.clone().into());
    fields.insert("event_version".into(), key.version.to_string().into());
}

fn read(parameter: &str, value: &str, kind: Kind) -> Result<Value, ProtocolError> {
    let wrong = |what: &str| ProtocolError::new(parameter, format!("{value:?} is not {what}"));
    Ok(match kind {
        Kind::Text => value.into(),
        Kind::Integer => value.trim().parse::<i64>().map_err(|_| wrong("an integer"))?.into(),
        Kind::Number => {
            let n: f64 = value.trim().parse().map_err(|_| wrong("a number"))?;
            serde_json::Number::from_f64(n)
                .ok_or_else(|| wrong("a finite number"))?
                .into()
        }
        Kind::Flag => match value {
            "1" | "true" => true.into(),
            "0" | "false" => false.into(),
            _ => return Err(wrong("1 or 0")),
        },
        Kind::Millis => {
            let ms: i64 = value
                .trim()
                .parse()
                .map_err(|_| wrong("milliseconds since the epoch"))?;
            let at = Utc
                .timestamp_millis_opt(ms)
                .single()
                .filter(|t| (1970..=9999).contains(&chrono::Datelike::year(t)))
                .ok_or_else(|| wrong("a time between the years 1970 and 9999"))?;
            rfc3339(at).into()
        }
    })
}

fn dimensions(value: &str) -> Option<(i64, i64)> {
    let (w, h) = value.split_once('x')?;
    Some((w.trim().parse().ok()?, h.trim().parse().ok()?))
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn derived_tstamp(fields: &Map<String, Value>, collector: DateTime<Utc>) -> DateTime<Utc> {
    let time = |name: &str| {
        fields
            .get(name)
            .and_then(Value::as_str)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    if let Some(true_tstamp) = time("true_tstamp") {
        return true_tstamp;
    }
    match (time("dvce_created_tstamp"), time("dvce_sent_tstamp")) {
        (Some(created), Some(sent)) if created <= sent => collector - (sent - created),
        _ => collector,
    }
}

/// `<prefix>scheme`, `host`, `port`, `path`, `query`, `fragment` of `url`.
fn url_parts(url: &str, prefix: &str, fields: &mut Map<String, Value>) {
    let Ok(parsed) = url::Url::parse(url) else {
        return;
    };
    let mut set = |part: &str, value: Value| {
        fields.insert(format!("{prefix}{part}"), value);
    };
    set("scheme", parsed.scheme().into());
    if let Some(host) = parsed.host_str() {
        set("host", host.into());
    }
    if let Some(port) = parsed.port_or_known_default() {
        set("port", i64::from(port).into());
    }
    set("path", parsed.path().into());
    if let Some(query) = parsed.query() {
        set("query", query.into());
    }
    if let Some(fragment) = parsed.fragment() {
        set("fragment", fragment.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ETL: &str = "2026-12-03T12:00:05.000Z";

    fn line(parameters: Value) -> Value {
        json!({"collector_tstamp": "2026-12-03T12:00:00.000Z", "user_ipaddress": "203.0.113.9",
               "useragent": "agent", "network_userid": "n-1", "parameters": parameters})
    }

    #[test]
    fn a_page_view_gets_its_atomic_fields() {
        let a = atomic(
            line(
                json!({"e": "pv", "eid": "e-1", "aid": "shop", "p": "web", "tv": "js-4.0.0",
                "url": "https://shop.example/cart?x=1#top", "refr": "http://search.example/q", "page": "Cart",
                "res": "1920x1080", "vid": "3", "cookie": "1", "uid": "u-7"}),
            ),
            b"raw",
            ETL,
        )
        .unwrap();
        let f = &a.fields;
        assert_eq!(f["event"], "page_view");
        assert_eq!(f["event_id"], "e-1");
        assert_eq!(f["app_id"], "shop");
        assert_eq!(f["user_id"], "u-7");
        assert_eq!(f["page_urlhost"], "shop.example");
        assert_eq!(f["page_urlport"], 443);
        assert_eq!(f["page_urlpath"], "/cart");
        assert_eq!(f["page_urlquery"], "x=1");
        assert_eq!(f["page_urlfragment"], "top");
        assert_eq!(f["refr_urlport"], 80);
        assert_eq!(f["dvce_screenwidth"], 1920);
        assert_eq!(f["dvce_screenheight"], 1080);
        assert_eq!(f["domain_sessionidx"], 3);
        assert_eq!(f["br_cookies"], true);
        assert_eq!(f["user_ipaddress"], "203.0.113.9");
        assert_eq!(f["event_name"], "page_view");
        assert_eq!(f["event_vendor"], "com.snowplowanalytics.snowplow");
        assert_eq!(f["event_version"], "1-0-0");
        assert_eq!(f["etl_tstamp"], ETL);
        assert_eq!(
            f["derived_tstamp"], "2026-12-03T12:00:00.000Z",
            "no device times: the collector's"
        );
        assert!(!a.self_describing);
        assert_eq!(a.collector_us, 1_796_299_200_000_000);
    }

    #[test]
    fn derived_tstamp_corrects_for_the_device_clock_as_snowplow_does() {
        // Created at device time T, sent 10 s later by the device clock,
        // received at 12:00:00: it happened at 11:59:50.
        let t = 1_700_000_000_000_i64;
        let f = atomic(
            line(json!({"e": "pv", "dtm": t.to_string(), "stm": (t + 10_000).to_string()})),
            b"",
            ETL,
        )
        .unwrap()
        .fields;
        assert_eq!(f["derived_tstamp"], "2026-12-03T11:59:50.000Z");
        assert_eq!(f["dvce_created_tstamp"], "2023-11-14T22:13:20.000Z");
        let f = atomic(
            line(json!({"e": "pv", "dtm": t.to_string(), "stm": (t + 10_000).to_string(), "ttm": "1764000000000"})),
            b"",
            ETL,
        )
        .unwrap()
        .fields;
        assert_eq!(f["derived_tstamp"], "2025-11-24T16:00:00.000Z", "the true time wins");
        let f = atomic(
            line(json!({"e": "pv", "dtm": (t + 10_000).to_string(), "stm": t.to_string()})),
            b"",
            ETL,
        )
        .unwrap()
        .fields;
        assert_eq!(
            f["derived_tstamp"], "2026-12-03T12:00:00.000Z",
            "sent before created: the collector's"
        );
    }

    #[test]
    fn parameters_override_what_the_collector_saw() {
        let f = atomic(
            line(json!({"e": "se", "ip": "198.51.100.1", "ua": "server", "tnuid": "n-2",
            "se_ca": "shop", "se_ac": "add", "se_va": "2.5"})),
            b"",
            ETL,
        )
        .unwrap()
        .fields;
        assert_eq!(f["user_ipaddress"], "198.51.100.1");
        assert_eq!(f["useragent"], "server");
        assert_eq!(f["network_userid"], "n-2");
        assert_eq!(f["event"], "struct");
        assert_eq!(f["se_value"], 2.5);
        assert_eq!(f["event_vendor"], "com.google.analytics");
    }

    #[test]
    fn every_built_in_event_names_a_schema_key() {
        for (_, _, key) in EVENTS {
            if let Some(key) = key {
                key.parse::<SchemaKey>().unwrap();
            }
        }
    }

    #[test]
    fn a_pixel_without_eid_gets_an_id_from_its_bytes() {
        let a = atomic(line(json!({"e": "pv"})), b"line one", ETL).unwrap();
        let b = atomic(line(json!({"e": "pv"})), b"line one", ETL).unwrap();
        let c = atomic(line(json!({"e": "pv"})), b"line two", ETL).unwrap();
        assert_eq!(a.fields["event_id"], b.fields["event_id"]);
        assert_ne!(a.fields["event_id"], c.fields["event_id"]);
    }

    #[test]
    fn what_breaks_the_protocol_names_its_parameter() {
        let err = |p: Value| atomic(line(p), b"", ETL).unwrap_err();
        assert_eq!(err(json!({"eid": "x"})).parameter, "e");
        assert_eq!(err(json!({"e": "zz"})).parameter, "e");
        assert_eq!(err(json!({"e": "pv", "vid": "three"})).parameter, "vid");
        assert_eq!(err(json!({"e": "pv", "dtm": "yesterday"})).parameter, "dtm");
        assert_eq!(err(json!({"e": "pv", "res": "big"})).parameter, "res");
        assert_eq!(err(json!({"e": "pv", "cookie": "yes"})).parameter, "cookie");
        assert_eq!(err(json!({"e": "pv", "aid": 5})).parameter, "aid");
        assert_eq!(atomic(json!("junk"), b"", ETL).unwrap_err().parameter, "line");
        let no_time = json!({"parameters": {"e": "pv"}});
        assert_eq!(atomic(no_time, b"", ETL).unwrap_err().parameter, "collector_tstamp");
    }
}
