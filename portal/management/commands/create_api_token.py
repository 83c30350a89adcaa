"""`python manage.py create_api_token USERNAME [--create] [--staff]` (API.md).

Prints the new raw token as the last line of its output; only its hash is stored. `--staff` makes
the user a staff service account in the "Billing manager" role (docs/decisions/0011-staff-roles.md).
"""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from portal.models import ApiToken
from portal.permissions import BILLING_MANAGER


class Command(BaseCommand):
    help = "Issue an API token for a user and print it (the last line of output is the token)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--create", action="store_true", help="create the user if it does not exist")
        parser.add_argument(
            "--staff", action="store_true", help="make the user a support/service user (every endpoint, every advertiser)"
        )
        parser.add_argument("--label", default="cli", help="a note stored with the token")

    def handle(self, *args, username, create, staff, label, **options):
        User = get_user_model()
        with transaction.atomic():
            user = User.objects.filter(username=username).first()
            if user is None:
                if not create:
                    raise CommandError(f"There is no user {username!r}; pass --create to make one.")
                user = User.objects.create_user(username=username)
                self.stdout.write(f"Created user {username}.")
            if staff and not user.is_staff:
                user.is_staff = True
                user.save(update_fields=["is_staff"])
                self.stdout.write(f"{username} is now a staff (support/service) user.")
            if staff and not user.is_superuser and not user.groups.exists():
                # The rights every staff token had before roles existed; a superuser may move it.
                user.groups.add(Group.objects.get_or_create(name=BILLING_MANAGER)[0])
                self.stdout.write(f"{username} has the {BILLING_MANAGER} role.")
            token, raw = ApiToken.issue(user=user, label=label)
        self.stdout.write(f"Token {token.prefix}… issued for {username}. It is shown once; store it now:")
        self.stdout.write(raw)
