from django.apps import AppConfig


class InterventionsConfig(AppConfig):
    name = "interventions"
    verbose_name = "Interventions and approvals"

    def ready(self) -> None:
        # The history app announces stored events; interventions listens, so that history
        # never imports from here (commands' effects and approval requests arrive as events).
        from history.signals import events_stored
        from interventions import effects

        events_stored.connect(effects.on_events_stored, dispatch_uid="interventions.effects")
