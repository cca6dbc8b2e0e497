/* test_tokenizer.c: tokenizer.json loading errors and hand-computed encodes.
 *
 * Malformed files must give a clear error naming the file and JSON path, never
 * a crash: each case below breaks one field of a small valid tokenizer, and
 * every truncation and many byte flips of that file are loaded and, when they
 * load, used. The ids of a tiny hand-written BPE are worked out by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fileio.h"
#include "tokenizer/tokenizer.h"

/* ids: a=0 b=1 c=2 ab=3 abc=4 <unk>=5 <s>=6 </s>=7; merges "a b" (rank 0), ab+c (rank 1). */
#define VOCAB "\"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2, \"ab\": 3, \"abc\": 4, \"<unk>\": 5, \"<s>\": 6, \"</s>\": 7}"
#define ADDED                                                                                                        \
    "\"added_tokens\": [{\"id\": 6, \"content\": \"<s>\", \"special\": true}, "                                      \
    "{\"id\": 7, \"content\": \"</s>\", \"special\": true}]"
#define POST                                                                                                         \
    "\"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\", "     \
    "\"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], \"special_tokens\": {\"<s>\": {\"id\": "   \
    "\"<s>\", \"ids\": [6], \"tokens\": [\"<s>\"]}}}"
#define MODEL(merges) "\"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"fuse_unk\": true, " VOCAB ", \"merges\": " merges "}"
static const char VALID[] = "{" MODEL("[\"a b\", [\"ab\", \"c\"]]") ", " ADDED ", " POST "}";

static sq_tokenizer *load_ok(const char *json, const char *config)
{
    sq_tokenizer *tok = NULL;
    sq_status st = sq_tokenizer_load_json("tokenizer.json", json, strlen(json), config, &tok);
    if (st != SQ_OK)
        fail_msg("load failed: %s", sq_last_error());
    return tok;
}

static void expect_error(const char *json, sq_status code, const char *needle)
{
    sq_tokenizer *tok = (sq_tokenizer *)1;
    sq_status st = sq_tokenizer_load_json("tokenizer.json", json, strlen(json), NULL, &tok);
    if (st != code || !strstr(sq_last_error(), needle))
        fail_msg("want %d containing \"%s\", got %d: \"%s\"", code, needle, st, sq_last_error());
    assert_null(tok);
}

static void expect_ids(const sq_tokenizer *tok, const char *text, bool special, const int32_t *want, size_t n_want)
{
    int32_t *ids;
    size_t n;
    assert_int_equal(sq_tokenizer_encode(tok, text, strlen(text), special, &ids, &n), SQ_OK);
    assert_int_equal(n, n_want);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ids[i], want[i]);
    free(ids);
}

static void test_hand_computed_bpe(void **state)
{
    (void)state;
    sq_tokenizer *tok = load_ok(VALID, NULL);
    /* "abcab": a b c a b -> (a b) merged twice first (rank 0, leftmost first), then ab+c. */
    expect_ids(tok, "abcab", false, (int32_t[]){4, 3}, 2);
    /* x, y unknown, fused into one <unk>; "<s>" in the text is the special token. */
    expect_ids(tok, "xyab<s>c", false, (int32_t[]){5, 3, 6, 2}, 4);
    expect_ids(tok, "abc", true, (int32_t[]){6, 4}, 2);
    expect_ids(tok, "", true, (int32_t[]){6}, 1);
    assert_int_equal(sq_tokenizer_bos_id(tok), 6);
    assert_int_equal(sq_tokenizer_eos_id(tok), 7);
    assert_int_equal(sq_tokenizer_vocab_size(tok), 8);
    assert_string_equal(sq_tokenizer_token(tok, 4), "abc");
    assert_null(sq_tokenizer_token(tok, 8));

    char *text;
    size_t len;
    assert_int_equal(sq_tokenizer_decode(tok, (int32_t[]){6, 4, 3}, 3, true, &text, &len), SQ_OK);
    assert_string_equal(text, "abc ab"); /* no decoder: tokens joined by spaces */
    free(text);
    assert_int_equal(sq_tokenizer_decode(tok, (int32_t[]){4, 99}, 2, true, &text, &len), SQ_ERR_ARG);
    assert_non_null(strstr(sq_last_error(), "id 99 at position 1"));
    assert_int_equal(sq_tokenizer_decode(tok, (int32_t[]){-1}, 1, true, &text, &len), SQ_ERR_ARG);

    int32_t *ids;
    size_t n;
    assert_int_equal(sq_tokenizer_encode(tok, "a\xff" "b", 3, false, &ids, &n), SQ_ERR_ARG);
    assert_non_null(strstr(sq_last_error(), "not valid UTF-8 at byte 1"));
    sq_tokenizer_free(tok);
}

static void test_config_overrides_bos_eos(void **state)
{
    (void)state;
    sq_tokenizer *tok = load_ok(VALID, "{\"add_bos_token\": false, \"add_eos_token\": true, "
                                       "\"bos_token\": \"<s>\", \"eos_token\": {\"content\": \"</s>\"}}");
    expect_ids(tok, "ab", true, (int32_t[]){3, 7}, 2);
    assert_int_equal(sq_tokenizer_eos_id(tok), 7);
    sq_tokenizer_free(tok);

    sq_tokenizer *bad = (sq_tokenizer *)1;
    assert_int_equal(sq_tokenizer_load_json("tokenizer.json", VALID, strlen(VALID), "{\"eos_token\": \"<nope>\"}", &bad),
                     SQ_ERR_FORMAT);
    assert_non_null(strstr(sq_last_error(), "tokenizer_config.json: eos_token: token \"<nope>\" is not in the vocab"));
    assert_null(bad);
}

static void test_malformed_files(void **state)
{
    (void)state;
    expect_error("{\"model\": ", SQ_ERR_FORMAT, "tokenizer.json: line 1");
    expect_error("[1, 2]", SQ_ERR_FORMAT, "tokenizer.json: (root): not an object");
    expect_error("{}", SQ_ERR_FORMAT, "tokenizer.json: model.vocab: missing or not an object");
    expect_error("{\"model\": {\"type\": \"Unigram\", \"vocab\": {}}}", SQ_ERR_UNSUPPORTED,
                 "tokenizer.json: model.type: type \"Unigram\" is not supported");
    expect_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}}}", SQ_ERR_FORMAT,
                 "model.vocab[\"a\"]: id -1 out of range");
    expect_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 99999999999}}}", SQ_ERR_FORMAT, "out of range");
    expect_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"0\"}}}", SQ_ERR_FORMAT, "id is not an integer");
    expect_error("{" MODEL("[\"a b\", \"a\"]") "}", SQ_ERR_FORMAT, "tokenizer.json: model.merges[1]: not a pair");
    expect_error("{" MODEL("[\"a b c\"]") "}", SQ_ERR_FORMAT, "model.merges[0]: not a pair");
    expect_error("{" MODEL("[[1, 2]]") "}", SQ_ERR_FORMAT, "model.merges[0]: not a pair");
    expect_error("{" MODEL("[\"b c\"]") "}", SQ_ERR_FORMAT, "model.merges[0]: token \"bc\" not in model.vocab");
    expect_error("{" MODEL("[\"q a\"]") "}", SQ_ERR_FORMAT, "model.merges[0]: token \"q\" not in model.vocab");
    expect_error("{" MODEL("{}") "}", SQ_ERR_FORMAT, "model.merges: not an array");
    expect_error("{\"model\": {\"type\": \"BPE\", \"unk_token\": \"<u>\", " VOCAB "}}", SQ_ERR_FORMAT,
                 "model.unk_token: token not in model.vocab");
    expect_error("{\"model\": {\"type\": \"BPE\", \"byte_fallback\": 1, " VOCAB "}}", SQ_ERR_FORMAT,
                 "model.byte_fallback: not a boolean");
    expect_error("{" MODEL("[]") ", \"added_tokens\": [3]}", SQ_ERR_FORMAT, "added_tokens[0]: not an object");
    expect_error("{" MODEL("[]") ", \"added_tokens\": [{\"id\": 9}]}", SQ_ERR_FORMAT, "added_tokens[0].content: missing");
    expect_error("{" MODEL("[]") ", \"added_tokens\": [{\"content\": \"x\"}]}", SQ_ERR_FORMAT,
                 "added_tokens[0].id: id is not an integer");
    expect_error("{" MODEL("[]") ", \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, "
                 "\"behavior\": \"Isolated\"}}",
                 SQ_ERR_FORMAT, "tokenizer.json: pre_tokenizer.pattern.Regex: regex does not compile");
    expect_error("{" MODEL("[]") ", \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"String\": \" \"}, "
                 "\"behavior\": \"Sideways\"}}",
                 SQ_ERR_FORMAT, "pre_tokenizer.behavior: unknown split behavior");
    expect_error("{" MODEL("[]") ", \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": "
                 "\"Digits\"}, {\"type\": \"BertPreTokenizer\"}]}}",
                 SQ_ERR_UNSUPPORTED, "pre_tokenizer.pretokenizers[1].type: type \"BertPreTokenizer\"");
    expect_error("{" MODEL("[]") ", \"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"ab\"}}",
                 SQ_ERR_FORMAT, "pre_tokenizer.replacement: not a single character");
    expect_error("{" MODEL("[]") ", \"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"_\", "
                 "\"prepend_scheme\": \"sometimes\"}}",
                 SQ_ERR_FORMAT, "pre_tokenizer.prepend_scheme: expected first, always or never");
    expect_error("{" MODEL("[]") ", \"normalizer\": {\"type\": \"Lowercase\"}}", SQ_ERR_UNSUPPORTED,
                 "normalizer.type: type \"Lowercase\"");
    expect_error("{" MODEL("[]") ", \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": 3}}", SQ_ERR_FORMAT,
                 "normalizer.normalizers: not an array");
    expect_error("{" MODEL("[]") ", \"decoder\": {\"type\": \"Strip\", \"content\": \" \", \"start\": -1, "
                 "\"stop\": 0}}",
                 SQ_ERR_FORMAT, "decoder.start/stop: not small non-negative integers");
    expect_error("{" MODEL("[]") ", \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": "
                 "[{\"SpecialToken\": {\"id\": \"<bos>\"}}], \"special_tokens\": {}}}",
                 SQ_ERR_FORMAT, "post_processor.single[0]: special token \"<bos>\" missing from special_tokens");
    expect_error("{" MODEL("[]") ", \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": "
                 "[{\"SpecialToken\": {\"id\": \"<s>\"}}], \"special_tokens\": {\"<s>\": {\"ids\": [4000]}}}}",
                 SQ_ERR_FORMAT, "special_tokens[\"<s>\"].ids[0]: id not in the vocab");
}

static void test_missing_file_names_it(void **state)
{
    (void)state;
    sq_tokenizer *tok = (sq_tokenizer *)1;
    assert_int_not_equal(sq_tokenizer_load("/nonexistent/dir/tokenizer.json", &tok), SQ_OK);
    assert_non_null(strstr(sq_last_error(), "/nonexistent/dir/tokenizer.json"));
    assert_null(tok);
}

static void test_directory_with_bad_config(void **state)
{
    (void)state;
    char dir[] = "/tmp/sq_tok_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *json = sq_path_join(dir, "tokenizer.json"), *cfg = sq_path_join(dir, "tokenizer_config.json");
    assert_int_equal(sq_write_file_atomic(json, VALID, strlen(VALID)), SQ_OK);
    assert_int_equal(sq_write_file_atomic(cfg, "{\"add_bos_token\": \"yes\"}", 24), SQ_OK);
    sq_tokenizer *tok = (sq_tokenizer *)1;
    assert_int_equal(sq_tokenizer_load(dir, &tok), SQ_ERR_FORMAT);
    assert_non_null(strstr(sq_last_error(), "tokenizer_config.json: (root).add_bos_token: not a boolean"));
    assert_int_equal(sq_write_file_atomic(cfg, "{\"add_bos_token\": false}", 24), SQ_OK);
    assert_int_equal(sq_tokenizer_load(dir, &tok), SQ_OK);
    expect_ids(tok, "ab", true, (int32_t[]){3}, 1);
    sq_tokenizer_free(tok);
    unlink(json);
    unlink(cfg);
    rmdir(dir);
    free(json);
    free(cfg);
}

/* Load (and when it loads, use) every truncation and many single-byte corruptions: no crash. */
static void test_corrupted_files_never_crash(void **state)
{
    (void)state;
    size_t len = strlen(VALID);
    char *buf = malloc(len + 1);
    assert_non_null(buf);
    uint32_t rng = 12345;
    size_t loaded = 0;
    for (size_t trial = 0; trial < len + 2000; trial++) {
        memcpy(buf, VALID, len + 1);
        size_t use = len;
        if (trial < len) {
            use = trial;
        } else {
            rng = rng * 1664525u + 1013904223u;
            size_t at = (rng >> 8) % len;
            rng = rng * 1664525u + 1013904223u;
            buf[at] = (char)(rng >> 24);
        }
        sq_tokenizer *tok = NULL;
        if (sq_tokenizer_load_json("tokenizer.json", buf, use, NULL, &tok) != SQ_OK) {
            assert_null(tok);
            assert_non_null(strstr(sq_last_error(), "tokenizer.json"));
            continue;
        }
        loaded++;
        int32_t *ids;
        size_t n;
        if (sq_tokenizer_encode(tok, "abc <s> xab", 11, true, &ids, &n) == SQ_OK) {
            char *text;
            size_t tlen;
            if (sq_tokenizer_decode(tok, ids, n, false, &text, &tlen) == SQ_OK)
                free(text);
            free(ids);
        }
        sq_tokenizer_free(tok);
    }
    assert_true(loaded > 0);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_computed_bpe),
        cmocka_unit_test(test_config_overrides_bos_eos),
        cmocka_unit_test(test_malformed_files),
        cmocka_unit_test(test_missing_file_names_it),
        cmocka_unit_test(test_directory_with_bad_config),
        cmocka_unit_test(test_corrupted_files_never_crash),
    };
    return cmocka_run_group_tests_name("tokenizer", tests, NULL, NULL);
}
