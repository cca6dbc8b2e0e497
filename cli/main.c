/* main.c: the shardq command line. One binary, one subcommand per verb;
 * each subcommand parses its argv and calls the library (see cmds.h). */
#include <stdio.h>
#include <string.h>

#include "cli/cmds.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
} command;

static const command commands[] = {
    {"run", cmd_run},
    {"status", cmd_status},
    {"eval", cmd_eval},
    {"inspect", cmd_inspect},
    {"tokenize", cmd_tokenize},
    {"push", cmd_push},
    {"pull", cmd_pull},
    {"models", cmd_models},
    {"sweep", cmd_sweep},
    {"report", cmd_report},
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: shardq <command> [args]\n"
            "  run JOB.json             run a job spec (under mpirun/srun for several ranks)\n"
            "  status JOB.json          print a job's progress from its journal\n"
            "  eval --model DIR --data FILE|--data-ids FILE [--seqlen N] [--max-windows K] [--out FILE]\n"
            "  inspect DIR|FILE         print a model's config and tensor table\n"
            "  tokenize --tokenizer FILE|DIR [--input FILE] [--jsonl [--field F]] [--no-special] [--decode]\n"
            "  push DIR URI | pull URI DIR | models URI\n"
            "  sweep SWEEP.json [--dry-run] [--point N]   run a grid of jobs; records in ROOT/results.jsonl\n"
            "  report RESULTS.jsonl -o FILE [--format html|md] [--point NAME]   the sweep's Pareto report\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "shardq: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
