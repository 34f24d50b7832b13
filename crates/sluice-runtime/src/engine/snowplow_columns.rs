//! The columns of a Snowplow-shaped lake table for each shape of event
//! (see `sluice_schema::snowplow::columns`): the atomic columns, plus the
//! `unstruct_event_*` and `contexts_*` columns of the schema versions the
//! shape names, from the pipeline's registry. Every shape goes to the one
//! table; the routed lake sink widens it as new shapes arrive. A registered
//! version never changes, so each answer is kept for good (wrapped in
//! `Remembered`).

use std::sync::Arc;

use arrow_schema::Schema;
use sluice_lake::{Route, RouteError, StoreLocation, merge_columns};
use sluice_schema::{
    arrow_layout,
    registry::Registry,
    snowplow::{
        atomic_layout,
        columns::{entity_column, parse_shape},
    },
};

use super::table_routes::{Resolve, registered};

pub struct SnowplowColumns {
    location: StoreLocation,
    registry: Registry,
}

impl SnowplowColumns {
    pub fn new(location: StoreLocation, registry: Registry) -> Self {
        SnowplowColumns { location, registry }
    }
}

#[async_trait::async_trait]
impl Resolve for SnowplowColumns {
    async fn resolve(&self, shape: &str) -> Result<Route, RouteError> {
        let atomic = atomic_layout();
        let mut schema = atomic.schema.as_ref().clone();
        let mut json_text_paths = atomic.json_text_paths.clone();
        for (entity, key) in parse_shape(shape).map_err(RouteError::Unknown)? {
            let registered = registered(&self.registry, &key).await?;
            let layout = registered.json_schema().ok().and_then(|s| arrow_layout(&s).ok());
            let (column, paths) = entity_column(entity, &key, layout.as_ref()).map_err(RouteError::Unknown)?;
            // Two versions of one MODEL in one event share the column.
            if let Some(wider) = merge_columns(&schema, &Schema::new(vec![column]))
                .map_err(|e| RouteError::Unknown(format!("{key}: {e}")))?
            {
                schema = wider;
            }
            for path in paths {
                if !json_text_paths.contains(&path) {
                    json_text_paths.push(path);
                }
            }
        }
        Ok(Route {
            location: self.location.clone(),
            data_schema: Arc::new(schema),
            json_text_paths,
        })
    }
}
