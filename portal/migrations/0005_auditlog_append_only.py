"""The audit log is append-only in the database too: UPDATE and DELETE are refused (PostgreSQL)."""

from django.db import migrations

SQL = """
CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only' USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER auditlog_append_only BEFORE UPDATE OR DELETE ON portal_auditlog
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
"""
UNDO = """
DROP TRIGGER IF EXISTS auditlog_append_only ON portal_auditlog;
DROP FUNCTION IF EXISTS audit_refuse_change();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(SQL, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(UNDO, params=None)


class Migration(migrations.Migration):
    dependencies = [("portal", "0004_auditlog")]

    operations = [migrations.RunPython(forwards, backwards)]
