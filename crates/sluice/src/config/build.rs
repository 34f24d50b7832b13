//! Building transforms from their checked configuration. `load` checks
//! each transform without secrets (a jq program must compile; a hash key's
//! variable is not read), so every command can load a pipeline; `run` and
//! `validate` build them all, which also reads the secrets they need.
//! Building has no side effects.

use std::{collections::BTreeMap, path::Path, sync::Arc};

use sluice_core::{JsonDoc, Transform};
use sluice_schema::ValidateTransform;

use super::{
    ConfigError, Pipeline,
    model::{BUILT_IN_TRANSFORMS, CustomTransformConfig, TransformConfig},
};
use crate::extensions::Extensions;

/// The checks of a transform that need no secret. `validate` transforms are
/// checked when their schema is loaded.
pub fn check_transform(
    name: &str,
    config: &TransformConfig,
    data_dir: &Path,
    extensions: &Extensions,
) -> Result<(), String> {
    match config {
        TransformConfig::Validate(_) => Ok(()),
        TransformConfig::Hash(c) => c.check(),
        TransformConfig::Custom(c) => extensions
            .transform(&c.type_name)
            .map(|_| ())
            .ok_or_else(|| unknown(c, extensions)),
        other => build_transform(name, other, None, data_dir, extensions).map(|_| ()),
    }
}

/// Every transform of the pipeline, built, by name.
pub fn build_transforms(pipeline: &Pipeline) -> Result<BTreeMap<String, Arc<dyn Transform>>, ConfigError> {
    pipeline
        .config
        .transforms
        .iter()
        .map(|(name, t)| {
            let built = build_transform(
                name,
                &t.config,
                pipeline.schemas.get(name),
                &pipeline.data_dir,
                &pipeline.extensions,
            )
            .map_err(|e| {
                ConfigError::Invalid {
                    file: pipeline.file.display().to_string(),
                    message: format!("transforms.{name}.{e}"),
                }
            })?;
            Ok((name.clone(), built))
        })
        .collect()
}

/// The transform `name` for `config`; `schema` is the loaded schema of a
/// `validate` transform. Errors start with the key they are about.
fn build_transform(
    name: &str,
    config: &TransformConfig,
    schema: Option<&JsonDoc>,
    data_dir: &Path,
    extensions: &Extensions,
) -> Result<Arc<dyn Transform>, String> {
    match config {
        TransformConfig::SelfDescribing(c) => Ok(Arc::new(c.build()?)),
        TransformConfig::Avro(c) => Ok(Arc::new(c.build()?)),
        TransformConfig::Validate(v) => {
            let schema = schema.ok_or("schema: not loaded")?;
            let t = ValidateTransform::new(schema, &v.event_id, &v.event_time).map_err(|e| format!("schema: {e}"))?;
            Ok(Arc::new(t))
        }
        // `load` made `program_file` absolute.
        TransformConfig::Jq(c) => c.build(Path::new("/")),
        TransformConfig::Rename(c) => c.build(),
        TransformConfig::Drop(c) => c.build(),
        TransformConfig::Set(c) => c.build(),
        TransformConfig::Cast(c) => c.build(),
        TransformConfig::Filter(c) => c.build(),
        TransformConfig::Hash(c) => c.build(),
        // `load` made `file` absolute.
        TransformConfig::Lookup(c) => c.build(name),
        TransformConfig::Documents(c) => Ok(Arc::new(c.build(name, data_dir)?)),
        TransformConfig::Custom(c) => {
            let factory = extensions.transform(&c.type_name).ok_or_else(|| unknown(c, extensions))?;
            factory(&c.options)
        }
    }
}

fn unknown(c: &CustomTransformConfig, extensions: &Extensions) -> String {
    let mut allowed: Vec<&str> = BUILT_IN_TRANSFORMS.to_vec();
    allowed.extend(extensions.transform_types());
    format!("type: {:?} is not a transform type; allowed: {allowed:?}", c.type_name)
}
