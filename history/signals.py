"""Signals the history app sends, so that other apps can react to ingested events without
history importing them.

`events_stored` is sent inside the ingest transaction, once per run of a batch, after that
run's new events are written: `sender` is the Run, `events` the newly stored events (ParsedEvent,
attributes as the agent sent them, not masked; receivers must mask what they keep). Duplicates
and conflicts are not included. A receiver runs in the same transaction: what it writes commits
or rolls back with the events. It must not raise; wrap its work in a savepoint and log.

`batch_stored` is sent once per batch, in the same transaction, after every run's
`events_stored`: `sender` is the Agent that sent the batch (as loaded for this request), `runs`
a list of (Run, events) for each run with new events, in (workflow_id, run_id) order, events as
in `events_stored`. For receivers whose work costs round trips per batch rather than per event
(governance): one savepoint and one query for every run of the batch. Same rules as above.
"""

from django.dispatch import Signal

events_stored = Signal()
batch_stored = Signal()
