-- Keelson store, schema version 2: enrichment (ownership, priority factors, SLA, compliance
-- controls, feeds, image context, manual priorities and rule-based suppressions).

-- What enrichment concluded for each finding. `priority` is NULL until the finding is first
-- evaluated; the queue then reads the scanner's severity.
ALTER TABLE findings ADD COLUMN priority INTEGER CHECK (priority IS NULL OR priority BETWEEN 0 AND 5);
ALTER TABLE findings ADD COLUMN factors TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(factors));
ALTER TABLE findings ADD COLUMN application TEXT;
ALTER TABLE findings ADD COLUMN team TEXT;
ALTER TABLE findings ADD COLUMN sla_due TEXT;
ALTER TABLE findings ADD COLUMN controls TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(controls));
ALTER TABLE findings ADD COLUMN enriched_at TEXT;
CREATE INDEX findings_by_application ON findings (application, status);
CREATE INDEX findings_by_team ON findings (team, status);
-- The SLA clock of a reopened finding restarts at its last reopen.
CREATE INDEX events_reopens_by_finding ON events (finding_id, at) WHERE kind = 'reopened';

-- What the connector's `describe-images` said about an image, as of its last scan.
CREATE TABLE image_context (
    image_id                        INTEGER PRIMARY KEY REFERENCES images (id),
    tags                            TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(tags)),
    last_pushed_at                  TEXT,
    last_pulled_at                  TEXT,
    running                         INTEGER,
    registry_public_network_access  INTEGER,
    attributes                      TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(attributes)),
    run_id                          INTEGER REFERENCES scan_runs (id),
    updated_at                      TEXT NOT NULL
) STRICT;

-- The CISA KEV catalog and the FIRST EPSS scores as last imported; each import replaces its feed.
CREATE TABLE feed_kev (
    cve_id           TEXT PRIMARY KEY,
    vendor_project   TEXT NOT NULL,
    product          TEXT NOT NULL,
    name             TEXT NOT NULL,
    date_added       TEXT NOT NULL,
    due_date         TEXT,
    required_action  TEXT NOT NULL,
    ransomware       INTEGER NOT NULL,
    catalog_version  TEXT NOT NULL
) STRICT;

CREATE TABLE feed_epss (
    cve_id      TEXT PRIMARY KEY,
    epss        REAL NOT NULL CHECK (epss BETWEEN 0 AND 1),
    percentile  REAL,
    score_date  TEXT
) STRICT;

CREATE TABLE feed_imports (
    id           INTEGER PRIMARY KEY,
    feed         TEXT NOT NULL CHECK (feed IN ('kev', 'epss')),
    version      TEXT,
    entries      INTEGER NOT NULL,
    imported_at  TEXT NOT NULL,
    actor        TEXT NOT NULL
) STRICT;

-- An operator's priority for an issue; it wins over every rule.
CREATE TABLE priority_overrides (
    issue_id    INTEGER PRIMARY KEY REFERENCES issues (id),
    priority    INTEGER NOT NULL CHECK (priority BETWEEN 1 AND 5),
    reason      TEXT NOT NULL,
    actor       TEXT NOT NULL,
    created_at  TEXT NOT NULL
) STRICT;

-- Issue suppressions gain a kind and "until a fix is available".
ALTER TABLE suppressions ADD COLUMN kind TEXT NOT NULL DEFAULT 'risk-accepted'
    CHECK (kind IN ('false-positive', 'risk-accepted', 'not-affected', 'wont-fix'));
ALTER TABLE suppressions ADD COLUMN until_fix INTEGER NOT NULL DEFAULT 0;

-- Suppressions by vulnerability, package, repository glob or application: they hide every
-- matching open finding, now and in later scans, until lifted or expired.
CREATE TABLE suppression_rules (
    id             INTEGER PRIMARY KEY,
    scope          TEXT NOT NULL CHECK (scope IN ('vulnerability', 'package', 'repository', 'application')),
    pattern        TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('false-positive', 'risk-accepted', 'not-affected', 'wont-fix')),
    justification  TEXT NOT NULL,
    actor          TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    expires_at     TEXT,
    until_fix      INTEGER NOT NULL DEFAULT 0,
    lifted_at      TEXT,
    lifted_by      TEXT
) STRICT;
ALTER TABLE findings ADD COLUMN suppression_rule_id INTEGER REFERENCES suppression_rules (id);
