"""R38: the EU standard VAT rates, as data with effective dates (editable by staff in the admin).
R39: issued documents are immutable — PostgreSQL refuses UPDATE and DELETE of a document row."""

from datetime import date

from django.db import migrations

# Standard rates in force on 2024-01-01, then every change since (percent).
EU_STANDARD = {
    "AT": 20, "BE": 21, "BG": 20, "CY": 19, "CZ": 21, "DE": 19, "DK": 25, "EE": 22, "ES": 21, "FI": 24,
    "FR": 20, "GR": 24, "HR": 25, "HU": 27, "IE": 23, "IT": 22, "LT": 21, "LU": 17, "LV": 21, "MT": 18,
    "NL": 21, "PL": 23, "PT": 23, "RO": 19, "SE": 25, "SI": 22, "SK": 20,
}
CHANGES = [
    ("FI", date(2024, 9, 1), "25.5"),
    ("SK", date(2025, 1, 1), "23"),
    ("EE", date(2025, 7, 1), "24"),
    ("RO", date(2025, 8, 1), "21"),
]

IMMUTABLE = """
CREATE OR REPLACE FUNCTION billing_document_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'billing document % is immutable: correct it with a credit note (R40)', OLD.number
        USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER billing_document_immutable BEFORE UPDATE OR DELETE ON billing_document
    FOR EACH ROW EXECUTE FUNCTION billing_document_immutable();
"""
MUTABLE = """
DROP TRIGGER IF EXISTS billing_document_immutable ON billing_document;
DROP FUNCTION IF EXISTS billing_document_immutable();
"""


def seed(apps, schema_editor):
    TaxRate = apps.get_model("billing", "TaxRate")
    rows = [TaxRate(country=c, rate=r, effective_from=date(2024, 1, 1), note="EU standard rate")
            for c, r in EU_STANDARD.items()]
    rows += [TaxRate(country=c, rate=r, effective_from=d, note="EU standard rate") for c, d, r in CHANGES]
    TaxRate.objects.bulk_create(rows, ignore_conflicts=True)


def unseed(apps, schema_editor):
    apps.get_model("billing", "TaxRate").objects.filter(note="EU standard rate").delete()


def immutable(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(IMMUTABLE, params=None)


def mutable(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(MUTABLE, params=None)


class Migration(migrations.Migration):
    dependencies = [("billing", "0014_billing_documents_and_tax")]
    operations = [migrations.RunPython(seed, unseed), migrations.RunPython(immutable, mutable)]
