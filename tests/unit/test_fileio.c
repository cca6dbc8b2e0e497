/* test_fileio.c: local file helpers: streaming copies (content, sizes around the chunk,
 * constant memory measured by the peak resident set), atomic replacement, errors naming the file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/fileio.h"

static char dir[] = "/tmp/sq_test_fileio_XXXXXX";

static int make_dir(void **state)
{
    (void)state;
    return mkdtemp(dir) ? 0 : -1;
}

static int remove_dir(void **state)
{
    (void)state;
    return rmdir(dir);
}

static char *path_in_dir(const char *name)
{
    char *p = sq_path_join(dir, name);
    assert_non_null(p);
    return p;
}

/* Byte i of a test file: a pattern that differs in every block of any size. */
static unsigned char pattern(uint64_t i) { return (unsigned char)((i * 2654435761u) >> 13 ^ (i >> 20)); }

static void write_pattern(const char *path, uint64_t size)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    static unsigned char block[65536];
    for (uint64_t done = 0; done < size;) {
        size_t n = size - done < sizeof block ? (size_t)(size - done) : sizeof block;
        for (size_t j = 0; j < n; j++)
            block[j] = pattern(done + j);
        assert_int_equal(fwrite(block, 1, n, f), n);
        done += n;
    }
    assert_int_equal(fclose(f), 0);
}

/* The file holds exactly `size` bytes of the pattern (read with stdio, in blocks). */
static void assert_pattern(const char *path, uint64_t size)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static unsigned char block[65536];
    uint64_t at = 0;
    size_t n;
    while ((n = fread(block, 1, sizeof block, f)) > 0) {
        for (size_t j = 0; j < n; j++)
            if (block[j] != pattern(at + j))
                fail_msg("%s: byte %llu differs", path, (unsigned long long)(at + j));
        at += n;
    }
    assert_int_equal(fclose(f), 0);
    assert_int_equal(at, size);
}

static int files_in_dir(void)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

static long peak_rss_kib(void)
{
    struct rusage ru;
    assert_int_equal(getrusage(RUSAGE_SELF, &ru), 0);
    return ru.ru_maxrss;
}

/* Runs first, while this process's peak is small: a copy that read the whole 48 MiB file
 * into memory would raise the peak resident set by about 48 MiB; one chunk is 1 MiB. */
static void test_copy_runs_in_constant_memory(void **state)
{
    (void)state;
    const uint64_t size = 48ull << 20;
    char *src = path_in_dir("big.src"), *dst = path_in_dir("big.dst");
    write_pattern(src, size);
    long before = peak_rss_kib();
    assert_int_equal(sq_copy_file(src, dst), SQ_OK);
    long grown_kib = peak_rss_kib() - before;
    assert_true(grown_kib < 8 * 1024);
    assert_pattern(dst, size);
    unlink(src);
    unlink(dst);
    free(src);
    free(dst);
}

static void test_copy_sizes_around_the_chunk(void **state)
{
    (void)state;
    const uint64_t sizes[] = {0, 1, SQ_COPY_CHUNK_BYTES - 1, SQ_COPY_CHUNK_BYTES, SQ_COPY_CHUNK_BYTES + 1,
                              2 * SQ_COPY_CHUNK_BYTES + SQ_COPY_CHUNK_BYTES / 2 + 7};
    char *src = path_in_dir("src"), *dst = path_in_dir("dst");
    write_pattern(dst, 3 * SQ_COPY_CHUNK_BYTES); /* an older, longer file is replaced whole */
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        write_pattern(src, sizes[i]);
        assert_int_equal(sq_copy_file(src, dst), SQ_OK);
        assert_pattern(dst, sizes[i]);
        assert_int_equal(files_in_dir(), 2); /* no temp file left */
    }
    unlink(src);
    unlink(dst);
    free(src);
    free(dst);
}

static void test_copy_errors_name_the_file_and_keep_the_target(void **state)
{
    (void)state;
    char *missing = path_in_dir("missing"), *dst = path_in_dir("kept");
    write_pattern(dst, 1000);
    assert_int_equal(sq_copy_file(missing, dst), SQ_ERR_NOT_FOUND);
    assert_non_null(strstr(sq_last_error(), missing));
    assert_pattern(dst, 1000);
    char *nowhere = path_in_dir("no/such/dir/file");
    assert_int_equal(sq_copy_file(dst, nowhere), SQ_ERR_IO);
    assert_non_null(strstr(sq_last_error(), "no/such/dir/file"));
    assert_int_equal(files_in_dir(), 1);
    unlink(dst);
    free(missing);
    free(dst);
    free(nowhere);
}

static void test_read_and_atomic_write(void **state)
{
    (void)state;
    char *p = path_in_dir("text");
    assert_int_equal(sq_write_file_atomic(p, "hello\nworld", 11), SQ_OK);
    char *data;
    size_t len;
    assert_int_equal(sq_read_file(p, &data, &len), SQ_OK);
    assert_int_equal(len, 11);
    assert_string_equal(data, "hello\nworld"); /* NUL-terminated */
    free(data);
    unlink(p);
    assert_int_equal(sq_read_file(p, &data, &len), SQ_ERR_NOT_FOUND);
    assert_non_null(strstr(sq_last_error(), p));
    assert_int_equal(files_in_dir(), 0);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_copy_runs_in_constant_memory),
        cmocka_unit_test(test_copy_sizes_around_the_chunk),
        cmocka_unit_test(test_copy_errors_name_the_file_and_keep_the_target),
        cmocka_unit_test(test_read_and_atomic_write),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
