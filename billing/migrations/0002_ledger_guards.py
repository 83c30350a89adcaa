"""Database-level guards of the ledger (SPEC R14), on PostgreSQL.

1. A deferred constraint trigger refuses, at commit, any transaction whose entries do not sum to
   zero per currency (debits = credits), hordak-style.
2. Entries and transactions are immutable: UPDATE and DELETE are refused (mistakes are corrected
   by reversing entries). TRUNCATE, used by test teardown, is not affected.
The CHECK constraints on stored balances are portable and live in the models.
"""

from django.db import migrations

BALANCED = """
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

CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'ledger rows are immutable: post a reversing transaction instead'
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER ledger_entry_immutable BEFORE UPDATE OR DELETE ON billing_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_transaction_immutable BEFORE UPDATE OR DELETE ON billing_ledgertransaction
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
"""

UNDO = """
DROP TRIGGER IF EXISTS ledger_transaction_immutable ON billing_ledgertransaction;
DROP TRIGGER IF EXISTS ledger_entry_immutable ON billing_ledgerentry;
DROP FUNCTION IF EXISTS ledger_refuse_change();
DROP TRIGGER IF EXISTS ledger_entry_balanced ON billing_ledgerentry;
DROP FUNCTION IF EXISTS ledger_check_balanced();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BALANCED, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(UNDO, params=None)


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards)]
