//! klingwatch: sign Kling AI credentials and track Kling generation tasks.
//!
//! ```no_run
//! # async fn demo() -> klingwatch::Result<()> {
//! let client = klingwatch::Client::builder().build()?; // KLING_ACCESS_KEY / KLING_SECRET_KEY
//! let task = client.wait_image_task("930810057590833241", Default::default()).await?;
//! for image in &task.images {
//!     println!("{}", image.url);
//! }
//! # Ok(()) }
//! ```

pub mod auth;
pub mod batch;
pub mod callback;
pub mod client;
pub mod create;
pub mod download;
pub mod error;
pub mod retry;
pub mod task;
pub mod wait;

pub use auth::{sign_jwt, Clock, Credentials, ManualClock, Secret, SystemClock, TokenProvider};
pub use callback::{
    parse_callback, parse_callback_as, sign_webhook, verify_webhook, verify_webhook_at,
};
pub use client::{Client, ClientBuilder, ExternalIdLookup, Region};
pub use create::{validate_create_body, ImageGenerationRequest};
pub use error::{Error, ErrorKind, Result, RetryAction, CODE_TABLE};
pub use retry::RetryPolicy;
pub use task::{validate_task_id, Image, Task, TaskKind, TaskStatus, Video};
pub use tokio_util::sync::CancellationToken;
pub use wait::{OnUpdate, TaskUpdate, WaitOptions, WatchOptions};

/// Installs rustls' ring provider as the process default if none is installed yet
/// (reqwest is built without a provider of its own). Harmless to call repeatedly.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
