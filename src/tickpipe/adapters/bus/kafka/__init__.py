"""The Kafka bus (confluent-kafka): `KafkaSink` for the ingestor, `KafkaConsumer` for the processor.

At-least-once: the consumer never commits on its own. The processor writes a batch to the store,
then commits its offsets; a crash in between redelivers the batch and the idempotent store drops
the duplicates. Undecodable messages go to `<topic>.dlq`, and are committed like the others.

librdkafka calls block, so none runs on the event loop for long: the producer's `produce()` only
enqueues (a thread serves its delivery reports), and every consumer call runs on one dedicated
thread, where the rebalance callbacks run too.
"""

from tickpipe.adapters.bus.kafka.cluster import (
    DEFAULT_GROUP,
    DEFAULT_PREFETCH_MESSAGES,
    DEFAULT_QUEUE_MAX,
    DLQ_OFFSET_HEADER,
    DLQ_PARTITION_HEADER,
    DLQ_REASON_HEADER,
    DLQ_SUFFIX,
    MISSING_KEY_ERROR,
    RETENTION_MS,
    TRACEPARENT_HEADER,
    KafkaPing,
    KafkaUnavailable,
    ensure_topics,
)
from tickpipe.adapters.bus.kafka.consumer import KafkaConsumer
from tickpipe.adapters.bus.kafka.sink import KafkaSink

__all__ = [
    "DEFAULT_GROUP",
    "DEFAULT_PREFETCH_MESSAGES",
    "DEFAULT_QUEUE_MAX",
    "DLQ_OFFSET_HEADER",
    "DLQ_PARTITION_HEADER",
    "DLQ_REASON_HEADER",
    "DLQ_SUFFIX",
    "MISSING_KEY_ERROR",
    "RETENTION_MS",
    "TRACEPARENT_HEADER",
    "KafkaConsumer",
    "KafkaPing",
    "KafkaSink",
    "KafkaUnavailable",
    "ensure_topics",
]
