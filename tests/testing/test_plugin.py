"""The pytest plugin as a user's project sees it: test files run in a sub-pytest.

Each test writes a user's test module, runs it with pytester (in this process, so the
plugin comes from the ``pytest11`` entry point as it does for a user) and checks the
outcomes and failure messages. All but one run on the memory backend.
"""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

# What a user's project puts in its pytest configuration to run async tests.
USER_INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""

USER_IMPORTS = """
import asyncio

import pytest

from qi.base.streaming import (
    ConsumerConfig, ConsumerRunConfig, EachMessagePayload, StreamingMessage,
    SubscriptionConfig, TopicConfig,
)
from qi.base.streaming.testing import assert_produced, crash, read_topic, wait_for_group
"""


def run_user_tests(pytester: pytest.Pytester, body: str, *args: str) -> pytest.RunResult:
    pytester.makeini(USER_INI)
    pytester.makepyfile(test_user=USER_IMPORTS + textwrap.dedent(body))
    return pytester.runpytest("-p", "no:cacheprovider", "--strict-markers", *args)


def test_memory_client_gets_a_fresh_broker_per_test(pytester: pytest.Pytester) -> None:
    result = run_user_tests(
        pytester,
        """
        async def create_orders(client):
            admin = (await client.get_admin()).unwrap()
            (await admin.create_topics([TopicConfig("orders")])).unwrap()
            return (await admin.list_topics()).unwrap()

        async def test_first(qi_memory_client):
            assert await create_orders(qi_memory_client) == ("orders",)

        async def test_second_sees_nothing_of_the_first(qi_memory_client):
            assert await create_orders(qi_memory_client) == ("orders",)

        async def test_broker_fixture_is_the_clients_broker(qi_memory_client, qi_memory_broker):
            await create_orders(qi_memory_client)
            assert qi_memory_broker.topic_names() == ["orders"]
        """,
    )
    result.assert_outcomes(passed=3)


def test_assert_produced_matches_key_value_headers_partition_and_predicate(
    pytester: pytest.Pytester,
) -> None:
    result = run_user_tests(
        pytester,
        """
        async def test_matches(qi_memory_client):
            admin = (await qi_memory_client.get_admin()).unwrap()
            (await admin.create_topics([TopicConfig("orders", num_partitions=3)])).unwrap()
            producer = (await qi_memory_client.get_producer()).unwrap()
            message = StreamingMessage(b"42", key="order-1", headers={"kind": "created"})
            sent = (await producer.send("orders", message)).unwrap()

            found = await assert_produced(
                qi_memory_client, "orders", key="order-1", value=b"42",
                headers={"kind": "created"}, partition=sent.partition,
                where=lambda m: int(m.value) > 40,
            )
            assert (found.offset, found.key) == (sent.offset, b"order-1")

        async def test_reports_what_the_topic_holds(qi_memory_client):
            admin = (await qi_memory_client.get_admin()).unwrap()
            (await admin.create_topics([TopicConfig("orders")])).unwrap()
            producer = (await qi_memory_client.get_producer()).unwrap()
            (await producer.send("orders", StreamingMessage(b"1", key="a"))).unwrap()
            tagged = StreamingMessage(b"2", key="b", headers={"h": "x"})
            (await producer.send("orders", tagged)).unwrap()
            await assert_produced(qi_memory_client, "orders", key="c", within=0.3)

        async def test_a_raising_predicate_fails_as_it_is(qi_memory_client):
            admin = (await qi_memory_client.get_admin()).unwrap()
            (await admin.create_topics([TopicConfig("orders")])).unwrap()
            producer = (await qi_memory_client.get_producer()).unwrap()
            (await producer.send("orders", StreamingMessage(b"not json"))).unwrap()
            await assert_produced(qi_memory_client, "orders", where=lambda m: 1 / 0, within=5)
        """,
    )
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["E   ZeroDivisionError: division by zero"])
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: no message with key=b'c' was produced to 'orders' within 0.3s;*"
            "topic 'orders' holds 2 message(s):",
            "*partition 0 offset 0: key=b'a' value=b'1'",
            "*partition 0 offset 1: key=b'b' value=b'2' headers={'h': b'x'}",
        ]
    )


def test_assert_produced_waits_for_a_message_produced_later(pytester: pytest.Pytester) -> None:
    result = run_user_tests(
        pytester,
        """
        async def test_later(qi_memory_client):
            admin = (await qi_memory_client.get_admin()).unwrap()
            (await admin.create_topics([TopicConfig("late")])).unwrap()
            producer = (await qi_memory_client.get_producer()).unwrap()

            async def produce_soon():
                await asyncio.sleep(0.3)
                (await producer.send("late", StreamingMessage(b"finally"))).unwrap()

            task = asyncio.create_task(produce_soon())
            found = await assert_produced(qi_memory_client, "late", value="finally", within=5)
            await task
            assert found.value == b"finally"
        """,
    )
    result.assert_outcomes(passed=1)


def test_fixtures_work_in_pytest_asyncio_strict_mode(pytester: pytest.Pytester) -> None:
    pytester.makeini(USER_INI.replace("auto", "strict"))
    pytester.makepyfile(
        test_user=USER_IMPORTS
        + textwrap.dedent(
            """
            @pytest.mark.asyncio
            async def test_memory(qi_memory_client):
                assert (await qi_memory_client.is_healthy()).unwrap() is True

            @pytest.mark.asyncio
            async def test_per_backend(qi_client):
                assert (await qi_client.is_healthy()).unwrap() is True
            """
        )
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_read_topic_returns_every_partition_in_offset_order(pytester: pytest.Pytester) -> None:
    result = run_user_tests(
        pytester,
        """
        async def test_read(qi_memory_client):
            admin = (await qi_memory_client.get_admin()).unwrap()
            (await admin.create_topics([TopicConfig("many", num_partitions=3)])).unwrap()
            assert await read_topic(qi_memory_client, "many") == ()
            producer = (await qi_memory_client.get_producer()).unwrap()
            for number in range(9):
                message = StreamingMessage(str(number).encode(), partition=number % 3)
                (await producer.send("many", message)).unwrap()

            messages = await read_topic(qi_memory_client, "many")

            assert [(m.partition, m.offset, m.value) for m in messages] == [
                (number % 3, number // 3, str(number).encode())
                for number in sorted(range(9), key=lambda n: (n % 3, n))
            ]
            # The reader's group is gone: the application's groups are all there is.
            assert (await admin.list_groups()).unwrap() == ()

        async def test_missing_topic_fails_the_test(qi_memory_client):
            await read_topic(qi_memory_client, "missing")

        async def test_a_reader_that_never_joined_says_so(qi_memory_client):
            admin = (await qi_memory_client.get_admin()).unwrap()
            (await admin.create_topics([TopicConfig("busy")])).unwrap()
            producer = (await qi_memory_client.get_producer()).unwrap()
            (await producer.send("busy", StreamingMessage(b"unread"))).unwrap()
            await read_topic(qi_memory_client, "busy", within=0)

        async def test_nothing_produced_to_an_empty_topic(qi_memory_client):
            admin = (await qi_memory_client.get_admin()).unwrap()
            (await admin.create_topics([TopicConfig("quiet")])).unwrap()
            await assert_produced(qi_memory_client, "quiet", within=0.2)
        """,
    )
    result.assert_outcomes(passed=1, failed=3)
    result.stdout.fnmatch_lines(
        ["*AssertionError: reading topic 'busy': its reader was given no partitions in time"]
    )
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: no message at all was produced to 'quiet' within 0.2s; "
            "topic 'quiet' holds no messages"
        ]
    )
    result.stdout.fnmatch_lines(
        ["*AssertionError: reading topic 'missing' failed: *STREAMING_TOPIC_NOT_FOUND*"]
    )


def test_wait_for_group_returns_on_a_topic_written_by_transactions(
    pytester: pytest.Pytester,
) -> None:
    result = run_user_tests(
        pytester,
        """
        from qi.base.streaming import ProducerConfig

        async def test_markers_do_not_hold_the_group_back(qi_memory_client):
            admin = (await qi_memory_client.get_admin()).unwrap()
            (await admin.create_topics([TopicConfig("jobs")])).unwrap()
            config = ProducerConfig(transactional_id="jobs-writer")
            producer = (await qi_memory_client.get_producer(config)).unwrap()
            for outcome in ("commit", "abort", "commit"):
                transaction = (await producer.transaction()).unwrap()
                (await transaction.send("jobs", StreamingMessage(outcome.encode()))).unwrap()
                (await getattr(transaction, outcome)()).unwrap()
            handled = []

            async def handle(payload: EachMessagePayload) -> None:
                handled.append(payload.message.value)

            consumer_config = ConsumerConfig(
                group_id="workers", session_timeout=6.0, heartbeat_interval=0.5,
                auto_commit_interval=0.1,
            )
            consumer = (await qi_memory_client.get_consumer(consumer_config)).unwrap()
            subscription = SubscriptionConfig(("jobs",), from_beginning=True)
            (await consumer.subscribe(subscription)).unwrap()
            (await consumer.run(ConsumerRunConfig(each_message=handle))).unwrap()
            lags = await wait_for_group(qi_memory_client, "workers", "jobs", within=5)
            # Three records and three markers: the group committed past the last marker.
            assert [(lag.committed, lag.end, lag.lag) for lag in lags] == [(6, 6, 0)]
            assert handled == [b"commit", b"commit"]
        """,
    )
    result.assert_outcomes(passed=1)


def test_wait_for_group_returns_once_the_group_committed_everything(
    pytester: pytest.Pytester,
) -> None:
    result = run_user_tests(
        pytester,
        """
        async def start_group(client, group_id, handle):
            config = ConsumerConfig(
                group_id=group_id, session_timeout=6.0, heartbeat_interval=0.5,
                auto_commit_interval=0.1,
            )
            consumer = (await client.get_consumer(config)).unwrap()
            (await consumer.subscribe(SubscriptionConfig(("jobs",), from_beginning=True))).unwrap()
            (await consumer.run(ConsumerRunConfig(each_message=handle))).unwrap()

        async def fill(client):
            admin = (await client.get_admin()).unwrap()
            (await admin.create_topics([TopicConfig("jobs", num_partitions=2)])).unwrap()
            producer = (await client.get_producer()).unwrap()
            for number in range(6):
                message = StreamingMessage(b"job", partition=number % 2)
                (await producer.send("jobs", message)).unwrap()

        async def test_processed(qi_memory_client):
            await fill(qi_memory_client)
            handled = []

            async def handle(payload: EachMessagePayload) -> None:
                handled.append(payload.message.offset)

            await start_group(qi_memory_client, "workers", handle)
            lags = await wait_for_group(qi_memory_client, "workers", "jobs")
            seen = [(lag.partition, lag.committed, lag.lag) for lag in lags]
            assert seen == [(0, 3, 0), (1, 3, 0)]
            assert len(handled) == 6

        async def test_stuck(qi_memory_client):
            await fill(qi_memory_client)

            async def refuse(payload: EachMessagePayload) -> None:
                raise RuntimeError("cannot handle it")

            await start_group(qi_memory_client, "stuck", refuse)
            await wait_for_group(qi_memory_client, "stuck", ["jobs"], within=0.5)

        async def test_unknown_group(qi_memory_client):
            await fill(qi_memory_client)
            await wait_for_group(qi_memory_client, "nobody", ["jobs"], within=0.2)
        """,
    )
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: group 'stuck' did not process [[]'jobs'[]] within 0.5s; its lag:",
            "*jobs[[]0[]]: committed None, end 3, lag 3",
            "*jobs[[]1[]]: committed None, end 3, lag 3",
        ]
    )
    result.stdout.fnmatch_lines(
        ["*group 'nobody' did not process [[]'jobs'[]] within 0.2s: *STREAMING_ADMIN_FAILED*"]
    )


def test_fault_hooks_reach_the_tests_memory_broker(pytester: pytest.Pytester) -> None:
    result = run_user_tests(
        pytester,
        """
        async def test_produce_fault(qi_memory_client, qi_memory_broker):
            admin = (await qi_memory_client.get_admin()).unwrap()
            (await admin.create_topics([TopicConfig("fragile")])).unwrap()
            producer = (await qi_memory_client.get_producer()).unwrap()
            qi_memory_broker.fail_next_produces("fragile")

            failed = await producer.send("fragile", StreamingMessage(b"lost"))
            kept = await producer.send("fragile", StreamingMessage(b"kept"))

            assert failed.error.code == "STREAMING_PRODUCE_FAILED"
            assert failed.error.context["delivery"] == "not_written"
            assert kept.is_success()
            assert [m.value for m in await read_topic(qi_memory_client, "fragile")] == [b"kept"]

        async def test_crash_leaves_the_partition_to_the_group(qi_memory_client):
            admin = (await qi_memory_client.get_admin()).unwrap()
            (await admin.create_topics([TopicConfig("work")])).unwrap()
            config = ConsumerConfig("crew", session_timeout=1.0, heartbeat_interval=0.1)
            consumer = (await qi_memory_client.get_consumer(config)).unwrap()
            (await consumer.subscribe(SubscriptionConfig(("work",)))).unwrap()

            async def ignore(payload: EachMessagePayload) -> None:
                pass

            (await consumer.run(ConsumerRunConfig(each_message=ignore))).unwrap()
            crash(consumer)

            assert not consumer.is_connected()
            members = (await admin.describe_group("crew")).unwrap().members
            assert len(members) == 1, "a killed member stays until its session expires"

        async def test_qi_client_on_memory_shares_the_faulty_broker(qi_client, qi_memory_broker):
            admin = (await qi_client.get_admin()).unwrap()
            (await admin.create_topics([TopicConfig("shared")])).unwrap()
            qi_memory_broker.set_unreachable()
            assert (await qi_client.is_healthy()).unwrap() is False
        """,
    )
    result.assert_outcomes(passed=3)


BACKEND_PROBE = """
def test_probe(qi_backend, qi_config):
    assert qi_config.brokers

@pytest.mark.qi_backends("memory", "aiokafka")
def test_marked(qi_backend):
    pass

@pytest.mark.parametrize("qi_backend", ["confluent"])
def test_parametrized(qi_backend):
    pass
"""


@pytest.mark.parametrize(
    ("ini_line", "args", "probe_ids"),
    [
        ("", (), ["memory"]),
        ("qi_backends = memory confluent", (), ["memory", "confluent"]),
        ("qi_backends = memory confluent", ("--qi-backends=aiokafka",), ["aiokafka"]),
    ],
)
def test_backends_come_from_marker_option_ini_or_parametrize(
    pytester: pytest.Pytester, ini_line: str, args: tuple[str, ...], probe_ids: list[str]
) -> None:
    pytester.makeini(USER_INI + ini_line + "\n")
    pytester.makepyfile(test_user="import pytest\n" + BACKEND_PROBE)

    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--strict-markers", "--collect-only", "-q", *args
    )

    collected = [line for line in result.outlines if line.startswith("test_user.py::")]
    assert collected == [
        *(f"test_user.py::test_probe[{name}]" for name in probe_ids),
        "test_user.py::test_marked[memory]",
        "test_user.py::test_marked[aiokafka]",
        "test_user.py::test_parametrized[confluent]",
    ]


def test_qi_client_runs_on_each_backend_of_the_marker(pytester: pytest.Pytester) -> None:
    result = run_user_tests(
        pytester,
        """
        @pytest.mark.qi_backends("memory", "no-such-backend")
        async def test_healthy(qi_client, qi_backend):
            assert qi_client.implementation == qi_backend
            assert (await qi_client.is_healthy()).unwrap() is True
        """,
        "-v",
    )
    # A run on an unknown backend needs no broker to fail: the library names the problem.
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*STREAMING_UNKNOWN_IMPLEMENTATION*"])


def test_an_empty_backends_marker_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = run_user_tests(
        pytester,
        """
        @pytest.mark.qi_backends()
        def test_nowhere(qi_backend):
            pass
        """,
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*test_nowhere: qi_backends() names no backend*"])


@pytest.mark.broker
def test_dev_client_and_helpers_on_the_development_broker(pytester: pytest.Pytester) -> None:
    result = run_user_tests(
        pytester,
        """
        import uuid

        async def make_topic(client):
            topic = f"plugin-{uuid.uuid4().hex}"
            admin = (await client.get_admin()).unwrap()
            (await admin.create_topics([TopicConfig(topic, num_partitions=2)])).unwrap()
            return topic

        @pytest.mark.qi_dev_backend("confluent")
        async def test_roundtrip(qi_dev_client, qi_dev_broker):
            assert qi_dev_broker.kind in ("tansu", "noida", "external")
            assert qi_dev_client.implementation == "confluent"
            topic = await make_topic(qi_dev_client)
            producer = (await qi_dev_client.get_producer()).unwrap()
            message = StreamingMessage(b"over the wire", key="k", headers={"trace": "t-1"})
            (await producer.send(topic, message)).unwrap()

            found = await assert_produced(
                qi_dev_client, topic, key="k", headers={"trace": "t-1"}, within=30
            )
            assert found.value == b"over the wire"

            group_id = f"group-{uuid.uuid4().hex}"
            config = ConsumerConfig(
                group_id, session_timeout=6.0, heartbeat_interval=0.5, auto_commit_interval=0.2
            )
            consumer = (await qi_dev_client.get_consumer(config)).unwrap()
            (await consumer.subscribe(SubscriptionConfig((topic,), from_beginning=True))).unwrap()

            async def handle(payload):
                pass

            (await consumer.run(ConsumerRunConfig(each_message=handle))).unwrap()
            lags = await wait_for_group(qi_dev_client, group_id, topic, within=30)
            assert sum(lag.end for lag in lags) == 1

        @pytest.mark.qi_backends("memory", "confluent")
        async def test_each_backend(qi_client):
            topic = await make_topic(qi_client)
            producer = (await qi_client.get_producer()).unwrap()
            (await producer.send(topic, StreamingMessage(b"anywhere", partition=1))).unwrap()
            messages = await read_topic(qi_client, topic, within=30)
            assert [(m.partition, m.value) for m in messages] == [(1, b"anywhere")]
        """,
        "-v",
    )
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*test_each_backend?confluent? PASSED*"])


def test_the_readme_example_passes_in_a_users_project(pytester: pytest.Pytester) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Testing your application\n", 1)[1]
    example = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert example is not None, "the README's testing section has no python example"
    pytester.makeini(USER_INI)
    pytester.makepyfile(test_orders=example.group(1))

    result = pytester.runpytest("-p", "no:cacheprovider")

    result.assert_outcomes(passed=2)


# Runs pytest with pytest_asyncio unimportable, as in a project without the testing extra.
WITHOUT_PYTEST_ASYNCIO = """
import sys
from importlib.abc import MetaPathFinder

class Missing(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "pytest_asyncio":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Missing())
import pytest
# pytest's assertion rewriter would find the module ahead of Missing: plain asserts.
sys.exit(pytest.main(["-p", "no:asyncio", "-p", "no:cacheprovider", "--assert=plain"]))
"""


def test_without_pytest_asyncio_pytest_starts_and_the_client_fixtures_say_what_to_install(
    pytester: pytest.Pytester,
) -> None:
    # The entry point comes with every install of qi-base, so the plugin loads in
    # projects without the testing extra too.
    pytester.makepyfile(
        test_user="""
        def test_the_broker_needs_nothing_more(qi_memory_broker):
            assert qi_memory_broker.topic_names() == []

        def test_a_client_needs_pytest_asyncio(qi_memory_client):
            pass
        """
    )

    result = pytester.run(sys.executable, "-c", WITHOUT_PYTEST_ASYNCIO, timeout=60)

    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*the qi_memory_client fixture needs pytest-asyncio: pip install 'qi-base[[]testing[]]'*"]
    )
