"""`/open_api/v1.3/`: the TikTok Business API v1.3 subset of API.md (decision 0012).

Paths end with a slash, as TikTok's do. Anything else under the prefix answers TikTok's envelope
with code 40001 rather than a redirect or an HTML page. `openapi.json` (no token) describes the
operations (issue 9).
"""

from django.urls import path, re_path

from portal import open_api, open_api_schema

urlpatterns = [
    path("openapi.json", open_api_schema.schema_view, name="open_api_schema"),
    path("advertiser/info/", open_api.advertiser_info, name="open_api_advertiser_info"),
    path("advertiser/balance/get/", open_api.advertiser_balance_get, name="open_api_advertiser_balance_get"),
    path("bc/balance/get/", open_api.bc_balance_get, name="open_api_bc_balance_get"),
    path("bc/account/transaction/get/", open_api.bc_account_transaction_get,
         name="open_api_bc_account_transaction_get"),
    path("bc/transfer/", open_api.bc_transfer_create, name="open_api_bc_transfer"),
    re_path(r"^.*$", open_api.unknown_endpoint, name="open_api_unknown"),
]
