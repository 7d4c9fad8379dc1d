-- Message ids belong to the institution that sends them, not to the treatment city. The
-- national msgid is the sender's own (fixmedins_code + yyyyMMddHHmmssfff + a serial), so two
-- designated institutions of one city may send the same id and each must have it to itself.
-- Before this migration an id was unique per city: a hospital whose id another hospital had
-- used was refused ALREADY_EXISTS, and GetSettlement by the id said it belonged to another
-- institution, which told the asker that it existed. Now the three tables keyed by an HIS's
-- message id are keyed by (institution_code, message_id):
--
-- * message_replies, the claims and first replies (yitong_store::replies, Scope::Institution).
--   Its rows did not say whose they were; each takes the institution of the settlement or
--   cancellation written under it, else of the dead mark a reversal left under it, else of the
--   audit row its claim wrote (actor 'institution:<code>'; every claim has one since settlement
--   0004). A claim with none of the three (only a visit or fee-line request claimed before the
--   audit trail existed could be one) keeps an empty institution, which no request names: a
--   replay of such an id is taken as new.
-- * settlements: message_id UNIQUE becomes UNIQUE (institution_code, message_id).
-- * dead_message_ids: the primary key becomes (institution_code, message_id).
--
-- What the settlement protocol derives for its peers stays unique across institutions because
-- it is derived from the settlement id, which is the city's own (J + city + date + serial),
-- never from the message id: the insured city's reservation (keyed by settlement id; Reserve
-- carries the HIS's message id only as a record), the ledger's transfer ids, and the message
-- ids of this node's own calls to its peers ('<settlement id>-book', '-post', '-void',
-- '-repost', '-account').
-- Portable SQL: runs unchanged on PostgreSQL and SQLite (table rebuilds, since SQLite cannot
-- change a primary key or a UNIQUE constraint in place).

CREATE TABLE message_replies_v8 (
    -- The designated institution that sent the message id. national: fixmedins_code.
    institution_code TEXT NOT NULL,
    -- Its message id, unique among that institution's. national: msgid.
    message_id       TEXT NOT NULL,
    rpc              TEXT NOT NULL,
    -- SHA-256 (hex) of the request's protobuf encoding.
    request_digest   TEXT NOT NULL,
    -- The reply's protobuf encoding, base64; empty while a Settle or cancellation is in flight.
    reply            TEXT NOT NULL,
    created_at_ms    BIGINT NOT NULL,
    PRIMARY KEY (institution_code, message_id)
);
INSERT INTO message_replies_v8 (institution_code, message_id, rpc, request_digest, reply,
    created_at_ms)
SELECT COALESCE(
           (SELECT s.institution_code FROM settlements s WHERE s.message_id = m.message_id),
           (SELECT d.institution_code FROM dead_message_ids d WHERE d.message_id = m.message_id),
           (SELECT substr(a.actor, 13) FROM audit_trail a
             WHERE a.rpc = m.rpc AND a.message_id = m.message_id AND a.actor LIKE 'institution:%'
             ORDER BY a.audit_id LIMIT 1),
           ''),
       m.message_id, m.rpc, m.request_digest, m.reply, m.created_at_ms
  FROM message_replies m;
DROP TABLE message_replies;
ALTER TABLE message_replies_v8 RENAME TO message_replies;

CREATE TABLE dead_message_ids_v8 (
    institution_code TEXT NOT NULL,
    message_id       TEXT NOT NULL,
    dead_at_ms       BIGINT NOT NULL,
    PRIMARY KEY (institution_code, message_id)
);
INSERT INTO dead_message_ids_v8 (institution_code, message_id, dead_at_ms)
SELECT institution_code, message_id, dead_at_ms FROM dead_message_ids;
DROP TABLE dead_message_ids;
ALTER TABLE dead_message_ids_v8 RENAME TO dead_message_ids;

CREATE TABLE settlements_v8 (
    settlement_id          TEXT PRIMARY KEY,
    kind                   TEXT NOT NULL CHECK (kind IN ('settlement', 'cancellation')),
    original_settlement_id TEXT,
    visit_id               TEXT NOT NULL,
    institution_code       TEXT NOT NULL,
    insured_city           TEXT NOT NULL,
    person_no              TEXT NOT NULL,
    -- The message id of the Settle, CancelSettlement or ReverseByMessageId that wrote the
    -- intent: unique among its institution's.
    message_id             TEXT NOT NULL,
    -- pending: intent written, outcome undecided; recorded: binding, completion owed;
    -- completed: posted at the insured city and in the ledger; voiding: decided void, the
    -- peers' voids owed; voided: voided at the insured city and in the ledger.
    phase                  TEXT NOT NULL
                           CHECK (phase IN ('pending', 'recorded', 'completed', 'voiding', 'voided')),
    reserve_request        TEXT NOT NULL,
    transfer               TEXT NOT NULL DEFAULT '',
    settlement_date        TEXT NOT NULL,
    total_fen              BIGINT NOT NULL DEFAULT 0,
    fund_pay_fen           BIGINT NOT NULL DEFAULT 0,
    account_pay_fen        BIGINT NOT NULL DEFAULT 0,
    record                 TEXT NOT NULL DEFAULT '',
    cancelled_by           TEXT,
    created_at_ms          BIGINT NOT NULL,
    settled_at_ms          BIGINT,
    completed_at_ms        BIGINT,
    last_error             TEXT NOT NULL DEFAULT '',
    -- Why the intent was voided, decided once with the move to 'voiding'.
    void_reason            TEXT NOT NULL DEFAULT '',
    -- The recovery sweep's failed attempts at this row, and when it may try next.
    attempts               BIGINT NOT NULL DEFAULT 0,
    next_attempt_at_ms     BIGINT NOT NULL DEFAULT 0,
    UNIQUE (institution_code, message_id)
);
INSERT INTO settlements_v8 (settlement_id, kind, original_settlement_id, visit_id, institution_code,
    insured_city, person_no, message_id, phase, reserve_request, transfer, settlement_date, total_fen,
    fund_pay_fen, account_pay_fen, record, cancelled_by, created_at_ms, settled_at_ms, completed_at_ms,
    last_error, void_reason, attempts, next_attempt_at_ms)
SELECT settlement_id, kind, original_settlement_id, visit_id, institution_code, insured_city,
       person_no, message_id, phase, reserve_request, transfer, settlement_date, total_fen,
       fund_pay_fen, account_pay_fen, record, cancelled_by, created_at_ms, settled_at_ms,
       completed_at_ms, last_error, void_reason, attempts, next_attempt_at_ms
  FROM settlements;
DROP TABLE settlements;
ALTER TABLE settlements_v8 RENAME TO settlements;
CREATE INDEX settlements_by_phase ON settlements (phase, next_attempt_at_ms);
CREATE INDEX settlements_by_visit ON settlements (visit_id);
CREATE INDEX settlements_by_institution ON settlements (institution_code, settlement_date, settled_at_ms);
