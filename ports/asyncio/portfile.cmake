# Overlay port for asyncio: builds the source tree it lives in (ports/asyncio
# in the repository), so that a checkout can be installed without a release:
#   vcpkg install asyncio --overlay-ports=<checkout>/ports
# A port in a registry fetches a tagged release instead:
#   vcpkg_from_github(
#     OUT_SOURCE_PATH SOURCE_PATH
#     REPO <owner>/<repo>
#     REF "v${VERSION}"
#     SHA512 <sha512 of the archive>
#     HEAD_REF main
#   )
get_filename_component(SOURCE_PATH "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)
if(NOT EXISTS "${SOURCE_PATH}/include/asyncio.hpp")
  message(FATAL_ERROR "ports/asyncio must stay inside the asyncio source tree (looked in ${SOURCE_PATH})")
endif()

vcpkg_check_features(OUT_FEATURE_OPTIONS FEATURE_OPTIONS
  FEATURES
    ssl       ASYNCIO_WITH_SSL
    io-uring  ASYNCIO_WITH_IO_URING
)

# The library finds liburing through pkg-config.
set(PKGCONFIG_OPTIONS "")
if("io-uring" IN_LIST FEATURES)
  vcpkg_find_acquire_program(PKGCONFIG)
  set(PKGCONFIG_OPTIONS "-DPKG_CONFIG_EXECUTABLE=${PKGCONFIG}")
endif()

vcpkg_cmake_configure(
  SOURCE_PATH "${SOURCE_PATH}"
  OPTIONS
    ${FEATURE_OPTIONS}
    -DASYNCIO_BUILD_TESTS=OFF
    -DASYNCIO_BUILD_EXAMPLES=OFF
    -DASYNCIO_BUILD_BENCHMARKS=OFF
    -DASYNCIO_BUILD_FUZZERS=OFF
    -DASYNCIO_KQUEUE_COMPILE_CHECK=OFF
    -DASYNCIO_INSTALL=ON
    ${PKGCONFIG_OPTIONS}
)
vcpkg_cmake_install()
vcpkg_cmake_config_fixup(CONFIG_PATH lib/cmake/asyncio)
vcpkg_fixup_pkgconfig()

file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/debug/include")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
