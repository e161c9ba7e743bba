//! WIT values into `keelson-core` types, checked against [`Caps`] on the way.
//!
//! The hostcall-fuel cap already bounds what wasmtime lifts out of the guest in one value; these
//! checks bound what the rest of the host has to store and show: items per page, text lengths.

use keelson_core::{
    Account, ConnectorError, ConnectorInfo, Exploitability, Finding, FixStatus, Image,
    ImageContext, ImageRef, KeyValue, Package, Platform, Reference, Registry, Repository,
    SettingSpec, Severity,
};

use crate::bindings::types as wit;
use crate::output::{Redactor, sanitize};

pub(crate) mod v0_2;

/// Upper bounds on values a plugin returns; a value over any of them is refused as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Items in one page, and in any other list (tags, settings, evidence…).
    pub max_items: usize,
    /// Bytes in one text field.
    pub max_text_bytes: usize,
    /// Bytes in a finding's `raw` JSON, which is kept for audit and may be larger than the
    /// other fields (a Defender row with its CVE details runs to tens of KiB).
    pub max_raw_bytes: usize,
}

impl Default for Caps {
    fn default() -> Self {
        Self {
            max_items: 10_000,
            max_text_bytes: 1 << 20,
            max_raw_bytes: 4 << 20,
        }
    }
}

/// A field that failed a check: its path and why.
pub(crate) type Invalid = String;

type R<T> = Result<T, Invalid>;

fn text_max(field: &str, value: String, max: usize) -> R<String> {
    if value.len() > max {
        return Err(format!(
            "`{field}` is {} bytes long, more than the {max} allowed",
            value.len()
        ));
    }
    Ok(value)
}

fn list<T, U>(field: &str, values: Vec<T>, max: usize, f: impl FnMut(T) -> R<U>) -> R<Vec<U>> {
    if values.len() > max {
        return Err(format!(
            "`{field}` has {} items, more than the {max} allowed",
            values.len()
        ));
    }
    values.into_iter().map(f).collect()
}

impl Caps {
    fn text(&self, field: &str, value: String) -> R<String> {
        text_max(field, value, self.max_text_bytes)
    }

    fn opt(&self, field: &str, value: Option<String>) -> R<Option<String>> {
        value.map(|v| self.text(field, v)).transpose()
    }

    fn texts(&self, field: &str, values: Vec<String>) -> R<Vec<String>> {
        list(field, values, self.max_items, |v| self.text(field, v))
    }

    fn settings(&self, field: &str, values: Vec<wit::Setting>) -> R<Vec<KeyValue>> {
        list(field, values, self.max_items, |s| {
            Ok(KeyValue {
                key: self.text(field, s.key)?,
                value: self.text(field, s.value)?,
            })
        })
    }

    /// Checks a page's length against what was asked for (`max`) and converts its items.
    pub(crate) fn page<T, U>(
        &self,
        field: &str,
        items: Vec<T>,
        max: usize,
        f: impl FnMut(T) -> R<U>,
    ) -> R<Vec<U>> {
        list(field, items, max.min(self.max_items), f)
    }

    pub(crate) fn cursor(&self, next: Option<String>) -> R<Option<String>> {
        self.opt("next", next)
    }

    pub(crate) fn info(&self, i: wit::ConnectorInfo) -> R<ConnectorInfo> {
        Ok(ConnectorInfo {
            id: self.text("id", i.id)?,
            display_name: self.text("display-name", i.display_name)?,
            version: self.text("version", i.version)?,
            source_tool: self.text("source-tool", i.source_tool)?,
            settings: list("settings", i.settings, self.max_items, |s| {
                Ok(SettingSpec {
                    key: self.text("settings.key", s.key)?,
                    label: self.text("settings.label", s.label)?,
                    help: self.text("settings.help", s.help)?,
                    secret: s.secret,
                    required: s.required,
                    default_value: self.opt("settings.default-value", s.default_value)?,
                    choices: self.texts("settings.choices", s.choices)?,
                    only_when: s
                        .only_when
                        .map(|kv| {
                            Ok::<_, Invalid>(KeyValue {
                                key: self.text("settings.only-when", kv.key)?,
                                value: self.text("settings.only-when", kv.value)?,
                            })
                        })
                        .transpose()?,
                    secret_hosts: Vec::new(),
                })
            })?,
            instructions: self.text("instructions", i.instructions)?,
            suggested_hosts: self.texts("suggested-hosts", i.suggested_hosts)?,
        })
    }

    pub(crate) fn account(&self, a: wit::Account) -> R<Account> {
        Ok(Account {
            id: self.text("id", a.id)?,
            display_name: self.text("display-name", a.display_name)?,
            details: self.settings("details", a.details)?,
        })
    }

    pub(crate) fn registry(&self, r: wit::Registry) -> R<Registry> {
        Ok(Registry {
            name: self.text("name", r.name)?,
            source_id: self.text("source-id", r.source_id)?,
            display_name: self.text("display-name", r.display_name)?,
            location: self.opt("location", r.location)?,
            tier: self.opt("tier", r.tier)?,
            public_network_access: r.public_network_access,
            attributes: self.settings("attributes", r.attributes)?,
        })
    }

    pub(crate) fn repository(&self, r: wit::Repository) -> R<Repository> {
        Ok(Repository {
            registry: self.text("registry", r.registry)?,
            name: self.text("name", r.name)?,
            updated_at: self.opt("updated-at", r.updated_at)?,
        })
    }

    pub(crate) fn image_ref(&self, r: wit::ImageRef) -> R<ImageRef> {
        Ok(ImageRef {
            registry: self.text("image.registry", r.registry)?,
            repository: self.text("image.repository", r.repository)?,
            digest: self.text("image.digest", r.digest)?,
        })
    }

    pub(crate) fn image(&self, i: wit::Image) -> R<Image> {
        Ok(Image {
            image_ref: self.image_ref(i.image_ref)?,
            tags: self.texts("tags", i.tags)?,
            media_type: self.opt("media-type", i.media_type)?,
            platform: i
                .platform
                .map(|p| {
                    Ok::<_, Invalid>(Platform {
                        os: self.text("platform.os", p.os)?,
                        architecture: self.text("platform.architecture", p.architecture)?,
                        variant: self.opt("platform.variant", p.variant)?,
                    })
                })
                .transpose()?,
            children: self.texts("children", i.children)?,
            size_bytes: i.size_bytes,
            created_at: self.opt("created-at", i.created_at)?,
            updated_at: self.opt("updated-at", i.updated_at)?,
        })
    }

    pub(crate) fn finding(&self, f: wit::Finding) -> R<Finding> {
        if let Some(score) = f.cvss_score
            && !(0.0..=10.0).contains(&score)
        {
            return Err(format!("`cvss-score` {score} is outside 0 to 10"));
        }
        Ok(Finding {
            image: self.image_ref(f.image)?,
            vulnerability_id: self.text("vulnerability-id", f.vulnerability_id)?,
            source_id: self.opt("source-id", f.source_id)?,
            title: self.text("title", f.title)?,
            description: self.text("description", f.description)?,
            severity: severity(f.severity),
            cvss_score: f.cvss_score,
            cvss_vector: self.opt("cvss-vector", f.cvss_vector)?,
            package: f
                .package
                .map(|p| {
                    Ok::<_, Invalid>(Package {
                        name: self.text("package.name", p.name)?,
                        version: self.opt("package.version", p.version)?,
                        fixed_version: self.opt("package.fixed-version", p.fixed_version)?,
                        fix_status: fix_status(p.fix_status),
                        kind: self.opt("package.kind", p.kind)?,
                        ecosystem: self.opt("package.ecosystem", p.ecosystem)?,
                    })
                })
                .transpose()?,
            remediation: self.opt("remediation", f.remediation)?,
            evidence: self.texts("evidence", f.evidence)?,
            references: list("references", f.references, self.max_items, |r| {
                Ok(Reference {
                    title: self.text("references.title", r.title)?,
                    url: self.text("references.url", r.url)?,
                })
            })?,
            published_at: self.opt("published-at", f.published_at)?,
            modified_at: self.opt("modified-at", f.modified_at)?,
            exploitability: Exploitability {
                exploit_published: f.exploitability.exploit_published,
                exploit_verified: f.exploitability.exploit_verified,
                in_exploit_kit: f.exploitability.in_exploit_kit,
                types: self.texts("exploitability.types", f.exploitability.types)?,
            },
            weaknesses: self.texts("weaknesses", f.weaknesses)?,
            raw: text_max("raw", f.raw, self.max_raw_bytes)?,
        })
    }

    pub(crate) fn image_context(&self, c: wit::ImageContext) -> R<ImageContext> {
        Ok(ImageContext {
            image: self.image_ref(c.image)?,
            tags: self.texts("tags", c.tags)?,
            last_pushed_at: self.opt("last-pushed-at", c.last_pushed_at)?,
            last_pulled_at: self.opt("last-pulled-at", c.last_pulled_at)?,
            running: c.running,
            registry_public_network_access: c.registry_public_network_access,
            attributes: self.settings("attributes", c.attributes)?,
        })
    }
}

fn severity(s: wit::Severity) -> Severity {
    match s {
        wit::Severity::Unknown => Severity::Unknown,
        wit::Severity::Informational => Severity::Informational,
        wit::Severity::Low => Severity::Low,
        wit::Severity::Medium => Severity::Medium,
        wit::Severity::High => Severity::High,
        wit::Severity::Critical => Severity::Critical,
    }
}

fn fix_status(s: wit::FixStatus) -> FixStatus {
    match s {
        wit::FixStatus::Unknown => FixStatus::Unknown,
        wit::FixStatus::FixAvailable => FixStatus::FixAvailable,
        wit::FixStatus::NoFixAvailable => FixStatus::NoFixAvailable,
        wit::FixStatus::Scheduled => FixStatus::Scheduled,
        wit::FixStatus::WontFix => FixStatus::WontFix,
    }
}

/// The connector's typed error, as `keelson-core` spells it.
pub(crate) fn connector_error(
    e: wit::ConnectorError,
    caps: &Caps,
    redact: &Redactor,
) -> ConnectorError {
    // An over-long message is cut rather than refused: the error itself is what matters.
    let m = |s: String| sanitize(&redact.apply(&s), caps.max_text_bytes.min(4096));
    match e {
        wit::ConnectorError::InvalidCredentials(s) => ConnectorError::InvalidCredentials(m(s)),
        wit::ConnectorError::PermissionDenied(s) => ConnectorError::PermissionDenied(m(s)),
        wit::ConnectorError::NotFound(s) => ConnectorError::NotFound(m(s)),
        wit::ConnectorError::Throttled(ms) => ConnectorError::Throttled(ms),
        wit::ConnectorError::Unavailable(s) => ConnectorError::Unavailable(m(s)),
        wit::ConnectorError::InvalidConfig(s) => ConnectorError::InvalidConfig(m(s)),
        wit::ConnectorError::Other(s) => ConnectorError::Other(m(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(name: &str) -> wit::Registry {
        wit::Registry {
            name: name.to_owned(),
            source_id: String::new(),
            display_name: String::new(),
            location: None,
            tier: None,
            public_network_access: None,
            attributes: Vec::new(),
        }
    }

    #[test]
    fn page_longer_than_asked_is_refused() {
        let caps = Caps::default();
        let items = vec![registry("a"), registry("b"), registry("c")];
        let err = caps
            .page("items", items, 2, |r| caps.registry(r))
            .unwrap_err();
        assert_eq!(err, "`items` has 3 items, more than the 2 allowed");
    }

    #[test]
    fn over_long_text_is_refused_with_its_field() {
        let caps = Caps {
            max_text_bytes: 4,
            ..Caps::default()
        };
        let err = caps.registry(registry("abcde")).unwrap_err();
        assert_eq!(err, "`name` is 5 bytes long, more than the 4 allowed");
        assert_eq!(caps.registry(registry("abcd")).unwrap().name, "abcd");
    }

    #[test]
    fn connector_error_messages_are_escaped_and_redacted() {
        let redact = Redactor::new(["s3cr3t-value".to_owned()]);
        let e = connector_error(
            wit::ConnectorError::NotFound("x\u{1b}[2J s3cr3t-value".into()),
            &Caps::default(),
            &redact,
        );
        assert_eq!(e, ConnectorError::NotFound("x\\u{1b}[2J [REDACTED]".into()));
    }
}
