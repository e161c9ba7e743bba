//! Contract 0.2.0's values moved into their 0.1.0 twins (the records 0.2.0 kept unchanged), so
//! the one checked conversion in the parent module serves both versions; and back, for what
//! the host passes in. What 0.2.0 added (secret hosts, gaps) is converted here.

use keelson_core::{ConnectorInfo, Gap};

use super::{Caps, R};
use crate::bindings::v0_1::types as v1;
use crate::bindings::v0_2::types as v2;
use crate::output::Redactor;

/// `describe`'s answer, with each secret setting's hosts.
pub(crate) fn info(caps: &Caps, i: v2::ConnectorInfo) -> R<ConnectorInfo> {
    let hosts: Vec<Vec<String>> = i.settings.iter().map(|s| s.secret_hosts.clone()).collect();
    let mut info = caps.info(v1::ConnectorInfo {
        id: i.id,
        display_name: i.display_name,
        version: i.version,
        source_tool: i.source_tool,
        settings: i
            .settings
            .into_iter()
            .map(|s| v1::SettingSpec {
                key: s.key,
                label: s.label,
                help: s.help,
                secret: s.secret,
                required: s.required,
                default_value: s.default_value,
                choices: s.choices,
                only_when: s.only_when.map(setting),
            })
            .collect(),
        instructions: i.instructions,
        suggested_hosts: i.suggested_hosts,
    })?;
    for (spec, hosts) in info.settings.iter_mut().zip(hosts) {
        spec.secret_hosts = caps.texts("settings.secret-hosts", hosts)?;
    }
    Ok(info)
}

/// A page's gaps, checked like its items.
pub(crate) fn gaps(caps: &Caps, gaps: Vec<v2::Gap>, redact: &Redactor) -> R<Vec<Gap>> {
    super::list("gaps", gaps, caps.max_items, |g| {
        Ok(Gap {
            registry: caps.opt("gaps.registry", g.registry)?,
            namespace: caps.opt("gaps.namespace", g.namespace)?,
            error: super::connector_error(error(g.error), caps, redact),
        })
    })
}

pub(crate) fn error(e: v2::ConnectorError) -> v1::ConnectorError {
    match e {
        v2::ConnectorError::InvalidCredentials(m) => v1::ConnectorError::InvalidCredentials(m),
        v2::ConnectorError::PermissionDenied(m) => v1::ConnectorError::PermissionDenied(m),
        v2::ConnectorError::NotFound(m) => v1::ConnectorError::NotFound(m),
        v2::ConnectorError::Throttled(ms) => v1::ConnectorError::Throttled(ms),
        v2::ConnectorError::Unavailable(m) => v1::ConnectorError::Unavailable(m),
        v2::ConnectorError::InvalidConfig(m) => v1::ConnectorError::InvalidConfig(m),
        v2::ConnectorError::Other(m) => v1::ConnectorError::Other(m),
    }
}

fn setting(s: v2::Setting) -> v1::Setting {
    v1::Setting {
        key: s.key,
        value: s.value,
    }
}

fn settings(s: Vec<v2::Setting>) -> Vec<v1::Setting> {
    s.into_iter().map(setting).collect()
}

pub(crate) fn account(a: v2::Account) -> v1::Account {
    v1::Account {
        id: a.id,
        display_name: a.display_name,
        details: settings(a.details),
    }
}

pub(crate) fn registry(r: v2::Registry) -> v1::Registry {
    v1::Registry {
        name: r.name,
        source_id: r.source_id,
        display_name: r.display_name,
        location: r.location,
        tier: r.tier,
        public_network_access: r.public_network_access,
        attributes: settings(r.attributes),
    }
}

pub(crate) fn repository(r: v2::Repository) -> v1::Repository {
    v1::Repository {
        registry: r.registry,
        name: r.name,
        updated_at: r.updated_at,
    }
}

fn image_ref(r: v2::ImageRef) -> v1::ImageRef {
    v1::ImageRef {
        registry: r.registry,
        repository: r.repository,
        digest: r.digest,
    }
}

/// What the host passes in: a page request the other way.
pub(crate) fn page_request(r: &v1::PageRequest) -> v2::PageRequest {
    v2::PageRequest {
        cursor: r.cursor.clone(),
        max_items: r.max_items,
    }
}

/// What the host passes in: an image reference the other way.
pub(crate) fn image_ref_in(r: &keelson_core::ImageRef) -> v2::ImageRef {
    v2::ImageRef {
        registry: r.registry.clone(),
        repository: r.repository.clone(),
        digest: r.digest.clone(),
    }
}

pub(crate) fn image(i: v2::Image) -> v1::Image {
    v1::Image {
        image_ref: image_ref(i.image_ref),
        tags: i.tags,
        media_type: i.media_type,
        platform: i.platform.map(|p| v1::Platform {
            os: p.os,
            architecture: p.architecture,
            variant: p.variant,
        }),
        children: i.children,
        size_bytes: i.size_bytes,
        created_at: i.created_at,
        updated_at: i.updated_at,
    }
}

fn severity(s: v2::Severity) -> v1::Severity {
    match s {
        v2::Severity::Unknown => v1::Severity::Unknown,
        v2::Severity::Informational => v1::Severity::Informational,
        v2::Severity::Low => v1::Severity::Low,
        v2::Severity::Medium => v1::Severity::Medium,
        v2::Severity::High => v1::Severity::High,
        v2::Severity::Critical => v1::Severity::Critical,
    }
}

fn fix_status(s: v2::FixStatus) -> v1::FixStatus {
    match s {
        v2::FixStatus::Unknown => v1::FixStatus::Unknown,
        v2::FixStatus::FixAvailable => v1::FixStatus::FixAvailable,
        v2::FixStatus::NoFixAvailable => v1::FixStatus::NoFixAvailable,
        v2::FixStatus::Scheduled => v1::FixStatus::Scheduled,
        v2::FixStatus::WontFix => v1::FixStatus::WontFix,
    }
}

pub(crate) fn finding(f: v2::Finding) -> v1::Finding {
    v1::Finding {
        image: image_ref(f.image),
        vulnerability_id: f.vulnerability_id,
        source_id: f.source_id,
        title: f.title,
        description: f.description,
        severity: severity(f.severity),
        cvss_score: f.cvss_score,
        cvss_vector: f.cvss_vector,
        package: f.package.map(|p| v1::PackageInfo {
            name: p.name,
            version: p.version,
            fixed_version: p.fixed_version,
            fix_status: fix_status(p.fix_status),
            kind: p.kind,
            ecosystem: p.ecosystem,
        }),
        remediation: f.remediation,
        evidence: f.evidence,
        references: f
            .references
            .into_iter()
            .map(|r| v1::Reference {
                title: r.title,
                url: r.url,
            })
            .collect(),
        published_at: f.published_at,
        modified_at: f.modified_at,
        exploitability: v1::Exploitability {
            exploit_published: f.exploitability.exploit_published,
            exploit_verified: f.exploitability.exploit_verified,
            in_exploit_kit: f.exploitability.in_exploit_kit,
            types: f.exploitability.types,
        },
        weaknesses: f.weaknesses,
        raw: f.raw,
    }
}

pub(crate) fn image_context(c: v2::ImageContext) -> v1::ImageContext {
    v1::ImageContext {
        image: image_ref(c.image),
        tags: c.tags,
        last_pushed_at: c.last_pushed_at,
        last_pulled_at: c.last_pulled_at,
        running: c.running,
        registry_public_network_access: c.registry_public_network_access,
        attributes: settings(c.attributes),
    }
}
