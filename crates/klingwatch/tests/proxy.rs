//! The client honours the standard proxy variables (its own test binary: it sets the env).

use std::io::{Read, Write};
use std::net::TcpListener;

#[tokio::test]
async fn http_proxy_env_is_honoured() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let n = sock.read(&mut buf).unwrap();
        let body = r#"{"code":1203,"message":"task not found","request_id":"via-proxy"}"#;
        let resp = format!(
            "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        sock.write_all(resp.as_bytes()).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    // SAFETY: this test binary has no other test touching the environment.
    unsafe {
        std::env::set_var("HTTP_PROXY", &proxy);
        std::env::set_var("HTTPS_PROXY", &proxy);
        std::env::remove_var("NO_PROXY");
    }
    let client = klingwatch::Client::builder()
        .access_key("ak")
        .secret_key("sk")
        .base_url("http://kling.invalid")
        .build()
        .unwrap();
    let err = client.get_image_task("abc").await.unwrap_err();
    assert_eq!(
        (err.kind().as_str(), err.request_id()),
        ("not_found", Some("via-proxy"))
    );
    let request = seen.join().unwrap();
    assert!(
        request.starts_with("GET http://kling.invalid/v1/images/generations/abc HTTP/1.1"),
        "{request}"
    );
}
