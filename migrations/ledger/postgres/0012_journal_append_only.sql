-- The journal, append-only in the database as its hash chain already proves it is: an UPDATE,
-- DELETE or TRUNCATE of journal is refused, whoever sends it. The ledger only ever inserts
-- entries (crates/yitong-ledger/src/repo.rs); balances and the chain's head live in their own
-- tables (accounts, journal_head), which it updates. The triggers do not replace VerifyJournal:
-- an intruder with the table owner's rights can disable them (ALTER TABLE ... DISABLE TRIGGER),
-- and the hash chain still names what they then altered; the tamper-detection tests do just
-- that. Nothing relies on them for correctness, so an engine without triggers loses only this
-- guard.
--
-- A later migration that rebuilds the journal (as 0009 did) drops these triggers with the old
-- table and must create them again on the new one.
--
-- The PostgreSQL twin of ../sqlite/0012_journal_append_only.sql:
-- a trigger is written differently on each database, so each runs its own file at this
-- version. The message is the same on both. refuse_append_only_change() is 0011's.
CREATE TRIGGER journal_append_only
    BEFORE UPDATE OR DELETE ON journal
    FOR EACH ROW EXECUTE FUNCTION refuse_append_only_change();
-- TRUNCATE removes rows without firing row triggers, so it has a statement trigger of its own.
CREATE TRIGGER journal_never_truncated
    BEFORE TRUNCATE ON journal
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_append_only_change();
