/* Writes 1 MiB to a file on a zcio server and reads it back, both direct
 * (no copy in user space), then prints the client's counters.
 *   roundtrip URL [NAME]     e.g. roundtrip tcp://127.0.0.1:7700
 * The export's key comes from $ZCIO_KEY_FILE. Exit 0 when the data match. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zcio.h>

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s URL [NAME]\n", argv[0]);
    return 2;
  }
  const char* name = argc > 2 ? argv[2] : "example-c.bin";
  enum { kSize = 1 << 20 };
  char* out = malloc(kSize);
  char* in = malloc(kSize);
  for (int i = 0; i < kSize; ++i) out[i] = (char)(i * 7 + 3);
  memset(in, 0, kSize);

  zcio_client_t* client = zcio_connect(argv[1]);
  if (client == NULL) {
    fprintf(stderr, "connect %s: %s\n", argv[1], strerror(errno));
    return 1;
  }
  zcio_fd_t* fd = zcio_open(client, name, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd == NULL) {
    fprintf(stderr, "open %s: %s\n", name, strerror(errno));
    return 1;
  }
  struct iovec wv = {out, kSize};
  struct iovec rv = {in, kSize};
  ssize_t written = zcio_pwritev_direct(fd, &wv, 1, 0);
  ssize_t got = zcio_preadv_direct(fd, &rv, 1, 0);
  struct zcio_stats stats;
  zcio_get_stats(client, &stats);
  int same = written == kSize && got == kSize && memcmp(in, out, kSize) == 0;
  printf("c: wrote %zd, read %zd bytes of %s: %s; requests %llu, bytes copied %llu\n", written, got,
         name, same ? "match" : "MISMATCH", (unsigned long long)stats.requests,
         (unsigned long long)stats.bytes_copied);
  if (zcio_close(fd) != 0 || zcio_disconnect(client) != 0) return 1;
  free(out);
  free(in);
  return same ? 0 : 1;
}
