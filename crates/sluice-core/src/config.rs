//! What component configs share with the pipeline loader and the engine:
//! resolving the file's relative paths and locations once, at load
//! ([`LoadEnv`]), and the [`TransformSpec`] every transform type's config
//! implements beside its own definition (sources have the same shape in
//! `sluice-connectors`). Errors are `key: what is wrong`; the loader puts
//! `transforms.<name>.` and the file in front.

use std::{collections::BTreeMap, path::Path, path::PathBuf, sync::Arc};

use crate::component::Transform;

/// An object-store location as the loader resolved it.
pub struct ResolvedLocation {
    /// The absolute URL (`file:///...` for a folder, `s3://bucket/prefix`).
    pub url: String,
    pub is_local: bool,
}

/// What resolving a config needs from the pipeline loader.
pub trait LoadEnv {
    /// `path` relative to the pipeline file's folder (unless absolute).
    fn path(&self, path: &str) -> PathBuf;
    /// A folder or `s3://` URI with its storage options, checked; errors
    /// start with `uri:` or `storage_options`.
    fn location(&self, uri: &str, options: &BTreeMap<String, String>) -> Result<ResolvedLocation, String>;
}

/// What building a transform may use besides its config.
pub struct TransformContext<'a> {
    /// The transform's name in the pipeline file.
    pub name: &'a str,
    /// The pipeline's data directory (embedded stores live there).
    pub data_dir: &'a Path,
}

/// What every transform type's config provides.
pub trait TransformSpec: Send + Sync {
    /// Turns relative paths and locations into absolute ones, and loads
    /// what the file names (a schema), once, at load.
    fn resolve(&mut self, _env: &dyn LoadEnv) -> Result<(), String> {
        Ok(())
    }

    /// The checks `load` runs: by default, building without keeping the
    /// result (a jq program must compile). A type whose build reads a
    /// secret checks without it, so every command can load the pipeline.
    fn validate(&self, context: &TransformContext<'_>) -> Result<(), String> {
        self.build(context).map(|_| ())
    }

    /// The running transform.
    fn build(&self, context: &TransformContext<'_>) -> Result<Arc<dyn Transform>, String>;
}
