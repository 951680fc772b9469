//! HTTP plumbing: the response body type (including a deliberately truncated body), the Kling
//! JSON envelope and small response builders.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use rand::Rng;

/// Response body of the emulator.
#[derive(Debug)]
pub(crate) enum MockBody {
    /// A complete body.
    Full(Option<Bytes>),
    /// Sends `part`, waits briefly (so that hyper flushes the head and the part), then fails
    /// so that the connection is aborted before the advertised Content-Length is reached.
    Truncated(Option<Bytes>, Option<Pin<Box<tokio::time::Sleep>>>),
}

impl MockBody {
    pub(crate) fn full(b: impl Into<Bytes>) -> Self {
        let b = b.into();
        if b.is_empty() {
            MockBody::Full(None)
        } else {
            MockBody::Full(Some(b))
        }
    }
}

/// Error used to abort a truncated body.
#[derive(Debug)]
pub(crate) struct Truncated;
impl std::fmt::Display for Truncated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("truncated body (injected fault)")
    }
}
impl std::error::Error for Truncated {}

impl Body for MockBody {
    type Data = Bytes;
    type Error = Truncated;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Truncated>>> {
        match &mut *self {
            MockBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            MockBody::Truncated(b, pause) => {
                if let Some(b) = b.take() {
                    return Poll::Ready(Some(Ok(Frame::data(b))));
                }
                let sleep = pause.get_or_insert_with(|| {
                    Box::pin(tokio::time::sleep(std::time::Duration::from_millis(50)))
                });
                match sleep.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => Poll::Ready(Some(Err(Truncated))),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, MockBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            MockBody::Full(None) => SizeHint::with_exact(0),
            MockBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            MockBody::Truncated(..) => SizeHint::default(),
        }
    }
}

/// The response type of every handler.
pub(crate) type Resp = Response<MockBody>;

/// Result of a service call: `Err` makes hyper drop the connection without a response.
pub(crate) type ServiceResult = Result<Resp, DropConnection>;

/// Marker error: close the connection without answering (the `drop_connection` fault).
#[derive(Debug)]
pub(crate) struct DropConnection;
impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped (injected fault)")
    }
}
impl std::error::Error for DropConnection {}

const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// A fresh uuid-shaped request id.
pub(crate) fn request_id() -> String {
    let mut b = [0u8; 36];
    write_request_id(&mut b);
    String::from_utf8_lossy(&b).into_owned()
}

/// A random request id (`8-4-4-4-12` lowercase hex digits) written into `out`.
fn write_request_id(out: &mut [u8; 36]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut v: u128 = rand::rng().random();
    for (i, slot) in out.iter_mut().enumerate().rev() {
        if matches!(i, 8 | 13 | 18 | 23) {
            *slot = b'-';
        } else {
            *slot = HEX[(v & 0xf) as usize];
            v >>= 4;
        }
    }
}

/// Build a raw response with a body and content type.
pub(crate) fn raw(
    status: StatusCode,
    content_type: Option<&'static str>,
    body: impl Into<Bytes>,
) -> Resp {
    let body = body.into();
    let mut r = Response::new(MockBody::full(body));
    *r.status_mut() = status;
    if let Some(ct) = content_type {
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    r
}

/// A JSON response from already-serialized bytes.
pub(crate) fn json_bytes(status: StatusCode, body: Vec<u8>) -> Resp {
    let mut r = Response::new(MockBody::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, JSON);
    r
}

/// A JSON response from a value (control API).
pub(crate) fn json_value(status: StatusCode, v: &serde_json::Value) -> Resp {
    json_bytes(
        status,
        serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec()),
    )
}

/// The success envelope whose `data` JSON `write_data` appends to the body (about
/// `data_len` bytes), so the data is serialized straight into the response body.
pub(crate) fn envelope_ok_with(data_len: usize, write_data: impl FnOnce(&mut Vec<u8>)) -> Resp {
    let mut rid = [0u8; 36];
    write_request_id(&mut rid);
    let mut out = Vec::with_capacity(data_len + 96);
    out.extend_from_slice(b"{\"code\":0,\"message\":\"SUCCEED\",\"request_id\":\"");
    out.extend_from_slice(&rid);
    out.extend_from_slice(b"\",\"data\":");
    write_data(&mut out);
    out.push(b'}');
    json_bytes(StatusCode::OK, out)
}

/// The success envelope around a value.
pub(crate) fn envelope_ok(data: &serde_json::Value) -> Resp {
    // A `Value` always serializes (its keys are strings).
    envelope_ok_with(128, |out| {
        let _ = serde_json::to_writer(out, data);
    })
}

/// Body bytes of an error envelope (no `data`).
pub(crate) fn envelope_err_body(code: i64, message: &str) -> Vec<u8> {
    let v = serde_json::json!({"code": code, "message": message, "request_id": request_id()});
    serde_json::to_vec(&v).unwrap_or_default()
}

/// An error envelope with the given HTTP status.
pub(crate) fn envelope_err(status: StatusCode, code: i64, message: &str) -> Resp {
    json_bytes(status, envelope_err_body(code, message))
}

/// Set Content-Length explicitly (used by the truncated-body fault).
pub(crate) fn set_content_length(r: &mut Resp, len: usize) {
    r.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(len as u64));
}

/// Default message of a Kling business code.
pub(crate) fn default_message(code: i64) -> &'static str {
    match code {
        0 => "SUCCEED",
        1000 => "authentication failed",
        1001 => "authorization is empty",
        1002 => "authorization is invalid",
        1003 => "token not yet valid",
        1004 => "token expired",
        1100 => "account exception",
        1101 => "account in arrears",
        1102 => "Account balance not enough",
        1103 => "unauthorized access to requested resource",
        1200 => "invalid request parameters",
        1201 => "invalid parameter",
        1202 => "invalid request method",
        1203 => "requested resource does not exist",
        1300 => "trigger platform strategy",
        1301 => "trigger content security policy",
        1302 => "too many requests",
        1303 => "parallel task over resource pack limit",
        1304 => "trigger IP whitelist policy",
        5000 => "server internal error",
        5001 => "server temporarily unavailable",
        5002 => "server internal timeout",
        _ => "error",
    }
}

/// Documented HTTP status of a Kling business code.
pub(crate) fn default_status(code: i64) -> StatusCode {
    match code {
        1000..=1004 => StatusCode::UNAUTHORIZED,
        1100..=1102 | 1302..=1304 => StatusCode::TOO_MANY_REQUESTS,
        1103 => StatusCode::FORBIDDEN,
        1200 | 1201 | 1300 | 1301 => StatusCode::BAD_REQUEST,
        1202 | 1203 => StatusCode::NOT_FOUND,
        5001 => StatusCode::SERVICE_UNAVAILABLE,
        5002 => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Decode `%XX` escapes (and nothing else); invalid escapes are kept verbatim.
pub(crate) fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    decode(s, false)
}

fn decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                    }
                    _ => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse an `application/x-www-form-urlencoded` query string.
pub(crate) fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k, true), decode(v, true))
        })
        .collect()
}

#[cfg(test)]
mod request_id_tests {
    #[test]
    fn request_ids_are_random_uuid_shaped_hex() {
        let a = super::request_id();
        let b = super::request_id();
        assert_ne!(a, b);
        for id in [a, b] {
            let groups: Vec<&str> = id.split('-').collect();
            assert_eq!(
                groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
                [8, 4, 4, 4, 12],
                "{id}"
            );
            assert!(
                id.chars()
                    .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c)),
                "{id}"
            );
        }
    }
}
