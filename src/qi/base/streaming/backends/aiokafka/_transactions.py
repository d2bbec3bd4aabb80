"""The aiokafka backend's transactions: its transactional producer, with group fencing."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AiokafkaGroupMetadata:
    """What an aiokafka consumer hands a transaction: who it is in its group (KIP-447)."""

    group_id: str
    generation: int
    member_id: str
