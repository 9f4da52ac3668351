-- A key may have a lifetime: it stops working at `expires_at` (none: it works until revoked).
ALTER TABLE api_keys ADD COLUMN expires_at timestamptz;
