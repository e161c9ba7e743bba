//! Runs connector plugins as WebAssembly components in a wasmtime sandbox.
//!
//! This is the only crate that names wasmtime, and the place where the contract's WIT types stop:
//! everything it returns is a `keelson-core` type or an [`Error`].
//!
//! - [`Runtime`]: one Cranelift [`wasmtime::Engine`] with epoch interruption (a ticker thread),
//!   the linker (our `host-http` and `log` imports plus WASI p2 with an empty context), and the
//!   on-disk cache of precompiled components.
//! - [`Runtime::load`] turns a [`keelson_config::PluginSpec`] into a [`Plugin`]: it checks the
//!   `sha256` pin before compiling, refuses anything that is not a component, reads which
//!   `keelson:registry` version the component targets and refuses the ones this host does not
//!   speak, then links it once.
//! - [`Plugin::connect`] opens a [`Connection`]: a fresh `Store` with every limit set (memory,
//!   tables, instances, component handles, WASI resources, stack, bytes lifted per value, an epoch
//!   deadline and a wall-clock timeout per call) and the guest's `session`. A connection whose
//!   call trapped or timed out is retired.
//! - Values coming out of the guest are validated ([`Caps`]) while they are converted.

mod bindings;
mod convert;
mod engine;
mod error;
mod host;
mod output;
mod plugin;
mod sealed;

pub use convert::Caps;
pub use engine::{Runtime, RuntimeSettings, SUPPORTED_WIT_VERSION};
pub use error::{CallSite, Error, Result};
pub use keelson_http::BoundSecret;
pub use plugin::{Connection, PageRequest, Plugin};
