//! Where a routed lake sink's events go: the pipeline's schema registry
//! gives each schema version's columns (its JSON Schema mapped to Arrow,
//! plus the column holding the schema key), `table_template` its table.
//! A registered version never changes, so each answer is kept for good
//! ([`Remembered`], which the Snowplow table's columns use too); only
//! misses and registry outages go back to the registry.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use arrow_schema::{DataType, Field, Schema};
use sluice_lake::{Route, RouteError, Routes};
use sluice_schema::{
    arrow_layout,
    registry::{Registered, Registry, SchemaKey},
};

use crate::sinks::RoutedLake;

/// Routes worked out from the registry, each once.
#[async_trait::async_trait]
pub trait Resolve: Send + Sync {
    async fn resolve(&self, key: &str) -> Result<Route, RouteError>;
}

/// A [`Resolve`]'s answers kept for good (errors are not kept).
pub struct Remembered<R> {
    resolver: R,
    known: RwLock<HashMap<String, Route>>,
}

impl<R: Resolve> Remembered<R> {
    pub fn new(resolver: R) -> Self {
        Remembered {
            resolver,
            known: RwLock::new(HashMap::new()),
        }
    }
}

#[async_trait::async_trait]
impl<R: Resolve> Routes for Remembered<R> {
    async fn route(&self, key: &str) -> Result<Route, RouteError> {
        if let Some(route) = self.known.read().unwrap_or_else(|e| e.into_inner()).get(key) {
            return Ok(route.clone());
        }
        let route = self.resolver.resolve(key).await?;
        self.known
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), route.clone());
        Ok(route)
    }
}

/// The registered version `key`: not registered is a dead letter's
/// reason, an unreadable registry a retry.
pub async fn registered(registry: &Registry, key: &SchemaKey) -> Result<Registered, RouteError> {
    registry
        .get(key)
        .await
        .map_err(|e| RouteError::Unavailable(format!("schema registry: {e}")))?
        .ok_or_else(|| RouteError::Unknown(format!("{key} is not registered")))
}

pub struct RegistryRoutes {
    lake: RoutedLake,
    registry: Registry,
}

impl RegistryRoutes {
    pub fn new(lake: RoutedLake) -> Result<Self, String> {
        Ok(RegistryRoutes {
            registry: lake.registry.open()?,
            lake,
        })
    }
}

#[async_trait::async_trait]
impl Resolve for RegistryRoutes {
    async fn resolve(&self, text: &str) -> Result<Route, RouteError> {
        let key: SchemaKey = text.parse().map_err(RouteError::Unknown)?;
        let registered = registered(&self.registry, &key).await?;
        let layout = registered
            .json_schema()
            .and_then(|schema| arrow_layout(&schema))
            .map_err(|e| RouteError::Unknown(format!("{key} cannot be a table's columns: {e}")))?;
        let mut fields: Vec<Field> = layout.schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        if let Some(column) = &self.lake.key_field
            && !fields.iter().any(|f| f.name() == column)
        {
            fields.push(Field::new(column, DataType::Utf8, true));
        }
        let location = self.lake.location(&key).map_err(RouteError::Unknown)?;
        Ok(Route {
            location,
            data_schema: Arc::new(Schema::new(fields)),
            json_text_paths: layout.json_text_paths,
        })
    }
}
