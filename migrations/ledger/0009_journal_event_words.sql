-- The journal, rebuilt so that each entry's event reads as its word ('created', 'posted',
-- 'voided', 'expired': `Event::as_str` in crates/yitong-ledger/src/journal.rs), never a bare
-- number. Only the column's type changes: every other value is copied as it is.
--
-- The hash chain is unchanged. The canonical encoding the hashes cover keeps the event's number
-- (created 1, posted 2, voided 3, expired 4, the values this column held until now), mapped
-- from the word, so every entry written before this migration verifies after it, and every
-- entry written after it hashes as it would have before. A number none of these stops the
-- migration: no ledger wrote one, so its row was altered (VerifyJournal names it).
--
-- Portable SQL: runs unchanged on PostgreSQL and SQLite (a table rebuild, since SQLite cannot
-- change a column's type in place). It copies the whole journal once, indexes included: on a
-- journal of millions of entries, expect the upgrade to take as long as a bulk load of them.
CREATE TABLE journal_v9 (
    sequence                BIGINT PRIMARY KEY,
    -- What happened to the transfer; hashed as its number (see above).
    event                   TEXT NOT NULL CHECK (event IN ('created', 'posted', 'voided', 'expired')),
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
INSERT INTO journal_v9 (sequence, event, stage, transfer_id, debit_account_id, credit_account_id,
    amount_fen, code, flags, pending_timeout_seconds, operator_id, settlement_id,
    settlement_message_id, treatment_city, insured_city, institution_code, visit_id, person_no,
    insurance_type, clearing_type, settlement_date, total_amount_fen, fund_pay_fen,
    account_pay_fen, cash_pay_fen, cancellation, original_settlement_id, business_date,
    clearing_period, created_at_ms, expires_at_ms, recorded_at_ms, message_id, reason,
    debit_pending_fen, debit_posted_fen, credit_pending_fen, credit_posted_fen, previous_hash, hash)
SELECT sequence,
       CASE event WHEN 1 THEN 'created' WHEN 2 THEN 'posted' WHEN 3 THEN 'voided' WHEN 4 THEN 'expired' END,
       stage, transfer_id, debit_account_id, credit_account_id, amount_fen, code, flags,
       pending_timeout_seconds, operator_id, settlement_id, settlement_message_id, treatment_city,
       insured_city, institution_code, visit_id, person_no, insurance_type, clearing_type,
       settlement_date, total_amount_fen, fund_pay_fen, account_pay_fen, cash_pay_fen,
       cancellation, original_settlement_id, business_date, clearing_period, created_at_ms,
       expires_at_ms, recorded_at_ms, message_id, reason, debit_pending_fen, debit_posted_fen,
       credit_pending_fen, credit_posted_fen, previous_hash, hash
  FROM journal;
DROP TABLE journal;
ALTER TABLE journal_v9 RENAME TO journal;
-- Every index the journal had (0002, 0003, 0004), as it was.
-- A transfer is created once and resolved at most once, whatever a faulty writer attempts.
CREATE UNIQUE INDEX journal_by_transfer ON journal (transfer_id, stage);
CREATE INDEX journal_by_debit_account ON journal (debit_account_id, sequence);
CREATE INDEX journal_by_credit_account ON journal (credit_account_id, sequence);
CREATE INDEX journal_by_settlement ON journal (settlement_id);
CREATE INDEX journal_by_original_settlement ON journal (original_settlement_id);
CREATE INDEX journal_by_expiry ON journal (expires_at_ms);
CREATE INDEX journal_by_business_date ON journal (business_date);
CREATE INDEX journal_by_settlement_date ON journal (settlement_date, settlement_id COLLATE "binary", sequence);
CREATE INDEX journal_by_clearing_period ON journal (clearing_period, treatment_city);
