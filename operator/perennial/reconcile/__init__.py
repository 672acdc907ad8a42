"""The reconcilers' shells, shared by the operator and the local runner.

Each module here holds one reconciler (read state, decide through :mod:`perennial.core`,
write what changed) written against a small port (a :class:`typing.Protocol`): the
operator's adapter (:mod:`perennial.controllers`) reads the watch-fed cluster state and
writes through the API; the local runner's adapter (:mod:`perennial.local`) reads and
writes its state store and runs processes. Nothing here does I/O of its own: no
Kubernetes client, no files, no clock (time comes from the port).
"""
