-- authkit schema v1 (PostgreSQL). Times are Unix seconds (UTC) as BIGINT so that the same
-- queries and row mapping serve SQLite and PostgreSQL; flags are 0/1 for the same reason.
CREATE TABLE users (
    id             TEXT   PRIMARY KEY,
    email          TEXT   NOT NULL UNIQUE,
    email_verified BIGINT NOT NULL DEFAULT 0 CHECK (email_verified IN (0, 1)),
    password_hash  TEXT,
    mfa_enabled    BIGINT NOT NULL DEFAULT 0 CHECK (mfa_enabled IN (0, 1)),
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

-- Keyed by SHA-256 of the cookie token: the raw token is never stored.
CREATE TABLE sessions (
    id_hash          BYTEA  PRIMARY KEY,
    handle           TEXT   NOT NULL UNIQUE,
    user_id          TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind             TEXT   NOT NULL CHECK (kind IN ('pending', 'full')),
    aal              BIGINT NOT NULL CHECK (aal IN (1, 2)),
    created_at       BIGINT NOT NULL,
    last_seen_at     BIGINT NOT NULL,
    authenticated_at BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    ip               TEXT,
    user_agent       TEXT
);
-- Listing and revoking a user's sessions; expiry sweeps.
CREATE INDEX sessions_by_user ON sessions (user_id, created_at);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

-- Append-only security events (written from the account-lifecycle work on).
CREATE TABLE audit_events (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    TEXT   REFERENCES users (id) ON DELETE SET NULL,
    event_type TEXT   NOT NULL,
    at         BIGINT NOT NULL,
    ip         TEXT,
    user_agent TEXT,
    details    TEXT   NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_by_user ON audit_events (user_id, id);
CREATE INDEX audit_events_by_time ON audit_events (at);
