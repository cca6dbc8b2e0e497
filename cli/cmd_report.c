/* cmd_report.c: `shardq report RESULTS.jsonl -o FILE` — a sweep's results as one self-contained
 * HTML page (cli/report_html.h) or, with --format md, a Markdown table. The page is written to a
 * temporary file and renamed into place, so a failed report leaves an earlier one intact. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmds.h"
#include "cli/report_data.h"
#include "cli/report_html.h"
#include "core/fileio.h"

static const char usage[] =
    "usage: shardq report RESULTS.jsonl -o FILE [--format html|md] [--point NAME]\n"
    "  html (default): perplexity vs output size with the Pareto frontier, perplexity vs average\n"
    "  bits, a sortable table and --point NAME's per-layer bits and sparsity (default: the\n"
    "  frontier's lowest-perplexity point); md: the table in Markdown\n";

static int write_report(const char *results, const char *output, bool markdown, const char *point)
{
    report_data data;
    if (report_data_load(&data, results) != SQ_OK) {
        fprintf(stderr, "shardq report: %s\n", sq_last_error());
        return 1;
    }
    const report_row *layers = report_layers_row(&data, point);
    if (point && !layers) {
        fprintf(stderr, "shardq report: %s has no point named '%s'\n", results, point);
        report_data_free(&data);
        return 1;
    }
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (!out) {
        fprintf(stderr, "shardq report: out of memory\n");
        report_data_free(&data);
        return 1;
    }
    if (markdown)
        report_write_markdown(out, &data, results);
    else
        report_write_html(out, &data, layers, results);
    int failed = fclose(out) != 0;
    if (!failed && sq_write_file_atomic(output, text, len) != SQ_OK) {
        fprintf(stderr, "shardq report: %s\n", sq_last_error());
        failed = 1;
    } else if (!failed) {
        fprintf(stderr, "shardq report: %d points, %d on the frontier: %s\n", data.n, data.n_frontier, output);
    }
    free(text);
    report_data_free(&data);
    return failed;
}

int cmd_report(int argc, char **argv)
{
    if (sq_cmd_help_requested(argc, argv))
        return sq_cmd_help(usage);
    const char *results = NULL, *output = NULL, *format = "html", *point = NULL;
    for (int i = 1; i < argc; i++) {
        const char **value = !strcmp(argv[i], "-o") ? &output
                             : !strcmp(argv[i], "--format") ? &format
                             : !strcmp(argv[i], "--point") ? &point : NULL;
        if (value && i + 1 < argc)
            *value = argv[++i];
        else if (!value && argv[i][0] != '-' && !results)
            results = argv[i];
        else
            return sq_cmd_usage_error(usage);
    }
    if (!results || !output || (strcmp(format, "html") && strcmp(format, "md")))
        return sq_cmd_usage_error(usage);
    return write_report(results, output, !strcmp(format, "md"), point);
}
