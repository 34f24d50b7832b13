//! `type = "documents"` in a pipeline file, checked without side effects
//! (the store is opened on the first batch).

use std::{path::Path, sync::Arc};

use serde::Deserialize;
use sluice_core::Secret;
use sluice_core::{
    Transform,
    config::{LoadEnv, TransformContext, TransformSpec},
};

use crate::{
    change::ChangeFields,
    transform::{DocumentsTransform, StoreSpec},
};

/// The `documents` stage's table in the pipeline file.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentsConfig {
    /// `"embedded"` (SQLite in the data directory) or a PostgreSQL URL.
    #[serde(default = "default_store")]
    #[schemars(extend("default" = "embedded"))]
    pub store: Secret,
    /// PostgreSQL schema of the store's tables.
    #[serde(default = "default_schema")]
    pub schema: String,
    /// PostgreSQL table; the stage's name by default.
    pub table: Option<String>,
    /// JSON pointer to the entity the document belongs to (`"doctor"`).
    #[serde(default = "default_entity")]
    pub entity: String,
    /// JSON pointer to the document id within its entity.
    #[serde(default = "default_id")]
    pub id: String,
    /// JSON pointer to the change's version (any number that grows with
    /// each change at the source).
    #[serde(default = "default_version")]
    pub version: String,
    /// JSON pointer to the operation: `"upsert"` (merge the patch) or
    /// `"delete"`.
    #[serde(default = "default_op")]
    pub op: String,
    /// JSON pointer to the partial document (JSON merge patch: absent =
    /// unchanged, null = delete).
    #[serde(default = "default_patch")]
    pub patch: String,
    /// JSON pointer to the change's time (RFC 3339), kept with the document.
    #[serde(default = "default_ts")]
    pub ts: String,
    /// Where `sluice snapshot` writes every current document.
    pub snapshot: Option<SnapshotConfig>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// A Delta table: a path relative to the pipeline file, or a URL (after
    /// loading, always a URL).
    pub uri: String,
    /// Options for an `s3://` table (endpoint, region, ...), over the
    /// `AWS_*` environment variables.
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub storage_options: sluice_core::StorageOptions,
    /// Typed columns beside `document`, from fields of each document.
    #[serde(default)]
    pub columns: std::collections::BTreeMap<String, SnapshotColumn>,
}

/// `columns.rating = { pointer = "/rating", type = "double" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotColumn {
    /// JSON pointer into the document to the column's value.
    pub pointer: String,
    #[serde(rename = "type")]
    pub kind: ColumnType,
}

/// A typed column's Delta type; a value of another JSON type is null.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    String,
    Long,
    Double,
    Boolean,
}

impl SnapshotConfig {
    /// The table, once `uri` is a URL (after loading).
    pub fn location(&self) -> Result<sluice_lake::StoreLocation, String> {
        let url = url::Url::parse(&self.uri).map_err(|e| format!("uri: {:?} is not a URL ({e})", self.uri))?;
        sluice_lake::StoreLocation::new(url, self.storage_options.clone())
    }

    /// Column names must not clash with the fixed ones; pointers must be pointers.
    pub fn check(&self) -> Result<(), String> {
        for (name, column) in &self.columns {
            if crate::snapshot::FIXED_COLUMNS.contains(&name.as_str()) || name == "bucket" {
                return Err(format!(
                    "snapshot.columns.{name}: the snapshot table has this column already"
                ));
            }
            if !column.pointer.starts_with('/') {
                return Err(format!(
                    "snapshot.columns.{name}.pointer: {:?} is not a JSON pointer; write it like \"/rating\"",
                    column.pointer
                ));
            }
        }
        Ok(())
    }
}

fn default_store() -> Secret {
    Secret::new("embedded")
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
        let store = self.store.expose();
        if store == "embedded" {
            return Ok(StoreSpec::Embedded(
                data_dir.join("documents").join(format!("{name}.sqlite3")),
            ));
        }
        if !(store.starts_with("postgres://") || store.starts_with("postgresql://")) {
            return Err(format!(
                "store: {:?} is not a store; allowed: \"embedded\" or a postgres:// URL",
                self.store.redacted()
            ));
        }
        store
            .parse::<tokio_postgres::Config>()
            .map_err(|e| format!("store: not a PostgreSQL connection string ({e})"))?;
        Ok(StoreSpec::Postgres {
            url: self.store.clone(),
            schema: self.schema.clone(),
            table: self.table.clone().unwrap_or_else(|| name.to_string()),
        })
    }

    /// The stage `name`, checked; its store opens on the first batch.
    pub fn stage(&self, name: &str, data_dir: &Path) -> Result<DocumentsTransform, String> {
        let fields = self.fields();
        fields.check()?;
        if let Some(snapshot) = &self.snapshot {
            snapshot.check()?;
        }
        Ok(DocumentsTransform::new(name, fields, self.store_spec(name, data_dir)?))
    }
}

impl TransformSpec for DocumentsConfig {
    /// The snapshot table's location becomes a URL.
    fn resolve(&mut self, env: &dyn LoadEnv) -> Result<(), String> {
        if let Some(snapshot) = &mut self.snapshot {
            let location = env
                .location(&snapshot.uri, &snapshot.storage_options)
                .map_err(|e| format!("snapshot.{e}"))?;
            snapshot.uri = location.url;
        }
        Ok(())
    }

    fn build(&self, context: &TransformContext<'_>) -> Result<Arc<dyn Transform>, String> {
        Ok(Arc::new(self.stage(context.name, context.data_dir)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(extra: &str) -> Result<DocumentsTransform, String> {
        let config: DocumentsConfig = toml::from_str(extra).unwrap();
        config.stage("doctors", Path::new("/data"))
    }

    #[test]
    fn stores_pointers_and_snapshot_columns_are_checked() {
        assert!(stage("").is_ok());
        let err = |extra: &str| stage(extra).err().unwrap();
        assert_eq!(
            err("store = \"mysql://x\""),
            "store: \"mysql://x\" is not a store; allowed: \"embedded\" or a postgres:// URL"
        );
        assert!(err("id = \"id\"").starts_with("id: \"id\" is not a JSON pointer"));
        assert_eq!(
            err("snapshot = { uri = \"lake/d\", columns = { document = { pointer = \"/x\", type = \"string\" } } }"),
            "snapshot.columns.document: the snapshot table has this column already"
        );
        assert!(
            err("snapshot = { uri = \"lake/d\", columns = { rating = { pointer = \"rating\", type = \"double\" } } }")
                .starts_with("snapshot.columns.rating.pointer: \"rating\" is not a JSON pointer")
        );
        let spec = DocumentsConfig {
            table: None,
            ..toml::from_str("store = \"postgres://127.0.0.1/app\"").unwrap()
        }
        .store_spec("doctors", Path::new("/data"))
        .unwrap();
        assert_eq!(
            spec,
            StoreSpec::Postgres {
                url: "postgres://127.0.0.1/app".into(),
                schema: "sluice".into(),
                table: "doctors".into()
            }
        );
    }
}
