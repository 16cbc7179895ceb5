-- Second factors: one TOTP authenticator per user and single-use backup codes.
-- The TOTP secret is sealed (XChaCha20-Poly1305, `v1.<kid>.<base64url>`) under the encryption
-- key ring, bound to the user; backup codes are stored only as peppered HMACs.
CREATE TABLE mfa_totp (
    user_id      TEXT   PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret       TEXT   NOT NULL,
    algorithm    TEXT   NOT NULL CHECK (algorithm IN ('SHA1', 'SHA256', 'SHA512')),
    digits       BIGINT NOT NULL CHECK (digits BETWEEN 6 AND 8),
    period       BIGINT NOT NULL CHECK (period > 0),
    -- 0 while enrolment waits for its first code; MFA is active only once confirmed.
    confirmed    BIGINT NOT NULL DEFAULT 0 CHECK (confirmed IN (0, 1)),
    -- The last accepted time step: a code is accepted only for a strictly greater step.
    last_step    BIGINT,
    -- Consecutive failed code attempts and when the last began: the account's MFA lockout,
    -- shared by every instance and kept across restarts.
    failed_attempts BIGINT NOT NULL DEFAULT 0,
    last_failure_at BIGINT,
    created_at   BIGINT NOT NULL,
    confirmed_at BIGINT
);

CREATE TABLE mfa_backup_codes (
    user_id    TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  BYTEA  NOT NULL,
    -- The pepper key the hash was made with (a retired key ends its codes).
    key_id     TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, code_hash)
);

-- When the session's user last proved the password (NULL: not in this session). Disabling MFA
-- or regenerating backup codes needs a recent password proof, not only a recent code.
ALTER TABLE sessions ADD COLUMN password_verified_at BIGINT;
