//! The task model: status, kind, results, and lenient parsing of Kling task objects.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
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
        self.view(RawOut::Object(&self.raw)).serialize(s)
    }
}

/// [`Task::with_raw_as_text`].
pub struct RawAsText<'a>(&'a Task);

impl Serialize for RawAsText<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.view(RawOut::Text(self.0.raw.as_str())).serialize(s)
    }
}

/// How `raw` is written: as the JSON object, or as a JSON string holding its text.
enum RawOut<'a> {
    Object(&'a RawJson),
    Text(&'a str),
}

impl Serialize for RawOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            RawOut::Object(raw) => raw.serialize(s),
            RawOut::Text(text) => s.serialize_str(text),
        }
    }
}

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
    raw: RawOut<'a>,
}

impl Task {
    fn view<'a>(&'a self, raw: RawOut<'a>) -> View<'a> {
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
            raw,
        }
    }

    /// The object of [`Task::to_json`] with `raw` as a JSON string of the object's text
    /// instead of the object: for a binding that parses `raw` only when it is read.
    pub fn with_raw_as_text(&self) -> RawAsText<'_> {
        RawAsText(self)
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
    /// The whole task object as received, as JSON text; unknown fields preserved.
    pub raw: RawJson,
}

/// A JSON value kept as the text the server sent (compact): [`Task::raw`].
///
/// Unknown fields are preserved, and handing the object on (to a binding, the CLI's JSON
/// lines, [`Task::to_json`]) writes the text as it is instead of building and re-serialising
/// a tree. Read it with [`RawJson::get`] or [`RawJson::to_map`], which parse on demand.
#[derive(Clone)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    /// Wraps JSON text split out of a larger document. Text spanning several lines is
    /// compacted, so that a task always prints on one line (JSON lines output).
    pub fn new(raw: Box<RawValue>) -> RawJson {
        if memchr::memchr2(b'\n', b'\r', raw.get().as_bytes()).is_some() {
            // Valid JSON has no raw newline inside a string: these are whitespace only.
            if let Ok(v) = serde_json::from_str::<Value>(raw.get()) {
                if let Ok(compact) = serde_json::value::to_raw_value(&v) {
                    return RawJson(compact);
                }
            }
        }
        RawJson(raw)
    }

    /// The text of an object built in memory (a callback's parsed body, say).
    pub fn from_map(map: &Map<String, Value>) -> RawJson {
        // Serialising a map of JSON values cannot fail.
        RawJson(serde_json::value::to_raw_value(map).unwrap_or_else(|_| empty_object()))
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// The JSON text, owned (no copy).
    pub fn into_string(self) -> String {
        let text: Box<str> = self.0.into();
        text.into()
    }

    /// The value parsed into a tree.
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.0.get()).unwrap_or(Value::Null)
    }

    /// The object parsed into a map (empty when the value is not an object).
    pub fn to_map(&self) -> Map<String, Value> {
        match self.to_value() {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    /// One top-level field, parsed (`None` when absent).
    pub fn get(&self, key: &str) -> Option<Value> {
        self.to_map().remove(key)
    }

    /// Whether the object has the top-level field `key`.
    pub fn contains_key(&self, key: &str) -> bool {
        self.to_map().contains_key(key)
    }

    fn json_type(&self) -> &'static str {
        text_json_type(self.as_str())
    }
}

/// The JSON type of valid JSON text, named as [`json_type`] names it (from its first byte).
pub(crate) fn text_json_type(text: &str) -> &'static str {
    match text.trim_start().as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).expect("\"{}\" is JSON")
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RawJson {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

pub(crate) fn not_an_object(got: &str) -> Error {
    Error::new(
        ErrorKind::Decode,
        format!("expected a task object, got {got}"),
    )
}

/// The fields of a task object the typed [`Task`] is made from; every other field is
/// skipped (it stays in [`Task::raw`]). A repeated key keeps its last value, as a map would.
#[derive(Default)]
struct Fields {
    task_id: Option<Value>,
    task_status: Option<Value>,
    task_status_msg: Option<Value>,
    task_info: Option<Value>,
    external_task_id: Option<Value>,
    created_at: Option<Value>,
    updated_at: Option<Value>,
    final_unit_deduction: Option<Value>,
    task_result: Option<Value>,
}

impl Fields {
    fn from_map(mut m: Map<String, Value>) -> Fields {
        Fields {
            task_id: m.remove("task_id"),
            task_status: m.remove("task_status"),
            task_status_msg: m.remove("task_status_msg"),
            task_info: m.remove("task_info"),
            external_task_id: m.remove("external_task_id"),
            created_at: m.remove("created_at"),
            updated_at: m.remove("updated_at"),
            final_unit_deduction: m.remove("final_unit_deduction"),
            task_result: m.remove("task_result"),
        }
    }
}

enum Key {
    TaskId,
    TaskStatus,
    TaskStatusMsg,
    TaskInfo,
    ExternalTaskId,
    CreatedAt,
    UpdatedAt,
    FinalUnitDeduction,
    TaskResult,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Key, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, k: &str) -> std::result::Result<Key, E> {
                Ok(match k {
                    "task_id" => Key::TaskId,
                    "task_status" => Key::TaskStatus,
                    "task_status_msg" => Key::TaskStatusMsg,
                    "task_info" => Key::TaskInfo,
                    "external_task_id" => Key::ExternalTaskId,
                    "created_at" => Key::CreatedAt,
                    "updated_at" => Key::UpdatedAt,
                    "final_unit_deduction" => Key::FinalUnitDeduction,
                    "task_result" => Key::TaskResult,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Fields, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a task object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<Fields, A::Error> {
                let mut f = Fields::default();
                while let Some(key) = m.next_key::<Key>()? {
                    let slot = match key {
                        Key::TaskId => &mut f.task_id,
                        Key::TaskStatus => &mut f.task_status,
                        Key::TaskStatusMsg => &mut f.task_status_msg,
                        Key::TaskInfo => &mut f.task_info,
                        Key::ExternalTaskId => &mut f.external_task_id,
                        Key::CreatedAt => &mut f.created_at,
                        Key::UpdatedAt => &mut f.updated_at,
                        Key::FinalUnitDeduction => &mut f.final_unit_deduction,
                        Key::TaskResult => &mut f.task_result,
                        Key::Other => {
                            m.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    *slot = Some(m.next_value()?);
                }
                Ok(f)
            }
        }
        d.deserialize_map(FieldsVisitor)
    }
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
            other => Err(not_an_object(json_type(&other))),
        }
    }

    /// Like [`Task::from_value`], from an already split object.
    pub fn from_map(kind: TaskKind, map: Map<String, Value>) -> Result<Task> {
        let raw = RawJson::from_map(&map);
        Task::from_fields(kind, Fields::from_map(map), raw)
    }

    /// Parses a JSON text holding one task object (a callback body, say). The text is kept
    /// as [`Task::raw`] as it is (compacted only when it spans several lines).
    pub fn from_json_slice(kind: TaskKind, body: &[u8]) -> Result<Task> {
        let raw: Box<RawValue> = serde_json::from_slice(body).map_err(|e| {
            Error::new(
                ErrorKind::Decode,
                format!("task body is not valid JSON: {e}"),
            )
            .with_source(e)
        })?;
        Task::from_raw(kind, raw)
    }

    /// Like [`Task::from_json_slice`], from JSON text already split out of a larger document
    /// (the `data` of a response envelope): the typed fields are read from the text, which is
    /// kept as [`Task::raw`] without building a tree of it.
    pub fn from_raw(kind: TaskKind, raw: Box<RawValue>) -> Result<Task> {
        let raw = RawJson::new(raw);
        let fields = match raw.json_type() {
            "an object" => serde_json::from_str::<Fields>(raw.as_str()).map_err(|e| {
                Error::new(
                    ErrorKind::Decode,
                    format!("cannot read the task object: {e}"),
                )
                .with_source(e)
            })?,
            other => return Err(not_an_object(other)),
        };
        Task::from_fields(kind, fields, raw)
    }

    /// The one place the typed fields are read (from a map or from text alike).
    fn from_fields(kind: TaskKind, f: Fields, raw: RawJson) -> Result<Task> {
        let id = f
            .task_id
            .as_ref()
            .and_then(as_string)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Error::new(ErrorKind::Decode, "task object has no task_id"))?;
        let status = match f.task_status {
            Some(Value::String(s)) => TaskStatus::parse(&s),
            Some(other) => TaskStatus::Unknown(other.to_string()),
            None => TaskStatus::Unknown(String::new()),
        };
        let status_msg = f.task_status_msg.as_ref().and_then(as_string);
        let external_task_id =
            non_empty(f.task_info.as_ref().and_then(|i| i.get("external_task_id")))
                .or_else(|| non_empty(f.external_task_id.as_ref()));
        let created_at_ms = f.created_at.as_ref().and_then(as_i64);
        let updated_at_ms = f.updated_at.as_ref().and_then(as_i64);
        let final_unit_deduction = f.final_unit_deduction.as_ref().and_then(as_string);
        let result = f.task_result.as_ref();
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
    fn raw_keeps_the_text_as_received_and_reads_fields_from_it() {
        // Unknown fields (any shape), an escaped key, a repeated key (the last wins, as in a
        // map), numbers as strings: all read without a tree of the whole object.
        let body = r#"{"task_id":"t3","extra":{"deep":[1,{"x":null}]},"task_\u0073tatus":"processing","created_at":"1722769557708","task_status":"succeed","task_result":{"images":[{"id":"2","url":"https://x/b.png"}]}}"#;
        let raw = serde_json::value::RawValue::from_string(body.to_owned()).unwrap();
        let t = Task::from_raw(TaskKind::ImageGeneration, raw).unwrap();
        assert_eq!(t.raw.as_str(), body);
        assert_eq!(t.status, TaskStatus::Succeed);
        assert_eq!(t.created_at_ms, Some(1722769557708));
        assert_eq!(t.images[0].index, 2);
        assert_eq!(t.raw.get("extra").unwrap()["deep"][1]["x"], Value::Null);
        assert!(t.raw.contains_key("task_status") && !t.raw.contains_key("nope"));
        // Written verbatim into the stable object.
        let text = serde_json::to_string(&t).unwrap();
        assert!(text.ends_with(&format!(r#""raw":{body}}}"#)), "{text}");
    }

    #[test]
    fn raw_spanning_lines_is_compacted_so_a_task_prints_on_one_line() {
        let body = "{\n  \"task_id\": \"t4\",\r\n  \"task_status\": \"failed\",\n  \"task_status_msg\": \"a b\"\n}";
        let t = Task::from_json_slice(TaskKind::ImageGeneration, body.as_bytes()).unwrap();
        assert_eq!(
            t.raw.as_str(),
            r#"{"task_id":"t4","task_status":"failed","task_status_msg":"a b"}"#
        );
        assert!(!serde_json::to_string(&t).unwrap().contains('\n'));
        assert_eq!(t.status_msg.as_deref(), Some("a b"));
    }

    #[test]
    fn non_objects_and_missing_ids_are_decode_errors_naming_what_came() {
        for (body, want) in [
            ("[1,2]", "expected a task object, got an array"),
            ("\"x\"", "expected a task object, got a string"),
            ("null", "expected a task object, got null"),
            (
                "{\"task_status\":\"succeed\"}",
                "task object has no task_id",
            ),
            ("{\"task_id\":\"\"}", "task object has no task_id"),
        ] {
            let e = Task::from_json_slice(TaskKind::ImageGeneration, body.as_bytes()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Decode, "{body}");
            assert!(e.message().contains(want), "{body}: {}", e.message());
        }
        // The same object from a map and from text makes the same task.
        let body =
            r#"{"task_id":"t5","task_status":"submitted","task_info":{"external_task_id":"e"}}"#;
        let a = Task::from_json_slice(TaskKind::ImageGeneration, body.as_bytes()).unwrap();
        let b = Task::from_value(
            TaskKind::ImageGeneration,
            serde_json::from_str(body).unwrap(),
        )
        .unwrap();
        assert_eq!(a, b);
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
