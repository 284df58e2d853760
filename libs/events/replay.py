"""Read a topic from offset 0 to its current end, without a consumer group (auditors, rebuilds)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiokafka import TopicPartition

from tsunagu.events.envelope import CloudEvent
from tsunagu.events.kafka import make_consumer
from tsunagu.settings import KafkaSettings


@dataclass(frozen=True)
class ReplayedRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    def envelope(self) -> CloudEvent:
        return CloudEvent.from_bytes(self.value)


async def replay_topic(settings: KafkaSettings, topic: str) -> AsyncIterator[ReplayedRecord]:
    """Yield every record of ``topic`` that exists now, each partition in offset order.

    Records of one key share a partition, so per-key order is the order of appearance here.
    Stops at each partition's high watermark as first seen; later records are not waited for.
    """
    consumer = make_consumer(settings, "tsunagu-replay", None)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            await consumer.topics()  # forces a metadata fetch
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        # tansu answers ListOffsets(latest) with the last batch's base offset + 1, not the high
        # watermark: trust it only to tell an empty partition, and take the end from the first fetch.
        listed = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if listed[tp] > 0}
        end: dict[TopicPartition, int] = {}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=500, max_records=1000)
            for tp in list(remaining):
                if tp not in end and consumer.highwater(tp) is not None:
                    end[tp] = consumer.highwater(tp)
                for record in batches.get(tp, []):
                    if record.offset >= end.get(tp, record.offset + 1):
                        break
                    yield ReplayedRecord(
                        record.topic,
                        record.partition,
                        record.offset,
                        record.key,
                        record.value,
                        tuple(record.headers or ()),
                    )
                if tp in end and await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
