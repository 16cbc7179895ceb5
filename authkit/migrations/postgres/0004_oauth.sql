-- OAuth / OIDC sign-in: single-use transactions in flight and linked provider accounts.

-- One row per sign-in sent to a provider, taken (deleted) by the first callback presenting its
-- `state`. Keyed by SHA-256 of the state: the state itself is never stored. `sealed` holds the
-- PKCE verifier and the OIDC nonce, sealed (XChaCha20-Poly1305, `v1.<kid>.<base64url>`) under
-- the encryption key ring. An explicit link also records the user and the hash of the session
-- that started it (both or neither).
CREATE TABLE oauth_transactions (
    state_hash        BYTEA   PRIMARY KEY,
    provider          TEXT    NOT NULL,
    browser_hash      BYTEA   NOT NULL,
    sealed            TEXT    NOT NULL,
    redirect_to       TEXT    NOT NULL,
    link_user_id      TEXT    REFERENCES users (id) ON DELETE CASCADE,
    link_session_hash BYTEA,
    created_at        BIGINT  NOT NULL,
    expires_at        BIGINT  NOT NULL,
    CHECK ((link_user_id IS NULL) = (link_session_hash IS NULL))
);
-- Expiry sweeps.
CREATE INDEX oauth_transactions_by_expiry ON oauth_transactions (expires_at);

-- Provider accounts linked to users, one per (issuer, subject). The provider's access and
-- refresh tokens are sealed (XChaCha20-Poly1305 envelopes `v1.<kid>.<base64url>`) under the
-- encryption key ring, bound to the user and the account; never plain text.
CREATE TABLE oauth_accounts (
    id               TEXT    PRIMARY KEY,
    user_id          TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider         TEXT    NOT NULL,
    issuer           TEXT    NOT NULL,
    subject          TEXT    NOT NULL,
    email            TEXT,
    access_token     TEXT,
    refresh_token    TEXT,
    token_expires_at BIGINT,
    -- The granted scopes, space-separated.
    scopes           TEXT,
    created_at       BIGINT  NOT NULL,
    last_used_at     BIGINT,
    UNIQUE (issuer, subject)
);
-- Listing a user's accounts (oldest first) and the last-sign-in-method check of an unlink.
CREATE INDEX oauth_accounts_by_user ON oauth_accounts (user_id, created_at);
