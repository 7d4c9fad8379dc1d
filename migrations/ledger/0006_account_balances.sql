-- Each account's four sums, kept by the appender in the same write transaction as the entries
-- that move them (crates/yitong-ledger/src/repo.rs, add_to_balances), so that reading a balance
-- reads one row instead of summing the journal. VerifyJournal sums the journal again and
-- compares (the pairing of the two).
ALTER TABLE accounts ADD COLUMN debits_pending_fen BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN debits_posted_fen BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN credits_pending_fen BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN credits_posted_fen BIGINT NOT NULL DEFAULT 0;

-- The sums of what the journal already holds.
UPDATE accounts SET
    debits_pending_fen = COALESCE((SELECT SUM(j.debit_pending_fen) FROM journal j
        WHERE j.debit_account_id = accounts.id), 0),
    debits_posted_fen = COALESCE((SELECT SUM(j.debit_posted_fen) FROM journal j
        WHERE j.debit_account_id = accounts.id), 0),
    credits_pending_fen = COALESCE((SELECT SUM(j.credit_pending_fen) FROM journal j
        WHERE j.credit_account_id = accounts.id), 0),
    credits_posted_fen = COALESCE((SELECT SUM(j.credit_posted_fen) FROM journal j
        WHERE j.credit_account_id = accounts.id), 0);
