-- The insured city's side of settlement: each person's running totals for a benefit year, and
-- the reservations that hold one settlement's (or cancellation's) change to them.
-- Portable SQL: runs unchanged on PostgreSQL and SQLite.

-- Posted running totals per person and calendar year. Live reservations are added on read.
CREATE TABLE benefit_years (
    person_no           TEXT NOT NULL,
    benefit_year        BIGINT NOT NULL,
    deductible_used_fen BIGINT NOT NULL CHECK (deductible_used_fen >= 0),
    fund_paid_fen       BIGINT NOT NULL CHECK (fund_paid_fen >= 0),
    PRIMARY KEY (person_no, benefit_year)
);

-- One row per settlement id the insured city has held, posted or voided. Expiry is not
-- written: a RESERVED row whose expires_at_ms has passed reads as EXPIRED.
CREATE TABLE reservations (
    settlement_id          TEXT PRIMARY KEY,
    -- 1 settlement, 2 cancellation; 0 for an id voided before it was ever reserved.
    kind                   BIGINT NOT NULL CHECK (kind IN (0, 1, 2)),
    original_settlement_id TEXT,
    -- 1 reserved, 2 posted, 3 voided.
    status                 BIGINT NOT NULL CHECK (status IN (1, 2, 3)),
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
CREATE INDEX reservations_by_person ON reservations (person_no, benefit_year, status);
