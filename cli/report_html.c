/* report_html.c: write the sweep report page (see report_html.h). */
#include "cli/report_html.h"

#include <math.h>
#include <stddef.h>

#include "cli/report_svg.h"

static const char style[] =
    "body{font-family:sans-serif;margin:2em;color:#222;max-width:1100px}"
    "h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em}"
    "svg{display:block;margin:0.5em 0}.frame{fill:none;stroke:#444}.grid{stroke:#ddd}"
    ".tick{font-size:11px;fill:#444}.axis-label{font-size:13px}.plot-title{font-size:14px;font-weight:bold}"
    ".frontier{fill:none;stroke:#111;stroke-width:1.5;stroke-dasharray:5 3}"
    ".frontier-label{font-size:11px;fill:#111}.point{stroke:#fff;stroke-width:1}"
    ".point.on-frontier{stroke:#111;stroke-width:2}.legend text{font-size:12px}"
    ".bar-bits{fill:#1f77b4}.bar-sparsity{fill:#d62728}"
    "table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "td.text,th.text{text-align:left}th{background:#f3f3f3;cursor:pointer}tr.on-frontier td{font-weight:bold}"
    ".note{font-size:12px;color:#666}";

/* Sorts #results by the clicked column (numbers by data-value, text by content); optional. */
static const char sort_script[] =
    "(function(){var table=document.getElementById('results');if(!table)return;\n"
    "var heads=table.tHead.rows[0].cells;\n"
    "function key(cell,num){var v=cell.getAttribute('data-value');return num?(v===''?Infinity:Number(v)):v;}\n"
    "Array.prototype.forEach.call(heads,function(th,col){th.addEventListener('click',function(){\n"
    "var num=th.getAttribute('data-type')==='num',up=th.getAttribute('aria-sort')!=='ascending';\n"
    "var body=table.tBodies[0],rows=Array.prototype.slice.call(body.rows);\n"
    "rows.sort(function(a,b){var x=key(a.cells[col],num),y=key(b.cells[col],num);\n"
    "var r=x<y?-1:x>y?1:0;return up?r:-r;});\n"
    "Array.prototype.forEach.call(heads,function(h){h.removeAttribute('aria-sort');});\n"
    "th.setAttribute('aria-sort',up?'ascending':'descending');\n"
    "rows.forEach(function(r){body.appendChild(r);});});});})();\n";

static double x_bytes(const report_row *row) { return row->bytes; }
static double x_bits(const report_row *row) { return row->avg_bits; }

/* The numeric columns of the table, read from report_row by offset. */
typedef struct {
    const char *title;
    const char *format; /* printf format of the number */
    size_t offset;      /* of the double in report_row */
} column;

#define NUM(title, format, field) {title, format, offsetof(report_row, field)}
static const column columns[] = {
    NUM("bits", "%.0f", bits),         NUM("group", "%.0f", group_size), NUM("avg bits", "%.3f", avg_bits),
    NUM("sparsity", "%.3f", sparsity), NUM("perplexity", "%.4f", ppl),   NUM("wall s", "%.2f", wall_s),
    NUM("cpu s", "%.2f", cpu_s),
};
#define N_COLUMNS (int)(sizeof columns / sizeof columns[0])

static double field(const report_row *row, const column *c)
{
    return *(const double *)((const char *)row + c->offset);
}

static void text_cell(FILE *out, const char *text)
{
    fputs("<td class=\"text\" data-value=\"", out);
    report_xml_text(out, text);
    fputs("\">", out);
    report_xml_text(out, text);
    fputs("</td>", out);
}

static void number_cell(FILE *out, double v, const char *format)
{
    char shown[64];
    report_format_number(v, format, shown, sizeof shown);
    if (isnan(v))
        fprintf(out, "<td data-value=\"\">-</td>");
    else
        fprintf(out, "<td data-value=\"%.17g\">%s</td>", v, shown);
}

static void write_table(FILE *out, const report_data *data)
{
    fputs("<table id=\"results\"><thead><tr><th data-type=\"num\">point</th><th class=\"text\">name</th>"
          "<th class=\"text\">method</th>", out);
    for (int c = 0; c < N_COLUMNS; c++)
        fprintf(out, "<th data-type=\"num\">%s</th>", columns[c].title);
    fputs("<th data-type=\"num\">output size</th><th class=\"text\">frontier</th></tr></thead>\n<tbody>\n", out);
    for (int i = 0; i < data->n; i++) {
        const report_row *row = &data->rows[i];
        fprintf(out, "<tr%s>", row->frontier ? " class=\"on-frontier\"" : "");
        number_cell(out, row->point, "%.0f");
        text_cell(out, row->name);
        text_cell(out, row->method);
        for (int c = 0; c < N_COLUMNS; c++)
            number_cell(out, field(row, &columns[c]), columns[c].format);
        char size[32];
        report_format_bytes(row->bytes, size, sizeof size);
        fprintf(out, "<td data-value=\"%.0f\">%s</td>", isnan(row->bytes) ? 0.0 : row->bytes, size);
        text_cell(out, row->frontier ? "yes" : "");
        fputs("</tr>\n", out);
    }
    fputs("</tbody></table>\n<p class=\"note\">Click a column header to sort (a small inline script; without "
          "it the table stays in point order). Bold rows are on the frontier.</p>\n", out);
}

static void write_layers(FILE *out, const report_row *row)
{
    fputs("<h2 id=\"layers\">Per layer: ", out);
    report_xml_text(out, row ? row->name : "none");
    fputs("</h2>\n", out);
    if (!row || !row->layers) {
        fputs("<p>No per-layer data recorded for this point.</p>\n", out);
        return;
    }
    report_svg_layers(out, row);
    fputs("<table id=\"layer-table\"><thead><tr><th>layer</th><th>bits per weight</th><th>sparsity</th></tr></thead>"
          "<tbody>\n", out);
    size_t i;
    json_t *layer;
    json_array_foreach(row->layers, i, layer)
        fprintf(out, "<tr><td>%zu</td><td>%.3f</td><td>%.4f</td></tr>\n", i,
                json_number_value(json_object_get(layer, "bits")), json_number_value(json_object_get(layer, "sparsity")));
    fputs("</tbody></table>\n", out);
}

void report_write_html(FILE *out, const report_data *data, const report_row *layers, const char *source)
{
    const char *eval = data->n ? data->rows[0].eval_data : NULL;
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>shardq sweep ", out);
    report_xml_text(out, data->sweep);
    fprintf(out, "</title>\n<style>%s</style></head>\n<body>\n<h1>Sweep ", style);
    report_xml_text(out, data->sweep);
    fprintf(out, "</h1>\n<p>%d points from <code>", data->n);
    report_xml_text(out, source);
    fputs("</code>. Perplexity is each job's first eval (", out);
    report_xml_text(out, eval ? eval : "none recorded");
    fprintf(out, "). The Pareto frontier (%d points, dashed) holds the points that no other point beats on both "
                 "output size and perplexity.</p>\n<h2>Perplexity vs output size</h2>\n", data->n_frontier);
    report_plot size = {"size-plot", "perplexity vs output size", "output size (every file of the checkpoint)",
                        x_bytes, true, true};
    report_svg_scatter(out, data, &size);
    fputs("<p>Frontier, smallest first:", out);
    for (int k = 0; k < data->n_frontier; k++) {
        fputs(k ? " &rarr; " : " ", out);
        report_xml_text(out, data->rows[data->frontier[k]].name);
    }
    fputs("</p>\n<h2>Perplexity vs average bits per weight</h2>\n", out);
    report_plot bits = {"bits-plot", "perplexity vs average bits", "average bits per linear weight (codes, scales, zeros)",
                        x_bits, false, false};
    report_svg_scatter(out, data, &bits);
    fputs("<h2>All points</h2>\n", out);
    write_table(out, data);
    write_layers(out, layers);
    fprintf(out, "<script>\n%s</script>\n</body></html>\n", sort_script);
}

void report_write_markdown(FILE *out, const report_data *data, const char *source)
{
    fprintf(out, "# Sweep %s\n\n%d points from `%s`; perplexity is each job's first eval; **bold** = on the "
                 "Pareto frontier of perplexity vs output size.\n\n| point | name | method |",
            data->sweep, data->n, source);
    for (int c = 0; c < N_COLUMNS; c++)
        fprintf(out, " %s |", columns[c].title);
    fputs(" output size |\n|---:|---|---|", out);
    for (int c = 0; c < N_COLUMNS; c++)
        fputs("---:|", out);
    fputs("---:|\n", out);
    for (int i = 0; i < data->n; i++) {
        const report_row *row = &data->rows[i];
        const char *mark = row->frontier ? "**" : "";
        fprintf(out, "| %d | %s%s%s | %s |", row->point, mark, row->name, mark, row->method);
        char text[64];
        for (int c = 0; c < N_COLUMNS; c++) {
            report_format_number(field(row, &columns[c]), columns[c].format, text, sizeof text);
            fprintf(out, " %s |", text);
        }
        report_format_bytes(row->bytes, text, sizeof text);
        fprintf(out, " %s |\n", text);
    }
}
