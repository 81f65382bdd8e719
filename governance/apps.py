from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    name = "governance"
    verbose_name = "Governance"

    def ready(self) -> None:
        # Listens after interventions (listed before this app in INSTALLED_APPS, so connected
        # first): an approval request opened by a batch exists when its claims are judged.
        from governance import detection
        from history.signals import events_stored

        events_stored.connect(detection.on_events_stored, dispatch_uid="governance.detection")
