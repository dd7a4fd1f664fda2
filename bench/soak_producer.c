/* The soak test's producer (bench/soak): publishes numbered JSON updates through the C ABI
 * at a steady rate, round-robin over its share of the topics, until it is killed.
 *
 *   soak_producer SEGMENT PROGRESS_FILE SLOT PRODUCERS TOPICS RATE [hostile]
 *
 * Topic k (reel:soak-k, 0 <= k < TOPICS) belongs to slot k % PRODUCERS. Each payload is
 *   {"w":"<producer_id>","n":<n>,"pad":"..."}
 * with n counting from 1 in this process. PROGRESS_FILE (created, 16 bytes, shared with the
 * driver through mmap) holds the producer id and then, after every publish the library
 * accepted, the count of accepted records: so when the driver SIGKILLs this process, it
 * knows which records the ring had taken. A record whose publish was cut short by the kill
 * may also be in the ring, and no other.
 *
 * A full ring (a daemon that is down or behind) is waited for, 100 ms at a time, and the
 * same record is offered again: it counts as accepted only once the library takes it.
 *
 * "hostile": instead, RATE records a second that the daemon must refuse and count (not a
 * JSON object, a JSON object cut short, a topic nobody may publish to), so that the soak
 * shows a bad producer next to good ones. Exits 0 on SIGTERM, 1 when the segment cannot be
 * opened or a publish fails, 2 on a usage error, 3 when the segment was retired. */
#define _GNU_SOURCE /* prctl, clock_gettime, nanosleep, ftruncate */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "kronop_ipc.h"

static volatile sig_atomic_t stopping = 0;

static void on_term(int sig) {
  (void)sig;
  stopping = 1;
}

static int usage(void) {
  fprintf(stderr,
          "usage: soak_producer SEGMENT PROGRESS_FILE SLOT PRODUCERS TOPICS RATE [hostile]\n");
  return 2;
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_seconds(double s) {
  if (s <= 0) return;
  struct timespec ts;
  ts.tv_sec = (time_t)s;
  ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
  nanosleep(&ts, NULL);
}

/* The progress file: [0] producer id, [1] records accepted. */
static uint64_t *map_progress(const char *path) {
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0 || ftruncate(fd, 16) != 0) {
    fprintf(stderr, "soak_producer: %s: %s\n", path, strerror(errno));
    return NULL;
  }
  void *m = mmap(NULL, 16, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (m == MAP_FAILED) {
    fprintf(stderr, "soak_producer: mmap %s: %s\n", path, strerror(errno));
    return NULL;
  }
  return (uint64_t *)m;
}

/* Opens the segment, retrying while the daemon is down (a restart in progress). */
static kronop_producer *open_producer(const char *segment) {
  char err[256];
  for (int attempt = 0; !stopping; ++attempt) {
    kronop_producer *p = kronop_producer_open(segment, err, sizeof err);
    if (p != NULL) return p;
    if (attempt == 300) { /* 30 s */
      fprintf(stderr, "soak_producer: %s (%s)\n", err, kronop_strerror(kronop_last_open_error()));
      return NULL;
    }
    sleep_seconds(0.1);
  }
  return NULL;
}

static int run_hostile(kronop_producer *p, double rate) {
  static const char *const bad[][3] = {
      {"reel:soak-bad", "reel_update", "[1,2,3]"},
      {"reel:soak-bad", "reel_update", "{\"cut\":"},
      {"reel:soak-bad", "reel_update", "not json at all"},
      {"nobody:1", "reel_update", "{\"a\":1}"},
      {"reel:soak-bad", "no such event", "{\"a\":1}"},
  };
  const size_t kinds = sizeof bad / sizeof bad[0];
  const double start = now_seconds();
  for (uint64_t i = 0; !stopping; ++i) {
    sleep_seconds(start + (double)i / rate - now_seconds());
    const char *const *b = bad[i % kinds];
    /* Refused here (KRONOP_EINVAL) or by the daemon (counted): either is right. */
    (void)kronop_publish(p, b[0], b[1], b[2], strlen(b[2]), KRONOP_PRIORITY_NORMAL);
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 7 && argc != 8) return usage();
  const char *segment = argv[1];
  const unsigned slot = (unsigned)strtoul(argv[3], NULL, 10);
  const unsigned producers = (unsigned)strtoul(argv[4], NULL, 10);
  const unsigned topics = (unsigned)strtoul(argv[5], NULL, 10);
  const double rate = strtod(argv[6], NULL);
  const int hostile = argc == 8 && strcmp(argv[7], "hostile") == 0;
  if (producers == 0 || slot >= producers || topics <= slot || rate <= 0 ||
      (argc == 8 && !hostile)) {
    return usage();
  }
  prctl(PR_SET_PDEATHSIG, SIGKILL); /* no producer outlives a driver that died */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_term;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);

  uint64_t *progress = map_progress(argv[2]);
  if (progress == NULL) return 1;
  kronop_producer *p = open_producer(segment);
  if (p == NULL) return stopping ? 0 : 1;
  if (hostile) {
    int rc = run_hostile(p, rate);
    kronop_producer_close(p);
    return rc;
  }
  __atomic_store_n(&progress[0], kronop_producer_id(p), __ATOMIC_RELEASE);

  char pad[161];
  memset(pad, 'x', sizeof pad - 1);
  pad[sizeof pad - 1] = '\0';
  const unsigned mine = (topics - slot + producers - 1) / producers; /* topics of this slot */
  double start = now_seconds();
  uint64_t accepted = 0;
  char topic[48];
  char payload[256];
  while (!stopping) {
    const uint64_t n = accepted + 1;
    /* Absolute deadlines: a slow moment is caught up, at most one second of it. */
    double due = start + (double)accepted / rate;
    const double now = now_seconds();
    if (now - due > 1.0) start += now - due - 1.0;
    if (due > now) sleep_seconds(due - now);
    const unsigned k = slot + producers * (unsigned)(accepted % mine);
    snprintf(topic, sizeof topic, "reel:soak-%u", k);
    const int len = snprintf(payload, sizeof payload, "{\"w\":\"%llu\",\"n\":%llu,\"pad\":\"%s\"}",
                             (unsigned long long)kronop_producer_id(p), (unsigned long long)n, pad);
    int rc;
    do {
      rc = kronop_publish_wait(p, topic, "reel_update", payload, (size_t)len,
                               KRONOP_PRIORITY_NORMAL, 100);
    } while (rc == KRONOP_ETIMEDOUT && !stopping);
    if (rc == KRONOP_OK) {
      accepted = n;
      __atomic_store_n(&progress[1], accepted, __ATOMIC_RELEASE);
    } else if (!stopping) {
      /* KRONOP_ENODAEMON: the segment was retired; the driver starts a new producer. */
      fprintf(stderr, "soak_producer: record %llu: %s\n", (unsigned long long)n,
              kronop_strerror(rc));
      kronop_producer_close(p);
      return rc == KRONOP_ENODAEMON ? 3 : 1;
    }
  }
  kronop_producer_close(p);
  return 0;
}
