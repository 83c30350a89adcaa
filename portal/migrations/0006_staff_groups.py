"""The two staff roles as Django Groups (docs/decisions/0011-staff-roles.md).

What each role may do is in `portal.permissions.STAFF_PERMS`; the groups only name the role and
carry no model permissions. Staff users who can log in today (a usable password) and are not
superusers are put in "Billing manager", so nobody loses what they could do before roles existed;
a superuser then moves support people to "Support agent".
"""

from django.db import migrations

SUPPORT_AGENT = "Support agent"
BILLING_MANAGER = "Billing manager"
UNUSABLE_PASSWORD_PREFIX = "!"


def create_groups(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    User = apps.get_model("auth", "User")
    Group.objects.get_or_create(name=SUPPORT_AGENT)
    manager, _ = Group.objects.get_or_create(name=BILLING_MANAGER)
    humans = (
        User.objects.filter(is_staff=True, is_superuser=False, groups__isnull=True)
        .exclude(password="")
        .exclude(password__startswith=UNUSABLE_PASSWORD_PREFIX)
    )
    manager.user_set.add(*humans)


def remove_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=[SUPPORT_AGENT, BILLING_MANAGER]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("portal", "0005_auditlog_append_only"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(create_groups, remove_groups)]
