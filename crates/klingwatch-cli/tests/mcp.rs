//! `klingwatch mcp` driven as an MCP client would drive it: the built binary as a child
//! process, newline-delimited JSON-RPC over its stdin/stdout, against an in-test emulator.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use klingwatch_mock::{BlockingMockServer, MockConfig, MockServer, Timing};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_klingwatch");
const TIMEOUT: Duration = Duration::from_secs(30);

fn server(processing_ms: u64, finish_ms: u64) -> BlockingMockServer {
    let c = MockConfig {
        timing: Timing {
            processing_after: Duration::from_millis(processing_ms),
            finish_after: Duration::from_millis(finish_ms),
            time_scale: 1.0,
        },
        ..Default::default()
    };
    MockServer::start_blocking(c).expect("start emulator")
}

fn control(method: reqwest::Method, url: String, body: Option<Value>) -> Value {
    klingwatch::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut req = reqwest::Client::new().request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap()
    })
}

fn seed(url: &str, body: Value) -> String {
    let v = control(
        reqwest::Method::POST,
        format!("{url}/__mock/tasks"),
        Some(body),
    );
    v["task_id"].as_str().expect("task_id").to_string()
}

/// API requests (not control routes) the emulator has answered so far.
fn api_requests(url: &str) -> usize {
    let v = control(reqwest::Method::GET, format!("{url}/__mock/requests"), None);
    v["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["path"].as_str().unwrap_or("").starts_with("/v1/"))
        .count()
}

fn base_cmd() -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("KLING_ACCESS_KEY")
        .env_remove("KLING_SECRET_KEY")
        .env_remove("KLING_API_KEY")
        .env_remove("KLING_BASE_URL")
        .env_remove("KLING_REGION")
        .env("RUST_LOG", "debug");
    c
}

fn cmd_for(url: &str) -> Command {
    let mut c = base_cmd();
    c.env("KLING_BASE_URL", url)
        .env("KLING_ACCESS_KEY", klingwatch_mock::DEFAULT_ACCESS_KEY)
        .env("KLING_SECRET_KEY", klingwatch_mock::DEFAULT_SECRET_KEY);
    c
}

/// A running `klingwatch mcp` and the raw lines of its stdout.
struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    err_reader: Option<std::thread::JoinHandle<String>>,
    lines: Receiver<String>,
    seen: Vec<String>,
    next_id: i64,
    instructions: String,
}

impl Session {
    fn start(mut cmd: Command, args: &[&str]) -> Session {
        let mut child = cmd
            .arg("mcp")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn klingwatch mcp");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // stderr is drained all along, so that logs can never block the server.
        let mut stderr = child.stderr.take().unwrap();
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let stdin = child.stdin.take();
        let mut s = Session {
            child,
            stdin,
            err_reader: Some(err_reader),
            lines: rx,
            seen: Vec::new(),
            next_id: 1,
            instructions: String::new(),
        };
        let init = s.request(
            "initialize",
            json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "klingwatch-test", "version": "0"}
            }),
        );
        let r = &init.response["result"];
        assert_eq!(r["serverInfo"]["name"], "klingwatch", "{}", init.response);
        assert!(r["capabilities"]["tools"].is_object(), "{}", init.response);
        s.instructions = r["instructions"].as_str().unwrap_or("").to_string();
        s.send_raw(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string());
        s
    }

    fn send_raw(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    fn next_line(&mut self, deadline: Instant) -> Value {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => {
                self.seen.push(line.clone());
                serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line:?}"))
            }
            Err(RecvTimeoutError::Timeout) => panic!("no answer within {TIMEOUT:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("the server closed stdout"),
        }
    }

    /// Sends a request; returns its response and the notifications received before it.
    fn request(&mut self, method: &str, params: Value) -> Exchange {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send_raw(&msg.to_string());
        self.answer_to(id)
    }

    fn answer_to(&mut self, id: i64) -> Exchange {
        let deadline = Instant::now() + TIMEOUT;
        let mut notifications = Vec::new();
        loop {
            let v = self.next_line(deadline);
            assert_eq!(v["jsonrpc"], "2.0", "{v}");
            if v["id"] == json!(id) && v.get("method").is_none() {
                return Exchange {
                    response: v,
                    notifications,
                };
            }
            if v.get("id").is_none() {
                notifications.push(v);
            }
        }
    }

    fn call(&mut self, tool: &str, arguments: Value) -> Exchange {
        self.request("tools/call", json!({"name": tool, "arguments": arguments}))
    }

    fn tool_names(&mut self) -> Vec<String> {
        let r = self.request("tools/list", json!({}));
        r.response["result"]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("{}", r.response))
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// Closes stdin; the server must exit 0. Returns (stdout lines, stderr) after checking
    /// that stdout held nothing but JSON-RPC messages.
    fn finish(mut self) -> (Vec<String>, String) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("klingwatch mcp did not exit after stdin closed");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(line);
        }
        let err = self
            .err_reader
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        assert_eq!(status.code(), Some(0), "stderr:\n{err}");
        for line in &self.seen {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("non-JSON on stdout ({e}): {line:?}"));
            assert_eq!(v["jsonrpc"], "2.0", "{line}");
        }
        (self.seen, err)
    }
}

struct Exchange {
    response: Value,
    notifications: Vec<Value>,
}

impl Exchange {
    fn result(&self) -> &Value {
        &self.response["result"]
    }
    fn is_tool_error(&self) -> bool {
        self.result()["isError"] == json!(true)
    }
    fn structured(&self) -> &Value {
        &self.result()["structuredContent"]
    }
    fn summary(&self) -> &str {
        self.result()["content"][0]["text"].as_str().unwrap_or("")
    }
}

#[test]
fn tools_listed_with_schemas_and_create_only_with_the_flag() {
    let s = server(200, 600);
    let mut m = Session::start(cmd_for(&s.url()), &[]);
    let r = m.request("tools/list", json!({}));
    let tools = r.result()["tools"].as_array().unwrap().clone();
    let mut names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "get_task_status",
            "get_task_statuses",
            "list_tasks",
            "wait_for_task"
        ]
    );
    for t in &tools {
        assert!(!t["description"].as_str().unwrap().is_empty(), "{t}");
        assert_eq!(t["inputSchema"]["type"], "object", "{t}");
        assert_eq!(t["annotations"]["readOnlyHint"], true, "{t}");
    }
    let list = tools.iter().find(|t| t["name"] == "list_tasks").unwrap();
    let props = &list["inputSchema"]["properties"];
    assert_eq!(props["page"]["minimum"], 1);
    assert_eq!(props["page"]["maximum"], 1000);
    assert_eq!(props["page_size"]["maximum"], 500);
    assert!(props["kind"]["enum"]
        .as_array()
        .unwrap()
        .contains(&json!("image_generation")));
    let get = tools
        .iter()
        .find(|t| t["name"] == "get_task_status")
        .unwrap();
    assert_eq!(get["inputSchema"]["required"], json!(["task_id"]));
    assert_eq!(
        get["inputSchema"]["properties"]["task_id"]["maxLength"],
        256
    );
    // Not offered, and not callable either.
    let before = api_requests(&s.url());
    let r = m.call("create_image_task", json!({"prompt": "a cat"}));
    assert!(r.response["error"].is_object(), "{}", r.response);
    assert_eq!(api_requests(&s.url()), before, "nothing was created");
    m.finish();

    let mut m = Session::start(cmd_for(&s.url()), &["--allow-create"]);
    let names = m.tool_names();
    assert!(
        names.contains(&"create_image_task".to_string()),
        "{names:?}"
    );
    assert_eq!(names.len(), 5);
    m.finish();
}

#[test]
fn each_read_tool_against_the_emulator() {
    let s = server(200, 600);
    let ok_id = seed(&s.url(), json!({"status": "succeed", "n": 2}));
    let failed_id = seed(
        &s.url(),
        json!({"status": "failed", "status_msg": "Image pixel is invalid"}),
    );
    let mut m = Session::start(cmd_for(&s.url()), &[]);

    // get_task_status: the CLI's task JSON plus a one-line summary.
    let r = m.call("get_task_status", json!({"task_id": ok_id}));
    assert!(!r.is_tool_error(), "{}", r.response);
    let t = r.structured();
    assert_eq!(t["id"], ok_id);
    assert_eq!(t["kind"], "image_generation");
    assert_eq!(t["status"], "succeed");
    assert_eq!(t["urls"].as_array().unwrap().len(), 2);
    assert!(t["created_at_ms"].is_i64());
    assert!(!r.summary().contains('\n'));
    assert!(r.summary().contains(&ok_id) && r.summary().contains("succeed"));

    // A failed task is a result, not a tool error.
    let r = m.call(
        "get_task_status",
        json!({"task_id": failed_id, "kind": "image_generation"}),
    );
    assert!(!r.is_tool_error(), "{}", r.response);
    assert_eq!(r.structured()["status"], "failed");
    assert_eq!(r.structured()["status_msg"], "Image pixel is invalid");
    assert!(r.summary().contains("Image pixel is invalid"));

    // get_task_statuses: per-id results and errors, in order.
    let r = m.call(
        "get_task_statuses",
        json!({"task_ids": [ok_id, "123456789012345678", failed_id, "bad/id"]}),
    );
    assert!(!r.is_tool_error(), "{}", r.response);
    let items = r.structured()["results"].as_array().unwrap().clone();
    assert_eq!(items.len(), 4);
    assert_eq!(items[0]["status"], "succeed");
    assert_eq!(items[1]["id"], "123456789012345678");
    assert_eq!(items[1]["error"], "not_found");
    assert_eq!(items[1]["code"], 1203);
    assert_eq!(items[2]["status"], "failed");
    assert_eq!(items[3]["error"], "invalid_request");
    assert_eq!(r.structured()["counts"]["error"], 2);

    // list_tasks: a page, then filtered by status.
    let r = m.call("list_tasks", json!({"page": 1, "page_size": 10}));
    assert!(!r.is_tool_error(), "{}", r.response);
    assert_eq!(r.structured()["fetched"], 2);
    assert_eq!(r.structured()["has_more"], false);
    assert_eq!(r.structured()["tasks"].as_array().unwrap().len(), 2);
    let r = m.call("list_tasks", json!({"status": "failed"}));
    let tasks = r.structured()["tasks"].as_array().unwrap().clone();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["id"], failed_id);
    let r = m.call("list_tasks", json!({"page": 1, "page_size": 1}));
    assert_eq!(r.structured()["has_more"], true);

    // wait_for_task on a finished task answers at once.
    let r = m.call(
        "wait_for_task",
        json!({"task_id": ok_id, "timeout_seconds": 5}),
    );
    assert!(!r.is_tool_error(), "{}", r.response);
    assert_eq!(r.structured()["status"], "succeed");
    assert_eq!(r.structured()["history"], json!(["succeed"]));
    assert!(r.notifications.is_empty(), "no progress token, no progress");
    m.finish();
}

#[test]
fn create_then_wait_with_progress_notifications() {
    let s = server(300, 2500);
    let mut m = Session::start(cmd_for(&s.url()), &["--allow-create"]);
    let r = m.call(
        "create_image_task",
        json!({"prompt": "a lighthouse at dawn", "n": 1, "aspect_ratio": "16:9",
               "external_task_id": "mcp-test-1"}),
    );
    assert!(!r.is_tool_error(), "{}", r.response);
    let id = r.structured()["id"].as_str().unwrap().to_string();
    assert_eq!(r.structured()["status"], "submitted");
    assert_eq!(r.structured()["external_task_id"], "mcp-test-1");

    let r = m.request(
        "tools/call",
        json!({"name": "wait_for_task",
               "arguments": {"task_id": id, "timeout_seconds": 20},
               "_meta": {"progressToken": "wait-1"}}),
    );
    assert!(!r.is_tool_error(), "{}", r.response);
    assert_eq!(r.structured()["status"], "succeed");
    assert_eq!(r.structured()["urls"].as_array().unwrap().len(), 1);
    let history = r.structured()["history"].as_array().unwrap().clone();
    assert_eq!(history.first().unwrap(), "submitted");
    assert_eq!(history.last().unwrap(), "succeed");

    let progress: Vec<&Value> = r
        .notifications
        .iter()
        .filter(|n| n["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), history.len(), "{:?}", r.notifications);
    assert!(progress.len() >= 2);
    let mut last = 0.0;
    for p in &progress {
        assert_eq!(p["params"]["progressToken"], "wait-1");
        let v = p["params"]["progress"].as_f64().unwrap();
        assert!(v > last, "progress must increase: {p}");
        last = v;
    }
    let first = progress[0]["params"]["message"].as_str().unwrap();
    assert!(
        first.contains(&id) && first.contains("submitted"),
        "{first}"
    );
    let end = &progress.last().unwrap()["params"];
    assert!(end["message"].as_str().unwrap().contains("succeed"));
    assert_eq!(end["total"], end["progress"]);
    m.finish();
}

#[test]
fn wait_timeout_is_a_tool_error_with_the_last_status() {
    let s = server(200, 600);
    let id = seed(&s.url(), json!({"status": "processing"}));
    let mut m = Session::start(cmd_for(&s.url()), &[]);
    let started = Instant::now();
    let r = m.call(
        "wait_for_task",
        json!({"task_id": id, "timeout_seconds": 1.5}),
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(r.is_tool_error(), "{}", r.response);
    assert_eq!(r.structured()["error"], "wait_timeout");
    assert_eq!(r.structured()["last_status"], "processing");
    assert_eq!(r.structured()["id"], id);
    // Out of range: refused before any request.
    let before = api_requests(&s.url());
    let r = m.call(
        "wait_for_task",
        json!({"task_id": id, "timeout_seconds": 99999}),
    );
    assert!(r.is_tool_error());
    assert_eq!(r.structured()["error"], "invalid_request");
    assert_eq!(api_requests(&s.url()), before);
    m.finish();
}

#[test]
fn errors_are_tool_errors_with_kind_code_and_request_id() {
    let s = server(200, 600);
    let mut m = Session::start(cmd_for(&s.url()), &[]);

    let r = m.call("get_task_status", json!({"task_id": "123456789012345678"}));
    assert!(r.is_tool_error(), "{}", r.response);
    let e = r.structured();
    assert_eq!(e["error"], "not_found");
    assert_eq!(e["code"], 1203);
    assert_eq!(e["http_status"], 404);
    assert_eq!(e["retryable"], false);
    assert_eq!(e["id"], "123456789012345678");
    assert!(!e["request_id"].as_str().unwrap().is_empty());
    assert!(r.summary().starts_with("error: not_found (code 1203)"));

    // Bad input never reaches the API.
    let before = api_requests(&s.url());
    for (tool, args) in [
        ("get_task_status", json!({"task_id": "../etc/passwd"})),
        ("get_task_status", json!({"task_id": ""})),
        ("get_task_status", json!({"task_id": "abc", "kind": "nope"})),
        ("list_tasks", json!({"page": 0})),
        ("list_tasks", json!({"page": 1001})),
        ("list_tasks", json!({"page_size": 501})),
        ("list_tasks", json!({"page": -3})),
        ("list_tasks", json!({"status": "done"})),
        ("get_task_statuses", json!({"task_ids": []})),
        ("wait_for_task", json!({"task_id": "a b"})),
    ] {
        let r = m.call(tool, args.clone());
        assert!(r.is_tool_error(), "{tool} {args}: {}", r.response);
        assert_eq!(
            r.structured()["error"],
            "invalid_request",
            "{tool} {args}: {}",
            r.response
        );
    }
    assert_eq!(api_requests(&s.url()), before, "no request for bad input");
    m.finish();
}

#[test]
fn malformed_calls_get_errors_and_the_server_stays_up() {
    let s = server(200, 600);
    let id = seed(&s.url(), json!({"status": "succeed"}));
    let mut m = Session::start(cmd_for(&s.url()), &[]);

    let r = m.call("no_such_tool", json!({}));
    assert!(r.response["error"]["code"].is_i64(), "{}", r.response);

    // Wrong argument types and unknown arguments: tool errors of kind invalid_request.
    for args in [
        json!({"task_id": 42}),
        json!({"task_id": ["x"]}),
        json!({"task_id": id, "colour": "red"}),
        json!({}),
    ] {
        let r = m.call("get_task_status", args.clone());
        assert!(r.is_tool_error(), "{args}: {}", r.response);
        assert_eq!(r.structured()["error"], "invalid_request", "{}", r.response);
    }
    let r = m.call("list_tasks", json!({"page": "two"}));
    assert_eq!(r.structured()["error"], "invalid_request", "{}", r.response);

    // Garbage line and a request for an unknown method.
    m.send_raw("this is not json");
    let r = m.request("no/such/method", json!({}));
    assert!(r.response["error"].is_object(), "{}", r.response);

    // Still answering.
    let r = m.call("get_task_status", json!({"task_id": id}));
    assert!(!r.is_tool_error(), "{}", r.response);
    assert_eq!(r.structured()["status"], "succeed");
    m.finish();
}

#[test]
fn wrong_credentials_are_a_tool_error_without_the_secret() {
    let s = server(200, 600);
    let secret = "definitely-wrong-secret-4242";
    let mut c = cmd_for(&s.url());
    c.env("KLING_SECRET_KEY", secret);
    let mut m = Session::start(c, &[]);
    let r = m.call("get_task_status", json!({"task_id": "123456789012345678"}));
    assert!(r.is_tool_error(), "{}", r.response);
    assert_eq!(r.structured()["error"], "authentication");
    assert!(r.structured()["code"].is_i64());
    let (out, err) = m.finish();
    assert!(!out.join("\n").contains(secret), "secret on stdout");
    assert!(!err.contains(secret), "secret on stderr");
}

#[test]
fn refuses_to_start_without_credentials() {
    let o = base_cmd()
        .env_clear()
        .arg("mcp")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.is_empty(), "stdout must stay clean: {out}");
    assert!(err.contains("KLING_ACCESS_KEY"), "{err}");
    assert!(err.contains("--mock"), "{err}");
}

#[test]
fn mock_mode_needs_no_credentials_and_has_tasks_to_look_at() {
    let mut c = base_cmd();
    c.env_clear();
    let mut m = Session::start(c, &["--mock"]);
    assert!(m.instructions.contains("EMULATOR"), "{}", m.instructions);
    let r = m.call("list_tasks", json!({}));
    assert!(!r.is_tool_error(), "{}", r.response);
    let tasks = r.structured()["tasks"].as_array().unwrap().clone();
    assert!(tasks.len() >= 3, "{}", r.response);
    let statuses: Vec<&str> = tasks
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert!(statuses.contains(&"succeed") && statuses.contains(&"failed"));
    let id = tasks[0]["id"].as_str().unwrap().to_string();
    let r = m.call("get_task_status", json!({"task_id": id}));
    assert!(!r.is_tool_error(), "{}", r.response);
    m.finish();
}
