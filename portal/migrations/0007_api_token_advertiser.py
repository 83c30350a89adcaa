"""API tokens made on an advertiser's API access page (issue 6, decision 0018).

`advertiser` (null for tokens of `manage.py create_api_token`) limits a token to that advertiser;
`idempotency_key` makes a form submitted twice create one token.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('portal', '0006_staff_groups'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='apitoken',
            name='advertiser',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='api_tokens', to='portal.advertiser'),
        ),
        migrations.AddField(
            model_name='apitoken',
            name='idempotency_key',
            field=models.CharField(blank=True, default='', max_length=64),
        ),
        migrations.AddIndex(
            model_name='apitoken',
            index=models.Index(fields=['advertiser', '-created_at'], name='apitoken_adv_created'),
        ),
        migrations.AddConstraint(
            model_name='apitoken',
            constraint=models.UniqueConstraint(condition=models.Q(('idempotency_key', ''), _negated=True), fields=('advertiser', 'idempotency_key'), name='apitoken_adv_idempotency_key_unique'),
        ),
    ]
