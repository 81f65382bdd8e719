"""Signals the history app sends, so that other apps can react to ingested events without
history importing them.

`events_stored` is sent inside the ingest transaction, once per run of a batch, after that
run's new events are written: `sender` is the Run, `events` the newly stored events (ParsedEvent,
attributes as the agent sent them, not masked; receivers must mask what they keep). Duplicates
and conflicts are not included. A receiver runs in the same transaction: what it writes commits
or rolls back with the events. It must not raise; wrap its work in a savepoint and log.
"""

from django.dispatch import Signal

events_stored = Signal()
