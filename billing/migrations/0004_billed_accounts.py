from django.db import migrations


def open_billed_accounts(apps, schema_editor):
    """Advertisers created before bills existed get their `billed` ledger account."""
    Advertiser = apps.get_model("portal", "Advertiser")
    LedgerAccount = apps.get_model("billing", "LedgerAccount")
    have = set(LedgerAccount.objects.filter(purpose="billed").values_list("advertiser_id", flat=True))
    LedgerAccount.objects.bulk_create(
        [
            LedgerAccount(advertiser_id=a.pk, purpose="billed", currency=a.currency, normal="D")
            for a in Advertiser.objects.exclude(pk__in=have)
        ]
    )


class Migration(migrations.Migration):
    dependencies = [("billing", "0003_bills"), ("portal", "0003_billing_state")]

    operations = [migrations.RunPython(open_billed_accounts, migrations.RunPython.noop)]
