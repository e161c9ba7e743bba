//! Builds the plugin runtime from the validated configuration.

use anyhow::Context as _;
use keelson_config::Config;

/// The egress gate and runtime for `config`'s `[host]` settings.
pub(crate) fn runtime(config: &Config) -> anyhow::Result<keelson_runtime::Runtime> {
    let host = &config.host;
    let mut extra_ca_certs_pem = Vec::with_capacity(host.extra_ca_certs.len());
    for path in &host.extra_ca_certs {
        let pem = std::fs::read(path).with_context(|| {
            format!(
                "cannot read `extra_ca_certs` file `{}` named in `{}`",
                path.display(),
                config.source.display()
            )
        })?;
        extra_ca_certs_pem.push(pem);
    }
    let egress = keelson_http::Egress::new(keelson_http::EgressSettings {
        extra_ca_certs_pem,
        proxy: host.proxy.clone(),
        resolve: host
            .resolve
            .iter()
            .map(|pin| keelson_http::ResolvePin {
                name: pin.name.clone(),
                addrs: pin.addrs.clone(),
            })
            .collect(),
        ..keelson_http::EgressSettings::default()
    })
    .context("cannot set up outbound HTTP for plugins")?;
    let settings = keelson_runtime::RuntimeSettings::new(&host.cache_dir);
    Ok(keelson_runtime::Runtime::new(settings, egress)?)
}
