//! The task model: status, kind, results, and lenient parsing of Kling task objects.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::error::{Error, ErrorKind, Result};

/// The status of a task. Unknown server values are kept as [`TaskStatus::Unknown`],
/// never rejected.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    /// Accepted, not started.
    Submitted,
    /// Running.
    Processing,
    /// Finished with results (the API's spelling).
    Succeed,
    /// Finished without results; the reason is in `status_msg`.
    Failed,
    /// A value this version does not know, kept as the server sent it.
    Unknown(String),
}

impl TaskStatus {
    /// Parses a wire value; never fails.
    pub fn parse(s: &str) -> TaskStatus {
        match s {
            "submitted" => TaskStatus::Submitted,
            "processing" => TaskStatus::Processing,
            "succeed" => TaskStatus::Succeed,
            "failed" => TaskStatus::Failed,
            other => TaskStatus::Unknown(other.to_owned()),
        }
    }

    /// The wire value.
    pub fn as_str(&self) -> &str {
        match self {
            TaskStatus::Submitted => "submitted",
            TaskStatus::Processing => "processing",
            TaskStatus::Succeed => "succeed",
            TaskStatus::Failed => "failed",
            TaskStatus::Unknown(s) => s,
        }
    }

    /// `succeed` or `failed`: the task will not change again.
    pub fn is_terminal(&self) -> bool {
        matches!(self, TaskStatus::Succeed | TaskStatus::Failed)
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for TaskStatus {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl From<&str> for TaskStatus {
    fn from(s: &str) -> Self {
        TaskStatus::parse(s)
    }
}

/// The kinds of task of kling-api.md §3, each with its endpoint path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TaskKind {
    /// `/v1/images/generations` (the default).
    #[default]
    ImageGeneration,
    /// `/v1/images/kolors-virtual-try-on`.
    VirtualTryOn,
    /// `/v1/images/editing/expand`.
    ImageExpand,
    /// `/v1/images/multi-image2image`.
    MultiImageToImage,
    /// `/v1/images/omni-image`.
    OmniImage,
    /// `/v1/videos/text2video`.
    TextToVideo,
    /// `/v1/videos/image2video`.
    ImageToVideo,
}

impl TaskKind {
    /// Every kind.
    pub const ALL: [TaskKind; 7] = [
        TaskKind::ImageGeneration,
        TaskKind::VirtualTryOn,
        TaskKind::ImageExpand,
        TaskKind::MultiImageToImage,
        TaskKind::OmniImage,
        TaskKind::TextToVideo,
        TaskKind::ImageToVideo,
    ];

    /// The stable name (`"image_generation"`, ...), shared by all three languages.
    pub const fn as_str(self) -> &'static str {
        match self {
            TaskKind::ImageGeneration => "image_generation",
            TaskKind::VirtualTryOn => "virtual_try_on",
            TaskKind::ImageExpand => "image_expand",
            TaskKind::MultiImageToImage => "multi_image_to_image",
            TaskKind::OmniImage => "omni_image",
            TaskKind::TextToVideo => "text_to_video",
            TaskKind::ImageToVideo => "image_to_video",
        }
    }

    /// The endpoint path (create, list; `/{id}` appended to query one).
    pub const fn path(self) -> &'static str {
        match self {
            TaskKind::ImageGeneration => "/v1/images/generations",
            TaskKind::VirtualTryOn => "/v1/images/kolors-virtual-try-on",
            TaskKind::ImageExpand => "/v1/images/editing/expand",
            TaskKind::MultiImageToImage => "/v1/images/multi-image2image",
            TaskKind::OmniImage => "/v1/images/omni-image",
            TaskKind::TextToVideo => "/v1/videos/text2video",
            TaskKind::ImageToVideo => "/v1/videos/image2video",
        }
    }

    /// True for the kinds whose results are videos.
    pub const fn is_video(self) -> bool {
        matches!(self, TaskKind::TextToVideo | TaskKind::ImageToVideo)
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for TaskKind {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The stable snake_case object of [`Task::to_json`], written field by field (no tree).
impl Serialize for Task {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            id: &'a str,
            kind: TaskKind,
            status: &'a TaskStatus,
            is_terminal: bool,
            status_msg: &'a Option<String>,
            external_task_id: &'a Option<String>,
            created_at_ms: Option<i64>,
            updated_at_ms: Option<i64>,
            final_unit_deduction: &'a Option<String>,
            images: &'a [Image],
            videos: &'a [Video],
            raw: &'a Map<String, Value>,
        }
        View {
            id: &self.id,
            kind: self.kind,
            status: &self.status,
            is_terminal: self.is_terminal(),
            status_msg: &self.status_msg,
            external_task_id: &self.external_task_id,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
            final_unit_deduction: &self.final_unit_deduction,
            images: &self.images,
            videos: &self.videos,
            raw: &self.raw,
        }
        .serialize(s)
    }
}

impl FromStr for TaskKind {
    type Err = Error;
    /// Accepts the stable name, its hyphenated form, or the endpoint path.
    fn from_str(s: &str) -> Result<Self> {
        let norm = s.trim().replace('-', "_");
        TaskKind::ALL
            .into_iter()
            .find(|k| {
                k.as_str() == norm
                    || k.path() == s.trim()
                    || k.path().trim_start_matches("/v1/") == s.trim()
            })
            .ok_or_else(|| {
                let names: Vec<&str> = TaskKind::ALL.iter().map(|k| k.as_str()).collect();
                Error::invalid(format!(
                    "unknown task kind {s:?}; expected one of {}",
                    names.join(", ")
                ))
            })
    }
}

/// One generated image.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Image {
    /// Position in the result (from `index`, else the array position).
    pub index: u32,
    /// Result URL (hotlink-protected, deleted after 30 days).
    pub url: String,
    /// Watermarked variant, when produced.
    pub watermark_url: Option<String>,
}

/// One generated video.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Video {
    /// The server's video id (may be empty).
    pub id: String,
    /// Result URL.
    pub url: String,
    /// Watermarked variant, when produced.
    pub watermark_url: Option<String>,
    /// Duration in seconds (a string on the wire).
    pub duration_s: Option<f64>,
}

/// A Kling task as last seen: typed fields plus the raw JSON object.
#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    /// The server's `task_id`.
    pub id: String,
    /// The kind of task (the endpoint it was read from).
    pub kind: TaskKind,
    /// The status.
    pub status: TaskStatus,
    /// `task_status_msg` (the failure reason of a failed task).
    pub status_msg: Option<String>,
    /// The caller's `task_info.external_task_id`.
    pub external_task_id: Option<String>,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: Option<i64>,
    /// Last update time, Unix milliseconds.
    pub updated_at_ms: Option<i64>,
    /// `final_unit_deduction` (units billed), a string on the wire.
    pub final_unit_deduction: Option<String>,
    /// Image results.
    pub images: Vec<Image>,
    /// Video results.
    pub videos: Vec<Video>,
    /// The whole task object as received; unknown fields preserved.
    pub raw: Map<String, Value>,
}

fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn non_empty(v: Option<&Value>) -> Option<String> {
    v.and_then(as_string).filter(|s| !s.is_empty())
}

fn ms_to_system_time(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

impl Task {
    /// Parses a task object (the `data` of a query, or a callback payload) leniently:
    /// missing or empty `task_info`/`task_result`, `id` instead of `index`, numbers sent as
    /// strings and unknown fields are all accepted. Only a missing `task_id` is an error.
    pub fn from_value(kind: TaskKind, value: Value) -> Result<Task> {
        match value {
            Value::Object(map) => Task::from_map(kind, map),
            other => Err(Error::new(
                ErrorKind::Decode,
                format!("expected a task object, got {}", json_type(&other)),
            )),
        }
    }

    /// Like [`Task::from_value`], from an already split object.
    pub fn from_map(kind: TaskKind, raw: Map<String, Value>) -> Result<Task> {
        let id = raw
            .get("task_id")
            .and_then(as_string)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Error::new(ErrorKind::Decode, "task object has no task_id"))?;
        let status = match raw.get("task_status") {
            Some(Value::String(s)) => TaskStatus::parse(s),
            Some(other) => TaskStatus::Unknown(other.to_string()),
            None => TaskStatus::Unknown(String::new()),
        };
        let status_msg = raw.get("task_status_msg").and_then(as_string);
        let external_task_id =
            non_empty(raw.get("task_info").and_then(|i| i.get("external_task_id")))
                .or_else(|| non_empty(raw.get("external_task_id")));
        let created_at_ms = raw.get("created_at").and_then(as_i64);
        let updated_at_ms = raw.get("updated_at").and_then(as_i64);
        let final_unit_deduction = raw.get("final_unit_deduction").and_then(as_string);
        let result = raw.get("task_result");
        let images = parse_images(result.and_then(|r| r.get("images")));
        let videos = parse_videos(result.and_then(|r| r.get("videos")));
        Ok(Task {
            id,
            kind,
            status,
            status_msg,
            external_task_id,
            created_at_ms,
            updated_at_ms,
            final_unit_deduction,
            images,
            videos,
            raw,
        })
    }

    /// Parses a JSON text holding one task object (a callback body, say).
    pub fn from_json_slice(kind: TaskKind, body: &[u8]) -> Result<Task> {
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            Error::new(
                ErrorKind::Decode,
                format!("task body is not valid JSON: {e}"),
            )
            .with_source(e)
        })?;
        Task::from_value(kind, value)
    }

    /// The task as one JSON object with stable snake_case keys: `id`, `kind`, `status`,
    /// `is_terminal`, `status_msg`, `external_task_id`, `created_at_ms`, `updated_at_ms`,
    /// `final_unit_deduction`, `images` (`index`, `url`, `watermark_url`), `videos` (`id`,
    /// `url`, `watermark_url`, `duration_s`) and `raw` (the object as received).
    ///
    /// This is the one serialisation every binding and the CLI start from (a binding only
    /// renames keys to its language's case style). It is the `Serialize` impl of `Task`, so
    /// `serde_json::to_writer(out, &task)` writes the same object without building a tree.
    pub fn to_json(&self) -> Value {
        // Serialising a map of JSON values into a JSON value cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// True once the task is `succeed` or `failed`.
    pub fn is_terminal(&self) -> bool {
        self.status.is_terminal()
    }

    /// Creation time.
    pub fn created_at(&self) -> Option<SystemTime> {
        self.created_at_ms.map(ms_to_system_time)
    }

    /// Last update time.
    pub fn updated_at(&self) -> Option<SystemTime> {
        self.updated_at_ms.map(ms_to_system_time)
    }

    /// Every result URL (images, then videos).
    pub fn result_urls(&self) -> impl Iterator<Item = &str> {
        self.images
            .iter()
            .map(|i| i.url.as_str())
            .chain(self.videos.iter().map(|v| v.url.as_str()))
    }

    /// Returns the task unchanged unless it failed, in which case a `task_failed` error
    /// carrying the task id and the server's message.
    pub fn raise_for_failure(self) -> Result<Task> {
        if self.status == TaskStatus::Failed {
            let msg = self
                .status_msg
                .as_deref()
                .filter(|m| !m.is_empty())
                .unwrap_or("no reason given");
            Err(Error::new(
                ErrorKind::TaskFailed,
                format!("task {} failed: {msg}", self.id),
            )
            .with_task_id(self.id.clone()))
        } else {
            Ok(self)
        }
    }

    /// Whether `other` is a newer observation of the same task than `self`: the newest
    /// `updated_at` wins; on a tie, a terminal status beats a non-terminal one.
    pub fn is_superseded_by(&self, other: &Task) -> bool {
        match (self.updated_at_ms, other.updated_at_ms) {
            (Some(a), Some(b)) if a != b => b > a,
            (Some(_), None) => false,
            _ => !self.is_terminal() || other.is_terminal(),
        }
    }
}

fn parse_images(v: Option<&Value>) -> Vec<Image> {
    let Some(Value::Array(items)) = v else {
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(pos, item)| {
            let url = item
                .get("url")
                .and_then(as_string)
                .filter(|u| !u.is_empty())?;
            let index = item
                .get("index")
                .and_then(as_i64)
                .or_else(|| item.get("id").and_then(as_i64))
                .and_then(|i| u32::try_from(i).ok())
                .unwrap_or(pos as u32);
            let watermark_url = non_empty(item.get("watermark_url"));
            Some(Image {
                index,
                url,
                watermark_url,
            })
        })
        .collect()
}

fn parse_videos(v: Option<&Value>) -> Vec<Video> {
    let Some(Value::Array(items)) = v else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let url = item
                .get("url")
                .and_then(as_string)
                .filter(|u| !u.is_empty())?;
            Some(Video {
                id: item.get("id").and_then(as_string).unwrap_or_default(),
                url,
                watermark_url: non_empty(item.get("watermark_url")),
                duration_s: item.get("duration").and_then(as_f64),
            })
        })
        .collect()
}

pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Checks a task id (or external task id) before it goes into a URL path.
///
/// Refused: empty, longer than 256 bytes, or containing `/ ? # %`, whitespace,
/// control characters, `..`, Unicode line/paragraph separators, or the Unicode look-alikes
/// of `/ \ . ? # %` that normalising proxies fold into them.
pub fn validate_task_id(id: &str) -> Result<()> {
    let what = "task id";
    if id.is_empty() {
        return Err(Error::invalid(format!("{what} is empty")));
    }
    if id.len() > 256 {
        return Err(Error::invalid(format!(
            "{what} is {} bytes long; the limit is 256",
            id.len()
        )));
    }
    if id.contains("..") {
        return Err(Error::invalid(format!(
            "{what} {:?} contains \"..\"",
            shorten(id)
        )));
    }
    if let Some(c) = id.chars().find(|c| {
        matches!(c, '/' | '?' | '#' | '%' | '\\')
            || c.is_whitespace()
            || c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200b}' | '\u{feff}')
            // Look-alikes that NFKC-normalising proxies turn into '/', '\\' or '.'.
            || matches!(
                c,
                '\u{2044}' | '\u{2215}' | '\u{29f8}' | '\u{ff0f}' | '\u{ff3c}' | '\u{fe68}'
                    | '\u{ff0e}' | '\u{2024}' | '\u{fe52}' | '\u{ff1f}' | '\u{ff03}' | '\u{ff05}'
            )
    }) {
        return Err(Error::invalid(format!(
            "{what} {:?} contains the forbidden character {c:?}",
            shorten(id)
        )));
    }
    Ok(())
}

fn shorten(s: &str) -> String {
    if s.chars().count() <= 64 {
        s.to_owned()
    } else {
        let head: String = s.chars().take(61).collect();
        format!("{head}...")
    }
}

#[cfg(test)]
mod to_json_tests {
    use super::*;

    #[test]
    fn to_json_has_the_stable_keys_and_keeps_raw() {
        let body = br#"{"task_id":"t1","task_status":"succeed","task_status_msg":"","created_at":1722769557708,"updated_at":1722769567708,"task_info":{"external_task_id":"e1"},"task_result":{"images":[{"index":0,"url":"https://x/a.png"}]},"extra_field":{"a_b":1}}"#;
        let t = Task::from_json_slice(TaskKind::ImageGeneration, body).unwrap();
        let v = t.to_json();
        assert_eq!(v["id"], "t1");
        assert_eq!(v["kind"], "image_generation");
        assert_eq!(v["status"], "succeed");
        assert_eq!(v["external_task_id"], "e1");
        assert_eq!(v["created_at_ms"], 1722769557708i64);
        assert_eq!(v["images"][0]["url"], "https://x/a.png");
        assert_eq!(v["images"][0]["watermark_url"], Value::Null);
        assert_eq!(v["raw"]["extra_field"]["a_b"], 1);
    }

    #[test]
    fn serialize_writes_every_stable_key_in_order() {
        let body = br#"{"task_id":"t2","task_status":"mystery","task_result":{"videos":[{"id":"v","url":"https://x/v.mp4","duration":"5.1"}]}}"#;
        let t = Task::from_json_slice(TaskKind::TextToVideo, body).unwrap();
        let text = serde_json::to_string(&t).unwrap();
        assert_eq!(text, t.to_json().to_string());
        let v: Value = serde_json::from_str(&text).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "id",
                "kind",
                "status",
                "is_terminal",
                "status_msg",
                "external_task_id",
                "created_at_ms",
                "updated_at_ms",
                "final_unit_deduction",
                "images",
                "videos",
                "raw"
            ]
        );
        assert_eq!(v["kind"], "text_to_video");
        assert_eq!(v["status"], "mystery");
        assert_eq!(v["is_terminal"], false);
        assert_eq!(v["videos"][0]["duration_s"], 5.1);
        assert_eq!(v["videos"][0]["watermark_url"], Value::Null);
        assert_eq!(v["raw"]["task_status"], "mystery");
    }
}
