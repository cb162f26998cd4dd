# Installing zcio: libzcio.so (SONAME libzcio.so.0) made of every layer's
# archive, the public headers, zcio and zcio-server, a CMake package
# (find_package(zcio) -> zcio::zcio), zcio.pc, the Fortran module when a
# Fortran compiler exists, and CPack Debian packages (runtime, dev, tools).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(ZCIO_LAYERS zcio_base zcio_iobuf zcio_rpc zcio_tcp zcio_transport zcio_fops)
set(ZCIO_HEADER_DIRS base iobuf rpc tcp transport fops)
if(ZCIO_WITH_VERBS)
  list(INSERT ZCIO_LAYERS 4 zcio_verbs)
  list(INSERT ZCIO_HEADER_DIRS 4 verbs)
endif()
# zcio_shared: the CLI's target is already called zcio.
add_library(zcio_shared SHARED cmake/empty.cc)
# Whole archives, so users may call any public function, not only what one
# object happened to pull in; zcio_fops after them brings the layers' own
# dependencies (protobuf, rdma-core, OpenSSL) and nothing twice.
set(ZCIO_ARCHIVES "")
foreach(layer ${ZCIO_LAYERS})
  list(APPEND ZCIO_ARCHIVES $<TARGET_FILE:${layer}>)
endforeach()
add_dependencies(zcio_shared ${ZCIO_LAYERS})
target_link_libraries(zcio_shared PRIVATE -Wl,--whole-archive ${ZCIO_ARCHIVES} -Wl,--no-whole-archive
                                          zcio_fops)
target_link_libraries(zcio_shared PUBLIC Threads::Threads protobuf::libprotobuf)
target_include_directories(zcio_shared INTERFACE
  $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}> $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}/zcio>)
set_target_properties(zcio_shared PROPERTIES OUTPUT_NAME zcio EXPORT_NAME zcio
                                             VERSION ${PROJECT_VERSION})
if(PROJECT_VERSION_MAJOR EQUAL 0)
  # 0.x: every minor release may break the ABI, so the SONAME carries it.
  set_target_properties(zcio_shared PROPERTIES SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})
else()
  set_target_properties(zcio_shared PROPERTIES SOVERSION ${PROJECT_VERSION_MAJOR})
endif()

set(ZCIO_FORTRAN_MODULE_DIR ${CMAKE_INSTALL_INCLUDEDIR}/zcio/fortran)
include(CheckLanguage)
check_language(Fortran)
if(CMAKE_Fortran_COMPILER)
  enable_language(Fortran)
  # The module holds interfaces and constants only: `use zcio` needs the
  # .mod file and -lzcio, no Fortran object code.
  add_library(zcio_fortran_module OBJECT fops/zcio.f90)
  set_target_properties(zcio_fortran_module PROPERTIES
    Fortran_MODULE_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/fortran)
  install(FILES ${CMAKE_CURRENT_BINARY_DIR}/fortran/zcio.mod fops/zcio.f90
          DESTINATION ${ZCIO_FORTRAN_MODULE_DIR} COMPONENT dev)
endif()

install(TARGETS zcio_shared EXPORT zcioTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT runtime NAMELINK_COMPONENT dev)
install(TARGETS zcio-server zcio RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT tools)
install(FILES fops/zcio.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT dev)
install(DIRECTORY ${ZCIO_HEADER_DIRS} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/zcio
        COMPONENT dev FILES_MATCHING PATTERN "*.h")
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/rpc/zcio.pb.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/zcio/rpc COMPONENT dev)
install(EXPORT zcioTargets NAMESPACE zcio:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/zcio
        COMPONENT dev)
configure_package_config_file(cmake/zcioConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/zcioConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/zcio PATH_VARS ZCIO_FORTRAN_MODULE_DIR)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/zcioConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/zcioConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/zcioConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/zcio COMPONENT dev)
configure_file(cmake/zcio.pc.in ${CMAKE_CURRENT_BINARY_DIR}/zcio.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/zcio.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig
        COMPONENT dev)

# Debian packages: `cpack -G DEB` in the build directory.
set(CPACK_PACKAGE_NAME zcio)
set(CPACK_PACKAGE_VENDOR "zcio")
set(CPACK_PACKAGE_CONTACT "zcio developers <zcio@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "zero-copy file I/O over RDMA and TCP")
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL runtime dev tools)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)  # dpkg-shlibdeps finds the runtime libraries
set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME libzcio${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})
set(CPACK_DEBIAN_DEV_PACKAGE_NAME libzcio-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS
    "libzcio${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR} (= ${PROJECT_VERSION}), libprotobuf-dev")
if(ZCIO_WITH_VERBS)  # the installed verbs/ headers include <infiniband/verbs.h>
  string(APPEND CPACK_DEBIAN_DEV_PACKAGE_DEPENDS ", libibverbs-dev, librdmacm-dev")
endif()
set(CPACK_DEBIAN_TOOLS_PACKAGE_NAME zcio-tools)
set(CPACK_DEBIAN_PACKAGE_SECTION libs)
include(CPack)
