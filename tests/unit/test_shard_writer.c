/* test_shard_writer.c: shards written on threads of their own (model/shard_writer.h): each file
 * readable with its tensor, the reported SHA-256 the file's, every owner released once, at most
 * `in_flight` shards held; a shard that cannot be written fails the close naming its file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/safetensors.h"
#include "core/sha256.h"
#include "model/shard_writer.h"

#define SHARDS 5

static char dir[] = "/tmp/sq_test_shard_writer_XXXXXX";

typedef struct {
    float values[64];
    sq_st_entry entry;
    int *released;  /* count of releases of this owner */
    int *held;      /* owners submitted and not yet released */
    int *most_held; /* the largest `held` seen */
} owner;

static void release(void *p)
{
    owner *o = p;
    ++*o->released;
    --*o->held;
}

static owner *make_owner(int k, int *released, int *held, int *most_held)
{
    owner *o = calloc(1, sizeof *o);
    for (int i = 0; i < 64; i++)
        o->values[i] = (float)(k * 100 + i);
    o->entry = (sq_st_entry){.name = "w", .dtype = SQ_DTYPE_F32, .ndim = 1, .shape = {64}, .data = o->values};
    o->released = released, o->held = held, o->most_held = most_held;
    if (++*held > *most_held)
        *most_held = *held;
    return o;
}

static void test_shards_written_hashed_and_released(void **state)
{
    (void)state;
    assert_non_null(mkdtemp(dir));
    int released[SHARDS] = {0}, held = 0, most_held = 0;
    owner *owners[SHARDS];
    sq_shard_writer *w;
    assert_int_equal(sq_shard_writer_open(&w, dir, SHARDS, 2), SQ_OK);
    for (int k = 0; k < SHARDS; k++) {
        char name[32];
        snprintf(name, sizeof name, "shard-%d.safetensors", k);
        owners[k] = make_owner(k, &released[k], &held, &most_held);
        assert_int_equal(sq_shard_writer_submit(w, k, name, &owners[k]->entry, 1, owners[k], release), SQ_OK);
    }
    assert_true(most_held <= 3); /* two in flight and the one being submitted */
    char *sha[SHARDS] = {0};
    assert_int_equal(sq_shard_writer_close(w, sha), SQ_OK);
    for (int k = 0; k < SHARDS; k++) {
        assert_int_equal(released[k], 1);
        char path[96], hex[SQ_SHA256_HEX_LEN + 1];
        snprintf(path, sizeof path, "%s/shard-%d.safetensors", dir, k);
        assert_int_equal(sq_sha256_file(path, hex), SQ_OK);
        assert_string_equal(sha[k], hex);
        sq_st_file f;
        assert_int_equal(sq_st_open(&f, path), SQ_OK);
        const sq_st_tensor *t = sq_st_find(&f.header, "w");
        assert_non_null(t);
        assert_memory_equal(sq_st_data(&f, t), owners[k]->values, sizeof owners[k]->values);
        sq_st_close(&f);
        remove(path);
        free(sha[k]);
        free(owners[k]);
    }
    remove(dir);
}

static void test_unwritable_shard_fails_naming_it(void **state)
{
    (void)state;
    int released = 0, held = 0, most_held = 0;
    sq_shard_writer *w;
    assert_int_equal(sq_shard_writer_open(&w, "/proc/no-such-dir", 2, 1), SQ_OK);
    owner *a = make_owner(0, &released, &held, &most_held), *b = make_owner(1, &released, &held, &most_held);
    sq_status first = sq_shard_writer_submit(w, 0, "a.safetensors", &a->entry, 1, a, release);
    assert_int_equal(first, SQ_OK);
    /* the second waits for the first, which failed: it is refused and released at once */
    assert_int_not_equal(sq_shard_writer_submit(w, 1, "b.safetensors", &b->entry, 1, b, release), SQ_OK);
    assert_int_equal(released, 2);
    char *sha[2] = {0};
    assert_int_not_equal(sq_shard_writer_close(w, sha), SQ_OK);
    assert_non_null(strstr(sq_last_error(), "/proc/no-such-dir/a.safetensors"));
    assert_null(sha[0]);
    free(a), free(b);
}

static void test_shard_given_twice_is_refused(void **state)
{
    (void)state;
    int released = 0, held = 0, most_held = 0;
    sq_shard_writer *w;
    char tmp[] = "/tmp/sq_test_shard_twice_XXXXXX";
    assert_non_null(mkdtemp(tmp));
    assert_int_equal(sq_shard_writer_open(&w, tmp, 1, 1), SQ_OK);
    owner *a = make_owner(0, &released, &held, &most_held), *b = make_owner(1, &released, &held, &most_held);
    assert_int_equal(sq_shard_writer_submit(w, 0, "a.safetensors", &a->entry, 1, a, release), SQ_OK);
    assert_int_equal(sq_shard_writer_submit(w, 0, "b.safetensors", &b->entry, 1, b, release), SQ_ERR_ARG);
    assert_int_equal(sq_shard_writer_close(w, NULL), SQ_OK);
    assert_int_equal(released, 2);
    char path[96];
    snprintf(path, sizeof path, "%s/a.safetensors", tmp);
    remove(path);
    remove(tmp);
    free(a), free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shards_written_hashed_and_released),
        cmocka_unit_test(test_unwritable_shard_fails_naming_it),
        cmocka_unit_test(test_shard_given_twice_is_refused),
    };
    return cmocka_run_group_tests_name("shard_writer", tests, NULL, NULL);
}
