-- One settled outpatient visit as a single PostgreSQL transaction: three idempotency records,
-- the visit, five fee lines, the settlement, the insured city's reservation, the patient's
-- accumulator locked and updated, and one hash-chained journal entry under the journal head's
-- row lock. pgbench runs it with -f; `:client_id` and a random key keep every id distinct.
\set person random(1, 40000)
\set key random(1, 9000000000000000)
\set amount random(2500, 150000)
BEGIN;
INSERT INTO floor.message_replies VALUES
  ('R' || :client_id || '-' || :key, md5(:key::text), decode(md5(:key::text), 'hex'), 0),
  ('U' || :client_id || '-' || :key, md5(:key::text), decode(md5(:key::text), 'hex'), 0),
  ('S' || :client_id || '-' || :key, md5(:key::text), decode(md5(:key::text), 'hex'), 0);
INSERT INTO floor.visits VALUES
  ('V' || :client_id || '-' || :key, lpad(:person::text, 16, '0'), 'H37030000001', '370100', 310, 2,
   0, '0301', 'D001', 'HIS-' || :key, 0);
INSERT INTO floor.fee_lines
SELECT 'V' || :client_id || '-' || :key, n::text, '001102000010000', '1', :amount / 5, :amount / 5,
       'B', 0, 0, :amount / 50, :amount / 5 - :amount / 50
FROM generate_series(1, 5) AS n;
UPDATE floor.benefit_years
   SET deductible_used_fen = deductible_used_fen + 100, fund_paid_fen = fund_paid_fen + :amount / 2
 WHERE person_no = lpad(:person::text, 16, '0') AND benefit_year = 2026;
INSERT INTO floor.reservations VALUES
  ('J' || :client_id || '-' || :key, 2, lpad(:person::text, 16, '0'), 2026, :amount, :amount, 100,
   :amount / 2, 0, decode(md5(:key::text), 'hex'), 0);
INSERT INTO floor.settlements VALUES
  ('J' || :client_id || '-' || :key, 'S' || :client_id || '-' || :key, 'V' || :client_id || '-' || :key,
   lpad(:person::text, 16, '0'), 'H37030000001', '370100', '370300', 3, :amount, :amount / 2, 0,
   :amount - :amount / 2, decode(md5(:key::text), 'hex'), '2026-11-25', 0);
WITH head AS (
  UPDATE floor.journal_head
     SET sequence = sequence + 1,
         hash = encode(sha256(convert_to(hash || 'J' || :client_id || '-' || :key || :amount, 'UTF8')), 'hex')
   WHERE id = 1
  RETURNING sequence, hash
)
INSERT INTO floor.journal
SELECT head.sequence, 'T' || :client_id || '-' || :key, '370300.advances', '370100->370300.obligation',
       :amount / 2, 'J' || :client_id || '-' || :key, 'V' || :client_id || '-' || :key,
       lpad(:person::text, 16, '0'), '2026-11-25', 0, '', head.hash
FROM head;
COMMIT;
