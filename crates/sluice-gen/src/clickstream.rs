//! Clickstream events: NDJSON web events with producer duplicates, malformed
//! lines (each tagged with why it is malformed), late events and hostile
//! values, and the oracle a correct pipeline must match.

use std::{
    collections::{BTreeMap, HashSet},
    io::{self, Write},
};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::rng::Rng;

/// What to generate.
#[derive(Debug, Clone)]
pub struct ClickstreamOptions {
    /// Lines to write.
    pub lines: u64,
    pub seed: u64,
    /// Event time of the first line; the stream spans `hours` from there.
    pub start: DateTime<Utc>,
    pub hours: f64,
    /// Distinct users the events are spread over.
    pub users: u64,
    /// Share of lines that repeat an earlier valid line.
    pub dup_rate: f64,
    /// Share of lines that are malformed.
    pub bad_rate: f64,
    /// Share of events whose time lies 1 to 48 hours before the stream's clock.
    pub late_rate: f64,
}

impl Default for ClickstreamOptions {
    fn default() -> Self {
        ClickstreamOptions {
            lines: 100_000,
            seed: 1,
            start: crate::default_start(),
            hours: 24.0,
            users: 50_000,
            dup_rate: 0.0,
            bad_rate: 0.0,
            late_rate: 0.0,
        }
    }
}

impl ClickstreamOptions {
    /// The mix most tests use: 2 % duplicates, 1 % malformed, 5 % late.
    pub fn noisy(lines: u64, seed: u64) -> ClickstreamOptions {
        ClickstreamOptions {
            lines,
            seed,
            dup_rate: 0.02,
            bad_rate: 0.01,
            late_rate: 0.05,
            ..ClickstreamOptions::default()
        }
    }

    /// Only valid, unique events.
    pub fn clean(lines: u64, seed: u64) -> ClickstreamOptions {
        ClickstreamOptions {
            lines,
            seed,
            ..ClickstreamOptions::default()
        }
    }
}

/// What a correct pipeline ends up with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClickstreamOracle {
    pub kind: &'static str,
    pub seed: u64,
    /// Lines written.
    pub lines: u64,
    /// Valid events, each counted once.
    pub valid_unique: u64,
    /// Lines that repeat an earlier valid line.
    pub duplicates: u64,
    /// Malformed lines.
    pub invalid: u64,
    /// Valid or malformed events whose time was set back.
    pub late: u64,
    /// Malformed lines by what is wrong with them.
    pub invalid_reasons: BTreeMap<String, u64>,
    /// Valid unique events per event-time hour (`YYYY-MM-DDTHH`).
    pub valid_unique_per_hour: BTreeMap<String, u64>,
    pub valid_unique_per_type: BTreeMap<String, u64>,
    /// Sum of purchase revenue, in cents.
    pub purchase_revenue_cents: i64,
    /// SHA-256 (hex) of the sorted unique event ids joined by `\n`.
    pub event_ids_sha256: String,
}

const EVENT_TYPES: [&str; 8] = [
    "page_view",
    "page_view",
    "page_view",
    "click",
    "click",
    "search",
    "add_to_cart",
    "purchase",
];
const COUNTRIES: [(&str, &[&str]); 7] = [
    ("US", &["NY", "CA", "TX", "WA"]),
    ("DE", &["BE", "BY", "HH"]),
    ("FR", &["IDF", "ARA"]),
    ("BR", &["SP", "RJ"]),
    ("IN", &["MH", "KA", "DL"]),
    ("JP", &["13", "27"]),
    ("GB", &["ENG", "SCT"]),
];
pub(crate) const CITIES: [&str; 14] = [
    "Springfield",
    "Riverside",
    "Franklin",
    "Greenville",
    "Bristol",
    "Clinton",
    "Fairview",
    "Salem",
    "München",
    "São Paulo",
    "Zürich",
    "Kraków",
    "東京",
    "Mumbai",
];
const OSES: [&str; 6] = ["iOS", "Android", "Windows", "macOS", "Linux", "ChromeOS"];
const BROWSERS: [&str; 6] = ["Chrome", "Safari", "Firefox", "Edge", "Samsung Internet", "Opera"];
const PATHS: [&str; 8] = [
    "/",
    "/search",
    "/doctors",
    "/doctors/{id}",
    "/book/{id}",
    "/insurance",
    "/about",
    "/help/{id}",
];
const QUERIES: [&str; 10] = [
    "dermatologist",
    "dentist near me",
    "pediatrician",
    "eye doctor",
    "urgent care",
    "therapist",
    "cardiologist brooklyn",
    "ob-gyn",
    "allergist",
    "chiropractor",
];
const REFERRERS: [Option<&str>; 4] = [
    None,
    Some("https://www.google.com/"),
    Some("https://www.bing.com/"),
    Some("https://www.example.com/"),
];
const TITLES: [&str; 5] = ["Home", "Search results", "Doctor profile", "Book", "Help"];
const TARGETS: [&str; 5] = ["book_button", "profile_link", "map", "filter", "next_page"];
const WIDTHS: [u64; 7] = [375, 390, 414, 768, 1280, 1440, 1920];
const HEIGHTS: [u64; 7] = [667, 844, 896, 1024, 800, 900, 1080];
const NOT_OBJECTS: [&str; 7] = ["null", "[]", "42", "\"just a string\"", "{", "}{", "{\"a\":1}{\"b\":2}"];
const BAD_TIMES: [&str; 4] = ["yesterday", "2024-13-45T99:00:00Z", "", "1700000000000"];

fn hostile_values() -> [String; 10] {
    [
        "../../etc/passwd".into(),
        "a/b=c".into(),
        "'; DROP TABLE events; --".into(),
        "\u{0}nul".into(),
        "x".repeat(5000),
        "dt=1970-01-01".into(),
        "%2e%2e%2f".into(),
        "\u{1F600} emoji".into(),
        "line\nbreak".into(),
        "C:\\windows".into(),
    ]
}

/// Valid lines kept for producer duplicates (a reservoir).
const RECENT_LINES: usize = 10_000;

fn event(rng: &mut Rng, ts: DateTime<Utc>, users: u64) -> Value {
    let event_type = *rng.pick(&EVENT_TYPES);
    let user = rng.below(users.max(1));
    let (country, regions) = *rng.pick(&COUNTRIES);
    let path = rng.pick(&PATHS).replace("{id}", &rng.below(100_000).to_string());
    let session = rng.below(50);
    let mut ev = json!({
        "event_id": rng.uuid(),
        "event_type": event_type,
        "ts": crate::iso(ts),
        "user_id": format!("u{user:07}"),
        "session_id": format!("s{user:07}-{session:02}"),
        "page": {
            "url": format!("https://www.example.com{path}"),
            "referrer": rng.pick(&REFERRERS),
            "title": rng.pick(&TITLES),
        },
        "device": {
            "os": rng.pick(&OSES),
            "browser": rng.pick(&BROWSERS),
            "screen": {"w": rng.pick(&WIDTHS), "h": rng.pick(&HEIGHTS)},
        },
        "geo": {"country": country, "region": rng.pick(regions), "city": rng.pick(&CITIES)},
    });
    let props = match event_type {
        "search" => json!({"query": rng.pick(&QUERIES), "results": rng.below(500)}),
        "click" => json!({"target": rng.pick(&TARGETS), "position": rng.range(1, 30)}),
        "add_to_cart" => json!({"sku": format!("sku-{:05}", rng.below(5000)), "qty": rng.range(1, 4)}),
        "purchase" => {
            let items: Vec<(String, u64, f64)> = (0..rng.range(1, 6))
                .map(|_| {
                    (
                        format!("sku-{:05}", rng.below(5000)),
                        rng.range(1, 4),
                        rng.rounded(5.0, 400.0, 2),
                    )
                })
                .collect();
            let revenue =
                (items.iter().map(|(_, qty, price)| *qty as f64 * price).sum::<f64>() * 100.0).round() / 100.0;
            json!({
                "order_id": format!("o{:012x}", rng.below(1 << 40)),
                "currency": rng.pick(&["USD", "EUR", "BRL"]),
                "revenue": revenue,
                "items": items.iter().map(|(sku, qty, price)| json!({"sku": sku, "qty": qty, "price": price})).collect::<Vec<_>>(),
            })
        }
        _ => return ev,
    };
    ev["props"] = props;
    ev
}

/// One malformed line derived from a valid event, and why it is malformed.
fn malformed(rng: &mut Rng, mut ev: Value) -> (String, &'static str) {
    match rng.below(8) {
        0 => {
            let text = ev.to_string();
            let mut cut = rng.range(1, text.len() as u64 - 1) as usize;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            (text[..cut].to_string(), "truncated_json")
        }
        1 => {
            ev.as_object_mut().expect("an event is an object").remove("event_id");
            (ev.to_string(), "missing_event_id")
        }
        2 => {
            ev["ts"] = (*rng.pick(&BAD_TIMES)).into();
            (ev.to_string(), "bad_timestamp")
        }
        3 => {
            ev["device"]["screen"]["w"] = "wide".into();
            (ev.to_string(), "wrong_type")
        }
        4 => ((*rng.pick(&NOT_OBJECTS)).to_string(), "not_an_object"),
        5 => {
            ev["event_type"] = rng.pick(&hostile_values()).clone().into();
            (ev.to_string(), "hostile_event_type")
        }
        6 => {
            ev["event_type"] = "unknown_type".into();
            (ev.to_string(), "unknown_event_type")
        }
        _ => {
            ev["user_id"] = 12345.into();
            (ev.to_string(), "wrong_type")
        }
    }
}

/// Writes `options.lines` NDJSON lines to `out` and returns the oracle.
pub fn clickstream<W: Write + ?Sized>(options: &ClickstreamOptions, out: &mut W) -> io::Result<ClickstreamOracle> {
    let mut rng = Rng::new(options.seed);
    let step_us = options.hours * 3_600_000_000.0 / options.lines.max(1) as f64;
    let mut recent: Vec<String> = Vec::new();
    let mut ids: HashSet<String> = HashSet::new();
    let mut oracle = ClickstreamOracle {
        kind: "clickstream",
        seed: options.seed,
        lines: 0,
        valid_unique: 0,
        duplicates: 0,
        invalid: 0,
        late: 0,
        invalid_reasons: BTreeMap::new(),
        valid_unique_per_hour: BTreeMap::new(),
        valid_unique_per_type: BTreeMap::new(),
        purchase_revenue_cents: 0,
        event_ids_sha256: String::new(),
    };
    for i in 0..options.lines {
        oracle.lines += 1;
        if !recent.is_empty() && rng.chance(options.dup_rate) {
            writeln!(out, "{}", rng.pick(&recent))?;
            oracle.duplicates += 1;
            continue;
        }
        let mut ts = options.start + Duration::microseconds((step_us * i as f64) as i64);
        if rng.chance(options.late_rate) {
            ts -= Duration::minutes(rng.range(60, 48 * 60) as i64);
            oracle.late += 1;
        }
        let ev = event(&mut rng, ts, options.users);
        if rng.chance(options.bad_rate) {
            let (line, reason) = malformed(&mut rng, ev);
            writeln!(out, "{line}")?;
            oracle.invalid += 1;
            *oracle.invalid_reasons.entry(reason.into()).or_default() += 1;
            continue;
        }
        let line = ev.to_string();
        writeln!(out, "{line}")?;
        oracle.valid_unique += 1;
        ids.insert(ev["event_id"].as_str().expect("generated id").to_string());
        let (time, event_type) = (
            ev["ts"].as_str().expect("generated time"),
            ev["event_type"].as_str().expect("generated type"),
        );
        *oracle.valid_unique_per_hour.entry(time[..13].to_string()).or_default() += 1;
        *oracle.valid_unique_per_type.entry(event_type.to_string()).or_default() += 1;
        if event_type == "purchase" {
            oracle.purchase_revenue_cents += (ev["props"]["revenue"].as_f64().expect("revenue") * 100.0).round() as i64;
        }
        if recent.len() < RECENT_LINES {
            recent.push(line);
        } else {
            let slot = rng.below(RECENT_LINES as u64) as usize;
            recent[slot] = line;
        }
    }
    let mut sorted: Vec<String> = ids.into_iter().collect();
    sorted.sort_unstable();
    oracle.event_ids_sha256 = hex(&Sha256::digest(sorted.join("\n").as_bytes()));
    Ok(oracle)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generate(options: &ClickstreamOptions) -> (Vec<String>, ClickstreamOracle) {
        let mut out = Vec::new();
        let oracle = clickstream(options, &mut out).unwrap();
        let lines = String::from_utf8(out).unwrap().lines().map(str::to_string).collect();
        (lines, oracle)
    }

    #[test]
    fn counts_add_up_and_rates_hold() {
        let (lines, oracle) = generate(&ClickstreamOptions::noisy(20_000, 7));
        assert_eq!(lines.len() as u64, oracle.lines);
        assert_eq!(oracle.lines, oracle.valid_unique + oracle.duplicates + oracle.invalid);
        let share = |n: u64| n as f64 / oracle.lines as f64;
        assert!((0.015..0.025).contains(&share(oracle.duplicates)), "{oracle:?}");
        assert!((0.006..0.014).contains(&share(oracle.invalid)), "{oracle:?}");
        assert!((0.04..0.06).contains(&share(oracle.late)), "{oracle:?}");
        assert_eq!(oracle.invalid_reasons.values().sum::<u64>(), oracle.invalid);
        assert_eq!(oracle.valid_unique_per_hour.values().sum::<u64>(), oracle.valid_unique);
        assert_eq!(oracle.valid_unique_per_type.values().sum::<u64>(), oracle.valid_unique);
        assert_eq!(
            oracle.invalid_reasons.len(),
            7,
            "every kind of malformed line appears: {oracle:?}"
        );
    }

    #[test]
    fn valid_lines_and_their_ids_match_the_oracle() {
        let (lines, oracle) = generate(&ClickstreamOptions::noisy(5_000, 11));
        let mut ids = std::collections::BTreeSet::new();
        let mut revenue = 0;
        for line in &lines {
            let Ok(Value::Object(ev)) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let (Some(Value::String(id)), Some(Value::String(ts))) = (ev.get("event_id"), ev.get("ts")) else {
                continue;
            };
            let known_type = EVENT_TYPES.contains(&ev["event_type"].as_str().unwrap_or(""));
            let well_typed = ev["user_id"].is_string() && ev["device"]["screen"]["w"].is_u64();
            if known_type
                && well_typed
                && DateTime::parse_from_rfc3339(ts).is_ok()
                && ids.insert(id.clone())
                && ev["event_type"] == "purchase"
            {
                revenue += (ev["props"]["revenue"].as_f64().unwrap() * 100.0).round() as i64;
            }
        }
        assert_eq!(ids.len() as u64, oracle.valid_unique);
        assert_eq!(revenue, oracle.purchase_revenue_cents);
        let joined = ids.into_iter().collect::<Vec<_>>().join("\n");
        assert_eq!(hex(&Sha256::digest(joined.as_bytes())), oracle.event_ids_sha256);
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let a = generate(&ClickstreamOptions::noisy(500, 3));
        assert_eq!(a, generate(&ClickstreamOptions::noisy(500, 3)));
        assert_ne!(a.0, generate(&ClickstreamOptions::noisy(500, 4)).0);
    }

    #[test]
    fn late_events_lie_one_to_forty_eight_hours_back() {
        let options = ClickstreamOptions {
            late_rate: 1.0,
            ..ClickstreamOptions::clean(200, 5)
        };
        let (lines, oracle) = generate(&options);
        assert_eq!(oracle.late, 200);
        for line in lines {
            let ev: Value = serde_json::from_str(&line).unwrap();
            let ts = DateTime::parse_from_rfc3339(ev["ts"].as_str().unwrap()).unwrap();
            let back = options.start + Duration::hours(24) - ts.with_timezone(&Utc);
            assert!(back >= Duration::minutes(60) && back <= Duration::hours(72), "{back}");
        }
    }
}
