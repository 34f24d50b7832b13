//! Custom logic in its own crate. `big_spender`, a transform, marks
//! purchases whose revenue reaches a threshold (`props.big_spender = true`);
//! `doctor_card`, a projection, adds a headline to a doctor's Redis hash from
//! the doctor and the hospital its lookup found. The binary is the full
//! `sluice` command line with both registered:
//!
//! ```toml
//! [transforms.vip]
//! type = "big_spender"
//! inputs = ["standardize"]
//! threshold = 500.0
//!
//! [sinks.cards]
//! type = "projection"
//! inputs = ["doctors.changes"]
//! redis = "redis://127.0.0.1:6379"
//! key = "card:{id}"
//! lookups.hospital = { entity = "hospital", id = "/hospital", fields = {} }
//! custom = { type = "doctor_card", unknown_specialty = "general practice" }
//! ```

use std::{collections::HashMap, process::ExitCode, sync::Arc};

use async_trait::async_trait;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use sluice::{
    BatchInfo, DocKey, Event, Projection, Rejected, Sluice, StageError, StoredDocument, Transform, TransformOutput,
    parse_object, toml,
};

/// The options of a `big_spender` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// Purchases with `props.revenue` at or above this are marked.
    threshold: f64,
}

struct BigSpender {
    threshold: f64,
}

impl BigSpender {
    fn from_options(options: &toml::Table) -> Result<Arc<dyn Transform>, String> {
        let options = Options::deserialize(options.clone()).map_err(|e| e.message().to_string())?;
        if !options.threshold.is_finite() || options.threshold < 0.0 {
            return Err(format!(
                "threshold: {} is not allowed; give a revenue of 0 or more",
                options.threshold
            ));
        }
        Ok(Arc::new(BigSpender {
            threshold: options.threshold,
        }))
    }
}

#[async_trait]
impl Transform for BigSpender {
    async fn process(&self, _batch: BatchInfo<'_>, events: Vec<Event>) -> Result<TransformOutput, StageError> {
        let mut output = TransformOutput::default();
        for mut event in events {
            let mut value = match parse_object(&event.payload) {
                Ok(v) => v,
                Err((why, detail)) => {
                    output.rejected.push(Rejected::new(event, why, detail));
                    continue;
                }
            };
            let revenue = value.pointer("/props/revenue").and_then(Value::as_f64);
            if value["event_type"] == "purchase" && revenue.is_some_and(|r| r >= self.threshold) {
                value["props"]["big_spender"] = Value::Bool(true);
                event.payload = Bytes::from(value.to_string());
            }
            output.events.push(event);
        }
        Ok(output)
    }
}

/// The options of a `doctor_card` projection.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CardOptions {
    /// Said of doctors without a specialty.
    unknown_specialty: String,
}

/// `headline`: "Dr. Ann, Dentist at General (Oslo)", from the doctor and
/// the hospital document the projection's lookup found.
struct DoctorCard {
    unknown_specialty: String,
}

impl DoctorCard {
    fn from_options(options: &toml::Table) -> Result<Arc<dyn Projection>, String> {
        let options = CardOptions::deserialize(options.clone()).map_err(|e| e.message().to_string())?;
        Ok(Arc::new(DoctorCard {
            unknown_specialty: options.unknown_specialty,
        }))
    }
}

impl Projection for DoctorCard {
    fn fields(&self, doc: &StoredDocument, others: &HashMap<DocKey, Value>) -> Vec<(String, String)> {
        let Some(document) = &doc.document else {
            return Vec::new();
        };
        let text = |v: &Value, pointer: &str| v.pointer(pointer).and_then(Value::as_str).map(str::to_string);
        let name = text(document, "/name").unwrap_or_default();
        let specialty = text(document, "/specialty").unwrap_or_else(|| self.unknown_specialty.clone());
        let hospital = text(document, "/hospital").unwrap_or_default();
        let city = others
            .get(&DocKey {
                entity: "hospital".into(),
                id: hospital.clone(),
            })
            .and_then(|h| text(h, "/city"));
        let place = match city {
            Some(city) => format!("{hospital} ({city})"),
            None => hospital,
        };
        vec![("headline".into(), format!("{name}, {specialty} at {place}"))]
    }
}

fn main() -> ExitCode {
    Sluice::new()
        .transform("big_spender", BigSpender::from_options)
        .projection("doctor_card", DoctorCard::from_options)
        .run()
}
