//! The unauthenticated control API under the reserved prefix `/__mock`: health, reset,
//! run-time config, clock offset, fault injection, the request log, task seeding and status
//! changes, and the result files that task URLs point at.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::app::{Runtime, Shared};
use crate::callbacks;
use crate::faults::FaultSpec;
use crate::files;
use crate::http::{self, json_value, Resp};
use crate::kinds::TaskKind;
use crate::state::{Fixed, InsertError, Outcome, Task};

fn err(status: StatusCode, msg: impl Into<String>) -> Resp {
    json_value(status, &json!({ "error": msg.into() }))
}

fn ok(v: Value) -> Resp {
    json_value(StatusCode::OK, &v)
}

async fn body_json<T: for<'de> Deserialize<'de>>(req: Request<Incoming>) -> Result<T, Resp> {
    let bytes = Limited::new(req.into_body(), 1024 * 1024)
        .collect()
        .await
        .map_err(|_| err(StatusCode::BAD_REQUEST, "body unreadable or too large"))?
        .to_bytes();
    let bytes: &[u8] = if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        b"{}"
    } else {
        &bytes
    };
    serde_json::from_slice(bytes)
        .map_err(|e| err(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

/// Handle one `/__mock/...` request.
pub(crate) async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Resp {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let rest = path
        .strip_prefix("/__mock")
        .unwrap_or("")
        .trim_end_matches('/')
        .to_string();
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    tracing::debug!(target: "klingwatch_mock::control", method = %method, path = %path);
    let r = match (&method, segs.as_slice()) {
        (&Method::GET, ["health"]) => Ok(ok(json!({"ok": true}))),
        (&Method::GET, ["stats"]) => Ok(ok(json!({
            "connections": shared.connections.load(std::sync::atomic::Ordering::Relaxed),
            "open_connections": shared.open_connections.load(std::sync::atomic::Ordering::Relaxed),
            "open_api_connections": shared.open_api_connections.load(std::sync::atomic::Ordering::Relaxed),
            "api_connections": shared.api_connections.load(std::sync::atomic::Ordering::Relaxed)
        }))),
        (&Method::POST, ["reset"]) => {
            shared.reset();
            Ok(ok(json!({"ok": true})))
        }
        (&Method::GET, ["config"]) => Ok(ok(config_json(&shared))),
        (&Method::POST, ["config"]) => set_config(&shared, req).await,
        (&Method::GET, ["clock"]) => Ok(ok(clock_json(&shared))),
        (&Method::POST, ["clock"]) => set_clock(&shared, req).await,
        (&Method::GET, ["faults"]) => Ok(ok(shared.faults.list())),
        (&Method::POST, ["faults"]) => match body_json::<FaultSpec>(req).await {
            Ok(spec) => {
                if let Some(p) = spec.probability {
                    if !(0.0..=1.0).contains(&p) {
                        return err(StatusCode::BAD_REQUEST, "probability must be in [0, 1]");
                    }
                }
                Ok(ok(json!({"id": shared.faults.add(spec)})))
            }
            Err(r) => Err(r),
        },
        (&Method::DELETE, ["faults"]) => {
            shared.faults.clear();
            Ok(ok(json!({"ok": true})))
        }
        (&Method::GET, ["requests"]) => Ok(ok(shared.log.to_json())),
        (&Method::DELETE, ["requests"]) => {
            shared.log.clear();
            Ok(ok(json!({"ok": true})))
        }
        (&Method::POST, ["tasks"]) => seed_task(&shared, req).await,
        (&Method::GET, ["tasks", id]) => {
            let id = http::percent_decode(id);
            let store = shared.store();
            match store.get_global(&id) {
                Some(t) => Ok(ok(t.render(shared.now_ms(), &shared.base_url))),
                None => Err(err(StatusCode::NOT_FOUND, format!("no task {id}"))),
            }
        }
        (&Method::POST, ["tasks", id, "status"]) => {
            let id = http::percent_decode(id);
            set_status(&shared, &id, req).await
        }
        (&Method::GET | &Method::HEAD, ["files", task_id, name]) => Ok(file(task_id, name)),
        _ => Err(err(
            StatusCode::NOT_FOUND,
            format!("unknown control route {method} {path}"),
        )),
    };
    r.unwrap_or_else(|e| e)
}

fn config_json(shared: &Shared) -> Value {
    let rt = shared.runtime();
    json!({
        "processing_after_ms": rt.timing.processing_after.as_millis() as u64,
        "finish_after_ms": rt.timing.finish_after.as_millis() as u64,
        "time_scale": rt.timing.time_scale,
        "concurrency_limit": rt.concurrency_limit,
    })
}

fn clock_json(shared: &Shared) -> Value {
    let off = shared.clock_offset_ms();
    json!({ "offset_secs": off.div_euclid(1000), "offset_ms": off, "now_ms": shared.now_ms() })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigBody {
    processing_after_ms: Option<u64>,
    finish_after_ms: Option<u64>,
    time_scale: Option<f64>,
    concurrency_limit: Option<usize>,
}

async fn set_config(shared: &Shared, req: Request<Incoming>) -> Result<Resp, Resp> {
    let b: ConfigBody = body_json(req).await?;
    let mut rt: Runtime = shared.runtime();
    if let Some(v) = b.processing_after_ms {
        rt.timing.processing_after = Duration::from_millis(v);
    }
    if let Some(v) = b.finish_after_ms {
        rt.timing.finish_after = Duration::from_millis(v);
    }
    if let Some(v) = b.time_scale {
        if !v.is_finite() || v < 0.0 {
            return Err(err(
                StatusCode::BAD_REQUEST,
                "time_scale must be a finite number >= 0",
            ));
        }
        rt.timing.time_scale = v;
    }
    if let Some(v) = b.concurrency_limit {
        rt.concurrency_limit = v;
    }
    shared.set_runtime(rt);
    Ok(ok(config_json(shared)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockBody {
    offset_secs: Option<i64>,
    offset_ms: Option<i64>,
}

async fn set_clock(shared: &Shared, req: Request<Incoming>) -> Result<Resp, Resp> {
    let b: ClockBody = body_json(req).await?;
    let ms = match (b.offset_ms, b.offset_secs) {
        (Some(ms), _) => ms,
        (None, Some(s)) => s.saturating_mul(1000),
        (None, None) => return Err(err(StatusCode::BAD_REQUEST, "offset_secs is required")),
    };
    shared.set_clock_offset_ms(ms);
    Ok(ok(clock_json(shared)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedBody {
    kind: Option<String>,
    task_id: Option<String>,
    status: Option<String>,
    status_msg: Option<String>,
    external_task_id: Option<String>,
    n: Option<u32>,
    access_key: Option<String>,
    api_key: Option<String>,
    callback_url: Option<String>,
    watermark: Option<bool>,
    duration: Option<String>,
    created_at: Option<i64>,
    extra: Option<serde_json::Map<String, serde_json::Value>>,
}

async fn seed_task(shared: &Shared, req: Request<Incoming>) -> Result<Resp, Resp> {
    let b: SeedBody = body_json(req).await?;
    let kind = match b.kind.as_deref() {
        None => TaskKind::ImageGeneration,
        Some(k) => TaskKind::parse(k)
            .ok_or_else(|| err(StatusCode::BAD_REQUEST, format!("unknown kind {k:?}")))?,
    };
    let identity = match (&b.access_key, &b.api_key) {
        (Some(ak), _) => shared.auth.account_identity(ak).ok_or_else(|| {
            err(
                StatusCode::BAD_REQUEST,
                format!("unknown access_key {ak:?}"),
            )
        })?,
        (None, Some(key)) => shared
            .auth
            .api_key_identity(key)
            .ok_or_else(|| err(StatusCode::BAD_REQUEST, "unknown api_key"))?,
        (None, None) => shared
            .default_identity
            .clone()
            .ok_or_else(|| err(StatusCode::BAD_REQUEST, "no account configured"))?,
    };
    if let Some(name) = b
        .extra
        .iter()
        .flat_map(|m| m.keys())
        .find(|k| crate::state::RENDERED_FIELDS.contains(&k.as_str()))
    {
        return Err(err(
            StatusCode::BAD_REQUEST,
            format!("extra field {name:?} is one the emulator renders itself: extra adds fields, it does not replace them"),
        ));
    }
    let now = shared.now_ms();
    let created_at = b.created_at.unwrap_or(now);
    let n = b.n.unwrap_or(1).clamp(1, 9);
    let mut store = shared.store_mut();
    let id = match b.task_id {
        Some(id) if !id.is_empty() => id,
        _ => store.new_task_id(),
    };
    let task = Task {
        id,
        kind,
        external_id: b.external_task_id.filter(|e| !e.is_empty()),
        created_at,
        processing_at: created_at,
        finish_at: created_at,
        outcome: Outcome::Succeed,
        fixed: Some(Fixed {
            status: b.status.unwrap_or_else(|| "submitted".to_string()),
            msg: b.status_msg.unwrap_or_default(),
            updated_at: now.max(created_at),
        }),
        n,
        duration: b.duration.unwrap_or_else(|| "5".to_string()),
        watermark: b.watermark.unwrap_or(false),
        callback_url: b.callback_url.filter(|c| !c.is_empty()),
        extra: b.extra,
    };
    match store.insert(&identity, task, now, None) {
        Ok(t) => Ok(ok(t.render(now, &shared.base_url))),
        Err(InsertError::DuplicateExternalId(e)) => Err(err(
            StatusCode::BAD_REQUEST,
            format!("external_task_id {e:?} already exists"),
        )),
        Err(InsertError::DuplicateTaskId(e)) => Err(err(
            StatusCode::BAD_REQUEST,
            format!("task_id {e:?} already exists"),
        )),
        Err(InsertError::ConcurrencyLimit) => {
            Err(err(StatusCode::TOO_MANY_REQUESTS, "concurrency limit"))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusBody {
    status: String,
    status_msg: Option<String>,
}

async fn set_status(shared: &Arc<Shared>, id: &str, req: Request<Incoming>) -> Result<Resp, Resp> {
    let b: StatusBody = body_json(req).await?;
    let now = shared.now_ms();
    let (value, has_callback) = {
        let mut store = shared.store_mut();
        let t = store
            .get_global_mut(id)
            .ok_or_else(|| err(StatusCode::NOT_FOUND, format!("no task {id}")))?;
        t.fixed = Some(Fixed {
            status: b.status,
            msg: b.status_msg.unwrap_or_default(),
            updated_at: now,
        });
        (t.render(now, &shared.base_url), t.callback_url.is_some())
    };
    if has_callback {
        callbacks::deliver_current(shared.clone(), id.to_string());
    }
    Ok(ok(value))
}

fn file(task_id: &str, name: &str) -> Resp {
    let valid_id = !task_id.is_empty()
        && task_id.len() <= 128
        && task_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
    let index = stem.strip_suffix("_wm").unwrap_or(stem);
    if !valid_id
        || index.is_empty()
        || !index.bytes().all(|b| b.is_ascii_digit())
        || index.len() > 3
    {
        return err(StatusCode::NOT_FOUND, "no such file");
    }
    match ext {
        "png" => http::raw(
            StatusCode::OK,
            Some("image/png"),
            files::png(&format!("{task_id}/{stem}")),
        ),
        "mp4" => http::raw(StatusCode::OK, Some("video/mp4"), files::mp4()),
        _ => err(StatusCode::NOT_FOUND, "no such file"),
    }
}
