//! Who may post to a collector: bearer tokens and webhook signatures.
//!
//! * Tokens come from an environment variable (several, separated by commas
//!   or white space) and/or a file (one per line, `#` comments), never from
//!   the pipeline file. The file is read again when it changes (looked at
//!   at most once a second), so tokens rotate without a restart; a file
//!   that goes missing or empty keeps the last good tokens and logs why.
//! * A request's token is compared with every accepted token in constant
//!   time (`subtle`), so timing tells nothing about how much of it matched.
//! * A signature is HMAC-SHA256 over the body exactly as sent, in a header
//!   (`X-Signature-256: sha256=<hex>` by default, GitHub's shape), checked
//!   with `hmac`'s constant-time verification.
//! * With both configured, a request needs both. Nothing about a token or
//!   secret is ever logged or answered.

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant, SystemTime},
};

use axum::http::HeaderMap;
use base64::Engine;
use hmac::{KeyInit, Mac};
use serde::Deserialize;
use sluice_core::Secret;
use subtle::ConstantTimeEq;

/// `[sources.NAME.auth]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Environment variable holding accepted bearer tokens, separated by
    /// commas or white space.
    #[serde(default)]
    pub bearer_tokens_env: Option<String>,
    /// File of accepted bearer tokens, one per line (`#` starts a comment);
    /// read again when it changes, so tokens rotate without a restart.
    #[serde(default)]
    pub bearer_tokens_file: Option<PathBuf>,
    /// Webhook signature: HMAC-SHA256 of the body as sent.
    #[serde(default)]
    pub hmac: Option<HmacConfig>,
}

/// `[sources.NAME.auth.hmac]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HmacConfig {
    /// Environment variable holding the shared secret.
    pub secret_env: String,
    /// Header carrying the signature.
    #[serde(default = "default_hmac_header")]
    pub header: String,
    /// Text before the signature in the header (`""` for none).
    #[serde(default = "default_hmac_prefix")]
    pub prefix: String,
    /// How the signature is written: `hex` or `base64`.
    #[serde(default)]
    pub encoding: SignatureEncoding,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, serde::Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SignatureEncoding {
    #[default]
    Hex,
    Base64,
}

fn default_hmac_header() -> String {
    "X-Signature-256".into()
}
fn default_hmac_prefix() -> String {
    "sha256=".into()
}

impl AuthConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.bearer_tokens_env.is_none() && self.bearer_tokens_file.is_none() && self.hmac.is_none() {
            return Err("auth: set bearer_tokens_env, bearer_tokens_file or hmac".into());
        }
        if let Some(h) = &self.hmac
            && axum::http::HeaderName::try_from(h.header.as_str()).is_err()
        {
            return Err(format!("auth.hmac.header: {:?} is not a header name", h.header));
        }
        Ok(())
    }
}

/// Why a request was refused (answered as 401).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("missing or invalid bearer token")]
    Token,
    #[error("missing or invalid signature")]
    Signature,
}

/// The checks of one source, built from its [`AuthConfig`].
pub struct Authenticator {
    tokens: Option<Tokens>,
    hmac: Option<Signature>,
}

struct Tokens {
    from_env: Vec<Secret>,
    file: Option<TokenFile>,
}

struct TokenFile {
    path: PathBuf,
    state: Mutex<FileState>,
}

struct FileState {
    tokens: Vec<Secret>,
    stamp: (Option<SystemTime>, u64),
    checked: Instant,
}

struct Signature {
    secret: Secret,
    header: String,
    prefix: String,
    encoding: SignatureEncoding,
}

const RECHECK: Duration = Duration::from_secs(1);

impl Authenticator {
    /// Reads the environment and files; errors name the key and what is
    /// missing, never a value.
    pub fn build(config: &AuthConfig) -> Result<Authenticator, String> {
        let from_env = match &config.bearer_tokens_env {
            Some(var) => {
                let tokens = split_tokens(&env_value(var, "auth.bearer_tokens_env")?);
                if tokens.is_empty() {
                    return Err(format!("auth.bearer_tokens_env: {var} holds no token"));
                }
                tokens
            }
            None => Vec::new(),
        };
        let file = match &config.bearer_tokens_file {
            Some(path) => {
                let tokens = read_token_file(path)?;
                Some(TokenFile {
                    path: path.clone(),
                    state: Mutex::new(FileState {
                        tokens,
                        stamp: file_stamp(path),
                        checked: Instant::now(),
                    }),
                })
            }
            None => None,
        };
        let tokens = (config.bearer_tokens_env.is_some() || file.is_some()).then_some(Tokens { from_env, file });
        let hmac = match &config.hmac {
            Some(h) => Some(Signature {
                secret: Secret::new(env_value(&h.secret_env, "auth.hmac.secret_env")?),
                header: h.header.clone(),
                prefix: h.prefix.clone(),
                encoding: h.encoding,
            }),
            None => None,
        };
        Ok(Authenticator { tokens, hmac })
    }

    /// Whether a token is needed: checked before the body is read.
    pub fn check_token(&self, authorization: Option<&[u8]>) -> Result<(), Denied> {
        let Some(tokens) = &self.tokens else {
            return Ok(());
        };
        let given = authorization.and_then(bearer).ok_or(Denied::Token)?;
        self.check_secret(tokens, given)
    }

    /// Whether `authorization` is HTTP Basic auth whose user name is an
    /// accepted token (Segment's write key), if tokens are needed.
    pub fn check_write_key(&self, authorization: Option<&[u8]>) -> Result<(), Denied> {
        let Some(tokens) = &self.tokens else {
            return Ok(());
        };
        let given = authorization.and_then(basic_user).ok_or(Denied::Token)?;
        self.check_secret(tokens, &given)
    }

    fn check_secret(&self, tokens: &Tokens, given: &[u8]) -> Result<(), Denied> {
        let mut ok = subtle::Choice::from(0);
        for token in &tokens.from_env {
            ok |= given.ct_eq(token.expose().as_bytes());
        }
        if let Some(file) = &tokens.file {
            for token in file.current() {
                ok |= given.ct_eq(token.expose().as_bytes());
            }
        }
        if bool::from(ok) { Ok(()) } else { Err(Denied::Token) }
    }

    /// Whether the body carries a valid signature, if one is needed.
    pub fn check_signature(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), Denied> {
        let Some(sig) = &self.hmac else {
            return Ok(());
        };
        let value = headers.get(sig.header.as_str()).ok_or(Denied::Signature)?;
        let encoded = value
            .as_bytes()
            .strip_prefix(sig.prefix.as_bytes())
            .ok_or(Denied::Signature)?;
        let encoded = std::str::from_utf8(encoded).map_err(|_| Denied::Signature)?.trim();
        let claimed = match sig.encoding {
            SignatureEncoding::Hex => decode_hex(encoded),
            SignatureEncoding::Base64 => base64::engine::general_purpose::STANDARD.decode(encoded).ok(),
        }
        .ok_or(Denied::Signature)?;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(sig.secret.expose().as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(body);
        mac.verify_slice(&claimed).map_err(|_| Denied::Signature)
    }
}

impl TokenFile {
    fn current(&self) -> Vec<Secret> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.checked.elapsed() >= RECHECK {
            state.checked = Instant::now();
            let stamp = file_stamp(&self.path);
            if stamp != state.stamp {
                state.stamp = stamp;
                match read_token_file(&self.path) {
                    Ok(tokens) => {
                        tracing::info!(file = %self.path.display(), tokens = tokens.len(), "collector tokens reloaded");
                        state.tokens = tokens;
                    }
                    Err(e) => tracing::warn!(error = %e, "collector tokens kept: the file cannot be used"),
                }
            }
        }
        state.tokens.clone()
    }
}

fn env_value(var: &str, key: &str) -> Result<String, String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        Ok(_) => Err(format!("{key}: environment variable {var} is empty")),
        Err(_) => Err(format!("{key}: environment variable {var} is not set")),
    }
}

fn split_tokens(text: &str) -> Vec<Secret> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(Secret::new)
        .collect()
}

fn read_token_file(path: &Path) -> Result<Vec<Secret>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("auth.bearer_tokens_file {}: {e}", path.display()))?;
    let tokens: Vec<Secret> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|t| !t.is_empty())
        .map(Secret::new)
        .collect();
    if tokens.is_empty() {
        return Err(format!("auth.bearer_tokens_file {}: holds no token", path.display()));
    }
    Ok(tokens)
}

fn file_stamp(path: &Path) -> (Option<SystemTime>, u64) {
    match std::fs::metadata(path) {
        Ok(m) => (m.modified().ok(), m.len()),
        Err(_) => (None, 0),
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = token.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// The user name of an HTTP Basic `Authorization` value.
fn basic_user(value: &[u8]) -> Option<Vec<u8>> {
    let (scheme, encoded) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim_ascii())
        .ok()?;
    let user = match decoded.iter().position(|&b| b == b':') {
        Some(colon) => decoded[..colon].to_vec(),
        None => decoded,
    };
    (!user.is_empty()).then_some(user)
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_file(path: &Path) -> Result<Authenticator, String> {
        Authenticator::build(&AuthConfig {
            bearer_tokens_file: Some(path.to_path_buf()),
            ..AuthConfig::default()
        })
    }

    #[test]
    fn bearer_tokens_match_whole_tokens_only() {
        let dir = sluice_testkit::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "# rotated 2026-12\nalpha-1\n\n  beta-2  # old one\n").unwrap();
        let auth = with_file(&path).unwrap();
        assert_eq!(auth.check_token(Some(b"Bearer alpha-1")), Ok(()));
        assert_eq!(auth.check_token(Some(b"bearer beta-2 ")), Ok(()));
        for bad in [
            &b"Bearer alpha-"[..],
            b"Bearer alpha-12",
            b"Bearer ",
            b"Bearer",
            b"Basic alpha-1",
            b"alpha-1",
            b"Bearer \xff\xfe",
        ] {
            assert_eq!(auth.check_token(Some(bad)), Err(Denied::Token), "{bad:?}");
        }
        assert_eq!(auth.check_token(None), Err(Denied::Token));
    }

    #[test]
    fn a_write_key_is_the_user_name_of_basic_auth() {
        use base64::Engine;
        let dir = sluice_testkit::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "wk-1\n").unwrap();
        let auth = with_file(&path).unwrap();
        let basic = |credentials: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(credentials)
            )
        };
        assert_eq!(auth.check_write_key(Some(basic("wk-1:").as_bytes())), Ok(()));
        assert_eq!(auth.check_write_key(Some(basic("wk-1").as_bytes())), Ok(()));
        for bad in [basic("wk-2:"), basic(":wk-1"), "Bearer wk-1".into(), "Basic !!".into()] {
            assert_eq!(auth.check_write_key(Some(bad.as_bytes())), Err(Denied::Token), "{bad}");
        }
        assert_eq!(auth.check_write_key(None), Err(Denied::Token));
    }

    #[test]
    fn a_rewritten_token_file_rotates_tokens_and_a_broken_one_keeps_them() {
        let dir = sluice_testkit::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "old\n").unwrap();
        let auth = with_file(&path).unwrap();
        std::fs::write(&path, "new-token\n").unwrap();
        std::thread::sleep(RECHECK + Duration::from_millis(50));
        assert_eq!(auth.check_token(Some(b"Bearer old")), Err(Denied::Token));
        assert_eq!(auth.check_token(Some(b"Bearer new-token")), Ok(()));
        std::fs::write(&path, "# nothing\n").unwrap();
        std::thread::sleep(RECHECK + Duration::from_millis(50));
        assert_eq!(auth.check_token(Some(b"Bearer new-token")), Ok(()));
    }

    #[test]
    fn missing_sources_of_tokens_are_config_errors() {
        let e = Authenticator::build(&AuthConfig {
            bearer_tokens_env: Some("SLUICE_TEST_SURELY_UNSET_TOKENS".into()),
            ..AuthConfig::default()
        })
        .err()
        .unwrap();
        assert_eq!(
            e,
            "auth.bearer_tokens_env: environment variable SLUICE_TEST_SURELY_UNSET_TOKENS is not set"
        );
        let e = with_file(Path::new("/nonexistent/tokens")).err().unwrap();
        assert!(e.starts_with("auth.bearer_tokens_file /nonexistent/tokens: "), "{e}");
    }

    #[test]
    fn signatures_are_checked_over_the_body_as_sent() {
        let auth = Authenticator {
            tokens: None,
            hmac: Some(Signature {
                secret: Secret::new("It's a Secret to Everybody"),
                header: "X-Hub-Signature-256".into(),
                prefix: "sha256=".into(),
                encoding: SignatureEncoding::Hex,
            }),
        };
        // GitHub's documented example of a webhook signature.
        let good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let header = |value: &[u8]| {
            let mut headers = HeaderMap::new();
            headers.insert(
                "x-hub-signature-256",
                axum::http::HeaderValue::from_bytes(value).unwrap(),
            );
            headers
        };
        assert_eq!(auth.check_signature(&header(good.as_bytes()), b"Hello, World!"), Ok(()));
        assert_eq!(
            auth.check_signature(&header(good.as_bytes()), b"Hello, World?"),
            Err(Denied::Signature)
        );
        for bad in [
            &b"757107ea"[..],
            b"sha256=zz",
            b"sha256=",
            b"sha1=757107ea",
            b"sha256=\xff",
        ] {
            assert_eq!(
                auth.check_signature(&header(bad), b"Hello, World!"),
                Err(Denied::Signature)
            );
        }
        assert_eq!(
            auth.check_signature(&HeaderMap::new(), b"Hello, World!"),
            Err(Denied::Signature)
        );
    }
}
