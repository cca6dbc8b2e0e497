/* report_svg.h: the report's pictures as inline SVG (no script, no network): a scatter plot of
 * perplexity against one x quantity, with the Pareto frontier drawn as a polyline through its
 * points and each of them labelled with its point name, and bars of one point's per-layer bits
 * and sparsity. Points carry a <title> tooltip; a point's colour is its method's (legend). */
#ifndef SQ_CLI_REPORT_SVG_H
#define SQ_CLI_REPORT_SVG_H

#include <stdbool.h>
#include <stdio.h>

#include "cli/report_data.h"

typedef struct {
    const char *id; /* the <svg> element's id */
    const char *title;
    const char *x_label;
    double (*x_of)(const report_row *row);
    bool x_is_bytes;    /* tick labels as sizes (KiB, MiB, ...) */
    bool draw_frontier; /* the frontier of data->frontier (computed on size) */
} report_plot;

void report_svg_scatter(FILE *out, const report_data *data, const report_plot *plot);

/* Two bar rows per layer: average bits (of 16) and sparsity (of 1). */
void report_svg_layers(FILE *out, const report_row *row);

/* `text` with & < > " escaped for HTML and SVG. */
void report_xml_text(FILE *out, const char *text);

#endif
