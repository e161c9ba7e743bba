//! The connection's settings: their spec (what the host's connect form shows) and their
//! validation into a [`Config`] with the endpoints of the chosen cloud.

use keelson_plugin_sdk::{ConnectorError, Secret, SettingSpec, Settings};

use crate::error::Error;

/// Setting keys, as in `plugins.toml`.
pub(crate) mod key {
    pub(crate) const TENANT_ID: &str = "tenant_id";
    pub(crate) const CLIENT_ID: &str = "client_id";
    pub(crate) const CLIENT_SECRET: &str = "client_secret";
    pub(crate) const SUBSCRIPTION_ID: &str = "subscription_id";
    pub(crate) const CLOUD: &str = "cloud";
    pub(crate) const AUTHORITY_HOST: &str = "authority_host";
    pub(crate) const RESOURCE_MANAGER_ENDPOINT: &str = "resource_manager_endpoint";
    pub(crate) const FINDINGS_SOURCE: &str = "findings_source";
}

/// The Azure cloud a tenant lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cloud {
    Public,
    China,
    UsGov,
    Custom,
}

impl Cloud {
    const CHOICES: [&'static str; 4] = ["public", "china", "usgov", "custom"];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::China => "china",
            Self::UsGov => "usgov",
            Self::Custom => "custom",
        }
    }

    fn parse(name: &str) -> Self {
        match name {
            "china" => Self::China,
            "usgov" => Self::UsGov,
            "custom" => Self::Custom,
            _ => Self::Public,
        }
    }

    /// The host pattern of this cloud's registries, where the Resource Manager token may go
    /// for the token exchange. A custom cloud's registries can be anywhere: every host granted.
    pub(crate) fn registry_hosts(self) -> &'static str {
        match self {
            Self::China => "https://*.azurecr.cn",
            Self::UsGov => "https://*.azurecr.us",
            Self::Public => "https://*.azurecr.io",
            Self::Custom => "https://*:*",
        }
    }

    /// The login-server suffix of registries in this cloud, used only when a Defender row names
    /// a registry by its resource id and the registry is no longer listed.
    pub(crate) fn registry_suffix(self) -> &'static str {
        match self {
            Self::China => ".azurecr.cn",
            Self::UsGov => ".azurecr.us",
            Self::Public | Self::Custom => ".azurecr.io",
        }
    }
}

/// Which of Defender's data sets findings come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FindingsSource {
    /// All three, one after the other.
    Auto,
    Individual,
    Mdvm,
    Qualys,
}

impl FindingsSource {
    const CHOICES: [&'static str; 4] = ["auto", "individual", "mdvm", "qualys"];

    fn parse(name: &str) -> Self {
        match name {
            "individual" => Self::Individual,
            "mdvm" => Self::Mdvm,
            "qualys" => Self::Qualys,
            _ => Self::Auto,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Individual => "individual",
            Self::Mdvm => "mdvm",
            Self::Qualys => "qualys",
        }
    }
}

/// Validated settings with the endpoints resolved.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) tenant_id: String,
    pub(crate) client_id: String,
    /// Sealed: the host writes it into the sign-in request, the connector never sees it.
    pub(crate) client_secret: Secret,
    pub(crate) subscription_id: String,
    pub(crate) cloud: Cloud,
    /// Entra ID authority, without trailing slash (`https://login.microsoftonline.com`).
    pub(crate) authority: String,
    /// Resource Manager endpoint, without trailing slash (`https://management.azure.com`).
    pub(crate) resource_manager: String,
    /// The client-credentials scope for Resource Manager tokens.
    pub(crate) arm_scope: String,
    pub(crate) findings_source: FindingsSource,
}

impl Config {
    /// Validates the settings. Errors name the key; only the secret's presence is checked, and
    /// its value is never quoted.
    pub(crate) fn from_settings(settings: &Settings) -> Result<Self, ConnectorError> {
        let tenant_id = settings.required(key::TENANT_ID)?;
        if !is_guid(tenant_id) && !is_domain(tenant_id) {
            return Err(Error::BadTenant(tenant_id.to_owned()).into());
        }
        let client_id = guid(settings, key::CLIENT_ID)?;
        let subscription_id = guid(settings, key::SUBSCRIPTION_ID)?;
        let client_secret = settings.secret(key::CLIENT_SECRET)?;
        let cloud = Cloud::parse(settings.choice(key::CLOUD, &Cloud::CHOICES, "public")?);
        let findings_source = FindingsSource::parse(settings.choice(
            key::FINDINGS_SOURCE,
            &FindingsSource::CHOICES,
            "auto",
        )?);

        let (authority, resource_manager, arm_scope) = match cloud {
            Cloud::Public => (
                "https://login.microsoftonline.com".to_owned(),
                "https://management.azure.com".to_owned(),
                "https://management.azure.com/.default".to_owned(),
            ),
            Cloud::China => (
                "https://login.chinacloudapi.cn".to_owned(),
                "https://management.chinacloudapi.cn".to_owned(),
                "https://management.chinacloudapi.cn/.default".to_owned(),
            ),
            Cloud::UsGov => (
                "https://login.microsoftonline.us".to_owned(),
                "https://management.usgovcloudapi.net".to_owned(),
                "https://management.usgovcloudapi.net/.default".to_owned(),
            ),
            Cloud::Custom => {
                let authority = endpoint(settings, key::AUTHORITY_HOST)?;
                let resource_manager = endpoint(settings, key::RESOURCE_MANAGER_ENDPOINT)?;
                let scope = format!("{resource_manager}/.default");
                (authority, resource_manager, scope)
            }
        };
        if cloud != Cloud::Custom {
            for ignored in [key::AUTHORITY_HOST, key::RESOURCE_MANAGER_ENDPOINT] {
                if settings.get(ignored).is_some() {
                    keelson_plugin_sdk::warn!(
                        "setting `{ignored}` is ignored: it applies only when `cloud` is `custom`"
                    );
                }
            }
        }

        Ok(Self {
            tenant_id: tenant_id.to_owned(),
            client_id,
            client_secret,
            subscription_id,
            cloud,
            authority,
            resource_manager,
            arm_scope,
            findings_source,
        })
    }

    /// The Entra ID client-credentials token endpoint.
    pub(crate) fn token_url(&self) -> String {
        format!("{}/{}/oauth2/v2.0/token", self.authority, self.tenant_id)
    }
}

fn guid(settings: &Settings, key: &'static str) -> Result<String, ConnectorError> {
    let value = settings.required(key)?;
    if is_guid(value) {
        Ok(value.to_ascii_lowercase())
    } else {
        Err(Error::NotAGuid {
            key,
            value: value.to_owned(),
        }
        .into())
    }
}

fn endpoint(settings: &Settings, key: &'static str) -> Result<String, ConnectorError> {
    let value = settings.required(key)?;
    if is_https_endpoint(value) {
        Ok(value.trim_end_matches('/').to_owned())
    } else {
        Err(Error::BadEndpoint {
            key,
            value: value.to_owned(),
        }
        .into())
    }
}

/// `8-4-4-4-12` hex digits.
pub(crate) fn is_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A DNS name with at least one dot (`contoso.onmicrosoft.com`).
fn is_domain(text: &str) -> bool {
    text.contains('.')
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// `https://host[:port][/path]` without user info, query or fragment.
fn is_https_endpoint(text: &str) -> bool {
    let Some(rest) = text.strip_prefix("https://") else {
        return false;
    };
    if rest.contains(['?', '#', '@', ' ', '\\']) {
        return false;
    }
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.parse::<u16>().is_ok_and(|n| n > 0));
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && port_ok
}

/// The settings as the host's connect form shows them.
pub(crate) fn spec() -> Vec<SettingSpec> {
    vec![
        SettingSpec::new(
            key::TENANT_ID,
            "Tenant ID",
            "The Directory (tenant) ID of the Entra ID tenant, from the app registration's \
             Overview page.",
        ),
        SettingSpec::new(
            key::CLIENT_ID,
            "Client ID",
            "The Application (client) ID of the app registration, from its Overview page.",
        ),
        SettingSpec::new(
            key::CLIENT_SECRET,
            "Client Secret",
            "The Value of a client secret of the app registration (not its Secret ID), from \
             Certificates & secrets.",
        )
        .secret(),
        SettingSpec::new(
            key::SUBSCRIPTION_ID,
            "Subscription ID",
            "The ID of the subscription that holds the registries; the app needs the Reader role \
             on it.",
        ),
        SettingSpec::new(
            key::CLOUD,
            "Azure cloud",
            "The Azure cloud of the tenant: public (Azure), china (Azure operated by 21Vianet), \
             usgov (Azure Government), or custom endpoints.",
        )
        .default_value("public")
        .choices(&Cloud::CHOICES),
        SettingSpec::new(
            key::AUTHORITY_HOST,
            "Authority host",
            "The Entra ID authority, as an https URL (`https://login.microsoftonline.com`).",
        )
        .only_when(key::CLOUD, "custom"),
        SettingSpec::new(
            key::RESOURCE_MANAGER_ENDPOINT,
            "Resource Manager endpoint",
            "The Azure Resource Manager endpoint, as an https URL \
             (`https://management.azure.com`); tokens are requested for `<endpoint>/.default`.",
        )
        .only_when(key::CLOUD, "custom"),
        SettingSpec::new(
            key::FINDINGS_SOURCE,
            "Findings source",
            "Which Microsoft Defender for Cloud data to read: auto (all three), individual \
             (current individual recommendations), mdvm or qualys (legacy sub-assessments).",
        )
        .default_value("auto")
        .choices(&FindingsSource::CHOICES),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    const CLIENT: &str = "11111111-2222-3333-4444-555555555555";
    const SUB: &str = "00000000-0000-0000-0000-00000000000A";

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("tenant_id", TENANT),
            ("client_id", CLIENT),
            ("client_secret", "CANARY-secret-value"),
            ("subscription_id", SUB),
        ]
    }

    fn config(extra: &[(&'static str, &'static str)]) -> Result<Config, ConnectorError> {
        let mut pairs = base();
        pairs.extend_from_slice(extra);
        Config::from_settings(&Settings::from_pairs(&pairs))
    }

    #[test]
    fn public_cloud_is_the_default() {
        let c = config(&[]).unwrap();
        assert_eq!(c.cloud, Cloud::Public);
        assert_eq!(c.arm_scope, "https://management.azure.com/.default");
        assert_eq!(c.resource_manager, "https://management.azure.com");
        assert_eq!(
            c.token_url(),
            format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token")
        );
        assert_eq!(c.findings_source, FindingsSource::Auto);
        assert_eq!(c.subscription_id, SUB.to_ascii_lowercase());
    }

    #[test]
    fn sovereign_clouds_use_their_endpoints() {
        let c = config(&[("cloud", "china")]).unwrap();
        assert_eq!(c.authority, "https://login.chinacloudapi.cn");
        assert_eq!(c.arm_scope, "https://management.chinacloudapi.cn/.default");
        let c = config(&[("cloud", "USGov")]).unwrap();
        assert_eq!(c.authority, "https://login.microsoftonline.us");
        assert_eq!(c.resource_manager, "https://management.usgovcloudapi.net");
        assert_eq!(c.arm_scope, "https://management.usgovcloudapi.net/.default");
    }

    #[test]
    fn custom_cloud_takes_endpoints_and_derives_the_scope() {
        let c = config(&[
            ("cloud", "custom"),
            ("authority_host", "https://login.sim.test:8443/"),
            ("resource_manager_endpoint", "https://arm.sim.test:8443"),
        ])
        .unwrap();
        assert_eq!(c.authority, "https://login.sim.test:8443");
        assert_eq!(c.resource_manager, "https://arm.sim.test:8443");
        assert_eq!(c.arm_scope, "https://arm.sim.test:8443/.default");
    }

    #[test]
    fn custom_cloud_requires_https_endpoints_naming_the_key() {
        let err = config(&[("cloud", "custom")]).unwrap_err();
        assert_eq!(
            err,
            ConnectorError::InvalidConfig("setting `authority_host` is required".into())
        );
        for bad in [
            "http://login.sim.test",
            "https://",
            "https://user@login.sim.test",
            "https://login.sim.test?x=1",
            "https://login.sim.test:0",
            "login.sim.test",
        ] {
            let err = config(&[
                ("cloud", "custom"),
                ("authority_host", "https://login.sim.test"),
                ("resource_manager_endpoint", bad),
            ])
            .unwrap_err();
            assert_eq!(err.kind(), "invalid-config", "{bad}");
            assert!(
                err.message()
                    .unwrap()
                    .starts_with("setting `resource_manager_endpoint`"),
                "{bad}"
            );
        }
    }

    #[test]
    fn ids_must_be_guids_and_errors_name_the_key() {
        let mut pairs = base();
        pairs[1] = ("client_id", "not-a-guid");
        let err = Config::from_settings(&Settings::from_pairs(&pairs)).unwrap_err();
        assert_eq!(err.kind(), "invalid-config");
        assert!(
            err.message()
                .unwrap()
                .starts_with("setting `client_id` is `not-a-guid`")
        );

        let mut pairs = base();
        pairs[3] = ("subscription_id", "00000000-0000-0000-0000-00000000000");
        let err = Config::from_settings(&Settings::from_pairs(&pairs)).unwrap_err();
        assert!(err.message().unwrap().contains("`subscription_id`"));
    }

    #[test]
    fn tenant_may_be_a_guid_or_a_domain() {
        let mut pairs = base();
        pairs[0] = ("tenant_id", "contoso.onmicrosoft.com");
        assert!(Config::from_settings(&Settings::from_pairs(&pairs)).is_ok());
        pairs[0] = ("tenant_id", "72f988bf-86f1-41af-91ab-2d7cd011db4");
        let err = Config::from_settings(&Settings::from_pairs(&pairs)).unwrap_err();
        assert!(err.message().unwrap().starts_with("setting `tenant_id`"));
    }

    #[test]
    fn missing_secret_is_named_and_secret_never_shown() {
        let pairs: Vec<_> = base()
            .into_iter()
            .filter(|(k, _)| *k != "client_secret")
            .collect();
        let err = Config::from_settings(&Settings::from_pairs(&pairs)).unwrap_err();
        assert_eq!(
            err,
            ConnectorError::InvalidConfig("setting `client_secret` is required".into())
        );
        let shown = format!("{:?}", config(&[]).unwrap());
        assert!(!shown.contains("CANARY"), "{shown}");
    }

    #[test]
    fn choices_are_checked() {
        let err = config(&[("findings_source", "everything")]).unwrap_err();
        assert!(
            err.message()
                .unwrap()
                .starts_with("setting `findings_source`")
        );
        assert_eq!(
            config(&[("findings_source", "MDVM")])
                .unwrap()
                .findings_source,
            FindingsSource::Mdvm
        );
        assert_eq!(
            config(&[("cloud", "mars")]).unwrap_err().kind(),
            "invalid-config"
        );
    }

    #[test]
    fn spec_matches_the_keys_and_marks_the_secret() {
        let spec = spec();
        let keys: Vec<&str> = spec.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "tenant_id",
                "client_id",
                "client_secret",
                "subscription_id",
                "cloud",
                "authority_host",
                "resource_manager_endpoint",
                "findings_source"
            ]
        );
        let secrets: Vec<&str> = spec
            .iter()
            .filter(|s| s.secret)
            .map(|s| s.key.as_str())
            .collect();
        assert_eq!(secrets, ["client_secret"]);
        let custom: Vec<&str> = spec
            .iter()
            .filter(|s| s.only_when.as_ref().is_some_and(|w| w.value == "custom"))
            .map(|s| s.key.as_str())
            .collect();
        assert_eq!(custom, ["authority_host", "resource_manager_endpoint"]);
        assert!(
            spec.iter()
                .filter(|s| s.only_when.is_some())
                .all(|s| s.required)
        );
    }
}
