// libzcio.so is made of the layers' archives (cmake/install.cmake); a shared
// library target needs at least one source of its own.
