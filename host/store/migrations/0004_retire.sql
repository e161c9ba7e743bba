-- Keelson store, schema version 4: deleting (retiring) connections, and web sessions that
-- survive a restart of `keelson serve`.
--
-- A connection is never removed: its runs, findings and the append-only events point at it, and
-- history is evidence. Deleting one retires it instead: `retired_at` is set, its sealed secrets
-- are overwritten and dropped, and the row is renamed `NAME#retired-ID`. The rename keeps
-- `UNIQUE (name)` meaning "one live connection per name" without rebuilding the table (SQLite
-- cannot drop a column constraint in place): the name is free for a new connection at once, and
-- `#` is not allowed in connection names, so no live connection can collide with a retired one.
-- Every lookup by name also checks `retired_at IS NULL`; lists, scans and the queue skip retired
-- connections and their findings.
ALTER TABLE connections ADD COLUMN retired_at TEXT;

-- A signed-in browser session. Only the SHA-256 of the cookie value is kept, so a copy of the
-- database signs nobody in. A session ends at `expires_at`, after the server's idle time since
-- `last_used`, when it is signed out, or as soon as its token is revoked (lookups join
-- `api_tokens` and require `revoked_at IS NULL`). `csrf` is the token the pages echo in
-- `X-CSRF-Token`; alone it grants nothing.
CREATE TABLE web_sessions (
    id             INTEGER PRIMARY KEY,
    cookie_sha256  TEXT NOT NULL UNIQUE,
    token_id       INTEGER NOT NULL REFERENCES api_tokens (id),
    csrf           TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    last_used      TEXT NOT NULL,
    expires_at     TEXT NOT NULL
) STRICT;
CREATE INDEX web_sessions_by_expiry ON web_sessions (expires_at);
