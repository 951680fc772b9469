//! Validation of create bodies, with the messages a caller needs to fix its request.
//!
//! Image generation is validated field by field as documented; video kinds require their
//! essential input; the other kinds accept any JSON object. Unknown fields are ignored.

use serde_json::{Map, Value};

use crate::kinds::TaskKind;

/// Maximum prompt length in characters.
pub(crate) const MAX_PROMPT_CHARS: usize = 2500;

const ASPECT_RATIOS: [&str; 8] = ["16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3", "21:9"];

/// What the emulator needs from a valid create body.
#[derive(Debug, Default)]
pub(crate) struct CreateParams {
    pub prompt: Option<String>,
    pub n: u32,
    pub external_id: Option<String>,
    pub callback_url: Option<String>,
    pub watermark: bool,
    pub duration: String,
}

/// A validation failure: business code (1200/1201) and message.
pub(crate) type Invalid = (i64, String);

fn bad(msg: impl Into<String>) -> Invalid {
    (1201, msg.into())
}

fn opt_str<'a>(m: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, Invalid> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(format!("{key} must be a string"))),
    }
}

fn check_prompt(
    m: &Map<String, Value>,
    key: &str,
    required: bool,
) -> Result<Option<String>, Invalid> {
    match opt_str(m, key)? {
        None if required => Err(bad(format!("{key} is required"))),
        None => Ok(None),
        Some(p) if required && p.trim().is_empty() => Err(bad(format!("{key} must not be empty"))),
        Some(p) => {
            let n = p.chars().count();
            if n > MAX_PROMPT_CHARS {
                Err(bad(format!(
                    "{key} is too long: {n} characters, at most {MAX_PROMPT_CHARS}"
                )))
            } else {
                Ok(Some(p.to_string()))
            }
        }
    }
}

fn check_unit(m: &Map<String, Value>, key: &str) -> Result<(), Invalid> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(v) => match v.as_f64() {
            Some(x) if (0.0..=1.0).contains(&x) => Ok(()),
            _ => Err(bad(format!("{key} must be a number in [0, 1], got {v}"))),
        },
    }
}

fn check_enum(m: &Map<String, Value>, key: &str, allowed: &[&str]) -> Result<(), Invalid> {
    match opt_str(m, key)? {
        None => Ok(()),
        Some(s) if allowed.contains(&s) => Ok(()),
        Some(s) => Err(bad(format!(
            "{key} must be one of {}, got {s:?}",
            allowed.join(", ")
        ))),
    }
}

fn check_n(m: &Map<String, Value>, strict: bool) -> Result<u32, Invalid> {
    match m.get("n") {
        None | Some(Value::Null) => Ok(1),
        Some(v) => match v.as_u64() {
            Some(n) if (1..=9).contains(&n) => Ok(n as u32),
            _ if !strict => Ok(1),
            _ => Err(bad(format!("n must be an integer in [1, 9], got {v}"))),
        },
    }
}

/// Validate a create body for `kind`.
pub(crate) fn validate(kind: TaskKind, body: &Value) -> Result<CreateParams, Invalid> {
    let m = match body {
        Value::Object(m) => m,
        _ => return Err((1200, "request body must be a JSON object".to_string())),
    };
    let mut p = CreateParams {
        n: 1,
        duration: "5".to_string(),
        ..Default::default()
    };

    // Fields common to every kind.
    if let Some(e) = opt_str(m, "external_task_id")? {
        if !e.is_empty() {
            p.external_id = Some(e.to_string());
        }
    }
    if let Some(c) = opt_str(m, "callback_url")? {
        if !c.is_empty() {
            p.callback_url = Some(c.to_string());
        }
    }
    opt_str(m, "model_name")?;
    opt_str(m, "model")?;
    match m.get("watermark_info") {
        None | Some(Value::Null) => {}
        Some(Value::Object(w)) => match w.get("enabled") {
            None | Some(Value::Null) => {}
            Some(Value::Bool(b)) => p.watermark = *b,
            Some(_) => return Err(bad("watermark_info.enabled must be a boolean")),
        },
        Some(_) => return Err(bad("watermark_info must be an object")),
    }

    match kind {
        TaskKind::ImageGeneration => {
            p.prompt = check_prompt(m, "prompt", true)?;
            check_prompt(m, "negative_prompt", false)?;
            opt_str(m, "image")?;
            p.n = check_n(m, true)?;
            check_enum(m, "aspect_ratio", &ASPECT_RATIOS)?;
            check_enum(m, "image_reference", &["subject", "face"])?;
            check_enum(m, "resolution", &["1k", "2k"])?;
            check_unit(m, "image_fidelity")?;
            check_unit(m, "human_fidelity")?;
        }
        TaskKind::Text2Video | TaskKind::Image2Video => {
            let needs_prompt = kind == TaskKind::Text2Video;
            p.prompt = check_prompt(m, "prompt", needs_prompt)?;
            check_prompt(m, "negative_prompt", false)?;
            if kind == TaskKind::Image2Video {
                let has = |k: &str| matches!(m.get(k), Some(Value::String(s)) if !s.is_empty());
                if !has("image") && !has("image_tail") {
                    return Err(bad("image is required"));
                }
            }
            match m.get("duration") {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) if s == "5" || s == "10" => p.duration = s.clone(),
                Some(Value::Number(n)) if n.as_u64() == Some(5) || n.as_u64() == Some(10) => {
                    p.duration = n.to_string()
                }
                Some(v) => return Err(bad(format!("duration must be \"5\" or \"10\", got {v}"))),
            }
            check_enum(m, "aspect_ratio", &["16:9", "9:16", "1:1"])?;
        }
        TaskKind::VirtualTryOn => {
            p.prompt = check_prompt(m, "prompt", false)?;
        }
        TaskKind::ImageExpand | TaskKind::MultiImage2Image | TaskKind::OmniImage => {
            p.prompt = check_prompt(m, "prompt", false)?;
            p.n = check_n(m, false)?;
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn img(v: Value) -> Result<CreateParams, Invalid> {
        validate(TaskKind::ImageGeneration, &v)
    }

    #[test]
    fn image_generation_rules() {
        assert!(img(json!({"prompt":"a cat"})).is_ok());
        assert_eq!(img(json!({"prompt":"a cat","n":4})).unwrap().n, 4);
        assert!(img(json!({})).is_err());
        assert!(img(json!({"prompt":""})).is_err());
        assert!(img(json!({"prompt":"x".repeat(2500)})).is_ok());
        assert!(img(json!({"prompt":"x".repeat(2501)})).is_err());
        assert!(img(json!({"prompt":"a","n":0})).is_err());
        assert!(img(json!({"prompt":"a","n":10})).is_err());
        assert!(img(json!({"prompt":"a","n":1.5})).is_err());
        assert!(img(json!({"prompt":"a","aspect_ratio":"5:4"})).is_err());
        assert!(img(json!({"prompt":"a","image_fidelity":1.5})).is_err());
        assert!(img(json!({"prompt":"a","human_fidelity":0.5})).is_ok());
        assert!(img(json!({"prompt":"a","resolution":"4k"})).is_err());
        assert!(img(json!({"prompt":"a","image_reference":"body"})).is_err());
        assert!(img(json!({"prompt":"a","whatever":{"x":1}})).is_ok());
        assert_eq!(img(json!([1])).unwrap_err().0, 1200);
    }
}
