-- The console's sessions: a browser's cookie names one, and the session
-- names the API key it was opened with (by hash), so revoking the key ends
-- its sessions. Only hashes of the cookie's token are stored.
CREATE TABLE ui_sessions (
    token_hash  TEXT PRIMARY KEY,
    key_hash    TEXT NOT NULL,
    key_name    TEXT NOT NULL,
    csrf        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX ui_sessions_expiry ON ui_sessions(expires_at);
