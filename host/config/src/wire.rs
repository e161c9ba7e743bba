//! The raw shape of `plugins.toml`, exactly as written: strict (unknown keys refused), every value
//! kept with its position so validation errors can point at it. Nothing outside this crate sees
//! these types.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, SeqAccess, Visitor};
use toml::Spanned;

type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileWire {
    #[serde(default)]
    pub(crate) host: Option<HostWire>,
    #[serde(default)]
    pub(crate) plugin: Vec<PluginWire>,
    #[serde(default)]
    pub(crate) connection: Vec<ConnectionWire>,
    #[serde(default)]
    pub(crate) application: Vec<ApplicationWire>,
    pub(crate) enrichment: Option<EnrichmentWire>,
    #[serde(default)]
    pub(crate) compliance: Vec<ComplianceWire>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApplicationWire {
    pub(crate) name: S<String>,
    pub(crate) service: Option<S<String>>,
    pub(crate) team: Option<S<String>>,
    pub(crate) environment: Option<S<String>>,
    pub(crate) internet_exposed: Option<bool>,
    pub(crate) business_criticality: Option<S<String>>,
    #[serde(rename = "match")]
    pub(crate) matches: S<Vec<S<String>>>,
    pub(crate) priority: Option<S<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnrichmentWire {
    pub(crate) epss_high: Option<S<f64>>,
    pub(crate) epss_low: Option<S<f64>>,
    pub(crate) not_in_use_days: Option<S<u64>>,
    pub(crate) sla_critical_days: Option<S<u64>>,
    pub(crate) sla_high_days: Option<S<u64>>,
    pub(crate) sla_medium_days: Option<S<u64>>,
    pub(crate) sla_low_days: Option<S<u64>>,
    pub(crate) sla_restart_on_reopen: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ComplianceWire {
    pub(crate) framework: S<String>,
    pub(crate) control: S<String>,
    pub(crate) title: Option<S<String>>,
    pub(crate) min_priority: Option<S<String>>,
    pub(crate) fix_available: Option<bool>,
    pub(crate) known_exploited: Option<bool>,
    #[serde(default)]
    pub(crate) applications: Vec<S<String>>,
    #[serde(default)]
    pub(crate) environments: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HostWire {
    pub(crate) database: Option<S<String>>,
    pub(crate) cache_dir: Option<S<String>>,
    #[serde(default)]
    pub(crate) extra_ca_certs: Vec<S<String>>,
    pub(crate) proxy: Option<S<String>>,
    pub(crate) secrets_dir: Option<S<String>>,
    #[serde(default)]
    pub(crate) resolve: BTreeMap<S<String>, S<OneOrMany>>,
}

/// `[host.resolve]` values: `name = "addr"` or `name = ["addr", …]`.
#[derive(Debug)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<S<String>>),
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AddrVisitor;

        impl<'de> Visitor<'de> for AddrVisitor {
            type Value = OneOrMany;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an address string or a list of address strings")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                Ok(OneOrMany::One(value.to_owned()))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(addr) = seq.next_element::<S<String>>()? {
                    out.push(addr);
                }
                Ok(OneOrMany::Many(out))
            }
        }

        deserializer.deserialize_any(AddrVisitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PluginWire {
    pub(crate) id: S<String>,
    pub(crate) path: S<String>,
    pub(crate) sha256: Option<S<String>>,
    #[serde(default)]
    pub(crate) allowed_hosts: Vec<S<String>>,
    pub(crate) memory_mb: Option<S<u64>>,
    pub(crate) call_timeout_s: Option<S<u64>>,
    pub(crate) max_requests: Option<S<u64>>,
    pub(crate) max_concurrent_requests: Option<S<u64>>,
    pub(crate) max_response_mb: Option<S<u64>>,
    pub(crate) enabled: Option<bool>,
    pub(crate) allow_plaintext_secrets: Option<bool>,
    #[serde(default)]
    pub(crate) secret_hosts: BTreeMap<String, Vec<S<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConnectionWire {
    pub(crate) name: S<String>,
    pub(crate) plugin: S<String>,
    pub(crate) schedule: Option<S<String>>,
    #[serde(default)]
    pub(crate) settings: BTreeMap<S<String>, S<String>>,
    #[serde(default)]
    pub(crate) secrets: SecretsWire,
    pub(crate) locations: Option<S<Vec<S<String>>>>,
    pub(crate) resolve_guard_percent: Option<S<u64>>,
    pub(crate) resolve_guard_min: Option<S<u64>>,
}

/// A connection's `secrets` table, read by hand so that a value of the wrong shape is refused
/// without being echoed: it may be a secret pasted where a reference belongs. A value that is not
/// a string is kept as `None`, so validation can name its key.
#[derive(Debug, Default)]
pub(crate) struct SecretsWire(pub(crate) BTreeMap<S<String>, S<Option<String>>>);

const SECRETS_NOT_A_TABLE: &str = "`secrets` is not a table (its value is not shown: it may be a secret); \
     expected `secrets = { client_secret = \"env:KEELSON_SECRET_PROD\" }`";

impl<'de> Deserialize<'de> for SecretsWire {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TableVisitor;

        impl<'de> Visitor<'de> for TableVisitor {
            type Value = SecretsWire;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of secret references")
            }

            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(key) = map.next_key::<S<String>>()? {
                    let value = map.next_value::<S<ReferenceText>>()?;
                    out.insert(key, Spanned::new(value.span(), value.into_inner().0));
                }
                Ok(SecretsWire(out))
            }

            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Err(E::custom(SECRETS_NOT_A_TABLE))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Err(E::custom(SECRETS_NOT_A_TABLE))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Err(E::custom(SECRETS_NOT_A_TABLE))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Err(E::custom(SECRETS_NOT_A_TABLE))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Err(E::custom(SECRETS_NOT_A_TABLE))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
                Err(de::Error::custom(SECRETS_NOT_A_TABLE))
            }
        }

        deserializer.deserialize_any(TableVisitor)
    }
}

/// One value of the `secrets` table: the string, or `None` for any other shape (never kept).
struct ReferenceText(Option<String>);

impl<'de> Deserialize<'de> for ReferenceText {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;

        impl<'de> Visitor<'de> for TextVisitor {
            type Value = ReferenceText;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a secret reference string")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                Ok(ReferenceText(Some(value.to_owned())))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(ReferenceText(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(ReferenceText(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(ReferenceText(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(ReferenceText(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(ReferenceText(None))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map
                    .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(ReferenceText(None))
            }
        }

        deserializer.deserialize_any(TextVisitor)
    }
}
