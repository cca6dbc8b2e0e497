/* report_html.h: the sweep report as one self-contained HTML file: inline CSS and SVG, no
 * network, readable without JavaScript. Perplexity against output size with the Pareto frontier
 * drawn and labelled, perplexity against average bits, a table of every point (a small inline
 * script sorts it by a clicked column; without it the table stays in point order), and one
 * point's per-layer bits and sparsity. */
#ifndef SQ_CLI_REPORT_HTML_H
#define SQ_CLI_REPORT_HTML_H

#include <stdio.h>

#include "cli/report_data.h"

/* `layers` is the point whose per-layer data is shown (NULL: none). `source` names the results
 * file in the page. */
void report_write_html(FILE *out, const report_data *data, const report_row *layers, const char *source);

/* The same table in Markdown, with the frontier marked. */
void report_write_markdown(FILE *out, const report_data *data, const char *source);

#endif
