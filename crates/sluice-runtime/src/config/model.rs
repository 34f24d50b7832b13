//! The pipeline file's shape. Every table denies unknown keys; components are
//! closed, internally tagged enums (`type = "..."`).

use std::{collections::BTreeMap, sync::Arc};

use serde::Deserialize;
use sluice_connectors::sinks::{kafka::KafkaSinkConfig, stream::StreamSinkConfig};
pub use sluice_connectors::sources::SourceConfig;
use sluice_core::{
    JsonDoc, Transform,
    config::{LoadEnv, TransformContext, TransformSpec},
};
use sluice_documents::{config::DocumentsConfig, projection::ProjectionConfig};
use sluice_lake::LakeSinkConfig;
use sluice_postgres::PostgresSinkConfig;
use sluice_schema::{ValidateTransform, load_schema};
use sluice_transform::config::{
    CastConfig, DropConfig, FilterConfig, HashConfig, JqConfig, LookupConfig, RenameConfig, SetConfig,
};

#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    /// Queue, dead letters and checkpoints; default `.sluice/<file stem>`.
    pub data_dir: Option<String>,
    /// Queue backend: `"embedded"` (SQLite in `data_dir`) or a NATS
    /// JetStream URL (`"nats://127.0.0.1:4222"`), shared by replicas: a
    /// work-queue stream `SLUICE_<NAME>` with a durable pull consumer
    /// (AckWait = `visibility_timeout_secs`; `max_bytes` =
    /// `max_queue_bytes` with discard-new, so a full stream refuses), dead
    /// letters in `SLUICE_<NAME>_DLQ`. A batch is one message and must fit
    /// NATS's `max_payload` (1 MiB by default): the file and objects
    /// sources then cut batches of 1044480 bytes by default, and a
    /// `max_batch_bytes` above that is refused; larger HTTP requests are
    /// answered 503.
    #[serde(default)]
    pub queue: QueueBackend,
    /// Names the JetStream stream, subject and consumer (default: the
    /// pipeline's file stem); replicas of one pipeline share it.
    pub queue_name: Option<String>,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// The HTTP API (`/metrics`, `/health`, `/ready`); none without it.
    pub api: Option<ApiConfig>,
    #[serde(default)]
    pub registry: RegistryConfig,
    #[serde(default)]
    pub sources: BTreeMap<String, SourceConfig>,
    #[serde(default)]
    pub transforms: BTreeMap<String, Component<TransformConfig>>,
    #[serde(default)]
    pub sinks: BTreeMap<String, Component<SinkConfig>>,
}

/// A transform or sink table: what it reads (`inputs`, the same key for
/// every type), the keys of its type (`config`), and what `load` worked
/// out for it from the graph (`resolved`).
#[derive(Debug, Clone, PartialEq)]
pub struct Component<T: Stage> {
    /// Sources and transforms whose events it takes.
    pub inputs: Vec<String>,
    pub config: T,
    pub resolved: T::Resolved,
}

/// A kind of component that takes `inputs`, and what `load` resolves for it.
pub trait Stage {
    type Resolved: std::fmt::Debug + Clone + PartialEq + Default;
}

impl Stage for TransformConfig {
    /// A transform keeps what it resolves in its own config (paths, a schema).
    type Resolved = ();
}

impl Stage for SinkConfig {
    type Resolved = crate::sinks::ResolvedSink;
}

/// `T`'s keys, and `inputs`.
impl<T: Stage + schemars::JsonSchema> schemars::JsonSchema for Component<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("Component_{}", T::schema_name()).into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "allOf": [generator.subschema_for::<T>()],
            "properties": {
                "inputs": {
                    "type": "array",
                    "items": { "type": "string" },
                    "description": "Sources and transforms whose events it takes (`\"<stage>.changes\"` for a `documents` stage's outbound stream)."
                }
            },
            "required": ["inputs"]
        })
    }
}

impl<'de, T: Stage + serde::de::DeserializeOwned> Deserialize<'de> for Component<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut table = toml::Table::deserialize(d)?;
        let inputs = match table.remove("inputs") {
            Some(v) => {
                Vec::<String>::deserialize(v).map_err(|e| D::Error::custom(format!("inputs: {}", e.message())))?
            }
            None => return Err(D::Error::missing_field("inputs")),
        };
        let config = T::deserialize(table).map_err(|e| D::Error::custom(e.message()))?;
        Ok(Component {
            inputs,
            config,
            resolved: Default::default(),
        })
    }
}

/// `queue`: where batches wait between the sources and the stages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum QueueBackend {
    /// SQLite in the data directory.
    #[default]
    Embedded,
    /// A NATS JetStream server (`nats://host:port`), shared by replicas.
    JetStream { url: sluice_core::Secret },
}

impl schemars::JsonSchema for QueueBackend {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "QueueBackend".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "`\"embedded\"` or a NATS JetStream URL (`\"nats://127.0.0.1:4222\"`)."
        })
    }
}

impl<'de> Deserialize<'de> for QueueBackend {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text == "embedded" {
            Ok(QueueBackend::Embedded)
        } else if text.starts_with("nats://") || text.starts_with("tls://") {
            Ok(QueueBackend::JetStream {
                url: sluice_core::Secret::new(text),
            })
        } else {
            Err(serde::de::Error::custom(format!(
                "{text:?} is not supported; allowed: \"embedded\" or a NATS JetStream URL (\"nats://127.0.0.1:4222\", or tls:// for TLS)"
            )))
        }
    }
}

/// `[registry]`: where `sluice schema` keeps versioned schemas.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// A folder (relative to the pipeline file) or `s3://bucket/prefix`,
    /// laid out as an Iglu static repository
    /// (`schemas/vendor/name/format/1-0-0`), or a PostgreSQL URL.
    #[serde(default = "default_registry_uri")]
    pub uri: String,
    /// S3 settings over the `AWS_*` environment (an `s3://` registry).
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub storage_options: sluice_core::StorageOptions,
    /// The table of a PostgreSQL registry (`name` or `schema.name`).
    #[serde(default = "default_registry_table")]
    pub table: String,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            uri: default_registry_uri(),
            storage_options: Default::default(),
            table: default_registry_table(),
        }
    }
}

fn default_registry_uri() -> String {
    "registry".into()
}

fn default_registry_table() -> String {
    "sluice_schemas".into()
}

/// How batches are handed out and retried.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// A delivered batch not acknowledged within this time is delivered again.
    #[serde(default = "default_visibility_timeout_secs")]
    pub visibility_timeout_secs: u64,
    /// Deliveries before a batch's events become dead letters (`max_attempts`).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// A crash is not counted as an attempt: batches in flight when the
    /// engine died run again one at a time, and one that is alone in flight
    /// this many times when the engine dies becomes dead letters
    /// (`crashed_engine`). Embedded queue only.
    #[serde(default = "default_max_crashes")]
    pub max_crashes: u32,
    /// Payload bytes the queue holds before sources get backpressure.
    #[serde(default = "default_max_queue_bytes")]
    pub max_queue_bytes: u64,
    /// Batches being worked on at once. A window of the sinks holds at
    /// most this many, so with small batches (an HTTP request, an SQS
    /// message) it sets how many go into one commit; after a crash, the
    /// batches that were in flight run again one at a time.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Payload bytes being worked on at once (a batch is received while
    /// fewer are in flight, so one larger batch may pass it).
    #[serde(default = "default_max_in_flight_bytes")]
    pub max_in_flight_bytes: u64,
    /// A replica's lease (scheduled compaction) lapses this long after its
    /// holder stopped renewing it (killed); renewed every third of it. With
    /// JetStream, the lease bucket keeps the value it was created with.
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
}

fn default_lease_secs() -> u64 {
    30
}

fn default_visibility_timeout_secs() -> u64 {
    30
}
fn default_max_attempts() -> u32 {
    5
}
fn default_max_crashes() -> u32 {
    3
}
fn default_max_queue_bytes() -> u64 {
    256 * 1024 * 1024
}
fn default_max_in_flight_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_max_in_flight() -> usize {
    64
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            visibility_timeout_secs: default_visibility_timeout_secs(),
            max_attempts: default_max_attempts(),
            max_crashes: default_max_crashes(),
            max_queue_bytes: default_max_queue_bytes(),
            max_in_flight: default_max_in_flight(),
            max_in_flight_bytes: default_max_in_flight_bytes(),
            lease_secs: default_lease_secs(),
        }
    }
}

/// `[api]`: `/metrics`, `/health`, `/ready`, `/tail/STAGE` and the status page.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// `host:port` to listen on.
    #[serde(deserialize_with = "socket_address")]
    #[schemars(with = "String")]
    pub address: std::net::SocketAddr,
    /// Serve HTTPS with this certificate and key (reloaded when the files change).
    #[serde(default)]
    pub tls: Option<sluice_connectors::http_server::TlsFiles>,
    /// Serve the status page at `/` (the pipeline graph with live rates,
    /// queue and commit charts, dead letters by reason). Default: on when
    /// `address` is a loopback address, off otherwise.
    #[serde(default)]
    pub ui: Option<bool>,
}

impl ApiConfig {
    /// Whether `/` serves the status page.
    pub fn serves_ui(&self) -> bool {
        self.ui.unwrap_or_else(|| self.address.ip().is_loopback())
    }
}

/// A `host:port` value, refused at parsing with what was written.
fn socket_address<'de, D: serde::Deserializer<'de>>(d: D) -> Result<std::net::SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.parse()
        .map_err(|e| serde::de::Error::custom(format!("{text:?} is not host:port ({e})")))
}

/// A transform of a registered type: its other keys are its options.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomTransformConfig {
    pub type_name: String,
    /// Every key but `type` and `inputs`.
    pub options: toml::Table,
}

/// Parses a transform table of a built-in `type` into its variant.
fn parse<T: serde::de::DeserializeOwned, E: serde::de::Error>(
    table: toml::Table,
    wrap: impl FnOnce(T) -> TransformConfig,
) -> Result<TransformConfig, E> {
    T::deserialize(table).map(wrap).map_err(|e| E::custom(e.message()))
}

/// The schema of variant `name`: its config's keys and `type = name`.
fn tagged<T: schemars::JsonSchema>(generator: &mut schemars::SchemaGenerator, name: &str) -> schemars::Schema {
    schemars::json_schema!({
        "allOf": [generator.subschema_for::<T>()],
        "properties": { "type": { "const": name } },
        "required": ["type"]
    })
}

/// The built-in transform types: the enum, the list of names, the parser,
/// the schema and the dispatch to each config's [`TransformSpec`] come
/// from one table.
macro_rules! built_in_transforms {
    ($($name:literal => $variant:ident($config:ty)),* $(,)?) => {
        /// A transform table: a built-in `type`, or one a program using
        /// Sluice as a library registered
        /// ([`crate::Extensions::add_transform`]).
        #[derive(Debug, Clone, PartialEq)]
        pub enum TransformConfig {
            $($variant($config),)*
            Custom(CustomTransformConfig),
        }

        /// The built-in transform types.
        pub const BUILT_IN_TRANSFORMS: &[&str] = &[$($name),*];

        impl TransformConfig {
            /// A built-in type's behaviour, or the table of a registered
            /// type (built by its factory instead).
            pub fn spec(&self) -> Result<&dyn TransformSpec, &CustomTransformConfig> {
                match self {
                    $(TransformConfig::$variant(c) => Ok(c),)*
                    TransformConfig::Custom(c) => Err(c),
                }
            }

            pub fn spec_mut(&mut self) -> Result<&mut dyn TransformSpec, &mut CustomTransformConfig> {
                match self {
                    $(TransformConfig::$variant(c) => Ok(c),)*
                    TransformConfig::Custom(c) => Err(c),
                }
            }
        }

        /// One variant per built-in `type`, each its config's keys with
        /// `type`; a registered type takes any keys.
        impl schemars::JsonSchema for TransformConfig {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                "TransformConfig".into()
            }

            fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
                let variants: Vec<schemars::Schema> = vec![$(tagged::<$config>(generator, $name)),*];
                schemars::json_schema!({ "oneOf": variants })
            }
        }

        /// The variant of a built-in `type`; any other type gets its table back.
        fn parse_built_in<E: serde::de::Error>(
            type_name: &str,
            table: toml::Table,
        ) -> Result<Result<TransformConfig, E>, toml::Table> {
            match type_name {
                $($name => Ok(parse(table, TransformConfig::$variant)),)*
                _ => Err(table),
            }
        }
    };
}

built_in_transforms! {
    "validate" => Validate(ValidateConfig),
    "self_describing" => SelfDescribing(SelfDescribingConfig),
    "snowplow" => Snowplow(SnowplowConfig),
    "avro" => Avro(AvroConfig),
    "jq" => Jq(JqConfig),
    "rename" => Rename(RenameConfig),
    "drop" => Drop(DropConfig),
    "set" => Set(SetConfig),
    "cast" => Cast(CastConfig),
    "filter" => Filter(FilterConfig),
    "hash" => Hash(HashConfig),
    "lookup" => Lookup(LookupConfig),
    "documents" => Documents(DocumentsConfig),
}

impl<'de> Deserialize<'de> for TransformConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut table = toml::Table::deserialize(d)?;
        let type_name = match table.remove("type") {
            Some(toml::Value::String(t)) => t,
            Some(_) => return Err(D::Error::custom("type: must be a string")),
            None => return Err(D::Error::missing_field("type")),
        };
        match parse_built_in(&type_name, table) {
            Ok(parsed) => parsed,
            Err(options) => Ok(TransformConfig::Custom(CustomTransformConfig { type_name, options })),
        }
    }
}

/// `type = "validate"`: JSON Schema 2020-12 per event.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateConfig {
    /// Path of the JSON Schema file (relative to the pipeline file).
    pub schema: String,
    /// JSON pointer to the event id.
    pub event_id: String,
    /// JSON pointer to the event time (RFC 3339 string).
    pub event_time: String,
    /// The schema, read and compiled at load.
    #[serde(skip)]
    #[schemars(skip)]
    pub loaded: Option<JsonDoc>,
}

impl TransformSpec for ValidateConfig {
    /// Reads the schema file and checks that it compiles with these
    /// pointers.
    fn resolve(&mut self, env: &dyn LoadEnv) -> Result<(), String> {
        let path = env.path(&self.schema);
        let schema = load_schema(&path).map_err(|e| format!("schema: {e}"))?;
        ValidateTransform::new(&schema, &self.event_id, &self.event_time).map_err(|e| format!("schema: {e}"))?;
        self.schema = path.to_string_lossy().into_owned();
        self.loaded = Some(schema);
        Ok(())
    }

    /// Checked when the schema was loaded.
    fn validate(&self, _context: &TransformContext<'_>) -> Result<(), String> {
        Ok(())
    }

    fn build(&self, _context: &TransformContext<'_>) -> Result<Arc<dyn Transform>, String> {
        let schema = self
            .loaded
            .as_ref()
            .ok_or("schema: not loaded (load the pipeline first)")?;
        let transform =
            ValidateTransform::new(schema, &self.event_id, &self.event_time).map_err(|e| format!("schema: {e}"))?;
        Ok(Arc::new(transform))
    }
}

/// `type = "self_describing"`: events that name their schema version in
/// the registry (`{"schema": "iglu:...", "data": {...}}`).
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SelfDescribingConfig {
    /// JSON pointer to the schema key in the event.
    #[serde(default = "default_schema_pointer")]
    pub schema_field: String,
    /// JSON pointer to the data the schema describes (the output event).
    #[serde(default = "default_data_pointer")]
    pub data_field: String,
    /// JSON pointer into the data to the event id.
    pub event_id: String,
    /// JSON pointer into the data to the event time (RFC 3339 string).
    pub event_time: String,
    /// A top-level field of the output holding the schema key; `""` leaves it out.
    #[serde(default = "default_key_field")]
    pub key_field: String,
    /// A schema key the registry did not have is looked up again after this long.
    #[serde(default = "default_recheck_secs")]
    pub recheck_secs: u64,
    /// The pipeline's registry, filled in by `load`.
    #[serde(skip)]
    pub registry: Option<super::registry::RegistryLocation>,
}

fn default_schema_pointer() -> String {
    "/schema".into()
}
fn default_data_pointer() -> String {
    "/data".into()
}
fn default_key_field() -> String {
    "/_schema".into()
}
fn default_recheck_secs() -> u64 {
    60
}

impl TransformSpec for SelfDescribingConfig {
    fn build(&self, _context: &TransformContext<'_>) -> Result<Arc<dyn Transform>, String> {
        check_pointers(&[
            ("schema_field", &self.schema_field),
            ("data_field", &self.data_field),
            ("event_id", &self.event_id),
            ("event_time", &self.event_time),
        ])?;
        check_key_field(&self.key_field)?;
        let pointers = sluice_schema::Pointers {
            schema: self.schema_field.clone(),
            data: self.data_field.clone(),
            event_id: self.event_id.clone(),
            event_time: self.event_time.clone(),
            key_field: (!self.key_field.is_empty()).then(|| self.key_field.clone()),
        };
        Ok(Arc::new(sluice_schema::SelfDescribingTransform::new(
            open_registry(&self.registry)?,
            pointers,
            std::time::Duration::from_secs(self.recheck_secs),
        )))
    }
}

/// `type = "snowplow"`: the lines of an `http` source with `protocol =
/// "snowplow"` made Snowplow canonical events: atomic fields, the
/// self-describing event and its entities checked against the registry and
/// put in their `unstruct_event_*` and `contexts_*` columns. A lake sink fed
/// by it writes the Snowplow-shaped table (event id `/event_id`, event time
/// `collector_tstamp`).
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnowplowConfig {
    /// What `user_ipaddress` keeps: `full`, `anonymized` (`203.0.113.x`)
    /// or `none`.
    #[serde(default)]
    pub user_ipaddress: sluice_schema::snowplow::IpAddresses,
    /// A schema key the registry did not have is looked up again after this long.
    #[serde(default = "default_recheck_secs")]
    pub recheck_secs: u64,
    /// The pipeline's registry, filled in by `load`.
    #[serde(skip)]
    pub registry: Option<super::registry::RegistryLocation>,
}

impl TransformSpec for SnowplowConfig {
    fn build(&self, _context: &TransformContext<'_>) -> Result<Arc<dyn Transform>, String> {
        Ok(Arc::new(sluice_schema::SnowplowTransform::new(
            open_registry(&self.registry)?,
            std::time::Duration::from_secs(self.recheck_secs),
            self.user_ipaddress,
        )))
    }
}

/// `type = "avro"`: lines of base64 Avro single-object datums, decoded
/// with the registered Avro schema their fingerprint names.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AvroConfig {
    /// JSON pointer into the decoded datum to the event id.
    pub event_id: String,
    /// JSON pointer into the decoded datum to the event time.
    pub event_time: String,
    /// A top-level field of the output holding the schema key; `""` leaves it out.
    #[serde(default = "default_key_field")]
    pub key_field: String,
    /// An unknown fingerprint reads the registry again after this long.
    #[serde(default = "default_recheck_secs")]
    pub recheck_secs: u64,
    /// The pipeline's registry, filled in by `load`.
    #[serde(skip)]
    pub registry: Option<super::registry::RegistryLocation>,
}

impl TransformSpec for AvroConfig {
    fn build(&self, _context: &TransformContext<'_>) -> Result<Arc<dyn Transform>, String> {
        check_pointers(&[("event_id", &self.event_id), ("event_time", &self.event_time)])?;
        check_key_field(&self.key_field)?;
        Ok(Arc::new(sluice_schema::AvroTransform::new(
            open_registry(&self.registry)?,
            &self.event_id,
            &self.event_time,
            (!self.key_field.is_empty()).then(|| self.key_field[1..].to_string()),
            std::time::Duration::from_secs(self.recheck_secs),
        )))
    }
}

/// The registry `load` resolved.
fn open_registry(
    location: &Option<super::registry::RegistryLocation>,
) -> Result<sluice_schema::registry::Registry, String> {
    location
        .as_ref()
        .ok_or("registry: not resolved (load the pipeline first)")?
        .open()
}

fn check_pointers(pointers: &[(&str, &String)]) -> Result<(), String> {
    for (key, pointer) in pointers {
        if !pointer.starts_with('/') {
            return Err(format!("{key}: {pointer:?} is not a JSON pointer (it starts with '/')"));
        }
    }
    Ok(())
}

fn check_key_field(key_field: &str) -> Result<(), String> {
    if !key_field.is_empty() && (!key_field.starts_with('/') || key_field[1..].contains('/')) {
        return Err(format!(
            "key_field: {key_field:?} must be a top-level field (\"/_schema\") or \"\""
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SinkConfig {
    Lake(LakeSinkConfig),
    Postgres(PostgresSinkConfig),
    Projection(ProjectionConfig),
    Stream(StreamSinkConfig),
    Kafka(KafkaSinkConfig),
}

impl SinkConfig {
    /// The type's part in the engine.
    pub fn spec(&self) -> &dyn crate::sinks::SinkSpec {
        match self {
            SinkConfig::Lake(c) => c,
            SinkConfig::Postgres(c) => c,
            SinkConfig::Projection(c) => c,
            SinkConfig::Stream(c) => c,
            SinkConfig::Kafka(c) => c,
        }
    }
}
