//! The demo's event generator: deterministic clickstream events matching
//! `examples/clickstream/schemas/clickstream.schema.json`, with a share of
//! malformed lines (each kind the validator must catch) and producer
//! duplicates (the same line sent twice).

/// Generated lines and what a correct pipeline must make of them.
pub struct Generated {
    pub lines: Vec<String>,
    pub valid_unique: u64,
    pub duplicates: u64,
    pub malformed: u64,
}

/// splitmix64: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

fn uuid(rng: &mut Rng) -> String {
    let (a, b) = (rng.next(), rng.next());
    let h = format!("{a:016x}{b:016x}");
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// Six hours of event time starting 2026-11-01T00:00:00Z.
const START_SECS: i64 = 1_793_491_200;
const SPAN_SECS: i64 = 6 * 3600;

fn valid_event(rng: &mut Rng, i: usize, n: usize) -> serde_json::Value {
    let offset_ms = (i as i64 * SPAN_SECS * 1000) / n.max(1) as i64;
    let ts = chrono::DateTime::from_timestamp_millis(START_SECS * 1000 + offset_ms)
        .expect("in range")
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let event_type = rng.pick(&["page_view", "page_view", "click", "search", "purchase"]);
    let width = [390, 768, 1280, 1920][rng.below(4) as usize];
    let height = [844, 1024, 800, 1080][rng.below(4) as usize];
    let mut event = serde_json::json!({
        "event_id": uuid(rng),
        "event_type": event_type,
        "ts": ts,
        "user_id": format!("u{:06}", rng.below(20_000)),
        "page": {"url": format!("https://shop.example.com/p/{}", rng.below(5000)),
                 "referrer": if rng.below(3) == 0 { serde_json::Value::Null } else { "https://search.example.com/".into() }},
        "device": {"os": rng.pick(&["iOS", "Android", "Windows", "macOS", "Linux"]),
                   "screen": {"w": width, "h": height}},
        "country": rng.pick(&["US", "DE", "FR", "BR", "IN", "JP"]),
    });
    match event_type {
        "purchase" => {
            event["revenue_cents"] = (500 + rng.below(40_000)).into();
            event["props"] =
                serde_json::json!({"order_id": format!("o{}", rng.below(1 << 40)), "items": rng.below(5) + 1});
        }
        "search" => event["props"] = serde_json::json!({"query": rng.pick(&["shoes", "lamp", "desk", "coffee"])}),
        _ => {}
    }
    event
}

/// A malformed line derived from a valid event.
fn malformed(rng: &mut Rng, mut event: serde_json::Value) -> String {
    match rng.below(6) {
        0 => {
            let s = event.to_string();
            s[..s.len() / 2].to_string()
        }
        1 => ["null", "[1,2,3]", "\"just a string\"", "42"][rng.below(4) as usize].to_string(),
        2 => {
            event["device"]["screen"]["w"] = "wide".into();
            event.to_string()
        }
        3 => {
            event.as_object_mut().expect("object").remove("event_id");
            event.to_string()
        }
        4 => {
            event["event_type"] = "../../etc/passwd".into();
            event.to_string()
        }
        _ => {
            event["ts"] = "yesterday".into();
            event.to_string()
        }
    }
}

/// `n` lines: about 2% malformed and 1% duplicates of earlier valid lines.
pub fn generate(n: usize, seed: u64) -> Generated {
    let mut rng = Rng(seed);
    let mut out = Generated {
        lines: Vec::with_capacity(n),
        valid_unique: 0,
        duplicates: 0,
        malformed: 0,
    };
    let mut valid_indices: Vec<usize> = Vec::new();
    for i in 0..n {
        let roll = rng.below(100);
        if roll == 0 && !valid_indices.is_empty() {
            let j = valid_indices[rng.below(valid_indices.len() as u64) as usize];
            out.lines.push(out.lines[j].clone());
            out.duplicates += 1;
            continue;
        }
        let event = valid_event(&mut rng, i, n);
        if roll <= 2 {
            out.lines.push(malformed(&mut rng, event));
            out.malformed += 1;
        } else {
            valid_indices.push(out.lines.len());
            out.lines.push(event.to_string());
            out.valid_unique += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_lines_validate_as_the_counts_say() {
        let schema: sluice_core::JsonDoc = serde_json::from_str(include_str!(
            "../../../../examples/clickstream/schemas/clickstream.schema.json"
        ))
        .unwrap();
        let v = sluice_schema::ValidateTransform::new(&schema, "/event_id", "/ts").unwrap();
        let g = generate(3000, 42);
        let mut valid = std::collections::HashSet::new();
        let mut invalid = 0;
        for line in &g.lines {
            let mut e = sluice_core::Event::from_line(0, bytes::Bytes::from(line.clone()));
            match v.check(&mut e) {
                Ok(()) => {
                    valid.insert(e.id.unwrap().to_string());
                }
                Err(_) => invalid += 1,
            }
        }
        assert_eq!(valid.len() as u64, g.valid_unique);
        assert_eq!(invalid, g.malformed);
        assert_eq!(g.lines.len() as u64, g.valid_unique + g.duplicates + g.malformed);
        assert!(
            g.malformed > 30 && g.duplicates > 10,
            "{} {}",
            g.malformed,
            g.duplicates
        );
    }

    #[test]
    fn same_seed_same_lines() {
        assert_eq!(generate(100, 7).lines, generate(100, 7).lines);
    }
}
