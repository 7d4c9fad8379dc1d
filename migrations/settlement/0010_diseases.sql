-- Outpatient chronic and special diseases (门诊慢特病) at the insured city: its disease policy,
-- its persons' certifications (认定), and each person's running totals per disease, kept apart
-- from the ordinary outpatient totals (benefit_years). A reservation names the totals it moves.
-- Portable SQL: PostgreSQL and SQLite.

-- The insured city's policy for one disease and insurance type: its own yearly deductible,
-- ratio and annual quota (限额). A disease without a row is not covered.
CREATE TABLE disease_policies (
    disease_code      TEXT NOT NULL,
    -- The national insutype: 310 employees, 390 residents.
    insurance_type    BIGINT NOT NULL CHECK (insurance_type IN (310, 390)),
    disease_name      TEXT NOT NULL,
    deductible_fen    BIGINT NOT NULL CHECK (deductible_fen >= 0),
    -- A decimal ratio, "0" to "1", at most four fraction digits.
    ratio             TEXT NOT NULL,
    annual_quota_fen  BIGINT NOT NULL CHECK (annual_quota_fen >= 0),
    updated_at_ms     BIGINT NOT NULL,
    PRIMARY KEY (disease_code, insurance_type)
);

-- One row per certification ever made; a cancellation changes status, never deletes.
CREATE TABLE certifications (
    -- 'C' + the insured city's region code + a serial (certification_serials).
    certification_id   TEXT PRIMARY KEY,
    person_no          TEXT NOT NULL,
    disease_code       TEXT NOT NULL,
    -- 'YYYY-MM-DD'; valid_until empty for open-ended. Compared as text.
    valid_from         TEXT NOT NULL,
    valid_until        TEXT NOT NULL,
    -- The designated institutions, comma-separated; empty for any networked institution.
    institution_codes  TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('certified', 'cancelled')),
    message_id         TEXT NOT NULL,
    cancel_message_id  TEXT NOT NULL DEFAULT '',
    certified_at_ms    BIGINT NOT NULL,
    cancelled_at_ms    BIGINT
);
CREATE INDEX certifications_by_person ON certifications (person_no, disease_code);

-- The serial of the next certification id; one row.
CREATE TABLE certification_serials (
    id     BIGINT PRIMARY KEY CHECK (id = 1),
    next   BIGINT NOT NULL
);
INSERT INTO certification_serials (id, next) VALUES (1, 1);

-- Posted running totals per person, year and disease. Live reservations of the disease are
-- added on read, as for benefit_years. Every change is made under the person's benefit_years
-- row lock, which Reserve, Post and Void take first whatever totals they move.
CREATE TABLE disease_years (
    person_no           TEXT NOT NULL,
    benefit_year        BIGINT NOT NULL,
    disease_code        TEXT NOT NULL,
    deductible_used_fen BIGINT NOT NULL CHECK (deductible_used_fen >= 0),
    fund_paid_fen       BIGINT NOT NULL CHECK (fund_paid_fen >= 0),
    PRIMARY KEY (person_no, benefit_year, disease_code)
);

-- Which totals a reservation moves: empty for the ordinary outpatient ones (benefit_years),
-- else the disease's (disease_years).
ALTER TABLE reservations ADD COLUMN disease_code TEXT NOT NULL DEFAULT '';
