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
        Ok(spec) => spec.validate(&context),
        Err(custom) => custom_factory(custom, extensions).map(|_| ()),
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
                Ok(spec) => spec.build(&context),
                Err(custom) => {
                    custom_factory(custom, &pipeline.extensions).and_then(|factory| factory(&custom.options))
                }
            }
            .map_err(|e| ConfigError::Invalid {
                file: pipeline.file.display().to_string(),
                message: format!("transforms.{name}.{e}"),
            })?;
            Ok((name.clone(), built))
        })
        .collect()
}

/// The factory of a transform of a registered type.
fn custom_factory<'a>(
    custom: &CustomTransformConfig,
    extensions: &'a Extensions,
) -> Result<&'a crate::TransformFactory, String> {
    extensions
        .transform(&custom.type_name)
        .ok_or_else(|| unknown(custom, extensions))
}

fn unknown(c: &CustomTransformConfig, extensions: &Extensions) -> String {
    let mut allowed: Vec<&str> = BUILT_IN_TRANSFORMS.to_vec();
    allowed.extend(extensions.transform_types());
    format!("type: {:?} is not a transform type; allowed: {allowed:?}", c.type_name)
}
