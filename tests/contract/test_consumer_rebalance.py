"""Contract section 5 across rebalances: what was handled is committed before a partition
goes, a slow member goes on after one, and no partition is handled by two members at once."""

from __future__ import annotations

from qi.base.streaming import (
    StreamingClient,
    StreamingProducer,
    SubscriptionConfig,
)

from ._support import (
    Collector,
    ConsumerConfigFactory,
    TopicFactory,
    numbered,
    produce,
    start_consumer,
    unique,
)


async def test_a_new_topic_matching_the_pattern_commits_what_was_handled_before(
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    prefix = unique("pattern")
    first = await make_topic(name=f"{prefix}-a")
    await produce(producer, first, numbered("a", 10))
    subscription = SubscriptionConfig(pattern=f"{prefix}-.*", from_beginning=True)
    # No commit but the rebalance's: what the new topic's rebalance commits is all there is.
    config = consumer_config(auto_commit=False)
    before = Collector()
    member = await start_consumer(client, config, subscription, before.run_config())
    await before.wait_for(10)

    second = await make_topic(name=f"{prefix}-b")
    await produce(producer, second, [b"b-0"])
    # Once the new topic's message is handled, the rebalance it caused is over.
    await before.wait_for(11)
    assert not before.errors, before.errors
    # Leaving commits what was handled since the rebalance: only the new topic's message.
    await member.disconnect()

    after = Collector()
    await start_consumer(client, config, subscription, after.run_config())
    await produce(producer, first, [b"a-late"])
    await produce(producer, second, [b"b-late"])
    # Each partition is handled in offset order: anything redelivered would come first.
    await after.wait_for(2)
    assert sorted(after.values()) == [b"a-late", b"b-late"], "handled messages came again"
