/*
 * ti_tmpdir.h - a suite fixture: a fresh directory under /tmp for each
 * test, with the path of one output file in it (tmpdir, outpath), removed
 * after the test. Use: TI_TMPDIR_FIXTURE("/tmp/name_XXXXXX", "out.jsonl");
 * then TestSuite(name, .init = ti_tmpdir_setup, .fini = ti_tmpdir_teardown).
 * ti_read_file reads what a test wrote there.
 */
#ifndef TI_TMPDIR_H
#define TI_TMPDIR_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define TI_TMPDIR_FIXTURE(pattern, file)                                       \
    static char tmpdir[256];                                                   \
    static char outpath[300];                                                  \
    static void ti_tmpdir_setup(void)                                          \
    {                                                                          \
        snprintf(tmpdir, sizeof(tmpdir), "%s", pattern);                       \
        cr_assert_not_null(mkdtemp(tmpdir));                                   \
        snprintf(outpath, sizeof(outpath), "%s/%s", tmpdir, file);             \
    }                                                                          \
    static void ti_tmpdir_teardown(void)                                       \
    {                                                                          \
        unlink(outpath);                                                       \
        rmdir(tmpdir);                                                         \
    }

/* The whole of a (small) file the test wrote, e.g. outpath; asserts it
 * exists. The buffer is static: valid until the next call. */
static inline char *ti_read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

#endif /* TI_TMPDIR_H */
