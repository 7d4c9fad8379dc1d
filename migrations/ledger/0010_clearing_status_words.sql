-- Monthly clearing's states, rebuilt so that they read as words, the names of their wire
-- enums and of their Rust enums' `as_str` (crates/yitong-ledger/src/clearing.rs): a detail's
-- decision 'included' or 'excluded' (ConfirmationStatus; a detail without a row is
-- unconfirmed), an application 'applied', 'cancelled' or 'cleared'
-- (ClearingApplicationStatus), a statement 'issued' or 'confirmed' (StatementStatus), never
-- a bare number. Every other value is copied as it is.
-- Portable SQL: runs unchanged on PostgreSQL and SQLite (table rebuilds, since SQLite cannot
-- change a column's type in place).

CREATE TABLE clearing_confirmations_v10 (
    -- 'YYYY-MM'.
    period             TEXT NOT NULL,
    transfer_id        TEXT NOT NULL,
    settlement_id      TEXT NOT NULL,
    treatment_city     TEXT NOT NULL,
    insured_city       TEXT NOT NULL,
    -- included: cleared in this period; excluded: held out, with a reason, and carried into
    -- the next period when this one closes.
    status             TEXT NOT NULL CHECK (status IN ('included', 'excluded')),
    reason             TEXT NOT NULL,
    total_amount_fen   BIGINT NOT NULL,
    fund_pay_fen       BIGINT NOT NULL,
    account_pay_fen    BIGINT NOT NULL,
    -- 1 for a late row booked into this period from a closed one.
    adjustment         BIGINT NOT NULL,
    confirmed_at_ms    BIGINT NOT NULL,
    confirmed_by       TEXT NOT NULL,
    PRIMARY KEY (period, transfer_id)
);
INSERT INTO clearing_confirmations_v10 (period, transfer_id, settlement_id, treatment_city,
    insured_city, status, reason, total_amount_fen, fund_pay_fen, account_pay_fen, adjustment,
    confirmed_at_ms, confirmed_by)
SELECT period, transfer_id, settlement_id, treatment_city, insured_city,
       CASE status WHEN 2 THEN 'included' WHEN 3 THEN 'excluded' END,
       reason, total_amount_fen, fund_pay_fen, account_pay_fen, adjustment, confirmed_at_ms,
       confirmed_by
  FROM clearing_confirmations;
DROP TABLE clearing_confirmations;
ALTER TABLE clearing_confirmations_v10 RENAME TO clearing_confirmations;
CREATE INDEX clearing_confirmations_by_city ON clearing_confirmations (period, treatment_city);

CREATE TABLE clearing_applications_v10 (
    application_id   TEXT PRIMARY KEY,
    period           TEXT NOT NULL,
    treatment_city   TEXT NOT NULL,
    -- applied: the city's confirmations are frozen; cancelled: withdrawn before the close;
    -- cleared: the period closed with it.
    status           TEXT NOT NULL CHECK (status IN ('applied', 'cancelled', 'cleared')),
    row_count        BIGINT NOT NULL,
    total_amount_fen BIGINT NOT NULL,
    fund_pay_fen     BIGINT NOT NULL,
    account_pay_fen  BIGINT NOT NULL,
    applied_at_ms    BIGINT NOT NULL,
    cancelled_at_ms  BIGINT NOT NULL,
    operator_id      TEXT NOT NULL,
    cancel_reason    TEXT NOT NULL
);
INSERT INTO clearing_applications_v10 (application_id, period, treatment_city, status, row_count,
    total_amount_fen, fund_pay_fen, account_pay_fen, applied_at_ms, cancelled_at_ms, operator_id,
    cancel_reason)
SELECT application_id, period, treatment_city,
       CASE status WHEN 1 THEN 'applied' WHEN 2 THEN 'cancelled' WHEN 3 THEN 'cleared' END,
       row_count, total_amount_fen, fund_pay_fen, account_pay_fen, applied_at_ms, cancelled_at_ms,
       operator_id, cancel_reason
  FROM clearing_applications;
DROP TABLE clearing_applications;
ALTER TABLE clearing_applications_v10 RENAME TO clearing_applications;
CREATE INDEX clearing_applications_by_period ON clearing_applications (period, treatment_city);

CREATE TABLE clearing_statements_v10 (
    period          TEXT NOT NULL,
    city            TEXT NOT NULL,
    -- The ClearingStatement as issued, protobuf in lowercase hex.
    statement       TEXT NOT NULL,
    -- issued: by the close, not yet confirmed; confirmed: by the city's bureau.
    status          TEXT NOT NULL CHECK (status IN ('issued', 'confirmed')),
    confirmed_at_ms BIGINT NOT NULL,
    confirmed_by    TEXT NOT NULL,
    PRIMARY KEY (period, city)
);
INSERT INTO clearing_statements_v10 (period, city, statement, status, confirmed_at_ms,
    confirmed_by)
SELECT period, city, statement,
       CASE status WHEN 1 THEN 'issued' WHEN 2 THEN 'confirmed' END,
       confirmed_at_ms, confirmed_by
  FROM clearing_statements;
DROP TABLE clearing_statements;
ALTER TABLE clearing_statements_v10 RENAME TO clearing_statements;
