-- What is still in doubt anywhere in the bench database, run by `run --quiesce-secs S` once the
-- load has stopped and S seconds have passed: every row it returns is something left unresolved.
--   1. the treatment cities' settlements pending (an intent), recorded (not yet completed) or
--      voiding (a void not yet carried to the peers);
--   2. the insured cities' reservations still reserved, neither posted nor voided;
--   3. the ledger's transfers created pending (flags bit 2) with no resolution (stage 1) yet.
-- The four pilot cities' schemas are named here, as `yitong dev` lays them out.
WITH treatment AS (
    SELECT '370100' AS city, phase FROM settlement_370100.settlements
    UNION ALL SELECT '370300', phase FROM settlement_370300.settlements
    UNION ALL SELECT '370500', phase FROM settlement_370500.settlements
    UNION ALL SELECT '371600', phase FROM settlement_371600.settlements
), insured AS (
    SELECT '370100' AS city, status FROM settlement_370100.reservations
    UNION ALL SELECT '370300', status FROM settlement_370300.reservations
    UNION ALL SELECT '370500', status FROM settlement_370500.reservations
    UNION ALL SELECT '371600', status FROM settlement_371600.reservations
)
SELECT 'settlements ' || phase || ' at ' || city, COUNT(*)
  FROM treatment WHERE phase IN ('pending', 'recorded', 'voiding') GROUP BY city, phase
UNION ALL
SELECT 'reservations reserved at ' || city, COUNT(*)
  FROM insured WHERE status = 'reserved' GROUP BY city
UNION ALL
SELECT 'ledger transfers pending', COUNT(*)
  FROM ledger_clearing.journal created
 WHERE created.stage = 0 AND (created.flags & 2) <> 0
   AND NOT EXISTS (SELECT 1 FROM ledger_clearing.journal resolved
                    WHERE resolved.transfer_id = created.transfer_id AND resolved.stage = 1)
HAVING COUNT(*) > 0;
