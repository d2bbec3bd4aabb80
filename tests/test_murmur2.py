"""Kafka's key hash in pure Python: the Java client's values, and its cache's branches."""

from __future__ import annotations

import pytest

from qi.base.streaming import _murmur2
from qi.base.streaming._murmur2 import murmur2, partition_for_key

# Kafka's own expectations of Utils.murmur2 (a signed Java int): apache/kafka
# clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java, testMurmur2.
JAVA_MURMUR2 = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]

# Partitions of 1000 that Kafka's Java producer chose for these keys, as recorded by
# kafka-python: dpkp/kafka-python test/test_partitioner.py, test_murmur2_java_compatibility.
JAVA_PARTITIONS_OF_1000 = [
    (b"", 681),
    (b"a", 524),
    (b"ab", 434),
    (b"abc", 107),
    (b"123456789", 566),
    (b"\x00 ", 742),
]


@pytest.mark.parametrize(("key", "java_int"), JAVA_MURMUR2)
def test_hashes_equal_the_java_clients(key: bytes, java_int: int) -> None:
    assert murmur2(key) == java_int & 0xFFFFFFFF


@pytest.mark.parametrize(("key", "partition"), JAVA_PARTITIONS_OF_1000)
def test_keys_land_where_the_java_producer_puts_them(key: bytes, partition: int) -> None:
    assert partition_for_key(key, 1000) == partition
    assert partition_for_key(key, 1000) == partition  # the second time from the cache


def test_every_tail_length_is_hashed() -> None:
    # 0-3 bytes after the last 4-byte word; "abc" (3), "ab" (2), "a" (1), "" (0) above,
    # and the 24- and 26-byte keys of the Java vectors end on a word and two bytes after.
    assert {len(key) % 4 for key, _ in JAVA_MURMUR2 + JAVA_PARTITIONS_OF_1000} == {0, 1, 2, 3}


def test_a_full_cache_starts_again_and_keeps_answering_right() -> None:
    _murmur2._recent.clear()
    keys = [b"key-%d" % i for i in range(_murmur2._KEPT + 10)]
    first = [partition_for_key(key, 12) for key in keys]
    assert len(_murmur2._recent) <= _murmur2._KEPT
    assert [partition_for_key(key, 12) for key in keys] == first
    assert first == [(murmur2(key) & 0x7FFFFFFF) % 12 for key in keys]
