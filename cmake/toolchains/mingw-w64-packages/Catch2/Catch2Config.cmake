# Catch2 v2 for the mingw-w64 cross build: the single header from Debian's
# catch2 package, exposed on its own (see ../fmt/fmtConfig.cmake for why not
# the host's /usr/include).
if(NOT TARGET Catch2::Catch2)
  set(_asyncio_catch_dir "${CMAKE_BINARY_DIR}/mingw-w64-packages/catch2-include")
  if(NOT EXISTS "${_asyncio_catch_dir}/catch2")
    file(MAKE_DIRECTORY "${_asyncio_catch_dir}")
    file(CREATE_LINK /usr/include/catch2 "${_asyncio_catch_dir}/catch2" SYMBOLIC)
  endif()
  add_library(Catch2::Catch2 INTERFACE IMPORTED)
  set_target_properties(Catch2::Catch2 PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_asyncio_catch_dir}")
endif()
