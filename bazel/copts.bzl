"""Compiler flags shared by every drainpipe target (mirrors CMakeLists.txt)."""

# -Werror as in CMake's default WERROR=ON; C11 with GNU extensions.
COPTS = [
    "-Wall",
    "-Wextra",
    "-Wshadow",
    "-Wstrict-prototypes",
    "-Wno-unused-parameter",
    "-Werror",
    "-D_GNU_SOURCE",
    "-std=gnu11",
]

# Generated code (protoc-c output) is not ours to fix: warnings stay warnings.
GENERATED_COPTS = COPTS + ["-Wno-error"]
