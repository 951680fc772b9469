//! The task kinds of the Kling API and their URL paths.

use std::fmt;

/// One family of Kling tasks; each has its own `/v1/...` path and its own task namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaskKind {
    /// `images/generations`
    ImageGeneration,
    /// `images/kolors-virtual-try-on`
    VirtualTryOn,
    /// `images/editing/expand`
    ImageExpand,
    /// `images/multi-image2image`
    MultiImage2Image,
    /// `images/omni-image`
    OmniImage,
    /// `videos/text2video`
    Text2Video,
    /// `videos/image2video`
    Image2Video,
}

impl TaskKind {
    /// Every kind, in a stable order.
    pub const ALL: [TaskKind; 7] = [
        TaskKind::ImageGeneration,
        TaskKind::VirtualTryOn,
        TaskKind::ImageExpand,
        TaskKind::MultiImage2Image,
        TaskKind::OmniImage,
        TaskKind::Text2Video,
        TaskKind::Image2Video,
    ];

    /// Path below `/v1/`, e.g. `images/generations`.
    pub fn path(self) -> &'static str {
        match self {
            TaskKind::ImageGeneration => "images/generations",
            TaskKind::VirtualTryOn => "images/kolors-virtual-try-on",
            TaskKind::ImageExpand => "images/editing/expand",
            TaskKind::MultiImage2Image => "images/multi-image2image",
            TaskKind::OmniImage => "images/omni-image",
            TaskKind::Text2Video => "videos/text2video",
            TaskKind::Image2Video => "videos/image2video",
        }
    }

    /// Snake-case name used by the control API, e.g. `image_generation`.
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::ImageGeneration => "image_generation",
            TaskKind::VirtualTryOn => "virtual_try_on",
            TaskKind::ImageExpand => "image_expand",
            TaskKind::MultiImage2Image => "multi_image2image",
            TaskKind::OmniImage => "omni_image",
            TaskKind::Text2Video => "text2video",
            TaskKind::Image2Video => "image2video",
        }
    }

    /// Dense index in `0..7`.
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// Whether results are videos (`task_result.videos`) rather than images.
    pub fn is_video(self) -> bool {
        matches!(self, TaskKind::Text2Video | TaskKind::Image2Video)
    }

    /// Parse a control-API name: the snake-case name, the path, or a few common aliases.
    pub fn parse(s: &str) -> Option<TaskKind> {
        let s = s.trim().trim_matches('/');
        let s = s.strip_prefix("v1/").unwrap_or(s);
        for k in TaskKind::ALL {
            if s == k.name() || s == k.path() {
                return Some(k);
            }
        }
        let norm: String = s
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        Some(match norm.as_str() {
            "imagegeneration" | "image" | "images" | "generations" | "imagesgenerations" => {
                TaskKind::ImageGeneration
            }
            "virtualtryon" | "kolorsvirtualtryon" | "tryon" => TaskKind::VirtualTryOn,
            "imageexpand" | "expand" | "editingexpand" => TaskKind::ImageExpand,
            "multiimage2image" | "multiimagetoimage" => TaskKind::MultiImage2Image,
            "omniimage" | "omni" => TaskKind::OmniImage,
            "text2video" | "texttovideo" => TaskKind::Text2Video,
            "image2video" | "imagetovideo" => TaskKind::Image2Video,
            _ => return None,
        })
    }

    /// Match the part of a path after `/v1/`: returns the kind and the remainder
    /// (`""` for the collection, `"/{id}"` for one task).
    pub(crate) fn match_path(rest: &str) -> Option<(TaskKind, &str)> {
        for k in TaskKind::ALL {
            if let Some(tail) = rest.strip_prefix(k.path()) {
                if tail.is_empty() || tail.starts_with('/') {
                    return Some((k, tail));
                }
            }
        }
        None
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
