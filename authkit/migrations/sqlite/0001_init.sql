-- authkit schema v1 (SQLite). Times are Unix seconds (UTC); flags are 0/1.
CREATE TABLE users (
    id             TEXT    PRIMARY KEY NOT NULL,
    email          TEXT    NOT NULL UNIQUE,
    email_verified INTEGER NOT NULL DEFAULT 0 CHECK (email_verified IN (0, 1)),
    password_hash  TEXT,
    mfa_enabled    INTEGER NOT NULL DEFAULT 0 CHECK (mfa_enabled IN (0, 1)),
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

-- Keyed by SHA-256 of the cookie token: the raw token is never stored.
CREATE TABLE sessions (
    id_hash          BLOB    PRIMARY KEY NOT NULL,
    handle           TEXT    NOT NULL UNIQUE,
    user_id          TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind             TEXT    NOT NULL CHECK (kind IN ('pending', 'full')),
    aal              INTEGER NOT NULL CHECK (aal IN (1, 2)),
    created_at       INTEGER NOT NULL,
    last_seen_at     INTEGER NOT NULL,
    authenticated_at INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    ip               TEXT,
    user_agent       TEXT
);
-- Listing and revoking a user's sessions; expiry sweeps.
CREATE INDEX sessions_by_user ON sessions (user_id, created_at);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

-- Append-only security events (written from the account-lifecycle work on).
CREATE TABLE audit_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    TEXT    REFERENCES users (id) ON DELETE SET NULL,
    event_type TEXT    NOT NULL,
    at         INTEGER NOT NULL,
    ip         TEXT,
    user_agent TEXT,
    details    TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_by_user ON audit_events (user_id, id);
CREATE INDEX audit_events_by_time ON audit_events (at);
