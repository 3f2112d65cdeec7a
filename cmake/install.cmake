# Installs the library so that other projects can use
#   find_package(asyncio CONFIG REQUIRED)
#   target_link_libraries(app PRIVATE asyncio::asyncio)
# or pkg-config (asyncio.pc).
include(CMakePackageConfigHelpers)

install(TARGETS asyncio EXPORT asyncioTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# The headers generated at configure time.
install(FILES ${ASYNCIO_GENERATED_HEADERS} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/asyncio)

# What the config file reports as components (ssl, io_uring), and whether it
# must re-find the private dependencies that a static library passes on.
if(ASYNCIO_WITH_SSL)
  set(ASYNCIO_PACKAGE_WITH_SSL TRUE)
else()
  set(ASYNCIO_PACKAGE_WITH_SSL FALSE)
endif()
if(LIBURING_FOUND)
  set(ASYNCIO_PACKAGE_WITH_IO_URING TRUE)
else()
  set(ASYNCIO_PACKAGE_WITH_IO_URING FALSE)
endif()
get_target_property(asyncio_type asyncio TYPE)
if(asyncio_type STREQUAL "SHARED_LIBRARY")
  set(ASYNCIO_PACKAGE_SHARED TRUE)
else()
  set(ASYNCIO_PACKAGE_SHARED FALSE)
endif()

set(ASYNCIO_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/asyncio)
install(EXPORT asyncioTargets NAMESPACE asyncio:: DESTINATION ${ASYNCIO_CMAKE_DIR})
configure_package_config_file(cmake/asyncioConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/asyncioConfig.cmake
  INSTALL_DESTINATION ${ASYNCIO_CMAKE_DIR})
# Semantic versioning: find_package(asyncio X.Y) takes any X.Z with Z >= Y.
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/asyncioConfigVersion.cmake
  COMPATIBILITY SameMajorVersion)
install(FILES
  ${CMAKE_CURRENT_BINARY_DIR}/asyncioConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/asyncioConfigVersion.cmake
  DESTINATION ${ASYNCIO_CMAKE_DIR})

set(ASYNCIO_PC_REQUIRES_PRIVATE "")
if(LIBURING_FOUND)
  list(APPEND ASYNCIO_PC_REQUIRES_PRIVATE "liburing")
endif()
if(ASYNCIO_WITH_SSL)
  list(APPEND ASYNCIO_PC_REQUIRES_PRIVATE "libssl" "libcrypto")
endif()
list(JOIN ASYNCIO_PC_REQUIRES_PRIVATE " " ASYNCIO_PC_REQUIRES_PRIVATE)
# What the CMake target passes on as compile definitions: a static library's
# users define ASYNCIO_STATIC_DEFINE, which empties ASYNCIO_EXPORT (else it
# would be dllimport on Windows).
get_target_property(asyncio_pc_type asyncio TYPE)
set(ASYNCIO_PC_CFLAGS "")
if(NOT asyncio_pc_type STREQUAL "SHARED_LIBRARY")
  set(ASYNCIO_PC_CFLAGS " -DASYNCIO_STATIC_DEFINE")
endif()
# Relative to the .pc file (pkg-config's ${pcfiledir}), so that the installed
# tree can move, as package managers' do; absolute install dirs stay as given.
set(asyncio_pc_install_dir "${CMAKE_INSTALL_LIBDIR}/pkgconfig")
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(ASYNCIO_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH asyncio_pc_up "/prefix/${asyncio_pc_install_dir}" "/prefix")
  string(REGEX REPLACE "/$" "" asyncio_pc_up "${asyncio_pc_up}")
  set(ASYNCIO_PC_PREFIX "\${pcfiledir}/${asyncio_pc_up}")
endif()
foreach(dir LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${dir}}")
    set(ASYNCIO_PC_${dir} "${CMAKE_INSTALL_${dir}}")
  else()
    set(ASYNCIO_PC_${dir} "\${prefix}/${CMAKE_INSTALL_${dir}}")
  endif()
endforeach()
configure_file(cmake/asyncio.pc.in ${CMAKE_CURRENT_BINARY_DIR}/asyncio.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/asyncio.pc DESTINATION ${asyncio_pc_install_dir})
