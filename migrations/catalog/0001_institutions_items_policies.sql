-- Catalog: the designated institutions a city manages, its catalog of drugs, services and
-- consumables (versioned), and the policies it applies to the persons it insures.
-- Portable SQL: runs unchanged on PostgreSQL and SQLite.

CREATE TABLE institutions (
    -- national fixmedins_code: 'H' or 'P', the city's region code, a five-digit serial.
    institution_code    TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    city                TEXT NOT NULL,
    -- 1 hospital, 2 pharmacy.
    kind                BIGINT NOT NULL CHECK (kind IN (1, 2)),
    -- Hospital level 1 to 3 (pharmacies count as level 1).
    level               BIGINT NOT NULL CHECK (level IN (1, 2, 3)),
    -- First day the institution settles cross-city claims; NULL when it does not.
    networked_since     TEXT
);

-- The city's current catalog version, in one row. A publication updates it first: the row lock
-- (PostgreSQL) or the write lock (SQLite) makes publications take their turns, so versions are
-- gapless and each change set is judged against the one before it.
CREATE TABLE catalog_head (
    id       BIGINT PRIMARY KEY CHECK (id = 1),
    version  BIGINT NOT NULL CHECK (version >= 0)
);
INSERT INTO catalog_head (id, version) VALUES (1, 0);

-- One row per published version, for the audit trail.
CREATE TABLE catalog_versions (
    version          BIGINT PRIMARY KEY,
    -- The publishing request's msgid; NULL for the version loaded from seed files.
    message_id       TEXT,
    published_at_ms  BIGINT NOT NULL,
    note             TEXT NOT NULL,
    operator_id      TEXT NOT NULL,
    added_count      BIGINT NOT NULL,
    changed_count    BIGINT NOT NULL,
    withdrawn_count  BIGINT NOT NULL
);

-- One row per published change of an item, never rewritten: a code's rows in version order
-- are its history, each taking effect after the one before. The row in force on a date is the
-- last one whose effective_date is on or before it.
CREATE TABLE catalog_changes (
    -- national med_list_codg.
    code               TEXT NOT NULL,
    -- The catalog version that published this change.
    version            BIGINT NOT NULL,
    -- 1 added, 2 changed, 3 withdrawn.
    change_kind        BIGINT NOT NULL CHECK (change_kind IN (1, 2, 3)),
    -- First day the change applies: valid_from for additions and changes, the day after the
    -- ending classification's valid_until for withdrawals.
    effective_date     TEXT NOT NULL,
    -- The classification: the new one, or for a withdrawal the one that ends.
    name               TEXT NOT NULL,
    -- 1 drug, 2 medical service, 3 consumable.
    kind               BIGINT NOT NULL CHECK (kind IN (1, 2, 3)),
    -- national chrgitm_lv: 1 grade A, 2 grade B, 3 grade C.
    grade              BIGINT NOT NULL CHECK (grade IN (1, 2, 3)),
    -- Grade-B self-pay ratio in basis points (1000 = 10%); 0 for grades A and C.
    self_pay_ratio_bp  BIGINT NOT NULL CHECK (self_pay_ratio_bp BETWEEN 0 AND 10000),
    -- Price cap per unit in fen; NULL when uncapped.
    price_cap_fen      BIGINT CHECK (price_cap_fen >= 0),
    valid_from         TEXT NOT NULL,
    -- Last valid day; NULL until further notice.
    valid_until        TEXT,
    PRIMARY KEY (code, version)
);
-- Downloads read changes by version, then code.
CREATE INDEX catalog_changes_by_version ON catalog_changes (version, code);

-- Policy versions of the insured city, effective-dated; a new version adds a row and never
-- rewrites one. A version is in force from effective_from until the next version's.
CREATE TABLE policies (
    -- "370100-310-1-3-2025-01-01": city, insurance type, person type, level, first day.
    policy_id               TEXT PRIMARY KEY,
    -- national insutype.
    insurance_type          BIGINT NOT NULL CHECK (insurance_type IN (310, 390)),
    -- 1 in service, 2 retired.
    person_type             BIGINT NOT NULL CHECK (person_type IN (1, 2)),
    hospital_level          BIGINT NOT NULL CHECK (hospital_level IN (1, 2, 3)),
    deductible_fen          BIGINT NOT NULL CHECK (deductible_fen >= 0),
    -- Reimbursement ratio in basis points (7500 = 75%).
    reimbursement_ratio_bp  BIGINT NOT NULL CHECK (reimbursement_ratio_bp BETWEEN 0 AND 10000),
    annual_cap_fen          BIGINT NOT NULL CHECK (annual_cap_fen >= 0),
    effective_from          TEXT NOT NULL,
    recorded_at_ms          BIGINT NOT NULL,
    -- Why the version was made, and by whom, for the audit trail.
    reason                  TEXT NOT NULL,
    operator_id             TEXT NOT NULL,
    UNIQUE (insurance_type, person_type, hospital_level, effective_from)
);

-- The latest version's first day, per key. A new version moves it forward with a conditional
-- UPDATE, which locks the row: two bureau requests for one key take turns, and a version dated
-- before the latest is refused rather than slipped in between.
CREATE TABLE policy_heads (
    insurance_type         BIGINT NOT NULL,
    person_type            BIGINT NOT NULL,
    hospital_level         BIGINT NOT NULL,
    latest_effective_from  TEXT NOT NULL,
    PRIMARY KEY (insurance_type, person_type, hospital_level)
);

CREATE TABLE message_replies (
    message_id     TEXT PRIMARY KEY,
    rpc            TEXT NOT NULL,
    request_digest TEXT NOT NULL,
    reply          TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL
);
