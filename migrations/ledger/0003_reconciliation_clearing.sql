-- Detail reconciliation runs (national 3202) and their checkpoints, so that a run of any length
-- can be resumed after its stream breaks. The journal is never touched: a run only reads it, up
-- to the journal sequence number it started at, so a resumed run compares against the very same
-- ledger. Portable SQL: PostgreSQL and SQLite alike.

-- A detail run walks one day's (or range's) settlement rows in settlement-id order, a page at a
-- time: this index serves the date and the order together for a one-day run.
CREATE INDEX journal_by_settlement_date ON journal (settlement_date, settlement_id, sequence);

-- One row per run, keyed by the submitter's message id (national msgid).
CREATE TABLE reconciliation_runs (
    message_id        TEXT PRIMARY KEY,
    -- SHA-256 (hex) of the header's scope, filters and range: a resume must ask the same.
    request_digest    TEXT NOT NULL,
    -- The journal sequence number the run reads up to, fixed when it opened.
    snapshot_sequence BIGINT NOT NULL,
    operator_id       TEXT NOT NULL,
    started_at_ms     BIGINT NOT NULL,
    -- The final ReconcileDetailsSummary, protobuf in lowercase hex; '' while the run is unfinished.
    summary           TEXT NOT NULL,
    finished_at_ms    BIGINT NOT NULL
);

-- One row per checkpoint sent: where the comparison stood and what it had counted, so that a
-- resume from any checkpoint the client received continues from exactly there.
CREATE TABLE reconciliation_checkpoints (
    message_id            TEXT NOT NULL,
    -- 1, 2, ... within the run.
    number                BIGINT NOT NULL,
    -- The last submitted settlement id compared; every ledger row up to it is reported.
    last_settlement_id    TEXT NOT NULL,
    rows_received         BIGINT NOT NULL,
    rows_in_ledger        BIGINT NOT NULL,
    matched               BIGINT NOT NULL,
    missing_in_ledger     BIGINT NOT NULL,
    missing_in_submission BIGINT NOT NULL,
    duplicate             BIGINT NOT NULL,
    amount_mismatch       BIGINT NOT NULL,
    timing                BIGINT NOT NULL,
    created_at_ms         BIGINT NOT NULL,
    PRIMARY KEY (message_id, number)
);

-- Monthly clearing (national 3260-3262, 3203/3204). The journal stays append-only: clearing's
-- state is here, and its money moves only as CLEARING_* transfers booked by the close.

-- Clearing details of a period are found by their period and treatment city.
CREATE INDEX journal_by_clearing_period ON journal (clearing_period, treatment_city);

-- A treatment city's decision on one row of a period: included or excluded. A row without a
-- decision is unconfirmed; a rollback removes the decision. The row's figures are copied from
-- its journal entry so that an application and the close sum them without a join.
CREATE TABLE clearing_confirmations (
    -- 'YYYY-MM'.
    period             TEXT NOT NULL,
    transfer_id        TEXT NOT NULL,
    settlement_id      TEXT NOT NULL,
    treatment_city     TEXT NOT NULL,
    insured_city       TEXT NOT NULL,
    -- 2 included, 3 excluded (the ConfirmationStatus numbers).
    status             BIGINT NOT NULL,
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
CREATE INDEX clearing_confirmations_by_city ON clearing_confirmations (period, treatment_city);

-- Rows excluded when their period closed come back in the next one.
CREATE TABLE clearing_carryovers (
    period      TEXT NOT NULL,
    transfer_id TEXT NOT NULL,
    PRIMARY KEY (period, transfer_id)
);

-- Applications for clearing (3203), withdrawn by 3204.
CREATE TABLE clearing_applications (
    application_id   TEXT PRIMARY KEY,
    period           TEXT NOT NULL,
    treatment_city   TEXT NOT NULL,
    -- 1 applied, 2 cancelled, 3 cleared (the ClearingApplicationStatus numbers).
    status           BIGINT NOT NULL,
    row_count        BIGINT NOT NULL,
    total_amount_fen BIGINT NOT NULL,
    fund_pay_fen     BIGINT NOT NULL,
    account_pay_fen  BIGINT NOT NULL,
    applied_at_ms    BIGINT NOT NULL,
    cancelled_at_ms  BIGINT NOT NULL,
    operator_id      TEXT NOT NULL,
    cancel_reason    TEXT NOT NULL
);
CREATE INDEX clearing_applications_by_period ON clearing_applications (period, treatment_city);

-- Closed periods. A row here freezes its month: nothing of it is confirmed, applied or cleared
-- again, and later rows of the month count in the next open one.
CREATE TABLE clearing_periods (
    period            TEXT PRIMARY KEY,
    closed_at_ms      BIGINT NOT NULL,
    operator_id       TEXT NOT NULL,
    journal_head_hash TEXT NOT NULL
);

-- One statement per city and closed period, issued by the close and confirmed by the city.
CREATE TABLE clearing_statements (
    period          TEXT NOT NULL,
    city            TEXT NOT NULL,
    -- The ClearingStatement as issued, protobuf in lowercase hex.
    statement       TEXT NOT NULL,
    -- 1 issued, 2 confirmed (the StatementStatus numbers).
    status          BIGINT NOT NULL,
    confirmed_at_ms BIGINT NOT NULL,
    confirmed_by    TEXT NOT NULL,
    PRIMARY KEY (period, city)
);
