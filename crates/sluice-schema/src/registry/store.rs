//! Where a registry keeps its schema files: an object store (a local
//! folder or an S3 prefix, through `object_store`) or a PostgreSQL table.
//! Paths are those of an Iglu static repository:
//! `schemas/vendor/name/format/1-0-0`.
//!
//! Invariant: `create` stores a path only if nothing is there, atomically
//! (a hard link for a folder, `If-None-Match: *` on S3, a primary key in
//! PostgreSQL), so a version appears whole or not at all and a racing
//! registration of the same key loses instead of replacing it.

use std::sync::Arc;

use async_trait::async_trait;
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, path::Path};
use tokio::sync::OnceCell;

/// Storage of schema files.
#[async_trait]
pub trait SchemaStore: Send + Sync {
    /// The file at `path`, if there is one.
    async fn read(&self, path: &str) -> Result<Option<Vec<u8>>, String>;
    /// Every path under `schemas/`.
    async fn list(&self) -> Result<Vec<String>, String>;
    /// Stores `bytes` at `path` if nothing is there; false if something was.
    async fn create(&self, path: &str, bytes: Vec<u8>) -> Result<bool, String>;
    /// Where the files are, for messages.
    fn location(&self) -> String;
}

/// Schema files in an object store, under a prefix.
pub struct ObjectStoreSchemas {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    shown: String,
}

impl ObjectStoreSchemas {
    /// `shown` names the location in messages (the folder or URL).
    pub fn new(store: Arc<dyn ObjectStore>, prefix: Path, shown: impl Into<String>) -> Self {
        ObjectStoreSchemas {
            store,
            prefix,
            shown: shown.into(),
        }
    }

    fn full(&self, path: &str) -> Path {
        path.split('/')
            .fold(self.prefix.clone(), |p, part| p.clone().join(part))
    }
}

#[async_trait]
impl SchemaStore for ObjectStoreSchemas {
    async fn read(&self, path: &str) -> Result<Option<Vec<u8>>, String> {
        match self.store.get(&self.full(path)).await {
            Ok(found) => Ok(Some(found.bytes().await.map_err(|e| e.to_string())?.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn list(&self) -> Result<Vec<String>, String> {
        let base = self.full("schemas");
        let found: Vec<_> = self
            .store
            .list(Some(&base))
            .try_collect()
            .await
            .map_err(|e| e.to_string())?;
        let skip = self.prefix.parts().count();
        Ok(found
            .into_iter()
            .map(|meta| {
                meta.location
                    .parts()
                    .skip(skip)
                    .map(|p| p.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect())
    }

    async fn create(&self, path: &str, bytes: Vec<u8>) -> Result<bool, String> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self.store.put_opts(&self.full(path), bytes.into(), options).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }

    fn location(&self) -> String {
        self.shown.clone()
    }
}

/// Schema files as rows of a PostgreSQL table (`path` primary key, `body`),
/// created on first use.
pub struct PostgresSchemas {
    url: String,
    table: String,
    created: OnceCell<()>,
}

impl PostgresSchemas {
    /// `table` is a name or `schema.name` of letters, digits and `_`.
    pub fn new(url: &str, table: &str) -> Result<Self, String> {
        let parts: Vec<&str> = table.split('.').collect();
        let plain = |p: &&str| {
            !p.is_empty()
                && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !p.starts_with(|c: char| c.is_ascii_digit())
        };
        if parts.len() > 2 || !parts.iter().all(plain) {
            return Err(format!(
                "{table:?} is not a table name; allowed: name or schema.name (letters, digits, '_')"
            ));
        }
        Ok(PostgresSchemas {
            url: url.to_string(),
            table: parts.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join("."),
            created: OnceCell::new(),
        })
    }

    async fn client(&self) -> Result<tokio_postgres::Client, String> {
        let client = sluice_postgres::db::connect(&self.url)
            .await
            .map_err(|e| e.to_string())?;
        self.created
            .get_or_try_init(|| async {
                let create = format!(
                    "CREATE TABLE IF NOT EXISTS {} (path text PRIMARY KEY, body bytea NOT NULL, registered_at timestamptz NOT NULL DEFAULT now())",
                    self.table
                );
                match client.batch_execute(&create).await {
                    Ok(()) => Ok(()),
                    // Two first uses at once: the other one created it.
                    Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => Ok(()),
                    Err(e) => Err(e.to_string()),
                }
            })
            .await?;
        Ok(client)
    }
}

#[async_trait]
impl SchemaStore for PostgresSchemas {
    async fn read(&self, path: &str) -> Result<Option<Vec<u8>>, String> {
        let client = self.client().await?;
        let row = client
            .query_opt(&format!("SELECT body FROM {} WHERE path = $1", self.table), &[&path])
            .await
            .map_err(|e| e.to_string())?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn list(&self) -> Result<Vec<String>, String> {
        let client = self.client().await?;
        let rows = client
            .query(&format!("SELECT path FROM {}", self.table), &[])
            .await
            .map_err(|e| e.to_string())?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    async fn create(&self, path: &str, bytes: Vec<u8>) -> Result<bool, String> {
        let client = self.client().await?;
        let inserted = client
            .execute(
                &format!(
                    "INSERT INTO {} (path, body) VALUES ($1, $2) ON CONFLICT (path) DO NOTHING",
                    self.table
                ),
                &[&path, &bytes],
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(inserted == 1)
    }

    fn location(&self) -> String {
        format!("PostgreSQL table {}", self.table)
    }
}
