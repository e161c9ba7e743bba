//! The queue: issues with filters and keyset pagination, issue detail with history, suppressions.
//!
//! An issue's severity is the highest of its open findings (of all findings when none is open),
//! and so is its priority (the level enrichment settled on; the severity until a finding is
//! evaluated). Its status is `open` if any finding is open, else `suppressed` if any is, else
//! `resolved`. Its application, team, factors and controls are those of its representative
//! finding: the open one with the highest priority (lowest id among equals); its SLA due date is
//! the soonest of its open findings. Pages are ordered by priority, highest first, then by id;
//! [`IssueCursor`] marks where a page ended, so paging is stable while scans add issues.

use std::fmt;
use std::str::FromStr;

use keelson_core::{Exploitability, Reference, Severity};
use keelson_enrich::{Factor, SuppressionKind};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::ingest::{severity_from_rank, severity_rank};
use crate::{
    Error, FindingId, IssueId, Result, RunId, Store, from_json, normalise_timestamp, now, to_json,
};

/// The state of a finding, and of an issue as derived from its findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IssueStatus {
    Open,
    Resolved,
    Suppressed,
}

impl IssueStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Resolved => "resolved",
            Self::Suppressed => "suppressed",
        }
    }
}

impl fmt::Display for IssueStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IssueStatus {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "open" => Ok(Self::Open),
            "resolved" => Ok(Self::Resolved),
            "suppressed" => Ok(Self::Suppressed),
            other => Err(Error::Corrupt {
                column: "findings.status",
                reason: format!("`{other}`"),
            }),
        }
    }
}

/// Which issues [`Store::issues`] returns. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssueFilter {
    /// Only findings of this connection count.
    pub connection: Option<String>,
    pub source_tool: Option<String>,
    /// Any of these severities.
    pub severities: Vec<Severity>,
    /// Any of these statuses.
    pub statuses: Vec<IssueStatus>,
    pub registry: Option<String>,
    pub repository: Option<String>,
    pub vulnerability: Option<String>,
    /// Any of these priorities.
    pub priorities: Vec<Severity>,
    /// Only issues mapped to this application.
    pub application: Option<String>,
    /// Only issues owned by this team.
    pub team: Option<String>,
    /// Only issues no `[[application]]` rule claims.
    pub unmapped: bool,
    /// Only issues in this SLA state.
    pub sla: Option<SlaState>,
    /// Only issues under this control (`PCI DSS 4.0 6.3.3`, or the id alone: `6.3.3`).
    pub control: Option<String>,
    /// Start after this issue (the last one of the previous page).
    pub after: Option<IssueCursor>,
    /// At most this many issues; `None` for all.
    pub limit: Option<usize>,
}

/// Where an issue stands against its SLA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlaState {
    /// Open past its due date.
    Breached,
    /// Due, not yet past.
    Within,
    /// No due date (informational, not evaluated yet, or not open).
    None,
}

/// Where a page of issues ended: the last issue's priority and id, printed `high:42`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssueCursor {
    /// The priority the queue is sorted by.
    pub severity: Severity,
    pub id: IssueId,
}

impl fmt::Display for IssueCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.severity, self.id)
    }
}

impl FromStr for IssueCursor {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::InvalidCursor(s.to_owned());
        let (severity, id) = s.split_once(':').ok_or_else(bad)?;
        Ok(Self {
            severity: severity.parse().map_err(|_| bad())?,
            id: IssueId(id.parse().map_err(|_| bad())?),
        })
    }
}

/// One image an issue occurs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueImage {
    pub digest: String,
    pub tags: Vec<String>,
    pub status: IssueStatus,
}

/// One line of the queue; its JSON form is the documented `keelson issues --format json` schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueRow {
    pub id: IssueId,
    pub source_tool: String,
    pub registry: String,
    pub repository: String,
    pub vulnerability_id: String,
    pub title: String,
    pub package: Option<String>,
    /// Of the most recently seen finding, preferring open ones.
    pub package_version: Option<String>,
    pub fixed_version: Option<String>,
    /// The scanner's word.
    pub severity: Severity,
    /// The level enrichment settled on; the queue's order.
    pub priority: Severity,
    pub status: IssueStatus,
    pub first_seen: String,
    pub last_seen: String,
    pub images: Vec<IssueImage>,
    /// Why the priority is what it is, step by step.
    pub factors: Vec<Factor>,
    /// `None` for an image no `[[application]]` rule claims.
    pub application: Option<String>,
    pub team: Option<String>,
    /// The soonest SLA due date of the open findings.
    pub sla_due: Option<String>,
    /// Open and past `sla_due`.
    pub sla_breached: bool,
    /// `"<framework> <control>"` names.
    pub controls: Vec<String>,
}

impl IssueRow {
    /// The cursor that continues after this row.
    pub fn cursor(&self) -> IssueCursor {
        IssueCursor {
            severity: self.priority,
            id: self.id,
        }
    }
}

/// What the source tool says about the vulnerability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VulnerabilityInfo {
    pub title: String,
    pub description: String,
    pub cvss_score: Option<f64>,
    pub cvss_vector: Option<String>,
    pub remediation: Option<String>,
    pub references: Vec<Reference>,
    pub weaknesses: Vec<String>,
    pub exploitability: Exploitability,
    pub published_at: Option<String>,
    pub modified_at: Option<String>,
}

/// One occurrence of an issue, in full.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingDetail {
    pub id: FindingId,
    pub connection: String,
    pub digest: String,
    pub tags: Vec<String>,
    pub image_removed: bool,
    pub status: IssueStatus,
    pub severity: Severity,
    pub package_version: Option<String>,
    pub fixed_version: Option<String>,
    pub fix_status: Option<String>,
    pub evidence: Vec<String>,
    pub first_seen: String,
    pub last_seen: String,
    pub resolved_at: Option<String>,
    pub last_run: RunId,
    /// The source's record as of the finding's first sighting or last change.
    pub raw: String,
}

/// An active suppression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuppressionInfo {
    pub kind: SuppressionKind,
    /// Ends by itself once a fix is available.
    pub until_fix: bool,
    pub reason: String,
    pub actor: String,
    pub created_at: String,
    pub expires_at: Option<String>,
}

/// One entry of the event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRow {
    pub id: i64,
    pub at: String,
    pub kind: String,
    pub finding: Option<FindingId>,
    pub run: Option<RunId>,
    pub actor: Option<String>,
    pub field: Option<String>,
    pub old_value: Option<String>,
    pub new_value: Option<String>,
}

/// Everything known about one issue: `keelson issue show`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssueDetail {
    pub issue: IssueRow,
    pub vulnerability: Option<VulnerabilityInfo>,
    pub findings: Vec<FindingDetail>,
    pub suppression: Option<SuppressionInfo>,
    /// A priority set by hand, which wins over every rule.
    pub priority_override: Option<crate::OverrideInfo>,
    pub history: Vec<EventRow>,
}

const ISSUES_SQL: &str = "
WITH agg AS (
    SELECT i.id, i.source_tool, i.registry, i.repository, i.vulnerability_id, i.package,
           min(f.first_seen) AS first_seen, max(f.last_seen) AS last_seen,
           coalesce(max(CASE WHEN f.status = 'open' THEN f.severity END), max(f.severity)) AS severity,
           coalesce(max(CASE WHEN f.status = 'open' THEN coalesce(f.priority, f.severity) END),
                    max(coalesce(f.priority, f.severity))) AS priority,
           min(CASE WHEN f.status = 'open' THEN f.sla_due END) AS sla_due,
           CASE WHEN sum(f.status = 'open') > 0 THEN 'open'
                WHEN sum(f.status = 'suppressed') > 0 THEN 'suppressed'
                ELSE 'resolved' END AS status
    FROM issues i JOIN findings f ON f.issue_id = i.id
    WHERE (?1 IS NULL OR f.connection_id = ?1)
      AND (?2 IS NULL OR i.source_tool = ?2)
      AND (?3 IS NULL OR i.registry = ?3)
      AND (?4 IS NULL OR i.repository = ?4)
      AND (?5 IS NULL OR i.vulnerability_id = ?5)
      AND (?6 IS NULL OR i.id = ?6)
    GROUP BY i.id
),
rep AS (
    SELECT a.*, r.application, r.team, r.factors, r.controls
    FROM agg a JOIN findings r ON r.id = (
        SELECT f2.id FROM findings f2
        WHERE f2.issue_id = a.id AND (?1 IS NULL OR f2.connection_id = ?1)
        ORDER BY f2.status = 'open' DESC, coalesce(f2.priority, f2.severity) DESC, f2.id
        LIMIT 1)
)
SELECT a.id, a.source_tool, a.registry, a.repository, a.vulnerability_id, a.package, a.first_seen, a.last_seen,
       a.severity, a.status,
       (SELECT v.title FROM vulnerabilities v
        WHERE v.source_tool = a.source_tool AND v.vulnerability_id = a.vulnerability_id),
       a.priority, a.application, a.team, a.factors, a.controls, a.sla_due,
       a.status = 'open' AND a.sla_due IS NOT NULL AND a.sla_due < ?18
FROM rep a
WHERE (?7 IS NULL OR a.severity IN (SELECT value FROM json_each(?7)))
  AND (?8 IS NULL OR a.status IN (SELECT value FROM json_each(?8)))
  AND (?9 IS NULL OR a.priority < ?9 OR (a.priority = ?9 AND a.id > ?10))
  AND (?12 IS NULL OR a.priority IN (SELECT value FROM json_each(?12)))
  AND (?13 IS NULL OR a.application = ?13)
  AND (?14 IS NULL OR a.team = ?14)
  AND (?15 = 0 OR a.application IS NULL)
  AND (?16 IS NULL
       OR (?16 = 'breached' AND a.status = 'open' AND a.sla_due < ?18)
       OR (?16 = 'within' AND a.status = 'open' AND a.sla_due >= ?18)
       OR (?16 = 'none' AND (a.status != 'open' OR a.sla_due IS NULL)))
  AND (?17 IS NULL OR EXISTS (
        SELECT 1 FROM json_each(a.controls) c
        WHERE lower(c.value) = lower(?17) OR lower(substr(c.value, -length(?17) - 1)) = ' ' || lower(?17)))
ORDER BY a.priority DESC, a.id ASC
LIMIT ?11";

impl Store {
    /// Issues matching `filter`, highest severity first, then by id.
    pub fn issues(&self, filter: &IssueFilter) -> Result<Vec<IssueRow>> {
        self.issue_rows(filter, None)
    }

    fn issue_rows(&self, filter: &IssueFilter, only: Option<IssueId>) -> Result<Vec<IssueRow>> {
        let connection_id = filter
            .connection
            .as_deref()
            .map(|name| self.connection_id(name))
            .transpose()?
            .map(|c| c.0);
        let severities = (!filter.severities.is_empty()).then(|| {
            to_json(
                &filter
                    .severities
                    .iter()
                    .map(|s| severity_rank(*s))
                    .collect::<Vec<_>>(),
            )
        });
        let statuses = (!filter.statuses.is_empty()).then(|| {
            to_json(
                &filter
                    .statuses
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>(),
            )
        });
        let limit = filter
            .limit
            .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let priorities = (!filter.priorities.is_empty()).then(|| {
            to_json(
                &filter
                    .priorities
                    .iter()
                    .map(|s| severity_rank(*s))
                    .collect::<Vec<_>>(),
            )
        });
        let sla = filter.sla.map(|s| match s {
            SlaState::Breached => "breached",
            SlaState::Within => "within",
            SlaState::None => "none",
        });
        let at = now(&self.conn)?;
        let rows: Vec<(IssueRow, (String, String))> = self
            .conn
            .prepare_cached(ISSUES_SQL)?
            .query_map(
                params![
                    connection_id,
                    filter.source_tool,
                    filter.registry,
                    filter.repository,
                    filter.vulnerability,
                    only.map(|i| i.0),
                    severities,
                    statuses,
                    filter.after.map(|c| severity_rank(c.severity)),
                    filter.after.map(|c| c.id.0),
                    limit,
                    priorities,
                    filter.application,
                    filter.team,
                    filter.unmapped,
                    sla,
                    filter.control,
                    at
                ],
                |row| {
                    let package: String = row.get(5)?;
                    let status: String = row.get(9)?;
                    let factors: String = row.get(14)?;
                    let controls: String = row.get(15)?;
                    Ok((
                        IssueRow {
                            id: IssueId(row.get(0)?),
                            source_tool: row.get(1)?,
                            registry: row.get(2)?,
                            repository: row.get(3)?,
                            vulnerability_id: row.get(4)?,
                            title: row.get::<_, Option<String>>(10)?.unwrap_or_default(),
                            package: (!package.is_empty()).then_some(package),
                            package_version: None,
                            fixed_version: None,
                            severity: severity_from_rank(row.get(8)?),
                            priority: severity_from_rank(row.get(11)?),
                            status: status.parse().unwrap_or(IssueStatus::Open),
                            first_seen: row.get(6)?,
                            last_seen: row.get(7)?,
                            images: Vec::new(),
                            factors: Vec::new(),
                            application: row.get(12)?,
                            team: row.get(13)?,
                            sla_due: row.get(16)?,
                            sla_breached: row.get(17)?,
                            controls: Vec::new(),
                        },
                        (factors, controls),
                    ))
                },
            )?
            .collect::<rusqlite::Result<_>>()?;
        let mut out = Vec::with_capacity(rows.len());
        for (mut row, (factors, controls)) in rows {
            row.factors = from_json("findings.factors", &factors)?;
            row.controls = from_json("findings.controls", &controls)?;
            self.fill_images(&mut row, connection_id)?;
            out.push(row);
        }
        Ok(out)
    }

    fn fill_images(&self, row: &mut IssueRow, connection_id: Option<i64>) -> Result<()> {
        type ImageLine = (String, String, String, Option<String>, Option<String>);
        let images: Vec<ImageLine> = self
            .conn
            .prepare_cached(
                "SELECT im.digest, im.tags, f.status, f.package_version, f.fixed_version
                 FROM findings f JOIN images im ON im.id = f.image_id
                 WHERE f.issue_id = ?1 AND (?2 IS NULL OR f.connection_id = ?2)
                 ORDER BY f.status = 'open' DESC, f.last_seen DESC, f.id DESC",
            )?
            .query_map(params![row.id.0, connection_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        if let Some((_, _, _, version, fixed)) = images.first() {
            row.package_version.clone_from(version);
            row.fixed_version.clone_from(fixed);
        }
        for (digest, tags, status, _, _) in images {
            // The same image may be reached by two connections; the first (open first) wins.
            if row.images.iter().any(|i| i.digest == digest) {
                continue;
            }
            row.images.push(IssueImage {
                digest,
                tags: from_json("images.tags", &tags)?,
                status: status.parse()?,
            });
        }
        Ok(())
    }

    /// Everything known about issue `id`: its row, the vulnerability, every finding and the history.
    pub fn issue(&self, id: IssueId) -> Result<Option<IssueDetail>> {
        let Some(issue) = self.issue_rows(&IssueFilter::default(), Some(id))?.pop() else {
            return Ok(None);
        };
        let vulnerability = self
            .conn
            .prepare_cached(
                r#"SELECT title, description, cvss_score, cvss_vector, remediation, "references", weaknesses,
                          exploitability, published_at, modified_at
                   FROM vulnerabilities WHERE source_tool = ?1 AND vulnerability_id = ?2"#,
            )?
            .query_row(params![issue.source_tool, issue.vulnerability_id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<f64>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, String>(7)?,
                    r.get::<_, Option<String>>(8)?,
                    r.get::<_, Option<String>>(9)?,
                ))
            })
            .optional()?
            .map(|v| -> Result<VulnerabilityInfo> {
                Ok(VulnerabilityInfo {
                    title: v.0,
                    description: v.1,
                    cvss_score: v.2,
                    cvss_vector: v.3,
                    remediation: v.4,
                    references: from_json("vulnerabilities.references", &v.5)?,
                    weaknesses: from_json("vulnerabilities.weaknesses", &v.6)?,
                    exploitability: from_json("vulnerabilities.exploitability", &v.7)?,
                    published_at: v.8,
                    modified_at: v.9,
                })
            })
            .transpose()?;
        let findings = self.finding_details(id)?;
        let suppression = self
            .conn
            .prepare_cached(
                "SELECT reason, actor, created_at, expires_at, kind, until_fix FROM suppressions WHERE issue_id = ?1 AND lifted_at IS NULL",
            )?
            .query_row([id.0], |r| {
                let kind: String = r.get(4)?;
                Ok(SuppressionInfo {
                    kind: kind.parse().unwrap_or(SuppressionKind::RiskAccepted),
                    until_fix: r.get(5)?,
                    reason: r.get(0)?,
                    actor: r.get(1)?,
                    created_at: r.get(2)?,
                    expires_at: r.get(3)?,
                })
            })
            .optional()?;
        let priority_override = self.priority_override(id)?;
        let history = self
            .conn
            .prepare_cached(
                "SELECT id, at, kind, finding_id, run_id, actor, field, old_value, new_value
                 FROM events WHERE issue_id = ?1 ORDER BY id",
            )?
            .query_map([id.0], |r| {
                Ok(EventRow {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    kind: r.get(2)?,
                    finding: r.get::<_, Option<i64>>(3)?.map(FindingId),
                    run: r.get::<_, Option<i64>>(4)?.map(RunId),
                    actor: r.get(5)?,
                    field: r.get(6)?,
                    old_value: r.get(7)?,
                    new_value: r.get(8)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(Some(IssueDetail {
            issue,
            vulnerability,
            findings,
            suppression,
            priority_override,
            history,
        }))
    }

    fn finding_details(&self, id: IssueId) -> Result<Vec<FindingDetail>> {
        type Raw = (
            FindingDetail,
            String, // tags
            String, // status
            i64,    // severity
            String, // evidence
        );
        let rows: Vec<Raw> = self
            .conn
            .prepare_cached(
                "SELECT f.id, c.name, im.digest, im.tags, im.removed_at IS NOT NULL, f.status, f.severity,
                        f.package_version, f.fixed_version, f.fix_status, f.evidence, f.first_seen, f.last_seen,
                        f.resolved_at, f.last_run_id, f.raw
                 FROM findings f JOIN images im ON im.id = f.image_id JOIN connections c ON c.id = f.connection_id
                 WHERE f.issue_id = ?1 ORDER BY f.id",
            )?
            .query_map([id.0], |r| {
                Ok((
                    FindingDetail {
                        id: FindingId(r.get(0)?),
                        connection: r.get(1)?,
                        digest: r.get(2)?,
                        tags: Vec::new(),
                        image_removed: r.get(4)?,
                        status: IssueStatus::Open,
                        severity: Severity::Unknown,
                        package_version: r.get(7)?,
                        fixed_version: r.get(8)?,
                        fix_status: r.get(9)?,
                        evidence: Vec::new(),
                        first_seen: r.get(11)?,
                        last_seen: r.get(12)?,
                        resolved_at: r.get(13)?,
                        last_run: RunId(r.get(14)?),
                        raw: r.get(15)?,
                    },
                    r.get(3)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(10)?,
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        rows.into_iter()
            .map(|(mut detail, tags, status, severity, evidence)| {
                detail.tags = from_json("images.tags", &tags)?;
                detail.status = status.parse()?;
                detail.severity = severity_from_rank(severity);
                detail.evidence = from_json("findings.evidence", &evidence)?;
                Ok(detail)
            })
            .collect()
    }

    /// Suppresses issue `id`: its open findings become suppressed, findings it gains later start
    /// suppressed, and no scan reopens or resolves them until the suppression is lifted or expires.
    pub fn suppress(
        &mut self,
        id: IssueId,
        reason: &str,
        expires_at: Option<&str>,
        actor: &str,
    ) -> Result<()> {
        self.suppress_issue(
            id,
            SuppressionKind::RiskAccepted,
            reason,
            expires_at,
            false,
            actor,
        )
    }

    /// [`Store::suppress`] with a kind, and `until_fix`: the suppression ends by itself when an
    /// enrichment pass finds a fix available for one of its findings.
    pub fn suppress_issue(
        &mut self,
        id: IssueId,
        kind: SuppressionKind,
        reason: &str,
        expires_at: Option<&str>,
        until_fix: bool,
        actor: &str,
    ) -> Result<()> {
        if reason.trim().is_empty() {
            return Err(Error::EmptyJustification);
        }
        let tx = self.write()?;
        let at = now(&tx)?;
        ensure_issue(&tx, id)?;
        let expires_at = expires_at
            .map(|e| normalise_timestamp(&tx, e))
            .transpose()?;
        let active: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM suppressions WHERE issue_id = ?1 AND lifted_at IS NULL)",
            [id.0],
            |r| r.get(0),
        )?;
        if active {
            return Err(Error::AlreadySuppressed(id));
        }
        tx.execute(
            "INSERT INTO suppressions (issue_id, reason, actor, created_at, expires_at, kind, until_fix)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![id.0, reason, actor, at, expires_at, kind.as_str(), until_fix],
        )?;
        tx.execute(
            "INSERT INTO events (at, kind, issue_id, actor, field, new_value) VALUES (?1, 'suppressed', ?2, ?3, 'reason', ?4)",
            params![at, id.0, actor, reason],
        )?;
        set_status(&tx, id.0, ("open", "suppressed"), "suppressed", &at, actor)?;
        tx.commit()?;
        Ok(())
    }

    /// Lifts the active suppression of issue `id`: its suppressed findings open again, and the
    /// next complete scan resolves those it no longer reports.
    pub fn lift_suppression(&mut self, id: IssueId, actor: &str) -> Result<()> {
        let tx = self.write()?;
        let at = now(&tx)?;
        ensure_issue(&tx, id)?;
        if !lift(&tx, id.0, actor, &at)? {
            return Err(Error::NotSuppressed(id));
        }
        tx.commit()?;
        Ok(())
    }

    /// Lifts every suppression whose expiry has passed; returns how many. [`Store::begin_run`]
    /// does this too.
    pub fn expire_suppressions(&mut self) -> Result<usize> {
        let tx = self.write()?;
        let at = now(&tx)?;
        let n = expire_suppressions_in(&tx, &at)?;
        tx.commit()?;
        Ok(n)
    }
}

pub(crate) fn ensure_issue(conn: &Connection, id: IssueId) -> Result<()> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM issues WHERE id = ?1)",
        [id.0],
        |r| r.get(0),
    )?;
    if exists {
        Ok(())
    } else {
        Err(Error::UnknownIssue(id))
    }
}

/// Moves the issue's findings from `from` to `to`, logging each change as the actor's.
fn set_status(
    conn: &Connection,
    issue: i64,
    (from, to): (&str, &str),
    kind: &str,
    at: &str,
    actor: &str,
) -> Result<()> {
    conn.execute(
        "INSERT INTO events (at, kind, connection_id, issue_id, finding_id, actor, field, old_value, new_value)
         SELECT ?4, ?6, connection_id, issue_id, id, ?5, 'status', ?2, ?3
         FROM findings WHERE issue_id = ?1 AND status = ?2 ORDER BY id",
        params![issue, from, to, at, actor, kind],
    )?;
    conn.execute(
        "UPDATE findings SET status = ?3 WHERE issue_id = ?1 AND status = ?2",
        params![issue, from, to],
    )?;
    Ok(())
}

/// Lifts the active suppression of `issue`, if any; returns whether there was one.
pub(crate) fn lift(conn: &Connection, issue: i64, actor: &str, at: &str) -> Result<bool> {
    let lifted = conn.execute(
        "UPDATE suppressions SET lifted_at = ?2, lifted_by = ?3 WHERE issue_id = ?1 AND lifted_at IS NULL",
        params![issue, at, actor],
    )?;
    if lifted == 0 {
        return Ok(false);
    }
    conn.execute(
        "INSERT INTO events (at, kind, issue_id, actor) VALUES (?1, 'suppression-lifted', ?2, ?3)",
        params![at, issue, actor],
    )?;
    set_status(
        conn,
        issue,
        ("suppressed", "open"),
        "unsuppressed",
        at,
        actor,
    )?;
    Ok(true)
}

pub(crate) fn expire_suppressions_in(conn: &Connection, at: &str) -> Result<usize> {
    let expired: Vec<i64> = conn
        .prepare_cached(
            "SELECT issue_id FROM suppressions WHERE lifted_at IS NULL AND expires_at IS NOT NULL AND expires_at <= ?1",
        )?
        .query_map([at], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for issue in &expired {
        lift(conn, *issue, "expiry", at)?;
    }
    Ok(expired.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let cursor = IssueCursor {
            severity: Severity::High,
            id: IssueId(42),
        };
        assert_eq!(cursor.to_string(), "high:42");
        assert_eq!("high:42".parse::<IssueCursor>().unwrap(), cursor);
        for bad in ["", "high", "urgent:1", "high:x"] {
            assert!(matches!(bad.parse::<IssueCursor>(), Err(Error::InvalidCursor(s)) if s == bad));
        }
    }

    #[test]
    fn issue_row_json_has_the_documented_fields() {
        let row = IssueRow {
            id: IssueId(7),
            source_tool: "Azure Container Registry".into(),
            registry: "r.azurecr.io".into(),
            repository: "app".into(),
            vulnerability_id: "CVE-2024-0001".into(),
            title: "t".into(),
            package: Some("openssl".into()),
            package_version: Some("3.0.1".into()),
            fixed_version: None,
            severity: Severity::High,
            priority: Severity::Critical,
            status: IssueStatus::Open,
            first_seen: "2026-01-01T00:00:00.000Z".into(),
            last_seen: "2026-01-02T00:00:00.000Z".into(),
            images: vec![IssueImage {
                digest: "sha256:ab".into(),
                tags: vec!["v1".into()],
                status: IssueStatus::Open,
            }],
            factors: vec![Factor {
                id: "known-exploited".into(),
                direction: keelson_enrich::Direction::Raise,
                from: Severity::High,
                to: Severity::Critical,
                reason: "r".into(),
                evidence: vec!["e".into()],
            }],
            application: Some("shop".into()),
            team: Some("web".into()),
            sla_due: Some("2026-01-08T00:00:00.000Z".into()),
            sla_breached: true,
            controls: vec!["NIST SP 800-53 RA-5".into()],
        };
        let json = serde_json::to_value(&row).unwrap();
        for key in [
            "id",
            "source_tool",
            "registry",
            "repository",
            "vulnerability_id",
            "package",
            "package_version",
            "fixed_version",
            "severity",
            "status",
            "first_seen",
            "last_seen",
            "images",
            "priority",
            "factors",
            "application",
            "team",
            "sla_due",
            "controls",
        ] {
            assert!(json.get(key).is_some(), "missing `{key}` in {json}");
        }
        assert_eq!(json["id"], 7);
        assert_eq!(json["severity"], "high");
        assert_eq!(json["priority"], "critical");
        assert_eq!(json["factors"][0]["direction"], "raise");
        assert_eq!(json["factors"][0]["from"], "high");
        assert_eq!(json["images"][0]["status"], "open");
        assert_eq!(json["images"][0]["tags"][0], "v1");
    }
}
