use super::*;
use sluice_schema::registry::SchemaKey;

use crate::{
    config::{SinkConfig, SourceConfig},
    sinks::{LakeTable, ResolvedSink, RoutedLake},
};

/// What `load` resolved for the lake sink `name` with a `uri`.
fn lake_table<'a>(p: &'a Pipeline, name: &str) -> &'a LakeTable {
    match &p.config.sinks[name].resolved {
        ResolvedSink::Lake(table) => table,
        other => panic!("{name} was resolved as {other:?}"),
    }
}

/// What `load` resolved for the lake sink `name` with a `table_template`.
fn routed_lake<'a>(p: &'a Pipeline, name: &str) -> &'a RoutedLake {
    match &p.config.sinks[name].resolved {
        ResolvedSink::RoutedLake(routed) => routed,
        other => panic!("{name} was resolved as {other:?}"),
    }
}

/// The schema `load` gave the postgres sink `name`.
fn postgres_schema<'a>(p: &'a Pipeline, name: &str) -> Option<&'a sluice_core::JsonDoc> {
    match &p.config.sinks[name].resolved {
        ResolvedSink::Postgres { schema } => schema.as_ref(),
        other => panic!("{name} was resolved as {other:?}"),
    }
}

/// Loads with no registered types, as the plain `sluice` binary does.
fn load(path: &Path) -> Result<Pipeline, ConfigError> {
    super::load(path, &Arc::default())
}

const EXAMPLE: &str = r#"
data_dir = ".sluice/clickstream"

[api]
address = "127.0.0.1:9090"

[sources.web]
type = "http"
address = "127.0.0.1:8080"
path = "/v1/events"

[sources.files]
type = "file"
path = "incoming/*.ndjson*"

[transforms.standardize]
type = "validate"
inputs = ["web", "files"]
schema = "schemas/clickstream.schema.json"
event_id = "/event_id"
event_time = "/ts"

[sinks.lake]
type = "lake"
inputs = ["standardize"]
uri = "lake/clickstream"
partition_by = ["dt", "hour"]
flush_interval_secs = 5
max_file_bytes = 134217728
"#;

const SCHEMA: &str = r#"{"type":"object","required":["event_id","ts"],
  "properties":{"event_id":{"type":"string"},"ts":{"type":"string","format":"date-time"}}}"#;

fn write(dir: &sluice_testkit::TempDir, pipeline: &str) -> PathBuf {
    std::fs::create_dir_all(dir.path().join("schemas")).unwrap();
    std::fs::write(dir.path().join("schemas/clickstream.schema.json"), SCHEMA).unwrap();
    let path = dir.path().join("pipeline.toml");
    std::fs::write(&path, pipeline).unwrap();
    path
}

fn error_of(pipeline: &str) -> String {
    let dir = sluice_testkit::tempdir().unwrap();
    load(&write(&dir, pipeline)).unwrap_err().to_string()
}

#[test]
fn the_documented_example_loads_with_paths_resolved() {
    let dir = sluice_testkit::tempdir().unwrap();
    let p = load(&write(&dir, EXAMPLE)).unwrap();
    let root = dir.path();
    assert_eq!(p.data_dir, root.join(".sluice/clickstream"));
    let SourceConfig::File(f) = &p.config.sources["files"] else {
        panic!()
    };
    assert_eq!(f.path, root.join("incoming/*.ndjson*").to_string_lossy());
    let lake = lake_table(&p, "lake");
    assert_eq!(
        lake.location.url().to_file_path().unwrap(),
        root.join("lake/clickstream")
    );
    assert_eq!(lake.layout.schema.fields().len(), 2);
    assert_eq!(
        (lake.event_id.as_str(), lake.id_column.as_slice()),
        ("/event_id", &["event_id".to_string()][..])
    );
}

#[test]
fn bucket_keys_and_compaction_keys_are_checked() {
    let dir = sluice_testkit::tempdir().unwrap();
    let bucketed = EXAMPLE.replace(r#"["dt", "hour"]"#, r#"["dt", "hour", "bucket(16, /event_id)"]"#);
    let p = load(&write(&dir, &bucketed)).unwrap();
    let SinkConfig::Lake(lake) = &p.config.sinks["lake"].config else {
        panic!("not a lake sink")
    };
    assert_eq!(lake.partition_by[2].column(), "bucket");

    let e = error_of(&EXAMPLE.replace(r#"["dt", "hour"]"#, r#"["dt", "bucket(16, /nope)"]"#));
    assert!(
        e.contains("sinks.lake.partition_by") && e.contains("/nope") && e.contains("not a column"),
        "{e}"
    );
    let e = error_of(&EXAMPLE.replace(r#"["dt", "hour"]"#, r#"["dt", "bucket(1, /event_id)"]"#));
    assert!(e.contains("from 2 to 4096"), "{e}");
    let e = error_of(&format!("{EXAMPLE}compaction.lookback_hours = 0\n"));
    assert!(
        e.contains("sinks.lake.compaction.lookback_hours: must be at least 1"),
        "{e}"
    );
    let e = error_of(&format!("{EXAMPLE}compaction.every = 5\n"));
    assert!(e.contains("every") && e.contains("interval_secs"), "{e}");
}

#[test]
fn unknown_keys_name_the_file_and_key() {
    let e = error_of(&EXAMPLE.replace("flush_interval_secs = 5", "flush_interval = 5"));
    assert!(
        e.contains("pipeline.toml") && e.contains("flush_interval") && e.contains("flush_interval_secs"),
        "{e}"
    );
}

#[test]
fn unknown_component_type_lists_allowed_types() {
    let e = error_of(&EXAMPLE.replace("type = \"lake\"", "type = \"lakehouse\""));
    assert!(e.contains("lakehouse") && e.contains("lake"), "{e}");
}

#[test]
fn unknown_input_is_named() {
    let e = error_of(&EXAMPLE.replace("inputs = [\"standardize\"]", "inputs = [\"standardise\"]"));
    assert!(e.contains("sinks.lake.inputs") && e.contains("standardise"), "{e}");
}

#[test]
fn lake_fed_by_a_source_is_refused() {
    let e = error_of(&EXAMPLE.replace("inputs = [\"standardize\"]", "inputs = [\"standardize\", \"web\"]"));
    assert!(e.contains("sinks.lake.inputs") && e.contains("validate"), "{e}");
}

#[test]
fn missing_schema_names_the_key() {
    let e = error_of(&EXAMPLE.replace("schemas/clickstream", "schemas/nope"));
    assert!(e.contains("transforms.standardize.schema") && e.contains("nope"), "{e}");
}

#[test]
fn bad_partition_key_lists_allowed_values() {
    let e = error_of(&EXAMPLE.replace("[\"dt\", \"hour\"]", "[\"day\"]"));
    assert!(e.contains("day") && e.contains("dt") && e.contains("hour"), "{e}");
}

#[test]
fn unused_source_is_refused() {
    let e = error_of(&EXAMPLE.replace("inputs = [\"web\", \"files\"]", "inputs = [\"web\"]"));
    assert!(e.contains("sources.files") && e.contains("nothing takes"), "{e}");
}

#[test]
fn s3_tables_load_and_other_schemes_or_options_are_named() {
    let dir = sluice_testkit::tempdir().unwrap();
    let s3 = EXAMPLE.replace(
        "uri = \"lake/clickstream\"",
        "uri = \"s3://b/p\"\nstorage_options = { endpoint = \"http://127.0.0.1:4566\" }",
    );
    let p = load(&write(&dir, &s3)).unwrap();
    assert_eq!(lake_table(&p, "lake").location.url().as_str(), "s3://b/p");
    let e = error_of(&EXAMPLE.replace("uri = \"lake/clickstream\"", "uri = \"gs://b/p\""));
    assert!(
        e.contains("sinks.lake.uri: gs://b/p: scheme \"gs\" is not supported"),
        "{e}"
    );
    let e = error_of(&s3.replace("endpoint =", "endpiont ="));
    assert!(
        e.contains("sinks.lake.storage_options.endpiont: not an S3 option"),
        "{e}"
    );
}

/// With a JetStream queue the default batch size is the most a NATS
/// message carries; a size given beyond it is refused, one within it kept.
#[test]
fn a_jetstream_queue_fits_default_file_batches_and_refuses_larger_ones() {
    let nats = format!("queue = \"nats://127.0.0.1:4222\"\n{EXAMPLE}");
    let dir = sluice_testkit::tempdir().unwrap();
    let batch_bytes = |text: &str| match &load(&write(&dir, text)).unwrap().config.sources["files"] {
        SourceConfig::File(file) => file.batch_bytes(),
        other => panic!("{other:?}"),
    };
    assert_eq!(batch_bytes(&nats), 1044480);
    assert_eq!(batch_bytes(EXAMPLE), 4194304, "the embedded queue keeps 4 MiB");
    let given = |bytes: usize| {
        nats.replace(
            "path = \"incoming/*.ndjson*\"",
            &format!("path = \"incoming/*.ndjson*\"\nmax_batch_bytes = {bytes}"),
        )
    };
    assert_eq!(batch_bytes(&given(524288)), 524288);
    let e = error_of(&given(4194304));
    assert!(e.contains("sources.files.max_batch_bytes: 4194304 is more than"), "{e}");
}

/// Files read by reference need the queue on the files' machine.
#[test]
fn referenced_file_batches_load_with_the_embedded_queue_and_are_refused_with_jetstream() {
    let reference = EXAMPLE.replace(
        "path = \"incoming/*.ndjson*\"",
        "path = \"incoming/*.ndjson*\"\nqueue_payloads = \"reference\"",
    );
    let dir = sluice_testkit::tempdir().unwrap();
    match &load(&write(&dir, &reference)).unwrap().config.sources["files"] {
        SourceConfig::File(file) => assert_eq!(
            file.queue_payloads,
            sluice_connectors::sources::file::QueuePayloads::Reference
        ),
        other => panic!("{other:?}"),
    }
    let e = error_of(&format!("queue = \"nats://127.0.0.1:4222\"\n{reference}"));
    assert!(
        e.contains("pipeline.toml")
            && e.contains("sources.files.queue_payloads: \"reference\" needs the embedded queue"),
        "{e}"
    );
    assert!(e.contains("allowed with queue = \"nats://...\": \"copy\""), "{e}");
    let e = error_of(&reference.replace("\"reference\"", "\"link\""));
    assert!(
        e.contains("unknown variant `link`, expected `copy` or `reference`"),
        "{e}"
    );
}

#[test]
fn environment_references_are_replaced_and_an_unset_one_is_named() {
    let dir = sluice_testkit::tempdir().unwrap();
    let with_default = EXAMPLE.replace("127.0.0.1:9090", "127.0.0.1:${SLUICE_TEST_UNSET_API_PORT:-9191}");
    let p = load(&write(&dir, &with_default)).unwrap();
    assert_eq!(p.config.api.unwrap().address.to_string(), "127.0.0.1:9191");
    let e = error_of(&EXAMPLE.replace("127.0.0.1:9090", "127.0.0.1:${SLUICE_TEST_UNSET_API_PORT}"));
    assert!(e.contains("pipeline.toml: line"), "{e}");
    assert!(
        e.contains("environment variable SLUICE_TEST_UNSET_API_PORT is not set"),
        "{e}"
    );
}

#[test]
fn the_queue_and_the_api_address_are_checked_as_they_are_read() {
    let e = error_of(&format!("queue = \"kafka://k:9092\"\n{EXAMPLE}"));
    assert!(e.contains("pipeline.toml: TOML parse error at line 1"), "{e}");
    assert!(
        e.contains("\"kafka://k:9092\" is not supported; allowed: \"embedded\" or a NATS JetStream URL"),
        "{e}"
    );
    let e = error_of(&EXAMPLE.replace("\"127.0.0.1:9090\"", "\"localhost\""));
    assert!(e.contains("address = \"localhost\""), "the line is shown: {e}");
    assert!(e.contains("\"localhost\" is not host:port"), "{e}");
}

const POSTGRES: &str = r#"
[sinks.warehouse]
type = "postgres"
inputs = ["standardize"]
url = "postgres://postgres@127.0.0.1/test"
table = "events"
"#;

#[test]
fn a_postgres_sink_takes_the_schema_of_its_validated_inputs_or_infers() {
    let dir = sluice_testkit::tempdir().unwrap();
    let p = load(&write(&dir, &format!("{EXAMPLE}{POSTGRES}"))).unwrap();
    assert!(postgres_schema(&p, "warehouse").is_some_and(|s| s["properties"]["ts"].is_object()));
    let raw = POSTGRES.replace("inputs = [\"standardize\"]", "inputs = [\"web\"]");
    let p = load(&write(&dir, &format!("{EXAMPLE}{raw}"))).unwrap();
    assert_eq!(postgres_schema(&p, "warehouse"), None);
}

#[test]
fn postgres_sink_errors_name_the_key() {
    let upsert = |key: &str| format!("{EXAMPLE}{POSTGRES}mode = \"upsert\"\nprimary_key = [\"{key}\"]\n");
    let e = error_of(&upsert("/nope"));
    assert!(
        e.contains("sinks.warehouse.primary_key") && e.contains("\"/nope\" is not a string, number or boolean field"),
        "{e}"
    );
    assert!(load(&write(&sluice_testkit::tempdir().unwrap(), &upsert("/event_id"))).is_ok());
    let e = error_of(&format!("{EXAMPLE}{POSTGRES}mode = \"merge\"\n"));
    assert!(
        e.contains("mode") && e.contains("append") && e.contains("upsert"),
        "{e}"
    );
    let e = error_of(&format!("{EXAMPLE}{}", POSTGRES.replace("\"events\"", "\"my events\"")));
    assert!(
        e.contains("sinks.warehouse.table") && e.contains("letters, digits"),
        "{e}"
    );
}

#[test]
fn registered_types_come_with_the_load_not_from_a_global() {
    let dir = sluice_testkit::tempdir().unwrap();
    let text = format!(
        "{EXAMPLE}\n[transforms.extra]\ntype = \"geoip\"\ninputs = [\"standardize\"]\ndatabase = \"x.mmdb\"\n\n\
         [sinks.enriched]\ntype = \"stream\"\ninputs = [\"extra\"]\nurl = \"nats://127.0.0.1:4222\"\nsubject = \"enriched\"\n"
    );
    let file = write(&dir, &text);
    let e = load(&file).unwrap_err().to_string();
    assert!(e.contains("\"geoip\" is not a transform type"), "{e}");
    let mut registered = Extensions::default();
    let factory: crate::TransformFactory = Arc::new(|_: &toml::Table| Err("not built in this test".to_string()));
    registered.add_transform("geoip", factory);
    let p = super::load(&file, &Arc::new(registered)).unwrap();
    let TransformConfig::Custom(custom) = &p.config.transforms["extra"].config else {
        panic!("a registered type is a custom transform");
    };
    assert_eq!(custom.options.get("database").and_then(|v| v.as_str()), Some("x.mmdb"));
    assert_eq!(p.config.transforms["extra"].inputs, ["standardize"]);
    assert!(
        load(&file).is_err(),
        "loading with the registered type left nothing behind for the next load"
    );
}

#[test]
fn transform_types_and_keys_are_checked() {
    let with = |table: &str| EXAMPLE.replace("[sinks.lake]", &format!("{table}\n\n[sinks.lake]"));
    let unknown = with("[transforms.extra]\ntype = \"geoip\"\ninputs = [\"standardize\"]");
    let e = error_of(&unknown.replace("inputs = [\"standardize\"]\nuri", "inputs = [\"extra\"]\nuri"));
    assert!(
        e.contains("transforms.extra.type: \"geoip\" is not a transform type; allowed: [\"validate\", \"self_describing\", \"snowplow\", \"avro\", \"jq\""),
        "{e}"
    );
    assert!(
        e.contains("\"lookup\", \"documents\"]"),
        "every built-in type is listed: {e}"
    );
    let typo = with("[transforms.cents]\ntype = \"jq\"\ninputs = [\"standardize\"]\nprogramme = \".\"");
    let e = error_of(&typo);
    assert!(
        e.contains("unknown field `programme`") && e.contains("transforms"),
        "{e}"
    );
    let broken = with("[transforms.cents]\ntype = \"jq\"\ninputs = [\"standardize\"]\nprogram = \".a | (\"");
    let e = error_of(&broken.replace("inputs = [\"standardize\"]\nuri", "inputs = [\"cents\"]\nuri"));
    assert!(e.contains("transforms.cents.program: line 1, column"), "{e}");
}

#[test]
fn lookup_sources_are_checked_without_loading_them() {
    let with = |keys: &str| {
        let table = format!(
            "[transforms.countries]\ntype = \"lookup\"\ninputs = [\"standardize\"]\nkey = \"/geo/country\"\n\
             target = \"/geo/info\"\nkey_column = \"code\"\n{keys}"
        );
        EXAMPLE
            .replace("[sinks.lake]", &format!("{table}\n\n[sinks.lake]"))
            .replace("inputs = [\"standardize\"]\nuri", "inputs = [\"countries\"]\nuri")
    };
    let e = error_of(&with("file = \"ref/countries.csv\""));
    assert!(
        e.contains("transforms.countries.file: ") && e.contains("ref/countries.csv\" does not exist"),
        "{e}"
    );
    let e = error_of(&with(""));
    assert!(
        e.contains("transforms.countries.file: give the reference table as either `file` or `postgres`"),
        "{e}"
    );
    let e = error_of(&with("file = \"countries.txt\""));
    assert!(
        e.contains("transforms.countries.format: ") && e.contains("set format = \"csv\""),
        "{e}"
    );
    let e = error_of(&with(
        "postgres = { url = \"postgres://x\", query = \"SELECT 1\" }\non_missing = \"skip\"",
    ));
    assert!(e.contains("unknown variant `skip`") && e.contains("dead_letter"), "{e}");
}

#[test]
fn the_documents_example_loads_with_its_stream_alias_resolved() {
    let dir = sluice_testkit::tempdir().unwrap();
    let text = include_str!("../../../../../examples/documents/pipeline.toml");
    let p = load(&write(&dir, text)).unwrap();
    assert_eq!(p.config.sinks["cards"].inputs, ["doctors"]);
    let TransformConfig::Documents(d) = &p.config.transforms["doctors"].config else {
        panic!("doctors is a documents stage")
    };
    let snapshot = d.snapshot.as_ref().unwrap();
    assert_eq!(snapshot.uri, format!("file://{}/lake/doctors/", dir.path().display()));
    let mut without_stage = text.replace("type = \"documents\"", "type = \"jq\"\nprogram = \".\"");
    without_stage = without_stage.replace(
        "store = \"embedded\"               # or \"postgres://127.0.0.1:5432/app\"\nsnapshot.uri = \"lake/doctors\"",
        "",
    );
    let e = error_of(&without_stage);
    assert!(
        e.contains("sinks.cards.inputs") && e.contains("`documents` stage"),
        "{e}"
    );
}

#[test]
fn objects_sources_resolve_their_folder_and_name_bad_keys() {
    let objects = |table: &str| {
        EXAMPLE.replace(
            "[sources.files]\ntype = \"file\"\npath = \"incoming/*.ndjson*\"",
            &format!("[sources.files]\ntype = \"objects\"\n{table}"),
        )
    };
    let dir = sluice_testkit::tempdir().unwrap();
    let p = load(&write(&dir, &objects("uri = \"landing\"\npattern = \"*.csv\""))).unwrap();
    let SourceConfig::Objects(o) = &p.config.sources["files"] else {
        panic!()
    };
    assert_eq!(
        url::Url::parse(&o.uri).unwrap().to_file_path().unwrap(),
        dir.path().join("landing")
    );
    let s3 = "uri = \"s3://landing/clicks\"\n[sources.files.notifications]\nurl = \"nats://127.0.0.1:4222\"\nstream = \"S3_EVENTS\"";
    let p = load(&write(&dir, &objects(s3))).unwrap();
    let SourceConfig::Objects(o) = &p.config.sources["files"] else {
        panic!()
    };
    assert_eq!(o.uri, "s3://landing/clicks");

    for (table, expected) in [
        (
            "uri = \"landing\"\n[sources.files.notifications]\nurl = \"nats://127.0.0.1:4222\"\nstream = \"S3_EVENTS\"",
            "sources.files.notifications: S3 event notifications need uri = \"s3://bucket/prefix\"",
        ),
        (
            "uri = \"gs://b/p\"",
            "sources.files.uri: gs://b/p: scheme \"gs\" is not supported",
        ),
        (
            "uri = \"landing\"\nformat = \"xml\"",
            "unknown variant `xml`, expected one of `auto`, `ndjson`, `json_array`, `csv`",
        ),
        (
            "uri = \"landing\"\npattern = \"[\"",
            "sources.files.pattern: \"[\" is not a glob pattern",
        ),
        (
            "uri = \"landing\"\nobjects_per_pull = 0",
            "sources.files.objects_per_pull: must be at least 1",
        ),
        ("uri = \"landing\"\npull_every = 3", "unknown field `pull_every`"),
        (
            "uri = \"s3://b/p\"\nstorage_options = { endpiont = \"x\" }",
            "sources.files.storage_options.endpiont: not an S3 option",
        ),
    ] {
        let e = error_of(&objects(table));
        assert!(e.contains(expected), "{table}: {e}");
    }
    let nats = format!(
        "queue = \"nats://127.0.0.1:4222\"\n{}",
        objects("uri = \"landing\"\nmax_batch_bytes = 2097152")
    );
    assert!(error_of(&nats).contains("sources.files.max_batch_bytes: 2097152 is more than"));
    let fitted = format!("queue = \"nats://127.0.0.1:4222\"\n{}", objects("uri = \"landing\""));
    let SourceConfig::Objects(o) = &load(&write(&dir, &fitted)).unwrap().config.sources["files"] else {
        panic!("files is an objects source")
    };
    assert_eq!(o.batch_bytes(), 1044480, "the default fits a JetStream message");
}

#[test]
fn the_objects_example_loads() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/objects/pipeline.toml");
    let p = load(&file).unwrap();
    let SourceConfig::Objects(o) = &p.config.sources["drops"] else {
        panic!("drops is an objects source")
    };
    assert!(
        o.uri.starts_with("file://") && o.uri.ends_with("/examples/objects/landing/"),
        "{}",
        o.uri
    );
    assert_eq!((o.objects_per_pull, o.sweep_interval_secs), (10, 60));
}

/// The folder `path` as a registry location.
fn folder(path: &std::path::Path) -> RegistryLocation {
    RegistryLocation::Objects(StoreLocation::from(Url::from_directory_path(path).unwrap()))
}

#[test]
fn the_registry_is_a_folder_beside_the_file_an_s3_prefix_or_postgres() {
    let dir = sluice_testkit::tempdir().unwrap();
    assert_eq!(
        load(&write(&dir, EXAMPLE)).unwrap().registry,
        folder(&dir.path().join("registry"))
    );
    let with = |keys: &str| format!("{EXAMPLE}\n[registry]\n{keys}\n");
    assert_eq!(
        load(&write(&dir, &with("uri = \"schemas/registry\"")))
            .unwrap()
            .registry,
        folder(&dir.path().join("schemas/registry"))
    );
    let s3 = load(&write(
        &dir,
        &with("uri = \"s3://b/registry\"\nstorage_options = { endpoint = \"http://127.0.0.1:4566\" }"),
    ))
    .unwrap()
    .registry;
    let RegistryLocation::Objects(location) = s3 else {
        panic!("an s3 registry is an object store")
    };
    assert_eq!(location.url().as_str(), "s3://b/registry");
    let pg = load(&write(
        &dir,
        &with("uri = \"postgres://127.0.0.1/app\"\ntable = \"meta.schemas\""),
    ))
    .unwrap();
    assert_eq!(
        pg.registry,
        RegistryLocation::Postgres {
            url: "postgres://127.0.0.1/app".into(),
            table: "meta.schemas".into()
        }
    );
    for (keys, expected) in [
        (
            "uri = \"gs://b/registry\"",
            "registry.uri: gs://b/registry: scheme \"gs\" is not supported",
        ),
        (
            "uri = \"postgres://127.0.0.1/app\"\ntable = \"a;drop\"",
            "registry.table: \"a;drop\" is not a table name",
        ),
        (
            "storage_options = { endpoint = \"http://x\" }",
            "registry.storage_options: only apply to s3:// locations",
        ),
    ] {
        let e = error_of(&with(keys));
        assert!(e.contains(expected), "{keys}: {e}");
    }
}

#[test]
fn self_describing_transforms_use_the_pipeline_registry_and_check_their_pointers() {
    let with = |keys: &str| {
        EXAMPLE.replace(
            "[transforms.standardize]\ntype = \"validate\"\ninputs = [\"web\", \"files\"]\nschema = \"schemas/clickstream.schema.json\"\n",
            &format!("[transforms.described]\ntype = \"self_describing\"\ninputs = [\"web\"]\n{keys}\n\n[transforms.standardize]\ntype = \"validate\"\ninputs = [\"files\"]\nschema = \"schemas/clickstream.schema.json\"\n"),
        )
        .replace("[sinks.lake]", "[sinks.out]\ntype = \"stream\"\ninputs = [\"described\"]\nurl = \"nats://127.0.0.1:4222\"\nsubject = \"out\"\n\n[sinks.lake]")
    };
    let dir = sluice_testkit::tempdir().unwrap();
    let p = load(&write(&dir, &with("event_id = \"/id\"\nevent_time = \"/ts\""))).unwrap();
    let TransformConfig::SelfDescribing(sd) = &p.config.transforms["described"].config else {
        panic!("described is self_describing")
    };
    assert_eq!(sd.registry, Some(folder(&dir.path().join("registry"))));
    assert_eq!((sd.schema_field.as_str(), sd.data_field.as_str()), ("/schema", "/data"));
    let e = error_of(&with("event_id = \"id\"\nevent_time = \"/ts\""));
    assert!(
        e.contains("transforms.described.event_id: \"id\" is not a JSON pointer"),
        "{e}"
    );
    let e = error_of(&with(
        "event_id = \"/id\"\nevent_time = \"/ts\"\nkey_field = \"/meta/schema\"",
    ));
    assert!(
        e.contains("transforms.described.key_field: \"/meta/schema\" must be a top-level field"),
        "{e}"
    );
}

#[test]
fn a_table_template_lake_routes_self_describing_and_avro_inputs() {
    let routed = |template: &str, inputs: &str| {
        format!(
            "[sources.web]\ntype = \"http\"\naddress = \"127.0.0.1:8080\"\n\n\
             [transforms.described]\ntype = \"self_describing\"\ninputs = [\"web\"]\nevent_id = \"/id\"\nevent_time = \"/ts\"\n\n\
             [transforms.decoded]\ntype = \"avro\"\ninputs = [\"web\"]\nevent_id = \"/id\"\nevent_time = \"/ts\"\n\n\
             [transforms.checked]\ntype = \"validate\"\ninputs = [\"web\"]\nschema = \"schemas/clickstream.schema.json\"\nevent_id = \"/id\"\nevent_time = \"/ts\"\n\n\
             [sinks.checked_out]\ntype = \"stream\"\ninputs = [\"checked\"]\nurl = \"nats://127.0.0.1:4222\"\nsubject = \"out\"\n\n\
             [sinks.lake]\ntype = \"lake\"\ninputs = {inputs}\n{template}\n"
        )
    };
    let dir = sluice_testkit::tempdir().unwrap();
    let p = load(&write(
        &dir,
        &routed(
            "table_template = \"lake/{vendor}/{name}_{format}_{model}\"",
            "[\"described\", \"decoded\"]",
        ),
    ))
    .unwrap();
    let lake = routed_lake(&p, "lake");
    assert_eq!(
        (lake.event_id.as_str(), lake.key_field.as_deref()),
        ("/id", Some("_schema"))
    );
    let key: SchemaKey = "iglu:com.acme/page_view/avro/2-1-0".parse().unwrap();
    assert_eq!(
        lake.location(&key).unwrap().url().to_file_path().unwrap(),
        dir.path().join("lake/com.acme/page_view_avro_2")
    );

    for (template, inputs, expected) in [
        (
            "table_template = \"lake/{name}\"",
            "[\"described\", \"decoded\"]",
            "sinks.lake.table_template: \"lake/{name}\" lacks {vendor}, {model}",
        ),
        (
            "table_template = \"lake/{vendor}/{name}/{model}/{hour}\"",
            "[\"described\", \"decoded\"]",
            "has an unknown placeholder",
        ),
        (
            "uri = \"lake/t\"\ntable_template = \"lake/{vendor}/{name}/{model}\"",
            "[\"described\", \"decoded\"]",
            "sinks.lake.table_template: give either uri",
        ),
        (
            "table_template = \"lake/{vendor}/{name}/{model}\"",
            "[\"described\", \"decoded\", \"checked\"]",
            "sinks.lake.inputs: \"checked\" is not a self_describing or avro transform",
        ),
        (
            "table_template = \"gs://b/{vendor}/{name}/{model}\"",
            "[\"described\", \"decoded\"]",
            "sinks.lake.table_template: gs://b/com.example/sample/1",
        ),
    ] {
        let e = error_of(&routed(template, inputs));
        assert!(e.contains(expected), "{template}: {e}");
    }
}

#[test]
fn the_registry_example_loads_with_one_routed_lake() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/registry/pipeline.toml");
    let p = load(&file).unwrap();
    let lake = routed_lake(&p, "lake");
    let key: SchemaKey = "iglu:com.acme/page_view/jsonschema/1-0-0".parse().unwrap();
    assert!(
        lake.location(&key)
            .unwrap()
            .url()
            .as_str()
            .ends_with("/examples/registry/lake/com.acme/page_view_jsonschema_1/")
    );
}

#[test]
fn a_lake_fed_by_snowplow_transforms_is_the_snowplow_table_and_takes_nothing_else() {
    let pipeline = |inputs: &str, partition_by: &str| {
        format!(
            "[sources.collector]\ntype = \"http\"\naddress = \"127.0.0.1:8080\"\nprotocol = \"snowplow\"\n\n\
             [transforms.enrich]\ntype = \"snowplow\"\ninputs = [\"collector\"]\nuser_ipaddress = \"none\"\n\n\
             [transforms.checked]\ntype = \"validate\"\ninputs = [\"collector\"]\nschema = \"schemas/clickstream.schema.json\"\nevent_id = \"/event_id\"\nevent_time = \"/ts\"\n\n\
             [sinks.checked_out]\ntype = \"stream\"\ninputs = [\"checked\"]\nurl = \"nats://127.0.0.1:4222\"\nsubject = \"out\"\n\n\
             [sinks.lake]\ntype = \"lake\"\ninputs = {inputs}\nuri = \"lake/events\"\npartition_by = {partition_by}\n"
        )
    };
    let dir = sluice_testkit::tempdir().unwrap();
    let p = load(&write(&dir, &pipeline("[\"enrich\"]", "[\"dt\", \"hour\"]"))).unwrap();
    let table = lake_table(&p, "lake");
    assert_eq!(table.snowplow, Some(folder(&dir.path().join("registry"))));
    assert_eq!(
        (table.event_id.as_str(), table.id_column.as_slice()),
        ("/event_id", &["event_id".to_string()][..])
    );
    assert!(table.layout.schema.field_with_name("collector_tstamp").is_ok());
    let TransformConfig::Snowplow(sp) = &p.config.transforms["enrich"].config else {
        panic!("enrich is snowplow")
    };
    assert_eq!(sp.user_ipaddress, sluice_schema::snowplow::IpAddresses::None);
    assert_eq!(sp.registry, table.snowplow);

    let e = error_of(&pipeline("[\"enrich\", \"checked\"]", "[\"dt\"]"));
    assert!(
        e.contains("sinks.lake.inputs: mixes snowplow transforms with other inputs"),
        "{e}"
    );
    let bucketed = load(&write(
        &dir,
        &pipeline("[\"enrich\"]", "[\"dt\", \"bucket(8, /app_id)\"]"),
    ));
    assert!(bucketed.is_ok(), "an atomic column can be bucketed");
    let e = error_of(&pipeline("[\"enrich\"]", "[\"bucket(8, /nope)\"]"));
    assert!(e.contains("sinks.lake.partition_by"), "{e}");
}
