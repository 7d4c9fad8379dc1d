-- The ledger core: the chart of accounts, the hash-chained journal of every transfer event, and
-- the head row that serialises appends. Portable SQL: PostgreSQL and SQLite alike (money in
-- BIGINT fen, dates as 'YYYY-MM-DD' text, instants as BIGINT milliseconds, hashes as lowercase
-- hex); no advisory locks, triggers or notifications, so it moves to a PostgreSQL-compatible
-- distributed engine unchanged.

-- Every account of the chart, opened at start-up for every enabled city and ordered pair of
-- enabled cities (crates/yitong-ledger/src/account.rs). Balances are never stored here: they are
-- sums over the journal.
CREATE TABLE accounts (
    -- "<city>.<kind>" or "<insured>-><treatment>.obligation".
    id                TEXT PRIMARY KEY,
    kind              TEXT NOT NULL CHECK (kind IN ('bank', 'fund', 'advances', 'pool', 'obligation')),
    -- The owning city; for an obligation, the insured city that owes.
    city              TEXT NOT NULL,
    -- For an obligation, the treatment city that is owed; '' otherwise.
    counterparty_city TEXT NOT NULL,
    opened_at_ms      BIGINT NOT NULL
);
CREATE INDEX accounts_by_city ON accounts (city);

-- One row per event of a transfer (created, posted, voided, expired), numbered from 1 without
-- gaps. Rows are only ever inserted. Each row carries the whole transfer as created, so that
-- reconciliation and clearing read one row and never join. The hash of each row covers every
-- other column and the previous row's hash; the encoding is written down in
-- crates/yitong-ledger/src/journal.rs.
CREATE TABLE journal (
    sequence                BIGINT PRIMARY KEY,
    -- 1 created, 2 posted, 3 voided, 4 expired.
    event                   BIGINT NOT NULL,
    -- 0 for the creation, 1 for the one resolution of a pending transfer.
    stage                   BIGINT NOT NULL,
    transfer_id             TEXT NOT NULL,
    debit_account_id        TEXT NOT NULL,
    credit_account_id       TEXT NOT NULL,
    amount_fen              BIGINT NOT NULL,
    -- The TransferCode number: 1 deposit, 2 withdrawal, 3 settlement, 4 cancellation, 5-7 clearing.
    code                    BIGINT NOT NULL,
    -- Bit 1 linked, bit 2 pending, as created.
    flags                   BIGINT NOT NULL,
    pending_timeout_seconds BIGINT NOT NULL,
    operator_id             TEXT NOT NULL,
    -- The settlement record of a SETTLEMENT or CANCELLATION; '' and 0 for the other codes.
    -- national: setl_id, msgid, mdtrtarea_admvs, insuplc_admdvs, fixmedins_code, mdtrt_id,
    -- psn_no, insutype, clr_type.
    settlement_id           TEXT NOT NULL,
    settlement_message_id   TEXT NOT NULL,
    treatment_city          TEXT NOT NULL,
    insured_city            TEXT NOT NULL,
    institution_code        TEXT NOT NULL,
    visit_id                TEXT NOT NULL,
    person_no               TEXT NOT NULL,
    insurance_type          BIGINT NOT NULL,
    clearing_type           BIGINT NOT NULL,
    settlement_date         TEXT NOT NULL,
    -- Negative for a cancellation. national: medfee_sumamt, fund_pay_sumamt, acct_pay, psn_cash_pay.
    total_amount_fen        BIGINT NOT NULL,
    fund_pay_fen            BIGINT NOT NULL,
    account_pay_fen         BIGINT NOT NULL,
    cash_pay_fen            BIGINT NOT NULL,
    cancellation            BIGINT NOT NULL,
    original_settlement_id  TEXT NOT NULL,
    -- The day the transfer counts on: its settlement date, else the China date of creation.
    business_date           TEXT NOT NULL,
    -- 'YYYY-MM' of the clearing period it counts in; '' for codes that are not cleared.
    clearing_period         TEXT NOT NULL,
    created_at_ms           BIGINT NOT NULL,
    -- When a pending transfer expires; 0 for one created posted.
    expires_at_ms           BIGINT NOT NULL,
    recorded_at_ms          BIGINT NOT NULL,
    -- The msgid of the request behind this event; '' for an expiry.
    message_id              TEXT NOT NULL,
    -- Why a transfer was voided; '' otherwise.
    reason                  TEXT NOT NULL,
    -- What this event adds to the pending and posted sums of each side; each row balances.
    debit_pending_fen       BIGINT NOT NULL,
    debit_posted_fen        BIGINT NOT NULL,
    credit_pending_fen      BIGINT NOT NULL,
    credit_posted_fen       BIGINT NOT NULL,
    previous_hash           TEXT NOT NULL,
    hash                    TEXT NOT NULL
);
-- A transfer is created once and resolved at most once, whatever a faulty writer attempts.
CREATE UNIQUE INDEX journal_by_transfer ON journal (transfer_id, stage);
CREATE INDEX journal_by_debit_account ON journal (debit_account_id, sequence);
CREATE INDEX journal_by_credit_account ON journal (credit_account_id, sequence);
CREATE INDEX journal_by_settlement ON journal (settlement_id);
CREATE INDEX journal_by_original_settlement ON journal (original_settlement_id);
CREATE INDEX journal_by_expiry ON journal (expires_at_ms);
CREATE INDEX journal_by_business_date ON journal (business_date);

-- The head of the chain, one row. Every append updates it in the same write transaction, first
-- thing, so concurrent appends from any number of ledger processes queue on its row lock (on
-- SQLite, on the write lock BEGIN IMMEDIATE takes) and the chain stays linear. VerifyJournal
-- checks it against the last entry.
CREATE TABLE journal_head (
    id                 BIGINT PRIMARY KEY CHECK (id = 1),
    -- Sequence number of the latest entry; 0 while the journal is empty.
    sequence           BIGINT NOT NULL,
    -- Hash of the latest entry; 64 zeros while the journal is empty.
    hash               TEXT NOT NULL,
    recorded_at_ms     BIGINT NOT NULL,
    -- Every pending transfer expiring at or before this instant is resolved; the next expiry
    -- sweep looks only after it.
    expired_through_ms BIGINT NOT NULL
);
INSERT INTO journal_head (id, sequence, hash, recorded_at_ms, expired_through_ms)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000', 0, 0);
