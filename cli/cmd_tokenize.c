/* cmd_tokenize.c: `shardq tokenize`, the tokenizer on the command line.
 *
 *   shardq tokenize --tokenizer FILE|DIR [--input FILE] [--jsonl [--field text]] [--no-special]
 *   shardq tokenize --tokenizer FILE|DIR --decode [--input FILE]
 *
 * Prints one line of space-separated token ids per input line (the trailing
 * newline is not part of the text), or per JSONL record's string field.
 * --decode reads lines of ids and prints their text (special tokens skipped). Used
 * by the reference tests and to check a model directory's tokenizer by hand. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmds.h"
#include "core/status.h"
#include "tokenizer/tokenizer.h"

static void usage(void)
{
    fprintf(stderr, "usage: shardq tokenize --tokenizer FILE|DIR [--input FILE] [--jsonl [--field NAME]] "
                    "[--no-special]\n"
                    "       shardq tokenize --tokenizer FILE|DIR --decode [--input FILE]\n");
}

/* A line printed to stdout that did not get there (a full disk, a closed pipe) is an error. */
static sq_status stdout_ok(void)
{
    return ferror(stdout) ? sq_fail(SQ_ERR_IO, "writing to stdout failed") : SQ_OK;
}

static sq_status print_ids(const sq_tokenizer *tok, const char *text, size_t len, bool add_special)
{
    int32_t *ids;
    size_t n;
    SQ_TRY(sq_tokenizer_encode(tok, text, len, add_special, &ids, &n));
    for (size_t i = 0; i < n; i++)
        printf(i ? " %d" : "%d", (int)ids[i]);
    putchar('\n');
    free(ids);
    return stdout_ok();
}

static sq_status print_text(const sq_tokenizer *tok, const char *line, size_t len, size_t lineno)
{
    int32_t *ids = malloc((len / 2 + 1) * sizeof *ids);
    if (!ids)
        return sq_fail(SQ_ERR_NOMEM, "line %zu", lineno);
    size_t n = 0, i = 0;
    sq_status st = SQ_OK;
    while (i < len && st == SQ_OK) {
        if (line[i] == ' ') {
            i++;
            continue;
        }
        char *end;
        long v = strtol(line + i, &end, 10);
        if (end == line + i || end > line + len || (end < line + len && *end != ' ') || v < INT32_MIN || v > INT32_MAX)
            st = sq_fail(SQ_ERR_FORMAT, "line %zu: not a list of token ids", lineno);
        else
            ids[n++] = (int32_t)v;
        i = (size_t)(end - line);
    }
    char *text = NULL;
    size_t text_len;
    if (st == SQ_OK)
        st = sq_tokenizer_decode(tok, ids, n, true, &text, &text_len);
    if (st == SQ_OK && (fwrite(text, 1, text_len, stdout) != text_len || putchar('\n') == EOF))
        st = sq_fail(SQ_ERR_IO, "writing to stdout failed");
    free(text);
    free(ids);
    return st;
}

static sq_status record_text(const char *line, size_t len, const char *field, size_t lineno, json_t **root,
                             const char **text, size_t *text_len)
{
    json_error_t err;
    *root = json_loadb(line, len, 0, &err);
    if (!*root)
        return sq_fail(SQ_ERR_FORMAT, "line %zu: %s", lineno, err.text);
    json_t *v = json_object_get(*root, field);
    if (!json_is_string(v))
        return sq_fail(SQ_ERR_FORMAT, "line %zu: field \"%s\" missing or not a string", lineno, field);
    *text = json_string_value(v);
    *text_len = json_string_length(v);
    return SQ_OK;
}

int cmd_tokenize(int argc, char **argv)
{
    const char *tok_path = NULL, *input = NULL, *field = "text";
    bool jsonl = false, add_special = true, decode = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc)
            tok_path = argv[++i];
        else if (!strcmp(argv[i], "--input") && i + 1 < argc)
            input = argv[++i];
        else if (!strcmp(argv[i], "--field") && i + 1 < argc)
            field = argv[++i];
        else if (!strcmp(argv[i], "--jsonl"))
            jsonl = true;
        else if (!strcmp(argv[i], "--decode"))
            decode = true;
        else if (!strcmp(argv[i], "--no-special"))
            add_special = false;
        else {
            usage();
            return 2;
        }
    }
    if (!tok_path) {
        usage();
        return 2;
    }
    sq_tokenizer *tok;
    if (sq_tokenizer_load(tok_path, &tok) != SQ_OK) {
        fprintf(stderr, "shardq tokenize: %s\n", sq_last_error());
        return 1;
    }
    FILE *in = input ? fopen(input, "rb") : stdin;
    if (!in) {
        fprintf(stderr, "shardq tokenize: %s: cannot open\n", input);
        sq_tokenizer_free(tok);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t got;
    sq_status st = SQ_OK;
    while (st == SQ_OK && (got = getline(&line, &cap, in)) >= 0) {
        size_t len = (size_t)got;
        lineno++;
        if (len && line[len - 1] == '\n')
            len--;
        if (decode) {
            st = print_text(tok, line, len, lineno);
        } else if (!jsonl) {
            st = print_ids(tok, line, len, add_special);
        } else if (len) {
            json_t *root = NULL;
            const char *text = NULL;
            size_t text_len = 0;
            st = record_text(line, len, field, lineno, &root, &text, &text_len);
            if (st == SQ_OK)
                st = print_ids(tok, text, text_len, add_special);
            json_decref(root);
        }
        if (st != SQ_OK)
            sq_fail_context(st, "%s: line %zu", input ? input : "stdin", lineno);
    }
    free(line);
    if (st == SQ_OK && ferror(in))
        st = sq_fail(SQ_ERR_IO, "%s: read error", input ? input : "stdin");
    if (in != stdin && fclose(in) != 0 && st == SQ_OK)
        st = sq_fail(SQ_ERR_IO, "%s: read error", input);
    if (st == SQ_OK && fflush(stdout) != 0)
        st = sq_fail(SQ_ERR_IO, "writing to stdout failed");
    sq_tokenizer_free(tok);
    if (st != SQ_OK) {
        fprintf(stderr, "shardq tokenize: %s\n", sq_last_error());
        return 1;
    }
    return 0;
}
