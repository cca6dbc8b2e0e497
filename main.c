/* main.c: the shardq command line. One binary, one subcommand per verb;
 * each subcommand lives beside the subsystem it drives (see cmd_*.c files). */
#include <stdio.h>
#include <string.h>

#include "cmds.h"
#include "core/status.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: shardq <command> [args]\n"
            "  run JOB.json             run a job spec (under mpirun/srun for several ranks)\n"
            "  status JOB.json          print a job's progress from its journal\n"
            "  eval --model DIR --data FILE [--seqlen N] [--max-windows K] [--out FILE]\n"
            "  inspect DIR|FILE         print a model's config and tensor table\n"
            "  tokenize --tokenizer FILE|DIR [--input FILE] [--jsonl [--field F]] [--no-special]\n"
            "  push DIR URI | pull URI DIR | models URI\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "tokenize"))
        return cmd_tokenize(argc, argv);
    fprintf(stderr, "shardq: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
