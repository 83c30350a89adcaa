"""The browser dashboard. Every advertiser page lives under /a/<advertiser_id>/, every Business Center
page under /bc/<bc_id>/."""

from django.contrib.auth import views as auth_views
from django.urls import path

from billing import views as billing_views
from portal import alert_views, api_access_views, login, views
from promotions import views as promotions_views

urlpatterns = [
    path("login/", login.login_view, name="login"),  # rate-limited failed attempts
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", views.home, name="dashboard"),
    path("a/<int:advertiser_id>/", views.advertiser_home, name="advertiser_home"),
    path("a/<int:advertiser_id>/campaigns/", views.campaigns, name="campaigns"),
    path("a/<int:advertiser_id>/notifications/", views.notifications, name="notifications"),
    path("a/<int:advertiser_id>/notifications/read/", views.notifications_read, name="notifications_read"),
    path("a/<int:advertiser_id>/notifications/settings/", alert_views.notification_settings,
         name="notification_settings"),
    path("a/<int:advertiser_id>/api-access/", api_access_views.api_access, name="api_access"),
    path(
        "a/<int:advertiser_id>/api-access/tokens/<int:token_id>/revoke/",
        api_access_views.api_token_revoke_view,
        name="api_token_revoke",
    ),
    path("a/<int:advertiser_id>/api-access/webhooks/", api_access_views.webhooks_view, name="webhooks"),
    path("a/<int:advertiser_id>/api-access/webhooks/<int:webhook_id>/", api_access_views.webhook_deliveries_view,
         name="webhook_deliveries"),
    path("a/<int:advertiser_id>/api-access/webhooks/<int:webhook_id>/delete/", api_access_views.webhook_delete_view,
         name="webhook_delete"),
    path(
        "a/<int:advertiser_id>/api-access/webhooks/<int:webhook_id>/deliveries/<int:delivery_id>/redeliver/",
        api_access_views.webhook_redeliver_view,
        name="webhook_redeliver",
    ),
    path("a/<int:advertiser_id>/payments/", billing_views.overview, name="payments_overview"),
    path("a/<int:advertiser_id>/payments/transactions/", billing_views.transactions, name="payments_transactions"),
    path(
        "a/<int:advertiser_id>/payments/transactions.csv",
        billing_views.transactions_csv,
        name="payments_transactions_csv",
    ),
    path(
        "a/<int:advertiser_id>/payments/transactions/<int:transaction_id>/why/",
        billing_views.charge_explanation,
        name="payments_charge_explanation",
    ),
    path("a/<int:advertiser_id>/payments/add-funds/", billing_views.add_funds, name="payments_add_funds"),
    path("a/<int:advertiser_id>/payments/bills/", billing_views.bills, name="payments_bills"),
    path("a/<int:advertiser_id>/payments/bills/<int:bill_id>/", billing_views.bill_detail, name="payments_bill"),
    path("a/<int:advertiser_id>/payments/bills/<int:bill_id>.pdf", billing_views.bill_pdf, name="payments_bill_pdf"),
    path("a/<int:advertiser_id>/payments/bills/<int:bill_id>/pay/", billing_views.bill_pay_view, name="payments_bill_pay"),
    path("a/<int:advertiser_id>/payments/documents/", billing_views.documents, name="payments_documents"),
    path(
        "a/<int:advertiser_id>/payments/documents/<int:document_id>/pdf/",
        billing_views.document_pdf_view,
        name="payments_document_pdf",
    ),
    path(
        "a/<int:advertiser_id>/payments/payment-method/", billing_views.payment_method, name="payments_payment_method"
    ),
    path(
        "a/<int:advertiser_id>/payments/billing-method/", billing_views.billing_method, name="payments_billing_method"
    ),
    path(
        "a/<int:advertiser_id>/payments/billing-profile/",
        billing_views.billing_profile,
        name="payments_billing_profile",
    ),
    path("a/<int:advertiser_id>/payments/refund/", billing_views.refund_close, name="payments_refund_close"),
    path("a/<int:advertiser_id>/payments/promotions/", promotions_views.promotions, name="payments_promotions"),
    path(
        "a/<int:advertiser_id>/payments/promotions/credits/<int:credit_id>/usage/",
        promotions_views.credit_usage,
        name="payments_credit_usage",
    ),
    path(
        "a/<int:advertiser_id>/payments/promotions/credits/<int:credit_id>/assign/",
        promotions_views.credit_assign_campaigns,
        name="payments_credit_assign",
    ),
    path("a/<int:advertiser_id>/payments/promotions/redeem/", promotions_views.redeem_code, name="payments_redeem_code"),
    path("a/<int:advertiser_id>/payments/promotions/appeal/", promotions_views.appeal_create, name="payments_appeal"),
    path(
        "a/<int:advertiser_id>/appeals/<int:appeal_id>/attachments/<int:attachment_id>/",
        promotions_views.appeal_attachment,
        name="appeal_attachment",
    ),
    path("a/<int:advertiser_id>/payments/credits/", promotions_views.credits, name="payments_credits"),  # old address
    path("a/<int:advertiser_id>/shop/coupon-progress/", promotions_views.coupon_progress, name="shop_coupon_progress"),
    # a Business Center's pages, for its admins and finance members
    path("bc/<int:bc_id>/documents/", billing_views.bc_documents, name="bc_documents"),
]
