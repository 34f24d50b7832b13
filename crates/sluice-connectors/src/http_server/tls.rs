//! TLS for the collector and the API: a certificate chain and key read from
//! PEM files, read again when either file changes, so a renewed certificate
//! is served without a restart.
//!
//! A change is looked for at most once a second, when a connection arrives.
//! Files that cannot be read or do not match keep the last good
//! certificate in service and log why; at start they are a config error.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};
use serde::Deserialize;
use tokio_rustls::TlsAcceptor;

/// `tls = { cert_file = "...", key_file = "..." }`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM file with the certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

impl TlsFiles {
    /// Makes both paths absolute against the pipeline file's folder.
    pub fn resolve(&mut self, env: &dyn sluice_core::config::LoadEnv) {
        self.cert_file = env.path(&self.cert_file.to_string_lossy());
        self.key_file = env.path(&self.key_file.to_string_lossy());
    }
}

/// How often the files' modification times are looked at.
const RECHECK: Duration = Duration::from_secs(1);

/// The current acceptor and what the files looked like when it was made.
pub struct ReloadingTls {
    files: TlsFiles,
    state: Mutex<State>,
}

struct State {
    acceptor: TlsAcceptor,
    stamp: Stamp,
    checked: Instant,
}

/// Modification time and length of both files.
type Stamp = [(Option<SystemTime>, u64); 2];

impl ReloadingTls {
    /// Loads the files; an error names the file and what is wrong with it.
    pub fn load(files: &TlsFiles) -> Result<ReloadingTls, String> {
        let stamp = stamp(files);
        let acceptor = acceptor(files)?;
        Ok(ReloadingTls {
            files: files.clone(),
            state: Mutex::new(State {
                acceptor,
                stamp,
                checked: Instant::now(),
            }),
        })
    }

    /// The acceptor for a new connection, after reloading changed files.
    pub fn acceptor(&self) -> TlsAcceptor {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.checked.elapsed() >= RECHECK {
            state.checked = Instant::now();
            let now = stamp(&self.files);
            if now != state.stamp {
                state.stamp = now;
                match acceptor(&self.files) {
                    Ok(fresh) => {
                        tracing::info!(cert_file = %self.files.cert_file.display(), "TLS certificate reloaded");
                        state.acceptor = fresh;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "TLS files changed but cannot be used; serving the previous certificate");
                    }
                }
            }
        }
        state.acceptor.clone()
    }
}

fn stamp(files: &TlsFiles) -> Stamp {
    let one = |path: &Path| match std::fs::metadata(path) {
        Ok(m) => (m.modified().ok(), m.len()),
        Err(_) => (None, 0),
    };
    [one(&files.cert_file), one(&files.key_file)]
}

fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, String> {
    let cert_file = files.cert_file.display();
    let key_file = files.key_file.display();
    let certs = CertificateDer::pem_file_iter(&files.cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("tls.cert_file {cert_file}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("tls.cert_file {cert_file}: holds no PEM certificate"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key_file).map_err(|e| format!("tls.key_file {key_file}: {e}"))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls: {cert_file} and {key_file} cannot be used together: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_empty_files_are_named() {
        let dir = sluice_testkit::tempdir().unwrap();
        let files = TlsFiles {
            cert_file: dir.path().join("cert.pem"),
            key_file: dir.path().join("key.pem"),
        };
        let e = ReloadingTls::load(&files).err().unwrap();
        assert!(e.starts_with("tls.cert_file ") && e.contains("cert.pem"), "{e}");
        std::fs::write(&files.cert_file, "not pem\n").unwrap();
        let e = ReloadingTls::load(&files).err().unwrap();
        assert!(e.contains("holds no PEM certificate"), "{e}");
    }
}
