//! `klingwatch-mock`: a faithful emulator of the Kling AI HTTP API.
//!
//! The emulator serves the task endpoints of the Kling API (image generation, virtual try-on,
//! image expand, multi-image to image, omni image, text to video, image to video) with the same
//! envelope, authentication (AccessKey/SecretKey HS256 JWTs and API keys), error codes, task
//! lifecycle and callbacks as the real service, plus an unauthenticated control API under the
//! reserved prefix `/__mock` for fault injection, clock control, task seeding and a request log.
//!
//! It is an independent implementation of the server side (it does not depend on the
//! `klingwatch` client crate) so that it can catch client bugs.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use klingwatch_mock::{MockConfig, MockServer};
//! let server = MockServer::start(MockConfig::default()).await?;
//! println!("emulator at {}", server.url());
//! server.stop().await;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod app;
mod args;
mod auth;
mod callbacks;
mod config;
mod control;
mod faults;
mod files;
mod http;
mod kinds;
mod reqlog;
mod routes;
mod server;
mod state;
mod tls;
mod validate;

pub use args::{init_tracing, run, MockArgs};
pub use callbacks::sign_webhook;
pub use config::{
    Account, MockConfig, Timing, DEFAULT_ACCESS_KEY, DEFAULT_API_KEY, DEFAULT_SECRET_KEY,
};
pub use faults::{FaultKind, FaultMatch, FaultSpec};
pub use kinds::TaskKind;
pub use server::{BlockingMockServer, MockServer};
