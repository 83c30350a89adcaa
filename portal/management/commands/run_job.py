from datetime import datetime

from django.core.management.base import BaseCommand, CommandError

from portal.jobs import JOBS, job_run


class Command(BaseCommand):
    help = "Run one periodic job now, optionally as of another moment (SPEC R33)."

    def add_arguments(self, parser):
        parser.add_argument("name", choices=sorted(JOBS))
        parser.add_argument("--at", help="act as of this ISO 8601 timestamp with offset, e.g. 2026-12-01T00:00:00+00:00")

    def handle(self, *args, name, at=None, **options):
        when = None
        if at:
            try:
                when = datetime.fromisoformat(at)
            except ValueError:
                raise CommandError(f"--at {at!r} is not an ISO 8601 timestamp") from None
            if when.tzinfo is None:
                raise CommandError(f"--at {at!r} needs a UTC offset, e.g. {at}+00:00")
        counts = job_run(name=name, at=when)
        self.stdout.write(f"{name}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
