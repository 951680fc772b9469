//! Request authentication exactly as the Kling API does it: `Authorization: Bearer <token>`
//! where the token is either a configured API key or an HS256 JWT signed with the SecretKey of
//! the account named by its `iss` claim.
//!
//! Error codes: 1001 empty header, 1002 malformed header or token, 1000 unknown key or bad
//! signature, 1003 `nbf` in the future, 1004 `exp` passed (zero leeway, emulator clock).
//! Verified tokens are cached (bounded) so that the hot path does not re-run HMAC, but `exp` and
//! `nbf` are checked on every request.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Account;

/// Who a request belongs to: tasks are namespaced by identity (`ak:<AccessKey>` or
/// `key:<n>` for the n-th API key, so the key itself is never stored in task state or logs).
pub(crate) type Identity = Arc<str>;

/// Maximum number of cached verified tokens before the cache is flushed.
const CACHE_MAX: usize = 8192;

#[derive(Clone)]
struct Cached {
    identity: Identity,
    exp: Option<f64>,
    nbf: Option<f64>,
}

/// The authenticator (immutable account set plus a verification cache).
pub(crate) struct Authenticator {
    accounts: HashMap<String, (Vec<u8>, Identity)>,
    api_keys: HashMap<String, Identity>,
    cache: RwLock<HashMap<Box<str>, Cached>>,
}

/// Identity of an account by AccessKey.
pub(crate) fn ak_identity(ak: &str) -> Identity {
    Arc::from(format!("ak:{ak}"))
}

impl Authenticator {
    pub(crate) fn new(accounts: &[Account], api_keys: &[String]) -> Self {
        let accounts = accounts
            .iter()
            .map(|a| {
                (
                    a.access_key.clone(),
                    (a.secret_key.as_bytes().to_vec(), ak_identity(&a.access_key)),
                )
            })
            .collect();
        let api_keys = api_keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), Arc::from(format!("key:{i}"))))
            .collect();
        Authenticator {
            accounts,
            api_keys,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// Identity of a configured AccessKey, if any.
    pub(crate) fn account_identity(&self, ak: &str) -> Option<Identity> {
        self.accounts.get(ak).map(|(_, id)| id.clone())
    }

    /// Identity of a configured API key, if any.
    pub(crate) fn api_key_identity(&self, key: &str) -> Option<Identity> {
        self.api_keys.get(key).cloned()
    }

    /// Forget cached verifications.
    pub(crate) fn clear_cache(&self) {
        if let Ok(mut c) = self.cache.write() {
            c.clear();
        }
    }

    /// Authenticate an `Authorization` header value at emulator time `now` (Unix seconds).
    /// Returns the identity or the Kling error code.
    pub(crate) fn check(&self, header: Option<&[u8]>, now: f64) -> Result<Identity, i64> {
        let raw = match header {
            None => return Err(1001),
            Some(h) => h,
        };
        let value = match std::str::from_utf8(raw) {
            Ok(v) => v,
            Err(_) => return Err(1002),
        };
        if value.trim().is_empty() {
            return Err(1001);
        }
        let token = match value.strip_prefix("Bearer ") {
            Some(t) => t,
            None => {
                return Err(if value.trim() == "Bearer" { 1001 } else { 1002 });
            }
        };
        if token.is_empty() {
            return Err(1001);
        }
        if let Some(id) = self.api_keys.get(token) {
            return Ok(id.clone());
        }
        // Cached verification?
        let hit = self.cache.read().ok().and_then(|c| c.get(token).cloned());
        let cached = match hit {
            Some(c) => c,
            None => {
                let c = self.verify_jwt(token)?;
                if let Ok(mut cache) = self.cache.write() {
                    if cache.len() >= CACHE_MAX {
                        cache.clear();
                    }
                    cache.insert(token.into(), c.clone());
                }
                c
            }
        };
        if let Some(nbf) = cached.nbf {
            if nbf > now {
                return Err(1003);
            }
        }
        if let Some(exp) = cached.exp {
            if exp <= now {
                return Err(1004);
            }
        }
        Ok(cached.identity)
    }

    /// Decode and verify an HS256 JWT (signature and issuer only; times are checked by caller).
    fn verify_jwt(&self, token: &str) -> Result<Cached, i64> {
        let mut parts = token.split('.');
        let (h, p, s) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(h), Some(p), Some(s), None) => (h, p, s),
            _ => return Err(1002),
        };
        let header = decode_json(h).ok_or(1002)?;
        if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
            return Err(1002);
        }
        let payload = decode_json(p).ok_or(1002)?;
        let iss = payload.get("iss").and_then(|v| v.as_str()).ok_or(1002)?;
        let exp = opt_number(&payload, "exp")?;
        let nbf = opt_number(&payload, "nbf")?;
        let sig = URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .map_err(|_| 1002)?;
        let (secret, identity) = self.accounts.get(iss).ok_or(1000)?;
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| 1000)?;
        mac.update(h.as_bytes());
        mac.update(b".");
        mac.update(p.as_bytes());
        mac.verify_slice(&sig).map_err(|_| 1000)?;
        Ok(Cached {
            identity: identity.clone(),
            exp,
            nbf,
        })
    }
}

fn decode_json(part: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    match serde_json::from_slice::<serde_json::Value>(&bytes).ok()? {
        serde_json::Value::Object(m) => Some(m),
        _ => None,
    }
}

fn opt_number(
    m: &serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Result<Option<f64>, i64> {
    match m.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or(1002),
    }
}

/// Short label of an auth outcome for the request log and tracing.
pub(crate) fn outcome_label(r: &Result<Identity, i64>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(1000) => "1000",
        Err(1001) => "1001",
        Err(1002) => "1002",
        Err(1003) => "1003",
        Err(1004) => "1004",
        Err(_) => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Authenticator {
        Authenticator::new(
            &[Account::new("AK_TEST_0001", "SK_TEST_SECRET_0001")],
            &["the-key".to_string()],
        )
    }

    const TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJBS19URVNUXzAwMDEiLCJleHAiOjE3NjQwMDE4MDAsIm5iZiI6MTc2Mzk5OTk5NX0.Zr9eDbjttO7sSegVhE8x139cERIGg_VwhjhD10tnda0";

    #[test]
    fn codes() {
        let a = auth();
        let hv = format!("Bearer {TOKEN}");
        assert!(a.check(Some(hv.as_bytes()), 1764000000.0).is_ok());
        assert_eq!(
            a.check(Some(hv.as_bytes()), 1764001800.0).unwrap_err(),
            1004
        );
        assert_eq!(
            a.check(Some(hv.as_bytes()), 1763999990.0).unwrap_err(),
            1003
        );
        assert_eq!(a.check(None, 0.0).unwrap_err(), 1001);
        assert_eq!(a.check(Some(b""), 0.0).unwrap_err(), 1001);
        assert_eq!(a.check(Some(b"Basic x"), 0.0).unwrap_err(), 1002);
        assert_eq!(a.check(Some(b"Bearer abc"), 0.0).unwrap_err(), 1002);
        assert!(a.check(Some(b"Bearer the-key"), 0.0).is_ok());
        let i = TOKEN.len() - 10;
        let flipped = if &TOKEN[i..i + 1] == "A" { "B" } else { "A" };
        let bad = format!("Bearer {}{}{}", &TOKEN[..i], flipped, &TOKEN[i + 1..]);
        assert_eq!(
            a.check(Some(bad.as_bytes()), 1764000000.0).unwrap_err(),
            1000
        );
    }
}
