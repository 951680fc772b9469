//! Task state: the per-account, per-kind task store, the lazily computed lifecycle and the
//! rendering of task objects exactly as the Kling API returns them.

use std::collections::{HashMap, HashSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::ser::{SerializeSeq, Serializer};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::auth::Identity;
use crate::kinds::TaskKind;

/// How a lifecycle task ends.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Succeed,
    Failed(String),
}

/// A status pinned by the control API (seeded tasks or explicit status changes).
#[derive(Debug, Clone)]
pub(crate) struct Fixed {
    pub status: String,
    pub msg: String,
    pub updated_at: i64,
}

/// One task.
#[derive(Debug, Clone)]
pub(crate) struct Task {
    pub id: String,
    pub kind: TaskKind,
    pub external_id: Option<String>,
    pub created_at: i64,
    pub processing_at: i64,
    pub finish_at: i64,
    pub outcome: Outcome,
    pub fixed: Option<Fixed>,
    /// Number of results on success.
    pub n: u32,
    /// Video duration in seconds (video kinds).
    pub duration: String,
    pub watermark: bool,
    pub callback_url: Option<String>,
    /// Extra top-level fields rendered into every view of the task (seeded tasks only): lets
    /// tests check that clients accept fields the documentation does not name.
    pub extra: Option<Map<String, Value>>,
}

/// A task's status at some instant.
pub(crate) struct StatusView<'a> {
    pub status: &'a str,
    pub msg: &'a str,
    pub updated_at: i64,
}

impl Task {
    /// Status, message and last transition time at emulator time `now` (ms).
    pub(crate) fn status_at(&self, now: i64) -> StatusView<'_> {
        if let Some(f) = &self.fixed {
            return StatusView {
                status: &f.status,
                msg: &f.msg,
                updated_at: f.updated_at,
            };
        }
        if now < self.processing_at {
            StatusView {
                status: "submitted",
                msg: "",
                updated_at: self.created_at,
            }
        } else if now < self.finish_at {
            StatusView {
                status: "processing",
                msg: "",
                updated_at: self.processing_at,
            }
        } else {
            match &self.outcome {
                Outcome::Succeed => StatusView {
                    status: "succeed",
                    msg: "",
                    updated_at: self.finish_at,
                },
                Outcome::Failed(m) => StatusView {
                    status: "failed",
                    msg: m,
                    updated_at: self.finish_at,
                },
            }
        }
    }

    /// Whether the task still holds a concurrency slot at `now`.
    pub(crate) fn is_running(&self, now: i64) -> bool {
        matches!(self.status_at(now).status, "submitted" | "processing")
    }

    fn task_info(&self) -> Value {
        let mut m = Map::new();
        if let Some(e) = &self.external_id {
            m.insert("external_task_id".into(), Value::String(e.clone()));
        }
        Value::Object(m)
    }

    /// The `data` of a create response.
    pub(crate) fn render_created(&self) -> Value {
        json!({
            "task_id": self.id,
            "task_status": "submitted",
            "task_info": self.task_info(),
            "created_at": self.created_at,
            "updated_at": self.created_at,
        })
    }

    /// The full task object (query, list and callback bodies) at emulator time `now`, as a
    /// JSON value (control API, callbacks).
    pub(crate) fn render(&self, now: i64, base_url: &str) -> Value {
        serde_json::to_value(self.view(now, base_url)).unwrap_or(Value::Null)
    }

    /// The full task object at emulator time `now`, serialized onto `out` (status queries and
    /// list pages): the same bytes as `render`, without building a JSON value first.
    pub(crate) fn write_json(&self, now: i64, base_url: &str, out: &mut Vec<u8>) {
        let _ = serde_json::to_writer(out, &self.view(now, base_url));
    }

    /// The one definition of the task object's shape (field order as the Kling API sends it).
    fn view<'a>(&'a self, now: i64, base_url: &'a str) -> TaskView<'a> {
        let st = self.status_at(now);
        let succeeded = st.status == "succeed";
        let final_unit_deduction = succeeded.then(|| {
            if self.kind.is_video() {
                if self.duration.trim_end_matches(".0") == "10" {
                    2
                } else {
                    1
                }
            } else {
                self.n
            }
        });
        let task_result = if !succeeded {
            ResultView::Empty {}
        } else if self.kind.is_video() {
            ResultView::Videos {
                videos: [VideoView {
                    id: FileRef::new(self, base_url, None, ""),
                    url: FileRef::new(self, base_url, Some(0), ".mp4"),
                    watermark_url: self
                        .watermark
                        .then(|| FileRef::new(self, base_url, Some(0), "_wm.mp4")),
                    duration: video_duration(&self.duration),
                }],
            }
        } else {
            ResultView::Images {
                result_type: (self.kind == TaskKind::OmniImage).then_some("single"),
                images: ImagesView {
                    task: self,
                    base_url,
                },
            }
        };
        TaskView {
            task_id: &self.id,
            task_status: st.status,
            task_status_msg: st.msg,
            task_info: TaskInfoView {
                external_task_id: self.external_id.as_deref(),
            },
            created_at: self.created_at,
            updated_at: st.updated_at,
            final_unit_deduction: final_unit_deduction.map(UnitsView),
            watermark_info: WatermarkView {
                enabled: self.watermark,
            },
            task_result,
            extra: self.extra.as_ref(),
        }
    }
}

/// The fields `render` writes itself: a seeded task's `extra` may not name one of them (it
/// adds fields, it does not replace them).
pub(crate) const RENDERED_FIELDS: &[&str] = &[
    "task_id",
    "task_status",
    "task_status_msg",
    "task_info",
    "created_at",
    "updated_at",
    "final_unit_deduction",
    "watermark_info",
    "task_result",
];

#[derive(Serialize)]
struct TaskView<'a> {
    task_id: &'a str,
    task_status: &'a str,
    task_status_msg: &'a str,
    task_info: TaskInfoView<'a>,
    created_at: i64,
    updated_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    final_unit_deduction: Option<UnitsView>,
    watermark_info: WatermarkView,
    task_result: ResultView<'a>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    extra: Option<&'a Map<String, Value>>,
}

#[derive(Serialize)]
struct TaskInfoView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    external_task_id: Option<&'a str>,
}

#[derive(Serialize)]
struct WatermarkView {
    enabled: bool,
}

/// `final_unit_deduction`: a number the API sends as a string.
struct UnitsView(u32);

impl Serialize for UnitsView {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum ResultView<'a> {
    Empty {},
    Videos {
        videos: [VideoView<'a>; 1],
    },
    Images {
        #[serde(skip_serializing_if = "Option::is_none")]
        result_type: Option<&'static str>,
        images: ImagesView<'a>,
    },
}

#[derive(Serialize)]
struct VideoView<'a> {
    id: FileRef<'a>,
    url: FileRef<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    watermark_url: Option<FileRef<'a>>,
    duration: String,
}

/// The images of a succeeded image task, written one by one.
struct ImagesView<'a> {
    task: &'a Task,
    base_url: &'a str,
}

impl Serialize for ImagesView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = self.task;
        let mut seq = s.serialize_seq(Some(t.n as usize))?;
        for i in 0..t.n {
            seq.serialize_element(&ImageView {
                index: i,
                url: FileRef::new(t, self.base_url, Some(i), ".png"),
                watermark_url: t
                    .watermark
                    .then(|| FileRef::new(t, self.base_url, Some(i), "_wm.png")),
            })?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct ImageView<'a> {
    index: u32,
    url: FileRef<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    watermark_url: Option<FileRef<'a>>,
}

/// A result file's URL (`{base}/__mock/files/{id}/{index}{suffix}`), or with no index the
/// video id (`{id}_0`), written straight into the output.
struct FileRef<'a> {
    task_id: &'a str,
    base_url: &'a str,
    index: Option<u32>,
    suffix: &'static str,
}

impl<'a> FileRef<'a> {
    fn new(t: &'a Task, base_url: &'a str, index: Option<u32>, suffix: &'static str) -> Self {
        FileRef {
            task_id: &t.id,
            base_url,
            index,
            suffix,
        }
    }
}

impl Serialize for FileRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.index {
            Some(i) => s.collect_str(&format_args!(
                "{}/__mock/files/{}/{}{}",
                self.base_url, self.task_id, i, self.suffix
            )),
            None => s.collect_str(&format_args!("{}_0", self.task_id)),
        }
    }
}

fn video_duration(d: &str) -> String {
    if d.contains('.') {
        d.to_string()
    } else {
        format!("{d}.0")
    }
}

#[derive(Default)]
struct KindStore {
    tasks: Vec<Task>,
    by_id: HashMap<String, usize>,
    by_ext: HashMap<String, usize>,
}

#[derive(Default)]
struct AccountStore {
    kinds: [KindStore; 7],
    external_ids: HashSet<String>,
    /// Tasks that may still be running: `(kind, index)`; pruned on create.
    active: Vec<(TaskKind, usize)>,
}

/// Why an insert was refused.
#[derive(Debug)]
pub(crate) enum InsertError {
    DuplicateExternalId(String),
    DuplicateTaskId(String),
    ConcurrencyLimit,
}

/// Where a task lives.
#[derive(Clone)]
struct Location {
    identity: Identity,
    kind: TaskKind,
    index: usize,
}

/// All tasks of the emulator.
pub(crate) struct Store {
    accounts: HashMap<Identity, AccountStore>,
    ids: HashMap<String, Location>,
    rng: StdRng,
}

impl Store {
    pub(crate) fn new(seed: u64) -> Self {
        Store {
            accounts: HashMap::new(),
            ids: HashMap::new(),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Forget every task (the id generator keeps going so ids stay unique per process).
    pub(crate) fn clear(&mut self) {
        self.accounts.clear();
        self.ids.clear();
    }

    /// A fresh unique 18-digit numeric task id.
    pub(crate) fn new_task_id(&mut self) -> String {
        loop {
            let v: u64 = self
                .rng
                .random_range(100_000_000_000_000_000..1_000_000_000_000_000_000);
            let s = v.to_string();
            if !self.ids.contains_key(&s) {
                return s;
            }
        }
    }

    /// Insert a task for `identity`, enforcing external id uniqueness and (when `limit` is
    /// given) the per-account concurrency limit at emulator time `now`.
    pub(crate) fn insert(
        &mut self,
        identity: &Identity,
        task: Task,
        now: i64,
        limit: Option<usize>,
    ) -> Result<&Task, InsertError> {
        if self.ids.contains_key(&task.id) {
            return Err(InsertError::DuplicateTaskId(task.id));
        }
        let acct = self.accounts.entry(identity.clone()).or_default();
        if let Some(e) = &task.external_id {
            if acct.external_ids.contains(e) {
                return Err(InsertError::DuplicateExternalId(e.clone()));
            }
        }
        if let Some(limit) = limit {
            let kinds = &acct.kinds;
            acct.active
                .retain(|(k, i)| kinds[k.index()].tasks[*i].is_running(now));
            if acct.active.len() >= limit {
                return Err(InsertError::ConcurrencyLimit);
            }
        }
        let kind = task.kind;
        let ks = &mut acct.kinds[kind.index()];
        let index = ks.tasks.len();
        if let Some(e) = &task.external_id {
            acct.external_ids.insert(e.clone());
            ks.by_ext.insert(e.clone(), index);
        }
        ks.by_id.insert(task.id.clone(), index);
        self.ids.insert(
            task.id.clone(),
            Location {
                identity: identity.clone(),
                kind,
                index,
            },
        );
        if task.is_running(now) {
            acct.active.push((kind, index));
        }
        ks.tasks.push(task);
        Ok(&ks.tasks[index])
    }

    fn kind_store(&self, identity: &Identity, kind: TaskKind) -> Option<&KindStore> {
        self.accounts.get(identity).map(|a| &a.kinds[kind.index()])
    }

    /// Look a task up by task id or external task id.
    pub(crate) fn get(&self, identity: &Identity, kind: TaskKind, id: &str) -> Option<&Task> {
        let ks = self.kind_store(identity, kind)?;
        let idx = ks.by_id.get(id).or_else(|| ks.by_ext.get(id))?;
        ks.tasks.get(*idx)
    }

    /// Look a task up by external task id only.
    pub(crate) fn get_by_external(
        &self,
        identity: &Identity,
        kind: TaskKind,
        ext: &str,
    ) -> Option<&Task> {
        let ks = self.kind_store(identity, kind)?;
        ks.tasks.get(*ks.by_ext.get(ext)?)
    }

    /// Page `page_num` (1-based) of `page_size` tasks, newest first.
    pub(crate) fn list(
        &self,
        identity: &Identity,
        kind: TaskKind,
        page_num: usize,
        page_size: usize,
    ) -> Vec<&Task> {
        match self.kind_store(identity, kind) {
            None => Vec::new(),
            Some(ks) => ks
                .tasks
                .iter()
                .rev()
                .skip((page_num - 1).saturating_mul(page_size))
                .take(page_size)
                .collect(),
        }
    }

    /// Any task by task id (control API).
    pub(crate) fn get_global(&self, id: &str) -> Option<&Task> {
        let loc = self.ids.get(id)?;
        self.accounts.get(&loc.identity)?.kinds[loc.kind.index()]
            .tasks
            .get(loc.index)
    }

    /// Mutable access to any task by task id (control API).
    pub(crate) fn get_global_mut(&mut self, id: &str) -> Option<&mut Task> {
        let loc = self.ids.get(id)?.clone();
        self.accounts.get_mut(&loc.identity)?.kinds[loc.kind.index()]
            .tasks
            .get_mut(loc.index)
    }
}

/// Parse the failure marker of a prompt: `[fail]` → the default message, `[fail:msg]` → `msg`.
pub(crate) fn failure_marker(prompt: &str) -> Option<String> {
    let start = prompt.find("[fail")?;
    let rest = &prompt[start + 5..];
    if rest.starts_with(']') {
        return Some("Image pixel is invalid".to_string());
    }
    let msg = rest.strip_prefix(':')?;
    let end = msg.find(']')?;
    Some(msg[..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(kind: TaskKind, watermark: bool, duration: &str) -> Task {
        Task {
            id: "t-1".into(),
            kind,
            external_id: Some("ext \"1\"".into()),
            created_at: 100,
            processing_at: 200,
            finish_at: 300,
            outcome: Outcome::Succeed,
            fixed: None,
            n: 2,
            duration: duration.into(),
            watermark,
            callback_url: None,
            extra: None,
        }
    }

    /// The bytes a status query answers, and the value callbacks and the control API send:
    /// the same object, field for field in the API's order.
    fn rendered(t: &Task, now: i64) -> String {
        let mut out = Vec::new();
        t.write_json(now, "http://h:1", &mut out);
        assert_eq!(
            serde_json::to_vec(&t.render(now, "http://h:1")).unwrap(),
            out,
            "render and write_json agree"
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn renders_each_phase_of_an_image_task() {
        let t = task(TaskKind::ImageGeneration, true, "5");
        assert_eq!(
            rendered(&t, 150),
            r#"{"task_id":"t-1","task_status":"submitted","task_status_msg":"","task_info":{"external_task_id":"ext \"1\""},"created_at":100,"updated_at":100,"watermark_info":{"enabled":true},"task_result":{}}"#
        );
        assert_eq!(
            rendered(&t, 250),
            r#"{"task_id":"t-1","task_status":"processing","task_status_msg":"","task_info":{"external_task_id":"ext \"1\""},"created_at":100,"updated_at":200,"watermark_info":{"enabled":true},"task_result":{}}"#
        );
        assert_eq!(
            rendered(&t, 300),
            r#"{"task_id":"t-1","task_status":"succeed","task_status_msg":"","task_info":{"external_task_id":"ext \"1\""},"created_at":100,"updated_at":300,"final_unit_deduction":"2","watermark_info":{"enabled":true},"task_result":{"images":[{"index":0,"url":"http://h:1/__mock/files/t-1/0.png","watermark_url":"http://h:1/__mock/files/t-1/0_wm.png"},{"index":1,"url":"http://h:1/__mock/files/t-1/1.png","watermark_url":"http://h:1/__mock/files/t-1/1_wm.png"}]}}"#
        );
        let mut failed = task(TaskKind::ImageGeneration, false, "5");
        failed.outcome = Outcome::Failed("bad\nprompt".into());
        failed.external_id = None;
        assert_eq!(
            rendered(&failed, 400),
            r#"{"task_id":"t-1","task_status":"failed","task_status_msg":"bad\nprompt","task_info":{},"created_at":100,"updated_at":300,"watermark_info":{"enabled":false},"task_result":{}}"#
        );
    }

    #[test]
    fn renders_omni_and_video_results_and_extra_fields() {
        let mut omni = task(TaskKind::OmniImage, false, "5");
        omni.n = 1;
        omni.extra = serde_json::from_str(r#"{"future":{"x":[1,null]},"b":true}"#).unwrap();
        assert_eq!(
            rendered(&omni, 300),
            r#"{"task_id":"t-1","task_status":"succeed","task_status_msg":"","task_info":{"external_task_id":"ext \"1\""},"created_at":100,"updated_at":300,"final_unit_deduction":"1","watermark_info":{"enabled":false},"task_result":{"result_type":"single","images":[{"index":0,"url":"http://h:1/__mock/files/t-1/0.png"}]},"future":{"x":[1,null]},"b":true}"#
        );
        let video = task(TaskKind::Text2Video, true, "10");
        assert_eq!(
            rendered(&video, 300),
            r#"{"task_id":"t-1","task_status":"succeed","task_status_msg":"","task_info":{"external_task_id":"ext \"1\""},"created_at":100,"updated_at":300,"final_unit_deduction":"2","watermark_info":{"enabled":true},"task_result":{"videos":[{"id":"t-1_0","url":"http://h:1/__mock/files/t-1/0.mp4","watermark_url":"http://h:1/__mock/files/t-1/0_wm.mp4","duration":"10.0"}]}}"#
        );
        let mut short = task(TaskKind::Image2Video, false, "5.0");
        short.fixed = Some(Fixed {
            status: "succeed".into(),
            msg: String::new(),
            updated_at: 7,
        });
        assert_eq!(
            rendered(&short, 0),
            r#"{"task_id":"t-1","task_status":"succeed","task_status_msg":"","task_info":{"external_task_id":"ext \"1\""},"created_at":100,"updated_at":7,"final_unit_deduction":"1","watermark_info":{"enabled":false},"task_result":{"videos":[{"id":"t-1_0","url":"http://h:1/__mock/files/t-1/0.mp4","duration":"5.0"}]}}"#
        );
    }

    #[test]
    fn marker() {
        assert_eq!(
            failure_marker("a cat [fail]").as_deref(),
            Some("Image pixel is invalid")
        );
        assert_eq!(
            failure_marker("[fail:nope here] x").as_deref(),
            Some("nope here")
        );
        assert_eq!(failure_marker("[failure]"), None);
        assert_eq!(failure_marker("[fail:unterminated"), None);
        assert_eq!(failure_marker("a cat"), None);
    }
}
