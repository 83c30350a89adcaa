"""Automatic bills get a number per account, 1, 2, 3… (issue 13, decision 0031): one account used
to see its threshold bills as #1, #2, #6, #8 (row ids shared by every account) and looked for the
missing ones.

The bills already made are numbered per account in the order they were made, (issued_at, id),
in one set-based UPDATE; then every automatic bill has a number, unique in its account, and no
monthly invoice has one (it keeps its own invoice number)."""

from django.db import migrations, models

NUMBER_EXISTING = """
UPDATE billing_bill SET seq = numbered.n
FROM (
    SELECT id, ROW_NUMBER() OVER (PARTITION BY advertiser_id ORDER BY issued_at, id) AS n
    FROM billing_bill
    WHERE kind <> 'monthly_invoice'
) AS numbered
WHERE billing_bill.id = numbered.id
"""


class Migration(migrations.Migration):

    dependencies = [
        ("billing", "0017_document_list_indexes_with_id"),
    ]

    operations = [
        migrations.AddField(
            model_name="bill",
            name="seq",
            field=models.PositiveIntegerField(blank=True, editable=False, null=True, verbose_name="number in account"),
        ),
        migrations.RunSQL(NUMBER_EXISTING, reverse_sql=migrations.RunSQL.noop, elidable=False),
        migrations.AddConstraint(
            model_name="bill",
            constraint=models.UniqueConstraint(fields=("advertiser", "seq"), name="bill_seq_per_advertiser"),
        ),
        migrations.AddConstraint(
            model_name="bill",
            constraint=models.CheckConstraint(
                condition=models.Q(("kind", "monthly_invoice"), ("seq__isnull", True))
                | models.Q(models.Q(("kind", "monthly_invoice"), _negated=True), ("seq__gte", 1), ("seq__isnull", False)),
                name="bill_seq_iff_automatic",
            ),
        ),
    ]
