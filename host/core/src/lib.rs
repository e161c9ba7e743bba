//! Keelson's domain types, shared by every host crate and free of I/O.
//!
//! The plugin contract's WIT types stop at `keelson-runtime`, which converts them into these:
//! [`ConnectorInfo`], [`Registry`], [`Repository`], [`Image`], [`Finding`], [`ImageContext`] and
//! [`ConnectorError`]. [`HostPattern`] is the grammar of `allowed_hosts`, shared by the config
//! validator and the egress gate. [`text`] neutralises plugin text on its way to a terminal, a CSV
//! cell or a log line.

mod error;
mod host_pattern;
mod model;
pub mod text;

pub use error::ConnectorError;
pub use host_pattern::{HostPattern, HostPatternError, PatternPart, default_port, normalize_host};
pub use model::*;
