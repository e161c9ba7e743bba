//! Host bindings of the contract, one module per `keelson:registry` version.
//!
//! A released version is frozen, so its bindings never change; the runtime converts each
//! version's types into `keelson-core` (`convert`) and exposes every version through the one
//! host-facing `keelson_connector::Connector` trait.

pub(crate) mod v0_1;
pub(crate) mod v0_2;

pub(crate) use v0_1::{host_http, log, types};
