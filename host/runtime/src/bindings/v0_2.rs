//! Host bindings of `keelson:registry@0.2.0`, generated from `wit/v0.2.0/`.
//!
//! Records 0.2.0 kept as they were are moved into their 0.1.0 twins (`convert::v0_2`), so one
//! checked conversion into `keelson-core` serves both versions. The `secret` resource is a
//! [`SealedSecret`](crate::sealed::SealedSecret) in the store's resource table.

wasmtime::component::bindgen!({
    path: "../../wit/v0.2.0",
    world: "registry-connector",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "keelson:registry/secrets.secret": crate::sealed::SealedSecret,
    },
});

pub(crate) use keelson::registry::{host_http, log, secrets, types};
