-- The audit trail, append-only in the database and not by convention alone: an UPDATE, DELETE
-- or TRUNCATE of audit_trail is refused, whoever sends it, so no statement of any service, tool
-- or hand at a psql prompt alters or removes a row. Rows are only inserted
-- (crates/yitong-store/src/audit.rs), and nothing prunes the trail: no retention deletes from it.
-- Getting past these triggers takes ALTER TABLE ... DISABLE TRIGGER or DROP TRIGGER, which
-- only the table's owner (the role the services migrate as) may run: a schema change in its
-- own right, not a slip of a query.
--
-- The PostgreSQL twin of ../sqlite/0003_audit_trail_append_only.sql:
-- a trigger is written differently on each database, so each runs its own file at this
-- version. The message is the same on both.
CREATE FUNCTION refuse_append_only_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP;
END
$$;
CREATE TRIGGER audit_trail_append_only
    BEFORE UPDATE OR DELETE ON audit_trail
    FOR EACH ROW EXECUTE FUNCTION refuse_append_only_change();
-- TRUNCATE removes rows without firing row triggers, so it has a statement trigger of its own.
CREATE TRIGGER audit_trail_never_truncated
    BEFORE TRUNCATE ON audit_trail
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_append_only_change();
