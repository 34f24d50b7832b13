//! Projections: read models built from the outbound document stream plus
//! lookups of other documents, written to Redis as one hash per document
//! (`type = "projection"` sinks, and `sluice rehydrate`).
//!
//! [`Projector`] turns a document into the hash to write (pure);
//! [`redis`] writes hashes with a revision guard, as a sink and for
//! re-hydration.

pub mod redis;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
};

use serde::Deserialize;
use serde_json::Value;

use crate::{apply::StoredDocument, change::DocKey};

/// A `type = "projection"` sink in the pipeline file.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectionConfig {
    /// `redis://host:port[/db]`, or `rediss://` for TLS.
    pub redis: sluice_core::Secret,
    /// With `rediss://`: a PEM file of the CA certificates that vouch for
    /// the server (else the operating system's are used).
    #[serde(default)]
    pub redis_ca_file: Option<std::path::PathBuf>,
    /// The Redis key of a document's hash: text with `{entity}` and `{id}`.
    pub key: String,
    /// Only documents of this entity (all when absent).
    pub entity: Option<String>,
    /// Hash field -> JSON pointer into the document.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// Other documents whose fields the hash embeds, by name.
    #[serde(default)]
    pub lookups: BTreeMap<String, LookupConfig>,
    /// Logic in Rust, registered by a program using Sluice as a library:
    /// `custom = { type = "doctor_card", ... options }`.
    pub custom: Option<CustomProjection>,
    /// Longest time an accepted document waits before its hash is written.
    #[serde(default = "default_flush_interval_secs")]
    pub flush_interval_secs: u64,
}

/// A registered [`Projection`] type and its options.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
pub struct CustomProjection {
    /// The name the program registered the projection under.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Any other keys: the projection's options.
    #[serde(flatten)]
    #[schemars(with = "std::collections::BTreeMap<String, serde_json::Value>")]
    pub options: toml::Table,
}

/// Projection logic beyond fields and lookups, in Rust: more hash fields
/// for a live document (deleted documents never reach it; their hash goes).
/// `others` holds the documents the projection's lookups found.
pub trait Projection: Send + Sync {
    fn fields(&self, doc: &StoredDocument, others: &HashMap<DocKey, Value>) -> Vec<(String, String)>;
}

/// `lookups.hospital = { entity = "hospital", id = "/hospital", fields = { hospital_city = "/city" } }`.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupConfig {
    /// The entity of the other document.
    pub entity: String,
    /// Pointer into the projected document to the other document's id.
    pub id: String,
    /// Hash field -> pointer into the other document.
    pub fields: BTreeMap<String, String>,
}

fn default_flush_interval_secs() -> u64 {
    1
}

/// One hash to write (or delete) in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Projected {
    pub key: String,
    pub revision: u64,
    /// `None`: the document is deleted, so is its hash.
    pub fields: Option<Vec<(String, String)>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyPart {
    Text(String),
    Entity,
    Id,
}

/// A checked projection.
#[derive(Clone)]
pub struct Projector {
    key: Vec<KeyPart>,
    entity: Option<String>,
    fields: Vec<(String, String)>,
    lookups: Vec<LookupConfig>,
    custom: Option<Arc<dyn Projection>>,
}

fn check_pointer(key: &str, pointer: &str) -> Result<(), String> {
    if pointer.is_empty() || pointer.starts_with('/') {
        Ok(())
    } else {
        Err(format!(
            "{key}: {pointer:?} is not a JSON pointer; write it like \"/name\""
        ))
    }
}

/// The text of a value in a hash field: a string as it is, anything else as JSON.
fn field_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl ProjectionConfig {
    /// Checks the key template and pointers; errors name the key.
    pub fn projector(&self) -> Result<Projector, String> {
        let mut key = Vec::new();
        let mut rest = self.key.as_str();
        while let Some(open) = rest.find('{') {
            if open > 0 {
                key.push(KeyPart::Text(rest[..open].to_string()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("key: {:?} has an unclosed {{", self.key))?;
            key.push(match &rest[open + 1..open + close] {
                "id" => KeyPart::Id,
                "entity" => KeyPart::Entity,
                other => {
                    return Err(format!(
                        "key: {{{other}}} is not a placeholder; allowed: {{id}}, {{entity}}"
                    ));
                }
            });
            rest = &rest[open + close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("key: {:?} has a }} without a {{", self.key));
        }
        if !rest.is_empty() {
            key.push(KeyPart::Text(rest.to_string()));
        }
        if !key.contains(&KeyPart::Id) {
            return Err(format!(
                "key: {:?} must hold {{id}}, or every document would share one hash",
                self.key
            ));
        }
        for (field, pointer) in &self.fields {
            check_pointer(&format!("fields.{field}"), pointer)?;
        }
        for (name, lookup) in &self.lookups {
            check_pointer(&format!("lookups.{name}.id"), &lookup.id)?;
            for (field, pointer) in &lookup.fields {
                check_pointer(&format!("lookups.{name}.fields.{field}"), pointer)?;
            }
        }
        let redis = self.redis.expose();
        if !redis.starts_with("redis://") && !redis.starts_with("rediss://") {
            return Err(format!("redis: {:?} is not a redis:// URL", self.redis.redacted()));
        }
        Ok(Projector {
            key,
            entity: self.entity.clone(),
            fields: self.fields.iter().map(|(f, p)| (f.clone(), p.clone())).collect(),
            lookups: self.lookups.values().cloned().collect(),
            custom: None,
        })
    }
}

impl std::fmt::Debug for Projector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projector")
            .field("key", &self.key)
            .field("entity", &self.entity)
            .field("fields", &self.fields)
            .field("lookups", &self.lookups)
            .field("custom", &self.custom.is_some())
            .finish()
    }
}

impl Projector {
    /// Adds the fields of a [`Projection`] after the configured ones.
    pub fn with_custom(mut self, custom: Arc<dyn Projection>) -> Self {
        self.custom = Some(custom);
        self
    }

    /// Whether documents of `entity` are projected.
    pub fn wants(&self, entity: &str) -> bool {
        self.entity.as_deref().is_none_or(|e| e == entity)
    }

    fn key_of(&self, doc: &DocKey) -> String {
        self.key
            .iter()
            .map(|part| match part {
                KeyPart::Text(t) => t.as_str(),
                KeyPart::Entity => doc.entity.as_str(),
                KeyPart::Id => doc.id.as_str(),
            })
            .collect()
    }

    /// The other documents `doc`'s lookups need.
    pub fn lookup_keys(&self, doc: &StoredDocument, into: &mut BTreeSet<DocKey>) {
        let Some(document) = &doc.document else { return };
        for lookup in &self.lookups {
            if let Some(id) = document.pointer(&lookup.id).and_then(crate::change::key_text) {
                into.insert(DocKey {
                    entity: lookup.entity.clone(),
                    id,
                });
            }
        }
    }

    /// The hash for `doc`; `others` holds the documents its lookups found
    /// (a missing one leaves its fields out).
    pub fn project(&self, doc: &StoredDocument, others: &HashMap<DocKey, Value>) -> Projected {
        let key = self.key_of(&doc.key);
        let Some(document) = &doc.document else {
            return Projected {
                key,
                revision: doc.revision,
                fields: None,
            };
        };
        let mut fields: Vec<(String, String)> = self
            .fields
            .iter()
            .filter_map(|(field, pointer)| document.pointer(pointer).map(|v| (field.clone(), field_text(v))))
            .collect();
        for lookup in &self.lookups {
            let other = document
                .pointer(&lookup.id)
                .and_then(crate::change::key_text)
                .and_then(|id| {
                    others.get(&DocKey {
                        entity: lookup.entity.clone(),
                        id,
                    })
                });
            if let Some(other) = other {
                fields.extend(
                    lookup
                        .fields
                        .iter()
                        .filter_map(|(field, pointer)| other.pointer(pointer).map(|v| (field.clone(), field_text(v)))),
                );
            }
        }
        if let Some(custom) = &self.custom {
            fields.extend(custom.fields(doc, others));
        }
        Projected {
            key,
            revision: doc.revision,
            fields: Some(fields),
        }
    }
}

#[cfg(test)]
mod tests;
