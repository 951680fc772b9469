//! Callbacks: parsing the task object the server POSTs, and Standard Webhooks signatures.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Error, ErrorKind, Result};
use crate::task::{Task, TaskKind};

/// Default tolerance between `webhook-timestamp` and now.
pub const DEFAULT_WEBHOOK_TOLERANCE: Duration = Duration::from_secs(300);

/// Parses a callback body (the bare task object, kling-api.md §7) as an image task.
///
/// Callbacks can arrive repeated and out of order: keep the one with the newest
/// `updated_at` (see [`Task::is_superseded_by`]).
pub fn parse_callback(body: &[u8]) -> Result<Task> {
    parse_callback_as(TaskKind::ImageGeneration, body)
}

/// Parses a callback body for a task of `kind`. The legacy payload is the task object;
/// a body wrapped in the `{code, data}` envelope is accepted too.
pub fn parse_callback_as(kind: TaskKind, body: &[u8]) -> Result<Task> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        Error::new(
            ErrorKind::Decode,
            format!("callback body is not valid JSON: {e}"),
        )
    })?;
    let value = match value {
        serde_json::Value::Object(mut map)
            if !map.contains_key("task_id") && map.get("data").is_some_and(|d| d.is_object()) =>
        {
            map.remove("data").unwrap_or_default()
        }
        other => other,
    };
    Task::from_value(kind, value)
}

fn signature_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Signature, message)
}

fn header<'a>(headers: &[(&'a str, &'a str)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

/// Computes the `v1,<base64>` signature of the Standard Webhooks scheme.
pub fn sign_webhook(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String> {
    let mac = webhook_mac(secret, id, timestamp, body)?;
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

fn webhook_mac(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<Hmac<Sha256>> {
    let key_b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = STANDARD.decode(key_b64.trim()).map_err(|_| {
        Error::config("the webhook secret is not valid base64 (expected \"whsec_<base64>\")")
    })?;
    if key.is_empty() {
        return Err(Error::config("the webhook secret is empty"));
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(&key)
        .map_err(|_| Error::config("unusable webhook secret"))?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(mac)
}

/// Verifies a Standard Webhooks signature against the current time.
///
/// `headers` are (name, value) pairs, names case-insensitive: `webhook-id`,
/// `webhook-timestamp` (Unix seconds, within `tolerance` of now) and `webhook-signature`
/// (space-separated `v1,<base64>` entries; any one matching suffices). Comparison is
/// constant-time. Any failure is a `signature` error.
pub fn verify_webhook(
    secret: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    tolerance: Duration,
) -> Result<()> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    verify_webhook_at(secret, headers, body, tolerance, now)
}

/// [`verify_webhook`] at a given time (Unix seconds).
pub fn verify_webhook_at(
    secret: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    tolerance: Duration,
    now: i64,
) -> Result<()> {
    let id = header(headers, "webhook-id")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| signature_error("missing webhook-id header"))?;
    let ts_text = header(headers, "webhook-timestamp")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| signature_error("missing webhook-timestamp header"))?;
    let signatures = header(headers, "webhook-signature")
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| signature_error("missing webhook-signature header"))?;
    let ts: i64 = ts_text
        .trim()
        .parse()
        .map_err(|_| signature_error("webhook-timestamp is not a Unix time"))?;
    let skew = (now - ts).unsigned_abs();
    if skew > tolerance.as_secs() {
        let which = if ts > now { "in the future" } else { "too old" };
        return Err(signature_error(format!(
            "webhook-timestamp is {which} ({skew}s from now; tolerance {}s)",
            tolerance.as_secs()
        )));
    }
    let mac = webhook_mac(secret, id, ts, body)?;
    for candidate in signatures.split(' ').filter(|s| !s.is_empty()) {
        let Some(b64) = candidate.strip_prefix("v1,") else {
            continue;
        };
        let Ok(sig) = STANDARD.decode(b64) else {
            continue;
        };
        if mac.clone().verify_slice(&sig).is_ok() {
            return Ok(());
        }
    }
    Err(signature_error("no webhook signature matches"))
}
