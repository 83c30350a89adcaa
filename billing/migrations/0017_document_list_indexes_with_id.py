"""The Billing documents pages list newest first, `ORDER BY issued_at DESC, id DESC` (two documents
may share a moment): with `id` in the index the rows come in that order at any OFFSET, where
(advertiser, -issued_at) left PostgreSQL to sort every document of the account (on disk past
work_mem) for a deep page. The new indexes replace the old ones, which they cover."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("billing", "0016_credit_notes_and_refunds"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="document",
            index=models.Index(fields=["advertiser", "-issued_at", "-id"], name="document_adv_issued_id"),
        ),
        migrations.AddIndex(
            model_name="document",
            index=models.Index(fields=["business_center", "-issued_at", "-id"], name="document_bc_issued_id"),
        ),
        migrations.RemoveIndex(model_name="document", name="document_adv_issued"),
        migrations.RemoveIndex(model_name="document", name="document_bc_issued"),
    ]
