-- The audit trail, append-only in the database and not by convention alone: an UPDATE or
-- DELETE of audit_trail is refused, whoever sends it, so no statement of any service, tool or
-- hand at a sqlite3 prompt alters or removes a row. Rows are only inserted
-- (crates/yitong-store/src/audit.rs), and nothing prunes the trail: no retention deletes from it.
-- Getting past these triggers takes DROP TRIGGER, a schema change in its own right; whoever
-- can write the database file can of course still rewrite it.
--
-- The SQLite twin of ../postgres/0011_audit_trail_append_only.sql:
-- a trigger is written differently on each database, so each runs its own file at this
-- version. The message is the same on both.
-- SQLite has no TRUNCATE; a DELETE without WHERE fires the DELETE trigger like any other.
CREATE TRIGGER audit_trail_no_update BEFORE UPDATE ON audit_trail
BEGIN
    SELECT RAISE(ABORT, 'audit_trail is append-only: UPDATE refused');
END;
CREATE TRIGGER audit_trail_no_delete BEFORE DELETE ON audit_trail
BEGIN
    SELECT RAISE(ABORT, 'audit_trail is append-only: DELETE refused');
END;
