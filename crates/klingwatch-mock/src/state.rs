//! Task state: the per-account, per-kind task store, the lazily computed lifecycle and the
//! rendering of task objects exactly as the Kling API returns them.

use std::collections::{HashMap, HashSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
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

    /// The full task object (query, list and callback bodies) at emulator time `now`.
    pub(crate) fn render(&self, now: i64, base_url: &str) -> Value {
        let st = self.status_at(now);
        let mut m = Map::with_capacity(9);
        m.insert("task_id".into(), Value::String(self.id.clone()));
        m.insert("task_status".into(), Value::String(st.status.to_string()));
        m.insert("task_status_msg".into(), Value::String(st.msg.to_string()));
        m.insert("task_info".into(), self.task_info());
        m.insert("created_at".into(), Value::from(self.created_at));
        m.insert("updated_at".into(), Value::from(st.updated_at));
        let succeeded = st.status == "succeed";
        if succeeded {
            let units = if self.kind.is_video() {
                if self.duration.trim_end_matches(".0") == "10" {
                    "2"
                } else {
                    "1"
                }
                .to_string()
            } else {
                self.n.to_string()
            };
            m.insert("final_unit_deduction".into(), Value::String(units));
        }
        m.insert(
            "watermark_info".into(),
            json!({ "enabled": self.watermark }),
        );
        let mut result = Map::new();
        if succeeded {
            let files = format!("{base_url}/__mock/files/{}", self.id);
            if self.kind.is_video() {
                let mut v = Map::new();
                v.insert("id".into(), Value::String(format!("{}_0", self.id)));
                v.insert("url".into(), Value::String(format!("{files}/0.mp4")));
                if self.watermark {
                    v.insert(
                        "watermark_url".into(),
                        Value::String(format!("{files}/0_wm.mp4")),
                    );
                }
                v.insert(
                    "duration".into(),
                    Value::String(video_duration(&self.duration)),
                );
                result.insert("videos".into(), Value::Array(vec![Value::Object(v)]));
            } else {
                let images: Vec<Value> = (0..self.n)
                    .map(|i| {
                        let mut img = Map::new();
                        img.insert("index".into(), Value::from(i));
                        img.insert("url".into(), Value::String(format!("{files}/{i}.png")));
                        if self.watermark {
                            img.insert(
                                "watermark_url".into(),
                                Value::String(format!("{files}/{i}_wm.png")),
                            );
                        }
                        Value::Object(img)
                    })
                    .collect();
                if self.kind == TaskKind::OmniImage {
                    result.insert("result_type".into(), Value::String("single".into()));
                }
                result.insert("images".into(), Value::Array(images));
            }
        }
        m.insert("task_result".into(), Value::Object(result));
        if let Some(extra) = &self.extra {
            for (k, v) in extra {
                m.insert(k.clone(), v.clone());
            }
        }
        Value::Object(m)
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
