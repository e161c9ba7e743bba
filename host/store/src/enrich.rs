//! Enrichment in the store: image context from the connector, the KEV and EPSS feeds, manual
//! priorities, rule-based suppressions, and the pass that re-evaluates findings with a
//! [`Policy`] and records every change of priority as an event.
//!
//! [`Store::enrich`] walks the findings that are not resolved in batches of [`ENRICH_BATCH`], one
//! transaction per batch, ordered by id: a tenant's findings never sit in memory at once, and a
//! crash loses at most one batch of (recomputable) conclusions.

use std::fmt;
use std::str::FromStr;

use keelson_core::{Exploitability, ImageContext, Severity};
use keelson_enrich::feeds::{EpssReader, KevCatalog};
use keelson_enrich::{
    EpssFact, ImageFacts, Input, KevFact, Override, Policy, SuppressionKind, glob_match, time,
};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::failpoints::failpoint;
use crate::ingest::{severity_from_rank, severity_rank};
use crate::runs::running_state;
use crate::{Error, IssueId, Result, RunId, Store, from_json, normalise_timestamp, now, to_json};

/// Findings evaluated per transaction.
pub const ENRICH_BATCH: usize = 500;

/// Which findings [`Store::enrich`] re-evaluates (never resolved ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrichScope {
    /// Every finding (after a feed import or a change of rules).
    All,
    /// The findings of one connection (after its scan).
    Connection(String),
    /// The findings of one issue (after a manual priority).
    Issue(IssueId),
}

/// What one enrichment pass changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrichCounts {
    pub evaluated: u64,
    /// Findings whose priority changed (one `reprioritised` event each).
    pub reprioritised: u64,
    /// Findings a suppression rule hid.
    pub suppressed: u64,
    /// Findings shown again: an expired or lifted rule, or a fix that ended "until fixed".
    pub unsuppressed: u64,
}

/// What a suppression rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleScope {
    /// A vulnerability id (`CVE-2024-3094`), any case.
    Vulnerability,
    /// A package name, exactly.
    Package,
    /// A glob over `registry/repository`.
    Repository,
    /// An application name of `[[application]]`.
    Application,
}

impl RuleScope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vulnerability => "vulnerability",
            Self::Package => "package",
            Self::Repository => "repository",
            Self::Application => "application",
        }
    }
}

impl fmt::Display for RuleScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RuleScope {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        [
            Self::Vulnerability,
            Self::Package,
            Self::Repository,
            Self::Application,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
        .ok_or_else(|| Error::Corrupt {
            column: "suppression_rules.scope",
            reason: format!("`{s}`"),
        })
    }
}

/// A suppression by vulnerability, package, repository glob or application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuppressionRule {
    pub id: i64,
    pub scope: RuleScope,
    pub pattern: String,
    pub kind: SuppressionKind,
    pub justification: String,
    pub actor: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    /// Ends for each finding once a fix is available for it.
    pub until_fix: bool,
    pub lifted_at: Option<String>,
    pub lifted_by: Option<String>,
}

impl SuppressionRule {
    fn matches(&self, f: &FindingKey<'_>) -> bool {
        match self.scope {
            RuleScope::Vulnerability => self.pattern.eq_ignore_ascii_case(f.vulnerability),
            RuleScope::Package => self.pattern == f.package,
            RuleScope::Repository => {
                glob_match(&self.pattern, &format!("{}/{}", f.registry, f.repository))
            }
            RuleScope::Application => f.application == Some(self.pattern.as_str()),
        }
    }
}

struct FindingKey<'a> {
    vulnerability: &'a str,
    package: &'a str,
    registry: &'a str,
    repository: &'a str,
    application: Option<&'a str>,
}

/// Open findings and SLA breaches under one control.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlCount {
    /// `"<framework> <control>"`.
    pub control: String,
    pub issues: u64,
    pub findings: u64,
    pub breached_issues: u64,
    pub breached_findings: u64,
}

/// A manual priority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverrideInfo {
    pub priority: Severity,
    pub reason: String,
    pub actor: String,
    pub created_at: String,
}

const RULE_COLUMNS: &str = "id, scope, pattern, kind, justification, actor, created_at, expires_at, until_fix, lifted_at, lifted_by";

fn rule_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(SuppressionRule, String, String)> {
    Ok((
        SuppressionRule {
            id: r.get(0)?,
            scope: RuleScope::Vulnerability,
            pattern: r.get(2)?,
            kind: SuppressionKind::RiskAccepted,
            justification: r.get(4)?,
            actor: r.get(5)?,
            created_at: r.get(6)?,
            expires_at: r.get(7)?,
            until_fix: r.get(8)?,
            lifted_at: r.get(9)?,
            lifted_by: r.get(10)?,
        },
        r.get(1)?,
        r.get(3)?,
    ))
}

fn finish_rule(
    (mut rule, scope, kind): (SuppressionRule, String, String),
) -> Result<SuppressionRule> {
    rule.scope = scope.parse()?;
    rule.kind = kind.parse().map_err(|_| Error::Corrupt {
        column: "suppression_rules.kind",
        reason: format!("`{kind}`"),
    })?;
    Ok(rule)
}

fn rules(conn: &Connection, active_only: bool) -> Result<Vec<SuppressionRule>> {
    let sql = format!(
        "SELECT {RULE_COLUMNS} FROM suppression_rules WHERE (?1 = 0 OR lifted_at IS NULL) ORDER BY id"
    );
    let raw: Vec<_> = conn
        .prepare_cached(&sql)?
        .query_map([active_only], rule_from_row)?
        .collect::<rusqlite::Result<_>>()?;
    raw.into_iter().map(finish_rule).collect()
}

/// Shows again the findings a rule hid; returns how many.
fn release_rule(conn: &Connection, rule: i64, at: &str, actor: &str, why: &str) -> Result<u64> {
    conn.prepare_cached(
        "INSERT INTO events (at, kind, connection_id, issue_id, finding_id, actor, field, old_value, new_value)
         SELECT ?2, 'unsuppressed', connection_id, issue_id, id, ?3, 'status', 'suppressed', ?4
         FROM findings WHERE suppression_rule_id = ?1 AND status = 'suppressed' ORDER BY id",
    )?
    .execute(params![rule, at, actor, format!("open ({why})")])?;
    let n = conn
        .prepare_cached(
            "UPDATE findings SET status = 'open', suppression_rule_id = NULL
             WHERE suppression_rule_id = ?1 AND status = 'suppressed'",
        )?
        .execute([rule])?;
    Ok(n as u64)
}

fn expire_rules(conn: &Connection, at: &str) -> Result<u64> {
    let expired: Vec<i64> = conn
        .prepare_cached(
            "SELECT id FROM suppression_rules WHERE lifted_at IS NULL AND expires_at IS NOT NULL AND expires_at <= ?1",
        )?
        .query_map([at], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut n = 0;
    for id in expired {
        conn.execute(
            "UPDATE suppression_rules SET lifted_at = ?2, lifted_by = 'expiry' WHERE id = ?1",
            params![id, at],
        )?;
        n += release_rule(conn, id, at, "expiry", "the suppression expired")?;
    }
    Ok(n)
}

fn event(
    conn: &Connection,
    kind: &str,
    f: (i64, i64, i64),
    actor: &str,
    at: &str,
    change: (&str, Option<&str>, Option<&str>),
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO events (at, kind, connection_id, issue_id, finding_id, actor, field, old_value, new_value)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![at, kind, f.0, f.1, f.2, actor, change.0, change.1, change.2])?;
    Ok(())
}

/// One finding as the enrichment pass reads it.
struct Row {
    id: i64,
    issue_id: i64,
    connection_id: i64,
    status: String,
    severity: i64,
    priority: Option<i64>,
    factors: String,
    application: Option<String>,
    team: Option<String>,
    sla_due: Option<String>,
    controls: String,
    enriched: bool,
    rule_id: Option<i64>,
    package: String,
    issue_until_fix: Option<bool>,
    input: Input,
}

const BATCH_SQL: &str = "
SELECT f.id, f.issue_id, f.connection_id, f.status, f.severity, f.priority, f.factors, f.application, f.team,
       f.sla_due, f.controls, f.enriched_at IS NOT NULL, f.suppression_rule_id,
       f.fixed_version, f.fix_status, f.package_kind, f.first_seen,
       (SELECT max(ev.at) FROM events ev WHERE ev.finding_id = f.id AND ev.kind = 'reopened'),
       i.vulnerability_id, i.package, i.registry, i.repository,
       v.cvss_vector, v.exploitability,
       im.tags, ic.tags, ic.last_pushed_at, ic.running, ic.registry_public_network_access,
       k.date_added, k.due_date, k.ransomware, k.catalog_version,
       e.epss, e.percentile, e.score_date,
       o.priority, o.reason, o.actor, o.created_at,
       (SELECT s.until_fix FROM suppressions s WHERE s.issue_id = f.issue_id AND s.lifted_at IS NULL)
FROM findings f
JOIN issues i ON i.id = f.issue_id
JOIN images im ON im.id = f.image_id
LEFT JOIN vulnerabilities v ON v.source_tool = i.source_tool AND v.vulnerability_id = i.vulnerability_id
LEFT JOIN image_context ic ON ic.image_id = f.image_id
LEFT JOIN feed_kev k ON k.cve_id = i.vulnerability_id
LEFT JOIN feed_epss e ON e.cve_id = i.vulnerability_id
LEFT JOIN priority_overrides o ON o.issue_id = f.issue_id
WHERE f.id > ?1 AND f.status != 'resolved'
  AND (?2 IS NULL OR f.connection_id = ?2) AND (?3 IS NULL OR f.issue_id = ?3)
ORDER BY f.id
LIMIT ?4";

fn load_batch(
    conn: &Connection,
    after: i64,
    connection: Option<i64>,
    issue: Option<i64>,
    restart_on_reopen: bool,
    now_s: time::Seconds,
) -> Result<Vec<Row>> {
    let mut stmt = conn.prepare_cached(BATCH_SQL)?;
    let mut rows = stmt.query(params![after, connection, issue, ENRICH_BATCH as i64])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let first_seen: String = r.get(16)?;
        let reopened: Option<String> = r.get(17)?;
        let start = if restart_on_reopen {
            reopened.unwrap_or(first_seen)
        } else {
            first_seen
        };
        let exploitability: Exploitability = match r.get::<_, Option<String>>(23)? {
            Some(text) => from_json("vulnerabilities.exploitability", &text)?,
            None => Exploitability::default(),
        };
        let tags: Vec<String> = match r.get::<_, Option<String>>(25)? {
            Some(text) => from_json("image_context.tags", &text)?,
            None => from_json("images.tags", &r.get::<_, String>(24)?)?,
        };
        let kev = r
            .get::<_, Option<String>>(29)?
            .map(|date_added| -> rusqlite::Result<KevFact> {
                Ok(KevFact {
                    date_added,
                    due_date: r.get(30)?,
                    ransomware: r.get(31)?,
                    catalog_version: r.get(32)?,
                })
            })
            .transpose()?;
        let epss = r
            .get::<_, Option<f64>>(33)?
            .map(|score| -> rusqlite::Result<EpssFact> {
                Ok(EpssFact {
                    score,
                    percentile: r.get(34)?,
                    score_date: r.get(35)?,
                })
            })
            .transpose()?;
        let manual = r
            .get::<_, Option<i64>>(36)?
            .map(|p| -> rusqlite::Result<Override> {
                Ok(Override {
                    priority: severity_from_rank(p),
                    reason: r.get(37)?,
                    actor: r.get(38)?,
                    at: r.get(39)?,
                })
            })
            .transpose()?;
        let severity: i64 = r.get(4)?;
        let package: String = r.get(19)?;
        out.push(Row {
            id: r.get(0)?,
            issue_id: r.get(1)?,
            connection_id: r.get(2)?,
            status: r.get(3)?,
            severity,
            priority: r.get(5)?,
            factors: r.get(6)?,
            application: r.get(7)?,
            team: r.get(8)?,
            sla_due: r.get(9)?,
            controls: r.get(10)?,
            enriched: r.get(11)?,
            rule_id: r.get(12)?,
            issue_until_fix: r.get(40)?,
            input: Input {
                vulnerability_id: r.get(18)?,
                severity: Some(severity_from_rank(severity)),
                cvss_vector: r.get(22)?,
                exploit_published: exploitability.exploit_published,
                exploit_verified: exploitability.exploit_verified,
                in_exploit_kit: exploitability.in_exploit_kit,
                package: (!package.is_empty()).then(|| package.clone()),
                package_kind: r.get(15)?,
                fixed_version: r.get(13)?,
                fix_status: r.get(14)?,
                registry: r.get(20)?,
                repository: r.get(21)?,
                tags,
                image: ImageFacts {
                    last_pushed_at: r.get(26)?,
                    running: r.get(27)?,
                    registry_public_network_access: r.get(28)?,
                },
                kev,
                epss,
                manual,
                sla_start: time::parse(&start).ok(),
                now: now_s,
            },
            package,
        });
    }
    Ok(out)
}

fn has_fix(input: &Input) -> bool {
    input.fixed_version.is_some() || input.fix_status.as_deref() == Some("fix-available")
}

impl Store {
    /// Re-evaluates the findings in `scope` with `policy`: priority, factors, application, team,
    /// SLA due date and controls; applies suppression rules and "until a fix is available"; lifts
    /// expired suppressions. Each change of priority is one `reprioritised` event by `actor`.
    pub fn enrich(
        &mut self,
        policy: &Policy,
        scope: &EnrichScope,
        actor: &str,
    ) -> Result<EnrichCounts> {
        let (connection, issue) = match scope {
            EnrichScope::All => (None, None),
            EnrichScope::Connection(name) => (Some(self.connection_id(name)?.0), None),
            EnrichScope::Issue(id) => (None, Some(id.0)),
        };
        let mut counts = EnrichCounts::default();
        let tx = self.write()?;
        let at = now(&tx)?;
        counts.unsuppressed += expire_rules(&tx, &at)?;
        crate::queue::expire_suppressions_in(&tx, &at)?;
        tx.commit()?;
        let active = rules(&self.conn, true)?;
        let restart = policy.thresholds.sla_restart_on_reopen;
        let mut after = 0;
        loop {
            let tx = self.write()?;
            let at = now(&tx)?;
            let now_s = time::parse(&at).map_err(|_| Error::InvalidTimestamp(at.clone()))?;
            let batch = load_batch(&tx, after, connection, issue, restart, now_s)?;
            let Some(last) = batch.last() else {
                break;
            };
            after = last.id;
            for row in batch {
                apply(&tx, policy, &active, &row, &at, actor, &mut counts)?;
            }
            tx.commit()?;
        }
        Ok(counts)
    }

    /// Records what the connector said about images of `run` (a running run); contexts for
    /// images the run's connection does not know are ignored. Returns how many were stored.
    pub fn save_image_contexts(&mut self, run: RunId, contexts: &[ImageContext]) -> Result<usize> {
        let tx = self.write()?;
        let state = running_state(&tx, run)?;
        let at = now(&tx)?;
        let mut saved = 0;
        for c in contexts {
            let image: Option<i64> = tx
                .prepare_cached(
                    "SELECT im.id FROM images im JOIN repositories rp ON rp.id = im.repository_id
                     JOIN registries rg ON rg.id = rp.registry_id
                     WHERE rg.connection_id = ?1 AND rg.name = ?2 AND rp.name = ?3 AND im.digest = ?4",
                )?
                .query_row(
                    params![state.connection_id, c.image.registry, c.image.repository, c.image.digest],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(image) = image else { continue };
            let pushed = c
                .last_pushed_at
                .as_deref()
                .map(|t| normalise_timestamp(&tx, t))
                .transpose()
                .ok()
                .flatten();
            let mut tags = c.tags.clone();
            tags.sort();
            tags.dedup();
            tx.prepare_cached(
                "INSERT INTO image_context (image_id, tags, last_pushed_at, last_pulled_at, running,
                     registry_public_network_access, attributes, run_id, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (image_id) DO UPDATE SET tags = excluded.tags, last_pushed_at = excluded.last_pushed_at,
                     last_pulled_at = excluded.last_pulled_at, running = excluded.running,
                     registry_public_network_access = excluded.registry_public_network_access,
                     attributes = excluded.attributes, run_id = excluded.run_id, updated_at = excluded.updated_at",
            )?
            .execute(params![
                image,
                to_json(&tags),
                pushed,
                c.last_pulled_at,
                c.running,
                c.registry_public_network_access,
                to_json(&c.attributes),
                run.0,
                at
            ])?;
            saved += 1;
        }
        failpoint!("store::save_image_contexts::before_commit");
        tx.commit()?;
        failpoint!("store::save_image_contexts::after_commit");
        Ok(saved)
    }

    /// Replaces the KEV feed with `catalog`; returns the number of entries.
    pub fn import_kev(&mut self, catalog: &KevCatalog, actor: &str) -> Result<u64> {
        let tx = self.write()?;
        let at = now(&tx)?;
        tx.execute("DELETE FROM feed_kev", [])?;
        let mut n = 0u64;
        for e in &catalog.vulnerabilities {
            n += tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO feed_kev (cve_id, vendor_project, product, name, date_added, due_date,
                         required_action, ransomware, catalog_version)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?
                .execute(params![
                    e.cve_id,
                    e.vendor_project,
                    e.product,
                    e.vulnerability_name,
                    e.date_added,
                    e.due_date,
                    e.required_action,
                    e.ransomware(),
                    catalog.catalog_version
                ])? as u64;
        }
        tx.execute(
            "INSERT INTO feed_imports (feed, version, entries, imported_at, actor) VALUES ('kev', ?1, ?2, ?3, ?4)",
            params![catalog.catalog_version, n as i64, at, actor],
        )?;
        tx.commit()?;
        Ok(n)
    }

    /// Replaces the EPSS feed with the scores `reader` yields, in one transaction: a bad line
    /// leaves the previous scores in place.
    pub fn import_epss(&mut self, reader: &mut EpssReader, actor: &str) -> Result<u64> {
        let tx = self.write()?;
        let at = now(&tx)?;
        tx.execute("DELETE FROM feed_epss", [])?;
        let score_date = reader.header.score_date.clone();
        let mut n = 0u64;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO feed_epss (cve_id, epss, percentile, score_date) VALUES (?1, ?2, ?3, ?4)",
            )?;
            while let Some(score) = reader.next_score() {
                let score = score?;
                insert.execute(params![score.cve, score.epss, score.percentile, score_date])?;
                n += 1;
            }
        }
        let version = match (&reader.header.model_version, &score_date) {
            (Some(m), Some(d)) => Some(format!("{m} {d}")),
            (m, d) => m.clone().or_else(|| d.clone()),
        };
        tx.execute(
            "INSERT INTO feed_imports (feed, version, entries, imported_at, actor) VALUES ('epss', ?1, ?2, ?3, ?4)",
            params![version, n as i64, at, actor],
        )?;
        tx.commit()?;
        Ok(n)
    }

    /// Sets issue `id`'s priority by hand. Run [`Store::enrich`] on the issue to apply it.
    pub fn set_priority_override(
        &mut self,
        id: IssueId,
        priority: Severity,
        reason: &str,
        actor: &str,
    ) -> Result<()> {
        if priority == Severity::Unknown {
            return Err(Error::BadOverride(priority));
        }
        if reason.trim().is_empty() {
            return Err(Error::EmptyJustification);
        }
        let tx = self.write()?;
        let at = now(&tx)?;
        crate::queue::ensure_issue(&tx, id)?;
        let old: Option<i64> = tx
            .query_row(
                "SELECT priority FROM priority_overrides WHERE issue_id = ?1",
                [id.0],
                |r| r.get(0),
            )
            .optional()?;
        tx.execute(
            "INSERT OR REPLACE INTO priority_overrides (issue_id, priority, reason, actor, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id.0, severity_rank(priority), reason, actor, at],
        )?;
        tx.execute(
            "INSERT INTO events (at, kind, issue_id, actor, field, old_value, new_value) VALUES (?1, 'priority-override', ?2, ?3, 'priority', ?4, ?5)",
            params![at, id.0, actor, old.map(|p| severity_from_rank(p).to_string()), format!("{priority}: {reason}")],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Removes issue `id`'s manual priority. Run [`Store::enrich`] on the issue to apply it.
    pub fn clear_priority_override(&mut self, id: IssueId, actor: &str) -> Result<()> {
        let tx = self.write()?;
        let at = now(&tx)?;
        crate::queue::ensure_issue(&tx, id)?;
        let old: Option<i64> = tx
            .query_row(
                "DELETE FROM priority_overrides WHERE issue_id = ?1 RETURNING priority",
                [id.0],
                |r| r.get(0),
            )
            .optional()?;
        let Some(old) = old else {
            return Err(Error::NoOverride(id));
        };
        tx.execute(
            "INSERT INTO events (at, kind, issue_id, actor, field, old_value) VALUES (?1, 'priority-override-cleared', ?2, ?3, 'priority', ?4)",
            params![at, id.0, actor, severity_from_rank(old).to_string()],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The manual priority of issue `id`, if any.
    pub fn priority_override(&self, id: IssueId) -> Result<Option<OverrideInfo>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT priority, reason, actor, created_at FROM priority_overrides WHERE issue_id = ?1",
            )?
            .query_row([id.0], |r| {
                Ok(OverrideInfo {
                    priority: severity_from_rank(r.get(0)?),
                    reason: r.get(1)?,
                    actor: r.get(2)?,
                    created_at: r.get(3)?,
                })
            })
            .optional()?)
    }

    /// Adds a suppression rule and hides the open findings it matches now (the application scope
    /// uses the application each finding was last mapped to). Returns the rule and how many
    /// findings it hid.
    #[allow(clippy::too_many_arguments, reason = "each is one column of the rule")]
    pub fn add_suppression_rule(
        &mut self,
        scope: RuleScope,
        pattern: &str,
        kind: SuppressionKind,
        justification: &str,
        expires_at: Option<&str>,
        until_fix: bool,
        actor: &str,
    ) -> Result<(SuppressionRule, u64)> {
        if justification.trim().is_empty() {
            return Err(Error::EmptyJustification);
        }
        if pattern.trim().is_empty() {
            return Err(Error::EmptyPattern(scope.as_str()));
        }
        let tx = self.write()?;
        let at = now(&tx)?;
        let expires_at = expires_at
            .map(|e| normalise_timestamp(&tx, e))
            .transpose()?;
        let id: i64 = tx.query_row(
            "INSERT INTO suppression_rules (scope, pattern, kind, justification, actor, created_at, expires_at, until_fix)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id",
            params![scope.as_str(), pattern, kind.as_str(), justification, actor, at, expires_at, until_fix],
            |r| r.get(0),
        )?;
        let rule = SuppressionRule {
            id,
            scope,
            pattern: pattern.to_owned(),
            kind,
            justification: justification.to_owned(),
            actor: actor.to_owned(),
            created_at: at.clone(),
            expires_at,
            until_fix,
            lifted_at: None,
            lifted_by: None,
        };
        type Candidate = (
            i64,
            i64,
            i64,
            String,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        // Open findings a batch at a time, so a tenant-wide rule never loads the whole queue.
        let mut hidden = 0;
        let mut after = 0;
        loop {
            let batch: Vec<Candidate> = tx
                .prepare_cached(
                    "SELECT f.id, f.issue_id, f.connection_id, i.vulnerability_id, i.package, i.registry,
                            i.repository, f.application, f.fixed_version, f.fix_status
                     FROM findings f JOIN issues i ON i.id = f.issue_id
                     WHERE f.status = 'open' AND f.id > ?1 ORDER BY f.id LIMIT ?2",
                )?
                .query_map(params![after, ENRICH_BATCH as i64], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                        r.get(9)?,
                    ))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let Some(last) = batch.last().map(|c| c.0) else {
                break;
            };
            after = last;
            for c in batch {
                let key = FindingKey {
                    vulnerability: &c.3,
                    package: &c.4,
                    registry: &c.5,
                    repository: &c.6,
                    application: c.7.as_deref(),
                };
                let fixed = c.8.is_some() || c.9.as_deref() == Some("fix-available");
                if rule.matches(&key) && !(until_fix && fixed) {
                    hide(&tx, &rule, (c.2, c.1, c.0), &at, actor)?;
                    hidden += 1;
                }
            }
        }
        tx.commit()?;
        Ok((rule, hidden))
    }

    /// Lifts suppression rule `id`: the findings it hid open again. Returns how many.
    pub fn lift_suppression_rule(&mut self, id: i64, actor: &str) -> Result<u64> {
        let tx = self.write()?;
        let at = now(&tx)?;
        let lifted: Option<Option<String>> = tx
            .query_row(
                "SELECT lifted_at FROM suppression_rules WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?;
        match lifted {
            None => return Err(Error::UnknownSuppressionRule(id)),
            Some(Some(_)) => return Err(Error::SuppressionRuleLifted(id)),
            Some(None) => {}
        }
        tx.execute(
            "UPDATE suppression_rules SET lifted_at = ?2, lifted_by = ?3 WHERE id = ?1",
            params![id, at, actor],
        )?;
        let n = release_rule(&tx, id, &at, actor, "the suppression was lifted")?;
        tx.commit()?;
        Ok(n)
    }

    /// Every suppression rule, active or not, oldest first.
    pub fn suppression_rules(&self) -> Result<Vec<SuppressionRule>> {
        rules(&self.conn, false)
    }

    /// Open findings and SLA breaches per control, by control name.
    pub fn compliance(&self) -> Result<Vec<ControlCount>> {
        let at = now(&self.conn)?;
        let rows = self
            .conn
            .prepare_cached(
                "SELECT c.value, count(DISTINCT f.issue_id), count(*),
                        count(DISTINCT CASE WHEN f.sla_due < ?1 THEN f.issue_id END),
                        sum(f.sla_due IS NOT NULL AND f.sla_due < ?1)
                 FROM findings f, json_each(f.controls) c
                 WHERE f.status = 'open'
                 GROUP BY c.value ORDER BY c.value",
            )?
            .query_map([at], |r| {
                Ok(ControlCount {
                    control: r.get(0)?,
                    issues: r.get::<_, i64>(1)? as u64,
                    findings: r.get::<_, i64>(2)? as u64,
                    breached_issues: r.get::<_, i64>(3)? as u64,
                    breached_findings: r.get::<_, i64>(4)? as u64,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }
}

fn hide(
    conn: &Connection,
    rule: &SuppressionRule,
    f: (i64, i64, i64),
    at: &str,
    actor: &str,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE findings SET status = 'suppressed', suppression_rule_id = ?2 WHERE id = ?1 AND status = 'open'",
    )?
    .execute(params![f.2, rule.id])?;
    let why = format!(
        "suppressed ({} by rule {}: {} `{}`: {})",
        rule.kind, rule.id, rule.scope, rule.pattern, rule.justification
    );
    event(
        conn,
        "suppressed",
        f,
        actor,
        at,
        ("status", Some("open"), Some(&why)),
    )
}

fn apply(
    conn: &Connection,
    policy: &Policy,
    active: &[SuppressionRule],
    row: &Row,
    at: &str,
    actor: &str,
    counts: &mut EnrichCounts,
) -> Result<()> {
    let e = policy.evaluate(&row.input);
    let new_priority = severity_rank(e.priority);
    let factors = to_json(&e.factors);
    let controls = to_json(&e.controls);
    let changed = row.priority != Some(new_priority)
        || row.factors != factors
        || row.application != e.application
        || row.team != e.team
        || row.sla_due != e.sla_due
        || row.controls != controls
        || !row.enriched;
    let f = (row.connection_id, row.issue_id, row.id);
    if changed {
        conn.prepare_cached(
            "UPDATE findings SET priority = ?2, factors = ?3, application = ?4, team = ?5, sla_due = ?6,
                 controls = ?7, enriched_at = ?8 WHERE id = ?1",
        )?
        .execute(params![row.id, new_priority, factors, e.application, e.team, e.sla_due, controls, at])?;
    }
    let old_effective = row.priority.unwrap_or(row.severity);
    if old_effective != new_priority {
        let old = severity_from_rank(old_effective).to_string();
        let new = e.priority.to_string();
        event(
            conn,
            "reprioritised",
            f,
            actor,
            at,
            ("priority", Some(&old), Some(&new)),
        )?;
        counts.reprioritised += 1;
    }
    if row.enriched && row.application != e.application {
        event(
            conn,
            "enriched",
            f,
            actor,
            at,
            (
                "application",
                row.application.as_deref(),
                e.application.as_deref(),
            ),
        )?;
    }
    counts.evaluated += 1;

    let fixed = has_fix(&row.input);
    if row.status == "open" {
        let key = FindingKey {
            vulnerability: &row.input.vulnerability_id,
            package: &row.package,
            registry: &row.input.registry,
            repository: &row.input.repository,
            application: e.application.as_deref(),
        };
        if let Some(rule) = active
            .iter()
            .find(|r| r.matches(&key) && !(r.until_fix && fixed))
        {
            hide(conn, rule, f, at, actor)?;
            counts.suppressed += 1;
        }
    } else if row.status == "suppressed" && fixed {
        let rule_until_fix = row
            .rule_id
            .and_then(|id| active.iter().find(|r| r.id == id))
            .is_some_and(|r| r.until_fix);
        if rule_until_fix {
            conn.prepare_cached(
                "UPDATE findings SET status = 'open', suppression_rule_id = NULL WHERE id = ?1",
            )?
            .execute([row.id])?;
            event(
                conn,
                "unsuppressed",
                f,
                "fix-available",
                at,
                (
                    "status",
                    Some("suppressed"),
                    Some("open (a fix is available)"),
                ),
            )?;
            counts.unsuppressed += 1;
        } else if row.rule_id.is_none()
            && row.issue_until_fix == Some(true)
            && crate::queue::lift(conn, row.issue_id, "fix-available", at)?
        {
            counts.unsuppressed += 1;
        }
    }
    Ok(())
}
