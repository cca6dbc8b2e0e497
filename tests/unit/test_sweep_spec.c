/* test_sweep_spec.c: JSON paths set the field they name (a "*" the only key of an object) and
 * name what is missing; the example sweeps expand into the points, names, URIs and spec values
 * written out by hand here; bad sweep files are refused naming the JSON path at fault. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jobs/json_path.h"
#include "jobs/sweep_spec.h"

static void test_json_path_sets_fields(void **state)
{
    (void)state;
    json_t *doc = json_loads("{\"steps\": [{\"gptq\": {\"bits\": 4}}, {\"eval\": {}}], \"model\": \"m\"}", 0, NULL);
    assert_int_equal(sq_json_path_set(doc, "steps[0].gptq.bits", json_integer(3), "t"), SQ_OK);
    assert_int_equal(sq_json_path_set(doc, "steps[0].*.group_size", json_integer(64), "t"), SQ_OK);
    assert_int_equal(sq_json_path_set(doc, "model", json_string("other"), "t"), SQ_OK);
    char *text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(text, "{\"model\":\"other\",\"steps\":[{\"gptq\":{\"bits\":3,\"group_size\":64}},{\"eval\":{}}]}");
    free(text);
    json_decref(doc);
}

static void test_json_path_names_what_is_missing(void **state)
{
    (void)state;
    json_t *doc = json_loads("{\"steps\": [{\"gptq\": {}}], \"data\": {\"a\": 1, \"b\": 2}}", 0, NULL);
    json_t *v = json_integer(1);
    assert_int_equal(sq_json_path_set(doc, "steps[3].gptq.bits", v, "f"), SQ_ERR_SPEC);
    assert_string_equal(sq_last_error(), "f: steps[3].gptq.bits: steps[3] does not exist (the list has 1 items)");
    assert_int_equal(sq_json_path_set(doc, "data.x.y", v, "f"), SQ_ERR_SPEC);
    assert_string_equal(sq_last_error(), "f: data.x.y: data.x does not exist in the base spec");
    assert_int_equal(sq_json_path_set(doc, "data.*", v, "f"), SQ_ERR_SPEC);
    assert_string_equal(sq_last_error(), "f: data.*: * needs an object of one key at data (it has 2)");
    assert_int_equal(sq_json_path_set(doc, "steps..x", v, "f"), SQ_ERR_SPEC);
    assert_int_equal(sq_json_path_set(doc, "steps[x]", v, "f"), SQ_ERR_SPEC);
    assert_int_equal(sq_json_path_set(doc, "data[0]", v, "f"), SQ_ERR_SPEC);
    assert_string_equal(sq_last_error(), "f: data[0]: data is not a list");
    json_decref(v);
    json_decref(doc);
}

static char *example_path(const char *name)
{
    const char *root = getenv("SHARDQ_ROOT");
    static char path[4096];
    snprintf(path, sizeof path, "%s/jobs/examples/%s", root ? root : ".", name);
    return path;
}

static void test_fixture_example_points(void **state)
{
    (void)state;
    sq_sweep sweep;
    assert_int_equal(sq_sweep_load(&sweep, example_path("sweep_fixture.json")), SQ_OK);
    assert_int_equal(sweep.n_points, 4);
    assert_string_equal(sweep.results_path, "build/sweeps/fixture-grid/results.jsonl");
    const char *names[] = {"fixture-grid-methodrtn-bits3", "fixture-grid-methodrtn-bits4",
                           "fixture-grid-methodgptq-bits3", "fixture-grid-methodgptq-bits4"};
    for (int i = 0; i < 4; i++) {
        sq_sweep_point point;
        assert_int_equal(sq_sweep_point_make(&sweep, i, &point), SQ_OK);
        assert_string_equal(point.name, names[i]);
        assert_string_equal(point.spec.name, names[i]);
        char expected[256];
        snprintf(expected, sizeof expected, "build/sweeps/fixture-grid/points/%s/state", names[i]);
        assert_string_equal(point.spec.state_uri, expected);
        snprintf(expected, sizeof expected, "build/sweeps/fixture-grid/points/%s/output", names[i]);
        assert_string_equal(point.spec.output_uri, expected);
        assert_int_equal(point.spec.steps[0].kind, i < 2 ? SQ_STEP_RTN : SQ_STEP_GPTQ);
        assert_int_equal(point.spec.steps[0].quant.bits, i % 2 ? 4 : 3);
        assert_int_equal(point.spec.steps[0].quant.group_size, 32);
        assert_string_equal(json_string_value(json_object_get(point.axes, "method")), i < 2 ? "rtn" : "gptq");
        assert_int_equal(json_integer_value(json_object_get(point.axes, "bits")), i % 2 ? 4 : 3);
        sq_sweep_point_free(&point);
    }
    sq_sweep_point point;
    assert_int_equal(sq_sweep_point_make(&sweep, 4, &point), SQ_ERR_ARG);
    sq_sweep_free(&sweep);
}

static void test_smollm2_example_last_point(void **state)
{
    (void)state;
    sq_sweep sweep;
    assert_int_equal(sq_sweep_load(&sweep, example_path("sweep_smollm2.json")), SQ_OK);
    assert_int_equal(sweep.n_points, 18); /* 3 methods x 3 bit widths x 2 group sizes */
    sq_sweep_point point;
    assert_int_equal(sq_sweep_point_make(&sweep, 17, &point), SQ_OK);
    assert_string_equal(point.name, "smollm2-methodgptq_actorder-bits8-g128");
    assert_true(point.spec.steps[0].quant.desc_act);
    assert_int_equal(point.spec.steps[0].quant.bits, 8);
    sq_sweep_point_free(&point);
    assert_int_equal(sq_sweep_point_make(&sweep, 7, &point), SQ_OK); /* gptq, bits 3, g 128 */
    assert_string_equal(point.name, "smollm2-methodgptq-bits3-g128");
    assert_false(point.spec.steps[0].quant.desc_act);
    assert_int_equal(point.spec.steps[0].quant.group_size, 128);
    sq_sweep_point_free(&point);
    sq_sweep_free(&sweep);
}

/* Load `text` as a sweep file; the status, with sq_last_error() holding its message. */
static sq_status load_text(const char *text)
{
    char path[] = "/tmp/test_sweep_specXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    sq_sweep sweep;
    sq_status st = sq_sweep_load(&sweep, path);
    if (st == SQ_OK)
        sq_sweep_free(&sweep);
    unlink(path);
    return st;
}

static void test_bad_sweeps_name_the_path(void **state)
{
    (void)state;
    static const struct {
        const char *json, *message;
    } cases[] = {
        {"{\"root\": \"r\", \"base\": {\"state_uri\": \"s\"}, \"axes\": [{\"name\": \"a\", \"path\": \"seed\", "
         "\"values\": [1]}]}",
         "base.state_uri: derived by the sweep"},
        {"{\"root\": \"r\", \"base\": {}, \"axes\": [{\"name\": \"a\", \"path\": \"model\", \"values\": [\"x/m\", "
         "\"y/m\"]}]}",
         "axes[0]: values 0 and 1 both get the label 'm': give \"labels\""},
        {"{\"root\": \"r\", \"base\": {}, \"axes\": []}", "axes: required: a non-empty list of axes"},
        {"{\"root\": \"r\", \"base\": {}, \"axes\": [{\"name\": \"a\", \"path\": \"name\", \"values\": [1]}]}",
         "axes[0]: path name is derived by the sweep"},
        {"{\"root\": \"r\", \"base\": {}, \"axes\": [{\"name\": \"a\", \"path\": \"seed\", \"values\": [1], "
         "\"labels\": [\"x\", \"y\"]}]}",
         "axes[0].labels: must be a list of 1 strings, one per value"},
        {"{\"root\": \"s3://bucket/p\", \"base\": {}, \"axes\": [{\"name\": \"a\", \"path\": \"seed\", "
         "\"values\": [1]}]}",
         "root: must be a local directory"},
        {"{\"base\": {}, \"axes\": [{\"name\": \"a\", \"path\": \"seed\", \"values\": [1]}], \"extra\": 1}",
         "extra: unknown key"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(load_text(cases[i].json), SQ_ERR_SPEC);
        if (!strstr(sq_last_error(), cases[i].message))
            fail_msg("case %zu: '%s' lacks '%s'", i, sq_last_error(), cases[i].message);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_path_sets_fields),
        cmocka_unit_test(test_json_path_names_what_is_missing),
        cmocka_unit_test(test_fixture_example_points),
        cmocka_unit_test(test_smollm2_example_last_point),
        cmocka_unit_test(test_bad_sweeps_name_the_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
