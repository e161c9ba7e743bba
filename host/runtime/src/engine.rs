//! The engine, the linker, the precompiled-component cache and plugin loading.

use std::hash::{Hash as _, Hasher as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use keelson_config::PluginSpec;
use sha2::{Digest as _, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, OptLevel};

use crate::bindings::{v0_1, v0_2};
use crate::convert::Caps;
use crate::error::{Error, Result};
use crate::host::HostState;
use crate::plugin::Pre;
use crate::plugin::{Plugin, PluginMeta};

/// The contract version this host implements. Components built against it or an older
/// semver-compatible version are accepted; others are refused at load.
pub const SUPPORTED_WIT_VERSION: &str = "0.2.0";

/// Every contract version this host links, newest first. 0.1.0 hands secrets to the guest in
/// plaintext, so a plugin built for it loads only when the operator allows that.
const LINKED_WIT_VERSIONS: [&str; 2] = [SUPPORTED_WIT_VERSION, "0.1.0"];

const PACKAGE: &str = "keelson:registry";

/// Host-wide runtime settings. The per-plugin limits come from each [`PluginSpec`].
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// Where precompiled components are cached (`[host] cache_dir`).
    pub cache_dir: PathBuf,
    /// How long compiling one component may take before the plugin is refused.
    pub compile_timeout: Duration,
    /// Wasm stack per call; deeper recursion traps with a stack overflow.
    pub max_wasm_stack: usize,
    /// Bytes wasmtime may lift out of the guest for one value (an export's result or a host
    /// call's arguments), counted as the host-side size (`Store::set_hostcall_fuel`).
    pub max_lifted_bytes: usize,
    /// Checks on returned values.
    pub caps: Caps,
    /// Table elements per table, instances/tables/memories per store.
    pub max_table_elements: usize,
    pub max_instances: usize,
    /// Live component-model handles per store (resources the guest creates and leaks).
    pub max_component_handles: usize,
    /// WASI resources (streams, pollables) per store.
    pub max_wasi_resources: usize,
    /// Captured stdout and stderr per connection, each; the rest is dropped.
    pub max_output_bytes: usize,
    /// Bytes of one `log` line kept; the rest is cut.
    pub max_log_line_bytes: usize,
    /// `log` lines kept per export call; the rest are counted and dropped.
    pub max_log_lines_per_call: u32,
    /// How often the epoch advances. A guest in a loop is checked (and yields) this often.
    pub epoch_tick: Duration,
}

impl RuntimeSettings {
    /// The defaults, caching in `cache_dir`.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            cache_dir: cache_dir.into(),
            compile_timeout: Duration::from_mins(2),
            max_wasm_stack: 512 << 10,
            max_lifted_bytes: 64 << 20,
            caps: Caps::default(),
            max_table_elements: 100_000,
            max_instances: 50,
            max_component_handles: 1_000,
            max_wasi_resources: 1_000,
            max_output_bytes: 64 << 10,
            max_log_line_bytes: 4 << 10,
            max_log_lines_per_call: 1_000,
            epoch_tick: Duration::from_millis(10),
        }
    }
}

/// Loads and runs plugins. Cheap to clone; clones share the engine, linker and ticker.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<RuntimeInner>,
}

pub(crate) struct RuntimeInner {
    pub(crate) engine: Engine,
    linker: Linker<HostState>,
    pub(crate) settings: RuntimeSettings,
    pub(crate) egress: keelson_http::Egress,
    /// Hash of everything that makes a precompiled artifact compatible with this engine,
    /// wasmtime's version included.
    engine_key: u64,
    stop_ticker: Arc<AtomicBool>,
}

impl Drop for RuntimeInner {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

fn engine_config(settings: &RuntimeSettings) -> Config {
    let mut c = Config::new();
    c.strategy(wasmtime::Strategy::Cranelift)
        .cranelift_opt_level(OptLevel::Speed)
        .epoch_interruption(true)
        .max_wasm_stack(settings.max_wasm_stack)
        // Proposals no connector needs: less compiler and runtime surface exposed to plugins.
        // (Threads, exceptions, GC and component-model async are not even compiled in.)
        .wasm_relaxed_simd(false)
        .wasm_memory64(false)
        .wasm_multi_memory(false)
        .wasm_tail_call(false)
        .wasm_wide_arithmetic(false)
        .wasm_custom_page_sizes(false)
        .wasm_stack_switching(false);
    c
}

impl Runtime {
    /// Builds the engine and linker and starts the epoch ticker. Outbound requests of every
    /// connection go through `egress`.
    pub fn new(settings: RuntimeSettings, egress: keelson_http::Egress) -> Result<Self> {
        let engine =
            Engine::new(&engine_config(&settings)).map_err(|e| Error::Engine(e.to_string()))?;
        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| Error::Engine(e.to_string()))?;
        v0_1::RegistryConnector::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| Error::Engine(e.to_string()))?;
        v0_2::RegistryConnector::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| Error::Engine(e.to_string()))?;

        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = hasher.finish();

        // A plain thread, not a tokio task: it must keep ticking while every runtime worker is
        // busy running guest code.
        let stop_ticker = Arc::new(AtomicBool::new(false));
        let (ticker_engine, stop, tick) =
            (engine.clone(), stop_ticker.clone(), settings.epoch_tick);
        std::thread::Builder::new()
            .name("keelson-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    ticker_engine.increment_epoch();
                }
            })
            .map_err(|e| Error::Engine(format!("cannot start the epoch ticker: {e}")))?;

        Ok(Self {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                settings,
                egress,
                engine_key,
                stop_ticker,
            }),
        })
    }

    /// Loads one plugin: reads the file, checks the pin, compiles (or loads the cached
    /// artifact), checks the contract version, links it and asks it to `describe` itself.
    #[tracing::instrument(name = "plugin.load", skip_all, fields(plugin = %spec.id))]
    pub async fn load(&self, spec: &PluginSpec) -> Result<Plugin> {
        let plugin = spec.id.to_string();
        let path = spec.path.clone();
        let read_path = path.clone();
        // Reading and hashing a multi-megabyte file is blocking work.
        let read = tokio::task::spawn_blocking(move || {
            std::fs::read(&read_path).map(|bytes| {
                let digest = hex::encode(Sha256::digest(&bytes));
                (bytes, digest)
            })
        })
        .await
        .map_err(|join| Error::Engine(format!("the read task failed: {join}")))?;
        let (bytes, sha256) = read.map_err(|source| Error::Read {
            plugin: plugin.clone(),
            path: path.clone(),
            source,
        })?;
        // The pin is checked before wasmtime sees a single byte.
        if let Some(expected) = &spec.sha256
            && !expected.eq_ignore_ascii_case(&sha256)
        {
            return Err(Error::DigestMismatch {
                plugin,
                path,
                expected: expected.clone(),
                actual: sha256,
            });
        }
        check_header(&bytes, &plugin, &path)?;

        let component = self.component(&plugin, &path, &sha256, bytes).await?;
        let (wit_version, imports, exports) = self.contract(&component, &plugin)?;
        if wit_version.starts_with("0.1.") && !spec.allow_plaintext_secrets {
            return Err(Error::PlaintextSecrets {
                plugin,
                found: wit_version,
            });
        }
        let link = |e: wasmtime::Error| Error::Link {
            plugin: plugin.clone(),
            reason: format!("{e:#}"),
        };
        let instance_pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(link)?;
        let pre = if wit_version.starts_with("0.1.") {
            Pre::V0_1(v0_1::RegistryConnectorPre::new(instance_pre).map_err(link)?)
        } else {
            Pre::V0_2(v0_2::RegistryConnectorPre::new(instance_pre).map_err(link)?)
        };
        if matches!(pre, Pre::V0_1(_)) {
            tracing::warn!(
                plugin = %plugin,
                "plugin targets `keelson:registry@{wit_version}`, which hands it secret values in plaintext; it is loaded because `allow_plaintext_secrets = true`, and only the egress gate's byte matching stands between a hostile build and the secrets; rebuild it against {SUPPORTED_WIT_VERSION}"
            );
        }
        let meta = PluginMeta {
            spec: spec.clone(),
            sha256,
            wit_version,
            imports,
            exports,
        };
        Plugin::new(self.clone(), meta, pre).await
    }

    /// The compiled component, from the cache when it holds a compatible artifact.
    async fn component(
        &self,
        plugin: &str,
        path: &Path,
        sha256: &str,
        bytes: Vec<u8>,
    ) -> Result<Component> {
        let settings = &self.inner.settings;
        let cached = settings
            .cache_dir
            .join(format!("{sha256}-{:016x}.cwasm", self.inner.engine_key));
        if cached.is_file() {
            // SAFETY: `deserialize_file` trusts the file to be an artifact this engine produced.
            // It sits in the operator's cache folder (as trusted as the plugin files and
            // plugins.toml themselves) under a name derived from the digest of the component we
            // just checked and from this engine's compatibility hash; wasmtime re-checks the
            // header, version and engine settings before using it.
            #[allow(unsafe_code)]
            let loaded = unsafe { Component::deserialize_file(&self.inner.engine, &cached) };
            match loaded {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(plugin, cache = %cached.display(), "ignoring an unusable cached artifact: {e}");
                }
            }
        }

        let engine = self.inner.engine.clone();
        let compile = tokio::task::spawn_blocking(move || engine.precompile_component(&bytes));
        // On timeout the compile thread cannot be stopped; it finishes and its result is dropped.
        let artifact = match tokio::time::timeout(settings.compile_timeout, compile).await {
            Err(_) => {
                return Err(Error::CompileTimeout {
                    plugin: plugin.to_owned(),
                    limit: settings.compile_timeout,
                });
            }
            Ok(Err(join)) => return Err(Error::Engine(format!("the compile task failed: {join}"))),
            Ok(Ok(Err(e))) => {
                return Err(Error::InvalidComponent {
                    plugin: plugin.to_owned(),
                    path: path.to_owned(),
                    reason: format!("{e:#}"),
                });
            }
            Ok(Ok(Ok(artifact))) => artifact,
        };
        if let Err(e) = write_atomically(&cached, &artifact) {
            tracing::warn!(plugin, cache = %cached.display(), "cannot cache the compiled plugin: {e}");
        }
        // SAFETY: `artifact` was produced by `precompile_component` of this very engine a moment
        // ago and never left this process.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(&self.inner.engine, &artifact) };
        component.map_err(|e| {
            Error::Engine(format!("cannot load the compiled plugin `{plugin}`: {e:#}"))
        })
    }

    /// Which `keelson:registry` version the component targets, with its import and export names.
    fn contract(
        &self,
        component: &Component,
        plugin: &str,
    ) -> Result<(String, Vec<String>, Vec<String>)> {
        let ty = component.component_type();
        let imports: Vec<String> = ty
            .imports(&self.inner.engine)
            .map(|(n, _)| n.to_owned())
            .collect();
        let exports: Vec<String> = ty
            .exports(&self.inner.engine)
            .map(|(n, _)| n.to_owned())
            .collect();
        let mut versions: Vec<&str> = imports
            .iter()
            .chain(&exports)
            .filter_map(|name| contract_version(name))
            .collect();
        versions.sort_unstable();
        versions.dedup();
        let found = match versions.as_slice() {
            [] => {
                return Err(Error::NotAConnector {
                    plugin: plugin.to_owned(),
                    exports: if exports.is_empty() {
                        "nothing".to_owned()
                    } else {
                        exports
                            .iter()
                            .map(|e| format!("`{e}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                });
            }
            [one] => (*one).to_owned(),
            many => {
                return Err(Error::Link {
                    plugin: plugin.to_owned(),
                    reason: format!("it mixes several `{PACKAGE}` versions: {}", many.join(", ")),
                });
            }
        };
        if !LINKED_WIT_VERSIONS
            .iter()
            .any(|ours| compatible(&found, ours))
        {
            return Err(Error::UnsupportedVersion {
                plugin: plugin.to_owned(),
                found,
                supported: SUPPORTED_WIT_VERSION,
                compatible: compatible_range(),
            });
        }
        Ok((found, imports, exports))
    }
}

/// Refuses files that are not components before wasmtime parses them, with a clear message.
fn check_header(bytes: &[u8], plugin: &str, path: &Path) -> Result<()> {
    const COMPONENT_VERSION: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];
    const MODULE_VERSION: [u8; 4] = [0x01, 0x00, 0x00, 0x00];
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(Error::NotWasm {
            plugin: plugin.to_owned(),
            path: path.to_owned(),
        });
    }
    match <[u8; 4]>::try_from(&bytes[4..8]) {
        Ok(MODULE_VERSION) => Err(Error::CoreModule {
            plugin: plugin.to_owned(),
            path: path.to_owned(),
        }),
        Ok(COMPONENT_VERSION) => Ok(()),
        _ => Err(Error::InvalidComponent {
            plugin: plugin.to_owned(),
            path: path.to_owned(),
            reason: format!("unknown binary version `{}`", hex::encode(&bytes[4..8])),
        }),
    }
}

/// `keelson:registry/auth@0.1.0` → `0.1.0`.
fn contract_version(name: &str) -> Option<&str> {
    let rest = name.strip_prefix(PACKAGE)?.strip_prefix('/')?;
    Some(rest.split_once('@')?.1)
}

/// Semver compatibility as the component model's linker applies it: same major, and for 0.x
/// the same minor. Pre-release and build suffixes never match.
fn compatible(version: &str, ours: &str) -> bool {
    let parts = |v: &str| -> Option<(u64, u64, u64)> {
        let mut it = v.split('.');
        let p = (
            it.next()?.parse().ok()?,
            it.next()?.parse().ok()?,
            it.next()?.parse().ok()?,
        );
        it.next().is_none().then_some(p)
    };
    let (Some(found), Some(ours)) = (parts(version), parts(ours)) else {
        return false;
    };
    if ours.0 == 0 {
        found.0 == 0 && found.1 == ours.1 && found.2 <= ours.2
    } else {
        found.0 == ours.0 && (found.1, found.2) <= (ours.1, ours.2)
    }
}

/// Says in words which versions [`compatible`] accepts.
fn compatible_range() -> String {
    let ranges: Vec<String> = LINKED_WIT_VERSIONS
        .iter()
        .map(|ours| {
            let mut it = ours.split('.');
            match (it.next(), it.next()) {
                (Some("0"), Some(minor)) => format!("`0.{minor}.x` up to `{ours}`"),
                (Some(major), _) => format!("`{major}.x` up to `{ours}`"),
                _ => format!("`{ours}`"),
            }
        })
        .collect();
    ranges.join(" and ")
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a concurrent reader never
/// sees half an artifact.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)?;
    // Unique per process and call, so two loads of the same component never share a temp file.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{}.{}-{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_version_is_read_from_interface_names() {
        assert_eq!(
            contract_version("keelson:registry/auth@0.1.0"),
            Some("0.1.0")
        );
        assert_eq!(
            contract_version("keelson:registry/log@9.0.0"),
            Some("9.0.0")
        );
        assert_eq!(contract_version("wasi:cli/stdout@0.2.6"), None);
        assert_eq!(contract_version("keelson:registryx/auth@0.1.0"), None);
    }

    #[test]
    fn only_semver_compatible_versions_are_supported() {
        assert!(compatible("0.1.0", "0.1.0"));
        assert!(
            !compatible("0.1.1", "0.1.0"),
            "a newer patch may use what this host lacks"
        );
        assert!(!compatible("0.2.0", "0.1.0"));
        assert!(compatible("0.2.0", "0.2.0"));
        assert!(!compatible("9.0.0", "0.2.0"));
        assert!(!compatible("0.1.0-rc1", "0.1.0"));
        assert_eq!(
            compatible_range(),
            "`0.2.x` up to `0.2.0` and `0.1.x` up to `0.1.0`"
        );
    }

    #[test]
    fn header_check_names_the_kind_of_file() {
        let p = Path::new("x.wasm");
        assert!(matches!(
            check_header(b"hello world", "x", p),
            Err(Error::NotWasm { .. })
        ));
        assert!(matches!(
            check_header(b"\0asm\x01\0\0\0", "x", p),
            Err(Error::CoreModule { .. })
        ));
        assert!(check_header(b"\0asm\x0d\0\x01\0", "x", p).is_ok());
    }
}
