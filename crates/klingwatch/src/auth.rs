//! Credentials, JWT signing compatible with the official sample, and the token cache.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::header::HeaderValue;

use crate::error::{Error, ErrorKind, Result};

/// Env var holding the AccessKey.
pub const ENV_ACCESS_KEY: &str = "KLING_ACCESS_KEY";
/// Env var holding the SecretKey.
pub const ENV_SECRET_KEY: &str = "KLING_SECRET_KEY";
/// Env var holding a static API key.
pub const ENV_API_KEY: &str = "KLING_API_KEY";

/// Default token lifetime: 30 minutes, as the official samples sign.
pub const DEFAULT_TTL_SECS: i64 = 1800;
/// A token is re-signed when less than this is left.
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// A string that never shows itself in `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(Arc::from(value.into()))
    }
    /// The secret itself: call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How requests are authorised.
#[derive(Clone)]
pub enum Credentials {
    /// AccessKey/SecretKey: an HS256 JWT is signed and cached.
    AccessKey {
        /// The AccessKey (the JWT `iss`); not secret, shown in Debug.
        access_key: String,
        /// The SecretKey.
        secret_key: Secret,
    },
    /// A static API key sent as the bearer token as-is.
    ApiKey(Secret),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::AccessKey { access_key, .. } => f
                .debug_struct("AccessKey")
                .field("access_key", access_key)
                .field("secret_key", &"***")
                .finish(),
            Credentials::ApiKey(_) => f.write_str("ApiKey(***)"),
        }
    }
}

impl Credentials {
    /// AccessKey/SecretKey credentials.
    pub fn access_key(access_key: impl Into<String>, secret_key: impl Into<String>) -> Credentials {
        Credentials::AccessKey {
            access_key: access_key.into(),
            secret_key: Secret::new(secret_key),
        }
    }

    /// Static API key credentials.
    pub fn api_key(key: impl Into<String>) -> Credentials {
        Credentials::ApiKey(Secret::new(key))
    }

    /// Credentials from `KLING_ACCESS_KEY`/`KLING_SECRET_KEY` or `KLING_API_KEY`.
    pub fn from_env() -> Result<Credentials> {
        Credentials::resolve(None, None, None)
    }

    /// Combines explicit values with the environment; explicit values win.
    ///
    /// An explicit API key, or an explicit AccessKey/SecretKey pair, is used as given.
    /// Otherwise missing halves are filled from the env; an AK/SK pair beats an API key at
    /// the same level. Nothing set is a `config` error naming the variables.
    pub fn resolve(
        access_key: Option<&str>,
        secret_key: Option<&str>,
        api_key: Option<&str>,
    ) -> Result<Credentials> {
        let clean = |v: Option<&str>| {
            v.map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let env = |name: &str| {
            std::env::var(name)
                .ok()
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let (ak, sk, key) = (clean(access_key), clean(secret_key), clean(api_key));
        if ak.is_some() || sk.is_some() {
            let ak = ak.or_else(|| env(ENV_ACCESS_KEY));
            let sk = sk.or_else(|| env(ENV_SECRET_KEY));
            return match (ak, sk) {
                (Some(ak), Some(sk)) => Ok(Credentials::access_key(ak, sk)),
                (None, _) => Err(Error::config(format!(
                    "a SecretKey was given without an AccessKey: pass access_key or set {ENV_ACCESS_KEY}"
                ))),
                (_, None) => Err(Error::config(format!(
                    "an AccessKey was given without a SecretKey: pass secret_key or set {ENV_SECRET_KEY}"
                ))),
            };
        }
        if let Some(key) = key {
            return Ok(Credentials::api_key(key));
        }
        match (env(ENV_ACCESS_KEY), env(ENV_SECRET_KEY), env(ENV_API_KEY)) {
            (Some(ak), Some(sk), _) => Ok(Credentials::access_key(ak, sk)),
            (_, _, Some(key)) => Ok(Credentials::api_key(key)),
            (Some(_), None, None) => Err(Error::config(format!("{ENV_ACCESS_KEY} is set but {ENV_SECRET_KEY} is not"))),
            (None, Some(_), None) => Err(Error::config(format!("{ENV_SECRET_KEY} is set but {ENV_ACCESS_KEY} is not"))),
            (None, None, None) => Err(Error::config(format!(
                "no Kling credentials: set {ENV_ACCESS_KEY} and {ENV_SECRET_KEY}, or {ENV_API_KEY} (or pass them explicitly)"
            ))),
        }
    }
}

/// The base64url of `{"alg":"HS256","typ":"JWT"}`, exactly as PyJWT writes it.
const HEADER_B64: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

/// Writes `s` as a JSON string the way Python's `json.dumps` does by default
/// (`ensure_ascii=True`), so tokens match PyJWT's byte for byte.
fn push_json_string_ascii(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn signing_key(secret_key: &str) -> Result<EncodingKey> {
    EncodingKey::from_secret(secret_key.as_bytes())
        .map_err(|_| Error::config("the SecretKey cannot be used as an HS256 key"))
}

fn sign_with(key: &EncodingKey, access_key: &str, now: i64, ttl: i64) -> Result<String> {
    let mut payload = String::with_capacity(48 + access_key.len());
    payload.push_str("{\"iss\":");
    push_json_string_ascii(&mut payload, access_key);
    payload.push_str(",\"exp\":");
    payload.push_str(&(now + ttl).to_string());
    payload.push_str(",\"nbf\":");
    payload.push_str(&(now - 5).to_string());
    payload.push('}');
    let mut token = String::with_capacity(HEADER_B64.len() + payload.len() * 4 / 3 + 48);
    token.push_str(HEADER_B64);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload.as_bytes(), &mut token);
    let signature = jsonwebtoken::crypto::sign(token.as_bytes(), key, Algorithm::HS256)
        .map_err(|_| Error::new(ErrorKind::Config, "signing the token failed"))?;
    token.push('.');
    token.push_str(&signature);
    Ok(token)
}

/// Signs a Kling JWT: HS256, `iss` = AccessKey, `exp` = now + ttl, `nbf` = now − 5.
///
/// The header and payload are serialised exactly as the official PyJWT sample does, so the
/// token is byte-for-byte reproducible across languages.
pub fn sign_jwt(access_key: &str, secret_key: &str, now: i64, ttl: i64) -> Result<String> {
    if access_key.is_empty() {
        return Err(Error::config("the AccessKey is empty"));
    }
    if secret_key.is_empty() {
        return Err(Error::config("the SecretKey is empty"));
    }
    sign_with(&signing_key(secret_key)?, access_key, now, ttl)
}

/// A source of the current Unix time in seconds (injectable for tests).
pub trait Clock: Send + Sync + 'static {
    /// Seconds since the Unix epoch.
    fn now_unix(&self) -> i64;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }
}

/// A clock that tests move by hand.
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

impl ManualClock {
    /// A clock reading `now`.
    pub fn new(now: i64) -> ManualClock {
        ManualClock(std::sync::atomic::AtomicI64::new(now))
    }
    /// Sets the time.
    pub fn set(&self, now: i64) {
        self.0.store(now, Ordering::SeqCst);
    }
    /// Moves the time forward.
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_unix(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl Clock for Arc<ManualClock> {
    fn now_unix(&self) -> i64 {
        self.as_ref().now_unix()
    }
}

#[derive(Clone)]
struct Cached {
    header: HeaderValue,
    /// Unix seconds after which the token must not be used.
    refresh_after: i64,
    generation: u64,
}

/// Produces the `Authorization` header: a cached JWT re-signed shortly before expiry
/// (single-flight under concurrency), or the static API key.
pub struct TokenProvider {
    mode: Mode,
    clock: Arc<dyn Clock>,
    ttl: i64,
    margin: i64,
    cache: RwLock<Option<Cached>>,
    refresh: Mutex<()>,
    signatures: AtomicU64,
}

enum Mode {
    Jwt {
        access_key: String,
        key: EncodingKey,
    },
    Static(HeaderValue),
}

impl fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TokenProvider");
        match &self.mode {
            Mode::Jwt { access_key, .. } => d.field("access_key", access_key),
            Mode::Static(_) => d.field("api_key", &"***"),
        };
        d.field("ttl", &self.ttl)
            .field("margin", &self.margin)
            .finish()
    }
}

fn bearer(token: &str) -> Result<HeaderValue> {
    let mut v = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        Error::config("the credential contains characters not allowed in an HTTP header")
    })?;
    v.set_sensitive(true);
    Ok(v)
}

impl TokenProvider {
    /// A provider for `credentials`, with token lifetime `ttl_secs` and re-sign `margin`.
    pub fn new(
        credentials: &Credentials,
        clock: Arc<dyn Clock>,
        ttl_secs: i64,
        margin: Duration,
    ) -> Result<TokenProvider> {
        if ttl_secs <= 0 {
            return Err(Error::config("the token lifetime must be positive"));
        }
        let margin = margin.as_secs() as i64;
        if margin >= ttl_secs {
            return Err(Error::config(
                "the token refresh margin must be shorter than its lifetime",
            ));
        }
        let mode = match credentials {
            Credentials::AccessKey {
                access_key,
                secret_key,
            } => {
                if access_key.is_empty() || secret_key.expose().is_empty() {
                    return Err(Error::config(
                        "AccessKey and SecretKey must both be non-empty",
                    ));
                }
                Mode::Jwt {
                    access_key: access_key.clone(),
                    key: signing_key(secret_key.expose())?,
                }
            }
            Credentials::ApiKey(key) => {
                if key.expose().is_empty() {
                    return Err(Error::config("the API key is empty"));
                }
                Mode::Static(bearer(key.expose())?)
            }
        };
        Ok(TokenProvider {
            mode,
            clock,
            ttl: ttl_secs,
            margin,
            cache: RwLock::new(None),
            refresh: Mutex::new(()),
            signatures: AtomicU64::new(0),
        })
    }

    fn fresh(&self, now: i64) -> Option<Cached> {
        let guard = self.cache.read().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().filter(|c| now < c.refresh_after).cloned()
    }

    /// The `Authorization` header value and its generation (used to re-sign once after a 401).
    pub(crate) fn authorization(&self) -> Result<(HeaderValue, u64)> {
        let Mode::Jwt { access_key, key } = &self.mode else {
            let Mode::Static(h) = &self.mode else {
                unreachable!()
            };
            return Ok((h.clone(), 0));
        };
        let now = self.clock.now_unix();
        if let Some(c) = self.fresh(now) {
            return Ok((c.header, c.generation));
        }
        // Single flight: one caller signs, the others wait on the lock and reuse its token.
        let _guard = self.refresh.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.clock.now_unix();
        if let Some(c) = self.fresh(now) {
            return Ok((c.header, c.generation));
        }
        let token = sign_with(key, access_key, now, self.ttl)?;
        let generation = self.signatures.fetch_add(1, Ordering::SeqCst) + 1;
        let cached = Cached {
            header: bearer(&token)?,
            refresh_after: now + self.ttl - self.margin,
            generation,
        };
        *self.cache.write().unwrap_or_else(|p| p.into_inner()) = Some(cached.clone());
        tracing::debug!(generation, "signed a new Kling token");
        Ok((cached.header, generation))
    }

    /// The current bearer token (signing one if needed).
    pub fn token(&self) -> Result<String> {
        let (h, _) = self.authorization()?;
        let s = h
            .to_str()
            .map_err(|_| Error::config("token is not ASCII"))?;
        Ok(s.strip_prefix("Bearer ").unwrap_or(s).to_owned())
    }

    /// Drops the cached token if it is still generation `generation` (after a 1003/1004),
    /// so concurrent rejections cause one re-sign, not many. Returns false for API keys,
    /// which cannot be re-signed.
    pub(crate) fn invalidate(&self, generation: u64) -> bool {
        if matches!(self.mode, Mode::Static(_)) {
            return false;
        }
        let mut guard = self.cache.write().unwrap_or_else(|p| p.into_inner());
        if guard.as_ref().is_some_and(|c| c.generation == generation) {
            *guard = None;
        }
        true
    }

    /// How many tokens this provider has signed (for tests and metrics).
    pub fn signatures(&self) -> u64 {
        self.signatures.load(Ordering::SeqCst)
    }

    /// The AccessKey, when JWT credentials are used.
    pub fn access_key(&self) -> Option<&str> {
        match &self.mode {
            Mode::Jwt { access_key, .. } => Some(access_key),
            Mode::Static(_) => None,
        }
    }
}
