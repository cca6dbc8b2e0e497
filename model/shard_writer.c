/* shard_writer.c: shards written on threads of their own (see shard_writer.h). */
#include "model/shard_writer.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/background_task.h"
#include "core/fileio.h"
#include "core/log.h"

typedef struct {
    char *path;
    const sq_st_entry *entries;
    int n_entries;
    void *owner;
    sq_shard_release release;
    bool started, waited;
    sq_background_task task;
    char sha256[SQ_SHA256_HEX_LEN + 1]; /* of the file's bytes, computed while writing them */
} shard_slot;

struct sq_shard_writer {
    char *out_dir;
    int n_shards, in_flight;
    int next_to_wait; /* shards are waited for in the order they were submitted */
    int *order;       /* [n_shards]: the indices in submission order */
    int submitted;
    sq_status first_failure;
    char first_message[1024]; /* its message, raised again by close */
    shard_slot *slots;
};

static sq_status write_task(void *p)
{
    shard_slot *s = p;
    json_t *meta = json_pack("{s:s}", "format", "pt");
    double t0 = sq_now_seconds();
    sq_status st = meta ? sq_st_write_hashed(s->path, s->entries, s->n_entries, meta, s->sha256)
                        : sq_fail(SQ_ERR_NOMEM, "%s: out of memory", s->path);
    if (st == SQ_OK)
        sq_log_info("%s: %d tensors written and synced in %.2fs", s->path, s->n_entries, sq_now_seconds() - t0);
    json_decref(meta);
    return st;
}

static void release_slot(shard_slot *s)
{
    if (s->release)
        s->release(s->owner);
    s->release = NULL, s->owner = NULL, s->entries = NULL;
}

/* Wait for the oldest shard in flight, keeping the first failure (with its file named). */
static void wait_oldest(sq_shard_writer *w)
{
    shard_slot *s = &w->slots[w->order[w->next_to_wait++]];
    sq_status st = sq_background_wait(&s->task);
    s->waited = true;
    if (st != SQ_OK && w->first_failure == SQ_OK) {
        w->first_failure = sq_fail_context(st, "writing %s", s->path);
        snprintf(w->first_message, sizeof w->first_message, "%s", sq_last_error());
    }
    release_slot(s);
}

void sq_shard_file_name(int index, int n_shards, char name[64])
{
    if (n_shards == 1)
        snprintf(name, 64, "model.safetensors");
    else
        snprintf(name, 64, "model-%05d-of-%05d.safetensors", index + 1, n_shards);
}

sq_status sq_shard_writer_open(sq_shard_writer **out, const char *out_dir, int n_shards, int in_flight)
{
    *out = NULL;
    if (n_shards < 1 || in_flight < 1)
        return sq_fail(SQ_ERR_ARG, "shard writer %s: %d shards, %d in flight", out_dir, n_shards, in_flight);
    sq_shard_writer *w = calloc(1, sizeof *w);
    if (w) {
        w->out_dir = strdup(out_dir);
        w->slots = calloc((size_t)n_shards, sizeof *w->slots);
        w->order = calloc((size_t)n_shards, sizeof *w->order);
    }
    if (!w || !w->out_dir || !w->slots || !w->order) {
        if (w)
            free(w->out_dir), free(w->slots), free(w->order);
        free(w);
        return sq_fail(SQ_ERR_NOMEM, "shard writer %s: out of memory", out_dir);
    }
    w->n_shards = n_shards;
    w->in_flight = in_flight;
    *out = w;
    return SQ_OK;
}

sq_status sq_shard_writer_submit(sq_shard_writer *w, int index, const char *name, const sq_st_entry *entries, int n,
                                 void *owner, sq_shard_release release)
{
    sq_status st = SQ_OK;
    if (index < 0 || index >= w->n_shards || w->slots[index].started)
        st = sq_fail(SQ_ERR_ARG, "shard writer %s: shard %d out of range or given twice", w->out_dir, index);
    while (st == SQ_OK && w->submitted - w->next_to_wait >= w->in_flight)
        wait_oldest(w);
    if (st == SQ_OK && w->first_failure != SQ_OK) /* a shard before it failed: write no more */
        st = sq_fail(w->first_failure, "%s", w->first_message);
    shard_slot *s = st == SQ_OK ? &w->slots[index] : NULL;
    if (s && !(s->path = sq_path_join(w->out_dir, name)))
        st = sq_fail(SQ_ERR_NOMEM, "shard writer %s: out of memory", w->out_dir);
    if (st != SQ_OK) {
        if (release)
            release(owner);
        return st;
    }
    *s = (shard_slot){.path = s->path, .entries = entries, .n_entries = n, .owner = owner, .release = release};
    st = sq_background_start(&s->task, write_task, s);
    if (st != SQ_OK) {
        release_slot(s);
        return sq_fail_context(st, "writing %s", s->path);
    }
    s->started = true;
    w->order[w->submitted++] = index;
    return SQ_OK;
}

sq_status sq_shard_writer_close(sq_shard_writer *w, char **sha256)
{
    while (w->next_to_wait < w->submitted)
        wait_oldest(w);
    sq_status st = w->first_failure;
    if (st != SQ_OK) /* the thread's message may have been replaced since it was waited for */
        st = sq_fail(st, "%s", w->first_message);
    for (int i = 0; i < w->n_shards; i++) {
        shard_slot *s = &w->slots[i];
        if (st == SQ_OK && sha256 && s->started && !(sha256[i] = strdup(s->sha256)))
            st = sq_fail(SQ_ERR_NOMEM, "shard writer %s: out of memory", w->out_dir);
        free(s->path);
    }
    free(w->slots), free(w->order), free(w->out_dir), free(w);
    return st;
}
