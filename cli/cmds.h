/* cmds.h: the shardq subcommands dispatched by main.c. Each receives its own
 * argument vector: argv[0] is the subcommand's name, options follow.
 *
 * Every subcommand treats its arguments alike: -h or --help anywhere prints
 * its usage on stdout and exits 0; bad arguments print the usage on stderr
 * and exit SQ_EXIT_USAGE. */
#ifndef SQ_CLI_CMDS_H
#define SQ_CLI_CMDS_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define SQ_EXIT_USAGE 2

int cmd_run(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_push(int argc, char **argv);
int cmd_pull(int argc, char **argv);
int cmd_models(int argc, char **argv);
int cmd_sweep(int argc, char **argv);
int cmd_report(int argc, char **argv);

static inline bool sq_cmd_help_requested(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            return true;
    return false;
}

/* The usage asked for: stdout, exit 0. */
static inline int sq_cmd_help(const char *usage)
{
    fputs(usage, stdout);
    return fflush(stdout) == 0 ? 0 : 1;
}

/* Bad arguments: the usage on stderr, exit 2. */
static inline int sq_cmd_usage_error(const char *usage)
{
    fputs(usage, stderr);
    return SQ_EXIT_USAGE;
}

/* For a command of exactly `count` arguments, none an option: -1 to go on, else the exit code
 * after printing the usage (asked for, or bad arguments). */
static inline int sq_cmd_plain_args(int argc, char **argv, int count, const char *usage)
{
    if (sq_cmd_help_requested(argc, argv))
        return sq_cmd_help(usage);
    bool bad = argc != count + 1;
    for (int i = 1; i < argc; i++)
        bad = bad || argv[i][0] == '-';
    return bad ? sq_cmd_usage_error(usage) : -1;
}

#endif
