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

-- One row per version of an item: a publish adds rows, never rewrites them. The row in force
-- at a date is the one whose validity covers it in the highest version.
CREATE TABLE catalog_items (
    -- national med_list_codg.
    code             TEXT NOT NULL,
    -- The catalog version that published this row.
    version          BIGINT NOT NULL,
    name             TEXT NOT NULL,
    -- 1 drug, 2 medical service, 3 consumable.
    kind             BIGINT NOT NULL CHECK (kind IN (1, 2, 3)),
    -- national chrgitm_lv: 1 grade A, 2 grade B, 3 grade C.
    grade            BIGINT NOT NULL CHECK (grade IN (1, 2, 3)),
    -- Grade-B self-pay ratio in ten-thousandths (1000 = 10%).
    self_pay_ratio_bp BIGINT NOT NULL CHECK (self_pay_ratio_bp BETWEEN 0 AND 10000),
    -- Price cap per unit in fen; NULL when uncapped.
    price_cap_fen    BIGINT CHECK (price_cap_fen >= 0),
    valid_from       TEXT NOT NULL,
    -- Last valid day; NULL when open-ended.
    valid_until      TEXT,
    -- 1 when this version withdraws the item.
    withdrawn        BIGINT NOT NULL DEFAULT 0 CHECK (withdrawn IN (0, 1)),
    PRIMARY KEY (code, version)
);
CREATE INDEX catalog_items_by_version ON catalog_items (version);

CREATE TABLE catalog_versions (
    version        BIGINT PRIMARY KEY,
    message_id     TEXT NOT NULL UNIQUE,
    published_at_ms BIGINT NOT NULL,
    note           TEXT NOT NULL
);

-- Policies of the insured city, effective-dated; a change adds a row.
CREATE TABLE policies (
    policy_id        TEXT PRIMARY KEY,
    insurance_type   BIGINT NOT NULL CHECK (insurance_type IN (310, 390)),
    person_type      BIGINT NOT NULL CHECK (person_type IN (1, 2)),
    hospital_level   BIGINT NOT NULL CHECK (hospital_level IN (1, 2, 3)),
    deductible_fen   BIGINT NOT NULL CHECK (deductible_fen >= 0),
    -- Reimbursement ratio in ten-thousandths (7500 = 75%).
    ratio_bp         BIGINT NOT NULL CHECK (ratio_bp BETWEEN 0 AND 10000),
    annual_cap_fen   BIGINT NOT NULL CHECK (annual_cap_fen >= 0),
    effective_from   TEXT NOT NULL,
    recorded_at_ms   BIGINT NOT NULL
);
CREATE INDEX policies_by_key ON policies (insurance_type, person_type, hospital_level, effective_from);

CREATE TABLE message_replies (
    message_id     TEXT PRIMARY KEY,
    rpc            TEXT NOT NULL,
    request_digest TEXT NOT NULL,
    reply          TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL
);
