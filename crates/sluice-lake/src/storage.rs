//! Where a table lives: a local directory (`file://`) or an S3-compatible
//! bucket (`s3://bucket/prefix`), with the options that reach it.
//!
//! S3 goes through `object_store`'s client, registered once as delta-rs's
//! `s3` scheme, with delta-rs's default log store: every commit is a
//! put-if-absent (`If-None-Match: *`) of the next log version, so concurrent
//! writers on several machines lose the race loudly and retry on top of the
//! winner; nothing ever renames. Settings come from the usual `AWS_*`
//! environment variables, overridden per table by `storage_options`.

use std::{
    collections::BTreeMap,
    fmt,
    str::FromStr,
    sync::{Arc, Once},
};

use deltalake::{
    DeltaResult, DeltaTableBuilder, DeltaTableError, Path,
    logstore::{
        LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig, default_logstore,
        logstore_factories, object_store_factories,
    },
};
use object_store::{
    ObjectStore, RetryConfig,
    aws::{AmazonS3Builder, AmazonS3ConfigKey},
    local::LocalFileSystem,
};
use url::Url;

use crate::{LakeError, table::table_error};

/// A place in an object store (a local folder or an S3 prefix) and the
/// options to reach it: a table, a registry, a source's objects. `Debug`
/// shows the options' keys only (some are credentials).
#[derive(Clone, PartialEq)]
pub struct StoreLocation {
    url: Url,
    options: BTreeMap<String, String>,
}

impl std::fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreLocation")
            .field("url", &self.url.as_str())
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl StoreLocation {
    /// Checks the scheme and every option key; messages say what is allowed.
    pub fn new(url: Url, options: impl Into<BTreeMap<String, String>>) -> Result<Self, String> {
        let options = options.into();
        match url.scheme() {
            "file" if options.is_empty() => {}
            "file" => return Err("storage_options: only apply to s3:// locations".into()),
            "s3" => {
                if url.host_str().is_none_or(str::is_empty) {
                    return Err(format!("{url}: an s3:// URL names a bucket: s3://BUCKET/PREFIX"));
                }
                retry_config(&options)?;
                for key in options.keys().filter(|k| !RETRY_KEYS.contains(&k.as_str())) {
                    AmazonS3ConfigKey::from_str(key).map_err(|_| {
                        format!(
                            "storage_options.{key}: not an S3 option; allowed: endpoint, region, access_key_id, secret_access_key, session_token, allow_http, virtual_hosted_style_request, conditional_put, max_retries, retry_timeout and the other aws_* keys of object_store"
                        )
                    })?;
                }
            }
            other => {
                return Err(format!(
                    "{url}: scheme {other:?} is not supported; allowed: a local path, file:// or s3://"
                ));
            }
        }
        Ok(StoreLocation { url, options })
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The object-store options over the `AWS_*` environment.
    pub fn options(&self) -> &BTreeMap<String, String> {
        &self.options
    }

    pub fn is_local(&self) -> bool {
        self.url.scheme() == "file"
    }

    /// A client for the objects under this location, and the prefix they
    /// are under in it (a local folder is its own root).
    pub fn object_store(&self) -> Result<(Arc<dyn ObjectStore>, Path), String> {
        if self.is_local() {
            let dir = self
                .url
                .to_file_path()
                .map_err(|()| format!("{}: not a local path", self.url))?;
            std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
            let store = LocalFileSystem::new_with_prefix(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            return Ok((Arc::new(store), Path::default()));
        }
        let store = s3_store(&self.url, &self.options, retry_config(&self.options)?)
            .map_err(|e| format!("{}: {e}", self.url))?;
        let prefix = Path::from_url_path(self.url.path()).map_err(|e| format!("{}: {e}", self.url))?;
        Ok((Arc::new(store), prefix))
    }

    /// A delta-rs builder for this table, with the S3 scheme registered.
    pub(crate) fn builder(&self) -> Result<DeltaTableBuilder, LakeError> {
        register_s3();
        let builder = DeltaTableBuilder::from_url(self.url.clone()).map_err(|e| table_error(self, e))?;
        Ok(builder.with_storage_options(self.options.clone().into_iter().collect()))
    }
}

/// A location with no options, unchecked: a scheme delta-rs does not know
/// fails when the table is opened.
impl From<Url> for StoreLocation {
    fn from(url: Url) -> Self {
        StoreLocation {
            url,
            options: BTreeMap::new(),
        }
    }
}

impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.url.fmt(f)
    }
}

/// Registers `s3://` with delta-rs (once per process).
fn register_s3() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        let scheme = Url::parse("s3://").expect("a valid scheme URL");
        object_store_factories().insert(scheme.clone(), Arc::new(S3Factory));
        logstore_factories().insert(scheme, Arc::new(S3Factory));
    });
}

/// Builds S3 clients from the environment plus the table's options.
struct S3Factory;

impl ObjectStoreFactory for S3Factory {
    fn parse_url_opts(&self, url: &Url, config: &StorageConfig) -> DeltaResult<(ObjectStoreRef, Path)> {
        let options: BTreeMap<String, String> = config.raw.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let retry = retry_config(&options).map_err(DeltaTableError::Generic)?;
        let store = s3_store(url, &options, retry).map_err(DeltaTableError::Generic)?;
        Ok((Arc::new(store), Path::from(url.path())))
    }
}

/// Options that bound how long a request is retried inside object_store
/// (10 retries within 3 minutes by default) before the sink sees an error.
const RETRY_KEYS: [&str; 2] = ["max_retries", "retry_timeout"];

/// object_store's retry settings with `max_retries` (a count) and
/// `retry_timeout` (seconds, written `30` or `30s`) from `options`.
fn retry_config(options: &BTreeMap<String, String>) -> Result<RetryConfig, String> {
    let mut retry = RetryConfig::default();
    if let Some(n) = options.get("max_retries") {
        retry.max_retries = n
            .parse()
            .map_err(|_| format!("storage_options.max_retries: {n:?} is not a whole number"))?;
    }
    if let Some(t) = options.get("retry_timeout") {
        let secs: u64 = t
            .strip_suffix('s')
            .unwrap_or(t)
            .parse()
            .map_err(|_| format!("storage_options.retry_timeout: {t:?} is not a number of seconds (\"30s\")"))?;
        retry.retry_timeout = std::time::Duration::from_secs(secs);
    }
    Ok(retry)
}

/// An S3 client for `url`'s bucket: the `AWS_*` environment, then `options`.
fn s3_store<'a>(
    url: &Url,
    options: impl IntoIterator<Item = (&'a String, &'a String)>,
    retry: RetryConfig,
) -> Result<object_store::aws::AmazonS3, String> {
    let mut builder = AmazonS3Builder::from_env().with_url(url.as_str()).with_retry(retry);
    let mut plain_http = std::env::var("AWS_ENDPOINT_URL").is_ok_and(|e| e.starts_with("http://"));
    for (key, value) in options.into_iter().filter(|(k, _)| !RETRY_KEYS.contains(&k.as_str())) {
        let key = AmazonS3ConfigKey::from_str(key).map_err(|e| e.to_string())?;
        if key == AmazonS3ConfigKey::Endpoint {
            plain_http = value.starts_with("http://");
        }
        builder = builder.with_config(key, value);
    }
    if plain_http {
        // An endpoint written as http:// (a local server) is asked for
        // explicitly; object_store refuses it unless told.
        builder = builder.with_allow_http(true);
    }
    builder.build().map_err(|e| e.to_string())
}

impl LogStoreFactory for S3Factory {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(prefixed_store, root_store, location, options))
    }
}

#[cfg(test)]
mod tests;

/// The record batches of the data file at `path` (relative to the table
/// root), read whole; errors name the file.
pub(crate) async fn read_data_file(
    store: &dyn ObjectStore,
    path: &str,
) -> Result<deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReader, String> {
    use object_store::ObjectStoreExt;
    let in_file = |e: &dyn fmt::Display| format!("{path}: {e}");
    let bytes = store
        .get(&Path::from(path))
        .await
        .map_err(|e| in_file(&e))?
        .bytes()
        .await
        .map_err(|e| in_file(&e))?;
    deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.with_batch_size(8192).build())
        .map_err(|e| in_file(&e))
}
