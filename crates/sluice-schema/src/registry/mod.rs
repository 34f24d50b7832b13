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
//! that MODEL and compatible with the newest of them ([`compat`]); a new
//! MODEL starts at `M-0-0` and may break anything.

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

use crate::avro;

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

/// Checks `schema` is valid in `key`'s format; the JSON Schema its events follow.
fn json_schema_of(key: &SchemaKey, schema: &JsonDoc) -> Result<JsonDoc, String> {
    if key.format == avro::FORMAT {
        return avro::parse(&schema.to_value())
            .map(|parsed| avro::to_json_schema(&parsed))
            .map_err(|e| format!("{key}: {e}"));
    }
    jsonschema::options()
        .build(&schema.to_value())
        .map_err(|e| format!("{key}: not a valid JSON Schema: {e}"))?;
    Ok(schema.clone())
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

    /// Every registered schema, ordered by family and version.
    pub async fn list(&self) -> Result<Vec<Registered>, RegistryError> {
        let mut found = Vec::new();
        for path in self.store.list().await.map_err(|e| self.storage(e))? {
            let parts: Vec<&str> = path.split('/').collect();
            let ["schemas", vendor, name, format, version] = parts.as_slice() else {
                continue;
            };
            let Ok(key) = format!("iglu:{vendor}/{name}/{format}/{version}").parse::<SchemaKey>() else {
                continue;
            };
            found.push(
                self.get(&key)
                    .await?
                    .ok_or_else(|| self.storage(format!("{key} vanished")))?,
            );
        }
        found.sort_by_key(|r| (r.key.family_path(), r.key.version));
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
        let all = self.list().await?;
        if key.format == avro::FORMAT
            && let Some(twin) = all
                .iter()
                .find(|r| r.key.format == avro::FORMAT && r.fingerprint == new_fingerprint)
        {
            return Err(RegistryError::Invalid(format!(
                "{key} has the fingerprint of {} ({new_fingerprint}); Avro datums name their schema by fingerprint, so each registered Avro schema must differ (e.g. in a field)",
                twin.key
            )));
        }
        let same_model: Vec<Registered> = all
            .into_iter()
            .filter(|r| r.key.same_family(key) && r.key.version.model == key.version.model)
            .collect();
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
            });
        };
        if key.version < newest.key.version {
            return Err(RegistryError::Invalid(format!(
                "{key} is older than {}, the newest version of its MODEL",
                newest.key
            )));
        }
        let older = newest.json_schema().map_err(RegistryError::Invalid)?;
        let changes = compare(&older.to_value(), &events.to_value());
        if !changes.breaking.is_empty() {
            return Err(RegistryError::Breaking {
                key: Box::new(key.clone()),
                against: Box::new(newest.key.clone()),
                breaking: changes.breaking,
            });
        }
        Ok(Outcome::Accepted {
            against: Some(newest.key.clone()),
            additions: changes.additions,
        })
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
