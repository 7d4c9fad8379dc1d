-- The journal, append-only in the database as its hash chain already proves it is: an UPDATE
-- or DELETE of journal is refused, whoever sends it. The ledger only ever inserts entries
-- (crates/yitong-ledger/src/repo.rs); balances and the chain's head live in their own tables
-- (accounts, journal_head), which it updates. The triggers do not replace VerifyJournal: an
-- intruder who can write the database can drop them (DROP TRIGGER), and the hash chain still
-- names what they then altered; the tamper-detection tests do just that. Nothing relies on
-- them for correctness.
--
-- A later migration that rebuilds the journal (as 0009 did) drops these triggers with the old
-- table and must create them again on the new one.
--
-- The SQLite twin of ../postgres/0012_journal_append_only.sql:
-- a trigger is written differently on each database, so each runs its own file at this
-- version. The message is the same on both.
-- SQLite has no TRUNCATE; a DELETE without WHERE fires the DELETE trigger like any other.
CREATE TRIGGER journal_no_update BEFORE UPDATE ON journal
BEGIN
    SELECT RAISE(ABORT, 'journal is append-only: UPDATE refused');
END;
CREATE TRIGGER journal_no_delete BEFORE DELETE ON journal
BEGIN
    SELECT RAISE(ABORT, 'journal is append-only: DELETE refused');
END;
