//! Loading a pipeline file: parse, check the component graph, read and
//! compile schemas, resolve relative paths against the file's folder.
//! Every error names the file, the key and what is allowed.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Component as PathComponent, Path, PathBuf},
    sync::Arc,
};

use sluice_connectors::sources::{LoadEnv, ResolvedLocation};
use sluice_lake::StoreLocation;
use url::Url;

use super::{
    RegistryLocation,
    build::check_transform,
    interpolate::interpolate,
    model::{PipelineFile, QueueBackend, SinkConfig, TransformConfig},
};
use crate::{
    extensions::Extensions,
    sinks::{Graph, Places},
};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read pipeline file {file}: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
}

/// A checked pipeline with every path resolved.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub file: PathBuf,
    /// The file's stem; names the data directory by default.
    pub name: String,
    pub data_dir: PathBuf,
    /// The file as parsed, with paths resolved and each sink's
    /// [`Component::resolved`](super::Component) filled in.
    pub config: PipelineFile,
    /// Where the schema registry is.
    pub registry: RegistryLocation,
    /// The transform and projection types the program registered.
    pub extensions: Arc<Extensions>,
}

/// Reads and checks a pipeline file; `extensions` are the types a program
/// using Sluice as a library registered.
pub fn load(path: &Path, extensions: &Arc<Extensions>) -> Result<Pipeline, ConfigError> {
    let file = absolute(path);
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Read {
        file: shown.clone(),
        source,
    })?;
    let invalid = |message: String| ConfigError::Invalid {
        file: shown.clone(),
        message,
    };
    let text = interpolate(&text, |name| std::env::var(name).ok()).map_err(invalid)?;
    let mut config: PipelineFile = toml::from_str(&text).map_err(|e| invalid(e.to_string().trim_end().to_string()))?;
    let dir = file.parent().unwrap_or(Path::new("/")).to_path_buf();
    let name = file
        .file_stem()
        .map_or_else(|| "pipeline".into(), |s| s.to_string_lossy().into_owned());
    resolve_stream_aliases(&mut config);
    if let QueueBackend::JetStream { .. } = config.queue {
        for source in config.sources.values_mut() {
            source.spec_mut().fit_default_batches(NATS_MAX_PAYLOAD);
        }
    }
    check(&config, extensions).map_err(invalid)?;

    let data_dir = match &config.data_dir {
        Some(d) => resolve(&dir, d),
        None => dir.join(".sluice").join(&name),
    };
    let env = PipelineDir(&dir);
    if let Some(tls) = config.api.as_mut().and_then(|api| api.tls.as_mut()) {
        tls.resolve(&env);
    }
    for sink in config.sinks.values_mut() {
        if let SinkConfig::Projection(projection) = &mut sink.config
            && let Some(ca) = &mut projection.redis_ca_file
        {
            *ca = env.path(&ca.to_string_lossy());
        }
    }
    for (name, source) in &mut config.sources {
        source
            .spec_mut()
            .resolve(&env)
            .map_err(|e| invalid(format!("sources.{name}.{e}")))?;
    }
    let registry = RegistryLocation::resolve(&config.registry, |uri, options| store_location(&dir, uri, options))
        .map_err(|e| invalid(format!("registry.{e}")))?;
    for (tname, transform) in &mut config.transforms {
        match &mut transform.config {
            TransformConfig::SelfDescribing(sd) => sd.registry = Some(registry.clone()),
            TransformConfig::Snowplow(sp) => sp.registry = Some(registry.clone()),
            TransformConfig::Avro(avro) => avro.registry = Some(registry.clone()),
            _ => {}
        }
        if let Ok(spec) = transform.config.spec_mut() {
            spec.resolve(&env)
                .map_err(|e| invalid(format!("transforms.{tname}.{e}")))?;
        }
    }
    for (tname, transform) in &config.transforms {
        check_transform(tname, &transform.config, &data_dir, extensions)
            .map_err(|e| invalid(format!("transforms.{tname}.{e}")))?;
    }
    let graph = Graph {
        file: &config,
        extensions,
    };
    let places = Places {
        dir: &dir,
        registry: &registry,
    };
    let mut resolved = BTreeMap::new();
    for (sname, sink) in &config.sinks {
        let r = sink
            .config
            .spec()
            .resolve(&sink.inputs, &graph, &places)
            .map_err(|e| invalid(format!("sinks.{sname}.{e}")))?;
        resolved.insert(sname.clone(), r);
    }
    for (sname, sink) in &mut config.sinks {
        sink.resolved = resolved.remove(sname).unwrap_or_default();
    }
    Ok(Pipeline {
        file,
        name,
        data_dir,
        config,
        registry,
        extensions: extensions.clone(),
    })
}

/// Pure checks of the file's content.
/// NATS's default `max_payload`, the largest batch a JetStream queue takes.
const NATS_MAX_PAYLOAD: usize = 1024 * 1024 - 4096;

fn check(config: &PipelineFile, extensions: &Extensions) -> Result<(), String> {
    if let QueueBackend::JetStream { .. } = config.queue {
        // A batch is one JetStream message: NATS refuses payloads over its
        // max_payload (1 MiB unless the server raises it).
        for (name, source) in &config.sources {
            if let Some(why) = source.spec().needs_local_queue() {
                return Err(format!("sources.{name}.{why}"));
            }
            let Some(max_batch_bytes) = source.spec().max_batch_bytes() else {
                continue;
            };
            if max_batch_bytes > NATS_MAX_PAYLOAD {
                return Err(format!(
                    "sources.{name}.max_batch_bytes: {max_batch_bytes} is more than a JetStream queue's messages hold; allowed: at most {NATS_MAX_PAYLOAD} (NATS max_payload) with queue = \"nats://...\""
                ));
            }
        }
    }
    let d = &config.delivery;
    if d.visibility_timeout_secs == 0
        || d.max_attempts == 0
        || d.max_crashes == 0
        || d.max_in_flight == 0
        || d.max_queue_bytes < 1024 * 1024
        || d.max_in_flight_bytes < 1024 * 1024
        || d.lease_secs < 3
    {
        return Err("delivery: visibility_timeout_secs, max_attempts, max_crashes and max_in_flight must be at least 1, lease_secs at least 3, max_queue_bytes and max_in_flight_bytes at least 1048576".into());
    }
    if config.sources.is_empty() {
        return Err("sources: a pipeline needs at least one source".into());
    }
    if config.sinks.is_empty() && !config.transforms.values().any(|t| stores_itself(&t.config)) {
        return Err(
            "sinks: a pipeline needs at least one sink (or a `documents` stage, which stores its documents)".into(),
        );
    }
    let mut names = BTreeSet::new();
    let all = config
        .sources
        .keys()
        .map(|n| ("sources", n))
        .chain(config.transforms.keys().map(|n| ("transforms", n)))
        .chain(config.sinks.keys().map(|n| ("sinks", n)));
    for (kind, name) in all {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(format!(
                "{kind}.{name}: component names may only use letters, digits, '_' and '-'"
            ));
        }
        if !names.insert(name.clone()) {
            return Err(format!("{kind}.{name}: the name is used by another component"));
        }
    }
    for (name, s) in &config.sources {
        s.spec().validate().map_err(|e| format!("sources.{name}.{e}"))?;
    }
    for (name, t) in &config.transforms {
        let TransformConfig::Validate(v) = &t.config else {
            continue;
        };
        for (key, pointer) in [("event_id", &v.event_id), ("event_time", &v.event_time)] {
            if !pointer.starts_with('/') {
                return Err(format!(
                    "transforms.{name}.{key}: {pointer:?} is not a JSON pointer; write it like \"/ts\""
                ));
            }
        }
    }
    let graph = Graph {
        file: config,
        extensions,
    };
    for (name, s) in &config.sinks {
        s.config
            .spec()
            .check(&s.inputs, &graph)
            .map_err(|e| format!("sinks.{name}.{e}"))?;
    }
    check_graph(config)
}

/// A `documents` stage stores what it receives, so a pipeline may end with it.
fn stores_itself(transform: &TransformConfig) -> bool {
    matches!(transform, TransformConfig::Documents(_))
}

/// `inputs = ["doctors.changes"]` names the outbound document stream of the
/// `documents` stage `doctors`, which is its output.
fn resolve_stream_aliases(config: &mut PipelineFile) {
    let documents: BTreeSet<String> = config
        .transforms
        .iter()
        .filter(|(_, t)| stores_itself(&t.config))
        .map(|(name, _)| name.clone())
        .collect();
    let consumers = config
        .transforms
        .values_mut()
        .map(|t| &mut t.inputs)
        .chain(config.sinks.values_mut().map(|s| &mut s.inputs));
    for inputs in consumers {
        for input in inputs.iter_mut() {
            if let Some(stage) = input.strip_suffix(".changes")
                && documents.contains(stage)
            {
                *input = stage.to_string();
            }
        }
    }
}

fn check_graph(config: &PipelineFile) -> Result<(), String> {
    let consumers = config
        .transforms
        .iter()
        .map(|(n, t)| (format!("transforms.{n}"), &t.inputs))
        .chain(config.sinks.iter().map(|(n, s)| (format!("sinks.{n}"), &s.inputs)));
    let mut used = BTreeSet::new();
    for (key, inputs) in consumers {
        if inputs.is_empty() {
            return Err(format!("{key}.inputs: must name at least one source or transform"));
        }
        for input in inputs {
            if !config.sources.contains_key(input) && !config.transforms.contains_key(input) {
                let allowed: Vec<&String> = config.sources.keys().chain(config.transforms.keys()).collect();
                return Err(format!(
                    "{key}.inputs: {input:?} is not a source or transform; allowed: {allowed:?}"
                ));
            }
            used.insert(input.clone());
        }
    }
    for (kind, names) in [
        ("sources", config.sources.keys().collect::<Vec<_>>()),
        ("transforms", config.transforms.keys().collect()),
    ] {
        for name in names {
            if !used.contains(name) && !config.transforms.get(name).is_some_and(|t| stores_itself(&t.config)) {
                return Err(format!(
                    "{kind}.{name}: nothing takes its events; name it in a transform's or sink's inputs"
                ));
            }
        }
    }
    // Transforms must not form a cycle.
    fn visit<'a>(
        name: &'a str,
        config: &'a PipelineFile,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Result<(), String> {
        if done.contains(name) {
            return Ok(());
        }
        if path.contains(&name) {
            return Err(format!(
                "transforms.{name}.inputs: the transforms form a cycle ({} -> {name})",
                path.join(" -> ")
            ));
        }
        path.push(name);
        if let Some(t) = config.transforms.get(name) {
            for input in &t.inputs {
                visit(input, config, path, done)?;
            }
        }
        path.pop();
        done.insert(name);
        Ok(())
    }
    let mut done = BTreeSet::new();
    for name in config.transforms.keys() {
        visit(name, config, &mut Vec::new(), &mut done)?;
    }
    Ok(())
}

/// What sources resolve their paths and locations against: the pipeline
/// file's folder.
struct PipelineDir<'a>(&'a Path);

impl LoadEnv for PipelineDir<'_> {
    fn path(&self, path: &str) -> PathBuf {
        resolve(self.0, path)
    }

    fn location(&self, uri: &str, options: &BTreeMap<String, String>) -> Result<ResolvedLocation, String> {
        let location = store_location(self.0, uri, options)?;
        Ok(ResolvedLocation {
            url: location.url().to_string(),
            is_local: location.is_local(),
        })
    }
}

/// A folder or URI with its options, resolved against the pipeline file;
/// errors start with the key they are about.
pub(crate) fn store_location(
    dir: &Path,
    uri: &str,
    options: &BTreeMap<String, String>,
) -> Result<StoreLocation, String> {
    let url = if uri.contains("://") {
        Url::parse(uri).map_err(|e| format!("uri: {uri:?} is not a URL ({e})"))?
    } else {
        Url::from_directory_path(resolve(dir, uri)).map_err(|()| format!("uri: {uri:?} is not a usable path"))?
    };
    StoreLocation::new(url, options.clone()).map_err(|e| {
        if e.starts_with("storage_options") {
            e
        } else {
            format!("uri: {e}")
        }
    })
}

/// `p` relative to `dir` (unless absolute), with `.` and `..` folded.
pub(crate) fn resolve(dir: &Path, p: &str) -> PathBuf {
    normalize(&dir.join(p))
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        normalize(p)
    } else {
        normalize(&std::env::current_dir().unwrap_or_default().join(p))
    }
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            PathComponent::CurDir => {}
            PathComponent::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests;
