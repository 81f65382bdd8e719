"""`@activity`: a function that, called inside a run, is recorded and replayed as a step.

    @activity(kind="tool")
    def issue_refund(order_id, amount): ...

    @activity("summarise", kind="llm", retries=2)
    async def summarise(text): ...

Called inside `client.run(...)` (found through a context variable) it goes through
`run.call` / `run.acall`; called anywhere else it is the plain function. While an activity's
function runs, no run is current, so activities it calls are plain calls, part of it.
"""

from __future__ import annotations

import contextvars
import functools
import inspect

current_run: contextvars.ContextVar = contextvars.ContextVar("flightdeck_run", default=None)

RESERVED = ("kind", "key", "retries", "backoff", "identity")


def activity(name=None, *, kind: str = "tool", retries: int = 0, backoff: float = 1.0,
             key=None, identity: str | None = None):
    """Decorator. `name` defaults to the function's name; `key` may be a string or a function
    of the call's arguments returning one (the activity key, see Run.call)."""

    def wrap(fn):
        activity_type = name if isinstance(name, str) else fn.__name__

        def options(args, kwargs) -> dict:
            chosen = key(*args, **kwargs) if callable(key) else key
            return {"kind": kind, "key": chosen, "retries": retries, "backoff": backoff,
                    "identity": identity}

        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def async_wrapper(*args, **kwargs):
                run = current_run.get()
                if run is None:
                    return await fn(*args, **kwargs)
                return await run._acall(activity_type, fn, args, kwargs, **options(args, kwargs))

            async_wrapper.activity_type = activity_type
            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            run = current_run.get()
            if run is None:
                return fn(*args, **kwargs)
            return run._call(activity_type, fn, args, kwargs, **options(args, kwargs))

        wrapper.activity_type = activity_type
        return wrapper

    if callable(name) and not isinstance(name, str):  # bare @activity
        fn, name = name, None
        return wrap(fn)
    return wrap
