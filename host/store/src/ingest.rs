//! Streaming pages of inventory and findings into a running scan run.
//!
//! Each call is one `BEGIN IMMEDIATE` transaction over one page, so the scan never holds a whole
//! tenant in memory and a crash loses at most the page in flight. Upserts use `ON CONFLICT … DO
//! UPDATE … WHERE <something changed>`. An unchanged finding's or image's row is not written at
//! all: the page records the ids it saw in one `run_seen` / `run_seen_images` row (see
//! [`crate::seen`]). Consecutive findings
//! read from the same source row share one `raw_rows` entry.

use std::collections::{HashMap, HashSet};

use keelson_core::{Finding, FixStatus, Image, Registry, Repository, Severity};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::failpoints::failpoint;
use crate::runs::running_state;
use crate::seen::Seen;
use crate::{Result, RunId, Store, now, to_json};

/// One inventory record of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InventoryItem {
    Registry(Registry),
    Repository(Repository),
    Image(Image),
}

/// What one page of findings did. Each finding counts once, in the first matching bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestCounts {
    /// Never seen before.
    pub new: u64,
    /// Seen before and unchanged.
    pub seen: u64,
    /// Was resolved and is reported again.
    pub reopened: u64,
    /// Seen before with changed attributes (severity, versions, fix state, evidence).
    pub updated: u64,
}

impl IngestCounts {
    pub fn total(&self) -> u64 {
        self.new + self.seen + self.reopened + self.updated
    }
}

impl std::ops::AddAssign for IngestCounts {
    fn add_assign(&mut self, other: Self) {
        self.new += other.new;
        self.seen += other.seen;
        self.reopened += other.reopened;
        self.updated += other.updated;
    }
}

pub(crate) fn severity_rank(severity: Severity) -> i64 {
    severity as i64
}

pub(crate) fn severity_from_rank(rank: i64) -> Severity {
    usize::try_from(rank)
        .ok()
        .and_then(|i| Severity::ALL.get(i).copied())
        .unwrap_or(Severity::Unknown)
}

fn fix_status_str(status: FixStatus) -> &'static str {
    match status {
        FixStatus::Unknown => "unknown",
        FixStatus::FixAvailable => "fix-available",
        FixStatus::NoFixAvailable => "no-fix-available",
        FixStatus::Scheduled => "scheduled",
        FixStatus::WontFix => "wont-fix",
    }
}

/// The attributes of a finding that may change between scans without changing its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Attributes {
    severity: i64,
    package_version: Option<String>,
    fixed_version: Option<String>,
    fix_status: Option<String>,
    package_kind: Option<String>,
    ecosystem: Option<String>,
    source_id: Option<String>,
    evidence: String,
}

impl Attributes {
    fn of(finding: &Finding) -> Self {
        let package = finding.package.as_ref();
        Self {
            severity: severity_rank(finding.severity),
            package_version: package.and_then(|p| p.version.clone()),
            fixed_version: package.and_then(|p| p.fixed_version.clone()),
            fix_status: package.map(|p| fix_status_str(p.fix_status).to_owned()),
            package_kind: package.and_then(|p| p.kind.clone()),
            ecosystem: package.and_then(|p| p.ecosystem.clone()),
            source_id: finding.source_id.clone(),
            evidence: to_json(&finding.evidence),
        }
    }

    /// `(field, old, new)` for every attribute that differs, as event values.
    fn changes(&self, new: &Self) -> Vec<(&'static str, Option<String>, Option<String>)> {
        let mut out = Vec::new();
        if self.severity != new.severity {
            out.push((
                "severity",
                Some(severity_from_rank(self.severity).to_string()),
                Some(severity_from_rank(new.severity).to_string()),
            ));
        }
        let text_fields = [
            (
                "package_version",
                &self.package_version,
                &new.package_version,
            ),
            ("fixed_version", &self.fixed_version, &new.fixed_version),
            ("fix_status", &self.fix_status, &new.fix_status),
            ("package_kind", &self.package_kind, &new.package_kind),
            ("ecosystem", &self.ecosystem, &new.ecosystem),
            ("source_id", &self.source_id, &new.source_id),
        ];
        for (field, old, new) in text_fields {
            if old != new {
                out.push((field, old.clone(), new.clone()));
            }
        }
        if self.evidence != new.evidence {
            out.push((
                "evidence",
                Some(self.evidence.clone()),
                Some(new.evidence.clone()),
            ));
        }
        out
    }
}

/// One page's transaction, with ids it already resolved so each row is touched once per page.
struct Page<'c> {
    conn: &'c Connection,
    connection_id: i64,
    run: i64,
    at: String,
    registries: HashMap<String, i64>,
    repositories: HashMap<(i64, String), i64>,
    images: HashMap<(i64, String), i64>,
    issues: HashMap<[String; 5], (i64, bool)>,
    vulnerabilities: HashSet<(String, String)>,
    /// The last source row stored, to share it with the next findings read from it.
    last_raw: Option<(String, i64)>,
    /// Finding ids this page saw.
    seen: Vec<i64>,
    /// Image ids this page saw.
    seen_images: Vec<i64>,
}

impl<'c> Page<'c> {
    fn new(conn: &'c Connection, connection_id: i64, run: RunId) -> Result<Self> {
        Ok(Self {
            conn,
            connection_id,
            run: run.0,
            at: now(conn)?,
            registries: HashMap::new(),
            repositories: HashMap::new(),
            images: HashMap::new(),
            issues: HashMap::new(),
            vulnerabilities: HashSet::new(),
            last_raw: None,
            seen: Vec::new(),
            seen_images: Vec::new(),
        })
    }

    fn registry(&mut self, name: &str, full: Option<&Registry>) -> Result<i64> {
        if full.is_none()
            && let Some(&id) = self.registries.get(name)
        {
            return Ok(id);
        }
        match full {
            None => {
                self.conn
                    .prepare_cached(
                        "INSERT INTO registries (connection_id, name, first_seen, last_seen, last_run_id)
                         VALUES (?1, ?2, ?3, ?3, ?4)
                         ON CONFLICT (connection_id, name) DO UPDATE SET
                             last_seen = excluded.last_seen, last_run_id = excluded.last_run_id, removed_at = NULL
                         WHERE registries.last_run_id IS NOT excluded.last_run_id OR registries.removed_at IS NOT NULL",
                    )?
                    .execute(params![self.connection_id, name, self.at, self.run])?;
            }
            Some(r) => {
                self.conn
                    .prepare_cached(
                        "INSERT INTO registries (connection_id, name, source_id, display_name, location, tier,
                             public_network_access, attributes, first_seen, last_seen, last_run_id)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10)
                         ON CONFLICT (connection_id, name) DO UPDATE SET
                             source_id = excluded.source_id, display_name = excluded.display_name,
                             location = excluded.location, tier = excluded.tier,
                             public_network_access = excluded.public_network_access,
                             attributes = excluded.attributes,
                             last_seen = excluded.last_seen, last_run_id = excluded.last_run_id, removed_at = NULL
                         WHERE registries.last_run_id IS NOT excluded.last_run_id OR registries.removed_at IS NOT NULL
                            OR (registries.source_id, registries.display_name, registries.location, registries.tier,
                                registries.public_network_access, registries.attributes)
                               IS NOT (excluded.source_id, excluded.display_name, excluded.location, excluded.tier,
                                excluded.public_network_access, excluded.attributes)",
                    )?
                    .execute(params![
                        self.connection_id,
                        name,
                        r.source_id,
                        r.display_name,
                        r.location,
                        r.tier,
                        r.public_network_access,
                        to_json(&r.attributes),
                        self.at,
                        self.run
                    ])?;
            }
        }
        let id: i64 = self
            .conn
            .prepare_cached("SELECT id FROM registries WHERE connection_id = ?1 AND name = ?2")?
            .query_row(params![self.connection_id, name], |row| row.get(0))?;
        self.registries.insert(name.to_owned(), id);
        Ok(id)
    }

    fn repository(&mut self, registry: &str, name: &str, full: Option<&Repository>) -> Result<i64> {
        let registry_id = self.registry(registry, None)?;
        let key = (registry_id, name.to_owned());
        if full.is_none()
            && let Some(&id) = self.repositories.get(&key)
        {
            return Ok(id);
        }
        let updated_at = full.and_then(|r| r.updated_at.as_deref());
        self.conn
            .prepare_cached(
                "INSERT INTO repositories (registry_id, name, updated_at, first_seen, last_seen, last_run_id)
                 VALUES (?1, ?2, ?3, ?4, ?4, ?5)
                 ON CONFLICT (registry_id, name) DO UPDATE SET
                     updated_at = coalesce(excluded.updated_at, repositories.updated_at),
                     last_seen = excluded.last_seen, last_run_id = excluded.last_run_id, removed_at = NULL
                 WHERE repositories.last_run_id IS NOT excluded.last_run_id OR repositories.removed_at IS NOT NULL
                    OR (excluded.updated_at IS NOT NULL AND repositories.updated_at IS NOT excluded.updated_at)",
            )?
            .execute(params![registry_id, name, updated_at, self.at, self.run])?;
        let id: i64 = self
            .conn
            .prepare_cached("SELECT id FROM repositories WHERE registry_id = ?1 AND name = ?2")?
            .query_row(params![registry_id, name], |row| row.get(0))?;
        self.repositories.insert(key, id);
        Ok(id)
    }

    fn image(
        &mut self,
        registry: &str,
        repository: &str,
        digest: &str,
        full: Option<&Image>,
    ) -> Result<i64> {
        let repository_id = self.repository(registry, repository, None)?;
        let key = (repository_id, digest.to_owned());
        if full.is_none()
            && let Some(&id) = self.images.get(&key)
        {
            return Ok(id);
        }
        match full {
            None => {
                self.conn
                    .prepare_cached(
                        "INSERT INTO images (repository_id, digest, first_seen, last_seen, last_run_id)
                         VALUES (?1, ?2, ?3, ?3, ?4)
                         ON CONFLICT (repository_id, digest) DO UPDATE SET
                             last_seen = excluded.last_seen, last_run_id = excluded.last_run_id, removed_at = NULL
                         WHERE images.removed_at IS NOT NULL",
                    )?
                    .execute(params![repository_id, digest, self.at, self.run])?;
            }
            Some(image) => {
                let mut tags = image.tags.clone();
                tags.sort();
                tags.dedup();
                self.conn
                    .prepare_cached(
                        "INSERT INTO images (repository_id, digest, tags, media_type, platform, size_bytes,
                             created_at, updated_at, first_seen, last_seen, last_run_id)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10)
                         ON CONFLICT (repository_id, digest) DO UPDATE SET
                             tags = excluded.tags, media_type = excluded.media_type, platform = excluded.platform,
                             size_bytes = excluded.size_bytes, created_at = excluded.created_at,
                             updated_at = excluded.updated_at,
                             last_seen = excluded.last_seen, last_run_id = excluded.last_run_id, removed_at = NULL
                         WHERE images.removed_at IS NOT NULL
                            OR (images.tags, images.media_type, images.platform, images.size_bytes,
                                images.created_at, images.updated_at)
                               IS NOT (excluded.tags, excluded.media_type, excluded.platform, excluded.size_bytes,
                                excluded.created_at, excluded.updated_at)",
                    )?
                    .execute(params![
                        repository_id,
                        digest,
                        to_json(&tags),
                        image.media_type,
                        image.platform.as_ref().map(to_json),
                        image.size_bytes.map(|s| i64::try_from(s).unwrap_or(i64::MAX)),
                        image.created_at,
                        image.updated_at,
                        self.at,
                        self.run
                    ])?;
            }
        }
        let id: i64 = self
            .conn
            .prepare_cached("SELECT id FROM images WHERE repository_id = ?1 AND digest = ?2")?
            .query_row(params![repository_id, digest], |row| row.get(0))?;
        self.images.insert(key, id);
        self.seen_images.push(id);
        Ok(id)
    }

    fn vulnerability(&mut self, source_tool: &str, f: &Finding) -> Result<()> {
        let key = (source_tool.to_owned(), f.vulnerability_id.clone());
        if self.vulnerabilities.contains(&key) {
            return Ok(());
        }
        self.conn
            .prepare_cached(
                r#"INSERT INTO vulnerabilities (source_tool, vulnerability_id, title, description, cvss_score,
                     cvss_vector, remediation, "references", weaknesses, exploitability, published_at, modified_at,
                     first_seen, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13)
                 ON CONFLICT (source_tool, vulnerability_id) DO UPDATE SET
                     title = excluded.title, description = excluded.description, cvss_score = excluded.cvss_score,
                     cvss_vector = excluded.cvss_vector, remediation = excluded.remediation,
                     "references" = excluded."references", weaknesses = excluded.weaknesses,
                     exploitability = excluded.exploitability, published_at = excluded.published_at,
                     modified_at = excluded.modified_at, updated_at = excluded.updated_at
                 WHERE (vulnerabilities.title, vulnerabilities.description, vulnerabilities.cvss_score,
                        vulnerabilities.cvss_vector, vulnerabilities.remediation, vulnerabilities."references",
                        vulnerabilities.weaknesses, vulnerabilities.exploitability, vulnerabilities.published_at,
                        vulnerabilities.modified_at)
                   IS NOT (excluded.title, excluded.description, excluded.cvss_score, excluded.cvss_vector,
                        excluded.remediation, excluded."references", excluded.weaknesses, excluded.exploitability,
                        excluded.published_at, excluded.modified_at)"#,
            )?
            .execute(params![
                source_tool,
                f.vulnerability_id,
                f.title,
                f.description,
                f.cvss_score,
                f.cvss_vector,
                f.remediation,
                to_json(&f.references),
                to_json(&f.weaknesses),
                to_json(&f.exploitability),
                f.published_at,
                f.modified_at,
                self.at
            ])?;
        self.vulnerabilities.insert(key);
        Ok(())
    }

    /// The issue of a finding and whether it is suppressed.
    fn issue(&mut self, source_tool: &str, f: &Finding) -> Result<(i64, bool)> {
        let package = f.package.as_ref().map_or("", |p| p.name.as_str());
        let key = [
            source_tool.to_owned(),
            f.image.registry.clone(),
            f.image.repository.clone(),
            f.vulnerability_id.clone(),
            package.to_owned(),
        ];
        if let Some(&found) = self.issues.get(&key) {
            return Ok(found);
        }
        let [tool, registry, repository, vulnerability, package] = &key;
        self.conn
            .prepare_cached(
                "INSERT INTO issues (source_tool, registry, repository, vulnerability_id, package, first_seen)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (source_tool, registry, repository, vulnerability_id, package) DO NOTHING",
            )?
            .execute(params![tool, registry, repository, vulnerability, package, self.at])?;
        let found: (i64, bool) = self
            .conn
            .prepare_cached(
                "SELECT i.id, EXISTS (SELECT 1 FROM suppressions s WHERE s.issue_id = i.id AND s.lifted_at IS NULL)
                 FROM issues i
                 WHERE source_tool = ?1 AND registry = ?2 AND repository = ?3 AND vulnerability_id = ?4 AND package = ?5",
            )?
            .query_row(params![tool, registry, repository, vulnerability, package], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?;
        self.issues.insert(key, found);
        Ok(found)
    }

    fn event(
        &self,
        kind: &str,
        issue_id: i64,
        finding_id: i64,
        change: &(&str, Option<String>, Option<String>),
    ) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO events (at, kind, connection_id, issue_id, finding_id, run_id, field, old_value, new_value)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                self.at,
                kind,
                self.connection_id,
                issue_id,
                finding_id,
                self.run,
                change.0,
                change.1,
                change.2
            ])?;
        Ok(())
    }

    /// The `raw_rows` id of a source row; `None` for an empty one. A connector reports the
    /// findings of one row one after the other, so comparing with the last row finds the repeats.
    fn raw(&mut self, raw: &str) -> Result<Option<i64>> {
        if raw.is_empty() {
            return Ok(None);
        }
        if let Some((last, id)) = &self.last_raw
            && last == raw
        {
            return Ok(Some(*id));
        }
        let id: i64 = self
            .conn
            .prepare_cached("INSERT INTO raw_rows (raw) VALUES (?1) RETURNING id")?
            .query_row([raw], |row| row.get(0))?;
        self.last_raw = Some((raw.to_owned(), id));
        Ok(Some(id))
    }

    fn finding(&mut self, source_tool: &str, f: &Finding, counts: &mut IngestCounts) -> Result<()> {
        let image_id = self.image(
            &f.image.registry,
            &f.image.repository,
            &f.image.digest,
            None,
        )?;
        self.vulnerability(source_tool, f)?;
        let (issue_id, suppressed) = self.issue(source_tool, f)?;
        let new = Attributes::of(f);
        let existing = self
            .conn
            .prepare_cached(
                "SELECT id, status, severity, package_version, fixed_version, fix_status, package_kind, ecosystem,
                        source_id, evidence
                 FROM findings WHERE image_id = ?1 AND issue_id = ?2",
            )?
            .query_row(params![image_id, issue_id], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    Attributes {
                        severity: row.get(2)?,
                        package_version: row.get(3)?,
                        fixed_version: row.get(4)?,
                        fix_status: row.get(5)?,
                        package_kind: row.get(6)?,
                        ecosystem: row.get(7)?,
                        source_id: row.get(8)?,
                        evidence: row.get(9)?,
                    },
                ))
            })
            .optional()?;
        let Some((finding_id, status, old)) = existing else {
            let status = if suppressed { "suppressed" } else { "open" };
            let raw_id = self.raw(&f.raw)?;
            let finding_id: i64 = self
                .conn
                .prepare_cached(
                    "INSERT INTO findings (connection_id, issue_id, image_id, status, severity, package_version,
                         fixed_version, fix_status, package_kind, ecosystem, source_id, evidence, raw_id,
                         first_seen, last_seen, first_run_id, last_run_id)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14, ?15, ?15)
                     RETURNING id",
                )?
                .query_row(
                    params![
                        self.connection_id,
                        issue_id,
                        image_id,
                        status,
                        new.severity,
                        new.package_version,
                        new.fixed_version,
                        new.fix_status,
                        new.package_kind,
                        new.ecosystem,
                        new.source_id,
                        new.evidence,
                        raw_id,
                        self.at,
                        self.run
                    ],
                    |row| row.get(0),
                )?;
            self.seen.push(finding_id);
            self.event(
                "created",
                issue_id,
                finding_id,
                &("status", None, Some(status.to_owned())),
            )?;
            counts.new += 1;
            return Ok(());
        };

        self.seen.push(finding_id);
        let changes = old.changes(&new);
        let reopen_to =
            (status == "resolved").then_some(if suppressed { "suppressed" } else { "open" });
        if changes.is_empty() && reopen_to.is_none() {
            // Unchanged: the page's `run_seen` batch is all the bookkeeping it needs.
            counts.seen += 1;
            return Ok(());
        }
        let new_status = reopen_to.unwrap_or(&status);
        let raw_id = self.raw(&f.raw)?;
        self.conn
            .prepare_cached(
                "UPDATE findings SET status = ?2, severity = ?3, package_version = ?4, fixed_version = ?5,
                     fix_status = ?6, package_kind = ?7, ecosystem = ?8, source_id = ?9, evidence = ?10,
                     raw = '', raw_id = ?11, last_seen = ?12, last_run_id = ?13,
                     resolved_at = CASE WHEN ?2 = 'resolved' THEN resolved_at END,
                     resolved_run_id = CASE WHEN ?2 = 'resolved' THEN resolved_run_id END
                 WHERE id = ?1",
            )?
            .execute(params![
                finding_id,
                new_status,
                new.severity,
                new.package_version,
                new.fixed_version,
                new.fix_status,
                new.package_kind,
                new.ecosystem,
                new.source_id,
                new.evidence,
                raw_id,
                self.at,
                self.run
            ])?;
        if let Some(to) = reopen_to {
            self.event(
                "reopened",
                issue_id,
                finding_id,
                &("status", Some("resolved".to_owned()), Some(to.to_owned())),
            )?;
            counts.reopened += 1;
        } else {
            counts.updated += 1;
        }
        for change in changes {
            self.event("updated", issue_id, finding_id, &change)?;
        }
        Ok(())
    }
}

impl Store {
    /// Records one page of inventory seen by `run`. Parents missing from the page (the registry of
    /// a repository, the repository of an image) are created by name.
    pub fn ingest_inventory(&mut self, run: RunId, items: &[InventoryItem]) -> Result<()> {
        let tx = self.write()?;
        let state = running_state(&tx, run)?;
        let mut page = Page::new(&tx, state.connection_id, run)?;
        for item in items {
            match item {
                InventoryItem::Registry(r) => {
                    page.registry(&r.name, Some(r))?;
                }
                InventoryItem::Repository(r) => {
                    page.repository(&r.registry, &r.name, Some(r))?;
                }
                InventoryItem::Image(i) => {
                    let r = &i.image_ref;
                    page.image(&r.registry, &r.repository, &r.digest, Some(i))?;
                }
            }
        }
        crate::seen::record(&tx, run, Seen::Images, &mut page.seen_images)?;
        drop(page);
        failpoint!("store::ingest_inventory::before_commit");
        tx.commit()?;
        failpoint!("store::ingest_inventory::after_commit");
        Ok(())
    }

    /// Records one page of findings reported by `source_tool` in `run`.
    ///
    /// New findings open (or start suppressed when their issue is); a resolved finding reported
    /// again reopens; a suppressed one stays suppressed. The images of the findings count as seen.
    pub fn ingest_findings(
        &mut self,
        run: RunId,
        source_tool: &str,
        findings: &[Finding],
    ) -> Result<IngestCounts> {
        let tx = self.write()?;
        let state = running_state(&tx, run)?;
        let mut counts = IngestCounts::default();
        let mut page = Page::new(&tx, state.connection_id, run)?;
        for finding in findings {
            page.finding(source_tool, finding, &mut counts)?;
        }
        crate::seen::record(&tx, run, Seen::Findings, &mut page.seen)?;
        crate::seen::record(&tx, run, Seen::Images, &mut page.seen_images)?;
        drop(page);
        tx.prepare_cached(
            "UPDATE scan_runs SET findings_new = findings_new + ?2, findings_seen = findings_seen + ?3,
                 findings_reopened = findings_reopened + ?4, findings_updated = findings_updated + ?5
             WHERE id = ?1",
        )?
        .execute(params![
            run.0,
            counts.new as i64,
            counts.seen as i64,
            counts.reopened as i64,
            counts.updated as i64
        ])?;
        failpoint!("store::ingest_findings::before_commit");
        tx.commit()?;
        failpoint!("store::ingest_findings::after_commit");
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_ranks_round_trip() {
        for severity in Severity::ALL {
            assert_eq!(severity_from_rank(severity_rank(severity)), severity);
        }
        assert_eq!(severity_rank(Severity::Critical), 5);
        assert_eq!(severity_from_rank(99), Severity::Unknown);
    }
}
