-- The audit trail: one row for every state change a caller made, written in the transaction
-- that made it, so a change without its row (or a row without its change) cannot be
-- committed. A refused request rolls back and leaves none; a replay changes nothing and adds
-- none. The services only ever insert here.
CREATE TABLE audit_trail (
    -- UUIDv7: ordered by time of recording.
    audit_id       TEXT PRIMARY KEY,
    recorded_at_ms BIGINT NOT NULL,
    -- The caller's canonical name: institution:H37030000001, bureau:370100, node:370300, or
    -- system for this service's own sweeps.
    actor          TEXT NOT NULL,
    -- The caller's city ('' for the clearing house, operators and the system): whose bureau
    -- may read the row at the clearing house.
    actor_city     TEXT NOT NULL,
    rpc            TEXT NOT NULL,
    -- The caller's message id (the national msgid) of the change.
    message_id     TEXT NOT NULL
);
CREATE INDEX audit_trail_by_city ON audit_trail (actor_city, audit_id);
