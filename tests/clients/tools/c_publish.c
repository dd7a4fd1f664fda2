/* A producer that uses nothing but the C ABI (kronop_ipc.h), for the real-client tests:
 *
 *   c_publish SEGMENT json TOPIC EVENT [PRIORITY]   stdin: a JSON object -> kronop_publish_wait
 *   c_publish SEGMENT envelope                      stdin: a serialized kronop.v1.Envelope
 *                                                          -> kronop_publish_envelope
 *   c_publish SEGMENT count TOPIC EVENT N RATE      {"n":1} .. {"n":N}, RATE a second (0: as
 *                                                   fast as the ring takes them), one producer
 *
 * Prints "producer_id=N seq=N" and exits 0 when the record(s) are in the ring; prints the
 * library's error and exits 1 when a publish fails, 2 on a usage error. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kronop_ipc.h"

static int usage(void) {
  fprintf(stderr,
          "usage: c_publish SEGMENT json TOPIC EVENT [PRIORITY] < payload.json\n"
          "       c_publish SEGMENT envelope < envelope.pb\n"
          "       c_publish SEGMENT count TOPIC EVENT N RATE\n");
  return 2;
}

/* Reads all of stdin into a malloc'd buffer; NULL when out of memory. */
static unsigned char *read_stdin(size_t *len) {
  size_t cap = 4096, n = 0;
  unsigned char *buf = malloc(cap);
  if (buf == NULL) return NULL;
  for (;;) {
    size_t got = fread(buf + n, 1, cap - n, stdin);
    n += got;
    if (got == 0) break;
    if (n == cap) {
      unsigned char *bigger = realloc(buf, cap * 2);
      if (bigger == NULL) {
        free(buf);
        return NULL;
      }
      buf = bigger;
      cap *= 2;
    }
  }
  *len = n;
  return buf;
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A sustained producer: numbered payloads at a steady rate, each waited for (10 s) when the
 * ring is full, e.g. while no daemon reads it. */
static int publish_count(const char *segment, const char *topic, const char *event,
                         unsigned long long n, double rate) {
  char err[256];
  kronop_producer *p = kronop_producer_open(segment, err, sizeof err);
  if (p == NULL) {
    fprintf(stderr, "c_publish: %s (%s)\n", err, kronop_strerror(kronop_last_open_error()));
    return 1;
  }
  const double start = now_seconds();
  int rc = KRONOP_OK;
  unsigned long long i;
  for (i = 1; i <= n && rc == KRONOP_OK; ++i) {
    if (rate > 0) {
      const double due = start + (double)(i - 1) / rate;
      const double wait = due - now_seconds();
      if (wait > 0) {
        struct timespec ts;
        ts.tv_sec = (time_t)wait;
        ts.tv_nsec = (long)((wait - (double)ts.tv_sec) * 1e9);
        nanosleep(&ts, NULL);
      }
    }
    char payload[48];
    const int len = snprintf(payload, sizeof payload, "{\"n\":%llu}", i);
    rc = kronop_publish_wait(p, topic, event, payload, (size_t)len, KRONOP_PRIORITY_NORMAL, 10000);
  }
  if (rc == KRONOP_OK) {
    printf("producer_id=%llu seq=%llu\n", (unsigned long long)kronop_producer_id(p),
           (unsigned long long)kronop_producer_last_seq(p));
  } else {
    fprintf(stderr, "c_publish: record %llu: %s\n", i - 1, kronop_strerror(rc));
  }
  kronop_producer_close(p);
  return rc == KRONOP_OK ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc < 3) return usage();
  if (strcmp(argv[2], "count") == 0) {
    if (argc != 7) return usage();
    return publish_count(argv[1], argv[3], argv[4], strtoull(argv[5], NULL, 10),
                         strtod(argv[6], NULL));
  }
  const int envelope = strcmp(argv[2], "envelope") == 0;
  if (envelope ? argc != 3 : (strcmp(argv[2], "json") != 0 || argc < 5 || argc > 6)) {
    return usage();
  }
  int priority = argc == 6 ? atoi(argv[5]) : KRONOP_PRIORITY_NORMAL;

  size_t len = 0;
  unsigned char *payload = read_stdin(&len);
  if (payload == NULL) {
    fprintf(stderr, "c_publish: out of memory\n");
    return 1;
  }
  char err[256];
  kronop_producer *p = kronop_producer_open(argv[1], err, sizeof err);
  if (p == NULL) {
    fprintf(stderr, "c_publish: %s (%s)\n", err, kronop_strerror(kronop_last_open_error()));
    free(payload);
    return 1;
  }
  int rc = envelope ? kronop_publish_envelope(p, payload, len)
                    : kronop_publish_wait(p, argv[3], argv[4], payload, len, priority, 5000);
  if (rc == KRONOP_OK) {
    printf("producer_id=%llu seq=%llu\n", (unsigned long long)kronop_producer_id(p),
           (unsigned long long)kronop_producer_last_seq(p));
  } else {
    fprintf(stderr, "c_publish: %s\n", kronop_strerror(rc));
  }
  kronop_producer_close(p);
  free(payload);
  return rc == KRONOP_OK ? 0 : 1;
}
