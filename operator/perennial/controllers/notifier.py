"""Start and stop the CloudEvents notifier with the operator (kopf startup/cleanup).

The settings come from the ``run`` command (``memo.notifications``) or, when the operator
is started otherwise, from the environment (:func:`perennial.k8s.notifications.
notification_settings`). Without sinks nothing is started and events post as before.
"""

from __future__ import annotations

import os
from typing import Any

import kopf

from perennial.k8s import notifications

__all__ = ["start_notifier", "stop_notifier"]


@kopf.on.startup(id="perennial-notifications")
async def start_notifier(*, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    settings = memo.get("notifications")
    if settings is None:
        try:
            settings = notifications.notification_settings(os.environ)
        except ValueError as exc:
            raise kopf.PermanentError(f"notifications: {exc}") from exc
    if not settings.enabled:
        logger.info("notifications: no sinks configured")
        return
    notifier = notifications.Notifier(settings)
    await notifier.start()
    notifications.install(notifier)
    memo["notifier"] = notifier
    logger.info(
        "notifications: CloudEvents (%s mode) to %s",
        settings.mode,
        ", ".join(notifications.sink_label(url) for url in settings.sinks),
    )


@kopf.on.cleanup(id="perennial-notifications-stop")
async def stop_notifier(*, memo: kopf.Memo, **_: Any) -> None:
    notifier = memo.get("notifier")
    if isinstance(notifier, notifications.Notifier):
        notifications.uninstall(notifier)
        await notifier.stop()
