-- Keelson store, schema version 7: per-scope coverage, held runs and their acceptance.
--
-- A run now records how completely it read each scope (`coverage`, JSON: the registry listing,
-- the findings listing, and each registry with the reason it was not read completely). A run
-- that would resolve a sudden drop of findings ends `held` with what it would have done
-- (`held`, JSON) until an operator accepts it (`accepted_at`, `accepted_by`).
--
-- `status` gains `held`. SQLite cannot change a CHECK constraint in place, so `scan_runs` is
-- rebuilt: create the new table, copy, drop the old one, rename the new one to the old name
-- (the order SQLite documents, so the other tables' `REFERENCES scan_runs` keep pointing at it).
-- The migration runs with foreign keys off and checks them before it commits (see migrate.rs).
CREATE TABLE scan_runs_v7 (
    id                  INTEGER PRIMARY KEY,
    connection_id       INTEGER NOT NULL REFERENCES connections (id),
    trigger             TEXT NOT NULL,
    requested_scope     TEXT NOT NULL CHECK (json_valid(requested_scope)),
    covered_registries  TEXT CHECK (covered_registries IS NULL OR json_valid(covered_registries)),
    status              TEXT NOT NULL CHECK (status IN
                            ('running', 'complete', 'partial', 'held', 'failed', 'cancelled', 'interrupted')),
    owner               TEXT,
    started_at          TEXT NOT NULL,
    finished_at         TEXT,
    images_seen         INTEGER NOT NULL DEFAULT 0,
    findings_new        INTEGER NOT NULL DEFAULT 0,
    findings_seen       INTEGER NOT NULL DEFAULT 0,
    findings_reopened   INTEGER NOT NULL DEFAULT 0,
    findings_updated    INTEGER NOT NULL DEFAULT 0,
    findings_resolved   INTEGER NOT NULL DEFAULT 0,
    error               TEXT,
    coverage            TEXT CHECK (coverage IS NULL OR json_valid(coverage)),
    held                TEXT CHECK (held IS NULL OR json_valid(held)),
    accepted_at         TEXT,
    accepted_by         TEXT
) STRICT;
INSERT INTO scan_runs_v7 (id, connection_id, trigger, requested_scope, covered_registries, status, owner,
    started_at, finished_at, images_seen, findings_new, findings_seen, findings_reopened, findings_updated,
    findings_resolved, error)
SELECT id, connection_id, trigger, requested_scope, covered_registries, status, owner,
    started_at, finished_at, images_seen, findings_new, findings_seen, findings_reopened, findings_updated,
    findings_resolved, error
FROM scan_runs;
DROP TABLE scan_runs;
ALTER TABLE scan_runs_v7 RENAME TO scan_runs;
CREATE UNIQUE INDEX scan_runs_one_running_per_connection ON scan_runs (connection_id) WHERE status = 'running';
CREATE INDEX scan_runs_by_connection ON scan_runs (connection_id, id);

-- What a held run would resolve or mark removed, kept until it is accepted: one row per kind,
-- ids sorted and delta-encoded as LEB128 varints (as in `run_seen`).
CREATE TABLE run_held (
    run_id  INTEGER NOT NULL REFERENCES scan_runs (id),
    kind    TEXT NOT NULL CHECK (kind IN ('findings', 'images', 'repositories', 'registries')),
    ids     BLOB NOT NULL,
    PRIMARY KEY (run_id, kind)
) STRICT;
