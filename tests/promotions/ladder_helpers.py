"""The ladder program the ladder tests share (SPEC R16–R19): three tiers, the top one immediate."""

from promotions.programs import program_create

TIERS = [
    {"threshold": "100.00", "reward": "50.00"},
    {"threshold": "500.00", "reward": "300.00"},
    {"threshold": "2000.00", "reward": "1500.00", "immediate": True},
]


def new_program(**kw):
    """A new-advertiser program with a 30-day window and free-credit rewards, through the service."""
    fields = dict(name="Spend X Get Y", kind="new_advertiser", window_days=30, tiers=TIERS, reward_kind="free")
    fields.update(kw)
    return program_create(**fields)
