/* kronop_ipc.h - the C ABI of libkronop_ipc, Kronop's shared-memory producer transport.
 *
 * A producer handle leases one single-producer/single-consumer ring in the daemon's
 * shared-memory segment and writes serialized kronop.v1.Envelope records into it; kronopd
 * drains every ring. Publishing takes no lock and makes no system call while the daemon is
 * awake.
 *
 * Ownership and threads: a kronop_producer is owned by the caller from
 * kronop_producer_open until kronop_producer_close. One handle is one ring, so a handle must
 * not be used by two threads at the same time; give each publishing thread its own handle.
 *
 * Errors are negative KRONOP_E* codes; kronop_strerror names them. No function blocks
 * unless its name says so (kronop_publish_wait), and none raises a signal or an exception.
 */
#ifndef KRONOP_IPC_H
#define KRONOP_IPC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KRONOP_OK 0
/* The ring is full: the daemon is behind (or down). Nothing was written; try again later. */
#define KRONOP_EFULL (-1)
/* The record is larger than the ring's maximum record size. */
#define KRONOP_ETOOBIG (-2)
/* No daemon segment by that name, or the segment was retired by a newer daemon. */
#define KRONOP_ENODAEMON (-3)
/* A null or empty argument, an unknown priority, or a payload that is not a JSON object. */
#define KRONOP_EINVAL (-4)
/* Every ring of the segment is leased by a live producer. */
#define KRONOP_ENORING (-5)
/* The segment exists but this process may not open it (mode 0660: join the group). */
#define KRONOP_EACCES (-6)
/* The segment was made by an incompatible kronopd version. */
#define KRONOP_ELAYOUT (-7)
/* kronop_publish_wait: the ring stayed full until the timeout. */
#define KRONOP_ETIMEDOUT (-8)
/* Any other system error while opening (out of memory, mapping failed). */
#define KRONOP_ESYS (-9)

/* Priorities, as kronop.v1.Priority. */
#define KRONOP_PRIORITY_NORMAL 0
#define KRONOP_PRIORITY_LOW 1
#define KRONOP_PRIORITY_HIGH 2
#define KRONOP_PRIORITY_CRITICAL 3

typedef struct kronop_producer kronop_producer;

/* Opens the segment /dev/shm/<segment_name> (NULL means "kronop") and leases a ring.
 * Returns NULL on failure; then, when err is not NULL, a message is written to err
 * (at most errlen bytes, NUL-terminated) and kronop_last_open_error() returns the code. */
kronop_producer *kronop_producer_open(const char *segment_name, char *err, size_t errlen);

/* The KRONOP_E* code of this thread's last failed kronop_producer_open. */
int kronop_last_open_error(void);

/* Publishes a JSON object (UTF-8 text, len bytes) as event `event` on topic `topic`.
 * 0 on success; KRONOP_EFULL at once when the ring has no room. */
int kronop_publish(kronop_producer *p, const char *topic, const char *event, const void *payload,
                   size_t len, int priority);

/* Publishes a serialized kronop.v1.Envelope (with topic, event and a body). The handle sets
 * producer_id, producer_seq and publish_time_ns, overriding any given. */
int kronop_publish_envelope(kronop_producer *p, const void *envelope_pb, size_t len);

/* As kronop_publish, but waits up to timeout_ms for room when the ring is full
 * (KRONOP_ETIMEDOUT after that). */
int kronop_publish_wait(kronop_producer *p, const char *topic, const char *event,
                        const void *payload, size_t len, int priority, int timeout_ms);

/* Releases the lease. Records already published stay in the ring and are delivered. */
void kronop_producer_close(kronop_producer *p);

/* This handle's producer id (random, 64-bit) and the sequence of its last published record. */
uint64_t kronop_producer_id(const kronop_producer *p);
uint64_t kronop_producer_last_seq(const kronop_producer *p);

/* Largest payload kronop_publish accepts on this handle's ring, in bytes. */
size_t kronop_max_payload(const kronop_producer *p);

/* A static, human-readable name for a KRONOP_E* code. */
const char *kronop_strerror(int code);

#ifdef __cplusplus
}
#endif

#endif /* KRONOP_IPC_H */
