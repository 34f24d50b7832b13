//! `type = "documents"` in a pipeline file, checked without side effects
//! (the store is opened on the first batch).

use std::path::Path;

use serde::Deserialize;

use crate::{
    change::ChangeFields,
    transform::{DocumentsTransform, StoreSpec},
};

/// The `documents` stage's table in the pipeline file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentsConfig {
    pub inputs: Vec<String>,
    /// `"embedded"` (SQLite in the data directory) or a PostgreSQL URL.
    #[serde(default = "default_store")]
    pub store: String,
    /// PostgreSQL schema of the store's tables.
    #[serde(default = "default_schema")]
    pub schema: String,
    /// PostgreSQL table; the stage's name by default.
    pub table: Option<String>,
    #[serde(default = "default_entity")]
    pub entity: String,
    #[serde(default = "default_id")]
    pub id: String,
    #[serde(default = "default_version")]
    pub version: String,
    #[serde(default = "default_op")]
    pub op: String,
    #[serde(default = "default_patch")]
    pub patch: String,
    #[serde(default = "default_ts")]
    pub ts: String,
    /// Where `sluice snapshot` writes every current document.
    pub snapshot: Option<SnapshotConfig>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// A Delta table: a path relative to the pipeline file, or a URL (after
    /// loading, always a URL).
    pub uri: String,
}

fn default_store() -> String {
    "embedded".into()
}
fn default_schema() -> String {
    "sluice".into()
}
fn default_entity() -> String {
    ChangeFields::default().entity
}
fn default_id() -> String {
    ChangeFields::default().id
}
fn default_version() -> String {
    ChangeFields::default().version
}
fn default_op() -> String {
    ChangeFields::default().op
}
fn default_patch() -> String {
    ChangeFields::default().patch
}
fn default_ts() -> String {
    ChangeFields::default().ts
}

impl DocumentsConfig {
    pub fn fields(&self) -> ChangeFields {
        ChangeFields {
            entity: self.entity.clone(),
            id: self.id.clone(),
            version: self.version.clone(),
            op: self.op.clone(),
            patch: self.patch.clone(),
            ts: self.ts.clone(),
        }
    }

    /// Where the documents live; the embedded store is a file in `data_dir`.
    pub fn store_spec(&self, name: &str, data_dir: &Path) -> Result<StoreSpec, String> {
        if self.store == "embedded" {
            return Ok(StoreSpec::Embedded(
                data_dir.join("documents").join(format!("{name}.sqlite3")),
            ));
        }
        if !(self.store.starts_with("postgres://") || self.store.starts_with("postgresql://")) {
            return Err(format!(
                "store: {:?} is not a store; allowed: \"embedded\" or a postgres:// URL",
                self.store
            ));
        }
        self.store
            .parse::<tokio_postgres::Config>()
            .map_err(|e| format!("store: not a PostgreSQL connection string ({e})"))?;
        Ok(StoreSpec::Postgres {
            url: self.store.clone(),
            schema: self.schema.clone(),
            table: self.table.clone().unwrap_or_else(|| name.to_string()),
        })
    }

    /// The stage `name`, checked; its store opens on the first batch.
    pub fn build(&self, name: &str, data_dir: &Path) -> Result<DocumentsTransform, String> {
        let fields = self.fields();
        fields.check()?;
        Ok(DocumentsTransform::new(name, fields, self.store_spec(name, data_dir)?))
    }
}
