//! End-to-end tests of the `klingwatch` binary against an in-test emulator.

use std::process::{Command, Output};
use std::time::Duration;

use klingwatch_mock::{BlockingMockServer, MockConfig, MockServer, Timing};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_klingwatch");

fn server() -> BlockingMockServer {
    let c = MockConfig {
        timing: Timing {
            processing_after: Duration::from_millis(200),
            finish_after: Duration::from_millis(600),
            time_scale: 1.0,
        },
        ..Default::default()
    };
    MockServer::start_blocking(c).expect("start emulator")
}

fn seed(url: &str, body: Value) -> String {
    klingwatch::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let v: Value = reqwest::Client::new()
            .post(format!("{url}/__mock/tasks"))
            .json(&body)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        v["task_id"]
            .as_str()
            .expect("task_id in seeded task")
            .to_string()
    })
}

fn cmd(url: &str) -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("KLING_ACCESS_KEY")
        .env_remove("KLING_SECRET_KEY")
        .env_remove("KLING_API_KEY")
        .env_remove("KLING_BASE_URL")
        .env_remove("KLING_REGION")
        .env("KLING_BASE_URL", url)
        .env("KLING_ACCESS_KEY", klingwatch_mock::DEFAULT_ACCESS_KEY)
        .env("KLING_SECRET_KEY", klingwatch_mock::DEFAULT_SECRET_KEY);
    c
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn demo_exits_zero_and_reports_the_designed_failure() {
    let dir = std::env::temp_dir().join(format!("klingwatch-cli-test-demo-{}", std::process::id()));
    let o = Command::new(BIN)
        .args(["demo", "--dir"])
        .arg(&dir)
        .env_remove("KLING_ACCESS_KEY")
        .env_remove("KLING_SECRET_KEY")
        .env_remove("KLING_API_KEY")
        .env_remove("KLING_BASE_URL")
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("failed"), "{out}");
    assert!(out.contains("by design"), "{out}");
    assert!(out.contains("rate limited 1"), "{out}");
    assert!(
        !out.contains("\x1b["),
        "escape codes in non-TTY output: {out}"
    );
    assert!(std::fs::read_dir(&dir).unwrap().count() > 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn status_jsonl_of_a_seeded_task() {
    let s = server();
    let id = seed(&s.url(), json!({"status": "succeed"}));
    let o = cmd(&s.url())
        .args(["status", &id, "--jsonl"])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    let v: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(v["id"], id);
    assert_eq!(v["status"], "succeed");
    assert!(!out.contains("\x1b["));
    // Plain form has no escape codes either.
    let o = cmd(&s.url()).args(["status", &id]).output().unwrap();
    assert!(!String::from_utf8_lossy(&o.stdout).contains("\x1b["));
}

#[test]
fn status_ids_from_file_in_order_with_concurrency() {
    let s = server();
    let ids: Vec<String> = (0..40)
        .map(|i| {
            let status = if i == 7 { "failed" } else { "succeed" };
            seed(&s.url(), json!({"status": status}))
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("kw-cli-ids-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ids.txt");
    // The first id on the command line, the rest from the file (with a comment and a blank).
    let body = format!("# batch\n\n{}\n", ids[1..].join("\n"));
    std::fs::write(&file, body).unwrap();
    let o = cmd(&s.url())
        .args(["status", &ids[0], "--ids-from", file.to_str().unwrap()])
        .args(["--concurrency", "5", "--jsonl"])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    // One failed task: exit 1; every id answered once, in input order.
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    let got: Vec<String> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(got, ids);
    // Out-of-range concurrency and a missing file are usage/config errors before any query.
    let o = cmd(&s.url())
        .args(["status", &ids[0], "--concurrency", "0"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let o = cmd(&s.url())
        .args([
            "status",
            "--ids-from",
            dir.join("missing.txt").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_ne!(o.status.code(), Some(0));
    assert!(err.contains("cannot read ids"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unknown_id_exits_4() {
    let s = server();
    let o = cmd(&s.url())
        .args(["status", "123456789012345678"])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(4), "{out}\n{err}");
    assert!(err.contains("not_found"), "{err}");
}

#[test]
fn wrong_credentials_exit_3_without_leaking_the_secret() {
    let s = server();
    let o = cmd(&s.url())
        .env("KLING_SECRET_KEY", "definitely-wrong-secret")
        .args(["status", "123456789012345678"])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}\n{err}");
    assert!(err.starts_with("error: authentication"), "{err}");
    assert!(!err.contains("definitely-wrong-secret") && !out.contains("definitely-wrong-secret"));
}

#[test]
fn no_credentials_exit_2() {
    let o = Command::new(BIN)
        .env_clear()
        .args(["status", "123456789012345678"])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}\n{err}");
    assert!(err.starts_with("error: config"), "{err}");
}

#[test]
fn waiting_on_a_failed_task_exits_1() {
    let s = server();
    let id = seed(&s.url(), json!({"status": "failed", "status_msg": "nope"}));
    let o = cmd(&s.url())
        .args(["wait", &id, "--interval", "100ms"])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    let v: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(v["status"], "failed");
}

#[test]
fn wait_timeout_exits_5() {
    let s = server();
    let id = seed(&s.url(), json!({"status": "processing"}));
    let o = cmd(&s.url())
        .args([
            "wait",
            &id,
            "--timeout",
            "1s",
            "--interval",
            "200ms",
            "--jsonl",
        ])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(5), "{out}\n{err}");
}

#[test]
fn submit_and_wait_succeeds() {
    let s = server();
    let o = cmd(&s.url())
        .args([
            "submit",
            "--prompt",
            "a cat",
            "--wait",
            "--interval",
            "100ms",
        ])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert!(out.contains("succeed"), "{out}");
}

#[test]
fn token_is_a_three_part_jwt() {
    let o = Command::new(BIN)
        .env_clear()
        .env("KLING_ACCESS_KEY", "ak")
        .env("KLING_SECRET_KEY", "sk-secret")
        .arg("token")
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    let tok = out.trim();
    assert_eq!(tok.split('.').count(), 3, "{tok}");
    assert!(tok.split('.').all(|p| !p.is_empty()));
}

#[test]
fn bad_duration_is_a_usage_error() {
    let o = Command::new(BIN)
        .args(["wait", "1", "--timeout", "soon"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn watch_ids_from_stdin_list_and_download() {
    use std::io::Write;
    use std::process::Stdio;
    let s = server();
    let a = seed(&s.url(), json!({"status": "succeed", "n": 2}));
    let b = seed(&s.url(), json!({"status": "succeed"}));
    let mut child = cmd(&s.url())
        .args(["watch", "--ids-from", "-", "--interval", "100ms"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{a}\n{b}\n").unwrap();
    let o = child.wait_with_output().unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{out}");

    let o = cmd(&s.url())
        .args(["list", "--jsonl", "--status", "succeed"])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    let o = cmd(&s.url()).args(["list", "--all"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&a));

    let dir = std::env::temp_dir().join(format!("klingwatch-cli-test-dl-{}", std::process::id()));
    let o = cmd(&s.url())
        .args(["download", &a, "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn completions_and_help() {
    let o = Command::new(BIN)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("klingwatch"));
    let o = Command::new(BIN).arg("--help").output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("130"));
}

#[test]
fn jsonl_schema_and_network_error_exit_6() {
    let s = server();
    let id = seed(&s.url(), json!({"status": "succeed"}));
    let o = cmd(&s.url())
        .args(["status", &id, "--json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let obj = v[0].as_object().unwrap();
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "id",
            "kind",
            "status",
            "status_msg",
            "external_task_id",
            "created_at_ms",
            "updated_at_ms",
            "urls"
        ]
    );
    assert_eq!(obj["kind"], "image_generation");
    assert!(obj["urls"].is_array());

    let o = cmd("http://127.0.0.1:1")
        .args(["status", "123456789012345678", "--max-retries", "0"])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(6), "{out}\n{err}");
    assert!(err.starts_with("error: connection"), "{err}");
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn ctrl_c_during_wait_exits_130() {
    let s = server();
    let id = seed(&s.url(), json!({"status": "processing"}));
    let child = cmd(&s.url())
        .args(["wait", &id, "--timeout", "1m", "--jsonl"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    signal(child.id(), "-INT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{:?}", text(&out));
}

#[test]
fn mock_subcommand_prints_its_url_and_serves_until_terminated() {
    use std::io::BufRead;
    let mut child = Command::new(BIN)
        .args(["mock", "--port", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("klingwatch-mock listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    let id = seed(&url, json!({"status": "succeed"}));
    let out = cmd(&url).args(["status", &id, "--jsonl"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    signal(child.id(), "-TERM");
    let status = child.wait().unwrap();
    assert!(
        status.success() || status.code().is_some(),
        "exits on SIGTERM: {status:?}"
    );
}
