//! The language-neutral fault matrix (`tests/faults.json`), run against the emulator for a
//! status query and for a batch (`get_many`). The Python and Node suites read the same file and
//! must reach the same outcomes.

mod common;

use std::time::Duration;

use common::{vector, H};
use futures::{Future, StreamExt};
use klingwatch::{RetryPolicy, Task, TaskKind};
use serde_json::{json, Value};

fn matrix() -> Value {
    let path = format!("{}/../../tests/faults.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("tests/faults.json"))
        .expect("faults.json parses")
}

/// Replaces a `"@+N"` Retry-After with an HTTP-date N seconds from now.
fn materialise(mut fault: Value, id: &str) -> Value {
    if let Some(ra) = fault.get("retry_after").and_then(Value::as_str) {
        if let Some(secs) = ra.strip_prefix("@+") {
            let secs: u64 = secs.parse().expect("@+N");
            let when = std::time::SystemTime::now() + Duration::from_secs(secs);
            fault["retry_after"] = json!(httpdate::fmt_http_date(when));
        }
    }
    fault["match"] = json!({ "task_id": id });
    fault
}

/// Seeds the row's task: its status, plus any undocumented top-level fields.
async fn seed_row(h: &H, row: &Value) -> String {
    let mut body = json!({ "status": row["seed_status"].as_str().unwrap_or("succeed") });
    if row["seed_extra"].is_object() {
        body["extra"] = row["seed_extra"].clone();
    }
    h.seed(body).await
}

/// The first `seed_extra` field missing from the task's raw object (not for creates, which do
/// not read the seeded task).
fn missing_extra(row: &Value, op: &str, task: &Task) -> Option<String> {
    if op == "create" {
        return None;
    }
    let raw = task.raw.to_map();
    row["seed_extra"]
        .as_object()?
        .iter()
        .find(|(k, v)| raw.get(k.as_str()) != Some(v))
        .map(|(k, _)| k.clone())
}

struct Observed {
    outcome: klingwatch::Result<Task>,
    attempts_logged: usize,
    min_gap_ms: Option<i64>,
}

async fn run_row(h: &H, row: &Value, client_cfg: &Value, batch: bool) -> Observed {
    let id = seed_row(h, row).await;
    if !row["fault"].is_null() {
        h.fault(materialise(row["fault"].clone(), &id)).await;
    }
    let client = h
        .builder()
        .retry_policy(RetryPolicy {
            max_retries: client_cfg["max_retries"].as_u64().unwrap() as u32,
            ..RetryPolicy::default()
        })
        .timeout(Duration::from_millis(
            client_cfg["timeout_ms"].as_u64().unwrap(),
        ))
        .build()
        .unwrap();
    let outcome = if batch {
        let mut v = client
            .get_many(TaskKind::ImageGeneration, std::slice::from_ref(&id), 4)
            .await;
        assert_eq!(v.len(), 1, "one id in, one result out");
        v.pop().unwrap()
    } else {
        client.get_image_task(&id).await
    };
    // The emulator logs a request when its response ends: a delayed response is logged late.
    let want = row["expect"]["attempts"].as_u64().unwrap() as usize;
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    let times = loop {
        let times: Vec<i64> = h
            .requests()
            .await
            .iter()
            .filter(|r| r["path"].as_str().unwrap_or("").contains(&id))
            .map(|r| r["at_ms"].as_i64().unwrap())
            .collect();
        if times.len() >= want || std::time::Instant::now() > deadline {
            break times;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let min_gap_ms = times.windows(2).map(|w| w[1] - w[0]).min();
    Observed {
        outcome,
        attempts_logged: times.len(),
        min_gap_ms,
    }
}

/// The status-query / batch column: the shared checks, plus the error's own attempt count.
fn check(row: &Value, op: &str, obs: &Observed) -> Result<(), String> {
    let e = &row["expect"];
    check_column(
        row,
        op,
        e,
        &obs.outcome,
        obs.attempts_logged,
        obs.min_gap_ms,
    )?;
    if let Err(err) = &obs.outcome {
        let want = e["attempts"].as_u64().unwrap();
        if u64::from(err.attempts()) != want {
            let name = row["name"].as_str().unwrap();
            return Err(format!(
                "{name} [{op}]: error.attempts {}, want {want}",
                err.attempts()
            ));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_row_agrees_for_status_query_and_batch() {
    matrix_status_query_and_batch(H::start().await).await;
}

/// The same rows over TLS, where API calls take the direct HTTP/2 transport.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_row_agrees_for_status_query_and_batch_over_tls() {
    matrix_status_query_and_batch(H::start_tls().await).await;
}

async fn matrix_status_query_and_batch(h: H) {
    let doc = matrix();
    let rows = doc["rows"].as_array().unwrap();
    let errors = vector("errors.json");
    assert!(
        rows.len() >= errors["rows"].as_array().unwrap().len() + 10,
        "the matrix covers every error-table row plus transport faults"
    );
    let cfg = &doc["client"];
    let runs = rows.iter().flat_map(|row| {
        let h = &h;
        [false, true].into_iter().map(move |batch| async move {
            let obs = run_row(h, row, cfg, batch).await;
            check(row, if batch { "batch" } else { "get" }, &obs)
        })
    });
    let failures = failures_of(runs).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Runs the rows' checks, at most 16 at once (each opens its own connection: over TLS, 72
/// handshakes at the same moment on a loaded 2-core machine can outlast the 1 s timeout of
/// the matrix's client settings), and gathers the failures.
async fn failures_of<F: Future<Output = Result<(), String>>>(
    runs: impl Iterator<Item = F>,
) -> Vec<String> {
    futures::stream::iter(runs)
        .buffer_unordered(16)
        .filter_map(|r| async move { r.err() })
        .collect()
        .await
}

/// Installs a row's fault for every POST (creates have no task id to match on).
fn for_creates(mut fault: Value) -> Value {
    fault = materialise(fault, "");
    fault["match"] = json!({ "method": "POST", "path_prefix": "/v1/images/generations" });
    fault
}

fn post_times(log: &[Value]) -> Vec<i64> {
    log.iter()
        .filter(|r| r["method"] == "POST" && r["path"] == "/v1/images/generations")
        .map(|r| r["at_ms"].as_i64().unwrap())
        .collect()
}

fn check_column(
    row: &Value,
    op: &str,
    e: &Value,
    outcome: &klingwatch::Result<Task>,
    attempts: usize,
    min_gap_ms: Option<i64>,
) -> Result<(), String> {
    let name = row["name"].as_str().unwrap();
    let fail = |what: String| Err(format!("{name} [{op}]: {what}"));
    match (e["attempts"].as_u64(), e["min_attempts"].as_u64()) {
        (Some(want), _) if attempts != want as usize => {
            return fail(format!("emulator logged {attempts} attempts, want {want}"))
        }
        (_, Some(min)) if attempts < min as usize => {
            return fail(format!(
                "emulator logged {attempts} attempts, want >= {min}"
            ))
        }
        _ => {}
    }
    if let Some(gap) = min_gap_ms {
        let min_spacing = e["min_spacing_ms"].as_i64().unwrap_or(0);
        if gap < min_spacing {
            return fail(format!("attempts {gap} ms apart, want >= {min_spacing} ms"));
        }
    }
    match (e["outcome"].as_str().unwrap(), outcome) {
        ("ok", Ok(task)) => {
            let want = e["status"].as_str().unwrap();
            if task.status.as_str() != want {
                return fail(format!("status {:?}, want {want}", task.status.as_str()));
            }
            if let Some(missing) = missing_extra(row, op, task) {
                return fail(format!("undocumented field {missing:?} not kept in raw"));
            }
        }
        ("error", Err(err)) => {
            let got = (
                err.kind().as_str().to_string(),
                err.kling_code(),
                err.http_status().map(i64::from),
                err.is_retryable(),
                e["outcome_unknown"]
                    .as_bool()
                    .map(|_| err.is_outcome_unknown()),
            );
            let want = (
                e["kind"].as_str().unwrap().to_string(),
                e["kling_code"].as_i64(),
                e["http_status"].as_i64(),
                e["retryable"].as_bool().unwrap(),
                e["outcome_unknown"].as_bool(),
            );
            if got != want {
                return fail(format!("got {got:?}, want {want:?} ({err:?})"));
            }
        }
        (want, got) => return fail(format!("want {want}, got {got:?}")),
    }
    Ok(())
}

fn client_for(h: &H, cfg: &Value) -> klingwatch::Client {
    h.builder()
        .retry_policy(RetryPolicy {
            max_retries: cfg["max_retries"].as_u64().unwrap() as u32,
            ..RetryPolicy::default()
        })
        .timeout(Duration::from_millis(cfg["timeout_ms"].as_u64().unwrap()))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_row_agrees_for_wait() {
    matrix_wait(H::start().await).await;
}

/// The same rows over TLS, where API calls take the direct HTTP/2 transport.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_row_agrees_for_wait_over_tls() {
    matrix_wait(H::start_tls().await).await;
}

async fn matrix_wait(h: H) {
    let doc = matrix();
    let rows = doc["rows"].as_array().unwrap();
    let cfg = &doc["client"];
    let runs = rows.iter().map(|row| {
        let h = &h;
        async move {
            let id = seed_row(h, row).await;
            if !row["fault"].is_null() {
                h.fault(materialise(row["fault"].clone(), &id)).await;
            }
            let client = client_for(h, cfg);
            let options = klingwatch::WaitOptions {
                timeout: Duration::from_millis(cfg["wait_timeout_ms"].as_u64().unwrap()),
                poll_interval: Duration::from_millis(cfg["wait_poll_ms"].as_u64().unwrap()),
                max_poll_interval: Duration::from_millis(cfg["wait_poll_ms"].as_u64().unwrap()),
                ..Default::default()
            };
            let outcome = client.wait(TaskKind::ImageGeneration, &id, options).await;
            // Requests still in flight at the deadline are logged when they end.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let times: Vec<i64> = h
                .requests()
                .await
                .iter()
                .filter(|r| r["path"].as_str().unwrap_or("").contains(&id))
                .map(|r| r["at_ms"].as_i64().unwrap())
                .collect();
            let gap = times.windows(2).map(|w| w[1] - w[0]).min();
            check_column(row, "wait", &row["expect_wait"], &outcome, times.len(), gap)
        }
    });
    let failures = failures_of(runs).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_row_agrees_for_create() {
    matrix_create(H::start().await).await;
}

/// The same rows over TLS, where API calls take the direct HTTP/2 transport.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_row_agrees_for_create_over_tls() {
    matrix_create(H::start_tls().await).await;
}

async fn matrix_create(h: H) {
    let doc = matrix();
    let rows = doc["rows"].as_array().unwrap();
    let cfg = &doc["client"];
    let client = client_for(&h, cfg);
    let mut failures = Vec::new();
    // One row at a time: a create has no task id, so the fault matches every POST.
    for (n, row) in rows.iter().enumerate() {
        h.clear_faults().await;
        h.clear_log().await;
        if !row["fault"].is_null() {
            h.fault(for_creates(row["fault"].clone())).await;
        }
        let body = json!({
            "prompt": format!("fault matrix {}", row["name"].as_str().unwrap()),
            "external_task_id": format!("fm-rust-{n}-{}", std::process::id()),
        });
        let outcome = client.create_task(TaskKind::ImageGeneration, body).await;
        h.clear_faults().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let times = post_times(&h.requests().await);
        let gap = times.windows(2).map(|w| w[1] - w[0]).min();
        if let Err(f) = check_column(
            row,
            "create",
            &row["expect_create"],
            &outcome,
            times.len(),
            gap,
        ) {
            failures.push(f);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
