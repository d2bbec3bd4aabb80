"""Testing applications built on qi-base: a pytest plugin and helpers (``qi-base[testing]``).

Installing qi-base registers the plugin with pytest (entry point ``pytest11``); its
client fixtures are async and need pytest-asyncio, which ``pip install
'qi-base[testing]'`` brings with the development brokers (without it they fail the
test saying so, and pytest still starts). The helpers below need no pytest. Fixtures:

- ``qi_memory_client``: a ``memory`` client on a broker of this test alone;
  ``qi_memory_brokers`` is its ``brokers`` value (for the application's own config)
  and ``qi_memory_broker`` the broker itself, with the fault hooks
  (``fail_next_produces``, ``fail_next_commits``, ``fail_next_fetches``,
  ``delay_deliveries``, ``set_unreachable``, ``reset``, ``append_record``);
  :func:`crash` ends a memory consumer as SIGKILL would.
- ``qi_dev_broker``: a :class:`DevCluster` shared by the whole run, a development
  broker (Tansu, or noida-db with ``QI_DEV_BROKER=noida``) or the cluster
  ``QI_TEST_BROKERS`` names; ``qi_dev_client`` is a client on it, of the backend the
  ``qi_dev_backend`` marker, ``--qi-dev-backend`` or the ``qi_dev_backend`` ini option
  names (confluent by default).
- ``qi_backend``, ``qi_config`` and ``qi_client``: a test using them runs once per
  backend of its ``@pytest.mark.qi_backends("memory", "confluent")`` marker, else of
  ``--qi-backends``, else of the ``qi_backends`` ini option (memory by default);
  memory runs on a private broker, the others on ``qi_dev_broker``.

Helpers (they fail the test with an AssertionError, as pytest helpers do):
:func:`read_topic`, :func:`assert_produced` and :func:`wait_for_group`.
"""

from qi.base.streaming.backends.memory import crash
from qi.base.streaming.testing._cluster import TEST_BROKERS_ENV, DevCluster, quick_config
from qi.base.streaming.testing._groups import wait_for_group
from qi.base.streaming.testing._topics import assert_produced, describe_messages, read_topic

__all__ = [
    "TEST_BROKERS_ENV",
    "DevCluster",
    "assert_produced",
    "crash",
    "describe_messages",
    "quick_config",
    "read_topic",
    "wait_for_group",
]
