"""Keys land on the partitions Kafka's Java client (and aiokafka's own partitioner) would choose."""

from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from relaychain.bus.kafka.partitioner import murmur2, partition_for


def test_murmur2_matches_the_java_clients_test_vectors() -> None:
    # org.apache.kafka.common.utils.UtilsTest#testMurmur2 (signed ints there, unsigned here).
    vectors = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    for key, expected in vectors.items():
        assert murmur2(key) == expected & 0xFFFFFFFF, key


def test_every_key_length_hashes_as_aiokafka_does() -> None:
    rng = random.Random(7)
    for length in range(70):
        for _ in range(20):
            key = rng.randbytes(length)
            assert murmur2(key) == aiokafka_murmur2(key) & 0xFFFFFFFF, key


def test_keyed_records_get_aiokafkas_partition_and_unkeyed_ones_an_available_one() -> None:
    partitions = list(range(12))
    for index in range(500):
        key = f"{index:032x}".encode()
        assert partition_for(key, partitions, partitions) == DefaultPartitioner()(key, partitions, partitions)
    assert {partition_for(None, partitions, [3, 5]) for _ in range(50)} <= {3, 5}
    assert partition_for(None, [0, 1], []) in (0, 1)
