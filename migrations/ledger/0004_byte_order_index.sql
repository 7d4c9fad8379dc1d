-- Detail reconciliation reads a day's rows in byte order of settlement id. "binary" is
-- SQLite's byte-order collation; the store gives every PostgreSQL schema a collation of that name built
-- on "C" (crates/yitong-store/src/lib.rs), so the same index serves the same query on both.
-- Without it PostgreSQL sorted the whole day for every page.
DROP INDEX journal_by_settlement_date;
CREATE INDEX journal_by_settlement_date ON journal (settlement_date, settlement_id COLLATE "binary", sequence);
