//! Scriptable fault injection for `/v1` routes: error envelopes, rate limits, gateway pages,
//! empty, malformed and truncated bodies, delays and dropped connections.
//!
//! Faults are checked in insertion order before authentication; the first active one whose
//! matcher (and optional seeded probability) accepts the request fires and its remaining count
//! decrements (`times: 0` = unlimited).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::{Method, StatusCode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::http::{self, MockBody, Resp};

/// The kinds of injectable faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FaultKind {
    /// JSON error envelope (`http_status` + `code` + `message`; defaults 500/5000).
    #[serde(rename = "error")]
    Error,
    /// 429 with code 1302 (default) and an optional `Retry-After`.
    #[serde(rename = "rate_limit")]
    RateLimit,
    /// A gateway's HTML 502 page.
    #[serde(rename = "html_502")]
    Html502,
    /// No body at all (default status 504).
    #[serde(rename = "empty_body")]
    EmptyBody,
    /// HTTP 200 with a JSON body cut short (`{"code":0,"message":"SUCCEED","data":{`).
    #[serde(rename = "malformed_json")]
    MalformedJson,
    /// HTTP 200 with a Content-Length larger than the bytes sent, then the connection closes.
    #[serde(rename = "truncated_body")]
    TruncatedBody,
    /// Sleep `delay_ms`, then serve the request normally.
    #[serde(rename = "delay")]
    Delay,
    /// Close the connection without any HTTP response.
    #[serde(rename = "drop_connection")]
    DropConnection,
    /// HTTP 200 with an envelope whose `code` is not 0 (default 5000) and no data.
    #[serde(rename = "ok_with_code")]
    OkWithCode,
}

impl FaultKind {
    /// The wire name (`"rate_limit"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Error => "error",
            FaultKind::RateLimit => "rate_limit",
            FaultKind::Html502 => "html_502",
            FaultKind::EmptyBody => "empty_body",
            FaultKind::MalformedJson => "malformed_json",
            FaultKind::TruncatedBody => "truncated_body",
            FaultKind::Delay => "delay",
            FaultKind::DropConnection => "drop_connection",
            FaultKind::OkWithCode => "ok_with_code",
        }
    }
}

/// Which requests a fault applies to (all given conditions must hold).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultMatch {
    /// HTTP method (`GET`, `POST`), case-insensitive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Path prefix, e.g. `/v1/images/generations`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Matches requests whose path ends with `/{task_id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
}

impl FaultMatch {
    fn accepts(&self, method: &Method, path: &str) -> bool {
        if let Some(m) = &self.method {
            if !m.eq_ignore_ascii_case(method.as_str()) {
                return false;
            }
        }
        if let Some(p) = &self.path_prefix {
            if !path.starts_with(p.as_str()) {
                return false;
            }
        }
        if let Some(t) = &self.task_id {
            let ok = path.len() > t.len()
                && path.ends_with(t.as_str())
                && path.as_bytes()[path.len() - t.len() - 1] == b'/';
            if !ok {
                return false;
            }
        }
        true
    }
}

fn one() -> u64 {
    1
}

fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(serde::de::Error::custom(format!(
            "retry_after must be a string or a number, got {other}"
        ))),
    }
}

/// One fault as posted to `POST /__mock/faults` (or listed in the config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// What to do.
    pub fault: FaultKind,
    /// How many times it fires (default 1; 0 = unlimited).
    #[serde(default = "one")]
    pub times: u64,
    /// Probability of firing on a matching request (seeded RNG); absent = always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// Which requests it applies to.
    #[serde(default, rename = "match")]
    pub matcher: FaultMatch,
    /// HTTP status override.
    #[serde(default, alias = "status", skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// Business code override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    /// Message override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `Retry-After` header value, sent verbatim (seconds or HTTP-date; a JSON number is
    /// accepted too).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "string_or_number"
    )]
    pub retry_after: Option<String>,
    /// Delay before answering (the whole point of `delay`; also honoured by other kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
}

impl FaultSpec {
    /// A fault of `kind` that fires once on any request.
    pub fn new(kind: FaultKind) -> Self {
        FaultSpec {
            fault: kind,
            times: 1,
            probability: None,
            matcher: FaultMatch::default(),
            http_status: None,
            code: None,
            message: None,
            retry_after: None,
            delay_ms: None,
        }
    }
}

struct Installed {
    id: u64,
    spec: FaultSpec,
    /// `None` = unlimited.
    remaining: Option<u64>,
    fired: u64,
}

struct Inner {
    next_id: u64,
    list: Vec<Installed>,
    rng: StdRng,
}

/// The registry of installed faults.
pub(crate) struct Faults {
    inner: Mutex<Inner>,
    /// Number of active faults (lock-free fast path when zero).
    active: AtomicUsize,
}

impl Faults {
    pub(crate) fn new(seed: u64) -> Self {
        Faults {
            inner: Mutex::new(Inner {
                next_id: 1,
                list: Vec::new(),
                rng: StdRng::seed_from_u64(seed ^ 0x6661_756c_7473),
            }),
            active: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn recount(&self, inner: &Inner) {
        let n = inner.list.iter().filter(|f| f.remaining != Some(0)).count();
        self.active.store(n, Ordering::Release);
    }

    /// Install a fault; returns its id.
    pub(crate) fn add(&self, spec: FaultSpec) -> u64 {
        let mut g = self.lock();
        let id = g.next_id;
        g.next_id += 1;
        let remaining = if spec.times == 0 {
            None
        } else {
            Some(spec.times)
        };
        g.list.push(Installed {
            id,
            spec,
            remaining,
            fired: 0,
        });
        self.recount(&g);
        id
    }

    /// Remove every fault.
    pub(crate) fn clear(&self) {
        let mut g = self.lock();
        g.list.clear();
        self.recount(&g);
    }

    /// Reseed the probability generator (reset).
    pub(crate) fn reseed(&self, seed: u64) {
        self.lock().rng = StdRng::seed_from_u64(seed ^ 0x6661_756c_7473);
    }

    /// The installed faults with their remaining counts.
    pub(crate) fn list(&self) -> Value {
        let g = self.lock();
        let items: Vec<Value> = g
            .list
            .iter()
            .map(|f| {
                let mut v = serde_json::to_value(&f.spec).unwrap_or(Value::Null);
                if let Value::Object(m) = &mut v {
                    m.insert("id".into(), json!(f.id));
                    m.insert("remaining".into(), json!(f.remaining));
                    m.insert("unlimited".into(), json!(f.remaining.is_none()));
                    m.insert("active".into(), json!(f.remaining != Some(0)));
                    m.insert("fired".into(), json!(f.fired));
                }
                v
            })
            .collect();
        json!({ "faults": items })
    }

    /// The fault that fires for this request, if any (decrementing its count).
    pub(crate) fn pick(&self, method: &Method, path: &str) -> Option<FaultSpec> {
        if self.active.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut g = self.lock();
        let Inner { list, rng, .. } = &mut *g;
        let mut chosen = None;
        for f in list.iter_mut() {
            if f.remaining == Some(0) || !f.spec.matcher.accepts(method, path) {
                continue;
            }
            if let Some(p) = f.spec.probability {
                if rng.random::<f64>() >= p {
                    continue;
                }
            }
            if let Some(r) = &mut f.remaining {
                *r -= 1;
            }
            f.fired += 1;
            chosen = Some(f.spec.clone());
            break;
        }
        if chosen.is_some() {
            self.recount(&g);
        }
        chosen
    }
}

/// What the server does for a fired fault.
pub(crate) enum FaultAction {
    /// Answer with this response.
    Respond(Resp),
    /// Close the connection without a response.
    Drop,
    /// Serve the request normally.
    Serve,
}

fn status_or(spec: &FaultSpec, default: StatusCode) -> StatusCode {
    spec.http_status
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(default)
}

/// Build the action of a fired fault (the caller applies `delay_ms` first).
pub(crate) fn action(spec: &FaultSpec) -> FaultAction {
    let mut resp = match spec.fault {
        FaultKind::Delay => return FaultAction::Serve,
        FaultKind::DropConnection => return FaultAction::Drop,
        FaultKind::Error => {
            let code = spec.code.unwrap_or(5000);
            let default = if spec.code.is_some() {
                http::default_status(code)
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            let msg = spec
                .message
                .as_deref()
                .unwrap_or(http::default_message(code));
            http::envelope_err(status_or(spec, default), code, msg)
        }
        FaultKind::RateLimit => {
            let code = spec.code.unwrap_or(1302);
            let msg = spec
                .message
                .as_deref()
                .unwrap_or(http::default_message(code));
            http::envelope_err(status_or(spec, StatusCode::TOO_MANY_REQUESTS), code, msg)
        }
        FaultKind::OkWithCode => {
            let code = spec.code.unwrap_or(5000);
            let msg = spec
                .message
                .as_deref()
                .unwrap_or(http::default_message(code));
            http::envelope_err(status_or(spec, StatusCode::OK), code, msg)
        }
        FaultKind::Html502 => http::raw(
            status_or(spec, StatusCode::BAD_GATEWAY),
            Some("text/html"),
            &b"<html><body><h1>502 Bad Gateway</h1></body></html>"[..],
        ),
        FaultKind::EmptyBody => {
            let mut r = http::raw(status_or(spec, StatusCode::GATEWAY_TIMEOUT), None, &b""[..]);
            http::set_content_length(&mut r, 0);
            r
        }
        FaultKind::MalformedJson => http::raw(
            status_or(spec, StatusCode::OK),
            Some("application/json"),
            &b"{\"code\":0,\"message\":\"SUCCEED\",\"data\":{"[..],
        ),
        FaultKind::TruncatedBody => {
            let full = format!(
                "{{\"code\":0,\"message\":\"SUCCEED\",\"request_id\":\"{}\",\"data\":{{\"task_id\":\"000000000000000000\",\"task_status\":\"processing\",\"task_status_msg\":\"\",\"task_info\":{{}},\"task_result\":{{}}}}}}",
                http::request_id()
            );
            let half = bytes::Bytes::from(full.as_bytes()[..full.len() / 2].to_vec());
            let mut r = http::raw(
                status_or(spec, StatusCode::OK),
                Some("application/json"),
                &b""[..],
            );
            *r.body_mut() = MockBody::Truncated(Some(half), None);
            http::set_content_length(&mut r, full.len());
            r
        }
    };
    if let Some(ra) = &spec.retry_after {
        if let Ok(v) = HeaderValue::from_str(ra) {
            resp.headers_mut().insert(RETRY_AFTER, v);
        }
    }
    FaultAction::Respond(resp)
}

/// `delay_ms` of a spec as a duration.
pub(crate) fn delay(spec: &FaultSpec) -> Option<Duration> {
    spec.delay_ms.filter(|d| *d > 0).map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_match() {
        let spec: FaultSpec = serde_json::from_str(
            r#"{"fault":"html_502","times":2,"match":{"method":"get","task_id":"123"}}"#,
        )
        .unwrap();
        assert_eq!(spec.fault, FaultKind::Html502);
        let other: FaultSpec =
            serde_json::from_str(r#"{"fault":"rate_limit","retry_after":3,"status":503}"#).unwrap();
        assert_eq!(other.retry_after.as_deref(), Some("3"));
        assert_eq!(other.http_status, Some(503));
        let f = Faults::new(1);
        f.add(spec);
        assert!(f
            .pick(&Method::POST, "/v1/images/generations/123")
            .is_none());
        assert!(f
            .pick(&Method::GET, "/v1/images/generations/0123")
            .is_none());
        assert!(f.pick(&Method::GET, "/v1/images/generations/123").is_some());
        assert!(f.pick(&Method::GET, "/v1/images/generations/123").is_some());
        assert!(f.pick(&Method::GET, "/v1/images/generations/123").is_none());
    }
}
