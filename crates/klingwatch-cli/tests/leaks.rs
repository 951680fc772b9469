//! Secret-leak checks of the `klingwatch` binary at its most verbose log level (`-vvv`,
//! TRACE): with canary credentials, every row of the fault matrix (tests/faults.json) for a
//! status query, plus wait, submit, wrong-secret, API-key and bad-input runs. Neither the
//! SecretKey, the API key nor any JWT may appear on stdout or stderr.

use std::process::Command;
use std::time::Duration;

use klingwatch_mock::{Account, BlockingMockServer, MockConfig, MockServer, Timing};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_klingwatch");
const AK: &str = "ak-canary-7f3e21";
const SK: &str = "SK-CANARY-d41d8cd98f00b204";
const API_KEY: &str = "APIKEY-CANARY-0cc175b9c0f1b6";

fn server() -> BlockingMockServer {
    MockServer::start_blocking(MockConfig {
        accounts: vec![Account {
            access_key: AK.into(),
            secret_key: SK.into(),
        }],
        api_keys: vec![API_KEY.into()],
        timing: Timing {
            processing_after: Duration::from_millis(100),
            finish_after: Duration::from_millis(300),
            time_scale: 1.0,
        },
        ..Default::default()
    })
    .expect("start emulator")
}

fn ctl(url: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    klingwatch::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut req = reqwest::Client::new().request(method, format!("{url}/__mock{path}"));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let text = req.send().await.unwrap().text().await.unwrap();
        serde_json::from_str(&text).unwrap_or(Value::Null)
    })
}

fn seed(url: &str, status: &str) -> String {
    let v = ctl(
        url,
        reqwest::Method::POST,
        "/tasks",
        Some(json!({ "status": status, "access_key": AK })),
    );
    let v = if v["data"].is_object() {
        &v["data"]
    } else {
        &v
    };
    v["task_id"].as_str().unwrap().to_owned()
}

fn cmd(url: &str) -> Command {
    let mut c = Command::new(BIN);
    for k in [
        "KLING_ACCESS_KEY",
        "KLING_SECRET_KEY",
        "KLING_API_KEY",
        "KLING_BASE_URL",
        "KLING_REGION",
        "RUST_LOG",
    ] {
        c.env_remove(k);
    }
    c.env("KLING_BASE_URL", url)
        .env("KLING_ACCESS_KEY", AK)
        .env("KLING_SECRET_KEY", SK)
        .args(["-vvv", "--max-retries", "2", "--request-timeout", "1s"]);
    c
}

/// Runs the command and returns a description of any leak (empty = clean), plus whether it
/// logged anything at all (so a silent logger cannot pass the test).
fn leaks(what: &str, c: &mut Command) -> (Vec<String>, bool) {
    let o = c.output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    let mut found = Vec::new();
    for (name, text) in [("stdout", &out), ("stderr", &err)] {
        for (canary, label) in [(SK, "SecretKey"), (API_KEY, "API key"), ("eyJ", "a JWT")] {
            if text.contains(canary) {
                found.push(format!("{what}: {label} on {name}:\n{text}"));
            }
        }
    }
    (found, err.contains("TRACE") || err.contains("DEBUG"))
}

#[test]
fn no_secret_or_token_in_any_output_at_trace_level() {
    let s = server();
    let url = s.url();
    let matrix: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/faults.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let rows = matrix["rows"].as_array().unwrap();
    let results: Vec<(Vec<String>, bool)> = std::thread::scope(|scope| {
        let handles: Vec<_> = rows
            .iter()
            .map(|row| {
                let url = url.clone();
                scope.spawn(move || {
                    let id = seed(&url, row["seed_status"].as_str().unwrap_or("succeed"));
                    if !row["fault"].is_null() {
                        let mut f = row["fault"].clone();
                        if f["retry_after"]
                            .as_str()
                            .is_some_and(|r| r.starts_with("@+"))
                        {
                            f["retry_after"] = json!("1");
                        }
                        f["match"] = json!({ "task_id": id });
                        ctl(&url, reqwest::Method::POST, "/faults", Some(f));
                    }
                    let name = row["name"].as_str().unwrap();
                    leaks(name, cmd(&url).args(["status", &id]))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<String> = results.iter().flat_map(|(f, _)| f.clone()).collect();
    assert!(
        results.iter().all(|(_, logged)| *logged),
        "every run logs at TRACE/DEBUG (else this test proves nothing)"
    );

    let done = seed(&url, "succeed");
    let runs: Vec<(&str, Command)> = vec![
        ("wait", {
            let mut c = cmd(&url);
            c.args(["wait", &done, "--timeout", "10s"]);
            c
        }),
        ("submit", {
            let mut c = cmd(&url);
            c.args(["submit", "--prompt", "a canary fox"]);
            c
        }),
        ("wrong secret", {
            let mut c = cmd(&url);
            c.env("KLING_SECRET_KEY", format!("{SK}-wrong"))
                .args(["status", &done]);
            c
        }),
        ("api key", {
            let mut c = cmd(&url);
            c.env_remove("KLING_ACCESS_KEY")
                .env_remove("KLING_SECRET_KEY")
                .env("KLING_API_KEY", API_KEY)
                .args(["status", &done]);
            c
        }),
        ("bad input", {
            let mut c = cmd(&url);
            c.args(["status", "../../etc/passwd"]);
            c
        }),
    ];
    for (what, mut c) in runs {
        all.extend(leaks(what, &mut c).0);
    }
    assert!(all.is_empty(), "{}", all.join("\n---\n"));
}
