"""dp_tests: one cc_test per tests/<folder>/test_*.c (mirrors dp_add_tests in
tests/CMakeLists.txt).

Call it from tests/<folder>/BUILD.bazel:

    load("//bazel:tests.bzl", "dp_tests")
    dp_tests(deps = ["//forwarder", "//tests/support:testsupport"])

Each tests/<folder>/test_<unit>.c becomes //tests/<folder>:test_<unit>,
linked with `deps` and Criterion, run as `test_<unit> --jobs 2` with a
300 s timeout (size "medium"), like the CMake/ctest test <folder>.<unit>.

The environment CMake gives tests has these Bazel equivalents (all made
absolute before main() by //bazel:dp_test_env):
  DP_BIN_DIR    tests/<folder>/bin in the runfiles: a copy of each target in
                `bins` (e.g. "//serverless_init:serverless-init" and child
                programs built in the folder), under its target name.
  DP_TEST_DIR   tests/<folder> in the runfiles: this folder's test programs
                and its data files.
  DP_SOURCE_DIR the runfiles root, laid out like the source tree; it holds
                the files the tests declare: every non-C file of the test
                folder and the data of their deps (e.g. tests/support/certs).
  LSAN_OPTIONS  suppressions=<runfiles root>/tests/lsan.supp, as in CMake.
Every test also gets //tests:lsan_runner (the runner process's leak check
is made at its start; see tests/lsan_runner.c).
"""

load("//bazel:copts.bzl", "COPTS")

def _target_name(label):
    return label.rsplit(":", 1)[-1] if ":" in label else label.rsplit("/", 1)[-1]

def dp_tests(deps, bins = [], data = [], env = {}, tags = [], size = "medium", args = None, exclusive = [], manual = []):
    """Declares the tests of the calling tests/<folder>/BUILD.bazel.

    Args:
      deps: libraries every test links (the CMake dp_add_tests libraries).
      bins: executables to copy into DP_BIN_DIR (tests/<folder>/bin).
      data: extra runtime files.
      env: extra environment variables (paths relative to the runfiles root,
        the test's working directory).
      tags: tags for every test (e.g. "local" to run outside the sandbox).
      size: Bazel test size; "medium" is a 300 s timeout, as in CMake.
      args: test arguments; default ["--jobs", "2"] as in CMake.
      exclusive: units (e.g. "test_e2e_burst") that run alone, with
        --jobs 1, like their CMake RUN_SERIAL counterparts: tests that
        measure loss under a burst must not share the two cores.
      manual: units built by `bazel build //...` but run only when named
        (`bazel test //tests/<folder>:<unit>`), not by `bazel test //...`.
    """
    pkg = native.package_name()
    bin_outs = []
    if bins:
        srcs = []
        cmds = []
        for b in bins:
            label = b if b.startswith("//") or b.startswith("@") else "//%s%s" % (pkg, b if b.startswith(":") else ":" + b)
            out = "bin/" + _target_name(label)
            srcs.append(label)
            bin_outs.append(out)
            cmds.append("cp $(location %s) $(RULEDIR)/%s" % (label, out))
        native.genrule(
            name = "dp_bin",
            testonly = True,
            srcs = srcs,
            outs = bin_outs,
            cmd = " && ".join(cmds),
        )

    fixtures = native.glob(
        ["**"],
        exclude = ["BUILD.bazel", "CMakeLists.txt", "**/*.c", "**/*.h"],
    )
    test_env = {
        "DP_BIN_DIR": pkg + "/bin",
        "DP_TEST_DIR": pkg,
        "DP_SOURCE_DIR": ".",
        "LSAN_OPTIONS": "suppressions=tests/lsan.supp",
    }
    test_env.update(env)
    for src in native.glob(["test_*.c"]):
        unit = src[:-len(".c")]
        native.cc_test(
            name = unit,
            srcs = [src] + native.glob(["*.h"]),
            copts = COPTS + ["-Itests"],
            deps = deps + [
                "//bazel:criterion",
                "//bazel:dp_test_env",
                "//bazel:m",
                "//tests:lsan_runner",
            ],
            # Criterion registers tests in an ELF section nothing refers
            # to: -c opt's --gc-sections would drop them all (0 tests run).
            linkopts = ["-Wl,--no-gc-sections"],
            data = bin_outs + fixtures + data + ["//tests:lsan.supp"],
            args = (["--jobs", "1"] if unit in exclusive else ["--jobs", "2"]) if args == None else args,
            env = test_env,
            size = size,
            tags = tags + (["exclusive"] if unit in exclusive else []) +
                   (["manual"] if unit in manual else []),
        )
