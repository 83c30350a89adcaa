"""The ledger's zero-sum check and seal run once per INSERT statement, set-based (decision 0003).

Until now PostgreSQL ran, for every entry, a BEFORE INSERT seal trigger (one lookup of its ledger
transaction) and, at commit, a deferred zero-sum trigger (one aggregate over the transaction's
entries joined to their accounts): two PL/pgSQL calls and two queries per entry — for a sweep that
books 100,000 two-entry forfeitures, 400,000 queries, about half the database time of the ledger.

Now one statement-level AFTER INSERT trigger on the entries (transition table `new_entries`) does,
for all rows of the statement at once:

1. the seal (migration 0008): every ledger transaction named must carry the stamp of the current
   database transaction, or the statement is refused — as before, with the same message;
2. the zero sum: every ledger transaction the statement touched is summed per currency over *all*
   its entries. One that does not balance yet is written to `billing_ledger_pending_check`, whose
   deferred constraint trigger `ledger_entry_balanced` checks it again at commit (or when
   `SET CONSTRAINTS … IMMEDIATE` runs, or at once in immediate mode) and refuses the commit with
   the same message as before if it still does not balance; if it does, the row is deleted.

`billing/ledger.py` writes all of a transaction's entries in one INSERT, so on its path nothing is
ever pending and no deferred event is queued. Raw SQL that adds entries one statement at a time
still commits when the whole balances. Why this refuses exactly what the per-entry trigger refused
— including entries added after `SET CONSTRAINTS ALL IMMEDIATE` — is in decision 0003.
"""

from django.db import migrations

SQL = """
DROP TRIGGER IF EXISTS ledger_entry_balanced ON billing_ledgerentry;
DROP FUNCTION IF EXISTS ledger_check_balanced();
DROP TRIGGER IF EXISTS ledger_entry_same_txn ON billing_ledgerentry;
DROP FUNCTION IF EXISTS ledger_entry_same_txn();

-- Ledger transactions that an INSERT statement left unbalanced: checked again at commit. Empty
-- outside a database transaction that is adding entries one statement at a time.
CREATE TABLE billing_ledger_pending_check (transaction_id bigint NOT NULL);

CREATE OR REPLACE FUNCTION ledger_entries_inserted() RETURNS trigger AS $$
DECLARE
    stamp text := ledger_txn_stamp();
    sealed bigint;
BEGIN
    -- The seal: entries only for ledger transactions created by this database transaction.
    SELECT n.transaction_id INTO sealed
      FROM (SELECT DISTINCT transaction_id FROM new_entries) n
      LEFT JOIN billing_ledgertransaction t ON t.id = n.transaction_id
     WHERE t.db_txn IS DISTINCT FROM stamp
     ORDER BY n.transaction_id
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger transaction % is sealed: entries are added only when it is created',
            sealed USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- The zero sum, over all entries of every transaction touched: what does not balance yet is
    -- checked again by the deferred constraint trigger below.
    INSERT INTO billing_ledger_pending_check (transaction_id)
    SELECT DISTINCT u.transaction_id
      FROM (SELECT e.transaction_id
              FROM billing_ledgerentry e
              JOIN billing_ledgeraccount a ON a.id = e.account_id
             WHERE e.transaction_id IN (SELECT transaction_id FROM new_entries)
             GROUP BY e.transaction_id, a.currency
            HAVING SUM(CASE WHEN e.side = 'D' THEN e.amount ELSE -e.amount END) <> 0) u;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER ledger_entries_inserted AFTER INSERT ON billing_ledgerentry
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_inserted();

CREATE OR REPLACE FUNCTION ledger_check_balanced() RETURNS trigger AS $$
DECLARE
    bad record;
BEGIN
    SELECT a.currency AS currency,
           SUM(CASE WHEN e.side = 'D' THEN e.amount ELSE -e.amount END) AS total
      INTO bad
      FROM billing_ledgerentry e
      JOIN billing_ledgeraccount a ON a.id = e.account_id
     WHERE e.transaction_id = NEW.transaction_id
     GROUP BY a.currency
    HAVING SUM(CASE WHEN e.side = 'D' THEN e.amount ELSE -e.amount END) <> 0
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger transaction % does not balance in % (debits - credits = %)',
            NEW.transaction_id, bad.currency, bad.total
            USING ERRCODE = 'check_violation';
    END IF;
    DELETE FROM billing_ledger_pending_check WHERE transaction_id = NEW.transaction_id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE CONSTRAINT TRIGGER ledger_entry_balanced
    AFTER INSERT ON billing_ledger_pending_check
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced();
"""

# Back to migrations 0002 and 0008: per-entry seal and per-entry deferred zero-sum trigger.
UNDO = """
DROP TRIGGER IF EXISTS ledger_entry_balanced ON billing_ledger_pending_check;
DROP TRIGGER IF EXISTS ledger_entries_inserted ON billing_ledgerentry;
DROP FUNCTION IF EXISTS ledger_entries_inserted();
DROP TABLE IF EXISTS billing_ledger_pending_check;

CREATE OR REPLACE FUNCTION ledger_check_balanced() RETURNS trigger AS $$
DECLARE
    bad record;
BEGIN
    SELECT a.currency AS currency,
           SUM(CASE WHEN e.side = 'D' THEN e.amount ELSE -e.amount END) AS total
      INTO bad
      FROM billing_ledgerentry e
      JOIN billing_ledgeraccount a ON a.id = e.account_id
     WHERE e.transaction_id = NEW.transaction_id
     GROUP BY a.currency
    HAVING SUM(CASE WHEN e.side = 'D' THEN e.amount ELSE -e.amount END) <> 0
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger transaction % does not balance in % (debits - credits = %)',
            NEW.transaction_id, bad.currency, bad.total
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE CONSTRAINT TRIGGER ledger_entry_balanced
    AFTER INSERT ON billing_ledgerentry
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced();

CREATE OR REPLACE FUNCTION ledger_entry_same_txn() RETURNS trigger AS $$
BEGIN
    IF (SELECT db_txn FROM billing_ledgertransaction WHERE id = NEW.transaction_id)
       IS DISTINCT FROM ledger_txn_stamp() THEN
        RAISE EXCEPTION 'ledger transaction % is sealed: entries are added only when it is created',
            NEW.transaction_id USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER ledger_entry_same_txn BEFORE INSERT ON billing_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION ledger_entry_same_txn();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(SQL, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(UNDO, params=None)


class Migration(migrations.Migration):
    dependencies = [("billing", "0010_bill_collection")]

    operations = [migrations.RunPython(forwards, backwards)]
