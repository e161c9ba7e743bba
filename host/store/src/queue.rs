//! The queue: issues with filters and keyset pagination, issue detail with history, suppressions.
//!
//! An issue's severity is the highest of its open findings (of all findings when none is open),
//! and so is its priority (the level enrichment settled on; the severity until a finding is
//! evaluated). Its status is `open` if any finding is open, else `suppressed` if any is, else
//! `resolved`. Its application, team, factors and controls are those of its representative
//! finding: the open one with the highest priority (lowest id among equals); its SLA due date is
//! the soonest of its open findings. Pages are ordered by priority, highest first, then by id;
//! [`IssueCursor`] marks where a page ended, so paging is stable while scans add issues.
//! [`Store::issues_sorted`] orders by another [`SortKey`] with a [`SortCursor`] (sort, value, id),
//! and [`Store::queue_summary`] counts the filtered queue in one aggregate. Findings of retired
//! connections count nowhere in the queue; an issue's detail still shows them.

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

/// A column the queue can be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SortKey {
    /// The level enrichment settled on (the default, highest first).
    #[default]
    Priority,
    /// The scanner's severity.
    Severity,
    FirstSeen,
    LastSeen,
    Vulnerability,
    /// Repository, then registry.
    Repository,
    /// How many distinct images the issue occurs in.
    Images,
}

impl SortKey {
    /// Every key, as the API and the page name them.
    pub const ALL: [Self; 7] = [
        Self::Priority,
        Self::Severity,
        Self::FirstSeen,
        Self::LastSeen,
        Self::Vulnerability,
        Self::Repository,
        Self::Images,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Priority => "priority",
            Self::Severity => "severity",
            Self::FirstSeen => "first_seen",
            Self::LastSeen => "last_seen",
            Self::Vulnerability => "vulnerability",
            Self::Repository => "repository",
            Self::Images => "images",
        }
    }

    /// The SQL expression over an `agg` row (`a`) that orders by this key. Never NULL.
    fn sql(self) -> &'static str {
        match self {
            Self::Priority => "a.priority",
            Self::Severity => "a.severity",
            Self::FirstSeen => "a.first_seen",
            Self::LastSeen => "a.last_seen",
            Self::Vulnerability => "a.vulnerability_id",
            // A space sorts before every character a repository or registry name may hold, so
            // this orders like the pair (repository, registry).
            Self::Repository => "a.repository || ' ' || a.registry",
            // The same images `IssueRow::images` lists: distinct digests of the counted findings.
            Self::Images => {
                "(SELECT count(DISTINCT im.digest) FROM findings f3 JOIN images im ON im.id = f3.image_id
                  WHERE f3.issue_id = a.id AND (?1 IS NULL OR f3.connection_id = ?1)
                    AND (?19 OR f3.connection_id NOT IN (SELECT c.id FROM connections c WHERE c.retired_at IS NOT NULL)))"
            }
        }
    }
}

/// How the queue is ordered: a key and a direction; ties are broken by issue id, ascending.
/// Written `priority` (ascending) or `-priority` (descending).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IssueSort {
    pub key: SortKey,
    pub descending: bool,
}

impl Default for IssueSort {
    /// Highest priority first: the queue's natural order.
    fn default() -> Self {
        Self {
            key: SortKey::Priority,
            descending: true,
        }
    }
}

impl fmt::Display for IssueSort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.descending {
            f.write_str("-")?;
        }
        f.write_str(self.key.as_str())
    }
}

impl IssueSort {
    /// Reads `KEY` or `-KEY`; `None` for an unknown key.
    pub fn parse(text: &str) -> Option<Self> {
        let (descending, name) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let key = SortKey::ALL.into_iter().find(|k| k.as_str() == name)?;
        Some(Self { key, descending })
    }
}

/// Where a page of a sorted queue ended: the sort, the last issue's value of the sort key and
/// its id, printed `SORT~VALUE~ID` (`-priority~high~42`, `repository~web contoso.azurecr.io~7`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortCursor {
    pub sort: IssueSort,
    /// The key's value as text: a severity name, a timestamp, a name or a count.
    pub value: String,
    pub id: IssueId,
}

impl fmt::Display for SortCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}~{}~{}", self.sort, self.value, self.id)
    }
}

impl FromStr for SortCursor {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::InvalidCursor(s.to_owned());
        let (sort, rest) = s.split_once('~').ok_or_else(bad)?;
        let (value, id) = rest.rsplit_once('~').ok_or_else(bad)?;
        let cursor = Self {
            sort: IssueSort::parse(sort).ok_or_else(bad)?,
            value: value.to_owned(),
            id: IssueId(id.parse().map_err(|_| bad())?),
        };
        cursor.bound().map_err(|_| bad())?;
        Ok(cursor)
    }
}

impl From<IssueCursor> for SortCursor {
    fn from(c: IssueCursor) -> Self {
        Self {
            sort: IssueSort::default(),
            value: c.severity.to_string(),
            id: c.id,
        }
    }
}

impl SortCursor {
    /// The value as SQLite compares it with the sort key.
    fn bound(&self) -> Result<rusqlite::types::Value> {
        use rusqlite::types::Value;
        let bad = || Error::InvalidCursor(self.to_string());
        Ok(match self.sort.key {
            SortKey::Priority | SortKey::Severity => Value::Integer(severity_rank(
                self.value.parse::<Severity>().map_err(|_| bad())?,
            )),
            SortKey::Images => Value::Integer(self.value.parse().map_err(|_| bad())?),
            _ => Value::Text(self.value.clone()),
        })
    }
}

/// Counts over the whole filtered queue, and the values its filters can take, from one
/// aggregate query: what the page's tiles and filter choices show.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueSummary {
    pub total: u64,
    pub by_severity: std::collections::BTreeMap<Severity, u64>,
    pub sla_breached: u64,
    pub source_tools: std::collections::BTreeSet<String>,
    pub priorities: std::collections::BTreeSet<Severity>,
    pub applications: std::collections::BTreeSet<String>,
    pub teams: std::collections::BTreeSet<String>,
    pub registries: std::collections::BTreeSet<String>,
    pub repositories: std::collections::BTreeSet<String>,
}

/// When finding `f` was last seen. `findings.last_seen` moves only when a finding is created,
/// changed or reopened (an unchanged rescan writes no finding row); an open finding of a registry
/// whose `last_covered_at` a run moved was seen by that run, or the run would have resolved it.
/// Needs the finding's issue as `i` (its registry): one lookup in `registries`' unique index.
const LAST_SEEN: &str = "CASE WHEN f.status = 'open' THEN max(f.last_seen, coalesce((
        SELECT rg.last_covered_at FROM registries rg
        WHERE rg.connection_id = f.connection_id AND rg.name = i.registry), '')) ELSE f.last_seen END";

/// Findings of retired connections are left out unless `?19` is set.
const NOT_RETIRED: &str = "(SELECT c.id FROM connections c WHERE c.retired_at IS NOT NULL)";

/// The queue's common part: each issue aggregated from its counted findings (`agg`), with its
/// representative finding and the value of the sort key, `{sort_key}` (`rep`).
const ISSUES_CTE: &str = "
WITH agg AS (
    SELECT i.id, i.source_tool, i.registry, i.repository, i.vulnerability_id, i.package,
           min(f.first_seen) AS first_seen, max({last_seen}) AS last_seen,
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
      AND (?19 OR f.connection_id NOT IN {not_retired})
    GROUP BY i.id
),
rep AS (
    SELECT a.*, r.application, r.team, r.factors, r.controls, {sort_key} AS sort_key
    FROM agg a JOIN findings r ON r.id = (
        SELECT f2.id FROM findings f2
        WHERE f2.issue_id = a.id AND (?1 IS NULL OR f2.connection_id = ?1)
          AND (?19 OR f2.connection_id NOT IN {not_retired})
        ORDER BY f2.status = 'open' DESC, coalesce(f2.priority, f2.severity) DESC, f2.id
        LIMIT 1)
)";

/// The filters on an aggregated issue (`a`).
const ISSUES_WHERE: &str = "
WHERE (?7 IS NULL OR a.severity IN (SELECT value FROM json_each(?7)))
  AND (?8 IS NULL OR a.status IN (SELECT value FROM json_each(?8)))
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
        WHERE lower(c.value) = lower(?17) OR lower(substr(c.value, -length(?17) - 1)) = ' ' || lower(?17)))";

fn issues_cte(sort_key: SortKey) -> String {
    ISSUES_CTE
        .replace("{not_retired}", NOT_RETIRED)
        .replace("{last_seen}", LAST_SEEN)
        .replace("{sort_key}", sort_key.sql())
}

/// One page of issues in `sort` order after the keyset `?9` (value), `?10` (id).
fn issues_sql(sort: IssueSort) -> String {
    let (cmp, dir) = if sort.descending {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    format!(
        "{cte}
SELECT a.id, a.source_tool, a.registry, a.repository, a.vulnerability_id, a.package, a.first_seen, a.last_seen,
       a.severity, a.status,
       (SELECT v.title FROM vulnerabilities v
        WHERE v.source_tool = a.source_tool AND v.vulnerability_id = a.vulnerability_id),
       a.priority, a.application, a.team, a.factors, a.controls, a.sla_due,
       a.status = 'open' AND a.sla_due IS NOT NULL AND a.sla_due < ?18
FROM rep a{filters}
  AND (?9 IS NULL OR a.sort_key {cmp} ?9 OR (a.sort_key = ?9 AND a.id > ?10))
ORDER BY a.sort_key {dir}, a.id ASC
LIMIT ?11",
        cte = issues_cte(sort.key),
        filters = ISSUES_WHERE,
    )
}

/// The [`QueueSummary`] of the filtered queue, one line per severity. `?9`–`?11` are unused.
fn summary_sql() -> String {
    format!(
        "{cte}
SELECT a.severity, count(*),
       coalesce(sum(a.status = 'open' AND a.sla_due IS NOT NULL AND a.sla_due < ?18), 0),
       json_group_array(DISTINCT a.source_tool), json_group_array(DISTINCT a.priority),
       json_group_array(DISTINCT a.application), json_group_array(DISTINCT a.team),
       json_group_array(DISTINCT a.registry), json_group_array(DISTINCT a.repository)
FROM rep a{filters}
GROUP BY a.severity",
        cte = issues_cte(SortKey::Priority),
        filters = ISSUES_WHERE,
    )
}

impl IssueRow {
    /// The cursor that continues after this row in `sort` order.
    pub fn sort_cursor(&self, sort: IssueSort) -> SortCursor {
        let value = match sort.key {
            SortKey::Priority => self.priority.to_string(),
            SortKey::Severity => self.severity.to_string(),
            SortKey::FirstSeen => self.first_seen.clone(),
            SortKey::LastSeen => self.last_seen.clone(),
            SortKey::Vulnerability => self.vulnerability_id.clone(),
            SortKey::Repository => format!("{} {}", self.repository, self.registry),
            SortKey::Images => self.images.len().to_string(),
        };
        SortCursor {
            sort,
            value,
            id: self.id,
        }
    }
}

impl Store {
    /// Issues matching `filter`, highest priority first, then by id. Findings of retired
    /// connections do not count.
    pub fn issues(&self, filter: &IssueFilter) -> Result<Vec<IssueRow>> {
        let after = filter.after.map(SortCursor::from);
        self.issue_rows(filter, None, IssueSort::default(), after.as_ref(), false)
    }

    /// Issues matching `filter` (whose `after` is ignored) in `sort` order, starting after
    /// `after`, which must be a cursor of the same sort. Keyset paging: issues added meanwhile
    /// never shift a page.
    pub fn issues_sorted(
        &self,
        filter: &IssueFilter,
        sort: IssueSort,
        after: Option<&SortCursor>,
    ) -> Result<Vec<IssueRow>> {
        if let Some(cursor) = after
            && cursor.sort != sort
        {
            return Err(Error::InvalidCursor(cursor.to_string()));
        }
        self.issue_rows(filter, None, sort, after, false)
    }

    /// Counts and filter choices over every issue matching `filter` (paging fields ignored).
    pub fn queue_summary(&self, filter: &IssueFilter) -> Result<QueueSummary> {
        let values = self.filter_values(filter, None, false)?;
        type Line = (i64, i64, i64, [String; 6]);
        let lines: Vec<Line> = self
            .conn
            .prepare_cached(&summary_sql())?
            .query_map(rusqlite::params_from_iter(values), |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    [
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                    ],
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let mut out = QueueSummary::default();
        for (severity, count, breached, lists) in lines {
            let (count, breached) = (count.unsigned_abs(), breached.unsigned_abs());
            out.total += count;
            out.sla_breached += breached;
            *out.by_severity
                .entry(severity_from_rank(severity))
                .or_default() += count;
            let [
                tools,
                priorities,
                applications,
                teams,
                registries,
                repositories,
            ] = lists;
            let names = |text: &str| -> Result<Vec<String>> {
                let values: Vec<Option<String>> = from_json("queue summary", text)?;
                Ok(values.into_iter().flatten().collect())
            };
            out.source_tools.extend(names(&tools)?);
            out.applications.extend(names(&applications)?);
            out.teams.extend(names(&teams)?);
            out.registries.extend(names(&registries)?);
            out.repositories.extend(names(&repositories)?);
            let ranks: Vec<i64> = from_json("queue summary", &priorities)?;
            out.priorities
                .extend(ranks.into_iter().map(severity_from_rank));
        }
        Ok(out)
    }

    /// The 19 query parameters of `filter`; `?9`–`?11` (keyset and limit) are left unbounded.
    fn filter_values(
        &self,
        filter: &IssueFilter,
        only: Option<IssueId>,
        include_retired: bool,
    ) -> Result<Vec<rusqlite::types::Value>> {
        use rusqlite::types::Value;
        let text = |v: Option<&String>| v.map_or(Value::Null, |s| Value::Text(s.clone()));
        let ranks = |levels: &[Severity]| {
            if levels.is_empty() {
                Value::Null
            } else {
                Value::Text(to_json(
                    &levels.iter().map(|s| severity_rank(*s)).collect::<Vec<_>>(),
                ))
            }
        };
        let connection_id = filter
            .connection
            .as_deref()
            .map(|name| self.connection_id(name))
            .transpose()?;
        let statuses = if filter.statuses.is_empty() {
            Value::Null
        } else {
            Value::Text(to_json(
                &filter
                    .statuses
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>(),
            ))
        };
        let sla = filter.sla.map_or(Value::Null, |s| {
            Value::Text(
                match s {
                    SlaState::Breached => "breached",
                    SlaState::Within => "within",
                    SlaState::None => "none",
                }
                .to_owned(),
            )
        });
        Ok(vec![
            connection_id.map_or(Value::Null, |c| Value::Integer(c.0)),
            text(filter.source_tool.as_ref()),
            text(filter.registry.as_ref()),
            text(filter.repository.as_ref()),
            text(filter.vulnerability.as_ref()),
            only.map_or(Value::Null, |i| Value::Integer(i.0)),
            ranks(&filter.severities),
            statuses,
            Value::Null,
            Value::Null,
            Value::Integer(-1),
            ranks(&filter.priorities),
            text(filter.application.as_ref()),
            text(filter.team.as_ref()),
            Value::Integer(i64::from(filter.unmapped)),
            sla,
            text(filter.control.as_ref()),
            Value::Text(now(&self.conn)?),
            Value::Integer(i64::from(include_retired)),
        ])
    }

    fn issue_rows(
        &self,
        filter: &IssueFilter,
        only: Option<IssueId>,
        sort: IssueSort,
        after: Option<&SortCursor>,
        include_retired: bool,
    ) -> Result<Vec<IssueRow>> {
        let mut values = self.filter_values(filter, only, include_retired)?;
        if let Some(cursor) = after {
            values[8] = cursor.bound()?;
            values[9] = rusqlite::types::Value::Integer(cursor.id.0);
        }
        if let Some(limit) = filter.limit {
            values[10] = rusqlite::types::Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        let connection_id = match &values[0] {
            rusqlite::types::Value::Integer(id) => Some(*id),
            _ => None,
        };
        let rows: Vec<(IssueRow, (String, String))> = self
            .conn
            .prepare_cached(&issues_sql(sort))?
            .query_map(rusqlite::params_from_iter(values), |row| {
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
            })?
            .collect::<rusqlite::Result<_>>()?;
        let mut out = Vec::with_capacity(rows.len());
        for (mut row, (factors, controls)) in rows {
            row.factors = from_json("findings.factors", &factors)?;
            row.controls = from_json("findings.controls", &controls)?;
            self.fill_images(&mut row, connection_id, include_retired)?;
            out.push(row);
        }
        Ok(out)
    }

    fn fill_images(
        &self,
        row: &mut IssueRow,
        connection_id: Option<i64>,
        include_retired: bool,
    ) -> Result<()> {
        type ImageLine = (String, String, String, Option<String>, Option<String>);
        let images: Vec<ImageLine> = self
            .conn
            .prepare_cached(
                "SELECT im.digest, im.tags, f.status, f.package_version, f.fixed_version
                 FROM findings f JOIN images im ON im.id = f.image_id
                 WHERE f.issue_id = ?1 AND (?2 IS NULL OR f.connection_id = ?2)
                   AND (?3 OR f.connection_id NOT IN (SELECT c.id FROM connections c WHERE c.retired_at IS NOT NULL))
                 ORDER BY f.status = 'open' DESC, f.last_seen DESC, f.id DESC",
            )?
            .query_map(params![row.id.0, connection_id, include_retired], |r| {
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
        // An issue seen only by retired connections is out of the queue, but its page stays.
        let mut rows = self.issue_rows(
            &IssueFilter::default(),
            Some(id),
            IssueSort::default(),
            None,
            false,
        )?;
        if rows.is_empty() {
            rows = self.issue_rows(
                &IssueFilter::default(),
                Some(id),
                IssueSort::default(),
                None,
                true,
            )?;
        }
        let Some(issue) = rows.pop() else {
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
            .prepare_cached(&format!(
                "SELECT f.id, c.name, im.digest, im.tags, im.removed_at IS NOT NULL, f.status, f.severity,
                        f.package_version, f.fixed_version, f.fix_status, f.evidence, f.first_seen, {LAST_SEEN},
                        f.resolved_at, f.last_run_id,
                        coalesce((SELECT rr.raw FROM raw_rows rr WHERE rr.id = f.raw_id), f.raw)
                 FROM findings f JOIN images im ON im.id = f.image_id JOIN connections c ON c.id = f.connection_id
                 JOIN issues i ON i.id = f.issue_id
                 WHERE f.issue_id = ?1 ORDER BY f.id",
            ))?
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
    use std::collections::BTreeSet;

    use keelson_core::{Finding, ImageRef, ScanScope};

    use super::*;
    use crate::{ConnectionSpec, Keyring, MasterKey, RunOutcome, RunTrigger};

    fn finding(repository: &str, digest: &str, vuln: &str, severity: Severity) -> Finding {
        Finding {
            image: ImageRef {
                registry: "r.azurecr.io".into(),
                repository: repository.into(),
                digest: digest.into(),
            },
            vulnerability_id: vuln.into(),
            source_id: None,
            title: vuln.into(),
            description: String::new(),
            severity,
            cvss_score: None,
            cvss_vector: None,
            package: None,
            remediation: None,
            evidence: vec![],
            references: vec![],
            published_at: None,
            modified_at: None,
            exploitability: Exploitability::default(),
            weaknesses: vec![],
            raw: "{}".into(),
        }
    }

    /// Connection `a` with ten issues over three repositories, some in several images, and
    /// connection `b` with two more.
    fn seeded() -> Store {
        let mut store = Store::open_in_memory().unwrap();
        let keys = Keyring::new(MasterKey::generate("k").unwrap());
        for name in ["a", "b"] {
            store
                .save_connection(&ConnectionSpec::new(name, "acr"), &keys, "test")
                .unwrap();
        }
        let levels = [Severity::Critical, Severity::High, Severity::Low];
        let mut a = Vec::new();
        for i in 0..10usize {
            for image in 0..=(i % 3) {
                a.push(finding(
                    ["web", "api", "jobs"][(i * 7) % 3],
                    &format!("sha256:{image}"),
                    &format!("CVE-{}", 100 - i),
                    levels[i % 3],
                ));
            }
        }
        let b = vec![
            finding("only-b", "sha256:b", "CVE-B1", Severity::Critical),
            finding("only-b", "sha256:b", "CVE-B2", Severity::Medium),
        ];
        for (name, findings) in [("a", a), ("b", b)] {
            let run = store
                .begin_run(name, RunTrigger::Manual, &ScanScope::default())
                .unwrap();
            store
                .ingest_findings(run, "Azure Container Registry", &findings)
                .unwrap();
            store
                .finish_run(
                    run,
                    &RunOutcome::Complete,
                    &crate::Coverage::default(),
                    &crate::ResolveGuard::default(),
                    &|_, _| true,
                )
                .unwrap();
        }
        store
    }

    #[test]
    fn every_sort_pages_in_order_without_repeats() {
        let store = seeded();
        let all = store.issues(&IssueFilter::default()).unwrap();
        assert_eq!(all.len(), 12);
        for key in SortKey::ALL {
            for descending in [false, true] {
                let sort = IssueSort { key, descending };
                let mut seen: Vec<IssueRow> = Vec::new();
                let mut after: Option<SortCursor> = None;
                loop {
                    let filter = IssueFilter {
                        limit: Some(5),
                        ..IssueFilter::default()
                    };
                    let page = store.issues_sorted(&filter, sort, after.as_ref()).unwrap();
                    let Some(last) = page.last() else { break };
                    // The printed cursor reads back as the same cursor.
                    let text = last.sort_cursor(sort).to_string();
                    after = Some(text.parse().unwrap());
                    seen.extend(page);
                }
                let ids: BTreeSet<IssueId> = seen.iter().map(|r| r.id).collect();
                assert_eq!(ids.len(), 12, "{sort}: every issue once");
                let key_of = |r: &IssueRow| match key {
                    SortKey::Priority => format!("{}", severity_rank(r.priority)),
                    SortKey::Severity => format!("{}", severity_rank(r.severity)),
                    SortKey::Images => format!("{:03}", r.images.len()),
                    _ => r.sort_cursor(sort).value,
                };
                for pair in seen.windows(2) {
                    let (x, y) = (key_of(&pair[0]), key_of(&pair[1]));
                    let ordered = if descending { x >= y } else { x <= y };
                    assert!(ordered, "{sort}: `{x}` then `{y}`");
                    if x == y {
                        assert!(pair[0].id < pair[1].id, "{sort}: ties by id");
                    }
                }
            }
        }
        let images: Vec<usize> = store
            .issues_sorted(
                &IssueFilter::default(),
                IssueSort::parse("-images").unwrap(),
                None,
            )
            .unwrap()
            .iter()
            .map(|r| r.images.len())
            .collect();
        assert_eq!(images[0], 3);
        assert_eq!(images[11], 1);
        // A cursor of another sort is refused, and so is garbage.
        let cursor = all[0].sort_cursor(IssueSort::default());
        assert!(matches!(
            store.issues_sorted(
                &IssueFilter::default(),
                IssueSort::parse("first_seen").unwrap(),
                Some(&cursor)
            ),
            Err(Error::InvalidCursor(_))
        ));
        for bad in [
            "",
            "urgent~x~1",
            "-priority~urgent~1",
            "images~many~1",
            "first_seen~x",
        ] {
            assert!(bad.parse::<SortCursor>().is_err(), "{bad}");
        }
        assert_eq!(IssueSort::parse("nope"), None);
    }

    #[test]
    fn the_summary_counts_the_filtered_queue_in_one_query() {
        let store = seeded();
        let summary = store.queue_summary(&IssueFilter::default()).unwrap();
        assert_eq!(summary.total, 12);
        assert_eq!(summary.by_severity[&Severity::Critical], 5);
        assert_eq!(summary.by_severity[&Severity::Medium], 1);
        assert_eq!(
            summary
                .repositories
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            ["api", "jobs", "only-b", "web"]
        );
        assert!(summary.applications.is_empty());
        let only_a = store
            .queue_summary(&IssueFilter {
                connection: Some("a".into()),
                severities: vec![Severity::Critical],
                ..IssueFilter::default()
            })
            .unwrap();
        assert_eq!(only_a.total, 4);
        assert_eq!(
            only_a.total,
            store
                .issues(&IssueFilter {
                    connection: Some("a".into()),
                    severities: vec![Severity::Critical],
                    ..IssueFilter::default()
                })
                .unwrap()
                .len() as u64
        );
    }

    #[test]
    fn findings_of_a_retired_connection_leave_the_queue() {
        let mut store = seeded();
        let b_only = store
            .issues(&IssueFilter {
                repository: Some("only-b".into()),
                ..IssueFilter::default()
            })
            .unwrap();
        assert_eq!(b_only.len(), 2);
        store.retire_connection("b", "test").unwrap();
        assert_eq!(store.issues(&IssueFilter::default()).unwrap().len(), 10);
        assert_eq!(
            store.queue_summary(&IssueFilter::default()).unwrap().total,
            10
        );
        // Its issues keep their page and history.
        let detail = store.issue(b_only[0].id).unwrap().unwrap();
        assert_eq!(detail.findings.len(), 1);
        assert!(detail.findings[0].connection.starts_with("b#retired-"));
    }

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
