/* zcio C API, in libgfapi's style, for C and Fortran HPC codes.
 *
 * Errors: functions returning int or ssize_t return -1 and set errno;
 * functions returning pointers return NULL and set errno.
 * The _direct variants move payload straight between the server and the
 * caller's iov with no copy in user space; the caller's memory must stay
 * valid until the call returns. All functions are thread-safe.
 *
 * Handles: zcio_client_t* and zcio_fd_t* are opaque values, looked up in a
 * table (index + generation), never dereferenced. NULL fails with EINVAL; a
 * handle already closed or disconnected, or never issued, fails with EBADF
 * (a double zcio_close, any use after zcio_disconnect). zcio_disconnect
 * invalidates the client's file handles too, and may run while other
 * threads are in calls on that client: their calls return -1 promptly with
 * ENOTCONN (the connection is shut down under them), and the client's memory
 * is freed only once the last of them has returned. A handle value is only
 * reused after its table slot was reused 2^32 times.
 *
 * I/O arguments, checked before any byte moves, on every read and write
 * variant; a refused call leaves the connection usable:
 *   - iovcnt < 0, iovcnt > IOV_MAX, iov NULL with iovcnt > 0, offset < 0,
 *     iov lengths summing past SSIZE_MAX, offset + length past INT64_MAX,
 *     or more than 64 MiB in one call: EINVAL;
 *   - an iovec with a NULL base and a nonzero length: EFAULT.
 * Not checked: a non-NULL base that is not mapped (or too short). Then the
 * regular variants fault (SIGSEGV) in the copy, as memcpy would; a direct
 * read over TCP fails with EFAULT and the connection stays usable (the rest
 * of that reply is drained); a direct write over TCP fails with EFAULT part-
 * way through its frame, which ends the connection; over RDMA registering
 * the memory fails, and the call with it.
 *
 * Paths: one the server cannot take (PATH_MAX bytes or more) fails with
 * ENAMETOOLONG; so does one too long for a call header (64 KiB), without
 * being sent. The connection stays usable either way. */
#ifndef ZCIO_H
#define ZCIO_H

/* A C header: C names, <stdint.h> and typedefs, which clang-tidy's C++
 * checks would rename (and c_api.cc calls each opaque pointer `handle`). */
/* NOLINTBEGIN */

#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct zcio_client zcio_client_t;
typedef struct zcio_fd zcio_fd_t;

struct zcio_stats {
  uint64_t requests;
  uint64_t bytes_read;
  uint64_t bytes_written;
  uint64_t bytes_copied; /* payload bytes zcio copied in user space */
  uint64_t late_replies;
  uint64_t timeouts;
  uint64_t cancels;
  uint64_t protocol_errors;
  uint64_t io_cache_hits;        /* regular reads served wholly from the io-cache */
  uint64_t io_cache_misses;      /* regular reads that went to the server */
  uint64_t io_cache_purges;      /* cached pages dropped */
  uint64_t writes_collapsed;     /* regular writes merged by write-behind */
  uint64_t write_behind_flushes; /* write calls sent by write-behind */
};

/* url: "tcp://host:port", "rdma://host:port" or "auto://host:port" (RDMA
 * when a device and route exist, else TCP). Caching layers off. */
zcio_client_t* zcio_connect(const char* url);

/* Client options. Fill with zcio_options_init (the defaults below), change
 * fields, pass to zcio_connect_with. Like GlusterFS's performance.io-cache
 * and performance.write-behind volume options, both layers are per client,
 * and can be switched off per open file with zcio_set_file_options. */
struct zcio_options {
  uint32_t timeout_ms;                   /* per call; default 60000 */
  uint64_t io_cache_bytes;               /* read cache cap; 0 (default) = off */
  int write_behind;                      /* 0 (default) = off */
  uint64_t write_behind_aggregate_bytes; /* largest collapsed write; 128 KiB */
  uint64_t write_behind_window_bytes;    /* outstanding before writers wait; 4 MiB */
  uint32_t write_behind_delay_ms;        /* staged data waits at most this; 10 */
  uint32_t sync_spin_us; /* a blocking call spins this long for its reply, then sleeps; 50 */
};
void zcio_options_init(struct zcio_options* options);
zcio_client_t* zcio_connect_with(const char* url, const struct zcio_options* options);

/* Per-file switches: 1 = use the layer for this file when the client has it
 * on (the default for every open file), 0 = bypass it. Switching
 * write-behind off sends the file's staged writes and waits for them. */
int zcio_set_file_options(zcio_fd_t* fd, int io_cache, int write_behind);
int zcio_disconnect(zcio_client_t* client);

/* flags: O_RDONLY/O_WRONLY/O_RDWR | O_CREAT | O_TRUNC | O_EXCL. */
zcio_fd_t* zcio_open(zcio_client_t* client, const char* path, int flags, mode_t mode);
int zcio_close(zcio_fd_t* fd);
int zcio_fsync(zcio_fd_t* fd);
int zcio_stat(zcio_client_t* client, const char* path, struct stat* st);

ssize_t zcio_preadv(zcio_fd_t* fd, const struct iovec* iov, int iovcnt, off_t offset);
ssize_t zcio_preadv_direct(zcio_fd_t* fd, const struct iovec* iov, int iovcnt, off_t offset);
ssize_t zcio_pwritev(zcio_fd_t* fd, const struct iovec* iov, int iovcnt, off_t offset);
ssize_t zcio_pwritev_direct(zcio_fd_t* fd, const struct iovec* iov, int iovcnt, off_t offset);

int zcio_get_stats(zcio_client_t* client, struct zcio_stats* out);

/* Pre-register memory used for many direct calls (RDMA: no registration on
 * the hot path; the memory stays exposed to the server until deregistered).
 * No-op on TCP. Deregister before freeing. */
int zcio_register_memory(zcio_client_t* client, void* addr, size_t length);
int zcio_deregister_memory(zcio_client_t* client, void* addr, size_t length);

#ifdef __cplusplus
}
#endif

/* NOLINTEND */
#endif /* ZCIO_H */
