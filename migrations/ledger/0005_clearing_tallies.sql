-- How many clearing details each period holds per ordered city pair, and how many of them are
-- included or excluded: kept by the ledger as rows become details, are decided or are carried
-- over (crates/yitong-ledger/src/tally.rs), so that no count reads a whole month.
CREATE TABLE clearing_tallies (
    -- 'YYYY-MM'.
    period         TEXT NOT NULL,
    treatment_city TEXT NOT NULL,
    insured_city   TEXT NOT NULL,
    details_count  BIGINT NOT NULL,
    included_count BIGINT NOT NULL,
    excluded_count BIGINT NOT NULL,
    PRIMARY KEY (period, treatment_city, insured_city)
);

-- The tallies of what the journal already holds. A row is a detail of every period it was
-- booked or carried into, unless it was carried on out of that period without a decision there.
INSERT INTO clearing_tallies (period, treatment_city, insured_city, details_count, included_count,
    excluded_count)
SELECT x.period, c.treatment_city, c.insured_city, COUNT(*),
    SUM(CASE WHEN f.status = 2 THEN 1 ELSE 0 END), SUM(CASE WHEN f.status = 3 THEN 1 ELSE 0 END)
FROM (SELECT transfer_id, clearing_period AS period FROM journal WHERE stage = 0 AND code IN (3, 4)
      UNION ALL SELECT transfer_id, period FROM clearing_carryovers) x
JOIN journal c ON c.transfer_id = x.transfer_id AND c.stage = 0
LEFT JOIN journal p ON p.transfer_id = c.transfer_id AND p.stage = 1
LEFT JOIN clearing_confirmations f ON f.period = x.period AND f.transfer_id = c.transfer_id
WHERE c.code IN (3, 4) AND c.insured_city <> c.treatment_city
    AND (c.expires_at_ms = 0 OR p.event = 2)
    AND (f.transfer_id IS NOT NULL OR NOT EXISTS (SELECT 1 FROM clearing_carryovers o
         WHERE o.transfer_id = c.transfer_id AND o.period > x.period))
GROUP BY x.period, c.treatment_city, c.insured_city;
