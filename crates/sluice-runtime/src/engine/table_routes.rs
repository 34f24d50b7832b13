//! Where a routed lake sink's events go: the pipeline's schema registry
//! gives each schema version's columns (its JSON Schema mapped to Arrow,
//! plus the column holding the schema key), `table_template` its table.
//! A registered version never changes, so each answer is kept for good;
//! only misses and registry outages go back to the registry.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use arrow_schema::{DataType, Field, Schema};
use sluice_lake::{Route, RouteError, Routes};
use sluice_schema::{
    arrow_layout,
    registry::{Registry, SchemaKey},
};

use crate::sinks::RoutedLake;

pub struct RegistryRoutes {
    lake: RoutedLake,
    registry: Registry,
    known: RwLock<HashMap<String, Route>>,
}

impl RegistryRoutes {
    pub fn new(lake: RoutedLake) -> Result<Self, String> {
        Ok(RegistryRoutes {
            registry: lake.registry.open()?,
            lake,
            known: RwLock::new(HashMap::new()),
        })
    }

    async fn resolve(&self, text: &str) -> Result<Route, RouteError> {
        let key: SchemaKey = text.parse().map_err(RouteError::Unknown)?;
        let registered = self
            .registry
            .get(&key)
            .await
            .map_err(|e| RouteError::Unavailable(format!("schema registry: {e}")))?
            .ok_or_else(|| RouteError::Unknown(format!("{key} is not registered")))?;
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

#[async_trait::async_trait]
impl Routes for RegistryRoutes {
    async fn route(&self, schema_key: &str) -> Result<Route, RouteError> {
        if let Some(route) = self.known.read().unwrap_or_else(|e| e.into_inner()).get(schema_key) {
            return Ok(route.clone());
        }
        let route = self.resolve(schema_key).await?;
        self.known
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(schema_key.to_string(), route.clone());
        Ok(route)
    }
}
