
/*
 * ngx_pullthrough: state shared by the workers (ngx_pt_shm.c).
 */


#ifndef _NGX_PT_SHM_H_INCLUDED_
#define _NGX_PT_SHM_H_INCLUDED_


#include <ngx_pt.h>


#define NGX_PT_SHM_DEFAULT_SIZE  (4 * 1024 * 1024)
#define NGX_PT_SHM_MIN_SIZE      (8 * ngx_pagesize)

#define NGX_PT_SHM_REPO_MAX      1024        /* a repository's name */
#define NGX_PT_SHM_RATE_TTL      (3600 * 1000)   /* ms: an idle bucket goes */


/* a fill's progress, as other workers follow it */
typedef struct {
    ngx_pid_t                   pid;         /* the filling worker */
    ngx_uint_t                  seq;         /* its temp file's number */
    ngx_uint_t                  state;       /* NGX_PT_FILL_RUNNING, ... */
    ngx_uint_t                  header;      /* the upstream answered */
    off_t                       expected;    /* -1: unknown */
    off_t                       written;
    ngx_uint_t                  error_status;
    ngx_uint_t                  bad_digest;
} ngx_pt_shm_fill_t;


/* the fill fetching a digest, for the other repositories that need it */
typedef struct {
    ngx_pid_t                   pid;
    ngx_uint_t                  seq;
    size_t                      repo_len;
    u_char                      repo[NGX_PT_SHM_REPO_MAX];
} ngx_pt_shm_blob_t;


/* the one upstream request for a manifest that others wait for */
typedef struct {
    ngx_pid_t                   pid;         /* the worker making it */
    ngx_uint_t                  seq;         /* its number there */
    ngx_uint_t                  done;
    ngx_int_t                   status;      /* when done: 0, or the HTTP
                                                status it answered */
} ngx_pt_shm_flight_t;


/* the figures every process adds to (ngx_pt_shm_stats_t's value[]) */
typedef enum {
    NGX_PT_STAT_STORE_BYTES = 0,     /* gauges the cache manager sets */
    NGX_PT_STAT_STORE_FILES,
    NGX_PT_STAT_PINNED_BYTES,
    NGX_PT_STAT_PINNED_FILES,
    NGX_PT_STAT_DISK_FREE,
    NGX_PT_STAT_DISK_TOTAL,
    NGX_PT_STAT_MAX_SIZE,
    NGX_PT_STAT_FILLS,               /* gauge: fills in progress */
    NGX_PT_STAT_EVICTIONS,           /* counters */
    NGX_PT_STAT_EVICTED_BYTES,
    NGX_PT_STAT_ORPHANS,
    NGX_PT_STAT_ORPHAN_BYTES,
    NGX_PT_STAT_ACCESS_LOST,
    NGX_PT_STAT_DIGEST_MISMATCHES,
    NGX_PT_STAT_TOKEN_REQUESTS,
    NGX_PT_STAT_TOKEN_FAILURES,
    NGX_PT_STAT_FILL_FAILURES,
    NGX_PT_STAT_DISK_FULL,
    NGX_PT_STAT_EVICT_NOW,           /* a flag for the cache manager */
    NGX_PT_STAT_COUNT
} ngx_pt_stat_e;


#define NGX_PT_SHM_ACCESS_COST   256     /* bytes of an access, about */
#define NGX_PT_SHM_GC_TASKS      16      /* orphan cleanups waiting */


typedef struct {
    ngx_atomic_t                value[NGX_PT_STAT_COUNT];
    ngx_queue_t                 access;      /* accesses not yet stored */
    ngx_uint_t                  access_n;
    ngx_uint_t                  access_max;
    ngx_uint_t                  counters;    /* sets of labeled counters */

    /* orphan cleanups asked for, which the cache manager runs */
    ngx_uint_t                  gc_n;
    uint64_t                    gc_protection;   /* ms, the least asked */
    u_char                      gc_tasks[NGX_PT_SHM_GC_TASKS][NGX_PT_UUID_LEN];
} ngx_pt_shm_stats_t;


/* counters by a label: "d<distribution>" or "r<remote>" (ngx_pt_metrics.c
 * gives the slots their meaning) */
#define NGX_PT_SHM_COUNTERS_MAX  1024
#define NGX_PT_SHM_COUNTERS_N    24

typedef struct {
    ngx_atomic_t                v[NGX_PT_SHM_COUNTERS_N];
} ngx_pt_shm_counters_t;


typedef struct {
    ngx_str_t                   key;
    ngx_pt_shm_counters_t       counters;
} ngx_pt_shm_labeled_t;


typedef struct {
    ngx_str_t                   digest;
    uint64_t                    atime;
} ngx_pt_shm_access_t;


char *ngx_pt_shm_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
ngx_int_t ngx_pt_shm_add(ngx_conf_t *cf, size_t size);
void ngx_pt_shm_init_process(ngx_cycle_t *cycle);

/* tokens and hints: may be evicted to make room */
ngx_int_t ngx_pt_shm_token_get(ngx_str_t *key, ngx_pool_t *pool,
    ngx_str_t *token);
void ngx_pt_shm_token_set(ngx_str_t *key, ngx_str_t *token, ngx_msec_t ttl);
ngx_uint_t ngx_pt_shm_hint_get(ngx_str_t *key);
void ngx_pt_shm_hint_set(ngx_str_t *key, ngx_msec_t ttl);

/* upstream failures and absences: may be evicted too */
ngx_msec_t ngx_pt_shm_backoff_left(ngx_str_t *key);
ngx_msec_t ngx_pt_shm_backoff_fail(ngx_str_t *key);
void ngx_pt_shm_backoff_clear(ngx_str_t *key);
ngx_uint_t ngx_pt_shm_negative_get(ngx_str_t *key);
void ngx_pt_shm_negative_set(ngx_str_t *key, ngx_msec_t ttl);

/* kept until they expire or are removed */
ngx_uint_t ngx_pt_shm_claim(ngx_str_t *key, ngx_msec_t ttl);
void ngx_pt_shm_unclaim(ngx_str_t *key);
ngx_uint_t ngx_pt_shm_fill_claim(ngx_str_t *key, ngx_pt_shm_fill_t *fill,
    ngx_msec_t ttl);
ngx_int_t ngx_pt_shm_fill_get(ngx_str_t *key, ngx_pt_shm_fill_t *fill);
void ngx_pt_shm_fill_set(ngx_str_t *key, ngx_pt_shm_fill_t *fill,
    ngx_msec_t ttl);
ngx_int_t ngx_pt_shm_blob_get(ngx_str_t *digest, ngx_pt_shm_blob_t *blob);
void ngx_pt_shm_blob_set(ngx_str_t *digest, ngx_pt_shm_blob_t *blob,
    ngx_msec_t ttl);
ngx_uint_t ngx_pt_shm_flight_claim(ngx_str_t *key, ngx_pt_shm_flight_t *fl,
    ngx_msec_t ttl);
ngx_int_t ngx_pt_shm_flight_get(ngx_str_t *key, ngx_pt_shm_flight_t *fl);
void ngx_pt_shm_flight_end(ngx_str_t *key, ngx_pt_shm_flight_t *fl,
    ngx_msec_t linger);

/* figures and accesses */
ngx_pt_shm_stats_t *ngx_pt_shm_stats(void);
void ngx_pt_shm_stat_add(ngx_uint_t which, ngx_atomic_int_t n);
void ngx_pt_shm_stat_set(ngx_uint_t which, ngx_atomic_uint_t v);
ngx_atomic_uint_t ngx_pt_shm_stat_get(ngx_uint_t which);
void ngx_pt_shm_access(ngx_str_t *digest);
ngx_pt_shm_counters_t *ngx_pt_shm_counters(ngx_str_t *key);
ngx_int_t ngx_pt_shm_counters_all(ngx_pool_t *pool, ngx_array_t *out);
ngx_int_t ngx_pt_shm_gc_ask(ngx_str_t *task, uint64_t protection);
ngx_int_t ngx_pt_shm_gc_take(ngx_pool_t *pool, ngx_array_t *tasks,
    uint64_t *protection);
ngx_int_t ngx_pt_shm_access_take(ngx_pool_t *pool, ngx_uint_t n,
    ngx_array_t *out);

/* counters of a remote's upstream requests, never evicted */
ngx_msec_t ngx_pt_shm_rate_take(ngx_str_t *remote, ngx_uint_t rate);
ngx_uint_t ngx_pt_shm_conc_acquire(ngx_str_t *remote, ngx_uint_t limit);
void ngx_pt_shm_conc_release(ngx_str_t *remote);


#endif /* _NGX_PT_SHM_H_INCLUDED_ */
