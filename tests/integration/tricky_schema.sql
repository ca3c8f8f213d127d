-- A database that exercises what a restore must carry over byte for byte.
CREATE SCHEMA "Schéma ""quoted"" name";
SET search_path = "Schéma ""quoted"" name", public;
CREATE TYPE mood AS ENUM ('sad', 'ok', 'häppy');
CREATE DOMAIN positive_int AS integer CHECK (VALUE > 0);
CREATE TABLE "table with spaces" (
    id serial PRIMARY KEY,
    "Column ""Q""" text NOT NULL,
    feeling mood,
    amount positive_int,
    doubled integer GENERATED ALWAYS AS (amount * 2) STORED,
    blob oid
);
CREATE TABLE measurements (at date NOT NULL, value numeric) PARTITION BY RANGE (at);
CREATE TABLE measurements_2025 PARTITION OF measurements FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE measurements_2026 PARTITION OF measurements FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE audit (what text, at timestamptz DEFAULT now());
CREATE FUNCTION log_it() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO audit(what) VALUES (TG_OP || ':' || NEW."Column ""Q"""); RETURN NEW; END $$;
CREATE TRIGGER "after insert ✓" AFTER INSERT ON "table with spaces" FOR EACH ROW EXECUTE FUNCTION log_it();
INSERT INTO "table with spaces" ("Column ""Q""", feeling, amount, blob)
SELECT 'row ' || i || ' ünïcødé ''quote''', (ARRAY['sad','ok','häppy']::mood[])[1 + i % 3], i, lo_from_bytea(0, convert_to('large object ' || i, 'UTF8'))
FROM generate_series(1, 50) i;
INSERT INTO measurements SELECT d::date, random() FROM generate_series('2025-06-01'::date, '2026-06-01'::date, '1 day') d;
