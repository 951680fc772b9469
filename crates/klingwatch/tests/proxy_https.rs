//! An `https://` base URL with HTTPS_PROXY set goes through the proxy (a CONNECT tunnel), not
//! on the direct HTTP/2 connection (its own test binary: it sets the env).

use std::io::{Read, Write};
use std::net::TcpListener;

#[tokio::test]
async fn https_proxy_env_is_honoured_for_https_base_urls() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    let seen = std::thread::spawn(move || {
        // Gives up after 10 s (a client that bypassed the proxy never connects).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut sock = loop {
            match listener.accept() {
                Ok((sock, _)) => break sock,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                Err(_) => return String::from("(no connection to the proxy)"),
            }
        };
        sock.set_nonblocking(false).unwrap();
        let mut buf = [0u8; 4096];
        let n = sock.read(&mut buf).unwrap();
        // Refuse the tunnel: the client reports a connection error.
        sock.write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    // SAFETY: this test binary has no other test touching the environment.
    unsafe {
        std::env::set_var("HTTPS_PROXY", &proxy);
        std::env::remove_var("NO_PROXY");
        std::env::remove_var("no_proxy");
    }
    let client = klingwatch::Client::builder()
        .access_key("ak")
        .secret_key("sk")
        .base_url("https://kling.invalid")
        .max_retries(0)
        .build()
        .unwrap();
    let err = client.get_image_task("abc").await.unwrap_err();
    assert_eq!(err.kind().as_str(), "connection", "{err}");
    let request = seen.join().unwrap();
    assert!(
        request.starts_with("CONNECT kling.invalid:443 HTTP/1.1"),
        "{request}"
    );
}
