/* The install test's producer, built against the installed kronop_ipc.h and libkronop_ipc
 * (`cc producer.c $(pkg-config --cflags --libs kronop-ipc)`):
 *
 *   producer SEGMENT TOPIC N   publishes {"n":1} .. {"n":N} as reel_update, one handle
 *
 * Exits 0 once all N records are in the ring, 1 when opening or a publish fails. */
#include <kronop_ipc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: producer SEGMENT TOPIC N\n");
    return 2;
  }
  const long n = strtol(argv[3], NULL, 10);
  char err[256];
  kronop_producer *p = kronop_producer_open(argv[1], err, sizeof err);
  if (p == NULL) {
    fprintf(stderr, "producer: %s\n", err);
    return 1;
  }
  int rc = KRONOP_OK;
  for (long i = 1; i <= n && rc == KRONOP_OK; ++i) {
    char json[64];
    const int len = snprintf(json, sizeof json, "{\"n\":%ld}", i);
    rc = kronop_publish_wait(p, argv[2], "reel_update", json, (size_t)len, KRONOP_PRIORITY_NORMAL,
                             5000);
  }
  if (rc != KRONOP_OK) fprintf(stderr, "producer: %s\n", kronop_strerror(rc));
  kronop_producer_close(p);
  return rc == KRONOP_OK ? 0 : 1;
}
