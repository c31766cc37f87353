"""Keyed records to partitions exactly as Kafka's Java client does (murmur2 of the key), in less time than aiokafka.

aiokafka's default partitioner hashes byte by byte in Python: about 7 µs for a
32-character id, paid on every publish (every hop). This one unpacks the key's
4-byte words in one call and gives the same partition for every key, so
records of one key keep landing where other Kafka clients put them.

A request's events keep its key through every hop (the request or
conversation id), so a process publishes one key several times in a row:
recent keys' hashes are kept, and a repeat costs a dict lookup, not a hash.
"""

from __future__ import annotations

import functools
import random
import struct
from collections.abc import Sequence

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
# One compiled struct per word count: keys are ids of a few fixed lengths.
_WORDS: dict[int, struct.Struct] = {}


def murmur2(data: bytes) -> int:
    """MurmurHash2 as `org.apache.kafka.common.utils.Utils.murmur2`, as an unsigned 32-bit value."""
    length = len(data)
    count = length >> 2
    words = _WORDS.get(count)
    if words is None:
        words = _WORDS.setdefault(count, struct.Struct(f"<{count}I"))
    h = _SEED ^ length
    for k in words.unpack_from(data):
        k = (k * _M) & _MASK
        k = ((k ^ (k >> 24)) * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length & 3
    if tail:
        base = length - tail
        if tail == 3:
            h ^= data[base + 2] << 16
        if tail >= 2:
            h ^= data[base + 1] << 8
        h = ((h ^ data[base]) * _M) & _MASK
    h = ((h ^ (h >> 13)) * _M) & _MASK
    return h ^ (h >> 15)


# Big enough for every key of the requests in flight in one process (a few hundred per agent, seven agents).
_hash_of_recent_key = functools.lru_cache(maxsize=8192)(murmur2)


def partition_for(key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]) -> int:
    """aiokafka's `partitioner` callable: a key's partition by murmur2; no key, any available partition."""
    if key is None:
        return random.choice(available or all_partitions)
    return all_partitions[(_hash_of_recent_key(key) & 0x7FFFFFFF) % len(all_partitions)]
