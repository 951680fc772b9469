//! The task model: status, kind, results, and lenient parsing of Kling task objects.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
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

/// The fields of a task object the typed [`Task`] is made from, read from the text straight
/// into these slots (no tree of the object is built); every other field is skipped (it stays
/// in [`Task::raw`]). A repeated key keeps its last value, as a map would. Reading is lenient
/// at every level: a value of an unexpected JSON type reads as absent, never as an error.
#[derive(Default)]
struct Fields {
    task_id: Option<Scalar>,
    task_status: Option<StatusField>,
    task_status_msg: Option<Scalar>,
    task_info: Option<Info>,
    external_task_id: Option<Scalar>,
    created_at: Option<Scalar>,
    updated_at: Option<Scalar>,
    final_unit_deduction: Option<Scalar>,
    task_result: Option<Results>,
}

/// `task_status` read straight into a [`TaskStatus`]: a known status without allocating, any
/// other string as `Unknown` of itself, and a value that is not a string as `Unknown` of its
/// JSON text.
struct StatusField(TaskStatus);

impl<'de> Deserialize<'de> for StatusField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<StatusField, D::Error> {
        struct StatusVisitor;
        /// A value that is not a string, as its JSON text.
        fn shown<E>(v: Value) -> std::result::Result<TaskStatus, E> {
            Ok(TaskStatus::Unknown(v.to_string()))
        }
        impl<'de> Visitor<'de> for StatusVisitor {
            type Value = TaskStatus;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a task status")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<TaskStatus, E> {
                Ok(TaskStatus::parse(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<TaskStatus, E> {
                shown(v.into())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<TaskStatus, E> {
                shown(v.into())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<TaskStatus, E> {
                shown(v.into())
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<TaskStatus, E> {
                shown(v.into())
            }
            fn visit_unit<E: de::Error>(self) -> std::result::Result<TaskStatus, E> {
                shown(Value::Null)
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                s: A,
            ) -> std::result::Result<TaskStatus, A::Error> {
                shown(Value::deserialize(de::value::SeqAccessDeserializer::new(
                    s,
                ))?)
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                m: A,
            ) -> std::result::Result<TaskStatus, A::Error> {
                shown(Value::deserialize(de::value::MapAccessDeserializer::new(
                    m,
                ))?)
            }
        }
        d.deserialize_any(StatusVisitor).map(StatusField)
    }
}

/// `task_info`: only `external_task_id` is read.
#[derive(Default)]
struct Info {
    external_task_id: Option<Scalar>,
}

/// `task_result`: its `images` and `videos`.
#[derive(Default)]
struct Results {
    images: Option<Items<Image>>,
    videos: Option<Items<Video>>,
}

/// An array of result entries, each turned into its final form ([`FromItem`]) as it is read;
/// any other value reads as empty. Every element keeps its place (an image without `index`
/// is numbered by its position), a non-object as an empty entry.
struct Items<T>(Vec<T>);

impl<T> Default for Items<T> {
    fn default() -> Self {
        Items(Vec::new())
    }
}

/// A result entry ([`Image`], [`Video`]) made from what was read of it.
trait FromItem: Sized {
    /// The entry at `pos` in its array, or `None` if it has no URL.
    fn from_item(pos: usize, item: Item) -> Option<Self>;
}

/// One image or video entry.
#[derive(Default)]
struct Item {
    url: Option<Scalar>,
    index: Option<Scalar>,
    id: Option<Scalar>,
    watermark_url: Option<Scalar>,
    duration: Option<Scalar>,
}

/// A JSON value as the lenient readers see it: a string, a number, or anything else.
enum Scalar {
    Str(String),
    Num(serde_json::Number),
    Other,
}

impl Scalar {
    /// A string, or a number in its JSON spelling.
    fn into_string(self) -> Option<String> {
        match self {
            Scalar::Str(s) => Some(s),
            Scalar::Num(n) => Some(n.to_string()),
            Scalar::Other => None,
        }
    }

    /// An integer: a number (a fraction truncated) or a string holding one.
    fn as_i64(&self) -> Option<i64> {
        match self {
            Scalar::Num(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
            Scalar::Str(s) => s.trim().parse().ok(),
            Scalar::Other => None,
        }
    }

    /// A number, or a string holding one.
    fn as_f64(&self) -> Option<f64> {
        match self {
            Scalar::Num(n) => n.as_f64(),
            Scalar::Str(s) => s.trim().parse().ok(),
            Scalar::Other => None,
        }
    }
}

/// [`Scalar::into_string`] without empty strings.
fn non_empty(v: Option<Scalar>) -> Option<String> {
    v.and_then(Scalar::into_string).filter(|s| !s.is_empty())
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Scalar, D::Error> {
        struct ScalarVisitor;
        impl<'de> Visitor<'de> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Scalar, E> {
                Ok(Scalar::Str(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<Scalar, E> {
                Ok(Scalar::Str(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Scalar, E> {
                Ok(Scalar::Num(v.into()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Scalar, E> {
                Ok(Scalar::Num(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Scalar, E> {
                Ok(serde_json::Number::from_f64(v).map_or(Scalar::Other, Scalar::Num))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> std::result::Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_unit<E: de::Error>(self) -> std::result::Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> std::result::Result<Scalar, A::Error> {
                IgnoredAny.visit_map(m).map(|_| Scalar::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, s: A) -> std::result::Result<Scalar, A::Error> {
                IgnoredAny.visit_seq(s).map(|_| Scalar::Other)
            }
        }
        d.deserialize_any(ScalarVisitor)
    }
}

/// An object read into typed slots: a known key's value goes to its slot, any other key is
/// skipped, and a value that is not an object reads as `Self::default()`.
trait Lenient: Default {
    const WHAT: &'static str;
    /// The number of a known key, `None` for a key to skip.
    fn key(name: &str) -> Option<u8>;
    /// Reads the value of known key `k` into its slot.
    fn read<'de, A: MapAccess<'de>>(
        &mut self,
        k: u8,
        m: &mut A,
    ) -> std::result::Result<(), A::Error>;
}

/// A key of a [`Lenient`] object, matched without allocating.
struct KeyOf<T>(Option<u8>, PhantomData<T>);

impl<'de, T: Lenient> Deserialize<'de> for KeyOf<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct KeyVisitor<T>(PhantomData<T>);
        impl<T: Lenient> Visitor<'_> for KeyVisitor<T> {
            type Value = KeyOf<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, k: &str) -> std::result::Result<KeyOf<T>, E> {
                Ok(KeyOf(T::key(k), PhantomData))
            }
        }
        d.deserialize_identifier(KeyVisitor(PhantomData))
    }
}

/// The `visit_*` methods of the JSON scalars (string, number, boolean, null), each reading
/// as `Self::Value::default()`: a lenient reader's answer to a value of the wrong type.
macro_rules! scalars_read_as_default {
    () => {
        fn visit_str<E: de::Error>(self, _: &str) -> std::result::Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> std::result::Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> std::result::Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> std::result::Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> std::result::Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_unit<E: de::Error>(self) -> std::result::Result<Self::Value, E> {
            Ok(Default::default())
        }
    };
}

struct LenientVisitor<T>(PhantomData<T>);

impl<'de, T: Lenient> Visitor<'de> for LenientVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::WHAT)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> std::result::Result<T, A::Error> {
        let mut out = T::default();
        while let Some(KeyOf(k, _)) = m.next_key::<KeyOf<T>>()? {
            match k {
                Some(k) => out.read(k, &mut m)?,
                None => {
                    m.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, s: A) -> std::result::Result<T, A::Error> {
        IgnoredAny.visit_seq(s).map(|_| T::default())
    }
    scalars_read_as_default!();
}

/// A [`Lenient`] object and its `Deserialize`: each listed JSON key is read into its field
/// (an `Option`; the last of a repeated key wins), every other key is skipped.
macro_rules! lenient_object {
    ($t:ty, $what:literal, { $($name:literal => $field:ident),+ $(,)? }) => {
        impl Lenient for $t {
            const WHAT: &'static str = $what;
            fn key(name: &str) -> Option<u8> {
                [$($name),+].iter().position(|n| *n == name).map(|i| i as u8)
            }
            fn read<'de, A: MapAccess<'de>>(
                &mut self,
                k: u8,
                m: &mut A,
            ) -> std::result::Result<(), A::Error> {
                let mut i = 0u8;
                $(
                    if k == i {
                        self.$field = Some(m.next_value()?);
                        return Ok(());
                    }
                    i += 1;
                )+
                let _ = i;
                m.next_value::<IgnoredAny>().map(|_| ())
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<$t, D::Error> {
                d.deserialize_any(LenientVisitor(PhantomData))
            }
        }
    };
}

lenient_object!(Fields, "a task object", {
    "task_id" => task_id,
    "task_status" => task_status,
    "task_status_msg" => task_status_msg,
    "task_info" => task_info,
    "external_task_id" => external_task_id,
    "created_at" => created_at,
    "updated_at" => updated_at,
    "final_unit_deduction" => final_unit_deduction,
    "task_result" => task_result,
});
lenient_object!(Info, "task_info", { "external_task_id" => external_task_id });
lenient_object!(Results, "task_result", { "images" => images, "videos" => videos });
lenient_object!(Item, "a result entry", {
    "url" => url,
    "index" => index,
    "id" => id,
    "watermark_url" => watermark_url,
    "duration" => duration,
});

impl<'de, T: FromItem> Deserialize<'de> for Items<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Items<T>, D::Error> {
        struct ItemsVisitor<T>(PhantomData<T>);
        impl<'de, T: FromItem> Visitor<'de> for ItemsVisitor<T> {
            type Value = Items<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of result entries")
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut s: A,
            ) -> std::result::Result<Items<T>, A::Error> {
                let mut items = Vec::with_capacity(s.size_hint().unwrap_or(0).min(64));
                let mut pos = 0;
                while let Some(item) = s.next_element::<Item>()? {
                    items.extend(T::from_item(pos, item));
                    pos += 1;
                }
                Ok(Items(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> std::result::Result<Items<T>, A::Error> {
                IgnoredAny.visit_map(m).map(|_| Items::default())
            }
            scalars_read_as_default!();
        }
        d.deserialize_any(ItemsVisitor(PhantomData))
    }
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
        // Read from its text, the one way the typed fields are read.
        Task::from_raw_object(kind, RawJson::from_map(&map))
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
        Task::from_raw_object(kind, RawJson::new(raw))
    }

    /// The one place the typed fields are read: from the text of `raw`.
    fn from_raw_object(kind: TaskKind, raw: RawJson) -> Result<Task> {
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

    fn from_fields(kind: TaskKind, f: Fields, raw: RawJson) -> Result<Task> {
        let id = non_empty(f.task_id)
            .ok_or_else(|| Error::new(ErrorKind::Decode, "task object has no task_id"))?;
        let status = match f.task_status {
            Some(StatusField(s)) => s,
            None => TaskStatus::Unknown(String::new()),
        };
        let status_msg = f.task_status_msg.and_then(Scalar::into_string);
        let external_task_id = non_empty(f.task_info.and_then(|i| i.external_task_id))
            .or_else(|| non_empty(f.external_task_id));
        let created_at_ms = f.created_at.as_ref().and_then(Scalar::as_i64);
        let updated_at_ms = f.updated_at.as_ref().and_then(Scalar::as_i64);
        let final_unit_deduction = f.final_unit_deduction.and_then(Scalar::into_string);
        let Results { images, videos } = f.task_result.unwrap_or_default();
        let images = images.unwrap_or_default().0;
        let videos = videos.unwrap_or_default().0;
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

/// An entry with a URL; `index` (or `id`) numbers an image, its position otherwise.
impl FromItem for Image {
    fn from_item(pos: usize, item: Item) -> Option<Image> {
        let url = non_empty(item.url)?;
        let index = item
            .index
            .as_ref()
            .and_then(Scalar::as_i64)
            .or_else(|| item.id.as_ref().and_then(Scalar::as_i64))
            .and_then(|i| u32::try_from(i).ok())
            .unwrap_or(pos as u32);
        Some(Image {
            index,
            url,
            watermark_url: non_empty(item.watermark_url),
        })
    }
}

/// An entry with a URL.
impl FromItem for Video {
    fn from_item(_pos: usize, item: Item) -> Option<Video> {
        let url = non_empty(item.url)?;
        Some(Video {
            id: item.id.and_then(Scalar::into_string).unwrap_or_default(),
            url,
            watermark_url: non_empty(item.watermark_url),
            duration_s: item.duration.as_ref().and_then(Scalar::as_f64),
        })
    }
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
    // "." alone is a dot segment: the URL would drop it and query the list endpoint.
    if id == "." {
        return Err(Error::invalid(format!(
            "{what} \".\" is a URL dot segment, not an id"
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
    fn a_status_that_is_not_a_known_string_is_kept_as_its_json_text() {
        for (wire, shown) in [
            (r#""succeed""#, None),
            (r#""queued""#, Some("queued")),
            ("3", Some("3")),
            ("-2", Some("-2")),
            ("1.5", Some("1.5")),
            ("true", Some("true")),
            ("null", Some("null")),
            (r#"["failed", {"a": [1]}]"#, Some(r#"["failed",{"a":[1]}]"#)),
        ] {
            let body = format!(r#"{{"task_id":"t","task_status":{wire}}}"#);
            let expected = match shown {
                None => TaskStatus::Succeed,
                Some(s) => TaskStatus::Unknown(s.to_owned()),
            };
            let t = Task::from_json_slice(TaskKind::ImageGeneration, body.as_bytes()).unwrap();
            assert_eq!(t.status, expected, "{wire}");
            // The same from an already parsed value (callbacks, `from_value`).
            let v: Value = serde_json::from_str(&body).unwrap();
            let t = Task::from_value(TaskKind::ImageGeneration, v).unwrap();
            assert_eq!(t.status, expected, "{wire} from a value");
        }
        let t = Task::from_json_slice(TaskKind::ImageGeneration, br#"{"task_id":"t"}"#).unwrap();
        assert_eq!(t.status, TaskStatus::Unknown(String::new()));
    }

    #[test]
    fn a_value_of_the_wrong_type_reads_as_absent_at_every_level() {
        // Each field's slot is read from the text with its own lenient reader: objects,
        // arrays and scalars where another type was expected are skipped, never an error.
        let body = r#"{"task_id":7,"task_status":{"a" : 1},"task_status_msg":false,
            "task_info":"not an object","external_task_id":"top",
            "created_at":1722769557708.9,"updated_at":"soon","final_unit_deduction":2,
            "task_result":{"images":{"not":"an array"}},
            "task_result":{"images":[5,{"url":{"x":1}},{"url":"https://x/c.png","index":" 3 "},
                {"url":12,"index":-1,"id":"9"},{"url":"https://x/d.png","id":"4","watermark_url":""},
                {"url":"https://x/e.png","url":"https://x/f.png","watermark_url":["w"]}],
              "videos":[null,{"url":"https://x/v.mp4","id":11,"duration":"5.5","watermark_url":"https://x/w.mp4"}]}}"#;
        let t = Task::from_json_slice(TaskKind::ImageGeneration, body.as_bytes()).unwrap();
        assert_eq!(t.id, "7");
        assert_eq!(t.status, TaskStatus::Unknown(r#"{"a":1}"#.into()));
        assert_eq!(t.status_msg, None);
        assert_eq!(t.external_task_id.as_deref(), Some("top"));
        assert_eq!(t.created_at_ms, Some(1722769557708));
        assert_eq!(t.updated_at_ms, None);
        assert_eq!(t.final_unit_deduction.as_deref(), Some("2"));
        let images: Vec<(u32, &str, Option<&str>)> = t
            .images
            .iter()
            .map(|i| (i.index, i.url.as_str(), i.watermark_url.as_deref()))
            .collect();
        // The last `task_result` wins; a non-object or URL-less entry is dropped but keeps
        // its position; a negative index falls back to the position, not to `id`.
        assert_eq!(
            images,
            [
                (3, "https://x/c.png", None),
                (3, "12", None),
                (4, "https://x/d.png", None),
                (5, "https://x/f.png", None)
            ]
        );
        assert_eq!(
            t.videos,
            [Video {
                id: "11".into(),
                url: "https://x/v.mp4".into(),
                watermark_url: Some("https://x/w.mp4".into()),
                duration_s: Some(5.5),
            }]
        );
        // The same object as a map (a callback's parsed body) reads the same.
        let v: Value = serde_json::from_str(body).unwrap();
        let m = Task::from_value(TaskKind::ImageGeneration, v).unwrap();
        assert_eq!((m.images, m.videos), (t.images.clone(), t.videos.clone()));
        // A task_info object is read before the top-level external_task_id.
        let b = r#"{"task_id":"t","task_info":{"external_task_id":"inner","x":[1]},"external_task_id":"top"}"#;
        let t = Task::from_json_slice(TaskKind::ImageGeneration, b.as_bytes()).unwrap();
        assert_eq!(t.external_task_id.as_deref(), Some("inner"));
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
