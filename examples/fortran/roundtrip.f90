! Writes 1 MiB to a file on a zcio server and reads it back, direct, from
! Fortran arrays; prints the counters.   roundtrip_f URL   (key: $ZCIO_KEY_FILE)
program roundtrip
  use, intrinsic :: iso_c_binding
  use zcio
  implicit none
  integer, parameter :: n = 262144  ! 1 MiB of 32-bit integers
  integer(c_int32_t), target :: out(n), in(n)
  type(zcio_iovec) :: iov(1)
  type(zcio_stats) :: stats
  type(c_ptr) :: client, fd
  character(len=512) :: url
  integer(c_intptr_t) :: written, got
  integer :: i

  call get_command_argument(1, url)
  do i = 1, n
    out(i) = i * 3
  end do
  in = 0
  client = zcio_connect(trim(url) // c_null_char)
  if (.not. c_associated(client)) stop "connect failed"
  fd = zcio_open(client, "example-fortran.bin" // c_null_char, &
                 ior(ZCIO_O_RDWR, ior(ZCIO_O_CREAT, ZCIO_O_TRUNC)), int(o'644', c_int))
  if (.not. c_associated(fd)) stop "open failed"
  iov(1) = zcio_iovec(c_loc(out), int(4 * n, c_size_t))
  written = zcio_pwritev_direct(fd, iov, 1, 0_c_int64_t)
  iov(1) = zcio_iovec(c_loc(in), int(4 * n, c_size_t))
  got = zcio_preadv_direct(fd, iov, 1, 0_c_int64_t)
  if (zcio_get_stats(client, stats) /= 0) stop "stats failed"
  print '(a, i0, a, i0, a, l1, a, i0)', "fortran: wrote ", written, ", read ", got, &
        ", match ", all(in == out), ", bytes copied ", stats%bytes_copied
  if (zcio_close(fd) /= 0) stop "close failed"
  if (zcio_disconnect(client) /= 0) stop "disconnect failed"
  if (got /= 4 * n .or. any(in /= out)) error stop 1
end program roundtrip
