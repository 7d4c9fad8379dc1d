-- The insured city's reservations and the treatment city's visits, rebuilt so that their states
-- read in words, as the settlements' did in 0005: a reservation's kind ('settlement',
-- 'cancellation', 'tombstone') and status ('reserved', 'posted', 'voided'), and a visit's
-- status ('open', 'settled', 'cancelled'), each the word its Rust enum's `as_str` gives
-- (crates/yitong-settlement/src/benefit/repo.rs, `ReservationKind` and `ReservationStatus`;
-- crates/yitong-settlement/src/treatment/repo.rs, `VisitStatus`), never a bare number.
-- Portable SQL: runs unchanged on PostgreSQL and SQLite (table rebuilds, since SQLite cannot
-- change a column's type or CHECK constraint in place).

CREATE TABLE reservations_v6 (
    settlement_id          TEXT PRIMARY KEY,
    -- A tombstone is an id voided before it was ever reserved: a later Reserve of it is refused.
    kind                   TEXT NOT NULL CHECK (kind IN ('settlement', 'cancellation', 'tombstone')),
    original_settlement_id TEXT,
    -- reserved: held, counted as used until posted or voided (past its timeout too; EXPIRED is
    -- never stored, it is read off expires_at_ms); posted: in the running totals for good;
    -- voided: released.
    status                 TEXT NOT NULL CHECK (status IN ('reserved', 'posted', 'voided')),
    person_no              TEXT NOT NULL,
    benefit_year           BIGINT NOT NULL,
    treatment_city         TEXT NOT NULL,
    institution_code       TEXT NOT NULL,
    visit_id               TEXT NOT NULL,
    message_id             TEXT NOT NULL,
    -- SHA-256 (hex) of the Reserve request's content, timeout aside: a replay must match it.
    request_digest         TEXT NOT NULL,
    -- The treatment city's claim and the policy applied, and the totals before: enough to
    -- recompute the split exactly, so a cancellation reverses it to the fen.
    total_fen              BIGINT NOT NULL,
    full_self_pay_fen      BIGINT NOT NULL,
    over_cap_self_pay_fen  BIGINT NOT NULL,
    pre_self_pay_fen       BIGINT NOT NULL,
    in_scope_fen           BIGINT NOT NULL,
    policy_id              TEXT NOT NULL,
    policy_deductible_fen  BIGINT NOT NULL,
    policy_ratio           TEXT NOT NULL,
    policy_annual_cap_fen  BIGINT NOT NULL,
    insurance_type         BIGINT NOT NULL,
    use_personal_account   BIGINT NOT NULL,
    before_deductible_used_fen BIGINT NOT NULL,
    before_fund_paid_fen   BIGINT NOT NULL,
    before_balance_fen     BIGINT NOT NULL,
    -- What the reservation holds; negative for a cancellation.
    deductible_applied_fen BIGINT NOT NULL,
    fund_pay_fen           BIGINT NOT NULL,
    account_pay_fen        BIGINT NOT NULL,
    -- 1 once identity confirmed the account movement of a posted reservation.
    account_moved          BIGINT NOT NULL DEFAULT 0,
    -- The SettlementSplit returned when reserved (protobuf, base64).
    split                  TEXT NOT NULL,
    reserved_at_ms         BIGINT NOT NULL,
    expires_at_ms          BIGINT NOT NULL,
    resolved_at_ms         BIGINT,
    void_reason            TEXT NOT NULL DEFAULT '',
    -- For a posted settlement: the cancellation reserving or holding its reversal.
    reversed_by            TEXT
);
INSERT INTO reservations_v6 (settlement_id, kind, original_settlement_id, status, person_no,
    benefit_year, treatment_city, institution_code, visit_id, message_id, request_digest, total_fen,
    full_self_pay_fen, over_cap_self_pay_fen, pre_self_pay_fen, in_scope_fen, policy_id,
    policy_deductible_fen, policy_ratio, policy_annual_cap_fen, insurance_type, use_personal_account,
    before_deductible_used_fen, before_fund_paid_fen, before_balance_fen, deductible_applied_fen,
    fund_pay_fen, account_pay_fen, account_moved, split, reserved_at_ms, expires_at_ms,
    resolved_at_ms, void_reason, reversed_by)
SELECT settlement_id,
       CASE kind WHEN 1 THEN 'settlement' WHEN 2 THEN 'cancellation' WHEN 0 THEN 'tombstone' END,
       original_settlement_id,
       CASE status WHEN 1 THEN 'reserved' WHEN 2 THEN 'posted' WHEN 3 THEN 'voided' END,
       person_no, benefit_year, treatment_city, institution_code, visit_id, message_id,
       request_digest, total_fen, full_self_pay_fen, over_cap_self_pay_fen, pre_self_pay_fen,
       in_scope_fen, policy_id, policy_deductible_fen, policy_ratio, policy_annual_cap_fen,
       insurance_type, use_personal_account, before_deductible_used_fen, before_fund_paid_fen,
       before_balance_fen, deductible_applied_fen, fund_pay_fen, account_pay_fen, account_moved,
       split, reserved_at_ms, expires_at_ms, resolved_at_ms, void_reason, reversed_by
  FROM reservations;
DROP TABLE reservations;
ALTER TABLE reservations_v6 RENAME TO reservations;
CREATE INDEX reservations_by_person ON reservations (person_no, benefit_year, status);

CREATE TABLE visits_v6 (
    visit_id         TEXT PRIMARY KEY,
    institution_code TEXT NOT NULL,
    person_no        TEXT NOT NULL,
    insured_city     TEXT NOT NULL,
    insurance_type   BIGINT NOT NULL,
    hospital_level   BIGINT NOT NULL,
    -- The visit's start date in China Standard Time, 'YYYY-MM-DD': lines default to it.
    service_date     TEXT NOT NULL,
    -- open: fee lines may be added and cancelled, and it may be settled; settled: its lines are
    -- frozen while its settlement stands; cancelled: cancelled before settlement, final.
    status           TEXT NOT NULL CHECK (status IN ('open', 'settled', 'cancelled')),
    -- The live settlement while settled.
    settlement_id    TEXT,
    -- The registered Visit message (protobuf, base64): the descriptive fields.
    registered       TEXT NOT NULL,
    registered_at_ms BIGINT NOT NULL
);
INSERT INTO visits_v6 (visit_id, institution_code, person_no, insured_city, insurance_type,
    hospital_level, service_date, status, settlement_id, registered, registered_at_ms)
SELECT visit_id, institution_code, person_no, insured_city, insurance_type, hospital_level,
       service_date,
       CASE status WHEN 1 THEN 'open' WHEN 2 THEN 'settled' WHEN 3 THEN 'cancelled' END,
       settlement_id, registered, registered_at_ms
  FROM visits;
DROP TABLE visits;
ALTER TABLE visits_v6 RENAME TO visits;
CREATE INDEX visits_by_institution ON visits (institution_code, registered_at_ms);
