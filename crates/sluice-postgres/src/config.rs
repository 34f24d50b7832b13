//! Configuration of the `postgres` sink, as written in a pipeline file.

use serde::Deserialize;
use sluice_core::Secret;

use crate::ident::check_config_identifier;

/// `[sinks.NAME] type = "postgres"`.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresSinkConfig {
    /// `postgres://user[:password]@host[:port]/database` or the key=value form.
    pub url: Secret,
    /// The PostgreSQL schema (namespace) the tables live in.
    #[serde(default = "default_schema")]
    pub schema: String,
    /// The root table; child tables are named after it (`events__props__items`).
    pub table: String,
    /// `"append"` (every event a new row) or `"upsert"` (by `primary_key`).
    #[serde(default, deserialize_with = "write_mode")]
    pub mode: WriteMode,
    /// JSON pointers of the key an `upsert` replaces rows by.
    #[serde(default)]
    pub primary_key: Vec<String>,
    /// With `upsert`: an event whose field at `pointer` equals `equals`
    /// deletes the row with its key (and its child rows) instead of
    /// writing one, e.g. `{ pointer = "/op", equals = "delete" }` for the
    /// documents a `documents` stage emits.
    #[serde(default)]
    pub delete_when: Option<DeleteWhen>,
    /// Longest time an accepted event waits before it is committed.
    #[serde(default = "default_flush_interval_secs")]
    pub flush_interval_secs: u64,
    /// Commit once about this many bytes of rows are buffered.
    #[serde(default = "default_max_buffered_bytes")]
    pub max_buffered_bytes: u64,
    /// Processed-batch markers older than this are deleted; a batch
    /// redelivered later than this would be written again.
    #[serde(default = "default_marker_retention_hours")]
    pub marker_retention_hours: u64,
}

/// `delete_when = { pointer = "/op", equals = "delete" }`.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteWhen {
    /// JSON pointer to the field that marks a deletion.
    pub pointer: String,
    /// The value (a string, number or boolean) that marks it.
    pub equals: serde_json::Value,
}

impl DeleteWhen {
    /// Whether `event` asks for its row to be deleted.
    pub fn matches(&self, event: &serde_json::Value) -> bool {
        event.pointer(&self.pointer) == Some(&self.equals)
    }
}

/// How a flush writes its rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, schemars::JsonSchema)]
#[schemars(rename_all = "snake_case")]
pub enum WriteMode {
    /// Every event is a new row (engine redelivery is still written once).
    #[default]
    Append,
    /// An event replaces the row with the same primary key, children included.
    Upsert,
}

/// Names the key in the error: serde's own message for an unknown variant
/// loses it inside the internally tagged sink enum.
fn write_mode<'de, D: serde::Deserializer<'de>>(d: D) -> Result<WriteMode, D::Error> {
    match String::deserialize(d)?.as_str() {
        "append" => Ok(WriteMode::Append),
        "upsert" => Ok(WriteMode::Upsert),
        other => Err(serde::de::Error::custom(format!(
            "mode: {other:?} is not allowed; allowed: \"append\", \"upsert\""
        ))),
    }
}

fn default_schema() -> String {
    "public".into()
}
fn default_flush_interval_secs() -> u64 {
    1
}
fn default_max_buffered_bytes() -> u64 {
    16 * 1024 * 1024
}
fn default_marker_retention_hours() -> u64 {
    168
}

impl PostgresSinkConfig {
    /// Checks the values; errors start with the key they are about.
    pub fn validate(&self) -> Result<(), String> {
        let url = self.url.expose();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://") || url.contains('=')) {
            return Err(
                "url: expected postgres://user@host:port/database (or the key=value form host=... dbname=...)".into(),
            );
        }
        crate::tls::parse(url).map_err(|e| format!("url: {e}"))?;
        check_config_identifier(&self.schema).map_err(|e| format!("schema: {e}"))?;
        check_config_identifier(&self.table).map_err(|e| format!("table: {e}"))?;
        if self.table.starts_with("_sluice") {
            return Err("table: names starting with \"_sluice\" are Sluice's own tables".into());
        }
        if self.flush_interval_secs == 0 {
            return Err("flush_interval_secs: must be at least 1".into());
        }
        if self.max_buffered_bytes < 1024 * 1024 {
            return Err("max_buffered_bytes: must be at least 1048576".into());
        }
        if self.marker_retention_hours == 0 {
            return Err("marker_retention_hours: must be at least 1".into());
        }
        for p in &self.primary_key {
            if !p.starts_with('/') || p.len() < 2 {
                return Err(format!(
                    "primary_key: {p:?} is not a JSON pointer to a field; write it like \"/event_id\""
                ));
            }
        }
        if let Some(delete_when) = &self.delete_when {
            if self.mode != WriteMode::Upsert {
                return Err(
                    "delete_when: only used by mode = \"upsert\" (rows are deleted by their primary key)".into(),
                );
            }
            if !delete_when.pointer.starts_with('/') {
                return Err(format!(
                    "delete_when.pointer: {:?} is not a JSON pointer; write it like \"/op\"",
                    delete_when.pointer
                ));
            }
            if delete_when.equals.is_array() || delete_when.equals.is_object() {
                return Err("delete_when.equals: expected a string, number or boolean".into());
            }
        }
        match (self.mode, self.primary_key.is_empty()) {
            (WriteMode::Upsert, true) => {
                Err("primary_key: mode = \"upsert\" needs the key's fields, e.g. primary_key = [\"/event_id\"]".into())
            }
            (WriteMode::Append, false) => Err(
                "primary_key: only used by mode = \"upsert\"; remove it, or set mode = \"upsert\" (allowed modes: \"append\", \"upsert\")"
                    .into(),
            ),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> PostgresSinkConfig {
        toml::from_str(&format!(
            "url = \"postgres://postgres@127.0.0.1/test\"\ntable = \"events\"\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn a_password_in_the_url_is_never_printed() {
        let mut c = parse("");
        c.url = "postgres://app:hunter2@db.internal/app".into();
        assert!(c.validate().is_ok());
        assert!(!format!("{c:?}").contains("hunter2"), "{c:?}");
    }

    #[test]
    fn defaults_are_append_into_public() {
        let c = parse("");
        assert_eq!(c.mode, WriteMode::Append);
        assert_eq!(c.schema, "public");
        assert!(c.validate().is_ok());
    }

    #[test]
    fn errors_name_the_key_and_what_is_allowed() {
        let err = |extra: &str| parse(extra).validate().unwrap_err();
        assert!(err("mode = \"upsert\"").starts_with("primary_key: mode = \"upsert\" needs"));
        assert!(err("primary_key = [\"/event_id\"]").contains("allowed modes"));
        assert!(err("mode = \"upsert\"\nprimary_key = [\"event_id\"]").contains("not a JSON pointer"));
        assert!(err("schema = \"a b\"").starts_with("schema: "));
        assert!(
            err("delete_when = { pointer = \"/op\", equals = \"delete\" }")
                .starts_with("delete_when: only used by mode = \"upsert\"")
        );
        let upsert = "mode = \"upsert\"\nprimary_key = [\"/id\"]\n";
        assert!(
            err(&format!(
                "{upsert}delete_when = {{ pointer = \"op\", equals = \"delete\" }}"
            ))
            .starts_with("delete_when.pointer: \"op\"")
        );
        assert!(
            err(&format!("{upsert}delete_when = {{ pointer = \"/op\", equals = [1] }}"))
                .starts_with("delete_when.equals: ")
        );
        assert!(
            parse(&format!(
                "{upsert}delete_when = {{ pointer = \"/op\", equals = \"delete\" }}"
            ))
            .validate()
            .is_ok()
        );

        assert!(err("flush_interval_secs = 0").starts_with("flush_interval_secs"));
        let mut c = parse("");
        c.table = "_sluice_batches".into();
        assert!(c.validate().unwrap_err().starts_with("table: "));
        let mut c = parse("");
        c.url = "mysql://x".into();
        assert!(c.validate().unwrap_err().starts_with("url: "));
    }
}
