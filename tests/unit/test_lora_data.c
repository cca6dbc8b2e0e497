/* test_lora_data.c: the training data of a qlora step (lora/data.h): packed
 * text windows with every token but the first a loss target; a seeded order
 * that visits every window once per epoch, differs between epochs and seeds,
 * and is a pure function of (seed, k); JSONL examples laid out as
 * BOS + prompt + completion + EOS with the loss on the completion only (the
 * expected ids come from the tokenizer run on the fields separately); and the
 * refusals: text shorter than one window, a line that is not JSON or lacks a
 * field (its line number in the message), a file without examples. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "lora/data.h"
#include "tokenizer/tokenizer.h"

static char dir[256], model[300];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/sq_test_lora_data_XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(model, sizeof model, "%s/m", dir);
    const char *repo = getenv("SHARDQ_ROOT") ? getenv("SHARDQ_ROOT") : ".";
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s/build/tools/make_tiny_model %s --layers 1 >/dev/null", repo, model);
    return system(cmd) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_text_windows_and_order(void **state)
{
    (void)state;
    int32_t ids[100];
    for (int i = 0; i < 100; i++)
        ids[i] = 1000 + i;
    sq_lora_data d, same, other;
    assert_int_equal(sq_lora_data_from_tokens(&d, ids, 100, 8, 5, "t"), SQ_OK);
    assert_int_equal(d.n_windows, 12); /* the 4-token tail is dropped */
    int first_epoch[12], seen[12] = {0};
    for (int k = 0; k < 12; k++) {
        const int32_t *tok;
        const uint8_t *mask;
        assert_int_equal(sq_lora_data_sequence(&d, k, &tok, &mask), SQ_OK);
        int w = (tok[0] - 1000) / 8;
        assert_int_equal(tok[0], 1000 + 8 * w); /* a whole window, in order */
        assert_int_equal(tok[7], 1000 + 8 * w + 7);
        assert_int_equal(mask[0], 0);
        for (int t = 1; t < 8; t++)
            assert_int_equal(mask[t], 1);
        first_epoch[k] = w;
        seen[w]++;
    }
    for (int w = 0; w < 12; w++)
        assert_int_equal(seen[w], 1); /* an epoch visits every window once */
    int differs_epoch = 0, differs_seed = 0;
    assert_int_equal(sq_lora_data_from_tokens(&same, ids, 100, 8, 5, "t"), SQ_OK);
    assert_int_equal(sq_lora_data_from_tokens(&other, ids, 100, 8, 6, "t"), SQ_OK);
    for (int k = 11; k >= 0; k--) { /* backwards and across epochs: no hidden state */
        const int32_t *a, *b, *c;
        const uint8_t *m;
        assert_int_equal(sq_lora_data_sequence(&d, k + 12, &a, &m), SQ_OK);
        assert_int_equal(sq_lora_data_sequence(&same, k, &b, &m), SQ_OK);
        assert_int_equal(sq_lora_data_sequence(&other, k, &c, &m), SQ_OK);
        assert_int_equal(b[0], 1000 + 8 * first_epoch[k]);
        differs_epoch += a[0] != b[0];
        differs_seed += c[0] != b[0];
    }
    assert_true(differs_epoch > 0 && differs_seed > 0);
    sq_lora_data_free(&d), sq_lora_data_free(&same), sq_lora_data_free(&other);
    assert_int_equal(sq_lora_data_from_tokens(&d, ids, 7, 8, 5, "short.txt"), SQ_ERR_ARG);
    assert_non_null(strstr(sq_last_error(), "short.txt: 7 tokens is less than one training window"));
}

static sq_status write_text(const char *name, const char *text, char *path, size_t size)
{
    snprintf(path, size, "%s/%s", dir, name);
    return sq_write_file_atomic(path, text, strlen(text));
}

static void test_jsonl_layout(void **state)
{
    (void)state;
    char path[600];
    assert_int_equal(write_text("a.jsonl", "{\"q\": \"the cat\", \"a\": \" sat down\"}\n\n{\"q\": \"x\", \"a\": \"y\"}\n",
                                path, sizeof path), SQ_OK);
    sq_lora_data d;
    assert_int_equal(sq_lora_data_from_jsonl(&d, model, path, "q", "a", 24, 1), SQ_OK);
    assert_int_equal(d.n_windows, 2); /* the blank line is skipped */
    sq_tokenizer *tok;
    assert_int_equal(sq_tokenizer_load(model, &tok), SQ_OK);
    int32_t *p, *c;
    size_t np, nc;
    assert_int_equal(sq_tokenizer_encode(tok, "the cat", 7, true, &p, &np), SQ_OK);
    assert_int_equal(sq_tokenizer_encode(tok, " sat down", 9, false, &c, &nc), SQ_OK);
    assert_int_equal(p[0], sq_tokenizer_bos_id(tok));
    assert_true(np + nc + 1 <= 24);
    const int32_t *row = d.tokens; /* file order: example 0 is row 0 */
    const uint8_t *mask = d.mask;
    for (size_t i = 0; i < np; i++)
        assert_true(row[i] == p[i] && mask[i] == 0);
    for (size_t i = 0; i < nc; i++)
        assert_true(row[np + i] == c[i] && mask[np + i] == 1);
    assert_true(row[np + nc] == sq_tokenizer_eos_id(tok) && mask[np + nc] == 1);
    for (size_t i = np + nc + 1; i < 24; i++) /* padding: no loss */
        assert_true(mask[i] == 0);
    free(p), free(c);
    sq_tokenizer_free(tok);
    sq_lora_data_free(&d);
}

static void test_jsonl_refusals(void **state)
{
    (void)state;
    char path[600];
    sq_lora_data d;
    assert_int_equal(write_text("b.jsonl", "{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"prompt\": 1,\n", path,
                                sizeof path), SQ_OK);
    assert_int_equal(sq_lora_data_from_jsonl(&d, model, path, "prompt", "completion", 16, 1), SQ_ERR_FORMAT);
    assert_non_null(strstr(sq_last_error(), "b.jsonl:2: invalid JSON"));
    assert_int_equal(write_text("c.jsonl", "{\"prompt\": \"a\", \"completion\": \"b\"}\n\n{\"prompt\": \"a\"}\n", path,
                                sizeof path), SQ_OK);
    assert_int_equal(sq_lora_data_from_jsonl(&d, model, path, "prompt", "completion", 16, 1), SQ_ERR_FORMAT);
    assert_non_null(strstr(sq_last_error(), "c.jsonl:3: needs string fields \"prompt\" and \"completion\""));
    assert_int_equal(write_text("d.jsonl", "\n  \n", path, sizeof path), SQ_OK);
    assert_int_equal(sq_lora_data_from_jsonl(&d, model, path, "prompt", "completion", 16, 1), SQ_ERR_ARG);
    assert_non_null(strstr(sq_last_error(), "no training examples"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_windows_and_order),
        cmocka_unit_test(test_jsonl_layout),
        cmocka_unit_test(test_jsonl_refusals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
