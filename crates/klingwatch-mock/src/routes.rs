//! Request dispatch: the authenticated `/v1` task API (with fault injection, the request log
//! and access logging) and the hand-off to the `/__mock` control API.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{Method, Request, StatusCode};

use crate::app::{wall_ms, Shared};
use crate::auth::{outcome_label, Identity};
use crate::callbacks;
use crate::control;
use crate::faults::{self, FaultAction};
use crate::http::{self, default_message, envelope_err, DropConnection, ServiceResult};
use crate::kinds::TaskKind;
use crate::reqlog::Entry;
use crate::state::{failure_marker, InsertError, Outcome, Task};
use crate::validate::validate;

/// Maximum accepted request body (base64 images can be large).
pub(crate) const MAX_BODY: usize = 32 * 1024 * 1024;

/// The service entry point.
pub(crate) async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> ServiceResult {
    let path = req.uri().path();
    if path == "/v1" || path.starts_with("/v1/") {
        v1(shared, req).await
    } else if path == "/__mock" || path.starts_with("/__mock/") {
        Ok(control::handle(shared, req).await)
    } else {
        tracing::info!(
            target: "klingwatch_mock::access",
            method = %req.method(), path, status = 404u16, "unknown route"
        );
        Ok(envelope_err(
            StatusCode::NOT_FOUND,
            1202,
            default_message(1202),
        ))
    }
}

async fn v1(shared: Arc<Shared>, req: Request<Incoming>) -> ServiceResult {
    let start = Instant::now();
    let at_ms = wall_ms();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();

    let mut fault_name = None;
    if let Some(spec) = shared.faults.pick(&method, &path) {
        fault_name = Some(spec.fault.name());
        if let Some(d) = faults::delay(&spec) {
            // A client that gives up during the delay drops this future: log it as 499
            // (client closed request) so every attempt shows in the request log.
            let guard = GoneGuard {
                shared: shared.clone(),
                entry: Some((
                    method.clone(),
                    path.clone(),
                    query.clone(),
                    fault_name,
                    at_ms,
                    start,
                )),
            };
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = shared.cancel.cancelled() => {}
            }
            guard.disarm();
        }
        match faults::action(&spec) {
            FaultAction::Serve => {}
            FaultAction::Respond(resp) => {
                finish(
                    &shared,
                    method,
                    path,
                    query,
                    "skipped",
                    resp.status().as_u16(),
                    fault_name,
                    at_ms,
                    start,
                );
                return Ok(resp);
            }
            FaultAction::Drop => {
                finish(
                    &shared, method, path, query, "skipped", 0, fault_name, at_ms, start,
                );
                return Err(DropConnection);
            }
        }
    }

    let now_s = shared.now_ms() as f64 / 1000.0;
    let auth = shared.auth.check(
        req.headers().get(AUTHORIZATION).map(|h| h.as_bytes()),
        now_s,
    );
    let label = outcome_label(&auth);
    let resp = match auth {
        Err(code) => envelope_err(StatusCode::UNAUTHORIZED, code, default_message(code)),
        Ok(identity) => dispatch(&shared, identity, req, &method, &path, &query).await,
    };
    finish(
        &shared,
        method,
        path,
        query,
        label,
        resp.status().as_u16(),
        fault_name,
        at_ms,
        start,
    );
    Ok(resp)
}

type PendingEntry = (Method, String, String, Option<&'static str>, i64, Instant);

/// Logs a request whose future was dropped (the client went away) before it was answered.
struct GoneGuard {
    shared: Arc<Shared>,
    entry: Option<PendingEntry>,
}

impl GoneGuard {
    fn disarm(mut self) {
        self.entry = None;
    }
}

impl Drop for GoneGuard {
    fn drop(&mut self) {
        if let Some((method, path, query, fault, at_ms, start)) = self.entry.take() {
            finish(
                &self.shared,
                method,
                path,
                query,
                "skipped",
                499,
                fault,
                at_ms,
                start,
            );
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn finish(
    shared: &Shared,
    method: Method,
    path: String,
    query: String,
    auth: &'static str,
    status: u16,
    fault: Option<&'static str>,
    at_ms: i64,
    start: Instant,
) {
    tracing::info!(
        target: "klingwatch_mock::access",
        method = %method,
        path = %path,
        status,
        auth,
        fault = fault.unwrap_or("-"),
        latency_us = start.elapsed().as_micros() as u64,
    );
    shared.log.push(Entry {
        method: method.as_str().to_string(),
        path,
        query,
        auth,
        status,
        fault,
        at_ms,
    });
}

fn not_found_route() -> http::Resp {
    envelope_err(StatusCode::NOT_FOUND, 1202, default_message(1202))
}

fn not_found_task(id: &str) -> http::Resp {
    envelope_err(
        StatusCode::NOT_FOUND,
        1203,
        &format!("task not found: {id}"),
    )
}

fn bad_param(msg: &str) -> http::Resp {
    envelope_err(StatusCode::BAD_REQUEST, 1201, msg)
}

async fn dispatch(
    shared: &Arc<Shared>,
    identity: Identity,
    req: Request<Incoming>,
    method: &Method,
    path: &str,
    query: &str,
) -> http::Resp {
    let rest = &path[path.len().min(4)..]; // after "/v1/"
    let Some((kind, tail)) = TaskKind::match_path(rest) else {
        return not_found_route();
    };
    let id = tail.trim_start_matches('/');
    if id.is_empty() {
        match *method {
            Method::POST => create(shared, identity, kind, req).await,
            Method::GET => list(shared, &identity, kind, query),
            _ => not_found_route(),
        }
    } else {
        if id.contains('/') || *method != Method::GET {
            return not_found_route();
        }
        let id = http::percent_decode(id);
        let now = shared.now_ms();
        let store = shared.store();
        match store.get(&identity, kind, &id) {
            Some(t) => envelope_task(t, now, &shared.base_url),
            None => not_found_task(&id),
        }
    }
}

fn envelope_task(t: &Task, now: i64, base: &str) -> http::Resp {
    http::envelope_ok_with(640, |out| t.write_json(now, base, out))
}

fn parse_page(v: Option<&str>, name: &str, max: usize, default: usize) -> Result<usize, String> {
    match v {
        None | Some("") => Ok(default),
        Some(s) => match s.trim().parse::<i64>() {
            Ok(n) if n >= 1 && n as u64 <= max as u64 => Ok(n as usize),
            _ => Err(format!(
                "{name} must be an integer in [1, {max}], got {s:?}"
            )),
        },
    }
}

fn list(shared: &Shared, identity: &Identity, kind: TaskKind, query: &str) -> http::Resp {
    let params = http::parse_query(query);
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let now = shared.now_ms();
    if let Some(ext) = get("external_task_id").filter(|e| !e.is_empty()) {
        let store = shared.store();
        return match store.get_by_external(identity, kind, ext) {
            Some(t) => envelope_task(t, now, &shared.base_url),
            None => not_found_task(ext),
        };
    }
    let page_num = match parse_page(get("pageNum"), "pageNum", 1000, 1) {
        Ok(n) => n,
        Err(m) => return bad_param(&m),
    };
    let page_size = match parse_page(get("pageSize"), "pageSize", 500, 30) {
        Ok(n) => n,
        Err(m) => return bad_param(&m),
    };
    let store = shared.store();
    http::envelope_ok_with(256, |out| {
        out.push(b'[');
        for (i, t) in store
            .list(identity, kind, page_num, page_size)
            .into_iter()
            .enumerate()
        {
            if i > 0 {
                out.push(b',');
            }
            t.write_json(now, &shared.base_url, out);
        }
        out.push(b']');
    })
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, http::Resp> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(_) => Err(envelope_err(
            StatusCode::BAD_REQUEST,
            1200,
            "request body unreadable or larger than 32 MiB",
        )),
    }
}

async fn create(
    shared: &Arc<Shared>,
    identity: Identity,
    kind: TaskKind,
    req: Request<Incoming>,
) -> http::Resp {
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let value: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return envelope_err(
                StatusCode::BAD_REQUEST,
                1200,
                &format!("request body is not valid JSON: {e}"),
            )
        }
    };
    let params = match validate(kind, &value) {
        Ok(p) => p,
        Err((code, msg)) => return envelope_err(StatusCode::BAD_REQUEST, code, &msg),
    };
    let rt = shared.runtime();
    let (p_ms, f_ms) = rt.timing.scaled_ms();
    let now = shared.now_ms();
    let outcome = match params.prompt.as_deref().and_then(failure_marker) {
        Some(msg) => Outcome::Failed(msg),
        None => Outcome::Succeed,
    };
    let has_callback = params.callback_url.is_some();
    let (resp, task_id) = {
        let mut store = shared.store_mut();
        let id = store.new_task_id();
        let task = Task {
            id: id.clone(),
            kind,
            external_id: params.external_id,
            created_at: now,
            processing_at: now + p_ms,
            finish_at: now + f_ms,
            outcome,
            fixed: None,
            n: params.n,
            duration: params.duration,
            watermark: params.watermark,
            callback_url: params.callback_url,
            extra: None,
        };
        match store.insert(&identity, task, now, Some(rt.concurrency_limit)) {
            Ok(t) => (http::envelope_ok(&t.render_created()), id),
            Err(InsertError::DuplicateExternalId(e)) => {
                return bad_param(&format!("external_task_id {e:?} already exists"))
            }
            Err(InsertError::DuplicateTaskId(e)) => {
                return bad_param(&format!("task_id {e:?} already exists"))
            }
            Err(InsertError::ConcurrencyLimit) => {
                return envelope_err(StatusCode::TOO_MANY_REQUESTS, 1303, default_message(1303))
            }
        }
    };
    if has_callback {
        callbacks::spawn_lifecycle(shared.clone(), task_id);
    }
    resp
}
