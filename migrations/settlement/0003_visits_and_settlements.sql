-- The treatment city's side of settlement: visits, their fee lines, and the settlements (and
-- cancellations) made of them, each with the phase of its cross-city protocol.
-- Portable SQL: runs unchanged on PostgreSQL and SQLite.

-- The last serial handed out per id prefix ('S3703002611250' for the visits of a day), so visit
-- and settlement ids are dense per city and day.
CREATE TABLE id_serials (
    prefix      TEXT PRIMARY KEY,
    last_serial BIGINT NOT NULL
);

CREATE TABLE visits (
    visit_id         TEXT PRIMARY KEY,
    institution_code TEXT NOT NULL,
    person_no        TEXT NOT NULL,
    insured_city     TEXT NOT NULL,
    insurance_type   BIGINT NOT NULL,
    hospital_level   BIGINT NOT NULL,
    -- The visit's start date in China Standard Time, 'YYYY-MM-DD': lines default to it.
    service_date     TEXT NOT NULL,
    -- 1 open, 2 settled, 3 cancelled.
    status           BIGINT NOT NULL CHECK (status IN (1, 2, 3)),
    -- The live settlement while settled.
    settlement_id    TEXT,
    -- The registered Visit message (protobuf, base64): the descriptive fields.
    registered       TEXT NOT NULL,
    registered_at_ms BIGINT NOT NULL
);
CREATE INDEX visits_by_institution ON visits (institution_code, registered_at_ms);

-- Every fee line ever uploaded; a cancelled line stays, so its serial stays used.
CREATE TABLE fee_lines (
    visit_id         TEXT NOT NULL,
    serial           TEXT NOT NULL,
    -- Upload order within the visit.
    position         BIGINT NOT NULL,
    amount_fen       BIGINT NOT NULL,
    full_self_pay_fen BIGINT NOT NULL,
    over_cap_fen     BIGINT NOT NULL,
    pre_self_pay_fen BIGINT NOT NULL,
    in_scope_fen     BIGINT NOT NULL,
    -- 1 live, 0 cancelled.
    live             BIGINT NOT NULL,
    -- The ClassifiedFeeLine answered (protobuf, base64).
    classified       TEXT NOT NULL,
    cancelled_at_ms  BIGINT,
    PRIMARY KEY (visit_id, serial)
);

-- One row per settlement id: a settlement or a cancellation, from its intent on. Nothing is
-- deleted; a failed attempt stays as VOIDED.
CREATE TABLE settlements (
    settlement_id          TEXT PRIMARY KEY,
    -- 1 settlement, 2 cancellation.
    kind                   BIGINT NOT NULL CHECK (kind IN (1, 2)),
    original_settlement_id TEXT,
    visit_id               TEXT NOT NULL,
    institution_code       TEXT NOT NULL,
    insured_city           TEXT NOT NULL,
    person_no              TEXT NOT NULL,
    message_id             TEXT NOT NULL UNIQUE,
    -- 1 pending (intent written, nothing recorded), 2 recorded (binding; completion owed),
    -- 3 completed (posted at the insured city and in the ledger), 4 voided.
    phase                  BIGINT NOT NULL CHECK (phase IN (1, 2, 3, 4)),
    -- What the protocol needs to redo a step: the Reserve request while pending, the ledger
    -- transfer once recorded (protobuf, base64).
    reserve_request        TEXT NOT NULL,
    transfer               TEXT NOT NULL DEFAULT '',
    settlement_date        TEXT NOT NULL,
    total_fen              BIGINT NOT NULL DEFAULT 0,
    fund_pay_fen           BIGINT NOT NULL DEFAULT 0,
    account_pay_fen        BIGINT NOT NULL DEFAULT 0,
    -- The Settlement message as the HIS sees it (protobuf, base64); empty until recorded.
    record                 TEXT NOT NULL DEFAULT '',
    -- For a settlement: the cancellation recorded against it.
    cancelled_by           TEXT,
    created_at_ms          BIGINT NOT NULL,
    settled_at_ms          BIGINT,
    completed_at_ms        BIGINT,
    -- Why the last completion or void attempt failed, for operators; empty when none did.
    last_error             TEXT NOT NULL DEFAULT ''
);
CREATE INDEX settlements_by_phase ON settlements (phase, created_at_ms);
CREATE INDEX settlements_by_visit ON settlements (visit_id);
CREATE INDEX settlements_by_institution ON settlements (institution_code, settlement_date, settled_at_ms);

-- Message ids of Settles that ReverseByMessageId found without effect: a late Settle with one
-- is refused.
CREATE TABLE dead_message_ids (
    message_id       TEXT PRIMARY KEY,
    institution_code TEXT NOT NULL,
    dead_at_ms       BIGINT NOT NULL
);
