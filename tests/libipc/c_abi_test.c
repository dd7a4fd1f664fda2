/* The C ABI compiles as C (C11, -Wall -Wextra -Werror) and links against libkronop_ipc:
 * what a C, Rust or N-API producer sees. Opening a missing segment fails cleanly. */
#include <stdio.h>
#include <string.h>

#include "kronop_ipc.h"

int main(void) {
  char err[256] = "";
  kronop_producer *p = kronop_producer_open("kronop-c-abi-test-missing", err, sizeof err);
  if (p != NULL) {
    fprintf(stderr, "open of a missing segment succeeded\n");
    return 1;
  }
  if (kronop_last_open_error() != KRONOP_ENODAEMON || strlen(err) == 0) {
    fprintf(stderr, "want KRONOP_ENODAEMON and a message, got %d '%s'\n", kronop_last_open_error(),
            err);
    return 1;
  }
  if (kronop_publish(NULL, "reel:1", "e", "{}", 2, 0) != KRONOP_EINVAL) return 1;
  if (strcmp(kronop_strerror(KRONOP_EFULL), kronop_strerror(KRONOP_ETOOBIG)) == 0) return 1;
  kronop_producer_close(NULL); /* closing NULL is a no-op */
  printf("c abi ok: %s\n", err);
  return 0;
}
