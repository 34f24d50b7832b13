use serde_json::json;

use super::{redis::RedisWriter, *};

fn config(key: &str) -> ProjectionConfig {
    toml::from_str(&format!(
        r#"
redis = "redis://127.0.0.1:6379"
key = "{key}"
entity = "doctor"
fields = {{ name = "/name", city = "/address/city", tags = "/tags" }}
lookups.hospital = {{ entity = "hospital", id = "/hospital", fields = {{ hospital_city = "/city" }} }}
"#
    ))
    .unwrap()
}

fn doc(id: &str, revision: u64, document: Option<Value>) -> StoredDocument {
    StoredDocument {
        key: DocKey {
            entity: "doctor".into(),
            id: id.into(),
        },
        version: revision.into(),
        revision,
        updated_at: None,
        document,
    }
}

#[test]
fn a_document_becomes_a_hash_with_its_lookups() {
    let projector = config("card:{entity}:{id}").projector().unwrap();
    let ann = doc(
        "d1",
        3,
        Some(json!({"name": "Ann", "address": {"city": "Oslo"}, "tags": ["a"], "hospital": "General"})),
    );
    let mut wanted = BTreeSet::new();
    projector.lookup_keys(&ann, &mut wanted);
    let general = DocKey {
        entity: "hospital".into(),
        id: "General".into(),
    };
    assert_eq!(wanted, [general.clone()].into());
    let others = HashMap::from([(general, json!({"city": "Bergen"}))]);
    assert_eq!(
        projector.project(&ann, &others),
        Projected {
            key: "card:doctor:d1".into(),
            revision: 3,
            fields: Some(vec![
                ("city".into(), "Oslo".into()),
                ("name".into(), "Ann".into()),
                ("tags".into(), "[\"a\"]".into()),
                ("hospital_city".into(), "Bergen".into()),
            ]),
        }
    );
    let without_hospital = projector.project(&ann, &HashMap::new());
    assert_eq!(
        without_hospital.fields.unwrap().len(),
        3,
        "a missing lookup leaves its fields out"
    );
    assert_eq!(
        projector.project(&doc("d2", 4, None), &others).fields,
        None,
        "deleted: no hash"
    );
    assert!(projector.wants("doctor") && !projector.wants("hospital"));

    struct Initials;
    impl Projection for Initials {
        fn fields(&self, doc: &StoredDocument, others: &HashMap<DocKey, Value>) -> Vec<(String, String)> {
            let name = doc
                .document
                .as_ref()
                .and_then(|d| d["name"].as_str())
                .unwrap_or_default();
            vec![
                ("initial".into(), name.chars().take(1).collect()),
                ("lookups_seen".into(), others.len().to_string()),
            ]
        }
    }
    let custom = projector.with_custom(Arc::new(Initials));
    let fields = custom.project(&ann, &others).fields.unwrap();
    assert_eq!(
        fields[4..],
        [
            ("initial".to_string(), "A".to_string()),
            ("lookups_seen".into(), "1".into())
        ]
    );
}

#[test]
fn key_templates_and_pointers_are_checked() {
    let err = |key: &str| config(key).projector().unwrap_err();
    assert_eq!(
        err("card:{name}"),
        "key: {name} is not a placeholder; allowed: {id}, {entity}"
    );
    assert_eq!(err("card:{id"), "key: \"card:{id\" has an unclosed {");
    assert!(err("card:{entity}").contains("must hold {id}"));
    let mut bad = config("card:{id}");
    bad.fields.insert("x".into(), "name".into());
    assert_eq!(
        bad.projector().unwrap_err(),
        "fields.x: \"name\" is not a JSON pointer; write it like \"/name\""
    );
}

#[tokio::test]
async fn redis_writes_are_guarded_by_revision() {
    let Some(url) = sluice_testkit::services::redis() else {
        return;
    };
    let writer = RedisWriter::connect(&sluice_core::Secret::new(url.as_str()), None)
        .await
        .expect("the test Redis is reachable (scripts/test starts it)");
    let key = format!("sluice-test:{}:guard", std::process::id());
    let set = |revision: u64, name: &str| Projected {
        key: key.clone(),
        revision,
        fields: Some(vec![("name".into(), name.into())]),
    };
    let client = ::redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let read = |conn: &mut ::redis::aio::MultiplexedConnection| {
        let mut conn = conn.clone();
        let key = key.clone();
        async move {
            ::redis::cmd("HGETALL")
                .arg(&key)
                .query_async::<std::collections::BTreeMap<String, String>>(&mut conn)
                .await
                .unwrap()
        }
    };
    assert_eq!(writer.write(&[set(2, "two"), set(1, "one")]).await.unwrap(), 1);
    assert_eq!(
        read(&mut conn).await,
        [
            ("_revision".to_string(), "2".to_string()),
            ("name".into(), "two".into())
        ]
        .into()
    );
    assert_eq!(
        writer.write(&[set(2, "two")]).await.unwrap(),
        1,
        "the same revision again is rewritten"
    );
    let delete = Projected {
        key: key.clone(),
        revision: 3,
        fields: None,
    };
    assert_eq!(writer.write(&[delete]).await.unwrap(), 1);
    assert!(read(&mut conn).await.is_empty());
}
