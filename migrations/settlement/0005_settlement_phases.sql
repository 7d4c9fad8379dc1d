-- The treatment city's settlements, rebuilt so the protocol reads in words: a settlement's
-- kind and phase are stored as the names the code and the docs use ('pending', 'recorded',
-- 'completed', 'voiding', 'voided'), never as bare numbers. Two things are new:
--
-- * the phase 'voiding': a void is decided here first (pending -> voiding, in one local
--   transaction that a racing record cannot also win), and only then carried to the insured
--   city and the ledger; the intent becomes 'voided' once both have confirmed. Before, the
--   peers were voided first and a record racing the void could still win locally.
-- * the recovery sweep's schedule: every row in doubt has its next attempt, pushed back after
--   each failure, so rows that keep failing cannot starve the rest; the void reason is
--   decided once, so every void of a settlement id carries the same content whoever sends it.
-- Portable SQL: runs unchanged on PostgreSQL and SQLite (a table rebuild, since SQLite cannot
-- change a CHECK constraint in place).
CREATE TABLE settlements_v5 (
    settlement_id          TEXT PRIMARY KEY,
    kind                   TEXT NOT NULL CHECK (kind IN ('settlement', 'cancellation')),
    original_settlement_id TEXT,
    visit_id               TEXT NOT NULL,
    institution_code       TEXT NOT NULL,
    insured_city           TEXT NOT NULL,
    person_no              TEXT NOT NULL,
    message_id             TEXT NOT NULL UNIQUE,
    -- pending: intent written, outcome undecided; recorded: binding, completion owed;
    -- completed: posted at the insured city and in the ledger; voiding: decided void, the
    -- peers' voids owed; voided: voided at the insured city and in the ledger.
    phase                  TEXT NOT NULL
                           CHECK (phase IN ('pending', 'recorded', 'completed', 'voiding', 'voided')),
    reserve_request        TEXT NOT NULL,
    transfer               TEXT NOT NULL DEFAULT '',
    settlement_date        TEXT NOT NULL,
    total_fen              BIGINT NOT NULL DEFAULT 0,
    fund_pay_fen           BIGINT NOT NULL DEFAULT 0,
    account_pay_fen        BIGINT NOT NULL DEFAULT 0,
    record                 TEXT NOT NULL DEFAULT '',
    cancelled_by           TEXT,
    created_at_ms          BIGINT NOT NULL,
    settled_at_ms          BIGINT,
    completed_at_ms        BIGINT,
    last_error             TEXT NOT NULL DEFAULT '',
    -- Why the intent was voided, decided once with the move to 'voiding'.
    void_reason            TEXT NOT NULL DEFAULT '',
    -- The recovery sweep's failed attempts at this row, and when it may try next.
    attempts               BIGINT NOT NULL DEFAULT 0,
    next_attempt_at_ms     BIGINT NOT NULL DEFAULT 0
);
INSERT INTO settlements_v5 (settlement_id, kind, original_settlement_id, visit_id, institution_code,
    insured_city, person_no, message_id, phase, reserve_request, transfer, settlement_date, total_fen,
    fund_pay_fen, account_pay_fen, record, cancelled_by, created_at_ms, settled_at_ms, completed_at_ms,
    last_error, void_reason, attempts, next_attempt_at_ms)
SELECT settlement_id,
       CASE kind WHEN 1 THEN 'settlement' ELSE 'cancellation' END,
       original_settlement_id, visit_id, institution_code, insured_city, person_no, message_id,
       CASE phase WHEN 1 THEN 'pending' WHEN 2 THEN 'recorded' WHEN 3 THEN 'completed' ELSE 'voided' END,
       reserve_request, transfer, settlement_date, total_fen, fund_pay_fen, account_pay_fen, record,
       cancelled_by, created_at_ms, settled_at_ms, completed_at_ms, last_error, '', 0, created_at_ms
  FROM settlements;
DROP TABLE settlements;
ALTER TABLE settlements_v5 RENAME TO settlements;
CREATE INDEX settlements_by_phase ON settlements (phase, next_attempt_at_ms);
CREATE INDEX settlements_by_visit ON settlements (visit_id);
CREATE INDEX settlements_by_institution ON settlements (institution_code, settlement_date, settled_at_ms);
