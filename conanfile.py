"""Conan 2 recipe for asyncio for C++ (Python's asyncio as a C++20 library).

    conan create . -o "asyncio/*:with_ssl=True" -o "asyncio/*:with_io_uring=True"

The package mirrors the CMake one (docs/packaging.md): find_package(asyncio)
and the target asyncio::asyncio, pkg-config module asyncio, components core,
ssl and io_uring. scripts/package_check.sh runs the CMake steps this recipe
asks for, with the same option values; Conan itself is not run there.
"""

import os
import re

from conan import ConanFile
from conan.tools.build import check_min_cppstd
from conan.tools.cmake import CMake, CMakeDeps, CMakeToolchain, cmake_layout
from conan.tools.files import copy, load, rmdir
from conan.tools.gnu import PkgConfigDeps

required_conan_version = ">=2.0"


class AsyncioConan(ConanFile):
    name = "asyncio"
    description = "Python's asyncio for C++20: coroutines, tasks, event loops, streams, TLS"
    license = "MIT"
    topics = ("asyncio", "coroutines", "async", "networking", "event-loop", "io_uring")
    package_type = "library"
    settings = "os", "arch", "compiler", "build_type"
    options = {
        "shared": [True, False],
        "fPIC": [True, False],
        "with_ssl": [True, False],
        "with_io_uring": [True, False],
    }
    default_options = {
        "shared": False,
        "fPIC": True,
        "with_ssl": True,
        "with_io_uring": True,
    }
    exports_sources = "CMakeLists.txt", "LICENSE", "cmake/*", "include/*", "src/*"

    def set_version(self):
        # One version, the one in CMakeLists.txt's project().
        text = load(self, os.path.join(self.recipe_folder, "CMakeLists.txt"))
        self.version = re.search(r"project\(asyncio VERSION ([0-9.]+)", text).group(1)

    def config_options(self):
        if self.settings.os == "Windows":
            del self.options.fPIC
        if self.settings.os != "Linux":
            del self.options.with_io_uring

    def configure(self):
        if self.options.shared:
            self.options.rm_safe("fPIC")

    def layout(self):
        cmake_layout(self)

    def requirements(self):
        # Public headers include fmt; OpenSSL and liburing stay private.
        self.requires("fmt/[>=9 <12]", transitive_headers=True)
        if self.options.with_ssl:
            self.requires("openssl/[>=3 <4]")
        if self.options.get_safe("with_io_uring"):
            self.requires("liburing/[>=2.3 <3]")

    def validate(self):
        check_min_cppstd(self, 20)

    def generate(self):
        tc = CMakeToolchain(self)
        tc.cache_variables["ASYNCIO_WITH_SSL"] = bool(self.options.with_ssl)
        tc.cache_variables["ASYNCIO_WITH_IO_URING"] = bool(self.options.get_safe("with_io_uring", False))
        tc.cache_variables["ASYNCIO_BUILD_TESTS"] = False
        tc.cache_variables["ASYNCIO_BUILD_EXAMPLES"] = False
        tc.cache_variables["ASYNCIO_BUILD_BENCHMARKS"] = False
        tc.cache_variables["ASYNCIO_BUILD_FUZZERS"] = False
        tc.cache_variables["ASYNCIO_KQUEUE_COMPILE_CHECK"] = False
        tc.cache_variables["ASYNCIO_INSTALL"] = True
        tc.generate()
        CMakeDeps(self).generate()
        # The library finds liburing with pkg_check_modules.
        if self.options.get_safe("with_io_uring"):
            PkgConfigDeps(self).generate()

    def build(self):
        cmake = CMake(self)
        cmake.configure()
        cmake.build()

    def package(self):
        copy(self, "LICENSE", self.source_folder, os.path.join(self.package_folder, "licenses"))
        cmake = CMake(self)
        cmake.install()
        # Conan writes its own config and .pc files from package_info().
        rmdir(self, os.path.join(self.package_folder, "lib", "cmake"))
        rmdir(self, os.path.join(self.package_folder, "lib", "pkgconfig"))

    def package_info(self):
        self.cpp_info.set_property("cmake_file_name", "asyncio")
        self.cpp_info.set_property("cmake_target_name", "asyncio::asyncio")
        self.cpp_info.set_property("pkg_config_name", "asyncio")

        core = self.cpp_info.components["core"]
        core.libs = ["asyncio"]
        core.requires = ["fmt::fmt"]
        core.set_property("cmake_target_name", "asyncio::core")
        core.set_property("pkg_config_name", "asyncio-core")
        # As the CMake target: a static library's users define
        # ASYNCIO_STATIC_DEFINE, which empties ASYNCIO_EXPORT (export.hpp).
        if not self.options.shared:
            core.defines.append("ASYNCIO_STATIC_DEFINE")
        if self.settings.os in ("Linux", "FreeBSD"):
            core.system_libs = ["pthread"]
        elif self.settings.os == "Windows":
            core.system_libs = ["ws2_32", "mswsock", "iphlpapi"]
            core.defines.append("_WIN32_WINNT=0x0602")

        if self.options.with_ssl:
            ssl = self.cpp_info.components["ssl"]
            ssl.requires = ["core", "openssl::ssl", "openssl::crypto"]
            ssl.set_property("cmake_target_name", "asyncio::ssl")
            ssl.set_property("pkg_config_name", "asyncio-ssl")

        if self.options.get_safe("with_io_uring"):
            io_uring = self.cpp_info.components["io_uring"]
            io_uring.requires = ["core", "liburing::liburing"]
            io_uring.set_property("cmake_target_name", "asyncio::io_uring")
            io_uring.set_property("pkg_config_name", "asyncio-io_uring")
