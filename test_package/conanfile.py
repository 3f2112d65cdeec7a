"""Conan test_package: builds tests/consumers/common/main.cpp (a TCP echo on
every backend, the program scripts/consumers.sh builds) against the package
with find_package(asyncio) and runs it."""

import os

from conan import ConanFile
from conan.tools.build import can_run
from conan.tools.cmake import CMake, CMakeDeps, CMakeToolchain, cmake_layout


class AsyncioTestConan(ConanFile):
    settings = "os", "arch", "compiler", "build_type"

    def requirements(self):
        self.requires(self.tested_reference_str)

    def layout(self):
        cmake_layout(self)

    def generate(self):
        tc = CMakeToolchain(self)
        # With TLS built in, the program also checks a context can be made.
        tc.cache_variables["ASYNCIO_EXPECT_SSL"] = bool(self.dependencies["asyncio"].options.with_ssl)
        tc.generate()
        CMakeDeps(self).generate()

    def build(self):
        cmake = CMake(self)
        cmake.configure()
        cmake.build()

    def test(self):
        if can_run(self):
            self.run(os.path.join(self.cpp.build.bindir, "test_package"), env="conanrun")
