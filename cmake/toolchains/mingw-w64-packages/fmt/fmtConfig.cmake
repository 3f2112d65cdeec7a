# fmt for the mingw-w64 cross build: Debian ships no Windows build of fmt,
# so its host headers are used header-only (FMT_HEADER_ONLY compiles fmt's
# implementation into each user). Only the fmt directory is exposed, never
# the host's /usr/include, whose system headers are Linux's.
if(NOT TARGET fmt::fmt)
  set(_asyncio_fmt_dir "${CMAKE_BINARY_DIR}/mingw-w64-packages/fmt-include")
  if(NOT EXISTS "${_asyncio_fmt_dir}/fmt")
    file(MAKE_DIRECTORY "${_asyncio_fmt_dir}")
    file(CREATE_LINK /usr/include/fmt "${_asyncio_fmt_dir}/fmt" SYMBOLIC)
  endif()
  add_library(fmt::fmt INTERFACE IMPORTED)
  set_target_properties(fmt::fmt PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${_asyncio_fmt_dir}"
    INTERFACE_COMPILE_DEFINITIONS FMT_HEADER_ONLY=1)
  add_library(fmt::fmt-header-only ALIAS fmt::fmt)
endif()
