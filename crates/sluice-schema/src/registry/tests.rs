use serde_json::json;

use super::*;
use crate::doc;

fn key(s: &str) -> SchemaKey {
    s.parse().unwrap()
}

fn page_view() -> Value {
    json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
           "required": ["url"], "properties": {"url": {"type": "string"}, "device": {"type": "string"}}})
}

#[tokio::test]
async fn versions_register_in_order_and_a_breaking_change_needs_a_new_model() {
    let dir = sluice_testkit::tempdir().unwrap();
    let registry = Registry::folder(dir.path()).unwrap();
    let v100 = key("iglu:com.acme/page_view/jsonschema/1-0-0");
    assert_eq!(
        registry.register(&v100, &doc(page_view())).await.unwrap(),
        Outcome::Accepted {
            against: None,
            additions: vec![],
            warnings: vec![]
        }
    );
    assert_eq!(
        registry.register(&v100, &doc(page_view())).await.unwrap(),
        Outcome::AlreadyRegistered
    );

    let mut v101_schema = page_view();
    v101_schema["properties"]["referrer"] = json!({"type": "string"});
    let v101 = key("iglu:com.acme/page_view/jsonschema/1-0-1");
    assert_eq!(
        registry.register(&v101, &doc(v101_schema.clone())).await.unwrap(),
        Outcome::Accepted {
            against: Some(v100.clone()),
            additions: vec!["/referrer: new optional field".into()],
            warnings: vec![]
        }
    );

    // "device" renamed to "device_name": refused within MODEL 1, saying what breaks.
    let mut renamed = v101_schema.clone();
    let device = renamed["properties"].as_object_mut().unwrap().remove("device").unwrap();
    renamed["properties"]["device_name"] = device;
    renamed["required"] = json!(["url", "device_name"]);
    let err = registry
        .register(&key("iglu:com.acme/page_view/jsonschema/1-0-2"), &doc(renamed.clone()))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "iglu:com.acme/page_view/jsonschema/1-0-2 breaks iglu:com.acme/page_view/jsonschema/1-0-1:\n  \
         /device: removed\n  /device_name: new required field\n\
         register it as iglu:com.acme/page_view/jsonschema/2-0-0 (a new MODEL) if readers must move on"
    );
    let v200 = key("iglu:com.acme/page_view/jsonschema/2-0-0");
    assert!(matches!(
        registry.register(&v200, &doc(renamed)).await.unwrap(),
        Outcome::Accepted { against: None, .. }
    ));

    let listed: Vec<String> = registry
        .list()
        .await
        .unwrap()
        .iter()
        .map(|r| r.key.to_string())
        .collect();
    assert_eq!(
        listed,
        vec![v100.to_string(), v101.to_string(), v200.to_string()],
        "ordered by version"
    );
    let shown = registry.get(&v101).await.unwrap().unwrap();
    assert_eq!(shown.schema, doc(v101_schema));
    assert_eq!(shown.fingerprint.len(), 64);
}

#[tokio::test]
async fn versions_never_change_and_must_come_in_order() {
    let dir = sluice_testkit::tempdir().unwrap();
    let registry = Registry::folder(dir.path()).unwrap();
    let v1 = key("iglu:com.acme/x/jsonschema/1-0-0");
    registry.register(&v1, &doc(page_view())).await.unwrap();
    let mut other = page_view();
    other["properties"]["extra"] = json!({"type": "string"});
    let e = registry
        .register(&v1, &doc(other.clone()))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("is registered with other content"), "{e}");
    let e = registry
        .register(&key("iglu:com.acme/y/jsonschema/1-0-3"), &doc(page_view()))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("the first version of MODEL 1 is 1-0-0"), "{e}");
    registry
        .register(&key("iglu:com.acme/x/jsonschema/1-1-0"), &doc(other.clone()))
        .await
        .unwrap();
    let e = registry
        .register(&key("iglu:com.acme/x/jsonschema/1-0-5"), &doc(other))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("is older than iglu:com.acme/x/jsonschema/1-1-0"), "{e}");
    let e = registry
        .register(&key("iglu:com.acme/z/jsonschema/1-0-0"), &doc(json!({"type": 7})))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a valid JSON Schema"), "{e}");
}

#[tokio::test]
async fn a_registered_schema_reads_back_with_its_properties_in_the_order_written() {
    let dir = sluice_testkit::tempdir().unwrap();
    let registry = Registry::folder(dir.path()).unwrap();
    let v1 = key("iglu:com.acme/ordered/jsonschema/1-0-0");
    let written: JsonDoc = r#"{"type": "object", "properties": {"zeta": {"type": "string"}, "alpha": {"type": "integer"}, "mid": {"type": "boolean"}}}"#
        .parse()
        .unwrap();
    registry.register(&v1, &written).await.unwrap();
    let read = registry.get(&v1).await.unwrap().unwrap().schema;
    let names: Vec<&String> = read["properties"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["zeta", "alpha", "mid"]);
}

#[test]
fn fingerprints_ignore_key_order_and_self_blocks_name_the_key() {
    let x = key("iglu:com.acme/x/jsonschema/1-0-0");
    let a: JsonDoc = r#"{"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}}"#
        .parse()
        .unwrap();
    let b: JsonDoc = r#"{"properties": {"b": {"type": "integer"}, "a": {"type": "string"}}, "type": "object"}"#
        .parse()
        .unwrap();
    let canonical = r#"{"properties":{"a":{"type":"string"},"b":{"type":"integer"}},"type":"object"}"#;
    let sha: String = Sha256::digest(canonical).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(fingerprint_of(&x, &a), sha);
    assert_eq!(fingerprint_of(&x, &b), sha);
    assert_ne!(fingerprint_of(&x, &a), fingerprint(&json!({"type": "object"})));
    let described =
        json!({"self": {"vendor": "com.acme", "name": "page_view", "format": "jsonschema", "version": "1-0-2"}});
    assert_eq!(
        self_key(&doc(described)).unwrap().unwrap(),
        key("iglu:com.acme/page_view/jsonschema/1-0-2")
    );
    assert!(self_key(&doc(json!({"type": "object"}))).is_none());
}

#[tokio::test]
async fn a_schema_file_is_created_once_and_never_replaced() {
    let dir = sluice_testkit::tempdir().unwrap();
    let local = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
    let store = ObjectStoreSchemas::new(Arc::new(local), object_store::path::Path::default(), "test");
    let path = "schemas/com.acme/x/jsonschema/1-0-0";
    assert!(store.create(path, b"first".to_vec()).await.unwrap());
    assert!(!store.create(path, b"second".to_vec()).await.unwrap());
    assert_eq!(store.read(path).await.unwrap().unwrap(), b"first");
    assert_eq!(store.read("schemas/com.acme/x/jsonschema/1-0-1").await.unwrap(), None);
    assert_eq!(store.list().await.unwrap(), [path]);
}

#[tokio::test]
async fn an_addition_must_suit_every_earlier_version_and_a_revision_only_warns() {
    let dir = sluice_testkit::tempdir().unwrap();
    let registry = Registry::folder(dir.path()).unwrap();
    let schema = |props: Value| doc(json!({"type": "object", "properties": props}));
    let v100 = key("iglu:com.acme/reading/jsonschema/1-0-0");
    registry
        .register(
            &v100,
            &schema(json!({"level": {"type": "integer"}, "unit": {"type": "string"}})),
        )
        .await
        .unwrap();
    // 1-0-1 widens `level` to number: compatible with 1-0-0.
    let v101 = key("iglu:com.acme/reading/jsonschema/1-0-1");
    let widened = json!({"level": {"type": "number"}, "unit": {"type": "string"}});
    let outcome = registry.register(&v101, &schema(widened)).await.unwrap();
    assert!(matches!(&outcome, Outcome::Accepted { additions, warnings, .. }
        if additions == &["/level: type integer -> number (widened)"] && warnings.is_empty()));
    // 1-0-2 drops `unit`: it breaks 1-0-1 and 1-0-0 alike, named once.
    let dropped = json!({"level": {"type": "number"}});
    let err = registry
        .register(&key("iglu:com.acme/reading/jsonschema/1-0-2"), &schema(dropped.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RegistryError::Breaking { against, breaking, .. }
            if **against == v101 && breaking == &["/unit: removed"]),
        "{err}"
    );
    // 1-0-2 narrowing `level` back to integer breaks only 1-0-1's data.
    let narrowed = json!({"level": {"type": "integer"}, "unit": {"type": "string"}});
    let err = registry
        .register(&key("iglu:com.acme/reading/jsonschema/1-0-2"), &schema(narrowed))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RegistryError::Breaking { against, breaking, .. }
            if **against == v101 && breaking == &["/level: type number -> integer"]),
        "{err}"
    );
    // As a REVISION, dropping `unit` is accepted with the break as a warning.
    let v110 = key("iglu:com.acme/reading/jsonschema/1-1-0");
    let outcome = registry.register(&v110, &schema(dropped)).await.unwrap();
    assert_eq!(
        outcome,
        Outcome::Accepted {
            against: Some(v101),
            additions: vec![],
            warnings: vec!["/unit: removed".into()]
        }
    );
}

#[tokio::test]
async fn iglu_central_schemas_register_as_published() {
    let dir = sluice_testkit::tempdir().unwrap();
    let registry = Registry::folder(dir.path()).unwrap();
    let published = doc(json!({
        "$schema": crate::iglu::META_SCHEMA,
        "description": "A reading, written the way Iglu Central publishes schemas",
        "self": {"vendor": "com.acme", "name": "reading", "format": "jsonschema", "version": "1-0-0"},
        "type": "object",
        "properties": {"kind": {"enum": ["a", "b"]}, "level": {"type": "number", "maximum": 10, "exclusiveMaximum": true}},
        "additionalProperties": false
    }));
    let v100 = key("iglu:com.acme/reading/jsonschema/1-0-0");
    assert!(matches!(
        registry.register(&v100, &published).await.unwrap(),
        Outcome::Accepted { .. }
    ));
    let mut typed = published.to_value();
    typed["self"]["version"] = json!("1-0-1");
    typed["properties"]["kind"]["type"] = json!("string");
    let v101 = key("iglu:com.acme/reading/jsonschema/1-0-1");
    assert!(
        matches!(registry.register(&v101, &doc(typed)).await.unwrap(), Outcome::Accepted { warnings, .. } if warnings.is_empty()),
        "an enum of strings gaining `type: string` is no type change"
    );
}
