-- Movements of the personal accounts this city keeps, one per settlement (or cancellation):
-- the account balance on `persons` is the enrolment balance plus the sum of these, and both are
-- written in the same transaction.
CREATE TABLE account_movements (
    settlement_id      TEXT PRIMARY KEY,
    person_no          TEXT NOT NULL REFERENCES persons (person_no),
    -- Signed: negative pays from the account, positive refunds into it.
    amount_fen         BIGINT NOT NULL CHECK (amount_fen <> 0),
    balance_after_fen  BIGINT NOT NULL CHECK (balance_after_fen >= 0),
    recorded_at_ms     BIGINT NOT NULL
);
CREATE INDEX account_movements_by_person ON account_movements (person_no);
