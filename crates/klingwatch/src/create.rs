//! Creating tasks without ever duplicating one: typed image requests, local validation,
//! refusal-only retries and lookup by `external_task_id` after an unknown outcome.

use bytes::Bytes;
use reqwest::Method;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::client::{Call, Client};
use crate::error::{Error, ErrorKind, Result};
use crate::retry::{create_outcome_unknown, Idempotency};
use crate::task::{validate_task_id, Task, TaskKind};

/// The aspect ratios documented for image generation.
pub const ASPECT_RATIOS: [&str; 8] = ["16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3", "21:9"];
/// The longest prompt accepted, in characters.
pub const MAX_PROMPT_CHARS: usize = 2500;

/// An image-generation request (kling-api.md §3). Unset options are omitted from the JSON;
/// `extra` passes fields this version does not model straight through.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ImageGenerationRequest {
    /// The prompt (required, at most 2500 characters).
    pub prompt: String,
    /// Model name (`kling-v1`, `kling-v2-1`, ...): an open string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
    /// Negative prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    /// Reference image: a URL or raw base64 (no `data:` prefix).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// `subject` or `face`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_reference: Option<String>,
    /// Reference strength in [0, 1].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_fidelity: Option<f64>,
    /// Face reference strength in [0, 1].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub human_fidelity: Option<f64>,
    /// `1k` or `2k`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
    /// Number of images, 1..=9.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// One of [`ASPECT_RATIOS`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aspect_ratio: Option<String>,
    /// `{"enabled": bool}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watermark_info: Option<Value>,
    /// URL the server POSTs status changes to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// The caller's own id, unique per account; makes the create recoverable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_task_id: Option<String>,
    /// Fields passed through as given.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ImageGenerationRequest {
    /// A request with just a prompt.
    pub fn new(prompt: impl Into<String>) -> Self {
        ImageGenerationRequest {
            prompt: prompt.into(),
            ..Default::default()
        }
    }

    /// The JSON body.
    pub fn to_json(&self) -> Result<Map<String, Value>> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(Error::invalid("the request is not a JSON object")),
            Err(e) => Err(Error::invalid(format!(
                "the request cannot be serialised: {e}"
            ))),
        }
    }
}

fn number_in(map: &Map<String, Value>, key: &str, lo: f64, hi: f64) -> Result<()> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Number(n)) if n.as_f64().is_some_and(|f| (lo..=hi).contains(&f)) => Ok(()),
        Some(v) => Err(Error::invalid(format!(
            "{key} must be a number in [{lo}, {hi}], got {v}"
        ))),
    }
}

fn one_of(map: &Map<String, Value>, key: &str, allowed: &[&str]) -> Result<()> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(()),
        Some(v) => Err(Error::invalid(format!(
            "{key} must be one of {}, got {v}",
            allowed.join(", ")
        ))),
    }
}

/// Checks a create body locally so that bad input never costs a request.
///
/// Image generation gets the documented rules (prompt, `n`, ratios, fidelities,
/// resolution); every kind gets the `external_task_id` and `callback_url` checks.
pub fn validate_create_body(kind: TaskKind, map: &Map<String, Value>) -> Result<()> {
    if let Some(v) = map.get("external_task_id").filter(|v| !v.is_null()) {
        let Value::String(s) = v else {
            return Err(Error::invalid("external_task_id must be a string"));
        };
        validate_task_id(s)
            .map_err(|e| Error::invalid(e.message().replace("task id", "external_task_id")))?;
    }
    if let Some(v) = map.get("callback_url").filter(|v| !v.is_null()) {
        let ok = v
            .as_str()
            .and_then(|s| url::Url::parse(s).ok())
            .is_some_and(|u| matches!(u.scheme(), "http" | "https"));
        if !ok {
            return Err(Error::invalid(format!(
                "callback_url must be an http(s) URL, got {v}"
            )));
        }
    }
    if kind != TaskKind::ImageGeneration {
        return Ok(());
    }
    match map.get("prompt") {
        Some(Value::String(p)) if p.trim().is_empty() => {
            return Err(Error::invalid("prompt is empty"))
        }
        Some(Value::String(p)) if p.chars().count() > MAX_PROMPT_CHARS => {
            return Err(Error::invalid(format!(
                "prompt is {} characters long; the limit is {MAX_PROMPT_CHARS}",
                p.chars().count()
            )))
        }
        Some(Value::String(_)) => {}
        None | Some(Value::Null) => return Err(Error::invalid("prompt is required")),
        Some(_) => return Err(Error::invalid("prompt must be a string")),
    }
    match map.get("n") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| (1..=9).contains(&n)) => {}
        Some(v) => {
            return Err(Error::invalid(format!(
                "n must be an integer in 1..=9, got {v}"
            )))
        }
    }
    one_of(map, "aspect_ratio", &ASPECT_RATIOS)?;
    one_of(map, "resolution", &["1k", "2k"])?;
    one_of(map, "image_reference", &["subject", "face"])?;
    number_in(map, "image_fidelity", 0.0, 1.0)?;
    number_in(map, "human_fidelity", 0.0, 1.0)?;
    if let Some(Value::String(img)) = map.get("image") {
        if img.starts_with("data:") {
            return Err(Error::invalid(
                "image must be a URL or raw base64 without a data: prefix",
            ));
        }
    }
    Ok(())
}

fn generated_external_id() -> String {
    let n: u128 = rand::random();
    format!("kw-{n:032x}")
}

impl Client {
    /// Creates a task of `kind` from a JSON object body.
    ///
    /// Never duplicates a task: only refusals (1302/1303) are retried. After a 5xx, a
    /// timeout or a dropped connection the task may exist; with an `external_task_id` the
    /// client looks it up and returns it, or re-sends only once the lookup proves it absent.
    /// Without one, the error says the outcome is unknown ([`Error::is_outcome_unknown`]).
    pub async fn create_task(&self, kind: TaskKind, body: Value) -> Result<Task> {
        let Value::Object(mut map) = body else {
            return Err(Error::invalid("the create body must be a JSON object"));
        };
        validate_create_body(kind, &map)?;
        if self.inner.auto_external_task_id
            && map.get("external_task_id").is_none_or(Value::is_null)
        {
            map.insert(
                "external_task_id".into(),
                Value::String(generated_external_id()),
            );
        }
        let external = map
            .get("external_task_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let body =
            Bytes::from(serde_json::to_vec(&map).map_err(|e| Error::invalid(e.to_string()))?);
        let _permit = match &self.inner.create_slots {
            Some(slots) => Some(
                slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| Error::new(ErrorKind::Cancelled, "client closed"))?,
            ),
            None => None,
        };
        let mut unknown_before: Option<Error> = None;
        let mut rounds = 0u32;
        loop {
            rounds += 1;
            let call = Call {
                method: Method::POST,
                path: kind.path().to_owned(),
                query: Vec::new(),
                body: Some(body.clone()),
                idempotency: Idempotency::Create,
                task_id: None,
            };
            let err = match self.execute(call).await {
                Ok(answer) => {
                    let mut task = answer.task(kind)?;
                    if task.external_task_id.is_none() {
                        task.external_task_id = external.clone();
                    }
                    return Ok(task);
                }
                Err(e) => e,
            };
            // A re-send refused after an unknown first outcome: the first one may have landed.
            let ambiguous = create_outcome_unknown(&err)
                || (unknown_before.is_some() && err.kind() == ErrorKind::InvalidRequest);
            if !ambiguous {
                return Err(err.with_external_task_id(external));
            }
            let Some(ext) = external.clone() else {
                let msg = format!(
                    "{}; the create's outcome is unknown: the task may exist. Pass external_task_id \
                     (or enable auto_external_task_id) so that klingwatch can look it up",
                    err.message()
                );
                let mut e = err.with_outcome_unknown();
                e.set_message(msg);
                return Err(e);
            };
            match self.get_task_by_external_id(kind, &ext).await {
                Ok(task) => {
                    tracing::info!(external_task_id = %ext, task_id = %task.id, "create answer lost; found the task by external_task_id");
                    return Ok(task);
                }
                Err(lookup)
                    if lookup.kind() == ErrorKind::NotFound
                        && rounds <= self.inner.retry.max_retries =>
                {
                    tracing::info!(external_task_id = %ext, "create answer lost and no task exists; sending again");
                    unknown_before = Some(err);
                    tokio::time::sleep(
                        self.inner
                            .retry
                            .delay(rounds, unknown_before.as_ref().unwrap()),
                    )
                    .await;
                }
                Err(lookup) => {
                    let msg = format!(
                        "{}; the create's outcome is unknown and the lookup by external_task_id {ext:?} failed ({}): look it up later",
                        err.message(),
                        lookup.kind()
                    );
                    let mut e = err.with_outcome_unknown().with_external_task_id(Some(ext));
                    e.set_message(msg);
                    return Err(e);
                }
            }
        }
    }

    /// Creates an image-generation task.
    pub async fn create_image_task(&self, request: &ImageGenerationRequest) -> Result<Task> {
        self.create_task(TaskKind::ImageGeneration, Value::Object(request.to_json()?))
            .await
    }
}
