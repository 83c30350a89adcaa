"""Money is exact (SPEC R4): parsing, minor units, the one rounding rule, and refusals that record nothing."""

from decimal import Decimal

import pytest

from billing.deposits import deposit_create
from billing.models import Deposit, LedgerEntry, LedgerTransaction, SpendEvent
from billing.money import fmt, parse_amount, quantum, round_down
from billing.spend import spend_record, spend_record_batch
from portal.errors import BadInput
from tests.factories import AdvertiserFactory, CampaignFactory


# --- parse_amount: minor units per currency -----------------------------------------------------


@pytest.mark.parametrize(
    ("value", "currency", "expected"),
    [
        ("12.50", "USD", Decimal("12.50")),
        ("12.5", "USD", Decimal("12.50")),
        ("12", "USD", Decimal("12.00")),
        (12, "USD", Decimal("12.00")),
        ("1500", "JPY", Decimal("1500")),
        ("1.234", "KWD", Decimal("1.234")),
        ("0.001", "KWD", Decimal("0.001")),
        ("0.01", "USD", Decimal("0.01")),
    ],
)
def test_r4_amount_is_parsed_exactly_to_the_currency_minor_unit(value, currency, expected):
    # given an amount with no more places than its currency allows
    # when it is parsed
    amount = parse_amount(value, currency)
    # then it is that exact Decimal, carrying exactly the currency's places
    assert amount == expected
    assert amount.as_tuple().exponent == expected.as_tuple().exponent


@pytest.mark.parametrize(
    ("value", "currency"),
    [
        ("12.345", "USD"),  # 3 places in USD
        ("12.500", "USD"),  # even trailing zeros: ambiguous about its currency (decision 0004)
        ("1.5", "JPY"),  # JPY has no minor unit
        ("100.0", "JPY"),
        ("1.2345", "KWD"),  # KWD has 3
        ("0.001", "USD"),
    ],
)
def test_r4_more_places_than_the_currency_allows_is_refused(value, currency):
    with pytest.raises(BadInput) as e:
        parse_amount(value, currency)
    assert e.value.code == "invalid_amount"
    assert "decimal places" in e.value.message


@pytest.mark.parametrize("value", ["-1.00", "-0.01", "0", "0.00", "-0", "NaN", "nan", "sNaN", "Infinity", "-inf",
                                   "abc", "", "1,50", "0x10", None, True, False, "1e15", "1000000000000000"])
def test_r4_negative_zero_non_finite_and_garbage_are_refused(value):
    with pytest.raises(BadInput) as e:
        parse_amount(value, "USD")
    assert e.value.code == "invalid_amount"


@pytest.mark.parametrize("value", ["1_000", "2_5.00", " 25.00 ", " 7.01 ", "+25.00", "2.5e1", "1e3", "25.", ".5",
                                   "２５", "25\n", "\t25", "1 000", {"amount": "1"}, ["1"], b"25"])
def test_r4_only_the_documented_spelling_is_an_amount(value):
    """API.md: `^[0-9]+(\\.[0-9]+)?$`, one parser for every door (issue 9). `Decimal` itself
    would take underscores, signs, spaces, exponents and a bare point."""
    with pytest.raises(BadInput) as e:
        parse_amount(value, "USD")
    assert e.value.code == "invalid_amount"


def test_r4_zero_is_accepted_only_when_asked_for():
    assert parse_amount("0.00", "USD", allow_zero=True) == Decimal("0.00")
    with pytest.raises(BadInput):
        parse_amount("0.00", "USD")


@pytest.mark.parametrize("value", [0.1 + 0.2, 1 / 3, 12.345, float("nan"), float("inf"), 1e-7])
def test_r4_a_float_that_is_not_exactly_a_valid_amount_is_refused(value):
    # Decision 0004: a float (a JSON number) is read through its shortest decimal representation,
    # so one whose binary value is not exactly a cent amount is refused, never rounded.
    with pytest.raises(BadInput) as e:
        parse_amount(value, "USD")
    assert e.value.code == "invalid_amount"


def test_r4_a_float_beyond_double_precision_is_refused_not_silently_changed():
    # given a JSON number with 16 significant digits: the nearest double is 99999999999999.984375,
    # whose shortest representation is 99999999999999.98 — another amount than the one sent
    value = float("99999999999999.99")
    assert repr(value) == "99999999999999.98"
    # when / then it is refused rather than recorded as a different amount
    with pytest.raises(BadInput) as e:
        parse_amount(value, "USD")
    assert e.value.code == "invalid_amount"


def test_r4_a_float_that_is_exactly_a_cent_amount_is_read_as_that_decimal():
    assert parse_amount(12.5, "USD") == Decimal("12.50")
    assert parse_amount(19.99, "USD") == Decimal("19.99")
    assert parse_amount(0.05, "USD") == Decimal("0.05")
    assert parse_amount(123456789012.34, "USD") == Decimal("123456789012.34")  # 14 digits: exact


@pytest.mark.parametrize("currency", ["usd", "XXX", "", None, 840, "US"])
def test_r4_unknown_currency_is_refused(currency):
    with pytest.raises(BadInput) as e:
        parse_amount("1.00", currency)
    assert e.value.code == "invalid_currency"


# --- round_down: the one rounding rule ---------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (Decimal("16.665"), "USD", Decimal("16.66")),
        (Decimal("16.669999"), "USD", Decimal("16.66")),
        (Decimal("0.009"), "USD", Decimal("0.00")),
        (Decimal("999.9"), "JPY", Decimal("999")),
        (Decimal("1.23456"), "KWD", Decimal("1.234")),
        (Decimal("5"), "USD", Decimal("5.00")),
    ],
)
def test_r7_round_down_is_toward_zero_to_the_minor_unit(amount, currency, expected):
    got = round_down(amount, currency)
    assert got == expected and got.as_tuple().exponent == expected.as_tuple().exponent


def test_r4_quantum_and_fmt_follow_minor_units():
    assert quantum("USD") == Decimal("0.01")
    assert quantum("JPY") == Decimal("1")
    assert quantum("KWD") == Decimal("0.001")
    assert fmt(Decimal("12.5000"), "USD") == "12.50"
    assert fmt(Decimal("1500.0000"), "JPY") == "1500"
    assert fmt(Decimal("1.2000"), "KWD") == "1.200"


# --- through the services: a refused amount records nothing --------------------------------------


def _ledger_counts():
    return LedgerTransaction.objects.count(), LedgerEntry.objects.count(), SpendEvent.objects.count(), Deposit.objects.count()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("currency", "amount", "code"),
    [
        ("USD", "1.234", "invalid_amount"),
        ("USD", "-5.00", "invalid_amount"),
        ("USD", "0", "invalid_amount"),
        ("USD", "NaN", "invalid_amount"),
        ("JPY", "10.5", "invalid_amount"),
        ("KWD", "1.2345", "invalid_amount"),
    ],
)
def test_r4_spend_with_a_bad_amount_is_refused_and_nothing_is_recorded(currency, amount, code, spend_event):
    # given an account in `currency` with a campaign
    campaign = CampaignFactory(advertiser=AdvertiserFactory(currency=currency))
    before = _ledger_counts()
    # when a spend event carries a bad amount
    with pytest.raises(BadInput) as e:
        spend_record(event=spend_event(campaign, amount))
    # then it is refused with the event's index and nothing is on the ledger
    assert e.value.code == code
    assert e.value.details == {"index": 0}
    assert _ledger_counts() == before


@pytest.mark.django_db
def test_r4_spend_in_another_currency_than_the_account_is_refused(spend_event):
    campaign = CampaignFactory(advertiser=AdvertiserFactory(currency="USD"))
    before = _ledger_counts()
    with pytest.raises(BadInput) as e:
        spend_record(event=spend_event(campaign, "10.00", currency="EUR"))
    assert e.value.code == "currency_mismatch"
    assert _ledger_counts() == before


@pytest.mark.django_db
def test_r4_one_bad_event_refuses_the_whole_batch(spend_event):
    # given a batch whose third event has 3 places in USD
    campaign = CampaignFactory()
    events = [spend_event(campaign, "1.00"), spend_event(campaign, "2.00"), spend_event(campaign, "3.001")]
    before = _ledger_counts()
    with pytest.raises(BadInput) as e:
        spend_record_batch(events=events)
    # then the batch is refused naming event 2, and not even the good events are recorded
    assert e.value.code == "invalid_amount"
    assert e.value.details == {"index": 2}
    assert e.value.message.startswith("events[2]:")
    assert _ledger_counts() == before


@pytest.mark.django_db
@pytest.mark.parametrize(("currency", "amount", "expected"), [("JPY", "5000", Decimal("5000")),
                                                             ("KWD", "10.125", Decimal("10.125")),
                                                             ("USD", "20.05", Decimal("20.05"))])
def test_r4_money_keeps_each_currency_exact_through_the_ledger(currency, amount, expected, spend_event):
    # given a manual account funded in its currency
    adv = AdvertiserFactory(currency=currency)
    campaign = CampaignFactory(advertiser=adv)
    deposit_create(advertiser=adv, amount=amount, idempotency_key="k1")
    # when it spends a third of the deposit, rounded to the minor unit
    third = round_down(expected / 3, currency)
    result = spend_record(event=spend_event(campaign, str(third)))
    # then cash paid exactly that and exactly the rest stays
    assert result.allocation.cash == third
    from billing.selectors import advertiser_balances

    assert advertiser_balances(advertiser=adv).cash_balance == expected - third


@pytest.mark.django_db
@pytest.mark.parametrize("amount", ["25.001", "-25.00", "0", "inf", 0.1 + 0.2])
def test_r4_deposit_with_a_bad_amount_records_nothing(amount):
    adv = AdvertiserFactory()
    before = _ledger_counts()
    with pytest.raises(BadInput) as e:
        deposit_create(advertiser=adv, amount=amount, idempotency_key="bad")
    assert e.value.code == "invalid_amount"
    assert _ledger_counts() == before
