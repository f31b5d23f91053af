"""Errors shared by the services; each service adds its own under ServiceError."""

from __future__ import annotations


class ServiceError(Exception):
    """Base of the errors a service raises on purpose; messages are for the user."""


class InvalidRequestError(ServiceError):
    """A request that is well-formed but cannot be carried out (e.g. no data for the window)."""
