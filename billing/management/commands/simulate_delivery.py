"""`manage.py simulate_delivery [--rounds N] [--interval S]`: post demo spend through the real services."""

import time

from django.core.management.base import BaseCommand, CommandError

from billing.simulator import ROUND_SECONDS, simulate_delivery


class Command(BaseCommand):
    help = (
        "Simulate ad delivery for the demo: one spend event per active campaign per round, and a "
        "top-up deposit for manual accounts running low. --rounds 0 runs until interrupted."
    )

    def add_arguments(self, parser):
        parser.add_argument("--rounds", type=int, default=1, help="Rounds to run (0: until Ctrl-C). Default 1.")
        parser.add_argument("--interval", type=float, default=ROUND_SECONDS,
                            help=f"Seconds between rounds. Default {ROUND_SECONDS}.")

    def handle(self, *args, rounds: int, interval: float, **options):
        if rounds < 0 or interval < 0:
            raise CommandError("--rounds and --interval must not be negative.")
        done = 0
        try:
            while rounds == 0 or done < rounds:
                if done:
                    time.sleep(interval)
                counts = simulate_delivery()
                done += 1
                spend = ", ".join(f"{v} {c}" for c, v in counts["spend"].items()) or "nothing"
                line = f"round {done}: {counts['events']} events, spend {spend}"
                if counts["deposits"]:
                    topped = ", ".join(f"{v} {c}" for c, v in counts["deposited"].items())
                    line += f"; {counts['deposits']} top-up deposit(s) of {topped}"
                self.stdout.write(line)
        except KeyboardInterrupt:
            self.stdout.write(f"Stopped after {done} round(s).")
