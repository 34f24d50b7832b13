//! Configuration of the user transforms, as written in a pipeline file, and
//! building each into a [`Transform`]. Building checks everything the
//! transform needs at start (the jq program compiles, pointers parse, the
//! hash key's environment variable is set); errors start with the key.

use std::{collections::BTreeMap, path::Path, sync::Arc, time::Duration};

use serde::Deserialize;
use serde_json::Value;
use sluice_core::{
    Secret, Transform,
    config::{LoadEnv, TransformContext, TransformSpec},
};

use crate::{
    jq::{JqLimits, JqTransform},
    lookup::{Format, LookupSpec, LookupTransform, OnMissing, Source},
    ops::{Cast, CastType, DropFields, EditTransform, Filter, Hash, Rename, Set, SetValue, Test},
    pointer::Pointer,
};

/// `type = "jq"`: `program` inline or `program_file` (relative to the pipeline file).
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JqConfig {
    /// The jq program, run once per event; each object it emits is an
    /// event (none: the event is dropped).
    pub program: Option<String>,
    /// A file holding the program instead (relative to the pipeline file).
    pub program_file: Option<String>,
    /// What one event may cost the program; going past a limit sends the
    /// event to the dead-letter store as `jq_limit:<limit>`.
    #[serde(default)]
    pub limits: JqLimits,
}

/// `type = "rename"`: `fields = { "/from" = "/to" }`.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameConfig {
    /// JSON pointer of each field to move, and where it goes.
    pub fields: BTreeMap<String, String>,
}

/// `type = "drop"`: `fields = ["/page/referrer"]`.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DropConfig {
    /// JSON pointers of the fields to remove.
    pub fields: Vec<String>,
}

/// `type = "set"`: `fields = { "/source" = "web", "/copy" = { from = "/geo/country" } }`.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetConfig {
    /// JSON pointer of each field to write, and a constant (any TOML value)
    /// or `{ from = "/pointer" }` to copy another field.
    pub fields: BTreeMap<String, SetSpec>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(untagged)]
pub enum SetSpec {
    From { from: String },
    Constant(Value),
}

/// `type = "cast"`: `fields = { "/props/qty" = "integer" }`.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CastConfig {
    /// JSON pointer of each field to convert, and the type it becomes.
    pub fields: BTreeMap<String, CastType>,
}

/// `type = "filter"`: `keep_if` or `drop_if` a condition on one field.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Keep only the events that meet the condition.
    pub keep_if: Option<Condition>,
    /// Drop the events that meet the condition.
    pub drop_if: Option<Condition>,
}

/// `{ field = "/event_type", equals = "purchase" }`; exactly one of
/// `equals`, `not_equals`, `in`, `exists`.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// JSON pointer of the field tested.
    pub field: String,
    /// The field holds this value.
    pub equals: Option<Value>,
    /// The field does not hold this value (or is absent).
    pub not_equals: Option<Value>,
    /// The field holds one of these values.
    #[serde(rename = "in")]
    pub one_of: Option<Vec<Value>>,
    /// The field is present (`true`) or absent (`false`).
    pub exists: Option<bool>,
}

/// `type = "hash"`: `fields = ["/user_id"]`, `key_env = "SLUICE_PII_KEY"`.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HashConfig {
    /// JSON pointers of the fields replaced by their keyed hash
    /// (HMAC-SHA256, 64 hex digits).
    pub fields: Vec<String>,
    /// Environment variable holding the secret key (never logged or printed).
    pub key_env: String,
}

/// `type = "lookup"`: enrich from a reference table keyed by `key_column`.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupConfig {
    /// The event's field to match (string or number).
    pub key: String,
    /// Where the matched row (an object of its columns) is written.
    pub target: String,
    /// A local file (relative to the pipeline file): `.csv` with a header
    /// row, `.ndjson`/`.jsonl`, `.parquet`.
    pub file: Option<String>,
    /// The file's format when its extension does not say.
    pub format: Option<Format>,
    /// A PostgreSQL query instead of a file.
    pub postgres: Option<PostgresLookup>,
    /// The reference table's column holding the key.
    pub key_column: String,
    #[serde(default)]
    pub on_missing: OnMissing,
    /// How often the reference table is read again; a failed read keeps
    /// the last good table.
    #[serde(default = "default_refresh_secs")]
    pub refresh_secs: u64,
}

/// `postgres = { url = "postgres://...", query = "SELECT code, name FROM countries" }`.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresLookup {
    /// The database (`postgres://user:password@host/db`); never printed.
    pub url: Secret,
    /// The query whose rows are the reference table.
    pub query: String,
}

fn default_refresh_secs() -> u64 {
    300
}

fn pointer(key: &str, text: &str) -> Result<Pointer, String> {
    Pointer::parse(text).map_err(|e| format!("{key}: {e}"))
}

fn pointers(key: &str, texts: &[String]) -> Result<Vec<Pointer>, String> {
    if texts.is_empty() {
        return Err(format!("{key}: name at least one field"));
    }
    texts.iter().map(|t| pointer(key, t)).collect()
}

fn pairs<T: Clone>(key: &str, map: &BTreeMap<String, T>) -> Result<Vec<(Pointer, T)>, String> {
    if map.is_empty() {
        return Err(format!("{key}: name at least one field"));
    }
    map.iter().map(|(k, v)| Ok((pointer(key, k)?, v.clone()))).collect()
}

impl JqConfig {
    /// The program text: inline, or read from `program_file` (made
    /// absolute at load).
    fn program_text(&self) -> Result<String, String> {
        match (&self.program, &self.program_file) {
            (Some(p), None) => Ok(p.clone()),
            (None, Some(f)) => std::fs::read_to_string(f).map_err(|e| format!("program_file: cannot read {f:?}: {e}")),
            _ => Err("program: give the jq program either inline (`program`) or in a file (`program_file`)".into()),
        }
    }
}

impl TransformSpec for JqConfig {
    fn resolve(&mut self, env: &dyn LoadEnv) -> Result<(), String> {
        if let Some(file) = &mut self.program_file {
            *file = env.path(file).to_string_lossy().into_owned();
        }
        Ok(())
    }

    fn build(&self, _context: &TransformContext<'_>) -> Result<Arc<dyn Transform>, String> {
        let text = self.program_text()?;
        let key = if self.program.is_some() {
            "program"
        } else {
            "program_file"
        };
        self.limits.check()?;
        Ok(Arc::new(
            JqTransform::new(&text, self.limits).map_err(|e| format!("{key}: {e}"))?,
        ))
    }
}

impl TransformSpec for RenameConfig {
    fn build(&self, _context: &TransformContext<'_>) -> Result<Arc<dyn Transform>, String> {
        let renames = pairs("fields", &self.fields)?
            .into_iter()
            .map(|(from, to)| Ok((from, pointer("fields", &to)?)))
            .collect::<Result<_, String>>()?;
        Ok(Arc::new(EditTransform(Rename(renames))))
    }
}

impl TransformSpec for DropConfig {
    fn build(&self, _context: &TransformContext<'_>) -> Result<Arc<dyn Transform>, String> {
        Ok(Arc::new(EditTransform(DropFields(pointers("fields", &self.fields)?))))
    }
}

impl TransformSpec for SetConfig {
    fn build(&self, _context: &TransformContext<'_>) -> Result<Arc<dyn Transform>, String> {
        let sets = pairs("fields", &self.fields)?
            .into_iter()
            .map(|(target, spec)| {
                let value = match spec {
                    SetSpec::From { from } => SetValue::From(pointer("fields", &from)?),
                    SetSpec::Constant(v) => SetValue::Constant(v),
                };
                Ok((target, value))
            })
            .collect::<Result<_, String>>()?;
        Ok(Arc::new(EditTransform(Set(sets))))
    }
}

impl TransformSpec for CastConfig {
    fn build(&self, _context: &TransformContext<'_>) -> Result<Arc<dyn Transform>, String> {
        Ok(Arc::new(EditTransform(Cast(pairs("fields", &self.fields)?))))
    }
}

impl TransformSpec for FilterConfig {
    fn build(&self, _context: &TransformContext<'_>) -> Result<Arc<dyn Transform>, String> {
        let (key, condition, keep_passing) = match (&self.keep_if, &self.drop_if) {
            (Some(c), None) => ("keep_if", c, true),
            (None, Some(c)) => ("drop_if", c, false),
            _ => return Err("keep_if: give exactly one of keep_if or drop_if".into()),
        };
        let c = condition;
        let test = match (&c.equals, &c.not_equals, &c.one_of, c.exists) {
            (Some(v), None, None, None) => Test::Equals(v.clone()),
            (None, Some(v), None, None) => Test::NotEquals(v.clone()),
            (None, None, Some(vs), None) => Test::In(vs.clone()),
            (None, None, None, Some(b)) => Test::Exists(b),
            _ => {
                return Err(format!(
                    "{key}: give exactly one test: equals, not_equals, in or exists"
                ));
            }
        };
        Ok(Arc::new(EditTransform(Filter {
            field: pointer(&format!("{key}.field"), &c.field)?,
            test,
            keep_passing,
        })))
    }
}

impl TransformSpec for HashConfig {
    /// Checks what needs no secret (the fields): `load` does not read the key.
    fn validate(&self, _context: &TransformContext<'_>) -> Result<(), String> {
        pointers("fields", &self.fields).map(|_| ())
    }

    /// Builds the transform with the key from `key_env`.
    fn build(&self, _context: &TransformContext<'_>) -> Result<Arc<dyn Transform>, String> {
        let fields = pointers("fields", &self.fields)?;
        let key = std::env::var_os(&self.key_env)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                format!(
                    "key_env: the environment variable {} is not set or empty; it must hold the secret key",
                    self.key_env
                )
            })?;
        Ok(Arc::new(EditTransform(Hash::new(fields, key.into_encoded_bytes()))))
    }
}

impl TransformSpec for LookupConfig {
    fn resolve(&mut self, env: &dyn LoadEnv) -> Result<(), String> {
        if let Some(file) = &mut self.file {
            *file = env.path(file).to_string_lossy().into_owned();
        }
        Ok(())
    }

    /// Checks the source without loading it (a file must exist); the
    /// transform's name labels the metrics.
    fn build(&self, context: &TransformContext<'_>) -> Result<Arc<dyn Transform>, String> {
        let source = match (&self.file, &self.postgres) {
            (Some(path), None) => {
                let format = match self.format {
                    Some(f) => f,
                    None => Format::from_path(path).ok_or_else(|| {
                        format!("format: {path:?} does not end in .csv, .ndjson, .jsonl or .parquet; set format = \"csv\", \"ndjson\" or \"parquet\"")
                    })?,
                };
                if !Path::new(path).is_file() {
                    return Err(format!("file: {path:?} does not exist"));
                }
                Source::File {
                    path: path.clone(),
                    format,
                }
            }
            (None, Some(pg)) => {
                pg.url
                    .expose()
                    .parse::<tokio_postgres::Config>()
                    .map_err(|e| format!("postgres.url: not a PostgreSQL connection string ({e})"))?;
                Source::Postgres {
                    url: pg.url.clone(),
                    query: pg.query.clone(),
                }
            }
            _ => return Err("file: give the reference table as either `file` or `postgres`".into()),
        };
        if self.refresh_secs == 0 {
            return Err("refresh_secs: must be at least 1".into());
        }
        Ok(Arc::new(LookupTransform::new(LookupSpec {
            name: context.name.to_string(),
            key: pointer("key", &self.key)?,
            target: pointer("target", &self.target)?,
            on_missing: self.on_missing,
            source,
            key_column: self.key_column.clone(),
            refresh: Duration::from_secs(self.refresh_secs),
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> TransformContext<'static> {
        TransformContext {
            name: "t",
            data_dir: Path::new("/data"),
        }
    }

    #[test]
    fn configs_parse_and_errors_name_the_key() {
        let set: SetConfig =
            toml::from_str("fields = { \"/source\" = \"web\", \"/copy\" = { from = \"/x\" } }").unwrap();
        assert_eq!(set.fields["/copy"], SetSpec::From { from: "/x".into() });
        assert_eq!(set.fields["/source"], SetSpec::Constant(Value::from("web")));
        assert!(set.build(&context()).is_ok());

        let filter: FilterConfig = toml::from_str("keep_if = { field = \"/t\", in = [\"x\"], exists = true }").unwrap();
        assert_eq!(
            filter.build(&context()).err().unwrap(),
            "keep_if: give exactly one test: equals, not_equals, in or exists"
        );
        let filter: FilterConfig = toml::from_str("drop_if = { field = \"t\", exists = true }").unwrap();
        assert!(
            filter
                .build(&context())
                .err()
                .unwrap()
                .starts_with("drop_if.field: \"t\" is not a JSON pointer")
        );

        let drop: DropConfig = toml::from_str("fields = []").unwrap();
        assert_eq!(drop.build(&context()).err().unwrap(), "fields: name at least one field");

        let hash: HashConfig =
            toml::from_str("fields = [\"/user_id\"]\nkey_env = \"SLUICE_TEST_SURELY_UNSET_KEY\"").unwrap();
        assert!(
            hash.build(&context())
                .err()
                .unwrap()
                .starts_with("key_env: the environment variable SLUICE_TEST_SURELY_UNSET_KEY")
        );

        let jq: JqConfig = toml::from_str("program = \".a |\"").unwrap();
        assert!(
            jq.build(&context())
                .err()
                .unwrap()
                .starts_with("program: line 1, column")
        );
        let jq: JqConfig = toml::from_str("").unwrap();
        assert!(
            jq.build(&context())
                .err()
                .unwrap()
                .starts_with("program: give the jq program")
        );
        assert!(toml::from_str::<CastConfig>("fields = { \"/a\" = \"float\" }").is_err());
    }
}
