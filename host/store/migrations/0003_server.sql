-- Keelson store, schema version 3: API tokens for `keelson serve`.
--
-- A token is shown once when created; only its SHA-256 is kept. `role` grants viewer (read),
-- operator (scan, suppress) or admin (configure connections) rights.
CREATE TABLE api_tokens (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    token_sha256  TEXT NOT NULL UNIQUE,
    created_at    TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    revoked_at    TEXT
) STRICT;
