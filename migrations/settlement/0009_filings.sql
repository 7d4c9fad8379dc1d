-- The insured city's cross-city filings (异地就医备案) and its filing policy toward each
-- treatment city. The insured city owns both, beside the running totals they change: Quote,
-- Reserve and GetTotals read them under the same store. Portable SQL: PostgreSQL and SQLite.

-- One row per filing ever made; a cancellation changes status, never deletes.
CREATE TABLE filings (
    -- 'F' + the insured city's region code + a serial (filing_serials).
    filing_id          TEXT PRIMARY KEY,
    person_no          TEXT NOT NULL,
    -- resettled_retiree, long_term_resident, posted_staff (long-term); referral, emergency,
    -- other_temporary (temporary): `FilingKind::as_str` in crates/yitong-settlement.
    kind               TEXT NOT NULL CHECK (kind IN ('resettled_retiree', 'long_term_resident',
                           'posted_staff', 'referral', 'emergency', 'other_temporary')),
    treatment_city     TEXT NOT NULL,
    -- 'YYYY-MM-DD'; valid_until empty for open-ended. Compared as text.
    valid_from         TEXT NOT NULL,
    valid_until        TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('filed', 'cancelled')),
    message_id         TEXT NOT NULL,
    cancel_message_id  TEXT NOT NULL DEFAULT '',
    filed_at_ms        BIGINT NOT NULL,
    cancelled_at_ms    BIGINT
);
CREATE INDEX filings_by_person ON filings (person_no, treatment_city);

-- One row per person with a filing: locked (updated in place) by every FileFiling of the
-- person, so two racing filings cannot both pass the overlap check.
CREATE TABLE filing_persons (
    person_no TEXT PRIMARY KEY,
    filings   BIGINT NOT NULL
);

-- The serial of the next filing id; one row.
CREATE TABLE filing_serials (
    id     BIGINT PRIMARY KEY CHECK (id = 1),
    next   BIGINT NOT NULL
);
INSERT INTO filing_serials (id, next) VALUES (1, 1);

-- The insured city's filing policy toward one treatment city. A treatment city without a row
-- waives filing.
CREATE TABLE filing_policies (
    treatment_city       TEXT PRIMARY KEY,
    filing_required      BIGINT NOT NULL CHECK (filing_required IN (0, 1)),
    -- 'refused' or 'ratio_cut'.
    unfiled              TEXT NOT NULL CHECK (unfiled IN ('refused', 'ratio_cut')),
    unfiled_cut_points   BIGINT NOT NULL CHECK (unfiled_cut_points BETWEEN 0 AND 100),
    temporary_cut_points BIGINT NOT NULL CHECK (temporary_cut_points BETWEEN 0 AND 100),
    updated_at_ms        BIGINT NOT NULL
);
