use proptest::prelude::*;
use serde_json::json;

use super::*;

/// RFC 7396, applied in order: the reference the tree must agree with.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let object = target.as_object_mut().expect("made an object above");
    for (key, value) in fields {
        if value.is_null() {
            object.remove(key);
        } else {
            merge_patch(object.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

#[derive(Debug, Clone)]
enum Change {
    Upsert(Version, Map<String, Value>),
    Delete(Version),
}

impl Change {
    fn version(&self) -> Version {
        match self {
            Change::Upsert(v, _) | Change::Delete(v) => *v,
        }
    }
}

/// Every change once, in version order, on a plain document.
fn in_version_order(changes: &[Change]) -> Option<Value> {
    let mut sorted = changes.to_vec();
    sorted.sort_by_key(Change::version);
    let mut doc: Option<Value> = None;
    for change in sorted {
        match change {
            Change::Upsert(_, patch) => {
                let target = doc.get_or_insert_with(|| json!({}));
                merge_patch(target, &Value::Object(patch));
            }
            Change::Delete(_) => doc = None,
        }
    }
    doc.map(|d| sorted_keys(&d))
}

/// The tree materialises keys in sorted order; compare like with like.
fn sorted_keys(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, Value> = m.iter().map(|(k, v)| (k, sorted_keys(v))).collect();
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        other => other.clone(),
    }
}

fn apply(node: &mut Node, change: &Change) -> WriteStats {
    match change {
        Change::Upsert(v, patch) => node.upsert(*v, patch),
        Change::Delete(v) => node.delete(*v),
    }
}

fn upsert(v: Version, patch: Value) -> Change {
    let Value::Object(m) = patch else {
        panic!("patches are objects")
    };
    Change::Upsert(v, m)
}

#[test]
fn a_late_change_lands_where_version_order_puts_it() {
    let changes = [
        upsert(
            1,
            json!({"name": "Ann", "address": {"city": "Oslo", "zip": "0150"}, "tags": ["a"]}),
        ),
        upsert(2, json!({"address": {"zip": null}, "rating": 4.5})),
        upsert(3, json!({"address": "unknown"})),
        upsert(4, json!({"address": {"city": "Bergen"}, "tags": ["b", "c"]})),
    ];
    let mut node = Node::default();
    for i in [3, 1, 0, 2] {
        apply(&mut node, &changes[i]);
    }
    assert_eq!(
        node.document(),
        Some(json!({"address": {"city": "Bergen"}, "name": "Ann", "rating": 4.5, "tags": ["b", "c"]}))
    );
    assert_eq!(node.document(), in_version_order(&changes));
}

#[test]
fn a_delete_wipes_older_writes_and_a_newer_upsert_starts_afresh() {
    let mut node = Node::default();
    apply(&mut node, &upsert(5, json!({"b": 2})));
    assert_eq!(apply(&mut node, &Change::Delete(3)).written_parts, 1);
    let stale = apply(&mut node, &upsert(1, json!({"a": 1, "c": {"d": 1}})));
    assert_eq!(stale.stale_parts, 1, "the whole patch is older than the delete");
    assert_eq!(node.document(), Some(json!({"b": 2})));
    apply(&mut node, &Change::Delete(6));
    assert_eq!(node.document(), None);
    assert_eq!(
        serde_json::to_value(&node).unwrap(),
        json!({"r": [6, null]}),
        "a deleted document keeps only its tombstone"
    );
}

#[test]
fn duplicates_are_stale_and_change_nothing() {
    let change = upsert(2, json!({"a": {"b": 1, "c": [1]}, "d": null}));
    let mut node = Node::default();
    apply(&mut node, &change);
    let before = node.clone();
    let again = apply(&mut node, &change);
    assert_eq!((again.written_parts, again.stale_parts), (0, 3));
    assert_eq!(node, before);
}

#[test]
fn an_empty_object_patch_creates_an_empty_object() {
    let mut node = Node::default();
    apply(&mut node, &upsert(1, json!({"a": 1})));
    apply(&mut node, &upsert(2, json!({"a": {}})));
    assert_eq!(node.document(), Some(json!({"a": {}})));
}

#[test]
fn the_state_round_trips_through_json() {
    let mut node = Node::default();
    apply(&mut node, &upsert(1, json!({"a": {"b": [1, 2]}, "c": "x"})));
    apply(&mut node, &upsert(2, json!({"c": null})));
    let text = serde_json::to_string(&node).unwrap();
    let back: Node = serde_json::from_str(&text).unwrap();
    assert_eq!(back, node);
    assert_eq!(back.document(), Some(json!({"a": {"b": [1, 2]}})));
}

fn patch_value(depth: u32) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        2 => Just(Value::Null),
        2 => (0i64..4).prop_map(Value::from),
        1 => Just(json!("s")),
        1 => prop::collection::vec(0i64..3, 0..3).prop_map(|v| json!(v)),
    ];
    if depth == 0 {
        leaf.boxed()
    } else {
        prop_oneof![
            3 => leaf,
            2 => prop::collection::btree_map(prop::sample::select(vec!["a", "b", "c"]), patch_value(depth - 1), 0..3)
                .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
        .boxed()
    }
}

/// Changes with versions 1..=n, some deletes, then a delivery order: a
/// permutation of them with duplicates mixed in.
fn changes_and_delivery() -> impl Strategy<Value = (Vec<Change>, Vec<usize>)> {
    prop::collection::vec((prop::bool::weighted(0.1), patch_value(3)), 1..12)
        .prop_map(|specs| {
            specs
                .into_iter()
                .enumerate()
                .map(|(i, (delete, patch))| {
                    let v = i as Version + 1;
                    match patch {
                        _ if delete => Change::Delete(v),
                        Value::Object(m) => Change::Upsert(v, m),
                        other => Change::Upsert(v, [("p".to_string(), other)].into_iter().collect()),
                    }
                })
                .collect::<Vec<_>>()
        })
        .prop_flat_map(|changes| {
            let n = changes.len();
            let order = Just((0..n).collect::<Vec<_>>()).prop_shuffle();
            let duplicates = prop::collection::vec(0..n, 0..n);
            (Just(changes), order, duplicates).prop_flat_map(|(changes, order, duplicates)| {
                let delivery: Vec<usize> = order.into_iter().chain(duplicates).collect();
                (Just(changes), Just(delivery).prop_shuffle())
            })
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_delivery_order_with_duplicates_gives_the_version_order_result((changes, delivery) in changes_and_delivery()) {
        let mut node = Node::default();
        for &i in &delivery {
            apply(&mut node, &changes[i]);
        }
        prop_assert_eq!(node.document(), in_version_order(&changes));
        let mut in_order = Node::default();
        let mut sorted = changes.clone();
        sorted.sort_by_key(Change::version);
        for change in &sorted {
            apply(&mut in_order, change);
        }
        prop_assert_eq!(node.document(), in_order.document());
    }
}
