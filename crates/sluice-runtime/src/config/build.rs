//! Checking and building transforms through their [`TransformSpec`]s (a
//! registered type through its factory). `load` checks each transform
//! without secrets (a jq program must compile; a hash key's variable is not
//! read), so every command can load a pipeline; `run` and `validate` build
//! them all, which also reads the secrets they need. Building has no side
//! effects.

use std::{collections::BTreeMap, path::Path, sync::Arc};

use sluice_core::{Transform, config::TransformContext};

use super::{
    ConfigError, Pipeline,
    model::{BUILT_IN_TRANSFORMS, CustomTransformConfig, TransformConfig},
};
use crate::extensions::Extensions;

/// The checks of a transform that need no secret.
pub fn check_transform(
    name: &str,
    config: &TransformConfig,
    data_dir: &Path,
    extensions: &Extensions,
) -> Result<(), String> {
    let context = TransformContext { name, data_dir };
    match config.spec() {
        Some(spec) => spec.validate(&context),
        None => custom_factory(config, extensions).map(|_| ()),
    }
}

/// Every transform of the pipeline, built, by name.
pub fn build_transforms(pipeline: &Pipeline) -> Result<BTreeMap<String, Arc<dyn Transform>>, ConfigError> {
    pipeline
        .config
        .transforms
        .iter()
        .map(|(name, t)| {
            let context = TransformContext {
                name,
                data_dir: &pipeline.data_dir,
            };
            let built = match t.config.spec() {
                Some(spec) => spec.build(&context),
                None => custom_factory(&t.config, &pipeline.extensions).and_then(|(factory, options)| factory(options)),
            }
            .map_err(|e| ConfigError::Invalid {
                file: pipeline.file.display().to_string(),
                message: format!("transforms.{name}.{e}"),
            })?;
            Ok((name.clone(), built))
        })
        .collect()
}

/// The factory and options of a transform of a registered type.
fn custom_factory<'a>(
    config: &'a TransformConfig,
    extensions: &'a Extensions,
) -> Result<(&'a crate::TransformFactory, &'a toml::Table), String> {
    let TransformConfig::Custom(custom) = config else {
        return Err("type: a built-in type has no factory".into());
    };
    extensions
        .transform(&custom.type_name)
        .map(|factory| (factory, &custom.options))
        .ok_or_else(|| unknown(custom, extensions))
}

fn unknown(c: &CustomTransformConfig, extensions: &Extensions) -> String {
    let mut allowed: Vec<&str> = BUILT_IN_TRANSFORMS.to_vec();
    allowed.extend(extensions.transform_types());
    format!("type: {:?} is not a transform type; allowed: {allowed:?}", c.type_name)
}
