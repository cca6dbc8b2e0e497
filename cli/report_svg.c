/* report_svg.c: scatter plots and per-layer bars as inline SVG (see report_svg.h). */
#include "cli/report_svg.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PLOT_W 720
#define PLOT_H 420
#define LEFT 80
#define RIGHT 180 /* room for the legend and the labels of the rightmost points */
#define TOP 36
#define BOTTOM 56

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"};
#define PALETTE_SIZE (int)(sizeof palette / sizeof palette[0])

void report_xml_text(FILE *out, const char *text)
{
    for (const char *c = text ? text : ""; *c; c++) {
        switch (*c) {
        case '&': fputs("&amp;", out); break;
        case '<': fputs("&lt;", out); break;
        case '>': fputs("&gt;", out); break;
        case '"': fputs("&quot;", out); break;
        default: fputc(*c, out);
        }
    }
}

/* The methods in order of first appearance; a row's colour is its method's. */
static int method_index(const report_data *data, int row)
{
    int index = 0;
    for (int i = 0; i < data->n; i++) {
        if (!strcmp(data->rows[i].method, data->rows[row].method))
            return index;
        bool first = true;
        for (int j = 0; j < i && first; j++)
            first = strcmp(data->rows[j].method, data->rows[i].method) != 0;
        index += first;
    }
    return index;
}

typedef struct {
    double lo, hi, step;
} axis_range;

/* A range over the finite values with a round tick step (1, 2 or 5 times a power of ten). */
static axis_range nice_range(const double *v, int n)
{
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++)
        if (isfinite(v[i]))
            lo = fmin(lo, v[i]), hi = fmax(hi, v[i]);
    if (!isfinite(lo))
        lo = 0, hi = 1;
    if (hi - lo < 1e-12 * fmax(1.0, fabs(hi)))
        lo -= fmax(0.5, fabs(lo) * 0.1), hi += fmax(0.5, fabs(hi) * 0.1);
    double raw = (hi - lo) / 5, power = pow(10, floor(log10(raw))), step = power;
    if (raw / power > 5)
        step = 10 * power;
    else if (raw / power > 2)
        step = 5 * power;
    else if (raw / power > 1)
        step = 2 * power;
    return (axis_range){floor(lo / step) * step, ceil(hi / step) * step, step};
}

static double to_px(double v, const axis_range *r, double from, double to)
{
    return from + (v - r->lo) / (r->hi - r->lo) * (to - from);
}

static void tick_label(double v, bool bytes, char *out, size_t cap)
{
    if (bytes)
        report_format_bytes(v, out, cap);
    else
        snprintf(out, cap, "%g", fabs(v) < 1e-12 ? 0.0 : v);
}

static void draw_axes(FILE *out, const axis_range *x, const axis_range *y, const report_plot *plot)
{
    const int x0 = LEFT, x1 = PLOT_W - RIGHT, y0 = PLOT_H - BOTTOM, y1 = TOP;
    fprintf(out, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" class=\"frame\"/>\n", x0, y1, x1 - x0, y0 - y1);
    char label[32];
    for (double v = x->lo; v <= x->hi + x->step * 1e-6; v += x->step) {
        double px = to_px(v, x, x0, x1);
        tick_label(v, plot->x_is_bytes, label, sizeof label);
        fprintf(out, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" class=\"grid\"/>"
                     "<text x=\"%.1f\" y=\"%d\" class=\"tick\" text-anchor=\"middle\">%s</text>\n",
                px, y1, px, y0, px, y0 + 16, label);
    }
    for (double v = y->lo; v <= y->hi + y->step * 1e-6; v += y->step) {
        double py = to_px(v, y, y0, y1);
        tick_label(v, false, label, sizeof label);
        fprintf(out, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" class=\"grid\"/>"
                     "<text x=\"%d\" y=\"%.1f\" class=\"tick\" text-anchor=\"end\">%s</text>\n",
                x0, py, x1, py, x0 - 6, py + 4, label);
    }
    fprintf(out, "<text x=\"%d\" y=\"%d\" class=\"axis-label\" text-anchor=\"middle\">", (x0 + x1) / 2, PLOT_H - 14);
    report_xml_text(out, plot->x_label);
    fprintf(out, "</text>\n<text x=\"18\" y=\"%d\" class=\"axis-label\" text-anchor=\"middle\" "
                 "transform=\"rotate(-90 18 %d)\">perplexity</text>\n", (y0 + y1) / 2, (y0 + y1) / 2);
    fprintf(out, "<text x=\"%d\" y=\"22\" class=\"plot-title\">", x0);
    report_xml_text(out, plot->title);
    fputs("</text>\n", out);
}

static void draw_legend(FILE *out, const report_data *data)
{
    int shown = 0;
    for (int i = 0; i < data->n; i++) {
        if (method_index(data, i) != shown)
            continue;
        int y = TOP + 14 + 18 * shown;
        fprintf(out, "<g class=\"legend\"><circle cx=\"%d\" cy=\"%d\" r=\"5\" fill=\"%s\"/><text x=\"%d\" y=\"%d\">",
                PLOT_W - RIGHT + 16, y, palette[shown % PALETTE_SIZE], PLOT_W - RIGHT + 26, y + 4);
        report_xml_text(out, data->rows[i].method);
        fputs("</text></g>\n", out);
        shown++;
    }
}

void report_svg_scatter(FILE *out, const report_data *data, const report_plot *plot)
{
    double *xs = malloc((size_t)(data->n + 1) * sizeof *xs), *ys = malloc((size_t)(data->n + 1) * sizeof *ys);
    if (!xs || !ys) {
        free(xs), free(ys);
        fputs("<p>out of memory drawing the plot</p>\n", out);
        return;
    }
    for (int i = 0; i < data->n; i++)
        xs[i] = plot->x_of(&data->rows[i]), ys[i] = data->rows[i].ppl;
    axis_range x = nice_range(xs, data->n), y = nice_range(ys, data->n);
    const int x0 = LEFT, x1 = PLOT_W - RIGHT, y0 = PLOT_H - BOTTOM, y1 = TOP;
    fprintf(out, "<svg id=\"%s\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" "
                 "role=\"img\">\n", plot->id, PLOT_W, PLOT_H, PLOT_W, PLOT_H);
    draw_axes(out, &x, &y, plot);
    if (plot->draw_frontier && data->n_frontier > 0) {
        fputs("<polyline class=\"frontier\" points=\"", out);
        for (int k = 0; k < data->n_frontier; k++) {
            int i = data->frontier[k];
            fprintf(out, "%s%.1f,%.1f", k ? " " : "", to_px(xs[i], &x, x0, x1), to_px(ys[i], &y, y0, y1));
        }
        fputs("\"/>\n", out);
    }
    for (int i = 0; i < data->n; i++) {
        if (!isfinite(xs[i]) || !isfinite(ys[i]))
            continue;
        const report_row *row = &data->rows[i];
        double px = to_px(xs[i], &x, x0, x1), py = to_px(ys[i], &y, y0, y1);
        fprintf(out, "<circle class=\"point%s\" cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"%s\"><title>",
                plot->draw_frontier && row->frontier ? " on-frontier" : "", px, py,
                palette[method_index(data, i) % PALETTE_SIZE]);
        report_xml_text(out, row->name);
        fprintf(out, ": perplexity %.4g, %.3g bits/weight</title></circle>\n", row->ppl, row->avg_bits);
        if (plot->draw_frontier && row->frontier) {
            fprintf(out, "<text class=\"frontier-label\" x=\"%.1f\" y=\"%.1f\">", px + 7, py - 7);
            report_xml_text(out, row->name);
            fputs("</text>\n", out);
        }
    }
    draw_legend(out, data);
    fputs("</svg>\n", out);
    free(xs), free(ys);
}

void report_svg_layers(FILE *out, const report_row *row)
{
    int n = (int)json_array_size(row->layers);
    const int label_w = 70, bar_w = 260, gap = 30, line_h = 18, h = 30 + n * line_h;
    fprintf(out, "<svg id=\"layers-plot\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" width=\"%d\" "
                 "height=\"%d\" role=\"img\">\n<text x=\"%d\" y=\"16\" class=\"tick\">bits per weight (of 16)</text>"
                 "<text x=\"%d\" y=\"16\" class=\"tick\">sparsity (of 1)</text>\n",
            label_w + 2 * bar_w + gap, h, label_w + 2 * bar_w + gap, h, label_w, label_w + bar_w + gap);
    for (int i = 0; i < n; i++) {
        json_t *layer = json_array_get(row->layers, (size_t)i);
        double bits = json_number_value(json_object_get(layer, "bits"));
        double sparsity = json_number_value(json_object_get(layer, "sparsity"));
        int y = 24 + i * line_h;
        fprintf(out, "<text x=\"0\" y=\"%d\" class=\"tick\">layer %d</text>"
                     "<rect class=\"bar-bits\" x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"12\"><title>%.4g bits</title></rect>"
                     "<rect class=\"bar-sparsity\" x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"12\"><title>%.4g</title></rect>\n",
                y + 10, i, label_w, y, fmin(bits / 16.0, 1.0) * bar_w, bits, label_w + bar_w + gap, y,
                fmin(fmax(sparsity, 0.0), 1.0) * bar_w, sparsity);
    }
    fputs("</svg>\n", out);
}
