-- The end-of-run check of the insured cities' accumulators, run by `run` with psql against the
-- bench database once `yitong bench` is done (and its own ledger check passed). Every row it
-- returns is a break; no rows means:
--   1. each person's posted yearly totals (benefit_years) equal the sum of their posted
--      reservations, settlements and cancellations alike (deductible used and fund paid);
--   2. no person's fund paid passes the annual cap of the policy applied (invariant 3);
--   3. the posted fund pay plus account pay of each pair of cities equals the ledger's posted
--      balance of the pair's obligation (or, same-city, the pool): invariant 2 at the
--      accumulator end.
-- The :cities variable is not needed: the four pilot cities' schemas are named here, as
-- `yitong dev` lays them out (settlement_<city>, ledger_clearing).
WITH reservations AS (
    SELECT '370100' AS insured_city, * FROM settlement_370100.reservations
    UNION ALL SELECT '370300', * FROM settlement_370300.reservations
    UNION ALL SELECT '370500', * FROM settlement_370500.reservations
    UNION ALL SELECT '371600', * FROM settlement_371600.reservations
), years AS (
    SELECT * FROM settlement_370100.benefit_years
    UNION ALL SELECT * FROM settlement_370300.benefit_years
    UNION ALL SELECT * FROM settlement_370500.benefit_years
    UNION ALL SELECT * FROM settlement_371600.benefit_years
), posted AS (
    SELECT person_no, benefit_year,
           SUM(deductible_applied_fen) AS deductible_used_fen,
           SUM(fund_pay_fen) AS fund_paid_fen,
           MIN(policy_annual_cap_fen) AS annual_cap_fen
      FROM reservations WHERE status = 'posted'
     GROUP BY person_no, benefit_year
), accumulator_breaks AS (
    SELECT 'accumulator' AS class, COALESCE(y.person_no, p.person_no) AS what,
           format('benefit_years deductible %s fund %s, posted reservations deductible %s fund %s',
                  y.deductible_used_fen, y.fund_paid_fen, p.deductible_used_fen, p.fund_paid_fen) AS detail
      FROM years y FULL JOIN posted p USING (person_no, benefit_year)
     WHERE COALESCE(y.deductible_used_fen, 0) <> COALESCE(p.deductible_used_fen, 0)
        OR COALESCE(y.fund_paid_fen, 0) <> COALESCE(p.fund_paid_fen, 0)
), cap_breaks AS (
    SELECT 'annual cap', person_no, format('fund paid %s above the cap %s', fund_paid_fen, annual_cap_fen)
      FROM posted WHERE fund_paid_fen > annual_cap_fen
), pairs AS (
    SELECT CASE WHEN insured_city = treatment_city THEN treatment_city || '.pool'
                ELSE insured_city || '->' || treatment_city || '.obligation' END AS account_id,
           SUM(fund_pay_fen + account_pay_fen) AS posted_fen
      FROM reservations WHERE status = 'posted'
     GROUP BY 1
), ledger AS (
    SELECT account_id, SUM(posted_fen) AS posted_fen FROM (
        SELECT credit_account_id AS account_id, credit_posted_fen AS posted_fen FROM ledger_clearing.journal
        UNION ALL
        SELECT debit_account_id, -debit_posted_fen FROM ledger_clearing.journal
    ) AS sides
     WHERE account_id LIKE '%.obligation' OR account_id LIKE '%.pool'
     GROUP BY account_id
), ledger_breaks AS (
    SELECT 'ledger', COALESCE(l.account_id, p.account_id),
           format('ledger posted %s, insured cities posted %s', l.posted_fen, p.posted_fen)
      FROM ledger l FULL JOIN pairs p USING (account_id)
     WHERE COALESCE(l.posted_fen, 0) <> COALESCE(p.posted_fen, 0)
)
SELECT * FROM accumulator_breaks
UNION ALL SELECT * FROM cap_breaks
UNION ALL SELECT * FROM ledger_breaks;
