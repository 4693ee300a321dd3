#ifndef CRDKAFKA_SHIM_H
#define CRDKAFKA_SHIM_H
#include <librdkafka/rdkafka.h>
// The mock cluster (librdkafka's in-process Kafka speaking the real protocol over TCP), for tests.
#include <librdkafka/rdkafka_mock.h>

// Special offsets are #define'd expressions, which do not import into Swift.
static const int64_t CRdKafka_OFFSET_BEGINNING = RD_KAFKA_OFFSET_BEGINNING;
static const int64_t CRdKafka_OFFSET_END = RD_KAFKA_OFFSET_END;
static const int64_t CRdKafka_OFFSET_INVALID = RD_KAFKA_OFFSET_INVALID;
static const int32_t CRdKafka_PARTITION_UA = RD_KAFKA_PARTITION_UA;

#endif
