//! Signed callbacks from the emulator, verified and parsed by the core.

mod common;

use std::time::Duration;

use common::H;
use klingwatch::{
    parse_callback, verify_webhook, verify_webhook_at, ImageGenerationRequest, TaskStatus,
};
use klingwatch_mock::{MockConfig, Timing};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const SECRET: &str = "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI=";
const TOL: Duration = Duration::from_secs(300);

struct Received {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// A minimal HTTP/1.1 receiver: one request per connection, answers 200.
async fn receiver() -> (String, mpsc::UnboundedReceiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break p + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let headers: Vec<(String, String)> = head
                    .lines()
                    .skip(1)
                    .filter_map(|l| {
                        l.split_once(':')
                            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    })
                    .collect();
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                while buf.len() < head_end + len {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body = buf[head_end..(head_end + len).min(buf.len())].to_vec();
                let _ = sock
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
                let _ = tx.send(Received { headers, body });
            });
        }
    });
    (format!("http://{addr}/callback"), rx)
}

fn pairs(r: &Received) -> Vec<(&str, &str)> {
    r.headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulator_callbacks_verify_and_parse() {
    let config = MockConfig {
        webhook_secret: Some(SECRET.to_owned()),
        timing: Timing {
            processing_after: Duration::from_millis(50),
            finish_after: Duration::from_millis(150),
            time_scale: 1.0,
        },
        ..Default::default()
    };
    let h = H::start_with(config).await;
    let (url, mut rx) = receiver().await;
    let req = ImageGenerationRequest {
        callback_url: Some(url),
        ..ImageGenerationRequest::new("a fox")
    };
    let created = h.client().create_image_task(&req).await.unwrap();
    let mut statuses = Vec::new();
    loop {
        let r = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a callback arrives")
            .unwrap();
        verify_webhook(SECRET, &pairs(&r), &r.body, TOL).expect("signature verifies");
        // Tampering is detected.
        let mut tampered = r.body.clone();
        tampered.extend_from_slice(b" ");
        assert_eq!(
            verify_webhook(SECRET, &pairs(&r), &tampered, TOL)
                .unwrap_err()
                .kind()
                .as_str(),
            "signature"
        );
        let task = parse_callback(&r.body).expect("callback parses");
        assert_eq!(task.id, created.id);
        statuses.push(task.status.clone());
        if task.is_terminal() {
            assert_eq!(task.status, TaskStatus::Succeed);
            assert!(!task.images.is_empty());
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&TaskStatus::Succeed));
}

const VEC_BODY: &[u8] = br#"{"id":"1234567890","status":"succeeded","message":"","create_time":1781080778802,"update_time":1781080794151}"#;
const VEC_SIG: &str = "v1,UsKlJP00XoQyOn410NM9xv34sP+Gl0jnOO9Lcpr7NJ4=";

fn vec_headers(sig: &str) -> Vec<(&str, &str)> {
    vec![
        ("webhook-id", "9876543210"),
        ("webhook-timestamp", "1781080794"),
        ("webhook-signature", sig),
    ]
}

#[test]
fn standard_webhooks_vector_verifies() {
    let now = 1781080794;
    verify_webhook_at(SECRET, &vec_headers(VEC_SIG), VEC_BODY, TOL, now).unwrap();
    // Several signatures, one matching.
    let multi = format!("v1,AAAA {VEC_SIG}");
    verify_webhook_at(SECRET, &vec_headers(&multi), VEC_BODY, TOL, now).unwrap();
    assert_eq!(
        klingwatch::sign_webhook(SECRET, "9876543210", now, VEC_BODY).unwrap(),
        VEC_SIG
    );
}

#[test]
fn webhook_rejections_are_signature_errors() {
    let now = 1781080794;
    let kind = |r: klingwatch::Result<()>| r.unwrap_err().kind().as_str();
    let other_secret = "whsec_b3RoZXJzZWNyZXRvdGhlcnNlY3JldG90aGVyMTI=";
    assert_eq!(
        kind(verify_webhook_at(
            other_secret,
            &vec_headers(VEC_SIG),
            VEC_BODY,
            TOL,
            now
        )),
        "signature"
    );
    assert_eq!(
        kind(verify_webhook_at(
            SECRET,
            &vec_headers(VEC_SIG),
            VEC_BODY,
            TOL,
            now + 301
        )),
        "signature"
    );
    assert_eq!(
        kind(verify_webhook_at(
            SECRET,
            &vec_headers(VEC_SIG),
            VEC_BODY,
            TOL,
            now - 301
        )),
        "signature"
    );
    let swapped = br#"{"id":"1234567890","status":"failed","message":"","create_time":1781080778802,"update_time":1781080794151}"#;
    assert_eq!(
        kind(verify_webhook_at(
            SECRET,
            &vec_headers(VEC_SIG),
            swapped,
            TOL,
            now
        )),
        "signature"
    );
    let other_id = vec![
        ("webhook-id", "1"),
        ("webhook-timestamp", "1781080794"),
        ("webhook-signature", VEC_SIG),
    ];
    assert_eq!(
        kind(verify_webhook_at(SECRET, &other_id, VEC_BODY, TOL, now)),
        "signature"
    );
    let missing = vec![
        ("webhook-id", "9876543210"),
        ("webhook-timestamp", "1781080794"),
    ];
    assert_eq!(
        kind(verify_webhook_at(SECRET, &missing, VEC_BODY, TOL, now)),
        "signature"
    );
    // Within tolerance still verifies.
    verify_webhook_at(SECRET, &vec_headers(VEC_SIG), VEC_BODY, TOL, now + 300).unwrap();
}
