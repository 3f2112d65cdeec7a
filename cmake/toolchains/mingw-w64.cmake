# Cross-builds for 64-bit Windows with Debian's mingw-w64 (the posix thread
# model: the win32 one has no std::thread) and runs what it builds under wine:
#   cmake --preset mingw && cmake --build --preset mingw && ctest --preset mingw
# (the mingw-dll preset: the same with libasyncio as a DLL).
# Debian packages: g++-mingw-w64-x86-64-posix wine wine64.
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)

set(ASYNCIO_MINGW_TRIPLE x86_64-w64-mingw32)
set(CMAKE_C_COMPILER ${ASYNCIO_MINGW_TRIPLE}-gcc-posix)
set(CMAKE_CXX_COMPILER ${ASYNCIO_MINGW_TRIPLE}-g++-posix)
set(CMAKE_RC_COMPILER ${ASYNCIO_MINGW_TRIPLE}-windres)

set(CMAKE_FIND_ROOT_PATH /usr/${ASYNCIO_MINGW_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
# BOTH: a package installed for Windows under a prefix given in
# CMAKE_PREFIX_PATH (this library, say) is found where it is.
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)

find_program(ASYNCIO_WINE NAMES wine64 wine PATHS /usr/lib/wine)
if(NOT BUILD_SHARED_LIBS)
  # Statically linked, an executable needs no DLL from the cross compiler's
  # tree at run time, so wine runs it as it is.
  set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")
  if(ASYNCIO_WINE)
    set(CMAKE_CROSSCOMPILING_EMULATOR ${ASYNCIO_WINE})
  endif()
elseif(ASYNCIO_WINE)
  # libasyncio as a DLL: the programs load the C++ runtime as DLLs too, so
  # that they and the library share one (one heap, one exception runtime).
  # Wine finds those, and libasyncio.dll at the build tree's top, on WINEPATH.
  execute_process(COMMAND ${CMAKE_CXX_COMPILER} -print-file-name=libstdc++-6.dll
    OUTPUT_VARIABLE asyncio_mingw_runtime OUTPUT_STRIP_TRAILING_WHITESPACE)
  get_filename_component(asyncio_mingw_runtime "${asyncio_mingw_runtime}" DIRECTORY)
  set(CMAKE_CROSSCOMPILING_EMULATOR env
    "WINEPATH=${asyncio_mingw_runtime}\;/usr/${ASYNCIO_MINGW_TRIPLE}/lib\;${CMAKE_BINARY_DIR}"
    ${ASYNCIO_WINE})
endif()

# Debian has no Windows builds of the header libraries the project uses:
# take the host's headers through small package files (fmt header-only,
# Catch2 v2's single header). A consumer configured with this toolchain file
# finds them the same way.
set(fmt_DIR "${CMAKE_CURRENT_LIST_DIR}/mingw-w64-packages/fmt" CACHE PATH "")
set(Catch2_DIR "${CMAKE_CURRENT_LIST_DIR}/mingw-w64-packages/Catch2" CACHE PATH "")
