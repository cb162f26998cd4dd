/* zcio C API, in libgfapi's style, for C and Fortran HPC codes.
 *
 * Errors: functions returning int or ssize_t return -1 and set errno;
 * functions returning pointers return NULL and set errno.
 * The _direct variants move payload straight between the server and the
 * caller's iov with no copy in user space; the caller's memory must stay
 * valid until the call returns. All functions are thread-safe. */
#ifndef ZCIO_H
#define ZCIO_H

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
};

/* url: "tcp://host:port". */
zcio_client_t* zcio_connect(const char* url);
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

#endif /* ZCIO_H */
