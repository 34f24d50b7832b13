//! The pipeline's schema registry (`[registry]`): where it is, resolved by
//! `load`, and opening it. A folder (relative to the pipeline file), an
//! `s3://bucket/prefix` (the same S3 settings as lake tables: `AWS_*` plus
//! `storage_options`), or a PostgreSQL database (`postgres://...`, schemas
//! as rows of `table`).

use std::{collections::BTreeMap, path::Path, sync::Arc};

use sluice_lake::StoreLocation;
use sluice_schema::registry::{ObjectStoreSchemas, PostgresSchemas, Registry};

use super::model::RegistryConfig;

/// Where a registry is.
#[derive(Debug, Clone, PartialEq)]
pub enum RegistryLocation {
    /// A folder or an S3 prefix.
    Objects(StoreLocation),
    Postgres {
        url: String,
        table: String,
    },
}

impl RegistryLocation {
    /// Resolves `[registry]`; errors start with the key they are about.
    pub fn resolve(
        config: &RegistryConfig,
        store_location: impl Fn(&str, &BTreeMap<String, String>) -> Result<StoreLocation, String>,
    ) -> Result<Self, String> {
        let uri = config.uri.as_str();
        if uri.starts_with("postgres://") || uri.starts_with("postgresql://") {
            if !config.storage_options.is_empty() {
                return Err("storage_options: only apply to an s3:// registry".into());
            }
            PostgresSchemas::new(uri, &config.table).map_err(|e| format!("table: {e}"))?;
            return Ok(RegistryLocation::Postgres {
                url: uri.to_string(),
                table: config.table.clone(),
            });
        }
        let location = store_location(uri, &config.storage_options).map_err(|e| {
            if e.contains("scheme") {
                format!("{e}; a registry is a folder, s3://bucket/prefix or postgres://...")
            } else {
                e
            }
        })?;
        Ok(RegistryLocation::Objects(location))
    }

    /// The registry there.
    pub fn open(&self) -> Result<Registry, String> {
        match self {
            RegistryLocation::Objects(location) => {
                let (store, prefix) = location.object_store()?;
                Ok(Registry::new(Arc::new(ObjectStoreSchemas::new(
                    store,
                    prefix,
                    shown(location),
                ))))
            }
            RegistryLocation::Postgres { url, table } => Ok(Registry::new(Arc::new(PostgresSchemas::new(url, table)?))),
        }
    }
}

/// A folder as a path, anything else as its URL.
fn shown(location: &StoreLocation) -> String {
    match location.url().to_file_path() {
        Ok(path) if location.is_local() => Path::new(&path).display().to_string(),
        _ => location.to_string(),
    }
}
