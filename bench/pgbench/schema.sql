-- The physical floor of one settled outpatient visit on PostgreSQL: the rows Yitong must write
-- for it, with the indexes it keeps on them, and the two rows it must lock and update (the
-- patient's yearly accumulator and the head of the hash-chained journal). `settle.sql` is the
-- one transaction pgbench runs against these tables; `run` compares its tps with
-- `yitong bench` on the same server.
--
-- Row shapes follow migrations/ (visits, fee lines, settlements, reservations, benefit years,
-- message replies, journal), trimmed to the columns that carry data in a settlement.

DROP SCHEMA IF EXISTS floor CASCADE;
CREATE SCHEMA floor;
SET search_path TO floor;

-- The idempotency record of each of the visit's three HIS calls (RegisterVisit,
-- UploadFeeLines, Settle).
CREATE TABLE message_replies (
    message_id     TEXT PRIMARY KEY,
    request_digest TEXT NOT NULL,
    reply          BYTEA NOT NULL,
    recorded_at_ms BIGINT NOT NULL
);

CREATE TABLE visits (
    visit_id         TEXT PRIMARY KEY,
    person_no        TEXT NOT NULL,
    institution_code TEXT NOT NULL,
    insured_city     TEXT NOT NULL,
    insurance_type   BIGINT NOT NULL,
    status           BIGINT NOT NULL,
    began_at_ms      BIGINT NOT NULL,
    department_code  TEXT NOT NULL,
    doctor_code      TEXT NOT NULL,
    his_visit_no     TEXT NOT NULL,
    registered_at_ms BIGINT NOT NULL
);
CREATE INDEX visits_by_person ON visits (person_no);

CREATE TABLE fee_lines (
    visit_id        TEXT NOT NULL,
    serial          TEXT NOT NULL,
    item_code       TEXT NOT NULL,
    quantity        TEXT NOT NULL,
    unit_price_fen  BIGINT NOT NULL,
    amount_fen      BIGINT NOT NULL,
    grade           TEXT NOT NULL,
    full_self_pay_fen BIGINT NOT NULL,
    over_cap_fen    BIGINT NOT NULL,
    pre_self_pay_fen BIGINT NOT NULL,
    in_scope_fen    BIGINT NOT NULL,
    PRIMARY KEY (visit_id, serial)
);

CREATE TABLE settlements (
    settlement_id     TEXT PRIMARY KEY,
    message_id        TEXT NOT NULL UNIQUE,
    visit_id          TEXT NOT NULL,
    person_no         TEXT NOT NULL,
    institution_code  TEXT NOT NULL,
    insured_city      TEXT NOT NULL,
    treatment_city    TEXT NOT NULL,
    phase             BIGINT NOT NULL,
    total_fen         BIGINT NOT NULL,
    fund_pay_fen      BIGINT NOT NULL,
    account_pay_fen   BIGINT NOT NULL,
    cash_pay_fen      BIGINT NOT NULL,
    split             BYTEA NOT NULL,
    settlement_date   TEXT NOT NULL,
    settled_at_ms     BIGINT NOT NULL
);
CREATE INDEX settlements_by_phase ON settlements (phase, settled_at_ms);
CREATE INDEX settlements_by_visit ON settlements (visit_id);
CREATE INDEX settlements_by_institution ON settlements (institution_code, settlement_date, settled_at_ms);

-- The insured city's record of the benefit decision.
CREATE TABLE reservations (
    settlement_id          TEXT PRIMARY KEY,
    status                 BIGINT NOT NULL,
    person_no              TEXT NOT NULL,
    benefit_year           BIGINT NOT NULL,
    total_fen              BIGINT NOT NULL,
    in_scope_fen           BIGINT NOT NULL,
    deductible_applied_fen BIGINT NOT NULL,
    fund_pay_fen           BIGINT NOT NULL,
    account_pay_fen        BIGINT NOT NULL,
    split                  BYTEA NOT NULL,
    reserved_at_ms         BIGINT NOT NULL
);
CREATE INDEX reservations_by_person ON reservations (person_no, benefit_year, status);

-- The accumulator: one row per insured person and year, locked and updated by each settlement.
CREATE TABLE benefit_years (
    person_no           TEXT NOT NULL,
    benefit_year        BIGINT NOT NULL,
    deductible_used_fen BIGINT NOT NULL,
    fund_paid_fen       BIGINT NOT NULL,
    PRIMARY KEY (person_no, benefit_year)
);
-- As many persons as the seeds hold (10,000 per pilot city).
INSERT INTO benefit_years
SELECT lpad(n::text, 16, '0'), 2026, 0, 0 FROM generate_series(1, 40000) AS n;

-- The ledger's journal, one posted SETTLEMENT entry per settled visit, hash-chained.
CREATE TABLE journal (
    sequence          BIGINT PRIMARY KEY,
    transfer_id       TEXT NOT NULL,
    debit_account_id  TEXT NOT NULL,
    credit_account_id TEXT NOT NULL,
    amount_fen        BIGINT NOT NULL,
    settlement_id     TEXT NOT NULL,
    visit_id          TEXT NOT NULL,
    person_no         TEXT NOT NULL,
    business_date     TEXT NOT NULL,
    recorded_at_ms    BIGINT NOT NULL,
    previous_hash     TEXT NOT NULL,
    hash              TEXT NOT NULL
);
CREATE UNIQUE INDEX journal_by_transfer ON journal (transfer_id);
CREATE INDEX journal_by_debit_account ON journal (debit_account_id, sequence);
CREATE INDEX journal_by_credit_account ON journal (credit_account_id, sequence);
CREATE INDEX journal_by_settlement ON journal (settlement_id);
CREATE INDEX journal_by_business_date ON journal (business_date);

CREATE TABLE journal_head (
    id       BIGINT PRIMARY KEY CHECK (id = 1),
    sequence BIGINT NOT NULL,
    hash     TEXT NOT NULL
);
INSERT INTO journal_head VALUES (1, 0, repeat('0', 64));
