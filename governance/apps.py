from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    name = "governance"
    verbose_name = "Governance"

    def ready(self) -> None:
        # Once per batch, after every run's events_stored (interventions' receiver among them):
        # an approval request opened by a batch exists when its claims are judged.
        from governance import detection
        from history.signals import batch_stored

        batch_stored.connect(detection.on_batch_stored, dispatch_uid="governance.detection")
