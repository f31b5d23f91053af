"""The registry's errors, under the shared ServiceError hierarchy."""

from __future__ import annotations

from tradepulse.common.errors import InvalidRequestError, ServiceError

__all__ = ["IllegalTransitionError", "InvalidRequestError", "RegistryError"]


class RegistryError(ServiceError):
    """Base of the registry's own errors."""


class IllegalTransitionError(RegistryError):
    """A status change that the lifecycle's transition table does not allow."""
