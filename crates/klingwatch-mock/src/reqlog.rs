//! The bounded request log of `/v1` requests, readable through `GET /__mock/requests`.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde_json::{json, Value};

/// Maximum number of entries kept; older ones are dropped.
pub(crate) const LOG_CAPACITY: usize = 10_000;

/// One logged request.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub method: String,
    pub path: String,
    pub query: String,
    pub auth: &'static str,
    pub status: u16,
    pub fault: Option<&'static str>,
    pub at_ms: i64,
}

/// A ring buffer of the last [`LOG_CAPACITY`] requests.
pub(crate) struct RequestLog {
    entries: Mutex<VecDeque<Entry>>,
}

impl RequestLog {
    pub(crate) fn new() -> Self {
        RequestLog {
            entries: Mutex::new(VecDeque::with_capacity(1024)),
        }
    }

    pub(crate) fn push(&self, e: Entry) {
        let mut g = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if g.len() >= LOG_CAPACITY {
            g.pop_front();
        }
        g.push_back(e);
    }

    pub(crate) fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// `{"requests":[...]}`, oldest first.
    pub(crate) fn to_json(&self) -> Value {
        let g = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let items: Vec<Value> = g
            .iter()
            .map(|e| {
                json!({
                    "method": e.method,
                    "path": e.path,
                    "query": e.query,
                    "auth": e.auth,
                    "status": e.status,
                    "fault": e.fault,
                    "at_ms": e.at_ms,
                })
            })
            .collect();
        json!({ "requests": items })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded() {
        let log = RequestLog::new();
        for i in 0..(LOG_CAPACITY + 5) {
            log.push(Entry {
                method: "GET".into(),
                path: format!("/v1/x/{i}"),
                query: String::new(),
                auth: "ok",
                status: 200,
                fault: None,
                at_ms: i as i64,
            });
        }
        let v = log.to_json();
        let reqs = v["requests"].as_array().unwrap();
        assert_eq!(reqs.len(), LOG_CAPACITY);
        assert_eq!(reqs[0]["path"], "/v1/x/5");
    }
}
