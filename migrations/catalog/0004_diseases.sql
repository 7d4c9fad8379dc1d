-- The national catalog of outpatient chronic and special diseases (门诊慢特病病种, national 1309)
-- as each city's catalog serves it: the diseases settled across provinces, by national code.
-- Seeded from seeds/diseases.csv. Portable SQL: PostgreSQL and SQLite.
CREATE TABLE diseases (
    disease_code TEXT PRIMARY KEY,
    name         TEXT NOT NULL
);
