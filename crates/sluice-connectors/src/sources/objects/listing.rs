//! Where the objects are: a store, the prefix under it, and the pattern
//! keys below the prefix must match. Lists what is there (the sweep) and
//! turns a notification into the object version it announces.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use futures::TryStreamExt;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, path::Path};

use super::{ledger::ObjectRef, notification::Created};

pub struct Objects {
    pub store: Arc<dyn ObjectStore>,
    pub prefix: Path,
    /// The bucket, for an S3 store (notifications name it).
    pub bucket: Option<String>,
    pub pattern: glob::Pattern,
}

impl Objects {
    /// The part of `key` below the prefix, if it is below it.
    fn relative<'a>(&self, key: &'a str) -> Option<&'a str> {
        let prefix = self.prefix.as_ref();
        if prefix.is_empty() {
            return Some(key);
        }
        key.strip_prefix(prefix)?.strip_prefix('/')
    }

    /// Whether `key` (a full key in the store) is one of ours.
    pub fn wants(&self, key: &str) -> bool {
        self.relative(key).is_some_and(|rel| self.pattern.matches(rel))
    }

    /// Every matching object that has not changed for `settle`.
    pub async fn list(&self, settle: Duration) -> Result<Vec<ObjectRef>, object_store::Error> {
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        let metas: Vec<ObjectMeta> = self.store.list(prefix).try_collect().await?;
        let now = SystemTime::now();
        let mut found: Vec<ObjectRef> = metas
            .into_iter()
            .filter(|m| self.wants(m.location.as_ref()))
            .filter(|m| {
                let modified: SystemTime = m.last_modified.into();
                now.duration_since(modified).is_ok_and(|age| age >= settle)
            })
            .map(|m| ObjectRef {
                version: version_of(&m),
                key: m.location.to_string(),
                size: m.size,
            })
            .collect();
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    /// The object version a notification announces, if it is one of ours;
    /// asks the store for the ETag when the notification has none.
    pub async fn announced(&self, created: &Created) -> Result<Option<ObjectRef>, object_store::Error> {
        if self.bucket.as_deref() != Some(created.bucket.as_str()) || !self.wants(&created.key) {
            return Ok(None);
        }
        if let Some(etag) = &created.etag {
            return Ok(Some(ObjectRef {
                key: created.key.clone(),
                // A listing shows the ETag quoted; notifications leave the quotes out.
                version: format!("\"{}\"", etag.trim_matches('"')),
                size: created.size.unwrap_or(0),
            }));
        }
        match self.store.head(&Path::from(created.key.as_str())).await {
            Ok(meta) => Ok(Some(ObjectRef {
                version: version_of(&meta),
                key: created.key.clone(),
                size: meta.size,
            })),
            // Gone already: a later sweep finds whatever replaced it.
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// An object's version: its ETag, else its size and modification time.
fn version_of(meta: &ObjectMeta) -> String {
    meta.e_tag.clone().unwrap_or_else(|| {
        format!(
            "{}-{}",
            meta.size,
            meta.last_modified.timestamp_nanos_opt().unwrap_or_default()
        )
    })
}
