//! The schema registry: schemas stored by key
//! (`iglu:vendor/name/format/MODEL-REVISION-ADDITION`) laid out as an Iglu
//! static repository (`schemas/vendor/name/format/1-0-0`) in a folder, an
//! S3 prefix or a PostgreSQL table ([`store`]), each with a fingerprint. Format `jsonschema` holds JSON Schemas, fingerprinted
//! by the SHA-256 of their canonical JSON (keys sorted, no spaces); format
//! `avro` holds Avro schemas, fingerprinted as Avro's single-object
//! encoding does ([`crate::avro`]), and no two Avro schemas share one.
//!
//! Invariants: a registered version never changes (registering the same
//! content again is a no-op; other content under its key is refused); a
//! version within a MODEL must be newer than every registered version of
//! that MODEL. SchemaVer decides what may break ([`compat`]): an ADDITION
//! must be compatible with every earlier version of its MODEL and
//! REVISION; a REVISION may break some historical data, so it is accepted
//! with each break reported as a warning; a new MODEL starts at `M-0-0`
//! and may break anything.

pub mod compat;
pub mod key;
pub mod store;

use std::{path::Path, sync::Arc};

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sluice_core::JsonDoc;

pub use compat::{Changes, compare};
pub use key::{SchemaKey, SchemaVer};

pub use store::{ObjectStoreSchemas, PostgresSchemas, SchemaStore};

use crate::{avro, iglu::Referenced};

/// A registered schema.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Registered {
    pub key: SchemaKey,
    pub fingerprint: String,
    /// As written: its properties' order is the order of a table's columns.
    pub schema: JsonDoc,
}

/// What registering (or checking) a schema found.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Stored (or, for a check, would be): compared with `against` if the
    /// MODEL had versions, with these additions.
    Accepted {
        against: Option<SchemaKey>,
        additions: Vec<String>,
        /// What a REVISION breaks for data of earlier versions.
        warnings: Vec<String>,
    },
    /// The same content is registered under this key already.
    AlreadyRegistered,
}

/// Why a schema was refused; the message says exactly what breaks.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RegistryError {
    #[error("{0}")]
    Invalid(String),
    #[error(
        "{key} breaks {against}:\n  {}\nregister it as iglu:{}/{}-0-0 (a new MODEL) if readers must move on",
        breaking.join("\n  "),
        key.family_path(),
        key.version.model + 1
    )]
    Breaking {
        key: Box<SchemaKey>,
        against: Box<SchemaKey>,
        breaking: Vec<String>,
    },
    #[error("registry {path}: {message}")]
    Storage { path: String, message: String },
}

/// Versioned schemas in a [`SchemaStore`].
#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn SchemaStore>,
}

/// SHA-256 (hex) of `schema`'s canonical JSON: keys sorted (as serde_json's
/// `Value` keeps them), no spaces.
pub fn fingerprint(schema: &Value) -> String {
    let text = serde_json::to_vec(schema).unwrap_or_default();
    Sha256::digest(&text).iter().map(|b| format!("{b:02x}")).collect()
}

/// The key a self-describing schema names in its `self` block.
pub fn self_key(schema: &JsonDoc) -> Option<Result<SchemaKey, String>> {
    let own = schema.get("self")?;
    let field = |k: &str| own.get(k).and_then(JsonDoc::as_str).unwrap_or_default().to_string();
    Some(
        format!(
            "iglu:{}/{}/{}/{}",
            field("vendor"),
            field("name"),
            field("format"),
            field("version")
        )
        .parse(),
    )
}

/// The fingerprint of `schema` registered under `key`.
pub fn fingerprint_of(key: &SchemaKey, schema: &JsonDoc) -> String {
    let schema = schema.to_value();
    if key.format == avro::FORMAT
        && let Ok(parsed) = avro::parse(&schema)
    {
        return avro::fingerprint_hex(&avro::fingerprint_bytes(&parsed));
    }
    fingerprint(&schema)
}

impl Registered {
    /// The JSON Schema of the events this schema describes: the schema
    /// itself, or what an Avro schema's datums decode to.
    pub fn json_schema(&self) -> Result<JsonDoc, String> {
        json_schema_of(&self.key, &self.schema)
    }
}

/// The JSON Schema the events of `schema` follow: the schema itself, or
/// what an Avro schema's datums decode to (checked).
fn json_schema_of(key: &SchemaKey, schema: &JsonDoc) -> Result<JsonDoc, String> {
    if key.format == avro::FORMAT {
        return avro::parse(&schema.to_value())
            .map(|parsed| avro::to_json_schema(&parsed))
            .map_err(|e| format!("{key}: {e}"));
    }
    Ok(schema.clone())
}

/// Checks that a JSON Schema compiles, its Iglu references resolved from
/// `referenced`.
fn check_compiles(key: &SchemaKey, schema: &Value, referenced: Referenced) -> Result<(), String> {
    let (view, draft) = crate::iglu::for_validator(schema);
    jsonschema::options()
        .with_draft(draft)
        .with_retriever(referenced)
        .build(&view)
        .map(|_| ())
        .map_err(|e| format!("{key}: not a valid JSON Schema: {e}"))
}

impl Registry {
    pub fn new(store: Arc<dyn SchemaStore>) -> Self {
        Registry { store }
    }

    /// A registry in a local folder (created if missing).
    pub fn folder(root: &Path) -> Result<Self, RegistryError> {
        let shown = root.display().to_string();
        std::fs::create_dir_all(root).map_err(|e| RegistryError::Storage {
            path: shown.clone(),
            message: e.to_string(),
        })?;
        let local =
            object_store::local::LocalFileSystem::new_with_prefix(root).map_err(|e| RegistryError::Storage {
                path: shown.clone(),
                message: e.to_string(),
            })?;
        Ok(Registry::new(Arc::new(ObjectStoreSchemas::new(
            Arc::new(local),
            object_store::path::Path::default(),
            shown,
        ))))
    }

    /// Where the schemas are, for messages.
    pub fn location(&self) -> String {
        self.store.location()
    }

    fn storage(&self, e: impl std::fmt::Display) -> RegistryError {
        RegistryError::Storage {
            path: self.store.location(),
            message: e.to_string(),
        }
    }

    fn path_of(key: &SchemaKey) -> String {
        format!("schemas/{}/{}", key.family_path(), key.version)
    }

    /// The key of every registered schema, ordered by family and version,
    /// without reading the schemas.
    async fn keys(&self) -> Result<Vec<SchemaKey>, RegistryError> {
        let mut keys = Vec::new();
        for path in self.store.list().await.map_err(|e| self.storage(e))? {
            let parts: Vec<&str> = path.split('/').collect();
            let ["schemas", vendor, name, format, version] = parts.as_slice() else {
                continue;
            };
            if let Ok(key) = format!("iglu:{vendor}/{name}/{format}/{version}").parse::<SchemaKey>() {
                keys.push(key);
            }
        }
        keys.sort_by_key(|k| (k.family_path(), k.version));
        Ok(keys)
    }

    /// Every registered schema, ordered by family and version.
    pub async fn list(&self) -> Result<Vec<Registered>, RegistryError> {
        let mut found = Vec::new();
        for key in self.keys().await? {
            found.push(
                self.get(&key)
                    .await?
                    .ok_or_else(|| self.storage(format!("{key} vanished")))?,
            );
        }
        Ok(found)
    }

    pub async fn get(&self, key: &SchemaKey) -> Result<Option<Registered>, RegistryError> {
        let path = Self::path_of(key);
        let Some(text) = self
            .store
            .read(&path)
            .await
            .map_err(|e| self.storage(format!("{path}: {e}")))?
        else {
            return Ok(None);
        };
        let schema: JsonDoc = serde_json::from_slice(&text).map_err(|e| self.storage(format!("{path}: {e}")))?;
        Ok(Some(Registered {
            key: key.clone(),
            fingerprint: fingerprint_of(key, &schema),
            schema,
        }))
    }

    /// What registering `schema` under `key` would do, without storing it.
    pub async fn check(&self, key: &SchemaKey, schema: &JsonDoc) -> Result<Outcome, RegistryError> {
        let events = json_schema_of(key, schema).map_err(RegistryError::Invalid)?;
        if key.format != avro::FORMAT {
            let value = schema.to_value();
            let referenced = self.referenced(&value).await?;
            check_compiles(key, &value, referenced).map_err(RegistryError::Invalid)?;
        }
        let new_fingerprint = fingerprint_of(key, schema);
        if let Some(existing) = self.get(key).await? {
            if existing.fingerprint == new_fingerprint {
                return Ok(Outcome::AlreadyRegistered);
            }
            return Err(RegistryError::Invalid(format!(
                "{key} is registered with other content (fingerprint {}); a version never changes: register a new one",
                existing.fingerprint
            )));
        }
        let keys = self.keys().await?;
        if key.format == avro::FORMAT {
            for other in keys.iter().filter(|k| k.format == avro::FORMAT) {
                let Some(twin) = self.get(other).await? else {
                    continue;
                };
                if twin.fingerprint != new_fingerprint {
                    continue;
                }
                return Err(RegistryError::Invalid(format!(
                    "{key} has the fingerprint of {} ({new_fingerprint}); Avro datums name their schema by fingerprint, so each registered Avro schema must differ (e.g. in a field)",
                    twin.key
                )));
            }
        }
        let mut same_model: Vec<Registered> = Vec::new();
        for other in keys
            .iter()
            .filter(|k| k.same_family(key) && k.version.model == key.version.model)
        {
            if let Some(found) = self.get(other).await? {
                same_model.push(found);
            }
        }
        let Some(newest) = same_model.last() else {
            if key.version.revision != 0 || key.version.addition != 0 {
                return Err(RegistryError::Invalid(format!(
                    "{key}: the first version of MODEL {} is {}-0-0",
                    key.version.model, key.version.model
                )));
            }
            return Ok(Outcome::Accepted {
                against: None,
                additions: Vec::new(),
                warnings: Vec::new(),
            });
        };
        if key.version < newest.key.version {
            return Err(RegistryError::Invalid(format!(
                "{key} is older than {}, the newest version of its MODEL",
                newest.key
            )));
        }
        let events = events.to_value();
        let against_newest = compare(
            &newest.json_schema().map_err(RegistryError::Invalid)?.to_value(),
            &events,
        );
        if key.version.revision > newest.key.version.revision {
            return Ok(Outcome::Accepted {
                against: Some(newest.key.clone()),
                additions: against_newest.additions,
                warnings: against_newest.breaking,
            });
        }
        // An ADDITION: compatible with every earlier version of its
        // REVISION, newest first; each break is named once, with the
        // version it breaks when that is not the first one broken.
        let mut broken: Option<&SchemaKey> = None;
        let mut seen = std::collections::BTreeSet::new();
        let mut breaking: Vec<String> = Vec::new();
        let same_revision = same_model
            .iter()
            .rev()
            .filter(|r| r.key.version.revision == key.version.revision);
        for earlier in same_revision {
            let older = earlier.json_schema().map_err(RegistryError::Invalid)?.to_value();
            for b in compare(&older, &events).breaking {
                let first = *broken.get_or_insert(&earlier.key);
                if !seen.insert(b.clone()) {
                    continue;
                }
                breaking.push(if earlier.key == *first {
                    b
                } else {
                    format!("{b} (against {})", earlier.key.version)
                });
            }
        }
        if let Some(first) = broken {
            return Err(RegistryError::Breaking {
                key: Box::new(key.clone()),
                against: Box::new(first.clone()),
                breaking,
            });
        }
        Ok(Outcome::Accepted {
            against: Some(newest.key.clone()),
            additions: against_newest.additions,
            warnings: Vec::new(),
        })
    }

    /// The registered schemas `schema` refers to by Iglu key, and those they
    /// refer to: what a validator needs to resolve its references. A key
    /// the registry lacks is refused by name.
    pub async fn referenced(&self, schema: &Value) -> Result<Referenced, RegistryError> {
        let mut referenced = Referenced::default();
        let mut pending = crate::iglu::refs(schema);
        let mut seen = std::collections::BTreeSet::new();
        while let Some(uri) = pending.pop() {
            if !seen.insert(uri.clone()) {
                continue;
            }
            let Some(text) = crate::iglu::key_of_ref(&uri) else {
                continue;
            };
            let key: SchemaKey = text
                .parse()
                .map_err(|e| RegistryError::Invalid(format!("$ref {uri}: {e}")))?;
            let found = self.get(&key).await?.ok_or_else(|| {
                RegistryError::Invalid(format!("$ref {uri}: {key} is not registered; register it first"))
            })?;
            let value = found.schema.to_value();
            pending.extend(crate::iglu::refs(&value));
            referenced.insert(uri, &value);
        }
        Ok(referenced)
    }

    /// Checks and stores `schema` under `key`.
    pub async fn register(&self, key: &SchemaKey, schema: &JsonDoc) -> Result<Outcome, RegistryError> {
        let outcome = self.check(key, schema).await?;
        if outcome == Outcome::AlreadyRegistered {
            return Ok(outcome);
        }
        let text = serde_json::to_vec_pretty(schema).map_err(|e| self.storage(e))?;
        let path = Self::path_of(key);
        if !self
            .store
            .create(&path, text)
            .await
            .map_err(|e| self.storage(format!("{path}: {e}")))?
        {
            return Err(RegistryError::Invalid(format!(
                "{key} was registered by someone else meanwhile; check it again"
            )));
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests;
