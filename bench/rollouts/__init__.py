"""Rollouts under load and a server soak through ``perennial local`` (``make rollouts``)."""
