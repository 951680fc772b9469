//! Node bindings for klingwatch (napi-rs). Every rule lives in the core crate; this only converts.
use napi_derive::napi;

/// Version of the native addon.
#[napi]
pub fn native_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
