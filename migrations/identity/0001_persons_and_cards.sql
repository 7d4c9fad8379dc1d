-- Identity: the persons a city insures, their cards, and the replies given to message ids.
-- Portable SQL: runs unchanged on PostgreSQL and SQLite. Money in integer fen, dates as
-- 'YYYY-MM-DD' text, instants as BIGINT milliseconds since the Unix epoch.

CREATE TABLE persons (
    -- national psn_no: the city's region code and a ten-digit serial.
    person_no           TEXT PRIMARY KEY,
    -- Keyed hash (HMAC-SHA256, hex) of the citizen ID, for lookup without decrypting.
    citizen_id_hash     TEXT NOT NULL UNIQUE,
    -- The citizen ID sealed with an AEAD (base64 of nonce and ciphertext); never logged.
    citizen_id_sealed   TEXT NOT NULL,
    -- First six and last four characters, the rest masked, as replies show it.
    citizen_id_masked   TEXT NOT NULL,
    name                TEXT NOT NULL,
    -- national gend: 1 male, 2 female.
    sex                 BIGINT NOT NULL CHECK (sex IN (1, 2)),
    birth_date          TEXT NOT NULL,
    -- national insutype: 310 employee, 390 resident.
    insurance_type      BIGINT NOT NULL CHECK (insurance_type IN (310, 390)),
    -- 1 in service, 2 retired.
    person_type         BIGINT NOT NULL CHECK (person_type IN (1, 2)),
    insured_since       TEXT NOT NULL,
    -- Personal account balance (employees only; residents keep 0).
    account_balance_fen BIGINT NOT NULL CHECK (account_balance_fen >= 0),
    created_at_ms       BIGINT NOT NULL
);

-- Insurance status history, effective-dated; the status at a date is the latest change on or
-- before it. Rows are only ever added.
CREATE TABLE insurance_status_changes (
    change_id      TEXT PRIMARY KEY,
    person_no      TEXT NOT NULL REFERENCES persons (person_no),
    -- national psn_insu_stas: 1 active, 2 suspended, 4 terminated.
    status         BIGINT NOT NULL CHECK (status IN (1, 2, 4)),
    effective_date TEXT NOT NULL,
    reason         TEXT NOT NULL,
    recorded_at_ms BIGINT NOT NULL
);
CREATE INDEX insurance_status_changes_by_person ON insurance_status_changes (person_no, effective_date);

CREATE TABLE cards (
    -- Region code of this city, eight-digit serial, Luhn check digit.
    card_no              TEXT PRIMARY KEY,
    person_no            TEXT NOT NULL REFERENCES persons (person_no),
    -- 1 active, 2 lost, 3 cancelled.
    status               BIGINT NOT NULL CHECK (status IN (1, 2, 3)),
    issued_at_ms         BIGINT NOT NULL,
    status_changed_at_ms BIGINT NOT NULL,
    -- The card that replaced this one, once reissued.
    replaced_by          TEXT
);
CREATE INDEX cards_by_person ON cards (person_no);

-- Serials handed out so far, by kind ('card', 'person').
CREATE TABLE serials (
    kind  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO serials (kind, value) VALUES ('card', 0), ('person', 0);

-- The first reply to every state-changing message id, so that a replay returns it and the
-- same id with other content is refused.
CREATE TABLE message_replies (
    message_id     TEXT PRIMARY KEY,
    rpc            TEXT NOT NULL,
    -- SHA-256 (hex) of the request's protobuf encoding.
    request_digest TEXT NOT NULL,
    -- The reply's protobuf encoding, base64.
    reply          TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL
);
