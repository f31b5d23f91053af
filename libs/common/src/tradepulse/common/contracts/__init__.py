"""Message contracts: the only thing services share besides settings, logging, metrics and db."""

from tradepulse.common.contracts.base import Contract, Message, new_id
from tradepulse.common.contracts.subjects import Names

__all__ = ["Contract", "Message", "Names", "new_id"]
