from django.apps import AppConfig


class TemporalConfig(AppConfig):
    name = "temporal"
    verbose_name = "Temporal"

    def ready(self) -> None:
        from history.signals import events_stored
        from temporal.confirmations import on_events_stored

        # After interventions' receiver (INSTALLED_APPS order): a command is marked applied
        # once Temporal's record of it is stored in the followed history.
        events_stored.connect(on_events_stored, dispatch_uid="temporal.confirmations")
