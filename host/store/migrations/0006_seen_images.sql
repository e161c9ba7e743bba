-- Keelson store, schema version 6: what a run saw of the images, kept like `run_seen` keeps the
-- findings (one row per written page, ids sorted and delta-encoded as LEB128 varints), so an
-- unchanged image's row is not written by a rescan either. A complete run marks removed the
-- images of its covered registries that no batch names. Deleted when the run finishes.
CREATE TABLE run_seen_images (
    run_id     INTEGER NOT NULL REFERENCES scan_runs (id),
    batch      INTEGER NOT NULL,
    image_ids  BLOB NOT NULL,
    PRIMARY KEY (run_id, batch)
) STRICT;
