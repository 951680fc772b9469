//! Property-based fuzzing (proptest) of everything that reads untrusted bytes: the response
//! parser, the callback parser, the webhook verifier and the task-id validator. None may
//! panic; every failure is a typed error; a valid signature over any body verifies and any
//! single-byte change of the body is refused.

mod common;

use std::time::Duration;

use common::vector;
use klingwatch::{
    parse_callback, sign_webhook, validate_task_id, verify_webhook_at, ErrorKind, Task, TaskKind,
};
use proptest::prelude::*;
use serde_json::Value;

fn seed_bodies() -> Vec<Vec<u8>> {
    vector("responses.json")["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| serde_json::to_vec(&c["body"]).unwrap())
        .collect()
}

/// A seed body with random byte edits: close to valid JSON, so the parser's deeper paths run.
fn mutated_body() -> impl Strategy<Value = Vec<u8>> {
    let seeds = seed_bodies();
    (
        0..seeds.len(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..8),
    )
        .prop_map(move |(i, edits)| {
            let mut b = seeds[i].clone();
            for (at, byte, op) in edits {
                if b.is_empty() {
                    b.push(byte);
                    continue;
                }
                let at = at.index(b.len());
                match op {
                    0 => b[at] = byte,
                    1 => b.insert(at, byte),
                    _ => {
                        b.remove(at);
                    }
                }
            }
            b
        })
}

/// Random JSON values in the places the parser reads, with the wrong types as often as not.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        ".{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("task_id".to_string()),
                    Just("task_status".to_string()),
                    Just("task_result".to_string()),
                    Just("images".to_string()),
                    Just("videos".to_string()),
                    Just("url".to_string()),
                    Just("index".to_string()),
                    Just("created_at".to_string()),
                    Just("updated_at".to_string()),
                    Just("task_info".to_string()),
                    Just("external_task_id".to_string()),
                    Just("data".to_string()),
                    Just("code".to_string()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn callback_parser_never_panics_on_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err(e) = parse_callback(&body) {
            prop_assert!(matches!(e.kind(), ErrorKind::Decode | ErrorKind::InvalidRequest), "{e:?}");
        }
    }

    #[test]
    fn parsers_never_panic_on_mutated_bodies(body in mutated_body()) {
        let _ = parse_callback(&body);
        for kind in [TaskKind::ImageGeneration, TaskKind::TextToVideo, TaskKind::OmniImage] {
            let _ = Task::from_json_slice(kind, &body);
        }
    }

    #[test]
    fn task_parser_never_panics_on_odd_types(v in json_value(), data in json_value()) {
        let _ = Task::from_value(TaskKind::ImageGeneration, v.clone());
        let wrapped = serde_json::json!({"code": 0, "data": data, "message": "x"});
        let _ = Task::from_json_slice(TaskKind::ImageGeneration, &serde_json::to_vec(&wrapped).unwrap());
        let _ = parse_callback(&serde_json::to_vec(&v).unwrap());
    }

    #[test]
    fn webhook_verifier_never_panics_and_refuses_garbage(
        id in ".{0,40}", ts in ".{0,24}", sig in ".{0,120}",
        body in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let headers = [("webhook-id", id.as_str()), ("webhook-timestamp", ts.as_str()), ("webhook-signature", sig.as_str())];
        let r = verify_webhook_at("whsec_c2VjcmV0", &headers, &body, Duration::from_secs(300), 1_700_000_000);
        if let Err(e) = r {
            prop_assert_eq!(e.kind(), ErrorKind::Signature);
        } else {
            prop_assert!(false, "a random signature verified");
        }
    }

    #[test]
    fn signed_bodies_verify_and_any_edit_is_refused(
        body in prop::collection::vec(any::<u8>(), 1..256),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let now = 1_700_000_000;
        let secret = "whsec_c2VjcmV0";
        let sig = sign_webhook(secret, "msg_1", now, &body).unwrap();
        let ts = now.to_string();
        let headers = [("webhook-id", "msg_1"), ("webhook-timestamp", ts.as_str()), ("webhook-signature", sig.as_str())];
        prop_assert!(verify_webhook_at(secret, &headers, &body, Duration::from_secs(300), now).is_ok());
        let mut edited = body.clone();
        let i = at.index(edited.len());
        edited[i] ^= flip;
        let e = verify_webhook_at(secret, &headers, &edited, Duration::from_secs(300), now).unwrap_err();
        prop_assert_eq!(e.kind(), ErrorKind::Signature);
    }

    #[test]
    fn task_id_validation_never_panics(id in "\\PC{0,64}") {
        if validate_task_id(&id).is_ok() {
            prop_assert!(!id.contains('/') && !id.contains('?') && !id.contains('#') && !id.contains("..") && id != ".", "{id:?} accepted");
        }
    }
}

/// A leaf of any JSON type (strings often numeric, empty or URL-like).
fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-3i64..5).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        // Exact in binary: text and map parses read the same float.
        (-4_000_000i64..4_000_000).prop_map(|q| Value::from(q as f64 / 4.0)),
        Just(Value::from("")),
        Just(Value::from(" 7 ")),
        Just(Value::from("2.5")),
        "[a-z:/.]{1,12}".prop_map(Value::from),
        Just(Value::from("第1号 ✓ \"q\" \\ \u{1}")),
    ]
}

fn object_of(keys: &'static [&'static str], value: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    prop::collection::btree_map(
        prop::sample::select(keys).prop_map(str::to_owned),
        value,
        0..6,
    )
    .prop_map(|m| Value::Object(m.into_iter().collect()))
    .boxed()
}

/// Task objects shaped like the API's, with every field often of the wrong type: the typed
/// fields read from the text and from a parsed map must agree.
fn task_like() -> impl Strategy<Value = Value> {
    let entry = object_of(
        &["url", "index", "id", "watermark_url", "duration", "other"],
        leaf().boxed(),
    );
    let entries = prop_oneof![
        3 => prop::collection::vec(prop_oneof![3 => entry, 1 => leaf()], 0..4).prop_map(Value::from),
        1 => leaf(),
    ]
    .boxed();
    let result =
        prop_oneof![3 => object_of(&["images", "videos", "other"], entries), 1 => leaf().boxed()]
            .boxed();
    let info = prop_oneof![
        2 => object_of(&["external_task_id", "other"], leaf().boxed()),
        1 => leaf().boxed()
    ]
    .boxed();
    (
        prop::collection::btree_map(
            prop::sample::select(
                &[
                    "task_id",
                    "task_status",
                    "task_status_msg",
                    "external_task_id",
                    "created_at",
                    "updated_at",
                    "final_unit_deduction",
                    "watermark_info",
                    "other",
                ][..],
            )
            .prop_map(str::to_owned),
            leaf(),
            0..9,
        ),
        prop::option::of(result),
        prop::option::of(info),
    )
        .prop_map(|(m, result, info)| {
            let mut m: serde_json::Map<String, Value> = m.into_iter().collect();
            if let Some(r) = result {
                m.insert("task_result".into(), r);
            }
            if let Some(i) = info {
                m.insert("task_info".into(), i);
            }
            Value::Object(m)
        })
}

/// The typed fields of a parse (the raw text is compared separately: from a map it is
/// re-serialised).
fn typed(t: &klingwatch::Result<Task>) -> String {
    match t {
        Ok(t) => format!(
            "{:?}",
            (
                &t.id,
                &t.status,
                &t.status_msg,
                &t.external_task_id,
                t.created_at_ms,
                t.updated_at_ms,
                &t.final_unit_deduction,
                &t.images,
                &t.videos
            )
        ),
        Err(e) => format!("error {:?}", e.kind()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn text_and_map_parses_agree(v in task_like()) {
        let text = serde_json::to_vec(&v).unwrap();
        let from_text = Task::from_json_slice(TaskKind::ImageGeneration, &text);
        let from_map = Task::from_value(TaskKind::ImageGeneration, v.clone());
        prop_assert_eq!(typed(&from_text), typed(&from_map), "{}", String::from_utf8_lossy(&text));
        if let Ok(t) = &from_text {
            prop_assert_eq!(t.raw.as_str().as_bytes(), &text[..]);
        }
    }
}

#[test]
fn a_repeated_key_keeps_its_last_value_in_every_nested_object() {
    let body = br#"{"task_id":"a","task_id":"b","task_info":{"external_task_id":"x","external_task_id":"y"},
        "task_result":{"images":[{"url":"u1","url":"u2","index":1,"index":"3"}],"images":[{"url":"u3","url":"u4"},7,{"url":""},{"url":"u5","watermark_url":"w","watermark_url":null}],
        "videos":[{"id":"v","url":"vu","duration":"1.5","duration":2}]}}"#;
    let t = Task::from_json_slice(TaskKind::ImageGeneration, body).unwrap();
    assert_eq!(t.id, "b");
    assert_eq!(t.external_task_id.as_deref(), Some("y"));
    let images: Vec<_> = t
        .images
        .iter()
        .map(|i| (i.index, i.url.as_str(), i.watermark_url.as_deref()))
        .collect();
    assert_eq!(images, vec![(0, "u4", None), (3, "u5", None)]);
    assert_eq!(t.videos.len(), 1);
    assert_eq!(t.videos[0].duration_s, Some(2.0));
    let v: Value = serde_json::from_slice(body).unwrap();
    let m = Task::from_value(TaskKind::ImageGeneration, v).unwrap();
    assert_eq!(typed(&Ok(t)), typed(&Ok(m)));
}
