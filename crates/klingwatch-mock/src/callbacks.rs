//! Task callbacks: the task object is POSTed to the task's `callback_url` on every status
//! change, signed with the Standard Webhooks scheme (kling-api.md §7) when a webhook secret is
//! configured. Delivery is best effort (no retries), plain HTTP only.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rand::Rng;
use sha2::Sha256;

use crate::app::Shared;

/// Standard Webhooks signature header value for a payload: `v1,<base64 HMAC-SHA256>` of
/// `"{id}.{ts}.{body}"`, keyed with `base64decode(secret without "whsec_")`. A secret whose
/// remainder is not valid base64 is used as raw bytes.
pub fn sign_webhook(secret: &str, id: &str, ts: i64, body: &[u8]) -> String {
    let raw = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = STANDARD
        .decode(raw)
        .unwrap_or_else(|_| raw.as_bytes().to_vec());
    let mut mac = match Hmac::<Sha256>::new_from_slice(&key) {
        Ok(m) => m,
        Err(_) => return String::new(), // unreachable: HMAC accepts any key length
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(ts.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// HTTP client used for deliveries.
pub(crate) struct CallbackClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl CallbackClient {
    pub(crate) fn new() -> Self {
        CallbackClient {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }
}

/// POST one body to `url` (signed when configured); failures are logged, never retried.
pub(crate) async fn deliver(shared: &Shared, url: &str, body: Vec<u8>) {
    let uri: Uri = match url.parse() {
        Ok(u) => u,
        Err(_) => {
            tracing::warn!(url, "callback_url is not a valid URL; callback skipped");
            return;
        }
    };
    if uri.scheme_str() != Some("http") {
        tracing::warn!(
            url,
            "only http:// callback URLs are supported; callback skipped"
        );
        return;
    }
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(USER_AGENT, HeaderValue::from_static("klingwatch-mock"));
    if let Some(secret) = &shared.webhook_secret {
        let id = format!("msg_{:032x}", rand::rng().random::<u128>());
        let ts = shared.now_ms().div_euclid(1000);
        let sig = sign_webhook(secret, &id, ts, &body);
        req = req
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig);
    }
    let req = match req.body(Full::new(Bytes::from(body))) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "could not build callback request");
            return;
        }
    };
    let fut = shared.callbacks.client.request(req);
    match tokio::time::timeout(Duration::from_secs(10), fut).await {
        Ok(Ok(resp)) => {
            tracing::debug!(url, status = resp.status().as_u16(), "callback delivered")
        }
        Ok(Err(e)) => tracing::warn!(url, error = %e, "callback delivery failed"),
        Err(_) => tracing::warn!(url, "callback delivery timed out"),
    }
}

/// Render the task as it is now and deliver it once (control API status changes).
pub(crate) fn deliver_current(shared: Arc<Shared>, task_id: String) {
    let (url, body) = {
        let store = shared.store();
        let Some(task) = store.get_global(&task_id) else {
            return;
        };
        let Some(url) = task.callback_url.clone() else {
            return;
        };
        let body = serde_json::to_vec(&task.render(shared.now_ms(), &shared.base_url));
        (url, body.unwrap_or_default())
    };
    tokio::spawn(async move {
        deliver(&shared, &url, body).await;
    });
}

/// Follow a created task through its lifecycle and deliver one callback per status change.
pub(crate) fn spawn_lifecycle(shared: Arc<Shared>, task_id: String) {
    let generation = shared.generation.load(Ordering::SeqCst);
    tokio::spawn(async move {
        let mut last_status = String::new();
        for stage in 0..3 {
            // When does this stage start (emulator ms)?
            let at = {
                let store = shared.store();
                let Some(t) = store.get_global(&task_id) else {
                    return;
                };
                match stage {
                    0 => t.created_at,
                    1 => t.processing_at,
                    _ => t.finish_at,
                }
            };
            // Sleep until the emulator clock reaches it (re-checking: the clock may move).
            loop {
                let wait = at - shared.now_ms();
                if wait <= 0 {
                    break;
                }
                let d = Duration::from_millis(wait.min(1000) as u64);
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = shared.cancel.cancelled() => return,
                }
            }
            if shared.cancel.is_cancelled()
                || shared.generation.load(Ordering::SeqCst) != generation
            {
                return;
            }
            let (url, status, body) = {
                let store = shared.store();
                let Some(t) = store.get_global(&task_id) else {
                    return;
                };
                if t.fixed.is_some() {
                    return; // the control API took over; it delivers its own callbacks
                }
                let Some(url) = t.callback_url.clone() else {
                    return;
                };
                let v = t.render(at, &shared.base_url);
                let status = v["task_status"].as_str().unwrap_or("").to_string();
                (url, status, serde_json::to_vec(&v).unwrap_or_default())
            };
            if status == last_status {
                continue;
            }
            last_status = status;
            deliver(&shared, &url, body).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_vector() {
        let body = br#"{"id":"1234567890","status":"succeeded","message":"","create_time":1781080778802,"update_time":1781080794151}"#;
        assert_eq!(
            sign_webhook(
                "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI=",
                "9876543210",
                1781080794,
                body
            ),
            "v1,UsKlJP00XoQyOn410NM9xv34sP+Gl0jnOO9Lcpr7NJ4="
        );
    }
}
