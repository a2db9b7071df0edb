/*
 * test_cli.c - serverless-init's command line: actions, sidecar mode,
 * whitespace splitting of a single argument, "--", exit-code mapping, and
 * an OOM loop over the parser.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "sinit.h"

static void parse_ok(int argc, char *const *argv, struct sinit_cli *c)
{
    cr_assert_eq(sinit_cli_parse(argc, argv, c), 0);
}

Test(cli, no_command_is_sidecar)
{
    char *argv[] = {"serverless-init", NULL};
    struct sinit_cli c;
    parse_ok(1, argv, &c);
    cr_assert_eq(c.action, SINIT_RUN);
    cr_assert_null(c.argv);
    cr_assert_eq(c.argc, 0);
    sinit_cli_free(&c);
}

Test(cli, help_and_version)
{
    char *a1[] = {"si", "--help", "x", NULL};
    char *a2[] = {"si", "-h", NULL};
    char *a3[] = {"si", "--version", NULL};
    struct sinit_cli c;
    parse_ok(3, a1, &c);
    cr_assert_eq(c.action, SINIT_HELP);
    parse_ok(2, a2, &c);
    cr_assert_eq(c.action, SINIT_HELP);
    parse_ok(2, a3, &c);
    cr_assert_eq(c.action, SINIT_VERSION);
    cr_assert_not_null(strstr(sinit_usage(), "128+N"));
}

Test(cli, single_argument_is_split_on_whitespace)
{
    char *argv[] = {"si", "  node\tapp.js   --port 80 ", NULL};
    struct sinit_cli c;
    parse_ok(2, argv, &c);
    cr_assert_eq(c.argc, 4);
    cr_assert_str_eq(c.argv[0], "node");
    cr_assert_str_eq(c.argv[1], "app.js");
    cr_assert_str_eq(c.argv[2], "--port");
    cr_assert_str_eq(c.argv[3], "80");
    cr_assert_null(c.argv[4]);
    sinit_cli_free(&c);
    cr_assert_null(c.argv);
}

Test(cli, several_arguments_are_kept_as_they_are)
{
    char *argv[] = {"si", "sh", "-c", "echo a  b", NULL};
    struct sinit_cli c;
    parse_ok(4, argv, &c);
    cr_assert_eq(c.argc, 3);
    cr_assert_str_eq(c.argv[2], "echo a  b");
    cr_assert_null(c.argv[3]);
    sinit_cli_free(&c);
}

Test(cli, double_dash_runs_option_like_command)
{
    char *argv[] = {"si", "--", "--help", NULL};
    struct sinit_cli c;
    parse_ok(3, argv, &c);
    cr_assert_eq(c.action, SINIT_RUN);
    cr_assert_eq(c.argc, 1);
    cr_assert_str_eq(c.argv[0], "--help");
    sinit_cli_free(&c);
    char *only[] = {"si", "--", NULL};
    parse_ok(2, only, &c);
    cr_assert_null(c.argv); /* sidecar */
}

Test(cli, blank_argument_is_an_error)
{
    char *argv[] = {"si", " \t ", NULL};
    struct sinit_cli c;
    cr_assert_eq(sinit_cli_parse(2, argv, &c), UV_EINVAL);
    cr_assert_null(c.argv);
}

Test(cli, exit_code_mapping)
{
    cr_assert_eq(sinit_exit_code(0, 0), 0);
    cr_assert_eq(sinit_exit_code(1, 0), 1);
    cr_assert_eq(sinit_exit_code(7, 0), 7);
    cr_assert_eq(sinit_exit_code(255, 0), 255);
    cr_assert_eq(sinit_exit_code(0, 9), 137);
    cr_assert_eq(sinit_exit_code(0, 15), 143);
    cr_assert_eq(sinit_exit_code(0, 6), 134);
}

Test(cli, oom_loop)
{
    char *argv1[] = {"si", "a b c d", NULL};
    char *argv2[] = {"si", "a", "b", "c", NULL};
    char *const *cases[] = {argv1, argv2};
    int argcs[] = {2, 4};
    size_t want[] = {4, 3};
    for (int k = 0; k < 2; k++) {
        size_t base = cmn_alloc_live_bytes();
        int ok = 0;
        for (uint64_t n = 1; n < 50 && !ok; n++) {
            struct sinit_cli c;
            cmn_alloc_fail_after(n);
            int err = sinit_cli_parse(argcs[k], cases[k], &c);
            cmn_alloc_fail_reset();
            if (err == 0) {
                ok = 1;
                cr_assert_eq(c.argc, want[k]);
                sinit_cli_free(&c);
            } else {
                cr_assert_eq(err, UV_ENOMEM);
                cr_assert_null(c.argv);
            }
            cr_assert_eq(cmn_alloc_live_bytes(), base, "leak at n=%llu",
                         (unsigned long long)n);
        }
        cr_assert(ok);
    }
}
