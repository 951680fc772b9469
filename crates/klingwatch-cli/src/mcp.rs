//! `klingwatch mcp`: a Model Context Protocol server over stdio, so that AI agents can check,
//! wait for, list (and, with `--allow-create`, create) Kling tasks through the core client.
//!
//! stdout carries only protocol messages; every log line goes to stderr.

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use klingwatch::{
    Client, Error, ImageGenerationRequest, Task, TaskKind, TaskStatus, TaskUpdate, WaitOptions,
};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, ProgressNotificationParam};
use rmcp::service::RequestContext;
use rmcp::{tool, tool_handler, tool_router, RoleServer, ServerHandler, ServiceExt};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{build_client, err_json, task_json, Global};

/// Longest accepted `timeout_seconds` of `wait_for_task`.
const MAX_WAIT_SECS: f64 = 3600.0;
/// Default `timeout_seconds` of `wait_for_task`.
const DEFAULT_WAIT_SECS: f64 = 120.0;
/// Most ids in one `get_task_statuses` call.
const MAX_BATCH: usize = 100;

// ---------------------------------------------------------------------------------------------
// Tool inputs. Their JSON schemas (with descriptions and limits) are what agents see; the
// handlers parse the arguments themselves so that every bad input comes back as the same
// `invalid_request` tool error, before any HTTP request.

fn kind_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let names: Vec<&str> = TaskKind::ALL.iter().map(|k| k.as_str()).collect();
    schemars::json_schema!({
        "type": "string",
        "enum": names,
        "description": "Task kind (the Kling endpoint family). Default: image_generation, or the server's --kind.",
    })
}

fn task_id_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "minLength": 1,
        "maxLength": 256,
        "pattern": "^[^/?#%\\\\\\s]+$",
        "description": "Kling task_id (e.g. \"930810057590833241\") or your external_task_id: 1-256 characters, no '/', '?', '#', '%', '\\\\', whitespace or '..'.",
    })
}

fn task_ids_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let item = task_id_schema(g);
    schemars::json_schema!({
        "type": "array",
        "items": item,
        "minItems": 1,
        "maxItems": MAX_BATCH,
        "description": "Task ids to query (1-100; duplicates are queried once).",
    })
}

fn status_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "enum": ["submitted", "processing", "succeed", "failed"],
        "description": "Only return tasks with this status (filters the fetched page).",
    })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct GetTaskArgs {
    #[schemars(schema_with = "task_id_schema")]
    task_id: String,
    #[serde(default)]
    #[schemars(schema_with = "kind_schema", extend("default" = "image_generation"))]
    kind: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct GetTasksArgs {
    #[schemars(schema_with = "task_ids_schema")]
    task_ids: Vec<String>,
    #[serde(default)]
    #[schemars(schema_with = "kind_schema", extend("default" = "image_generation"))]
    kind: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct WaitArgs {
    #[schemars(schema_with = "task_id_schema")]
    task_id: String,
    #[serde(default)]
    #[schemars(schema_with = "kind_schema", extend("default" = "image_generation"))]
    kind: Option<String>,
    /// Give up after this many seconds (default 120, at most 3600). The task keeps running
    /// on Kling's side; call again to keep waiting.
    #[schemars(range(min = 1, max = 3600), extend("default" = 120))]
    timeout_seconds: Option<f64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListArgs {
    #[serde(default)]
    #[schemars(schema_with = "kind_schema", extend("default" = "image_generation"))]
    kind: Option<String>,
    /// Page number, newest tasks first (1-1000, default 1).
    #[schemars(range(min = 1, max = 1000), extend("default" = 1))]
    page: Option<i64>,
    /// Tasks per page (1-500, default 30). The last page is the first one shorter than this.
    #[schemars(range(min = 1, max = 500), extend("default" = 30))]
    page_size: Option<i64>,
    #[serde(default)]
    #[schemars(schema_with = "status_schema")]
    status: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CreateArgs {
    /// What to generate (1-2500 characters).
    #[schemars(length(min = 1, max = 2500))]
    prompt: String,
    /// What to avoid.
    negative_prompt: Option<String>,
    /// Model name, e.g. kling-v1, kling-v2-1, kling-v3 (server default when omitted).
    model_name: Option<String>,
    /// Number of images (1-9, default 1).
    #[schemars(range(min = 1, max = 9))]
    n: Option<u32>,
    /// Aspect ratio.
    #[schemars(extend("enum" = ["16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3", "21:9"]))]
    aspect_ratio: Option<String>,
    /// Output resolution.
    #[schemars(extend("enum" = ["1k", "2k"]))]
    resolution: Option<String>,
    /// Your own unique id for this task (recommended: it lets a lost create be found again
    /// instead of being paid twice).
    #[schemars(length(min = 1, max = 256))]
    external_task_id: Option<String>,
}

fn input_schema<T: JsonSchema + 'static>() -> Arc<JsonObject> {
    rmcp::handler::server::common::schema_for_input::<T>()
        .unwrap_or_else(|e| panic!("invalid input schema: {e}"))
}

fn parse_args<T: DeserializeOwned>(args: JsonObject) -> Result<T, Error> {
    serde_json::from_value(Value::Object(args))
        .map_err(|e| Error::invalid(format!("invalid arguments: {e}")))
}

// ---------------------------------------------------------------------------------------------
// Results.

/// A tool result: the structured JSON plus a one-line human summary (and the JSON as text,
/// for clients that ignore structured content).
fn ok_result(summary: String, value: Value) -> CallToolResult {
    let mut r = CallToolResult::structured(value);
    r.content.insert(0, ContentBlock::text(summary));
    r
}

/// The tool error for `e`: the CLI's error object (kind, Kling code, message, request id)
/// plus whether retrying may help. Messages never carry credentials.
fn error_value(id: &str, e: &Error) -> Value {
    let mut v = err_json(id, e);
    v["http_status"] = json!(e.http_status());
    if let Some(s) = e.last_status() {
        v["last_status"] = json!(s.as_str());
    }
    v
}

fn err_result(id: &str, e: &Error) -> CallToolResult {
    let mut r = CallToolResult::structured_error(error_value(id, e));
    r.content
        .insert(0, ContentBlock::text(crate::error_line(e)));
    r
}

fn summary(t: &Task) -> String {
    let mut s = format!("task {} ({}): {}", t.id, t.kind, t.status);
    if let Some(m) = t.status_msg.as_deref().filter(|m| !m.is_empty()) {
        s.push_str(&format!(" ({m})"));
    }
    let urls: Vec<&str> = t.result_urls().collect();
    if let Some(u) = urls.first() {
        s.push_str(&format!(", {} result(s), first {u}", urls.len()));
    }
    s
}

// ---------------------------------------------------------------------------------------------
// The server.

#[derive(Clone)]
pub(crate) struct KlingTools {
    client: Client,
    default_kind: TaskKind,
    instructions: String,
    tool_router: ToolRouter<KlingTools>,
}

impl KlingTools {
    pub(crate) fn new(
        client: Client,
        default_kind: TaskKind,
        allow_create: bool,
        note: &str,
    ) -> Self {
        let mut tool_router = Self::tool_router();
        if !allow_create {
            tool_router.disable_route("create_image_task");
        }
        let mut instructions = String::from(
            "Tools to follow Kling AI generation tasks. Task statuses: submitted -> processing -> \
             succeed | failed (a failed task is a normal result with the reason in status_msg). \
             Use wait_for_task instead of polling get_task_status in a loop; send a progressToken \
             to get a notification on each status change. Errors are tool results with \
             isError=true carrying kind, code (Kling business code), request_id and retryable.",
        );
        if allow_create {
            instructions.push_str(
                " create_image_task spends credits: pass an external_task_id so a lost reply can be recovered.",
            );
        }
        if !note.is_empty() {
            instructions.push(' ');
            instructions.push_str(note);
        }
        KlingTools {
            client,
            default_kind,
            instructions,
            tool_router,
        }
    }

    fn kind(&self, k: Option<&str>) -> Result<TaskKind, Error> {
        match k {
            None => Ok(self.default_kind),
            Some(k) => TaskKind::from_str(k),
        }
    }

    pub(crate) fn tool_names(&self) -> Vec<String> {
        self.tool_router
            .list_all()
            .into_iter()
            .map(|t| t.name.to_string())
            .collect()
    }
}

#[tool_router]
impl KlingTools {
    /// Get the current status of one Kling task: status, status message, creation/update
    /// times (Unix ms) and result URLs once it succeeded. Read-only; costs nothing.
    #[tool(
        input_schema = input_schema::<GetTaskArgs>(),
        annotations(title = "Get task status", read_only_hint = true, open_world_hint = true)
    )]
    async fn get_task_status(&self, args: JsonObject) -> CallToolResult {
        let a: GetTaskArgs = match parse_args(args) {
            Ok(a) => a,
            Err(e) => return err_result("", &e),
        };
        let r = async {
            let kind = self.kind(a.kind.as_deref())?;
            self.client.get_task(kind, &a.task_id).await
        }
        .await;
        match r {
            Ok(t) => ok_result(summary(&t), task_json(&t)),
            Err(e) => err_result(&a.task_id, &e),
        }
    }

    /// Get the status of many Kling tasks at once (1-100 ids, queried concurrently). Returns
    /// one entry per id, in order: a task, or an error object for that id (a bad or unknown
    /// id never fails the whole call).
    #[tool(
        input_schema = input_schema::<GetTasksArgs>(),
        annotations(title = "Get task statuses", read_only_hint = true, open_world_hint = true)
    )]
    async fn get_task_statuses(&self, args: JsonObject) -> CallToolResult {
        let a: GetTasksArgs = match parse_args(args) {
            Ok(a) => a,
            Err(e) => return err_result("", &e),
        };
        let kind = match self.kind(a.kind.as_deref()) {
            Ok(k) => k,
            Err(e) => return err_result("", &e),
        };
        if a.task_ids.is_empty() || a.task_ids.len() > MAX_BATCH {
            let e = Error::invalid(format!(
                "task_ids must hold 1 to {MAX_BATCH} ids, got {}",
                a.task_ids.len()
            ));
            return err_result("", &e);
        }
        let results = self.client.get_many(kind, &a.task_ids, 8).await;
        let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
        let mut items = Vec::with_capacity(results.len());
        for (id, r) in a.task_ids.iter().zip(results) {
            match r {
                Ok(t) => {
                    *counts.entry(t.status.as_str().to_owned()).or_default() += 1;
                    items.push(task_json(&t));
                }
                Err(e) => {
                    *counts.entry("error".to_owned()).or_default() += 1;
                    items.push(error_value(id, &e));
                }
            }
        }
        let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let line = format!("{} task(s): {}", items.len(), parts.join(", "));
        ok_result(
            line,
            json!({"kind": kind.as_str(), "results": items, "counts": counts}),
        )
    }

    /// Wait until a Kling task succeeds or fails (polling with growing intervals) and return
    /// it. Bounded by timeout_seconds (default 120, max 3600): on timeout the result is a
    /// wait_timeout error with the last status seen; the task itself keeps running. If the
    /// request carries _meta.progressToken, a progress notification is sent on each status
    /// change.
    #[tool(
        input_schema = input_schema::<WaitArgs>(),
        annotations(title = "Wait for task", read_only_hint = true, open_world_hint = true)
    )]
    async fn wait_for_task(
        &self,
        args: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let a: WaitArgs = match parse_args(args) {
            Ok(a) => a,
            Err(e) => return err_result("", &e),
        };
        let kind = match self.kind(a.kind.as_deref()) {
            Ok(k) => k,
            Err(e) => return err_result(&a.task_id, &e),
        };
        let secs = a.timeout_seconds.unwrap_or(DEFAULT_WAIT_SECS);
        if !(secs.is_finite() && secs > 0.0 && secs <= MAX_WAIT_SECS) {
            let e = Error::invalid(format!(
                "timeout_seconds must be in (0, {MAX_WAIT_SECS}], got {secs}"
            ));
            return err_result(&a.task_id, &e);
        }
        if let Err(e) = klingwatch::validate_task_id(&a.task_id) {
            return err_result(&a.task_id, &e);
        }

        // Status changes are recorded, and forwarded as progress notifications when the
        // client asked for them (in order, all sent before the result).
        let history: Arc<Mutex<Vec<String>>> = Arc::default();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<TaskUpdate>();
        let forwarder = ctx.meta.get_progress_token().map(|token| {
            let peer = ctx.peer.clone();
            tokio::spawn(async move {
                let mut n = 0u32;
                while let Some(u) = rx.recv().await {
                    n += 1;
                    let mut msg = format!("{}: {}", u.task.id, u.task.status);
                    if let Some(m) = u.task.status_msg.as_deref().filter(|m| !m.is_empty()) {
                        msg.push_str(&format!(" ({m})"));
                    }
                    let mut p = ProgressNotificationParam::new(token.clone(), f64::from(n))
                        .with_message(msg);
                    if u.task.is_terminal() {
                        p = p.with_total(f64::from(n));
                    }
                    if let Err(e) = peer.notify_progress(p).await {
                        tracing::debug!("progress notification not sent: {e}");
                    }
                }
            })
        });
        let on_update = {
            let history = history.clone();
            let forward = forwarder.is_some();
            Arc::new(move |u: &TaskUpdate| {
                if let Ok(mut h) = history.lock() {
                    h.push(u.task.status.as_str().to_owned());
                }
                if forward {
                    let _ = tx.send(u.clone());
                }
                Ok(())
            })
        };
        let opts = WaitOptions {
            timeout: Duration::from_secs_f64(secs),
            on_update: Some(on_update),
            cancel: Some(ctx.ct.clone()),
            ..Default::default()
        };
        let started = Instant::now();
        let r = self.client.wait(kind, &a.task_id, opts).await;
        // The options (and with them the sender) are gone: let the notifications drain.
        if let Some(f) = forwarder {
            let _ = f.await;
        }
        match r {
            Ok(t) => {
                let mut v = task_json(&t);
                v["waited_ms"] = json!(started.elapsed().as_millis() as u64);
                v["history"] = json!(history.lock().map(|h| h.clone()).unwrap_or_default());
                ok_result(summary(&t), v)
            }
            Err(e) => err_result(&a.task_id, &e),
        }
    }

    /// List one page of Kling tasks of a kind, newest first, optionally only those with a
    /// given status. has_more tells whether a next page may exist.
    #[tool(
        input_schema = input_schema::<ListArgs>(),
        annotations(title = "List tasks", read_only_hint = true, open_world_hint = true)
    )]
    async fn list_tasks(&self, args: JsonObject) -> CallToolResult {
        let a: ListArgs = match parse_args(args) {
            Ok(a) => a,
            Err(e) => return err_result("", &e),
        };
        let kind = match self.kind(a.kind.as_deref()) {
            Ok(k) => k,
            Err(e) => return err_result("", &e),
        };
        let page = a.page.unwrap_or(1);
        let page_size = a.page_size.unwrap_or(30);
        if !(1..=1000).contains(&page) {
            return err_result(
                "",
                &Error::invalid(format!("page must be in 1..=1000, got {page}")),
            );
        }
        if !(1..=500).contains(&page_size) {
            return err_result(
                "",
                &Error::invalid(format!("page_size must be in 1..=500, got {page_size}")),
            );
        }
        let want = match a.status.as_deref() {
            None => None,
            Some(s @ ("submitted" | "processing" | "succeed" | "failed")) => {
                Some(TaskStatus::parse(s))
            }
            Some(s) => {
                return err_result(
                    "",
                    &Error::invalid(format!(
                        "status must be one of submitted, processing, succeed, failed; got {s:?}"
                    )),
                )
            }
        };
        let (page, page_size) = (page as u32, page_size as u32);
        match self.client.list_tasks(kind, page, page_size).await {
            Ok(tasks) => {
                let fetched = tasks.len();
                let has_more = fetched as u32 == page_size && page < 1000;
                let shown: Vec<Value> = tasks
                    .iter()
                    .filter(|t| want.as_ref().is_none_or(|w| *w == t.status))
                    .map(task_json)
                    .collect();
                let mut line = format!("page {page} of {kind} tasks: {} task(s)", shown.len());
                if let Some(w) = &want {
                    line.push_str(&format!(" with status {w} (of {fetched} fetched)"));
                }
                if has_more {
                    line.push_str("; more on the next page");
                }
                ok_result(
                    line,
                    json!({
                        "kind": kind.as_str(),
                        "page": page,
                        "page_size": page_size,
                        "status": want.as_ref().map(|w| w.as_str()),
                        "fetched": fetched,
                        "has_more": has_more,
                        "tasks": shown,
                    }),
                )
            }
            Err(e) => err_result("", &e),
        }
    }

    /// Create a Kling image-generation task (this SPENDS CREDITS). Returns the new task
    /// (usually status submitted); follow it with wait_for_task. Only available when the
    /// server was started with --allow-create.
    #[tool(
        input_schema = input_schema::<CreateArgs>(),
        annotations(
            title = "Create image task",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    async fn create_image_task(&self, args: JsonObject) -> CallToolResult {
        let a: CreateArgs = match parse_args(args) {
            Ok(a) => a,
            Err(e) => return err_result("", &e),
        };
        let mut req = ImageGenerationRequest::new(a.prompt);
        req.negative_prompt = a.negative_prompt;
        req.model_name = a.model_name;
        req.n = a.n;
        req.aspect_ratio = a.aspect_ratio;
        req.resolution = a.resolution;
        req.external_task_id = a.external_task_id.clone();
        match self.client.create_image_task(&req).await {
            Ok(t) => ok_result(format!("created {}", summary(&t)), task_json(&t)),
            Err(e) => err_result(a.external_task_id.as_deref().unwrap_or(""), &e),
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for KlingTools {
    fn get_info(&self) -> rmcp::model::ServerConfig {
        rmcp::model::ServerConfig::new(
            rmcp::model::ServerCapabilities::builder()
                .enable_tools()
                .build(),
        )
        .with_server_info(rmcp::model::Implementation::new(
            "klingwatch",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions(self.instructions.clone())
    }
}

// ---------------------------------------------------------------------------------------------
// Startup.

/// Seeds the embedded emulator with a few tasks to look at; returns a note for the agent.
async fn seed_emulator(url: &str, client: &Client) -> Result<String, Error> {
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for body in [
        json!({"status": "succeed", "n": 2}),
        json!({"status": "failed", "status_msg": "Image pixel is invalid"}),
    ] {
        let v: Value = http
            .post(format!("{url}/__mock/tasks"))
            .json(&body)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| Error::config(format!("cannot seed the emulator: {e}")))?
            .json()
            .await
            .map_err(|e| Error::config(format!("cannot seed the emulator: {e}")))?;
        if let Some(id) = v["task_id"].as_str() {
            ids.push(id.to_owned());
        }
    }
    // One live task that moves submitted -> processing -> succeed over a few seconds.
    let live = client
        .create_image_task(&ImageGenerationRequest::new(
            "a lighthouse at dawn, watercolor",
        ))
        .await?;
    Ok(format!(
        "EMULATOR MODE (--mock): no real Kling account is used. Sample tasks: {} (succeed), {} \
         (failed), {} (running; finishes within ~10 s). Tasks created here finish in ~10 s.",
        ids.first().map(String::as_str).unwrap_or("-"),
        ids.get(1).map(String::as_str).unwrap_or("-"),
        live.id
    ))
}

/// Runs `klingwatch mcp` until the client closes stdin.
pub(crate) async fn serve(g: &Global, allow_create: bool, mock: bool) -> Result<u8, Error> {
    let default_kind = crate::parse_kind(g)?;
    let mut emulator = None;
    let (client, note) = if mock {
        let (server, client) =
            crate::embedded_emulator(Duration::from_secs(2), Duration::from_secs(10)).await?;
        let url = server.url();
        let note = seed_emulator(&url, &client).await?;
        tracing::info!("emulator running at {url}");
        emulator = Some(server);
        (client, note)
    } else {
        let client = build_client(g, None).map_err(|e| {
            if e.kind() == klingwatch::ErrorKind::Config {
                Error::config(format!(
                    "klingwatch mcp cannot start: {}. Set KLING_ACCESS_KEY and KLING_SECRET_KEY \
                     (or KLING_API_KEY) in the MCP client's server config, or use --mock to try \
                     it against the embedded emulator",
                    e.message()
                ))
            } else {
                e
            }
        })?;
        (client, String::new())
    };
    let tools = KlingTools::new(client, default_kind, allow_create, &note);
    tracing::info!(
        tools = tools.tool_names().join(",").as_str(),
        "klingwatch mcp: serving over stdio"
    );
    let service = tools
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| Error::config(format!("MCP session did not start: {e}")))?;
    let r = service.waiting().await;
    if let Some(server) = emulator {
        server.stop().await;
    }
    match r {
        Ok(_) => Ok(0),
        Err(e) => Err(Error::config(format!("MCP session ended abnormally: {e}"))),
    }
}
