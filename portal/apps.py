from django.apps import AppConfig
from django.db.backends.signals import connection_created

from portal import dbtypes


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Accounts"

    def ready(self):
        connection_created.connect(dbtypes.register, dispatch_uid="portal.dbtypes")
