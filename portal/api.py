from ninja import NinjaAPI

api = NinjaAPI(title="Ad Credit & Billing Portal API", version="1", urls_namespace="api")
