import json
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from tests.api_helpers import Api, api_user
from tests.factories import AdvertiserFactory, CampaignFactory, deposit, grant, token_for
import pytest
pytestmark = pytest.mark.django_db

def test_probe(settings):
    adv = AdvertiserFactory(); camp = CampaignFactory(advertiser=adv)
    deposit(adv, "1000.00", key="d1"); grant(adv, "free", "10.00", key="g1")
    tok = token_for(api_user(is_staff=True))
    api = Api()
    def ev(i): return {"event_id": f"e{i}", "advertiser_id": adv.pk, "campaign_id": camp.pk, "amount": "1.00",
                      "currency": adv.currency, "occurred_at": timezone.now().isoformat()}
    api.post("/spend", {"events": [ev(0)]}, token=tok)
    for n in (1, 10):
        with CaptureQueriesContext(connection) as c:
            r = api.post("/spend", {"events": [ev(100*n+i) for i in range(n)]}, token=tok)
        assert r.status_code == 201, r.content
        print("N", n, len(c.captured_queries))
        for q in c.captured_queries: print("  ", q["sql"][:160])
