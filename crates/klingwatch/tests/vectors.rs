//! The shared, language-neutral vectors of `tests/vectors/`: JWTs made by the official
//! sample's library, the business-code table, and real and documented response bodies.

use klingwatch::error::{code_info, CODE_TABLE};
use klingwatch::{sign_jwt, Task, TaskKind};
use serde_json::Value;

fn vectors(name: &str) -> Value {
    let path = format!("{}/../../tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("vector file"))
        .expect("vector JSON")
}

#[test]
fn sign_jwt_reproduces_every_pyjwt_vector_byte_for_byte() {
    let v = vectors("jwt.json");
    let cases = v["vectors"].as_array().unwrap();
    assert!(cases.len() >= 3);
    for c in cases {
        let token = sign_jwt(
            c["access_key"].as_str().unwrap(),
            c["secret_key"].as_str().unwrap(),
            c["now"].as_i64().unwrap(),
            1800,
        )
        .unwrap();
        assert_eq!(
            token,
            c["token"].as_str().unwrap(),
            "vector for {}",
            c["access_key"]
        );
    }
}

#[test]
fn sign_jwt_escapes_non_ascii_like_python_json() {
    // PyJWT serialises with json.dumps(ensure_ascii=True): "é" becomes "\u00e9".
    let token = sign_jwt("ak-é", "sk", 1_700_000_000, 1800).unwrap();
    let payload = token.split('.').nth(1).unwrap();
    use base64::Engine;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    assert_eq!(
        String::from_utf8(json).unwrap(),
        r#"{"iss":"ak-\u00e9","exp":1700001800,"nbf":1699999995}"#
    );
}

#[test]
fn sign_jwt_rejects_empty_keys() {
    assert_eq!(
        sign_jwt("", "sk", 1, 1800).unwrap_err().kind().as_str(),
        "config"
    );
    assert_eq!(
        sign_jwt("ak", "", 1, 1800).unwrap_err().kind().as_str(),
        "config"
    );
}

#[test]
fn code_table_matches_errors_json_row_by_row() {
    let v = vectors("errors.json");
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), CODE_TABLE.len(), "one table, same rows");
    for r in rows {
        let code = r["code"].as_i64().unwrap();
        let info = code_info(code).unwrap_or_else(|| panic!("code {code} missing from CODE_TABLE"));
        assert_eq!(
            info.http_status as u64,
            r["http_status"].as_u64().unwrap(),
            "status of {code}"
        );
        assert_eq!(
            info.kind.as_str(),
            r["kind"].as_str().unwrap(),
            "kind of {code}"
        );
        assert_eq!(
            info.retryable,
            r["retryable"].as_bool().unwrap(),
            "retryable of {code}"
        );
        assert_eq!(
            info.action.as_str(),
            r["action"].as_str().unwrap(),
            "action of {code}"
        );
        let e = klingwatch::Error::from_api(info.http_status, Some(code), "m", Some("rid".into()));
        assert_eq!(e.kind(), info.kind);
        assert_eq!(e.is_retryable(), info.retryable);
        assert_eq!(e.request_id(), Some("rid"));
    }
}

#[test]
fn unknown_codes_fall_back_on_http_status() {
    for (status, kind, retryable) in [
        (429, "rate_limited", true),
        (502, "server", true),
        (503, "server", true),
        (504, "server", true),
        (500, "server", true),
        (400, "invalid_request", false),
        (404, "not_found", false),
    ] {
        let e = klingwatch::Error::from_api(status, Some(9999), "x", None);
        assert_eq!(
            (e.kind().as_str(), e.is_retryable()),
            (kind, retryable),
            "HTTP {status}"
        );
    }
}

#[test]
fn failed_task_is_a_value_until_raised() {
    let v = vectors("responses.json");
    let case = &v["cases"][0];
    let task = Task::from_value(TaskKind::ImageGeneration, case["body"]["data"].clone()).unwrap();
    assert_eq!(task.status.as_str(), "failed");
    let err = task.raise_for_failure().unwrap_err();
    assert_eq!(err.kind().as_str(), "task_failed");
    assert_eq!(err.task_id(), Some("833446756000000"));
    assert!(err.message().contains("Image pixel is invalid"));
}

#[test]
fn webhook_vector_of_the_api_contract_verifies() {
    let secret = "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI=";
    let body = br#"{"id":"1234567890","status":"succeeded","message":"","create_time":1781080778802,"update_time":1781080794151}"#;
    let sig = "v1,UsKlJP00XoQyOn410NM9xv34sP+Gl0jnOO9Lcpr7NJ4=";
    assert_eq!(
        klingwatch::sign_webhook(secret, "9876543210", 1781080794, body).unwrap(),
        sig
    );
    let headers = [
        ("webhook-id", "9876543210"),
        ("Webhook-Timestamp", "1781080794"),
        ("webhook-signature", sig),
    ];
    let tol = std::time::Duration::from_secs(300);
    klingwatch::verify_webhook_at(secret, &headers, body, tol, 1781080794 + 299).unwrap();
    // Key rotation: a stale signature beside the right one still verifies.
    let rotated = format!("v1,AAAA {sig}");
    let h2 = [
        ("webhook-id", "9876543210"),
        ("webhook-timestamp", "1781080794"),
        ("webhook-signature", rotated.as_str()),
    ];
    klingwatch::verify_webhook_at(secret, &h2, body, tol, 1781080794).unwrap();
    let bad = |h: &[(&str, &str)], b: &[u8], now: i64| {
        klingwatch::verify_webhook_at(secret, h, b, tol, now)
            .unwrap_err()
            .kind()
            .as_str()
    };
    assert_eq!(
        bad(&headers, b"{}", 1781080794),
        "signature",
        "swapped body"
    );
    assert_eq!(bad(&headers, body, 1781080794 + 301), "signature", "stale");
    assert_eq!(bad(&headers, body, 1781080794 - 301), "signature", "future");
    let truncated = [
        ("webhook-id", "9876543210"),
        ("webhook-timestamp", "1781080794"),
        ("webhook-signature", &sig[..20]),
    ];
    assert_eq!(bad(&truncated, body, 1781080794), "signature", "truncated");
    let empty = [
        ("webhook-id", "9876543210"),
        ("webhook-timestamp", "1781080794"),
        ("webhook-signature", ""),
    ];
    assert_eq!(bad(&empty, body, 1781080794), "signature", "empty header");
    let other =
        klingwatch::verify_webhook_at("whsec_b3RoZXJzZWNyZXQ=", &headers, body, tol, 1781080794)
            .unwrap_err();
    assert_eq!(other.kind().as_str(), "signature", "wrong secret");
}

#[test]
fn secrets_never_show_in_debug_output() {
    let creds = klingwatch::Credentials::access_key("AK_VISIBLE", "SK_TOP_SECRET_VALUE");
    let dbg = format!("{creds:?}");
    assert!(
        dbg.contains("AK_VISIBLE") && !dbg.contains("SK_TOP_SECRET_VALUE"),
        "{dbg}"
    );
    let key = klingwatch::Credentials::api_key("API_KEY_SECRET_VALUE");
    assert!(!format!("{key:?}").contains("API_KEY_SECRET_VALUE"));
    let client = klingwatch::Client::builder()
        .access_key("AK_VISIBLE")
        .secret_key("SK_TOP_SECRET_VALUE")
        .base_url("http://127.0.0.1:9")
        .build()
        .unwrap();
    let token = client.token().unwrap();
    let dbg = format!("{client:?}");
    assert!(
        !dbg.contains("SK_TOP_SECRET_VALUE") && !dbg.contains(&token),
        "{dbg}"
    );
}

#[test]
fn explicit_credentials_win_and_missing_ones_name_the_env_variables() {
    if std::env::var("KLING_SECRET_KEY").is_err() {
        let e = klingwatch::Credentials::resolve(Some("ak"), None, None).unwrap_err();
        assert_eq!(e.kind().as_str(), "config");
        assert!(e.message().contains("KLING_SECRET_KEY"), "{}", e.message());
    }
    let ok = klingwatch::Credentials::resolve(Some("ak"), Some("sk"), Some("key")).unwrap();
    assert!(matches!(ok, klingwatch::Credentials::AccessKey { .. }));
}

#[test]
fn task_kinds_have_their_paths_and_names() {
    use std::str::FromStr;
    assert_eq!(TaskKind::default().path(), "/v1/images/generations");
    for k in TaskKind::ALL {
        assert_eq!(TaskKind::from_str(k.as_str()).unwrap(), k);
        assert_eq!(TaskKind::from_str(k.path()).unwrap(), k);
    }
    assert_eq!(
        TaskKind::from_str("nope").unwrap_err().kind().as_str(),
        "invalid_request"
    );
}
