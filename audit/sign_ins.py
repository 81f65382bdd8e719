"""Sign-ins, sign-outs and failed sign-ins go into the audit log."""

from __future__ import annotations

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from audit.log import record


@receiver(user_logged_in, dispatch_uid="audit.sign_in")
def _signed_in(sender, request, user, **kwargs) -> None:
    record("auth.signed_in", actor=user, request=request, obj=user, object_type="auth.user")


@receiver(user_logged_out, dispatch_uid="audit.sign_out")
def _signed_out(sender, request, user, **kwargs) -> None:
    if user is not None:
        record("auth.signed_out", actor=user, request=request, obj=user)


@receiver(user_login_failed, dispatch_uid="audit.sign_in_failed")
def _sign_in_failed(sender, credentials, request=None, **kwargs) -> None:
    # The attempted username only: Django has already masked the password in `credentials`.
    username = str(credentials.get("username", ""))[:150]
    record(
        "auth.sign_in_failed",
        request=request,
        object_type="auth.user",
        object_repr=username,
    )
