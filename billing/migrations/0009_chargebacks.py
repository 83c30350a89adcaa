# Chargebacks (SPEC R14, R30; docs/decisions/0010): one per gateway reference.

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('billing', '0008_sealed_transactions'),
        ('portal', '0006_staff_groups'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='Chargeback',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('reference', models.CharField(max_length=64)),
                ('charge_reference', models.CharField(blank=True, default='', max_length=64)),
                ('amount', models.DecimalField(decimal_places=4, max_digits=20)),
                ('currency', models.CharField(max_length=3)),
                ('reason', models.CharField(max_length=500)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('advertiser', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='chargebacks', to='portal.advertiser')),
                ('bill', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='chargebacks', to='billing.bill')),
                ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('deposit', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='chargebacks', to='billing.deposit')),
                ('transaction', models.OneToOneField(on_delete=django.db.models.deletion.PROTECT, related_name='chargeback', to='billing.ledgertransaction')),
            ],
            options={
                'indexes': [models.Index(fields=['charge_reference'], name='chargeback_charge_ref')],
                'constraints': [models.UniqueConstraint(fields=('reference',), name='chargeback_reference_unique'), models.UniqueConstraint(condition=models.Q(('deposit__isnull', False)), fields=('deposit',), name='chargeback_one_per_deposit'), models.CheckConstraint(condition=models.Q(('amount__gt', 0)), name='chargeback_amount_gt_0'), models.CheckConstraint(condition=models.Q(models.Q(('bill__isnull', False), ('deposit__isnull', True)), models.Q(('bill__isnull', True), ('deposit__isnull', False)), _connector='OR'), name='chargeback_of_a_bill_or_a_deposit')],
            },
        ),
    ]
