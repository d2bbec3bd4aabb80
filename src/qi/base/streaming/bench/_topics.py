"""Creating and deleting the runner's topics with a raw admin client (never a measured one)."""

from __future__ import annotations

import asyncio
import importlib.util
import uuid
from typing import Any

_TIMEOUT = 30.0


def topic_name(scenario: str) -> str:
    return f"qi-bench-{scenario}-{uuid.uuid4().hex[:10]}"


class Topics:
    """Topic administration through confluent-kafka, or aiokafka when it is the only one."""

    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap
        self._use_confluent = importlib.util.find_spec("confluent_kafka") is not None

    async def create(self, name: str, partitions: int) -> None:
        if self._use_confluent:
            await asyncio.to_thread(self._confluent_create, name, partitions)
        else:
            await self._aiokafka_call("create", name, partitions)

    async def delete(self, name: str) -> None:
        """Best effort: a leftover topic costs broker memory, not correctness."""
        try:
            if self._use_confluent:
                await asyncio.to_thread(self._confluent_delete, name)
            else:
                await self._aiokafka_call("delete", name, 0)
        except Exception:
            return

    def _confluent_admin(self) -> Any:
        from confluent_kafka.admin import AdminClient

        return AdminClient({"bootstrap.servers": self._bootstrap, "client.id": "qi-bench-admin"})

    def _confluent_create(self, name: str, partitions: int) -> None:
        from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined, unused-ignore]

        admin = self._confluent_admin()  # must outlive its futures, or they fail with _DESTROY
        futures = admin.create_topics([NewTopic(name, partitions, 1)], request_timeout=_TIMEOUT)
        for future in futures.values():
            future.result(_TIMEOUT)

    def _confluent_delete(self, name: str) -> None:
        admin = self._confluent_admin()
        futures = admin.delete_topics([name], request_timeout=_TIMEOUT)
        for future in futures.values():
            future.result(_TIMEOUT)

    async def _aiokafka_call(self, action: str, name: str, partitions: int) -> None:
        from aiokafka.admin import (  # type: ignore[import-untyped, unused-ignore]
            AIOKafkaAdminClient,
            NewTopic,
        )

        admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap, client_id="qi-bench-admin")
        await admin.start()
        try:
            if action == "create":
                await admin.create_topics([NewTopic(name, partitions, 1)])
            else:
                await admin.delete_topics([name])
        finally:
            await admin.close()
