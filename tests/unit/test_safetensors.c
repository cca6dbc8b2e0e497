/* test_safetensors.c: the reader rejects each kind of malformed file with SQ_ERR_FORMAT and a
 * message naming the file and the fault; the writer round-trips every dtype and metadata, lays
 * out a byte-exact file, and a failed write leaves the previous file intact. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/safetensors.h"

static char test_dir[256];

static int make_dir(void **state)
{
    (void)state;
    snprintf(test_dir, sizeof test_dir, "/tmp/sq_test_st_XXXXXX");
    return mkdtemp(test_dir) ? 0 : -1;
}

static int remove_dir(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", test_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static char *path_in_dir(const char *name)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", test_dir, name);
    return path;
}

/* A file whose 8-byte prefix says `declared_len`, followed by `json` and `data_len` zero bytes. */
static const char *craft(const char *name, uint64_t declared_len, const char *json, size_t data_len)
{
    size_t jl = strlen(json);
    size_t total = 8 + jl + data_len;
    uint8_t *buf = calloc(1, total);
    assert_non_null(buf);
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)(declared_len >> (8 * i));
    memcpy(buf + 8, json, jl);
    const char *path = path_in_dir(name);
    assert_int_equal(sq_write_file_atomic(path, buf, total), SQ_OK);
    free(buf);
    return path;
}

/* Open a crafted file and expect SQ_ERR_FORMAT whose message names the file and contains `fault`. */
static void expect_bad(const char *name, const char *json, size_t data_len, const char *fault)
{
    const char *path = craft(name, strlen(json), json, data_len);
    sq_st_file f;
    sq_status st = sq_st_open(&f, path);
    if (st != SQ_ERR_FORMAT)
        fail_msg("%s: expected format error, got %d (%s)", name, st, sq_last_error());
    if (!strstr(sq_last_error(), path) || !strstr(sq_last_error(), fault))
        fail_msg("%s: message \"%s\" should name the file and \"%s\"", name, sq_last_error(), fault);
}

#define GOOD_ENTRY "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"

static void test_valid_crafted_file_opens(void **state)
{
    (void)state;
    const char *path = craft("good.st", strlen("{" GOOD_ENTRY "}"), "{" GOOD_ENTRY "}", 8);
    sq_st_file f;
    assert_int_equal(sq_st_open(&f, path), SQ_OK);
    assert_int_equal(f.header.n_tensors, 1);
    assert_int_equal(f.header.data_start, 8 + strlen("{" GOOD_ENTRY "}"));
    sq_st_close(&f);
}

static void test_file_too_short(void **state)
{
    (void)state;
    const char *path = path_in_dir("short.st");
    assert_int_equal(sq_write_file_atomic(path, "abc", 3), SQ_OK);
    sq_st_file f;
    assert_int_equal(sq_st_open(&f, path), SQ_ERR_FORMAT);
    assert_non_null(strstr(sq_last_error(), path));
    assert_non_null(strstr(sq_last_error(), "too short"));
}

static void test_header_longer_than_file(void **state)
{
    (void)state;
    const char *path = craft("long.st", 1000, "{}", 0);
    sq_st_file f;
    assert_int_equal(sq_st_open(&f, path), SQ_ERR_FORMAT);
    assert_non_null(strstr(sq_last_error(), path));
    assert_non_null(strstr(sq_last_error(), "exceeds the file size"));
}

static void test_header_over_limit(void **state)
{
    (void)state;
    /* The limit holds even when the (claimed) file would be large enough. */
    assert_int_equal(sq_st_parse_header(&(sq_st_header){0}, "big.st", "{}", (uint64_t)SQ_ST_MAX_HEADER + 1,
                                        (uint64_t)1 << 40),
                     SQ_ERR_FORMAT);
    assert_non_null(strstr(sq_last_error(), "big.st"));
    assert_non_null(strstr(sq_last_error(), "limit"));
}

static void test_invalid_json(void **state)
{
    (void)state;
    expect_bad("badjson.st", "{\"w\":{\"dtype\":", 0, "not valid JSON");
}

static void test_not_an_object(void **state)
{
    (void)state;
    expect_bad("array.st", "[1,2]", 0, "must be a JSON object");
}

static void test_duplicate_key(void **state)
{
    (void)state;
    expect_bad("dup.st", "{" GOOD_ENTRY "," GOOD_ENTRY "}", 8, "duplicate");
}

static void test_entry_not_object(void **state)
{
    (void)state;
    expect_bad("entry.st", "{\"w\":[1]}", 0, "\"w\": entry must be an object");
}

static void test_dtype_missing_or_ill_typed(void **state)
{
    (void)state;
    expect_bad("nodtype.st", "{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "\"w\": \"dtype\" must be");
    expect_bad("numdtype.st", "{\"w\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
               "\"w\": \"dtype\" must be");
}

static void test_unknown_dtype(void **state)
{
    (void)state;
    expect_bad("f8.st", "{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2,
               "\"w\": unknown dtype \"F8_E4M3\"");
}

static void test_shape_rules(void **state)
{
    (void)state;
    expect_bad("shape_obj.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":{},\"data_offsets\":[0,8]}}", 8,
               "\"w\": \"shape\" must be an array");
    expect_bad("shape_neg.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8,
               "\"w\": shape[0] must be a non-negative integer");
    expect_bad("shape_real.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,2.0],\"data_offsets\":[0,8]}}", 8,
               "\"w\": shape[1] must be a non-negative integer");
    expect_bad("shape_rank.st",
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", 8,
               "\"w\": shape has 9 dimensions");
}

static void test_element_count_overflow(void **state)
{
    (void)state;
    /* 2^32 * 2^32 = 2^64 elements does not fit in 64 bits. */
    expect_bad("ovf.st",
               "{\"w\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", 0,
               "\"w\": element count overflows");
    /* 2^62 elements fit, but 2^62 * 8 bytes do not. */
    expect_bad("ovf2.st",
               "{\"w\":{\"dtype\":\"I64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}}", 0,
               "\"w\": byte size overflows");
}

static void test_data_offsets_rules(void **state)
{
    (void)state;
    expect_bad("off_missing.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8,
               "\"w\": \"data_offsets\" must be [begin, end]");
    expect_bad("off_three.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4,8]}}", 8,
               "\"w\": \"data_offsets\" must be [begin, end]");
    expect_bad("off_neg.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8,
               "\"w\": data_offsets must be non-negative integers");
    expect_bad("off_str.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[\"0\",8]}}", 8,
               "\"w\": data_offsets must be non-negative integers");
}

static void test_begin_after_end(void **state)
{
    (void)state;
    expect_bad("rev.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8,
               "\"w\": data_offsets begin 8 > end 0");
}

static void test_size_mismatch(void **state)
{
    (void)state;
    expect_bad("size.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 16,
               "\"w\": shape and dtype give 12 bytes but data_offsets span 8");
}

static void test_range_outside_buffer(void **state)
{
    (void)state;
    expect_bad("outside.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 8,
               "\"w\": data_offsets end 12 is outside the data buffer (8 bytes)");
}

static void test_overlapping_ranges(void **state)
{
    (void)state;
    /* Listed out of order on purpose: the check sorts by begin. */
    expect_bad("overlap.st",
               "{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
               12, "tensor \"b\" overlaps tensor \"a\"");
}

static void test_metadata_rules(void **state)
{
    (void)state;
    expect_bad("meta_arr.st", "{\"__metadata__\":[\"pt\"]}", 0, "\"__metadata__\" must be an object of strings");
    expect_bad("meta_int.st", "{\"__metadata__\":{\"format\":\"pt\",\"n\":3}}", 0, "\"__metadata__\".\"n\" must be a string");
}

static void test_tensors_sorted_by_offset(void **state)
{
    (void)state;
    const char *json = "{\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]},"
                       "\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}";
    sq_st_header h;
    assert_int_equal(sq_st_parse_header(&h, "mem", json, strlen(json), 8 + strlen(json) + 4), SQ_OK);
    assert_int_equal(h.n_tensors, 2);
    assert_string_equal(h.tensors[0].name, "a");
    assert_string_equal(h.tensors[1].name, "b");
    assert_null(h.metadata);
    sq_st_header_free(&h);
}

/* Every dtype: write one tensor each with distinct byte patterns, read them back. */
static void test_round_trip_every_dtype(void **state)
{
    (void)state;
    enum { N = SQ_DTYPE_COUNT };
    sq_st_entry entries[N];
    uint8_t *buffers[N];
    char names[N][32];
    for (int i = 0; i < N; i++) {
        sq_dtype dt = (sq_dtype)i;
        int64_t rows = 2 + i % 3, cols = 3;
        size_t bytes = (size_t)(rows * cols) * sq_dtype_size(dt);
        buffers[i] = malloc(bytes);
        for (size_t b = 0; b < bytes; b++)
            buffers[i][b] = dt == SQ_DTYPE_BOOL ? (uint8_t)(b % 2) : (uint8_t)(b * 7 + i);
        snprintf(names[i], sizeof names[i], "t.%s", sq_dtype_name(dt));
        entries[i] = (sq_st_entry){.name = names[i], .dtype = dt, .ndim = 2, .shape = {rows, cols},
                                   .data = buffers[i]};
    }
    const char *path = path_in_dir("all.safetensors");
    assert_int_equal(sq_st_write(path, entries, N, NULL), SQ_OK);

    sq_st_file f;
    assert_int_equal(sq_st_open(&f, path), SQ_OK);
    assert_int_equal(f.header.n_tensors, N);
    assert_int_equal(f.header.data_start % 8, 0);
    uint64_t expected_offset = 0;
    for (int i = 0; i < N; i++) {
        const sq_st_tensor *t = sq_st_find(&f.header, names[i]);
        assert_non_null(t);
        assert_ptr_equal(t, &f.header.tensors[i]); /* laid out in the given order */
        assert_int_equal(t->dtype, i);
        assert_int_equal(t->ndim, 2);
        assert_int_equal(t->shape[0], entries[i].shape[0]);
        assert_int_equal(t->shape[1], 3);
        assert_int_equal(t->begin, expected_offset);
        assert_int_equal(sq_st_numel(t), entries[i].shape[0] * 3);
        assert_memory_equal(sq_st_data(&f, t), buffers[i], t->nbytes);
        expected_offset += t->nbytes;
        free(buffers[i]);
    }
    assert_int_equal(f.file_size, f.header.data_start + expected_offset);
    assert_null(sq_st_find(&f.header, "missing"));
    sq_st_close(&f);
}

static void test_exact_layout_and_padding(void **state)
{
    (void)state;
    uint16_t v = 0x3f80;
    sq_st_entry e = {.name = "x", .dtype = SQ_DTYPE_BF16, .ndim = 1, .shape = {1}, .data = &v};
    const char *path = path_in_dir("exact.safetensors");
    assert_int_equal(sq_st_write(path, &e, 1, NULL), SQ_OK);
    char *bytes;
    size_t len;
    assert_int_equal(sq_read_file(path, &bytes, &len), SQ_OK);
    const char *json = "{\"x\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[0,2]}}"; /* 55 bytes */
    size_t padded = 56;
    assert_int_equal(len, 8 + padded + 2);
    assert_int_equal((uint8_t)bytes[0], padded);
    for (int i = 1; i < 8; i++)
        assert_int_equal(bytes[i], 0);
    assert_memory_equal(bytes + 8, json, strlen(json));
    assert_int_equal(strlen(json), 55);
    assert_int_equal(bytes[8 + 55], ' ');
    assert_memory_equal(bytes + 8 + padded, &v, 2);
    free(bytes);
}

/* The hash a hashed write reports is that of the bytes that reached the file. */
static void test_hashed_write_matches_file(void **state)
{
    (void)state;
    float v[300];
    for (int i = 0; i < 300; i++)
        v[i] = (float)i * 0.25f;
    sq_st_entry e[2] = {{.name = "a", .dtype = SQ_DTYPE_F32, .ndim = 2, .shape = {10, 20}, .data = v},
                        {.name = "b", .dtype = SQ_DTYPE_F32, .ndim = 1, .shape = {100}, .data = v + 200}};
    json_t *meta = json_pack("{s:s}", "format", "pt");
    const char *path = path_in_dir("hashed.safetensors");
    char written[SQ_SHA256_HEX_LEN + 1], on_disk[SQ_SHA256_HEX_LEN + 1];
    assert_int_equal(sq_st_write_hashed(path, e, 2, meta, written), SQ_OK);
    json_decref(meta);
    char *bytes;
    size_t len;
    assert_int_equal(sq_read_file(path, &bytes, &len), SQ_OK);
    sq_sha256_hex(bytes, len, on_disk);
    free(bytes);
    assert_string_equal(written, on_disk);
    assert_int_equal(strlen(written), SQ_SHA256_HEX_LEN);
}

static void test_metadata_round_trip(void **state)
{
    (void)state;
    json_t *meta = json_pack("{s:s, s:s}", "format", "pt", "note", "hello \"world\"");
    float w[2] = {1.5f, -2.0f};
    sq_st_entry e = {.name = "w", .dtype = SQ_DTYPE_F32, .ndim = 1, .shape = {2}, .data = w};
    const char *path = path_in_dir("meta.safetensors");
    assert_int_equal(sq_st_write(path, &e, 1, meta), SQ_OK);
    sq_st_file f;
    assert_int_equal(sq_st_open(&f, path), SQ_OK);
    assert_non_null(f.header.metadata);
    assert_true(json_equal(f.header.metadata, meta));
    sq_st_close(&f);

    json_object_set_new(meta, "bad", json_integer(1));
    assert_int_equal(sq_st_write(path, &e, 1, meta), SQ_ERR_ARG);
    assert_non_null(strstr(sq_last_error(), "\"bad\" must be a string"));
    json_decref(meta);
}

static void test_scalar_and_empty_tensors(void **state)
{
    (void)state;
    double s = 3.25;
    sq_st_entry e[2] = {
        {.name = "scalar", .dtype = SQ_DTYPE_F64, .ndim = 0, .data = &s},
        {.name = "empty", .dtype = SQ_DTYPE_F32, .ndim = 2, .shape = {0, 4}, .data = NULL},
    };
    const char *path = path_in_dir("scalar.safetensors");
    assert_int_equal(sq_st_write(path, e, 2, NULL), SQ_OK);
    sq_st_file f;
    assert_int_equal(sq_st_open(&f, path), SQ_OK);
    const sq_st_tensor *t = sq_st_find(&f.header, "scalar");
    assert_int_equal(t->ndim, 0);
    assert_int_equal(sq_st_numel(t), 1);
    assert_memory_equal(sq_st_data(&f, t), &s, 8);
    assert_int_equal(sq_st_find(&f.header, "empty")->nbytes, 0);
    sq_st_close(&f);
}

static void test_writer_rejects_duplicate_names(void **state)
{
    (void)state;
    float w = 1;
    sq_st_entry e[2] = {
        {.name = "w", .dtype = SQ_DTYPE_F32, .ndim = 1, .shape = {1}, .data = &w},
        {.name = "w", .dtype = SQ_DTYPE_F32, .ndim = 1, .shape = {1}, .data = &w},
    };
    assert_int_equal(sq_st_write(path_in_dir("dupw.safetensors"), e, 2, NULL), SQ_ERR_ARG);
    assert_non_null(strstr(sq_last_error(), "\"w\""));
    assert_int_equal(access(path_in_dir("dupw.safetensors"), F_OK), -1);
}

/* A write that fails half-way (the file size limit makes write() fail with EFBIG) must leave the
 * previous file untouched and no temporary file behind. */
static void test_failed_write_keeps_previous_file(void **state)
{
    (void)state;
    const char *path = path_in_dir("keep.safetensors");
    float old[4] = {1, 2, 3, 4};
    sq_st_entry e = {.name = "old", .dtype = SQ_DTYPE_F32, .ndim = 1, .shape = {4}, .data = old};
    assert_int_equal(sq_st_write(path, &e, 1, NULL), SQ_OK);
    char *before;
    size_t before_len;
    assert_int_equal(sq_read_file(path, &before, &before_len), SQ_OK);

    size_t big = 1 << 20;
    uint8_t *data = calloc(1, big);
    sq_st_entry e2 = {.name = "new", .dtype = SQ_DTYPE_U8, .ndim = 1, .shape = {(int64_t)big}, .data = data};
    struct rlimit saved, small;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
    small = saved;
    small.rlim_cur = 64 * 1024;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    sq_status st = sq_st_write(path, &e2, 1, NULL);
    setrlimit(RLIMIT_FSIZE, &saved);
    signal(SIGXFSZ, old_handler);
    free(data);
    assert_int_equal(st, SQ_ERR_IO);
    assert_non_null(strstr(sq_last_error(), "keep.safetensors"));

    char *after;
    size_t after_len;
    assert_int_equal(sq_read_file(path, &after, &after_len), SQ_OK);
    assert_int_equal(after_len, before_len);
    assert_memory_equal(after, before, before_len);
    free(before);
    free(after);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    assert_int_equal(access(tmp, F_OK), -1);
}

static void test_missing_file_or_directory(void **state)
{
    (void)state;
    sq_st_file f;
    assert_int_equal(sq_st_open(&f, path_in_dir("nope.safetensors")), SQ_ERR_NOT_FOUND);
    assert_non_null(strstr(sq_last_error(), "nope.safetensors"));
    assert_int_equal(sq_st_open(&f, test_dir), SQ_ERR_IO);
    assert_non_null(strstr(sq_last_error(), "not a regular file"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_crafted_file_opens),
        cmocka_unit_test(test_hashed_write_matches_file),
        cmocka_unit_test(test_file_too_short),
        cmocka_unit_test(test_header_longer_than_file),
        cmocka_unit_test(test_header_over_limit),
        cmocka_unit_test(test_invalid_json),
        cmocka_unit_test(test_not_an_object),
        cmocka_unit_test(test_duplicate_key),
        cmocka_unit_test(test_entry_not_object),
        cmocka_unit_test(test_dtype_missing_or_ill_typed),
        cmocka_unit_test(test_unknown_dtype),
        cmocka_unit_test(test_shape_rules),
        cmocka_unit_test(test_element_count_overflow),
        cmocka_unit_test(test_data_offsets_rules),
        cmocka_unit_test(test_begin_after_end),
        cmocka_unit_test(test_size_mismatch),
        cmocka_unit_test(test_range_outside_buffer),
        cmocka_unit_test(test_overlapping_ranges),
        cmocka_unit_test(test_metadata_rules),
        cmocka_unit_test(test_tensors_sorted_by_offset),
        cmocka_unit_test(test_round_trip_every_dtype),
        cmocka_unit_test(test_exact_layout_and_padding),
        cmocka_unit_test(test_metadata_round_trip),
        cmocka_unit_test(test_scalar_and_empty_tensors),
        cmocka_unit_test(test_writer_rejects_duplicate_names),
        cmocka_unit_test(test_failed_write_keeps_previous_file),
        cmocka_unit_test(test_missing_file_or_directory),
    };
    return cmocka_run_group_tests_name("safetensors", tests, make_dir, remove_dir);
}
