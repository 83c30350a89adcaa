"""The funding waterfall, pure (SPEC R7–R12): `billing.waterfall.allocate` without a database."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from billing.waterfall import Allocation, Charge, CreditState, Funds, allocate

D = Decimal
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CAMPAIGN = 7


def credit(id, kind="free", remaining="100.00", *, valid_from=None, expires_at=None, percent=None, **kw):
    valid_from = valid_from or T0 - timedelta(days=1)
    return CreditState(
        id=id, kind=kind, remaining=D(remaining), valid_from=valid_from,
        expires_at=expires_at or valid_from + timedelta(days=90),
        percent=D(percent) if percent is not None else None, **kw,
    )


def charge(amount, *, at=T0, kind="ad_spend", objective="TRAFFIC", product_source="NONE", currency="USD",
           campaign_id=CAMPAIGN):
    return Charge(D(amount), currency, campaign_id, objective, product_source, at, kind)


def manual(cash="0.00"):
    return Funds(billing_method="manual", cash=D(cash))


# --- R7: "50% off, up to $100" ------------------------------------------------------------------


def test_r7_discount_takes_half_of_each_charge_until_its_cap_then_full_price():
    # given "50% off, up to $100" and plenty of cash
    disc = credit(1, "discount", "100.00", percent="50")
    funds = manual("1000.00")
    paid = []
    # when charges of 80, 80, 80 occur
    for amount in ("80.00", "80.00", "80.00"):
        paid.append(allocate(charge(amount), [disc], funds))
    # then the discount pays 40, 40, then the 20 left of its cap; cash pays the rest
    assert [a.discount for a in paid] == [D("40.00"), D("40.00"), D("20.00")]
    assert [a.cash for a in paid] == [D("40.00"), D("40.00"), D("60.00")]
    assert disc.remaining == D("0.00")
    # and once the cap is spent, billing is back to full price
    after = allocate(charge("80.00"), [disc], funds)
    assert (after.discount, after.discount_credit_id, after.cash) == (D("0"), None, D("80.00"))


def test_r7_discount_rounds_down_to_the_minor_unit():
    # 33.33 × 50% = 16.665 → 16.66; the advertiser pays 16.67
    a = allocate(charge("33.33"), [credit(1, "discount", "100.00", percent="50")], manual("100.00"))
    assert (a.discount, a.cash) == (D("16.66"), D("16.67"))


def test_r7_discount_rounds_down_in_jpy_and_kwd():
    jpy = allocate(charge("999", currency="JPY"), [credit(1, "discount", "10000", percent="12.5")], manual("5000"))
    assert (jpy.discount, jpy.cash) == (D("124"), D("875"))  # 124.875 → 124
    kwd = allocate(charge("1.001", currency="KWD"), [credit(1, "discount", "10.000", percent="33.33")], manual("5.000"))
    assert (kwd.discount, kwd.cash) == (D("0.333"), D("0.668"))  # 0.33363… → 0.333


def test_r7_a_tiny_charge_whose_discount_rounds_to_zero_uses_no_discount():
    a = allocate(charge("0.01"), [credit(1, "discount", "100.00", percent="50")], manual("1.00"))
    assert (a.discount, a.discount_credit_id, a.cash) == (D("0"), None, D("0.01"))


def test_r10_only_one_discount_per_charge_the_one_expiring_soonest():
    # given two discounts; the 10% one expires first
    late = credit(1, "discount", "100.00", percent="50", expires_at=T0 + timedelta(days=30))
    soon = credit(2, "discount", "100.00", percent="10", expires_at=T0 + timedelta(days=3))
    a = allocate(charge("100.00"), [late, soon], manual("1000.00"))
    # then only the soonest-expiring one applies, and the other is untouched
    assert (a.discount, a.discount_credit_id) == (D("10.00"), 2)
    assert late.remaining == D("100.00")
    assert a.cash == D("90.00")


def test_r10_discount_first_then_coupon_then_free_credit_then_cash():
    # given one of each, all eligible; the free credit expires first, to show kind beats expiry
    free = credit(1, "free", "10.00", expires_at=T0 + timedelta(days=1))
    coupon = credit(2, "assignable", "10.00", campaign_ids=frozenset({CAMPAIGN}))
    disc = credit(3, "discount", "100.00", percent="20")
    a = allocate(charge("50.00"), [free, coupon, disc], manual("100.00"))
    # then 20% off (10), coupon 10, free 10, cash 20
    assert (a.discount, a.discount_credit_id) == (D("10.00"), 3)
    assert a.coupons == [(2, D("10.00"))]
    assert a.credits == [(1, D("10.00"))]
    assert (a.cash, a.arrears) == (D("20.00"), D("0"))
    assert a.total() == D("50.00")


def test_r10_within_a_step_earliest_expiry_then_earliest_start_then_lowest_id():
    end = T0 + timedelta(days=5)
    c_late = credit(1, "free", "5.00", expires_at=T0 + timedelta(days=9))
    c_start_late = credit(2, "free", "5.00", valid_from=T0 - timedelta(days=1), expires_at=end)
    c_start_early_hi = credit(4, "free", "5.00", valid_from=T0 - timedelta(days=2), expires_at=end)
    c_start_early_lo = credit(3, "free", "5.00", valid_from=T0 - timedelta(days=2), expires_at=end)
    a = allocate(charge("17.00"), [c_late, c_start_late, c_start_early_hi, c_start_early_lo], manual())
    assert a.credits == [(3, D("5.00")), (4, D("5.00")), (2, D("5.00")), (1, D("2.00"))]
    assert c_late.remaining == D("3.00")


def test_r10_coupons_are_ordered_by_expiry_too():
    first = credit(9, "assignable", "3.00", expires_at=T0 + timedelta(days=2), campaign_ids=frozenset({CAMPAIGN}))
    second = credit(5, "assignable", "30.00", expires_at=T0 + timedelta(days=20), campaign_ids=frozenset({CAMPAIGN}))
    a = allocate(charge("10.00"), [second, first], manual())
    assert a.coupons == [(9, D("3.00")), (5, D("7.00"))]


def test_r6_an_unassigned_coupon_or_one_assigned_elsewhere_pays_nothing():
    unassigned = credit(1, "assignable", "50.00")
    elsewhere = credit(2, "assignable", "50.00", campaign_ids=frozenset({CAMPAIGN + 1}))
    a = allocate(charge("10.00"), [unassigned, elsewhere], manual("100.00"))
    assert (a.coupons, a.cash) == ([], D("10.00"))


def test_r9_validity_is_half_open_by_occurred_at():
    c = credit(1, "free", "50.00", valid_from=T0, expires_at=T0 + timedelta(hours=1))
    before = allocate(charge("1.00", at=T0 - timedelta(microseconds=1)), [c], manual("10"))
    at_start = allocate(charge("1.00", at=T0), [c], manual("10"))
    last = allocate(charge("1.00", at=T0 + timedelta(hours=1) - timedelta(microseconds=1)), [c], manual("10"))
    at_expiry = allocate(charge("1.00", at=T0 + timedelta(hours=1)), [c], manual("10"))
    assert [x.credits for x in (before, at_start, last, at_expiry)] == [[], [(1, D("1.00"))], [(1, D("1.00"))], []]


def test_r5_eligibility_by_objective_and_product_source():
    only_reach = credit(1, "free", "50.00", eligible_objectives=("REACH",))
    only_shop = credit(2, "free", "50.00", eligible_product_source="TIKTOK_SHOP")
    both = credit(3, "free", "50.00", eligible_objectives=("PRODUCT_SALES",), eligible_product_source="TIKTOK_SHOP")
    credits = [only_reach, only_shop, both]
    assert allocate(charge("1.00", objective="TRAFFIC"), credits, manual("9")).credits == []
    assert allocate(charge("1.00", objective="REACH"), credits, manual("9")).credits == [(1, D("1.00"))]
    assert allocate(charge("1.00", product_source="TIKTOK_SHOP"), credits, manual("9")).credits == [(2, D("1.00"))]
    shop_sales = allocate(charge("60.00", objective="PRODUCT_SALES", product_source="TIKTOK_SHOP"), credits, manual())
    assert shop_sales.credits == [(2, D("49.00")), (3, D("11.00"))]


def test_r8_a_fee_is_never_paid_by_credit():
    credits = [credit(1, "free"), credit(2, "assignable", campaign_ids=frozenset({CAMPAIGN})),
               credit(3, "discount", percent="50")]
    a = allocate(charge("30.00", kind="fee"), credits, manual("10.00"))
    assert (a.discount, a.coupons, a.credits, a.cash, a.arrears) == (D("0"), [], [], D("10.00"), D("20.00"))
    assert [c.remaining for c in credits] == [D("100.00")] * 3


def test_r12_a_credit_that_takes_no_part_pays_nothing():
    frozen = credit(1, "free", "50.00", usable=False)
    a = allocate(charge("5.00"), [frozen], manual("1.00"))
    assert (a.credits, a.cash, a.arrears) == ([], D("1.00"), D("4.00"))


def test_r13_manual_cash_then_arrears():
    funds = manual("3.50")
    a = allocate(charge("10.00"), [], funds)
    assert (a.cash, a.arrears, funds.cash) == (D("3.50"), D("6.50"), D("0.00"))


def test_r24_automatic_accrues_everything_left():
    a = allocate(charge("10.00"), [credit(1, "free", "4.00")], Funds(billing_method="automatic"))
    assert (a.credits, a.accrued, a.arrears) == ([(1, D("4.00"))], D("6.00"), D("0"))


def test_r27_monthly_invoice_uses_the_credit_line_then_arrears():
    funds = Funds(billing_method="monthly_invoice", credit_line_available=D("7.00"))
    a = allocate(charge("10.00"), [], funds)
    assert (a.credit_line, a.arrears, funds.credit_line_available) == (D("7.00"), D("3.00"), D("0.00"))


def test_r17_own_money_is_what_is_not_paid_by_credit():
    a = Allocation(discount=D("1"), credits=[(1, D("2"))], cash=D("3"), arrears=D("4"))
    assert (a.own_money, a.total()) == (D("7"), D("10"))


def test_r17_qualifying_is_own_money_paid_not_owed():
    a = Allocation(discount=D("1"), credits=[(1, D("2"))], cash=D("3"), accrued=D("4"), credit_line=D("5"),
                   arrears=D("6"))
    assert (a.qualifying, a.own_money) == (D("12"), D("18"))
