//! Host bindings of `keelson:registry@0.1.0`, generated from `wit/`.
//!
//! Imports and exports are async: host calls await the egress gate, and exports run on a fiber so
//! the epoch callback can yield and a wall-clock timeout can drop them.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "registry-connector",
    imports: { default: async },
    exports: { default: async },
});

pub(crate) use keelson::registry::{host_http, log, types};
