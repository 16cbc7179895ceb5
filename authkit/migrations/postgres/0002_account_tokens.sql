-- Single-use account tokens (e-mail verification, password reset, verify-first sign-ups).
-- Keyed by SHA-256 of the token sent by mail: the raw token is never stored.
CREATE TABLE account_tokens (
    token_hash    BYTEA   PRIMARY KEY,
    purpose       TEXT    NOT NULL
                  CHECK (purpose IN ('registration', 'verify_email', 'reset_password')),
    user_id       TEXT    REFERENCES users (id) ON DELETE CASCADE,
    email         TEXT    NOT NULL,
    password_hash TEXT,
    created_at    BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL
);
-- A reset deletes the user's other reset tokens; resend finds the newest registration.
CREATE INDEX account_tokens_by_user ON account_tokens (user_id, purpose);
CREATE INDEX account_tokens_by_email ON account_tokens (email, purpose, created_at);
CREATE INDEX account_tokens_by_expiry ON account_tokens (expires_at);
