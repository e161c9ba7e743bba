-- Keelson store, schema version 5: bookkeeping that scales with the tenant.
--
-- A source row often yields many findings (one per CVE of an image); its JSON is kept once in
-- `raw_rows` and shared through `findings.raw_id` (rows written before this version keep their
-- copy in `findings.raw`).
CREATE TABLE raw_rows (
    id   INTEGER PRIMARY KEY,
    raw  TEXT NOT NULL
) STRICT;
ALTER TABLE findings ADD COLUMN raw_id INTEGER REFERENCES raw_rows (id);

-- What a run saw, one row per ingested page: the page's finding ids, sorted and delta-encoded as
-- LEB128 varints. A complete run resolves the open findings of its covered registries that no
-- batch names, so an unchanged finding costs no write of its row. Deleted when the run finishes.
CREATE TABLE run_seen (
    run_id       INTEGER NOT NULL REFERENCES scan_runs (id),
    batch        INTEGER NOT NULL,
    finding_ids  BLOB NOT NULL,
    PRIMARY KEY (run_id, batch)
) STRICT;

-- When a complete run last covered the registry. An open finding of a covered registry was seen
-- by that run (or it would have been resolved), so its last sighting is the later of this and
-- `findings.last_seen` (which moves only when the finding is created, changed or reopened).
ALTER TABLE registries ADD COLUMN last_covered_at TEXT;
ALTER TABLE registries ADD COLUMN last_covered_run_id INTEGER REFERENCES scan_runs (id);
