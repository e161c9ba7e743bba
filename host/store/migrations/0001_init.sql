-- Keelson store, schema version 1.
--
-- Released migrations are never edited: a change is a new file appended to `MIGRATIONS`.
-- Timestamps are RFC 3339 UTC text with milliseconds (`2026-01-31T12:00:00.000Z`), so they sort as text.
-- Natural keys never include attributes that churn (severity, titles, versions).

-- A configured account of one plugin. Secrets live in `connection_secrets`, encrypted.
CREATE TABLE connections (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    plugin      TEXT NOT NULL,
    settings    TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(settings)),
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
) STRICT;

-- AES-256-GCM ciphertext of one secret setting; `key_id` names the master key so keys can rotate.
CREATE TABLE connection_secrets (
    connection_id  INTEGER NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    key            TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    nonce          BLOB NOT NULL,
    ciphertext     BLOB NOT NULL,
    updated_at     TEXT NOT NULL,
    PRIMARY KEY (connection_id, key)
) STRICT;

-- Ordered select/deselect globs; the last rule that matches a location decides. No rule: everything.
CREATE TABLE connection_selection (
    connection_id  INTEGER NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    position       INTEGER NOT NULL,
    action         TEXT NOT NULL CHECK (action IN ('select', 'deselect')),
    pattern        TEXT NOT NULL,
    PRIMARY KEY (connection_id, position)
) STRICT;

-- One scan of one connection. At most one `running` run per connection (the lease).
CREATE TABLE scan_runs (
    id                  INTEGER PRIMARY KEY,
    connection_id       INTEGER NOT NULL REFERENCES connections (id),
    trigger             TEXT NOT NULL,
    requested_scope     TEXT NOT NULL CHECK (json_valid(requested_scope)),
    covered_registries  TEXT CHECK (covered_registries IS NULL OR json_valid(covered_registries)),
    status              TEXT NOT NULL CHECK (status IN
                            ('running', 'complete', 'partial', 'failed', 'cancelled', 'interrupted')),
    owner               TEXT,
    started_at          TEXT NOT NULL,
    finished_at         TEXT,
    images_seen         INTEGER NOT NULL DEFAULT 0,
    findings_new        INTEGER NOT NULL DEFAULT 0,
    findings_seen       INTEGER NOT NULL DEFAULT 0,
    findings_reopened   INTEGER NOT NULL DEFAULT 0,
    findings_updated    INTEGER NOT NULL DEFAULT 0,
    findings_resolved   INTEGER NOT NULL DEFAULT 0,
    error               TEXT
) STRICT;
CREATE UNIQUE INDEX scan_runs_one_running_per_connection ON scan_runs (connection_id) WHERE status = 'running';
CREATE INDEX scan_runs_by_connection ON scan_runs (connection_id, id);

-- Inventory, per connection. `removed_at` is set when a complete run covering the registry no longer saw it.
CREATE TABLE registries (
    id                     INTEGER PRIMARY KEY,
    connection_id          INTEGER NOT NULL REFERENCES connections (id),
    name                   TEXT NOT NULL,
    source_id              TEXT,
    display_name           TEXT,
    location               TEXT,
    tier                   TEXT,
    public_network_access  INTEGER,
    attributes             TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(attributes)),
    first_seen             TEXT NOT NULL,
    last_seen              TEXT NOT NULL,
    last_run_id            INTEGER REFERENCES scan_runs (id),
    removed_at             TEXT,
    UNIQUE (connection_id, name)
) STRICT;

CREATE TABLE repositories (
    id           INTEGER PRIMARY KEY,
    registry_id  INTEGER NOT NULL REFERENCES registries (id),
    name         TEXT NOT NULL,
    updated_at   TEXT,
    first_seen   TEXT NOT NULL,
    last_seen    TEXT NOT NULL,
    last_run_id  INTEGER REFERENCES scan_runs (id),
    removed_at   TEXT,
    UNIQUE (registry_id, name)
) STRICT;

CREATE TABLE images (
    id             INTEGER PRIMARY KEY,
    repository_id  INTEGER NOT NULL REFERENCES repositories (id),
    digest         TEXT NOT NULL,
    tags           TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(tags)),
    media_type     TEXT,
    platform       TEXT CHECK (platform IS NULL OR json_valid(platform)),
    size_bytes     INTEGER,
    created_at     TEXT,
    updated_at     TEXT,
    first_seen     TEXT NOT NULL,
    last_seen      TEXT NOT NULL,
    last_run_id    INTEGER REFERENCES scan_runs (id),
    removed_at     TEXT,
    UNIQUE (repository_id, digest)
) STRICT;

-- What a source tool says about a vulnerability. Every column but the key is a mutable attribute.
CREATE TABLE vulnerabilities (
    id                INTEGER PRIMARY KEY,
    source_tool       TEXT NOT NULL,
    vulnerability_id  TEXT NOT NULL,
    title             TEXT NOT NULL,
    description       TEXT NOT NULL,
    cvss_score        REAL,
    cvss_vector       TEXT,
    remediation       TEXT,
    "references"      TEXT NOT NULL DEFAULT '[]' CHECK (json_valid("references")),
    weaknesses        TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(weaknesses)),
    exploitability    TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(exploitability)),
    published_at      TEXT,
    modified_at       TEXT,
    first_seen        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    UNIQUE (source_tool, vulnerability_id)
) STRICT;

-- An occurrence group that survives new digests and tags. `package` is '' when the source names none.
CREATE TABLE issues (
    id                INTEGER PRIMARY KEY,
    source_tool       TEXT NOT NULL,
    registry          TEXT NOT NULL,
    repository        TEXT NOT NULL,
    vulnerability_id  TEXT NOT NULL,
    package           TEXT NOT NULL,
    first_seen        TEXT NOT NULL,
    UNIQUE (source_tool, registry, repository, vulnerability_id, package)
) STRICT;
CREATE INDEX issues_by_vulnerability ON issues (vulnerability_id);

-- One occurrence: connection + image (registry, repository, digest) + issue (source tool,
-- vulnerability, package). Severity and versions are attributes, updated in place.
CREATE TABLE findings (
    id               INTEGER PRIMARY KEY,
    connection_id    INTEGER NOT NULL REFERENCES connections (id),
    issue_id         INTEGER NOT NULL REFERENCES issues (id),
    image_id         INTEGER NOT NULL REFERENCES images (id),
    status           TEXT NOT NULL CHECK (status IN ('open', 'resolved', 'suppressed')),
    severity         INTEGER NOT NULL CHECK (severity BETWEEN 0 AND 5),
    package_version  TEXT,
    fixed_version    TEXT,
    fix_status       TEXT,
    package_kind     TEXT,
    ecosystem        TEXT,
    source_id        TEXT,
    evidence         TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(evidence)),
    raw              TEXT NOT NULL DEFAULT '',
    first_seen       TEXT NOT NULL,
    last_seen        TEXT NOT NULL,
    first_run_id     INTEGER NOT NULL REFERENCES scan_runs (id),
    last_run_id      INTEGER NOT NULL REFERENCES scan_runs (id),
    resolved_at      TEXT,
    resolved_run_id  INTEGER REFERENCES scan_runs (id),
    UNIQUE (image_id, issue_id)
) STRICT;
CREATE INDEX findings_by_issue ON findings (issue_id);
CREATE INDEX findings_open_by_connection ON findings (connection_id, status);

-- A human decision to hide an issue from the queue. Active while `lifted_at` is null and not expired.
CREATE TABLE suppressions (
    id          INTEGER PRIMARY KEY,
    issue_id    INTEGER NOT NULL REFERENCES issues (id),
    reason      TEXT NOT NULL,
    actor       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT,
    lifted_at   TEXT,
    lifted_by   TEXT
) STRICT;
CREATE UNIQUE INDEX suppressions_one_active_per_issue ON suppressions (issue_id) WHERE lifted_at IS NULL;

-- Every change and who or what made it: a run (`run_id`) or a person or process (`actor`).
CREATE TABLE events (
    id             INTEGER PRIMARY KEY,
    at             TEXT NOT NULL,
    kind           TEXT NOT NULL,
    connection_id  INTEGER REFERENCES connections (id),
    issue_id       INTEGER REFERENCES issues (id),
    finding_id     INTEGER REFERENCES findings (id),
    run_id         INTEGER REFERENCES scan_runs (id),
    actor          TEXT,
    field          TEXT,
    old_value      TEXT,
    new_value      TEXT
) STRICT;
CREATE INDEX events_by_issue ON events (issue_id, id);

-- History is evidence: neither events nor findings are ever rewritten away.
CREATE TRIGGER events_are_append_only_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;
CREATE TRIGGER events_are_append_only_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;
CREATE TRIGGER findings_are_never_deleted BEFORE DELETE ON findings
BEGIN
    SELECT RAISE(ABORT, 'findings are never deleted');
END;
