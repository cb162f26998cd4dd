! zcio for Fortran: interfaces over the C API in zcio.h (iso_c_binding).
! Strings are passed NUL-terminated (url // c_null_char); functions return
! -1 (or a null c_ptr) on failure with errno set, as in C. Interfaces and
! constants only: link with -lzcio. zcio_stat is left out (struct stat's
! layout is the C library's); use zcio_get_stats for the counters.
module zcio
  use, intrinsic :: iso_c_binding
  implicit none

  ! Linux open(2) flags, as zcio_open takes them.
  integer(c_int), parameter :: ZCIO_O_RDONLY = 0, ZCIO_O_WRONLY = 1, ZCIO_O_RDWR = 2
  integer(c_int), parameter :: ZCIO_O_CREAT = 64, ZCIO_O_EXCL = 128, ZCIO_O_TRUNC = 512

  type, bind(c) :: zcio_iovec  ! struct iovec
    type(c_ptr) :: base
    integer(c_size_t) :: len
  end type

  type, bind(c) :: zcio_stats  ! struct zcio_stats
    integer(c_int64_t) :: requests, bytes_read, bytes_written, bytes_copied
    integer(c_int64_t) :: late_replies, timeouts, cancels, protocol_errors
    integer(c_int64_t) :: io_cache_hits, io_cache_misses, io_cache_purges
    integer(c_int64_t) :: writes_collapsed, write_behind_flushes
  end type

  interface
    type(c_ptr) function zcio_connect(url) bind(c, name="zcio_connect")
      import :: c_ptr, c_char
      character(kind=c_char), intent(in) :: url(*)
    end function

    integer(c_int) function zcio_disconnect(client) bind(c, name="zcio_disconnect")
      import :: c_ptr, c_int
      type(c_ptr), value :: client
    end function

    type(c_ptr) function zcio_open(client, path, flags, mode) bind(c, name="zcio_open")
      import :: c_ptr, c_char, c_int
      type(c_ptr), value :: client
      character(kind=c_char), intent(in) :: path(*)
      integer(c_int), value :: flags, mode
    end function

    integer(c_int) function zcio_close(fd) bind(c, name="zcio_close")
      import :: c_ptr, c_int
      type(c_ptr), value :: fd
    end function

    integer(c_int) function zcio_fsync(fd) bind(c, name="zcio_fsync")
      import :: c_ptr, c_int
      type(c_ptr), value :: fd
    end function

    integer(c_intptr_t) function zcio_preadv(fd, iov, iovcnt, offset) bind(c, name="zcio_preadv")
      import :: c_ptr, c_int, c_int64_t, c_intptr_t, zcio_iovec
      type(c_ptr), value :: fd
      type(zcio_iovec), intent(in) :: iov(*)
      integer(c_int), value :: iovcnt
      integer(c_int64_t), value :: offset
    end function

    integer(c_intptr_t) function zcio_preadv_direct(fd, iov, iovcnt, offset) &
        bind(c, name="zcio_preadv_direct")
      import :: c_ptr, c_int, c_int64_t, c_intptr_t, zcio_iovec
      type(c_ptr), value :: fd
      type(zcio_iovec), intent(in) :: iov(*)
      integer(c_int), value :: iovcnt
      integer(c_int64_t), value :: offset
    end function

    integer(c_intptr_t) function zcio_pwritev(fd, iov, iovcnt, offset) bind(c, name="zcio_pwritev")
      import :: c_ptr, c_int, c_int64_t, c_intptr_t, zcio_iovec
      type(c_ptr), value :: fd
      type(zcio_iovec), intent(in) :: iov(*)
      integer(c_int), value :: iovcnt
      integer(c_int64_t), value :: offset
    end function

    integer(c_intptr_t) function zcio_pwritev_direct(fd, iov, iovcnt, offset) &
        bind(c, name="zcio_pwritev_direct")
      import :: c_ptr, c_int, c_int64_t, c_intptr_t, zcio_iovec
      type(c_ptr), value :: fd
      type(zcio_iovec), intent(in) :: iov(*)
      integer(c_int), value :: iovcnt
      integer(c_int64_t), value :: offset
    end function

    integer(c_int) function zcio_get_stats(client, out) bind(c, name="zcio_get_stats")
      import :: c_ptr, c_int, zcio_stats
      type(c_ptr), value :: client
      type(zcio_stats), intent(out) :: out
    end function

    integer(c_int) function zcio_register_memory(client, addr, length) &
        bind(c, name="zcio_register_memory")
      import :: c_ptr, c_int, c_size_t
      type(c_ptr), value :: client, addr
      integer(c_size_t), value :: length
    end function

    integer(c_int) function zcio_deregister_memory(client, addr, length) &
        bind(c, name="zcio_deregister_memory")
      import :: c_ptr, c_int, c_size_t
      type(c_ptr), value :: client, addr
      integer(c_size_t), value :: length
    end function
  end interface
end module zcio
