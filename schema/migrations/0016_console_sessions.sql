-- The console's sessions: signing in with an API key makes one, whose random token the browser
-- keeps in an HttpOnly cookie; Postgres keeps only its SHA-256 (as for keys), with the key it
-- acts as and the token its forms must carry against cross-site requests. A session ends at
-- `expires_at`, at sign-out, or when its key is revoked or expires.
CREATE TABLE console_sessions (
    token_hash bytea       PRIMARY KEY,
    key_id     bigint      NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    csrf       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
