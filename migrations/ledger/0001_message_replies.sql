-- The first reply to every state-changing message id, so that a replay returns it and the
-- same id with other content is refused. Portable SQL: PostgreSQL and SQLite alike.
CREATE TABLE message_replies (
    message_id     TEXT PRIMARY KEY,
    rpc            TEXT NOT NULL,
    -- SHA-256 (hex) of the request's protobuf encoding.
    request_digest TEXT NOT NULL,
    -- The reply's protobuf encoding, base64.
    reply          TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL
);
