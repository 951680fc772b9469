//! End-to-end tests of the emulator over real loopback HTTP: authentication, task endpoints,
//! lifecycle, paging, validation, concurrency, faults, control API, callbacks and TLS.

mod common;

use std::time::{Duration, Instant};

use common::*;
use klingwatch_mock::{sign_webhook, Account, MockConfig, DEFAULT_API_KEY};
use reqwest::Method;
use serde_json::{json, Value};

async fn raw_get(h: &Harness, path: &str, auth: Option<&str>) -> (u16, Value) {
    let mut rb = h.http.get(format!("{}{}", h.url, path));
    if let Some(a) = auth {
        rb = rb.header("Authorization", a);
    }
    let r = rb.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn assert_err(resp: &(u16, Value), status: u16, code: i64) {
    assert_eq!(resp.0, status, "{}", resp.1);
    assert_eq!(resp.1["code"], code, "{}", resp.1);
    assert!(resp.1["message"].is_string());
    assert!(resp.1["request_id"].is_string());
    assert!(
        resp.1.get("data").is_none(),
        "errors carry no data: {}",
        resp.1
    );
}

// ---------------------------------------------------------------- authentication

#[tokio::test]
async fn auth_error_codes() {
    let h = Harness::fast().await;
    let p = "/v1/images/generations";
    assert_err(&raw_get(&h, p, None).await, 401, 1001);
    assert_err(&raw_get(&h, p, Some("")).await, 401, 1001);
    assert_err(&raw_get(&h, p, Some("Bearer ")).await, 401, 1001);
    assert_err(&raw_get(&h, p, Some("Basic abc")).await, 401, 1002);
    assert_err(&raw_get(&h, p, Some("Bearer not-a-jwt")).await, 401, 1002);
    assert_err(&raw_get(&h, p, Some("Bearer a.b.c")).await, 401, 1002);
    let now = now_secs();
    // Unknown access key.
    let t = jwt_with("nobody", "x", now + 1800, now - 5);
    assert_err(
        &raw_get(&h, p, Some(&format!("Bearer {t}"))).await,
        401,
        1000,
    );
    // Wrong secret.
    let t = jwt_with(
        klingwatch_mock::DEFAULT_ACCESS_KEY,
        "wrong",
        now + 1800,
        now - 5,
    );
    assert_err(
        &raw_get(&h, p, Some(&format!("Bearer {t}"))).await,
        401,
        1000,
    );
    // nbf in the future, exp in the past.
    let t = jwt_with(
        klingwatch_mock::DEFAULT_ACCESS_KEY,
        klingwatch_mock::DEFAULT_SECRET_KEY,
        now + 1800,
        now + 60,
    );
    assert_err(
        &raw_get(&h, p, Some(&format!("Bearer {t}"))).await,
        401,
        1003,
    );
    let t = jwt_with(
        klingwatch_mock::DEFAULT_ACCESS_KEY,
        klingwatch_mock::DEFAULT_SECRET_KEY,
        now - 1,
        now - 1800,
    );
    assert_err(
        &raw_get(&h, p, Some(&format!("Bearer {t}"))).await,
        401,
        1004,
    );
    // alg "none" is refused.
    let unsigned = format!(
        "{}.{}.",
        base64_url(br#"{"alg":"none","typ":"JWT"}"#),
        base64_url(
            format!(
                r#"{{"iss":"{}","exp":{}}}"#,
                klingwatch_mock::DEFAULT_ACCESS_KEY,
                now + 100
            )
            .as_bytes()
        )
    );
    assert_err(
        &raw_get(&h, p, Some(&format!("Bearer {unsigned}"))).await,
        401,
        1002,
    );
    // Valid JWT and API key.
    assert_eq!(raw_get(&h, p, Some(&bearer())).await.0, 200);
    assert_eq!(
        raw_get(&h, p, Some(&format!("Bearer {DEFAULT_API_KEY}")))
            .await
            .0,
        200
    );
    assert_err(
        &raw_get(&h, p, Some("Bearer wrong-api-key")).await,
        401,
        1002,
    );
    // The request log records each auth outcome; the header is never logged.
    let log = h.requests().await;
    let labels: Vec<&str> = log.iter().map(|e| e["auth"].as_str().unwrap()).collect();
    assert_eq!(
        labels,
        [
            "1001", "1001", "1001", "1002", "1002", "1002", "1000", "1000", "1003", "1004", "1002",
            "ok", "ok", "1002"
        ]
    );
    h.server.stop().await;
}

fn base64_url(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[tokio::test]
async fn clock_offset_expires_and_matures_tokens() {
    let h = Harness::fast().await;
    let p = "/v1/images/generations";
    assert_eq!(h.get(p).await.0, 200);
    h.clock(1800).await;
    assert_err(&h.get(p).await, 401, 1004);
    h.clock(-60).await;
    assert_err(&h.get(p).await, 401, 1003);
    h.clock(0).await;
    assert_eq!(h.get(p).await.0, 200);
    h.server.stop().await;
}

#[tokio::test]
async fn pyjwt_vectors_are_accepted() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/vectors/jwt.json"
    ))
    .unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let vectors = v["vectors"].as_array().unwrap();
    let mut config = fast_config();
    config.accounts = vectors
        .iter()
        .map(|x| {
            Account::new(
                x["access_key"].as_str().unwrap(),
                x["secret_key"].as_str().unwrap(),
            )
        })
        .collect();
    let h = Harness::start(config).await;
    for x in vectors {
        // Our signer reproduces the vector byte for byte.
        let ours = jwt_with(
            x["access_key"].as_str().unwrap(),
            x["secret_key"].as_str().unwrap(),
            x["exp"].as_i64().unwrap(),
            x["nbf"].as_i64().unwrap(),
        );
        assert_eq!(ours, x["token"].as_str().unwrap());
        let auth = format!("Bearer {}", x["token"].as_str().unwrap());
        h.clock(x["now"].as_i64().unwrap() - now_secs()).await;
        assert_eq!(
            raw_get(&h, "/v1/images/generations", Some(&auth)).await.0,
            200,
            "{x}"
        );
        h.clock(x["exp"].as_i64().unwrap() - now_secs() + 1).await;
        assert_err(
            &raw_get(&h, "/v1/images/generations", Some(&auth)).await,
            401,
            1004,
        );
        h.clock(x["nbf"].as_i64().unwrap() - now_secs() - 2).await;
        assert_err(
            &raw_get(&h, "/v1/images/generations", Some(&auth)).await,
            401,
            1003,
        );
    }
    h.server.stop().await;
}

#[tokio::test]
async fn tasks_are_per_identity() {
    let h = Harness::fast().await;
    let id = h.create(json!({"prompt": "mine"})).await["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    let key = format!("Bearer {DEFAULT_API_KEY}");
    assert_err(
        &raw_get(&h, &format!("/v1/images/generations/{id}"), Some(&key)).await,
        404,
        1203,
    );
    assert_eq!(
        raw_get(&h, &format!("/v1/images/generations/{id}"), Some(&h.auth))
            .await
            .0,
        200
    );
    h.server.stop().await;
}

// ---------------------------------------------------------------- task endpoints

#[tokio::test]
async fn create_query_and_external_ids() {
    let h = Harness::fast().await;
    let created = h
        .create(json!({"prompt": "a cat", "n": 2, "external_task_id": "ext-1", "extra": {"x": 1}}))
        .await;
    let id = created["task_id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 18);
    assert!(id.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(created["task_status"], "submitted");
    assert_eq!(created["task_info"]["external_task_id"], "ext-1");
    assert_eq!(created["created_at"], created["updated_at"]);
    assert!(created["created_at"].as_i64().unwrap() > 1_600_000_000_000);

    let (s, by_id) = h.get(&format!("/v1/images/generations/{id}")).await;
    assert_eq!(s, 200);
    assert_eq!(by_id["message"], "SUCCEED");
    assert_eq!(by_id["data"]["task_id"], id.as_str());
    assert_eq!(by_id["data"]["task_info"]["external_task_id"], "ext-1");
    assert_eq!(by_id["data"]["watermark_info"]["enabled"], false);
    let (_, by_ext_path) = h.get("/v1/images/generations/ext-1").await;
    assert_eq!(by_ext_path["data"]["task_id"], id.as_str());
    let (_, by_ext_query) = h.get("/v1/images/generations?external_task_id=ext-1").await;
    assert_eq!(by_ext_query["data"]["task_id"], id.as_str());
    assert!(by_ext_query["data"].is_object());

    // Without an external id, task_info is {}.
    let other = h.create(json!({"prompt": "a dog"})).await;
    assert_eq!(other["task_info"], json!({}));

    assert_err(
        &h.get("/v1/images/generations/999999999999999999").await,
        404,
        1203,
    );
    assert_err(
        &h.get("/v1/images/generations?external_task_id=nope").await,
        404,
        1203,
    );
    // Same id under another kind is unknown.
    assert_err(
        &h.get(&format!("/v1/videos/text2video/{id}")).await,
        404,
        1203,
    );
    // Duplicate external id.
    let dup = h
        .post(
            "/v1/images/generations",
            json!({"prompt": "again", "external_task_id": "ext-1"}),
        )
        .await;
    assert_err(&dup, 400, 1201);
    assert!(dup.1["message"].as_str().unwrap().contains("ext-1"));
    // Unknown routes and methods.
    assert_err(&h.get("/v1/images/nothing").await, 404, 1202);
    assert_err(&h.get("/v1/images/generations/1/2").await, 404, 1202);
    let r = h
        .http
        .delete(format!("{}/v1/images/generations", h.url))
        .header("Authorization", &h.auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], 1202);
    let r = h
        .http
        .get(format!("{}/elsewhere", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    h.server.stop().await;
}

#[tokio::test]
async fn every_kind_has_its_endpoints() {
    let h = Harness::start(MockConfig::default().with_time_scale(0.0)).await;
    let kinds = [
        ("images/generations", json!({"prompt": "p"}), false),
        (
            "images/kolors-virtual-try-on",
            json!({"human_image": "x", "cloth_image": "y"}),
            false,
        ),
        ("images/editing/expand", json!({"image": "x"}), false),
        (
            "images/multi-image2image",
            json!({"subject_image_list": []}),
            false,
        ),
        ("images/omni-image", json!({"prompt": "p"}), false),
        (
            "videos/text2video",
            json!({"prompt": "p", "duration": "10"}),
            true,
        ),
        (
            "videos/image2video",
            json!({"image": "http://x/y.png"}),
            true,
        ),
    ];
    for (path, body, video) in kinds {
        let (s, v) = h.post(&format!("/v1/{path}"), body).await;
        assert_eq!(s, 200, "{path}: {v}");
        let id = v["data"]["task_id"].as_str().unwrap().to_string();
        let (s, q) = h.get(&format!("/v1/{path}/{id}")).await;
        assert_eq!(s, 200);
        let d = &q["data"];
        assert_eq!(d["task_status"], "succeed", "{path}: {d}");
        let url = if video {
            let v = &d["task_result"]["videos"][0];
            assert!(v["duration"].as_str().unwrap().ends_with(".0"));
            v["url"].as_str().unwrap().to_string()
        } else {
            d["task_result"]["images"][0]["url"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let file = h.http.get(&url).send().await.unwrap();
        assert_eq!(file.status().as_u16(), 200);
        let ct = file.headers()["content-type"].to_str().unwrap().to_string();
        assert_eq!(ct, if video { "video/mp4" } else { "image/png" });
        let (s, l) = h.get(&format!("/v1/{path}")).await;
        assert_eq!(s, 200);
        assert_eq!(l["data"].as_array().unwrap().len(), 1);
    }
    let (_, t2v) = h.get("/v1/videos/text2video?pageSize=1").await;
    assert_eq!(
        t2v["data"][0]["task_result"]["videos"][0]["duration"],
        "10.0"
    );
    h.server.stop().await;
}

#[tokio::test]
async fn lifecycle_follows_the_clock() {
    let mut config = MockConfig::default();
    config.timing.processing_after = Duration::from_millis(300);
    config.timing.finish_after = Duration::from_millis(600);
    config.timing.time_scale = 0.5; // 150 ms / 300 ms
    let h = Harness::start(config).await;
    let created = h
        .create(json!({"prompt": "a cat", "n": 3, "watermark_info": {"enabled": true}}))
        .await;
    let id = created["task_id"].as_str().unwrap().to_string();
    let t0 = created["created_at"].as_i64().unwrap();
    let path = format!("/v1/images/generations/{id}");
    let (_, v) = h.get(&path).await;
    assert_eq!(v["data"]["task_status"], "submitted");
    assert_eq!(v["data"]["task_result"], json!({}));
    assert!(v["data"].get("final_unit_deduction").is_none());
    tokio::time::sleep(Duration::from_millis(190)).await;
    let (_, v) = h.get(&path).await;
    assert_eq!(v["data"]["task_status"], "processing");
    assert_eq!(v["data"]["updated_at"].as_i64().unwrap(), t0 + 150);
    tokio::time::sleep(Duration::from_millis(170)).await;
    let (s, v) = h.get(&path).await;
    assert_eq!(s, 200);
    let d = &v["data"];
    assert_eq!(d["task_status"], "succeed");
    assert_eq!(d["task_status_msg"], "");
    assert_eq!(d["updated_at"].as_i64().unwrap(), t0 + 300);
    assert_eq!(d["final_unit_deduction"], "3");
    assert_eq!(d["watermark_info"]["enabled"], true);
    let images = d["task_result"]["images"].as_array().unwrap();
    assert_eq!(images.len(), 3);
    for (i, img) in images.iter().enumerate() {
        assert_eq!(img["index"], i);
        for key in ["url", "watermark_url"] {
            let url = img[key].as_str().unwrap();
            assert!(url.starts_with(&h.url), "{url}");
            let bytes = h.http.get(url).send().await.unwrap().bytes().await.unwrap();
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        }
    }
    h.server.stop().await;
}

#[tokio::test]
async fn failure_markers_fail_with_http_200() {
    let h = Harness::start(MockConfig::default().with_time_scale(0.0)).await;
    let a = h.create(json!({"prompt": "a cat [fail]"})).await["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = h
        .create(json!({"prompt": "[fail:Content is not allowed] x"}))
        .await["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, v) = h.get(&format!("/v1/images/generations/{a}")).await;
    assert_eq!(s, 200);
    assert_eq!(v["code"], 0);
    assert_eq!(v["message"], "SUCCEED");
    assert_eq!(v["data"]["task_status"], "failed");
    assert_eq!(v["data"]["task_status_msg"], "Image pixel is invalid");
    assert_eq!(v["data"]["task_result"], json!({}));
    let (_, v) = h.get(&format!("/v1/images/generations/{b}")).await;
    assert_eq!(v["data"]["task_status"], "failed");
    assert_eq!(v["data"]["task_status_msg"], "Content is not allowed");
    h.server.stop().await;
}

#[tokio::test]
async fn paging_edges() {
    let h = Harness::start(MockConfig::default().with_time_scale(0.0)).await;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(
            h.create(json!({"prompt": format!("p{i}")})).await["task_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    ids.reverse(); // newest first
    let page = |n: usize, s: usize| format!("/v1/images/generations?pageNum={n}&pageSize={s}");
    let got = |v: &Value| -> Vec<String> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["task_id"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, p1) = h.get(&page(1, 3)).await;
    let (_, p2) = h.get(&page(2, 3)).await;
    let (_, p3) = h.get(&page(3, 3)).await;
    let (_, p4) = h.get(&page(4, 3)).await;
    assert_eq!(got(&p1), ids[0..3]);
    assert_eq!(got(&p2), ids[3..6]);
    assert_eq!(got(&p3), ids[6..7]); // the last page is the first shorter one
    assert!(got(&p4).is_empty());
    let (_, all) = h.get("/v1/images/generations").await; // defaults 1 and 30
    assert_eq!(got(&all), ids);
    assert_eq!(h.get(&page(1000, 500)).await.0, 200);
    for bad in [
        "pageNum=0",
        "pageNum=1001",
        "pageSize=0",
        "pageSize=501",
        "pageNum=abc",
        "pageSize=-1",
        "pageNum=1.5",
    ] {
        assert_err(
            &h.get(&format!("/v1/images/generations?{bad}")).await,
            400,
            1201,
        );
    }
    h.server.stop().await;
}

#[tokio::test]
async fn create_validation() {
    let h = Harness::fast().await;
    let p = "/v1/images/generations";
    let cases = [
        json!({}),
        json!({"prompt": ""}),
        json!({"prompt": 5}),
        json!({"prompt": "x".repeat(2501)}),
        json!({"prompt": "a", "n": 0}),
        json!({"prompt": "a", "n": 10}),
        json!({"prompt": "a", "n": "2"}),
        json!({"prompt": "a", "aspect_ratio": "5:4"}),
        json!({"prompt": "a", "image_fidelity": 1.01}),
        json!({"prompt": "a", "human_fidelity": -0.1}),
        json!({"prompt": "a", "resolution": "4k"}),
        json!({"prompt": "a", "image_reference": "body"}),
        json!({"prompt": "a", "external_task_id": 7}),
    ];
    for body in cases {
        let r = h.post(p, body.clone()).await;
        assert_err(&r, 400, 1201);
        assert!(r.1["message"].as_str().unwrap().len() > 5, "{body}");
    }
    assert_err(&h.post(p, json!([1, 2])).await, 400, 1200);
    let r = h
        .http
        .post(format!("{}{p}", h.url))
        .header("Authorization", &h.auth)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], 1200);
    // Limits are inclusive; unknown fields pass.
    for ok in [
        json!({"prompt": "x".repeat(2500), "n": 9, "aspect_ratio": "21:9", "image_fidelity": 0, "human_fidelity": 1, "resolution": "2k", "image_reference": "face", "model_name": "kling-v9", "future": true}),
        json!({"prompt": "é".repeat(2500)}),
    ] {
        assert_eq!(h.post(p, ok).await.0, 200);
    }
    assert_err(&h.post("/v1/videos/text2video", json!({})).await, 400, 1201);
    assert_err(
        &h.post("/v1/videos/image2video", json!({"prompt": "p"}))
            .await,
        400,
        1201,
    );
    assert_err(
        &h.post(
            "/v1/videos/text2video",
            json!({"prompt": "p", "duration": "7"}),
        )
        .await,
        400,
        1201,
    );
    h.server.stop().await;
}

#[tokio::test]
async fn concurrency_limit_answers_1303() {
    let h = Harness::fast().await;
    h.ctl_post("/config", json!({"concurrency_limit": 2, "processing_after_ms": 10000, "finish_after_ms": 20000, "time_scale": 1.0})).await;
    h.create(json!({"prompt": "1"})).await;
    h.create(json!({"prompt": "2"})).await;
    let r = h
        .post("/v1/images/generations", json!({"prompt": "3"}))
        .await;
    assert_err(&r, 429, 1303);
    assert_eq!(r.1["message"], "parallel task over resource pack limit");
    // Other identities have their own budget.
    let key = format!("Bearer {DEFAULT_API_KEY}");
    let r = h
        .http
        .post(format!("{}/v1/images/generations", h.url))
        .header("Authorization", key)
        .json(&json!({"prompt": "k"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // Once the running tasks finish (move the clock), creates pass again.
    h.clock(25).await;
    h.create(json!({"prompt": "4"})).await;
    h.server.stop().await;
}

// ---------------------------------------------------------------- faults

async fn send_get(h: &Harness, path: &str) -> Result<reqwest::Response, reqwest::Error> {
    h.http
        .get(format!("{}{}", h.url, path))
        .header("Authorization", &h.auth)
        .send()
        .await
}

#[tokio::test]
async fn fault_kinds() {
    let h = Harness::fast().await;
    let p = "/v1/images/generations";

    h.fault(json!({"fault": "error"})).await;
    assert_err(&h.get(p).await, 500, 5000);
    assert_eq!(h.get(p).await.0, 200, "times defaults to 1");

    h.fault(json!({"fault": "error", "code": 1102})).await;
    let r = h.get(p).await;
    assert_err(&r, 429, 1102);
    assert_eq!(r.1["message"], "Account balance not enough");
    h.fault(json!({"fault": "error", "http_status": 503, "code": 5001, "message": "busy"}))
        .await;
    let r = h.get(p).await;
    assert_err(&r, 503, 5001);
    assert_eq!(r.1["message"], "busy");
    h.fault(json!({"fault": "error", "code": 1303})).await;
    assert_err(&h.get(p).await, 429, 1303);
    h.fault(json!({"fault": "error", "code": 5002, "http_status": 504}))
        .await;
    assert_err(&h.get(p).await, 504, 5002);

    h.fault(json!({"fault": "rate_limit", "retry_after": "2"}))
        .await;
    let r = send_get(&h, p).await.unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "2");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], 1302);
    assert_eq!(v["message"], "too many requests");
    h.fault(json!({"fault": "rate_limit", "retry_after": "Wed, 21 Oct 2015 07:28:00 GMT"}))
        .await;
    let r = send_get(&h, p).await.unwrap();
    assert_eq!(r.headers()["retry-after"], "Wed, 21 Oct 2015 07:28:00 GMT");

    h.fault(json!({"fault": "html_502"})).await;
    let r = send_get(&h, p).await.unwrap();
    assert_eq!(r.status().as_u16(), 502);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(
        r.text().await.unwrap(),
        "<html><body><h1>502 Bad Gateway</h1></body></html>"
    );

    h.fault(json!({"fault": "empty_body"})).await;
    let r = send_get(&h, p).await.unwrap();
    assert_eq!(r.status().as_u16(), 504);
    assert!(r.bytes().await.unwrap().is_empty());

    h.fault(json!({"fault": "malformed_json"})).await;
    let r = send_get(&h, p).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body = r.text().await.unwrap();
    assert_eq!(body, r#"{"code":0,"message":"SUCCEED","data":{"#);
    assert!(serde_json::from_str::<Value>(&body).is_err());

    h.fault(json!({"fault": "truncated_body"})).await;
    let r = send_get(&h, p).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.bytes().await.is_err(),
        "a truncated body must be a client error"
    );

    h.fault(json!({"fault": "drop_connection"})).await;
    assert!(
        send_get(&h, p).await.is_err(),
        "a dropped connection must be a client error"
    );

    h.fault(json!({"fault": "ok_with_code"})).await;
    assert_err(&h.get(p).await, 200, 5000);
    h.fault(json!({"fault": "ok_with_code", "code": 1201, "message": "odd"}))
        .await;
    let r = h.get(p).await;
    assert_err(&r, 200, 1201);
    assert_eq!(r.1["message"], "odd");

    h.fault(json!({"fault": "delay", "delay_ms": 300})).await;
    let t = Instant::now();
    assert_eq!(h.get(p).await.0, 200);
    assert!(t.elapsed() >= Duration::from_millis(290));

    // Everything still works afterwards, and the log names each fault.
    assert_eq!(h.get(p).await.0, 200);
    let log = h.requests().await;
    let faults: Vec<Value> = log
        .iter()
        .map(|e| e["fault"].clone())
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(faults.len(), 15);
    assert!(faults.contains(&json!("drop_connection")));
    let delayed = log.iter().find(|e| e["fault"] == "delay").unwrap();
    assert_eq!(delayed["auth"], "ok");
    assert_eq!(delayed["status"], 200);
    let dropped = log.iter().find(|e| e["fault"] == "error").unwrap();
    assert_eq!(dropped["auth"], "skipped");
    h.server.stop().await;
}

#[tokio::test]
async fn fault_matching_counts_and_probability() {
    let h = Harness::fast().await;
    let id = h.create(json!({"prompt": "x"})).await["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    let task_path = format!("/v1/images/generations/{id}");

    // Fires before auth: even an unauthenticated request gets the fault.
    h.fault(json!({"fault": "error", "code": 5001, "http_status": 503}))
        .await;
    assert_err(
        &raw_get(&h, "/v1/images/generations", None).await,
        503,
        5001,
    );

    // times: 2, only for GET on one task.
    h.fault(json!({"fault": "rate_limit", "times": 2, "match": {"method": "GET", "task_id": id}}))
        .await;
    assert_eq!(h.get("/v1/images/generations").await.0, 200);
    assert_eq!(
        h.post("/v1/images/generations", json!({"prompt": "y"}))
            .await
            .0,
        200
    );
    assert_err(&h.get(&task_path).await, 429, 1302);
    let listed = h.ctl(Method::GET, "/faults", None).await;
    let f = listed["faults"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(f["remaining"], 1);
    assert_eq!(f["fault"], "rate_limit");
    assert_err(&h.get(&task_path).await, 429, 1302);
    assert_eq!(h.get(&task_path).await.0, 200);

    // path_prefix + unlimited.
    h.fault(json!({"fault": "error", "times": 0, "match": {"path_prefix": "/v1/videos"}}))
        .await;
    for _ in 0..3 {
        assert_err(&h.get("/v1/videos/text2video").await, 500, 5000);
    }
    assert_eq!(h.get("/v1/images/generations").await.0, 200);
    h.ctl(Method::DELETE, "/faults", None).await;
    assert_eq!(h.get("/v1/videos/text2video").await.0, 200);
    assert!(h.ctl(Method::GET, "/faults", None).await["faults"]
        .as_array()
        .unwrap()
        .is_empty());

    // Probability 0 never fires, 1 always does; 0.5 is seeded (deterministic).
    h.fault(json!({"fault": "error", "times": 0, "probability": 0.0}))
        .await;
    for _ in 0..5 {
        assert_eq!(h.get("/v1/images/generations").await.0, 200);
    }
    h.ctl(Method::DELETE, "/faults", None).await;
    h.fault(json!({"fault": "error", "times": 0, "probability": 1.0}))
        .await;
    assert_eq!(h.get("/v1/images/generations").await.0, 500);
    let a = seeded_pattern(&h).await;
    let b = seeded_pattern(&h).await;
    assert_eq!(a, b, "same seed, same pattern");
    assert!(a.contains(&200) && a.contains(&500), "{a:?}");

    // Bad specs are refused.
    let r = h
        .http
        .post(format!("{}/__mock/faults", h.url))
        .json(&json!({"fault": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    h.server.stop().await;
}

async fn seeded_pattern(h: &Harness) -> Vec<u16> {
    h.ctl_post("/reset", json!({})).await;
    h.fault(json!({"fault": "error", "times": 0, "probability": 0.5}))
        .await;
    let mut pattern = Vec::new();
    for _ in 0..20 {
        pattern.push(h.get("/v1/images/generations").await.0);
    }
    pattern
}

// ---------------------------------------------------------------- control API

#[tokio::test]
async fn stats_count_api_connections_apart_from_control_ones() {
    let h = Harness::fast().await;
    let stats = || async { h.ctl(Method::GET, "/stats", None).await };
    let s = stats().await;
    assert!(s["connections"].as_u64().unwrap() >= 1, "{s}");
    assert!(s["open_connections"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(s["api_connections"], 0, "control calls only: {s}");
    assert_eq!(s["open_api_connections"], 0, "{s}");
    // A client of its own, so the API call cannot ride on the control connection.
    let api = client();
    let r = api
        .get(format!(
            "{}/v1/images/generations?pageNum=1&pageSize=1",
            h.url
        ))
        .header("Authorization", &h.auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let s = stats().await;
    assert_eq!(s["api_connections"], 1, "{s}");
    assert_eq!(s["open_api_connections"], 1, "{s}");
    drop(r);
    drop(api);
    let started = Instant::now();
    while stats().await["open_api_connections"] != 0 {
        assert!(started.elapsed() < Duration::from_secs(5), "still open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        stats().await["api_connections"],
        1,
        "a closed one stays counted"
    );
}

#[tokio::test]
async fn request_log_and_reset() {
    let h = Harness::fast().await;
    assert_eq!(
        h.ctl(Method::GET, "/health", None).await,
        json!({"ok": true})
    );
    let id = h.create(json!({"prompt": "x"})).await["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    h.get(&format!("/v1/images/generations/{id}")).await;
    h.get("/v1/images/generations?pageNum=1&pageSize=2").await;
    let log = h.requests().await;
    assert_eq!(log.len(), 3);
    assert_eq!(log[0]["method"], "POST");
    assert_eq!(log[0]["path"], "/v1/images/generations");
    assert_eq!(log[1]["path"], format!("/v1/images/generations/{id}"));
    assert_eq!(log[2]["query"], "pageNum=1&pageSize=2");
    assert!(log
        .iter()
        .all(|e| e["auth"] == "ok" && e["status"] == 200 && e["fault"].is_null()));
    let t: Vec<i64> = log.iter().map(|e| e["at_ms"].as_i64().unwrap()).collect();
    assert!(t.windows(2).all(|w| w[0] <= w[1]));
    assert!((t[0] - common::now_secs() * 1000).abs() < 10_000);
    h.ctl(Method::DELETE, "/requests", None).await;
    assert!(h.requests().await.is_empty());

    // Reset clears tasks, faults, clock and config.
    h.ctl_post(
        "/config",
        json!({"concurrency_limit": 0, "time_scale": 5.0}),
    )
    .await;
    h.clock(100).await;
    h.fault(json!({"fault": "error", "times": 0, "match": {"path_prefix": "/v1/videos"}}))
        .await;
    h.ctl_post("/reset", json!({})).await;
    let cfg = h.ctl(Method::GET, "/config", None).await;
    assert_eq!(cfg["concurrency_limit"], 100);
    assert_eq!(cfg["time_scale"], 1.0);
    assert_eq!(cfg["processing_after_ms"], 40);
    assert_eq!(h.ctl(Method::GET, "/clock", None).await["offset_secs"], 0);
    assert_err(
        &h.get(&format!("/v1/images/generations/{id}")).await,
        404,
        1203,
    );
    assert_eq!(h.get("/v1/videos/text2video").await.0, 200);
    assert_eq!(h.requests().await.len(), 2);
    h.server.stop().await;
}

#[tokio::test]
async fn seeded_tasks_and_status_changes() {
    let h = Harness::fast().await;
    let t = h.ctl_post("/tasks", json!({"task_id": "seed-1", "status": "queued_somewhere", "status_msg": "hm", "external_task_id": "e-seed"})).await;
    assert_eq!(t["task_id"], "seed-1");
    assert_eq!(t["task_status"], "queued_somewhere");
    tokio::time::sleep(Duration::from_millis(200)).await; // seeded tasks never move on their own
    let (_, v) = h.get("/v1/images/generations/seed-1").await;
    assert_eq!(v["data"]["task_status"], "queued_somewhere");
    assert_eq!(v["data"]["task_status_msg"], "hm");
    assert_eq!(
        h.get("/v1/images/generations/e-seed").await.1["data"]["task_id"],
        "seed-1"
    );

    let t = h
        .ctl_post("/tasks/seed-1/status", json!({"status": "succeed"}))
        .await;
    assert_eq!(t["task_status"], "succeed");
    let (_, v) = h.get("/v1/images/generations/seed-1").await;
    assert_eq!(
        v["data"]["task_result"]["images"].as_array().unwrap().len(),
        1
    );
    assert!(v["data"]["updated_at"].as_i64().unwrap() >= v["data"]["created_at"].as_i64().unwrap());

    let t = h.ctl_post("/tasks", json!({"kind": "text2video", "status": "failed", "status_msg": "Image pixel is invalid"})).await;
    let id = t["task_id"].as_str().unwrap();
    assert_eq!(id.len(), 18);
    let (_, v) = h.get(&format!("/v1/videos/text2video/{id}")).await;
    assert_eq!(v["data"]["task_status"], "failed");
    let t = h
        .ctl_post(
            "/tasks",
            json!({"n": 4, "status": "succeed", "api_key": DEFAULT_API_KEY}),
        )
        .await;
    assert_eq!(t["task_result"]["images"].as_array().unwrap().len(), 4);
    // Lifecycle tasks can be pinned too.
    let id = h.create(json!({"prompt": "x"})).await["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    h.ctl_post(
        &format!("/tasks/{id}/status"),
        json!({"status": "processing"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        h.get(&format!("/v1/images/generations/{id}")).await.1["data"]["task_status"],
        "processing"
    );
    let r = h
        .http
        .post(format!("{}/__mock/tasks", h.url))
        .json(&json!({"task_id": "seed-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // `extra` adds fields; naming one the emulator renders is refused, and nothing is seeded.
    let r = h
        .http
        .post(format!("{}/__mock/tasks", h.url))
        .json(&json!({"task_id": "seed-extra", "extra": {"ok": 1, "task_status": "failed"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("task_status"));
    assert_eq!(
        h.get("/v1/images/generations/seed-extra").await.1["code"],
        1203
    );
    let r = h
        .http
        .post(format!("{}/__mock/tasks/none/status", h.url))
        .json(&json!({"status": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    h.server.stop().await;
}

// ---------------------------------------------------------------- callbacks

mod receiver {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;
    use hyper::{Request, Response};
    use hyper_util::rt::TokioIo;
    use tokio::sync::mpsc;

    pub struct Received {
        pub headers: hyper::HeaderMap,
        pub body: Bytes,
    }

    /// A tiny HTTP receiver; returns its URL and the channel of deliveries.
    pub async fn start() -> (String, mpsc::UnboundedReceiver<Received>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        async move {
                            let headers = req.headers().clone();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let _ = tx.send(Received { headers, body });
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        (url, rx)
    }
}

const SECRET: &str = "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI=";

fn verify(r: &receiver::Received) -> Value {
    let id = r.headers["webhook-id"].to_str().unwrap();
    let ts: i64 = r.headers["webhook-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((ts - now_secs()).abs() <= 300);
    let sig = r.headers["webhook-signature"].to_str().unwrap();
    assert!(
        sig.split(' ')
            .any(|s| s == sign_webhook(SECRET, id, ts, &r.body)),
        "bad signature"
    );
    serde_json::from_slice(&r.body).unwrap()
}

#[tokio::test]
async fn callbacks_are_signed_and_follow_the_lifecycle() {
    assert_eq!(
        sign_webhook(SECRET, "9876543210", 1781080794, br#"{"id":"1234567890","status":"succeeded","message":"","create_time":1781080778802,"update_time":1781080794151}"#),
        "v1,UsKlJP00XoQyOn410NM9xv34sP+Gl0jnOO9Lcpr7NJ4="
    );
    let mut config = fast_config();
    config.webhook_secret = Some(SECRET.to_string());
    let h = Harness::start(config).await;
    let (url, mut rx) = receiver::start().await;
    let created = h
        .create(json!({"prompt": "x", "callback_url": url, "external_task_id": "cb-1"}))
        .await;
    let id = created["task_id"].as_str().unwrap().to_string();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let r = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        let v = verify(&r);
        assert_eq!(v["task_id"], id.as_str());
        assert!(v.get("code").is_none(), "callbacks are not wrapped");
        assert_eq!(v["task_info"]["external_task_id"], "cb-1");
        statuses.push(v["task_status"].as_str().unwrap().to_string());
        if v["task_status"] == "succeed" {
            assert_eq!(v["task_result"]["images"].as_array().unwrap().len(), 1);
        }
    }
    assert_eq!(statuses, ["submitted", "processing", "succeed"]);
    // A control-API status change delivers too.
    h.ctl_post(
        &format!("/tasks/{id}/status"),
        json!({"status": "failed", "status_msg": "late"}),
    )
    .await;
    let r = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    let v = verify(&r);
    assert_eq!(v["task_status"], "failed");
    assert_eq!(v["task_status_msg"], "late");
    h.server.stop().await;
}

#[tokio::test]
async fn callbacks_without_secret_are_unsigned() {
    let h = Harness::fast().await;
    let (url, mut rx) = receiver::start().await;
    h.create(json!({"prompt": "x [fail]", "callback_url": url}))
        .await;
    let mut last = Value::Null;
    for _ in 0..3 {
        let r = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(r.headers.get("webhook-signature").is_none());
        last = serde_json::from_slice(&r.body).unwrap();
    }
    assert_eq!(last["task_status"], "failed");
    h.server.stop().await;
}

// ---------------------------------------------------------------- TLS, binary, blocking

#[tokio::test]
async fn tls_mode_with_emitted_ca() {
    install_provider();
    let dir = std::env::temp_dir().join(format!("klingwatch-mock-ca-{}", std::process::id()));
    let mut config = fast_config();
    config.tls = true;
    config.ca_pem_path = Some(dir.clone());
    let server = klingwatch_mock::MockServer::start(config).await.unwrap();
    assert!(server.url().starts_with("https://localhost:"));
    let pem = server.ca_pem().unwrap();
    assert_eq!(std::fs::read_to_string(&dir).unwrap(), pem);
    let _ = std::fs::remove_file(&dir);
    let cert = reqwest::Certificate::from_pem(pem.as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([cert])
        .build()
        .unwrap();
    for base in [
        server.url(),
        format!("https://127.0.0.1:{}", server.addr().port()),
    ] {
        let r = client
            .get(format!("{base}/v1/images/generations"))
            .header("Authorization", bearer())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    // A client that does not trust the CA fails.
    let untrusting = reqwest::Client::builder()
        .tls_certs_only([])
        .build()
        .unwrap();
    assert!(untrusting
        .get(format!("{}/__mock/health", server.url()))
        .send()
        .await
        .is_err());
    server.stop().await;
}

#[test]
fn binary_prints_its_url_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_klingwatch-mock"))
        .args([
            "--port",
            "0",
            "--time-scale",
            "0.01",
            "--api-key",
            "k1",
            "--access-key",
            "a1",
            "--secret-key",
            "s1",
        ])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("klingwatch-mock listening on ")
        .expect(&line)
        .to_string();
    let addr = url.strip_prefix("http://").unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET /v1/images/generations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k1\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    sigterm(&child);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "{st:?}");
            break;
        }
        assert!(Instant::now() < deadline, "did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends SIGTERM to a child process.
fn sigterm(child: &std::process::Child) {
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

#[test]
fn sigterm_right_after_the_listening_line_is_a_clean_stop() {
    use std::io::{BufRead, BufReader};
    // The handlers are installed before the line is printed, so even a SIGTERM sent the
    // instant the line is read stops the server gracefully (exit 0), never kills it. (Before,
    // the line came first: on a loaded machine CI saw the process die of the signal.)
    for _ in 0..5 {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_klingwatch-mock"))
            .args(["--port", "0"])
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("klingwatch-mock listening on "), "{line}");
        sigterm(&child);
        let st = child.wait().unwrap();
        assert!(st.success(), "{st:?}");
    }
}

#[test]
fn blocking_server_for_sync_callers() {
    use std::io::{Read, Write};
    let server = klingwatch_mock::MockServer::start_blocking(MockConfig::default()).unwrap();
    let mut s = std::net::TcpStream::connect(server.addr()).unwrap();
    write!(
        s,
        "GET /__mock/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"));
    assert!(resp.ends_with(r#"{"ok":true}"#));
    server.stop();
}

#[test]
fn args_resolve_into_config() {
    use clap::Parser;
    let dir = std::env::temp_dir().join(format!("klingwatch-mock-cfg-{}.json", std::process::id()));
    std::fs::write(&dir, r#"{"accounts":[{"access_key":"f","secret_key":"g"}],"concurrency_limit":3,"time_scale":0.5,"faults":[{"fault":"html_502","times":2}]}"#).unwrap();
    let args = klingwatch_mock::MockArgs::parse_from([
        "klingwatch-mock",
        "--config",
        dir.to_str().unwrap(),
        "--access-key",
        "a",
        "--secret-key",
        "b",
        "--time-scale",
        "0.1",
        "--port",
        "0",
    ]);
    let c = args.into_config().unwrap();
    let _ = std::fs::remove_file(&dir);
    assert_eq!(
        c.accounts,
        vec![Account::new("f", "g"), Account::new("a", "b")]
    );
    assert!(c.api_keys.is_empty());
    assert_eq!(c.concurrency_limit, 3);
    assert_eq!(c.timing.time_scale, 0.1);
    assert_eq!(c.faults.len(), 1);
    let bad = klingwatch_mock::MockArgs::parse_from(["klingwatch-mock", "--access-key", "a"]);
    assert!(bad.into_config().is_err());
    let default = klingwatch_mock::MockArgs::parse_from(["klingwatch-mock"])
        .into_config()
        .unwrap();
    assert_eq!(default.accounts.len(), 1);
    assert_eq!(default.api_keys, vec![DEFAULT_API_KEY.to_string()]);
}

#[test]
fn worker_threads_size_the_runtime() {
    use clap::Parser;
    let one = klingwatch_mock::MockArgs::parse_from(["klingwatch-mock", "--worker-threads", "1"]);
    assert_eq!(one.worker_threads, Some(1));
    assert_eq!(one.runtime().unwrap().metrics().num_workers(), 1);
    let three = klingwatch_mock::MockArgs::parse_from(["klingwatch-mock", "--worker-threads", "3"]);
    assert_eq!(three.runtime().unwrap().metrics().num_workers(), 3);
    let default = klingwatch_mock::MockArgs::parse_from(["klingwatch-mock"]);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(default.runtime().unwrap().metrics().num_workers(), cores);
    let zero =
        klingwatch_mock::MockArgs::try_parse_from(["klingwatch-mock", "--worker-threads", "0"]);
    assert!(zero.is_err(), "0 workers must be refused");
}

#[test]
fn args_embed_as_a_subcommand() {
    use clap::{Parser, Subcommand};
    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: Cmd,
    }
    #[derive(Subcommand)]
    enum Cmd {
        /// Run the emulator.
        Mock(klingwatch_mock::MockArgs),
    }
    let cli = Cli::try_parse_from(["klingwatch", "mock", "--port", "5", "--tls"]).unwrap();
    let Cmd::Mock(args) = cli.cmd;
    let c = args.into_config().unwrap();
    assert_eq!(c.port, 5);
    assert!(c.tls);
}
