//! Change events for documents: `{"entity","id","version","ts","op","patch"}`
//! lines where `op` is `upsert` (an RFC 7396 merge patch) or `delete`.
//! Versions of a document rise by one in source order; deliveries are
//! shuffled within a window and some are repeated, so a correct consumer
//! must merge out of order and ignore repeats. The oracle is every document
//! after applying each source change once, in version order.

use std::{
    collections::BTreeMap,
    io::{self, Write},
};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::{clickstream::CITIES, rng::Rng};

#[derive(Debug, Clone)]
pub struct CdcOptions {
    /// Source changes to generate (deliveries add the repeats).
    pub changes: u64,
    /// Distinct documents the changes are spread over.
    pub docs: u64,
    pub seed: u64,
    pub start: DateTime<Utc>,
    /// Share of changes (after a document's first) that delete it.
    pub delete_rate: f64,
    /// Share of deliveries repeated a little later.
    pub dup_rate: f64,
    /// Deliveries are shuffled within windows of this many.
    pub reorder_window: usize,
}

impl Default for CdcOptions {
    fn default() -> Self {
        CdcOptions {
            changes: 100_000,
            docs: 5000,
            seed: 1,
            start: crate::default_start(),
            delete_rate: 0.01,
            dup_rate: 0.02,
            reorder_window: 20,
        }
    }
}

/// What a correct consumer ends up with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CdcOracle {
    pub kind: &'static str,
    pub seed: u64,
    pub changes_delivered: u64,
    pub changes_source: u64,
    /// Every live document by id.
    pub documents: BTreeMap<String, Value>,
}

const SPECIALTIES: [&str; 7] = [
    "Dermatologist",
    "Dentist",
    "Pediatrician",
    "Cardiologist",
    "Therapist",
    "Surgeon",
    "Allergist",
];
const HOSPITALS: [&str; 5] = [
    "Sacred Heart",
    "Chicago Hope",
    "Seattle Grace",
    "Princeton-Plainsboro",
    "County General",
];
const FIRST_NAMES: [&str; 6] = ["Ana", "John", "Mei", "Ravi", "Olu", "Sven"];
const INSURANCES: [&str; 5] = ["aetna", "cigna", "uhc", "bcbs", "medicare"];

/// RFC 7396 JSON Merge Patch.
fn merge_patch(target: Option<&Value>, patch: &Value) -> Value {
    let Value::Object(patch) = patch else {
        return patch.clone();
    };
    let mut result = match target {
        Some(Value::Object(target)) => target.clone(),
        _ => Map::new(),
    };
    for (key, value) in patch {
        if value.is_null() {
            result.remove(key);
        } else {
            let merged = merge_patch(result.get(key), value);
            result.insert(key.clone(), merged);
        }
    }
    Value::Object(result)
}

fn patch(rng: &mut Rng, id: &str, first: bool) -> Value {
    if first {
        return json!({
            "name": format!("Dr. {} {id}", rng.pick(&FIRST_NAMES)),
            "specialty": rng.pick(&SPECIALTIES),
            "hospital": rng.pick(&HOSPITALS),
            "address": {"city": rng.pick(&CITIES), "zip": rng.range(10_000, 99_999).to_string()},
            "accepting": true,
            "rating": rng.rounded(3.0, 5.0, 1),
            "insurances": rng.sample(&INSURANCES, 2),
        });
    }
    let mut p = Map::new();
    for _ in 0..rng.range(1, 4) {
        let (key, value) = match rng.below(7) {
            0 => ("hospital", json!(rng.pick(&HOSPITALS))),
            1 => ("accepting", json!(rng.chance(0.7))),
            2 => ("rating", json!(rng.rounded(1.0, 5.0, 1))),
            3 => ("address", json!({"city": rng.pick(&CITIES)})),
            4 => ("address", json!({"zip": null})),
            5 if rng.chance(0.3) => ("specialty", Value::Null),
            5 => ("specialty", json!(rng.pick(&SPECIALTIES))),
            _ => {
                let k = rng.below(4) as usize;
                ("insurances", json!(rng.sample(&INSURANCES, k)))
            }
        };
        p.insert(key.into(), value);
    }
    Value::Object(p)
}

/// Writes the delivered change events to `out` and returns the oracle.
pub fn cdc<W: Write + ?Sized>(options: &CdcOptions, out: &mut W) -> io::Result<CdcOracle> {
    let mut rng = Rng::new(options.seed);
    let mut versions: BTreeMap<String, u64> = BTreeMap::new();
    let mut documents: BTreeMap<String, Value> = BTreeMap::new();
    let mut source = Vec::with_capacity(options.changes as usize);
    for i in 0..options.changes {
        let id = format!("d{:06}", rng.below(options.docs.max(1)));
        let version = versions.get(&id).copied().unwrap_or(0) + 1;
        versions.insert(id.clone(), version);
        let ts = crate::iso(options.start + Duration::milliseconds(37 * i as i64));
        let change = if version > 1 && rng.chance(options.delete_rate) {
            documents.remove(&id);
            json!({"entity": "doctor", "id": id, "version": version, "ts": ts, "op": "delete"})
        } else {
            let patch = patch(&mut rng, &id, !documents.contains_key(&id));
            let merged = merge_patch(documents.get(&id), &patch);
            documents.insert(id.clone(), merged);
            json!({"entity": "doctor", "id": id, "version": version, "ts": ts, "op": "upsert", "patch": patch})
        };
        source.push(change.to_string());
    }
    let mut delivered = source.clone();
    for window in delivered.chunks_mut(options.reorder_window.max(2)) {
        rng.shuffle(window);
    }
    let repeats = (delivered.len() as f64 * options.dup_rate) as usize;
    let mut picks: Vec<usize> = (0..repeats)
        .map(|_| rng.below(delivered.len() as u64) as usize)
        .collect();
    picks.sort_unstable_by(|a, b| b.cmp(a));
    for j in picks {
        let at = (j + rng.range(1, 50) as usize).min(delivered.len());
        let copy = delivered[j].clone();
        delivered.insert(at, copy);
    }
    for line in &delivered {
        writeln!(out, "{line}")?;
    }
    Ok(CdcOracle {
        kind: "cdc",
        seed: options.seed,
        changes_delivered: delivered.len() as u64,
        changes_source: source.len() as u64,
        documents,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generate(options: &CdcOptions) -> (Vec<Value>, CdcOracle) {
        let mut out = Vec::new();
        let oracle = cdc(options, &mut out).unwrap();
        let lines = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (lines, oracle)
    }

    #[test]
    fn merge_patch_follows_rfc_7396_examples() {
        let target = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        let patch = json!({"a": "z", "c": {"f": null}});
        assert_eq!(merge_patch(Some(&target), &patch), json!({"a": "z", "c": {"d": "e"}}));
        assert_eq!(
            merge_patch(Some(&json!({"a": [1]})), &json!({"a": {"b": "c"}})),
            json!({"a": {"b": "c"}})
        );
        assert_eq!(merge_patch(Some(&json!({"a": "b"})), &json!(["c"])), json!(["c"]));
        assert_eq!(
            merge_patch(None, &json!({"a": {"bb": {"ccc": null}}})),
            json!({"a": {"bb": {}}})
        );
    }

    #[test]
    fn replaying_deliveries_in_version_order_gives_the_oracle() {
        let options = CdcOptions {
            changes: 4000,
            docs: 300,
            seed: 5,
            ..CdcOptions::default()
        };
        let (delivered, oracle) = generate(&options);
        assert_eq!(delivered.len() as u64, oracle.changes_delivered);
        assert!(
            oracle.changes_delivered > oracle.changes_source,
            "some deliveries repeat"
        );
        let mut by_version: BTreeMap<(String, u64), &Value> = BTreeMap::new();
        let mut out_of_order = 0;
        let mut last_seen: BTreeMap<String, u64> = BTreeMap::new();
        for change in &delivered {
            let (id, version) = (
                change["id"].as_str().unwrap().to_string(),
                change["version"].as_u64().unwrap(),
            );
            if last_seen.get(&id).is_some_and(|&v| v > version) {
                out_of_order += 1;
            }
            last_seen.insert(id.clone(), version);
            by_version.insert((id, version), change);
        }
        assert!(out_of_order > 0, "deliveries are reordered");
        assert_eq!(by_version.len() as u64, oracle.changes_source);
        let mut documents: BTreeMap<String, Value> = BTreeMap::new();
        for ((id, _), change) in by_version {
            if change["op"] == "delete" {
                documents.remove(&id);
            } else {
                let merged = merge_patch(documents.get(&id), &change["patch"]);
                documents.insert(id, merged);
            }
        }
        assert_eq!(documents, oracle.documents);
    }
}
