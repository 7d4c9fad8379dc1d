-- Pending transfer ids voided before the ledger ever saw them booked. A treatment city voids a
-- settlement it never recorded; when the link to the clearing house was cut, its booking of the
-- same transfer can still be on the way and arrive after the void. The ledger remembers the
-- void here, in the transaction that answers it, and refuses a later booking of the id, so no
-- pending transfer is left that nothing will post or void. (The journal holds only what was
-- booked, so the memory of a void without a booking lives beside it.)
-- Portable SQL: runs unchanged on PostgreSQL and SQLite.
CREATE TABLE voided_before_booked (
    transfer_id  TEXT PRIMARY KEY,
    -- The VoidPendingTransfers message id and reason that voided it.
    message_id   TEXT NOT NULL,
    reason       TEXT NOT NULL,
    voided_at_ms BIGINT NOT NULL
);
