
/*
 * ngx_pullthrough: the store over time, run by nginx's cache manager
 * process (the store is a path with a manager callback, as
 * proxy_cache_path's directory is), so that no worker's event loop ever
 * waits on it.
 *
 * Each call of the manager does a bounded amount of work and says when
 * to call again, as ngx_http_file_cache.c's manager does:
 *
 *   - accesses: workers note each file they serve in the shared zone
 *     (ngx_pt_shm_access); the manager moves them into the store's "files"
 *     and "lru" databases in one transaction per batch, every second, so
 *     a restart loses at most about a second of recency;
 *   - eviction: while the files add up to more than max_size, or the file
 *     system has less than min_free, or the least recently used file was
 *     last read more than inactive ago, the oldest files go, at most
 *     manager_files per call or manager_threshold of time, manager_sleep
 *     between calls. A file is unlinked before its record goes: a reader
 *     holding it open (sendfile in progress) keeps reading its bytes, and
 *     a pull that finds it gone fetches it again. Files of pinned
 *     distributions and files being filled are skipped;
 *   - garbage collection: files no repository has (a repository deleted,
 *     a manifest replaced) are removed, after a protection time; files
 *     under blobs/ without a record (written by a worker that died before
 *     recording them, or by a release before records existed) are adopted
 *     when a repository has them and removed otherwise; records whose file
 *     is gone are dropped. It runs when the manager starts, every hour,
 *     and when asked (a deletion, the orphan cleanup endpoint).
 *
 * Repositories keep their content after eviction, as Pulp's on-demand
 * content does: a version still lists an evicted blob, and the next pull
 * of it fetches it from the upstream again.
 */


#include <ngx_pt.h>
#include <ngx_pt_evict.h>
#include <ngx_pt_schema.h>
#include <ngx_pt_shm.h>
#include <ngx_pt_blob.h>
#include <ngx_pt_fill.h>
#include <ngx_pt_record.h>

#include <sys/statvfs.h>


#define NGX_PT_EVICT_PERIOD        1000     /* ms between idle calls */
#define NGX_PT_EVICT_ACCESS_BATCH  1000     /* accesses per transaction */
#define NGX_PT_EVICT_GC_PERIOD     (3600 * 1000)
#define NGX_PT_EVICT_GC_FIRST      2000     /* ms after the manager starts */
#define NGX_PT_EVICT_GC_PROTECT    (3600 * 1000)  /* ms: the background
                                               pass's orphan protection */
#define NGX_PT_EVICT_GRACE         60000    /* ms: a file without a record
                                               may be a fill committing */
#define NGX_PT_EVICT_GC_BATCH      1000     /* records per transaction */
#define NGX_PT_EVICT_PINS_PERIOD   10000    /* ms: pins looked up again */
#define NGX_PT_EVICT_ROOM          (64 * 1024 * 1024)  /* free after a full
                                               disk, without min_free */
#define NGX_PT_EVICT_WARN          60000    /* ms between "stays above" */

/* what ngx_pt_evict_forget() does with each file's record */
#define NGX_PT_FORGET_EVICTED      0        /* removed */
#define NGX_PT_FORGET_ADOPT        1        /* written */
#define NGX_PT_FORGET_ORPHANS      2        /* removed, with its config's */


typedef struct {
    ngx_http_pullthrough_main_conf_t  *pmcf;
    ngx_log_t                         *log;
    ngx_pool_t                        *pool;
    uint64_t                           now;
    ngx_msec_t                         start;
    off_t                              over;      /* bytes above max_size */
    off_t                              short_of;  /* below min_free */
    ngx_rbtree_t                       pins;
} ngx_pt_evict_t;


typedef struct {
    ngx_pt_evict_t                    *ev;
    ngx_rbtree_t                       refs;
    ngx_rbtree_node_t                  sentinel;
    uint64_t                           before;    /* older: may go */
    ngx_array_t                        gone;      /* ngx_pt_file_t */
    ngx_array_t                        adopt;     /* ngx_pt_file_t */
    ngx_uint_t                         files;
} ngx_pt_gc_t;


static ngx_msec_t ngx_pt_evict_manager(void *data);
static ngx_int_t ngx_pt_evict_flush(ngx_pt_evict_t *ev);
static void ngx_pt_evict_gauges(ngx_pt_evict_t *ev, ngx_pt_totals_t *t,
    off_t *avail, off_t *disk);
static ngx_int_t ngx_pt_evict_step(ngx_pt_evict_t *ev);
static void ngx_pt_evict_skip(ngx_pt_file_t *f);
static ngx_uint_t ngx_pt_evict_wanted(ngx_pt_evict_t *ev, ngx_pt_file_t *f);
static ngx_uint_t ngx_pt_evict_busy(ngx_pt_evict_t *ev, ngx_pt_file_t *f);
static ngx_int_t ngx_pt_evict_unlink(ngx_pt_evict_t *ev, ngx_str_t *digest);
static ngx_int_t ngx_pt_evict_forget(ngx_pt_evict_t *ev, ngx_array_t *files,
    ngx_uint_t how);
static ngx_int_t ngx_pt_evict_gc(ngx_pt_evict_t *ev, uint64_t protection);
static ngx_int_t ngx_pt_gc_ref(void *data, ngx_str_t *repo, ngx_str_t *item,
    ngx_str_t *value);
static ngx_int_t ngx_pt_gc_record(void *data, ngx_pt_file_t *f);
static ngx_int_t ngx_pt_gc_disk(ngx_pt_gc_t *gc);
static ngx_int_t ngx_pt_gc_dir(ngx_pt_gc_t *gc, ngx_str_t *dir,
    ngx_str_t *alg, ngx_uint_t depth);
static ngx_int_t ngx_pt_gc_file(ngx_pt_gc_t *gc, u_char *path,
    ngx_str_t *alg, ngx_str_t *name);
static ngx_int_t ngx_pt_set_add(ngx_pool_t *pool, ngx_rbtree_t *tree,
    ngx_str_t *s);
static ngx_uint_t ngx_pt_set_has(ngx_rbtree_t *tree, ngx_str_t *s);
static ngx_int_t ngx_pt_evict_pins(ngx_pt_evict_t *ev, ngx_uint_t force);
static ngx_int_t ngx_pt_evict_orphans(ngx_pt_evict_t *ev);
static ngx_int_t ngx_pt_evict_tasks(ngx_pt_evict_t *ev, ngx_array_t *ids,
    const char *state, const char *error);


static ngx_uint_t     ngx_pt_evict_opened;
static uint64_t       ngx_pt_evict_next_gc;
static ngx_pt_file_t  ngx_pt_evict_cursor;       /* skipped so far */
static u_char         ngx_pt_evict_cursor_buf[NGX_PT_DIGEST_MAX];
static ngx_uint_t     ngx_pt_evict_pass;         /* evicting now */
static ngx_uint_t     ngx_pt_evict_full;         /* since a full disk */
static uint64_t       ngx_pt_evict_warned;


/* pullthrough_store's max_size=, min_free=, inactive=, manager_*= */

ngx_int_t
ngx_pt_evict_param(ngx_conf_t *cf, ngx_http_pullthrough_main_conf_t *pmcf,
    ngx_str_t *param)
{
    off_t       size;
    ngx_str_t   v;
    ngx_int_t   n;
    ngx_msec_t  ms;

    v.data = (u_char *) ngx_strchr(param->data, '=');
    if (v.data == NULL) {
        return NGX_DECLINED;
    }

    v.data++;
    v.len = param->data + param->len - v.data;

#define ngx_pt_is(name)                                                       \
    ((size_t) (v.data - param->data) == sizeof(name)                          \
     && ngx_strncmp(param->data, name "=", sizeof(name)) == 0)

    if (ngx_pt_is("max_size") || ngx_pt_is("min_free")) {
        size = ngx_parse_offset(&v);

        if (size == NGX_ERROR) {
            goto invalid;
        }

        if (param->data[1] == 'a') {
            pmcf->max_size = size;
        } else {
            pmcf->min_free = size;
        }

        return NGX_OK;
    }

    if (ngx_pt_is("inactive")) {
        /* seconds without a unit, as proxy_cache_path's */
        n = ngx_parse_time(&v, 1);

        if (n == NGX_ERROR || n == 0) {
            goto invalid;
        }

        pmcf->inactive = (ngx_msec_t) n * 1000;

        return NGX_OK;
    }

    if (ngx_pt_is("manager_sleep") || ngx_pt_is("manager_threshold")) {
        ms = ngx_parse_time(&v, 0);

        if (ms == (ngx_msec_t) NGX_ERROR) {
            goto invalid;
        }

        if (param->data[8] == 's') {
            pmcf->manager_sleep = ms;

        } else {
            pmcf->manager_threshold = ms;
        }

        return NGX_OK;
    }

    if (ngx_pt_is("manager_files")) {
        n = ngx_atoi(v.data, v.len);

        if (n == NGX_ERROR || n == 0) {
            goto invalid;
        }

        pmcf->manager_files = n;

        return NGX_OK;
    }

#undef ngx_pt_is

    return NGX_DECLINED;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid value \"%V\" of \"pullthrough_store\"",
                       param);
    return NGX_ERROR;
}


void
ngx_pt_evict_init_conf(ngx_http_pullthrough_main_conf_t *pmcf)
{
    if (pmcf->max_size == NGX_CONF_UNSET) {
        pmcf->max_size = 0;
    }

    if (pmcf->min_free == NGX_CONF_UNSET) {
        pmcf->min_free = 0;
    }

    ngx_conf_init_msec_value(pmcf->inactive, 0);
    ngx_conf_init_uint_value(pmcf->manager_files, 100);
    ngx_conf_init_msec_value(pmcf->manager_sleep, 50);
    ngx_conf_init_msec_value(pmcf->manager_threshold, 200);
}


/* the store as a path of nginx's, with the manager callback */

ngx_int_t
ngx_pt_evict_add_path(ngx_conf_t *cf, ngx_http_pullthrough_main_conf_t *pmcf)
{
    ngx_path_t  *path;

    path = ngx_pcalloc(cf->pool, sizeof(ngx_path_t));
    if (path == NULL) {
        return NGX_ERROR;
    }

    path->name = pmcf->path;
    path->manager = ngx_pt_evict_manager;
    path->data = pmcf;
    path->conf_file = cf->conf_file->file.name.data;
    path->line = cf->conf_file->line;

    if (ngx_add_path(cf, &path) != NGX_OK) {
        return NGX_ERROR;
    }

    if (path->manager != ngx_pt_evict_manager) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "the store \"%V\" is also another module's "
                           "cache directory", &pmcf->path);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_msec_t
ngx_pt_evict_manager(void *data)
{
    ngx_http_pullthrough_main_conf_t *pmcf = data;

    ngx_int_t        more;
    ngx_pt_evict_t   ev;

    ngx_memzero(&ev, sizeof(ngx_pt_evict_t));

    ev.pmcf = pmcf;
    ev.log = ngx_cycle->log;
    ev.now = ngx_pt_clock();
    ev.start = ngx_current_msec;

    if (!ngx_pt_evict_opened) {
        if (ngx_pt_schema_open((ngx_cycle_t *) ngx_cycle, pmcf) != NGX_OK) {
            return 10 * NGX_PT_EVICT_PERIOD;
        }

        ngx_pt_blob_set_root(&pmcf->path);
        ngx_pt_evict_opened = 1;
        ngx_pt_evict_next_gc = ev.now + NGX_PT_EVICT_GC_FIRST;
    }

    ev.pool = ngx_create_pool(16384, ev.log);
    if (ev.pool == NULL) {
        return NGX_PT_EVICT_PERIOD;
    }

    (void) ngx_pt_evict_flush(&ev);
    (void) ngx_pt_evict_pins(&ev, 0);

    more = ngx_pt_evict_step(&ev);

    /* orphan cleanups asked through the admin API first */

    (void) ngx_pt_evict_orphans(&ev);

    if (more != NGX_AGAIN && ev.now >= ngx_pt_evict_next_gc) {
        ngx_pt_evict_next_gc = ev.now + NGX_PT_EVICT_GC_PERIOD;
        (void) ngx_pt_evict_gc(&ev, NGX_PT_EVICT_GC_PROTECT);
    }

    ngx_destroy_pool(ev.pool);

    return more == NGX_AGAIN ? pmcf->manager_sleep : NGX_PT_EVICT_PERIOD;
}


/* the accesses workers noted, into files and lru */

static ngx_int_t
ngx_pt_evict_flush(ngx_pt_evict_t *ev)
{
    MDB_txn              *txn;
    ngx_uint_t            i;
    ngx_array_t           a;
    ngx_pt_shm_access_t  *acc;

    if (ngx_array_init(&a, ev->pool, 64, sizeof(ngx_pt_shm_access_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for ( ;; ) {
        a.nelts = 0;

        (void) ngx_pt_shm_access_take(ev->pool, NGX_PT_EVICT_ACCESS_BATCH,
                                      &a);
        if (a.nelts == 0) {
            return NGX_OK;
        }

        if (ngx_pt_txn_begin(ev->log, 1, &txn) != NGX_OK) {
            return NGX_ERROR;
        }

        acc = a.elts;

        for (i = 0; i < a.nelts; i++) {
            if (ngx_pt_file_accessed(ev->log, txn, &acc[i].digest,
                                     acc[i].atime)
                == NGX_ERROR)
            {
                ngx_pt_txn_abort(txn);
                return NGX_ERROR;
            }
        }

        if (ngx_pt_txn_commit(ev->log, txn) != NGX_OK) {
            return NGX_ERROR;
        }

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                       "pullthrough evict: %ui accesses stored", a.nelts);

        if (a.nelts < NGX_PT_EVICT_ACCESS_BATCH) {
            return NGX_OK;
        }
    }
}


/* what the files add up to and what the file system has, for metrics */

static void
ngx_pt_evict_gauges(ngx_pt_evict_t *ev, ngx_pt_totals_t *t, off_t *avail,
    off_t *disk)
{
    MDB_txn         *txn;
    struct statvfs   fs;

    t->bytes = 0;
    t->files = 0;
    *avail = -1;
    *disk = 0;

    if (ngx_pt_txn_begin(ev->log, 0, &txn) == NGX_OK) {
        (void) ngx_pt_totals_get(ev->log, txn, t);
        ngx_pt_txn_abort(txn);
    }

    ngx_pt_shm_stat_set(NGX_PT_STAT_STORE_BYTES, t->bytes);
    ngx_pt_shm_stat_set(NGX_PT_STAT_STORE_FILES, t->files);
    ngx_pt_shm_stat_set(NGX_PT_STAT_MAX_SIZE, ev->pmcf->max_size);

    if (statvfs((char *) ev->pmcf->path.data, &fs) == 0) {
        *avail = (off_t) fs.f_bavail * fs.f_frsize;
        *disk = (off_t) fs.f_blocks * fs.f_frsize;
        ngx_pt_shm_stat_set(NGX_PT_STAT_DISK_FREE, *avail);
        ngx_pt_shm_stat_set(NGX_PT_STAT_DISK_TOTAL, *disk);
    }
}


/*
 * One batch of eviction: NGX_AGAIN when more is to go (the manager calls
 * again after manager_sleep), NGX_OK when the store is within its limits.
 */

static ngx_int_t
ngx_pt_evict_step(ngx_pt_evict_t *ev)
{
    off_t                              avail, disk, bytes;
    MDB_txn                           *txn;
    ngx_int_t                          rc;
    ngx_uint_t                         i, done;
    ngx_array_t                        batch, gone;
    ngx_pt_file_t                     *f, *g;
    ngx_pt_totals_t                    t;
    ngx_pt_shm_stats_t                *st;
    ngx_http_pullthrough_main_conf_t  *pmcf;

    pmcf = ev->pmcf;

    ngx_pt_evict_gauges(ev, &t, &avail, &disk);

    st = ngx_pt_shm_stats();

    if (st && st->value[NGX_PT_STAT_EVICT_NOW]) {
        /* a fill found the disk full: evict until some room is back */
        st->value[NGX_PT_STAT_EVICT_NOW] = 0;
        ngx_pt_evict_full = 1;
    }

    if (ngx_pt_evict_full && avail >= 0) {
        /* min_free, or 64 MiB (at most a tenth of the file system) */
        ev->short_of = ngx_max(pmcf->min_free,
                               ngx_min(NGX_PT_EVICT_ROOM, disk / 10))
                       - avail;

        if (ev->short_of <= 0) {
            ngx_pt_evict_full = 0;
        }
    }

    ev->over = pmcf->max_size ? t.bytes - pmcf->max_size : 0;

    if (pmcf->min_free && avail >= 0) {
        ev->short_of = ngx_max(ev->short_of, pmcf->min_free - avail);
    }

    if (ev->over <= 0 && ev->short_of <= 0 && pmcf->inactive == 0) {
        ngx_pt_evict_pass = 0;
        return NGX_OK;
    }

    if (!ngx_pt_evict_pass) {
        /* a new pass: from the oldest file */
        ngx_pt_evict_cursor.digest.len = 0;
    }

    if (ngx_array_init(&batch, ev->pool, pmcf->manager_files,
                       sizeof(ngx_pt_file_t)) != NGX_OK
        || ngx_array_init(&gone, ev->pool, pmcf->manager_files,
                          sizeof(ngx_pt_file_t)) != NGX_OK
        || ngx_pt_txn_begin(ev->log, 0, &txn) != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_pt_files_oldest(ev->pool, ev->log, txn,
                             ngx_pt_evict_cursor.digest.len
                             ? &ngx_pt_evict_cursor : NULL,
                             pmcf->manager_files, &batch);

    ngx_pt_txn_abort(txn);

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    if (batch.nelts && ngx_pt_evict_pins(ev, !ngx_pt_evict_pass) != NGX_OK) {
        return NGX_ERROR;
    }

    f = batch.elts;
    done = (batch.nelts < pmcf->manager_files);
    bytes = 0;

    for (i = 0; i < batch.nelts; i++) {

        if (!ngx_pt_evict_wanted(ev, &f[i])) {
            done = 1;
            break;
        }

        if (ngx_pt_evict_busy(ev, &f[i])
            || ngx_pt_evict_unlink(ev, &f[i].digest) != NGX_OK)
        {
            /* left where it is: the next batch begins after it */
            ngx_pt_evict_skip(&f[i]);
            continue;
        }

        g = ngx_array_push(&gone);
        if (g == NULL) {
            return NGX_ERROR;
        }

        *g = f[i];

        if (f[i].size > 0) {
            ev->over -= f[i].size;
            ev->short_of -= f[i].size;
            bytes += f[i].size;
        }

        if (ngx_current_msec - ev->start >= pmcf->manager_threshold) {
            ngx_time_update();

            if (ngx_current_msec - ev->start >= pmcf->manager_threshold) {
                break;
            }
        }
    }

    if (gone.nelts) {
        if (ngx_pt_evict_forget(ev, &gone, NGX_PT_FORGET_EVICTED) != NGX_OK) {
            return NGX_ERROR;
        }

        ngx_pt_shm_stat_add(NGX_PT_STAT_EVICTIONS, gone.nelts);
        ngx_pt_shm_stat_add(NGX_PT_STAT_EVICTED_BYTES, bytes);

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                       "pullthrough evict: %ui files, %O bytes evicted",
                       gone.nelts, bytes);
    }

    if (done) {
        if ((ev->over > 0 || ev->short_of > 0)
            && ev->now >= ngx_pt_evict_warned + NGX_PT_EVICT_WARN)
        {
            ngx_pt_evict_warned = ev->now;
            ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                          "pullthrough: the store \"%V\" stays above its "
                          "limits: what is left is pinned or in use",
                          &pmcf->path);
        }

        ngx_pt_evict_pass = 0;
        return NGX_OK;
    }

    ngx_pt_evict_pass = 1;

    return NGX_AGAIN;
}


static void
ngx_pt_evict_skip(ngx_pt_file_t *f)
{
    if (f->digest.len > NGX_PT_DIGEST_MAX) {
        return;
    }

    ngx_pt_evict_cursor.digest.data = ngx_pt_evict_cursor_buf;
    ngx_pt_evict_cursor.digest.len = f->digest.len;
    ngx_memcpy(ngx_pt_evict_cursor_buf, f->digest.data, f->digest.len);
    ngx_pt_evict_cursor.atime = f->atime;
}


static ngx_uint_t
ngx_pt_evict_wanted(ngx_pt_evict_t *ev, ngx_pt_file_t *f)
{
    if (ev->over > 0 || ev->short_of > 0) {
        return 1;
    }

    return ev->pmcf->inactive
           && f->atime + ev->pmcf->inactive <= ev->now;
}


/* pinned, or a fill of it under way (it will be recorded again) */

static ngx_uint_t
ngx_pt_evict_busy(ngx_pt_evict_t *ev, ngx_pt_file_t *f)
{
    return ngx_pt_set_has(&ev->pins, &f->digest)
           || ngx_pt_fill_busy(&f->digest);
}


static ngx_int_t
ngx_pt_evict_unlink(ngx_pt_evict_t *ev, ngx_str_t *digest)
{
    ngx_str_t        path;
    ngx_pt_digest_t  d;

    if (ngx_pt_digest_parse(digest, &d) != NGX_OK) {
        /* not a file's: only the record goes */
        return NGX_OK;
    }

    if (ngx_pt_blob_path(ev->pool, &d, &path) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_delete_file(path.data) == NGX_FILE_ERROR
        && ngx_errno != NGX_ENOENT)
    {
        ngx_log_error(NGX_LOG_CRIT, ev->log, ngx_errno,
                      ngx_delete_file_n " \"%s\" failed", path.data);
        return NGX_ERROR;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                   "pullthrough evict: \"%s\" removed", path.data);

    return NGX_OK;
}


/* the records of removed files, in transactions of a bounded size */

static ngx_int_t
ngx_pt_evict_forget(ngx_pt_evict_t *ev, ngx_array_t *files, ngx_uint_t how)
{
    MDB_txn        *txn;
    ngx_int_t       rc;
    ngx_uint_t      i, n;
    ngx_pt_file_t  *f;

    f = files->elts;

    for (i = 0; i < files->nelts; i += n) {

        if (ngx_pt_txn_begin(ev->log, 1, &txn) != NGX_OK) {
            return NGX_ERROR;
        }

        for (n = 0; n < NGX_PT_EVICT_GC_BATCH && i + n < files->nelts; n++) {
            rc = (how == NGX_PT_FORGET_ADOPT)
                 ? ngx_pt_file_stored(ev->log, txn, &f[i + n].digest,
                                      f[i + n].size, f[i + n].atime)
                 : ngx_pt_file_forget(ev->log, txn, &f[i + n].digest, NULL);

            /* what an orphan config said goes with it; an evicted one's
             * stays, as its manifest does */

            if (rc != NGX_ERROR && how == NGX_PT_FORGET_ORPHANS
                && f[i + n].size >= 0)
            {
                rc = ngx_pt_config_delete(ev->log, txn, &f[i + n].digest);
            }

            if (rc == NGX_ERROR) {
                ngx_pt_txn_abort(txn);
                return NGX_ERROR;
            }
        }

        if (ngx_pt_txn_commit(ev->log, txn) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * Garbage collection: what repositories have (the keys of manifests and
 * blobs), then the records and the files that nothing has. Files read or
 * stored since "protection" ago stay: a pull may be recording them.
 */

static ngx_int_t
ngx_pt_evict_gc(ngx_pt_evict_t *ev, uint64_t protection)
{
    off_t           bytes;
    MDB_txn        *txn;
    ngx_int_t       rc;
    ngx_uint_t      i, removed;
    ngx_pt_gc_t     gc;
    ngx_pt_file_t  *f;

    ngx_memzero(&gc, sizeof(ngx_pt_gc_t));

    gc.ev = ev;
    gc.before = ev->now > protection ? ev->now - protection : 0;

    ngx_rbtree_init(&gc.refs, &gc.sentinel, ngx_str_rbtree_insert_value);

    if (ngx_array_init(&gc.gone, ev->pool, 64, sizeof(ngx_pt_file_t))
        != NGX_OK
        || ngx_array_init(&gc.adopt, ev->pool, 64, sizeof(ngx_pt_file_t))
           != NGX_OK
        || ngx_pt_txn_begin(ev->log, 0, &txn) != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* what some repository has: each digest once, from the units */

    rc = ngx_pt_units_each(ev->log, txn, NGX_PT_UNIT_MANIFESTS,
                           ngx_pt_gc_ref, &gc);
    if (rc == NGX_OK) {
        rc = ngx_pt_units_each(ev->log, txn, NGX_PT_UNIT_BLOBS,
                               ngx_pt_gc_ref, &gc);
    }

    if (rc == NGX_OK) {
        rc = ngx_pt_files_each(ev->pool, ev->log, txn, ngx_pt_gc_record, &gc);
    }

    ngx_pt_txn_abort(txn);

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    /* records nothing has, or whose file is gone */

    f = gc.gone.elts;
    bytes = 0;
    removed = 0;

    for (i = 0; i < gc.gone.nelts; i++) {
        if (f[i].size >= 0) {
            if (ngx_pt_evict_unlink(ev, &f[i].digest) != NGX_OK) {
                continue;
            }

            bytes += f[i].size;
            removed++;
        }
    }

    if (ngx_pt_evict_forget(ev, &gc.gone, NGX_PT_FORGET_ORPHANS) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_pt_shm_stat_add(NGX_PT_STAT_ORPHANS, removed);
    ngx_pt_shm_stat_add(NGX_PT_STAT_ORPHAN_BYTES, bytes);

    /* files without records */

    gc.gone.nelts = 0;

    if (ngx_pt_gc_disk(&gc) != NGX_OK
        || ngx_pt_evict_forget(ev, &gc.adopt, NGX_PT_FORGET_ADOPT) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_pt_shm_stat_add(NGX_PT_STAT_ORPHANS, gc.files);

    if (removed || gc.adopt.nelts || gc.files) {
        ngx_log_error(NGX_LOG_NOTICE, ev->log, 0,
                      "pullthrough: garbage collection of \"%V\": "
                      "%ui files no repository has removed (%O bytes), "
                      "%ui unrecorded files removed, %ui adopted",
                      &ev->pmcf->path, removed, bytes, gc.files,
                      gc.adopt.nelts);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_pt_gc_ref(void *data, ngx_str_t *repo, ngx_str_t *item,
    ngx_str_t *value)
{
    ngx_pt_gc_t *gc = data;

    if (ngx_pt_set_has(&gc->refs, item)) {
        return NGX_OK;
    }

    return ngx_pt_set_add(gc->ev->pool, &gc->refs, item);
}


static ngx_int_t
ngx_pt_gc_record(void *data, ngx_pt_file_t *f)
{
    ngx_pt_gc_t *gc = data;

    ngx_str_t         path;
    ngx_pt_file_t    *g;
    ngx_pt_digest_t   d;
    ngx_file_info_t   fi;
    ngx_uint_t        orphan, missing;

    orphan = !ngx_pt_set_has(&gc->refs, &f->digest) && f->atime < gc->before;
    missing = 0;

    if (!orphan) {
        if (ngx_pt_digest_parse(&f->digest, &d) != NGX_OK
            || ngx_pt_blob_path(gc->ev->pool, &d, &path) != NGX_OK)
        {
            return NGX_OK;
        }

        missing = (ngx_file_info(path.data, &fi) == NGX_FILE_ERROR
                   && ngx_errno == NGX_ENOENT);
    }

    if (!orphan && !missing) {
        return NGX_OK;
    }

    g = ngx_array_push(&gc->gone);
    if (g == NULL) {
        return NGX_ERROR;
    }

    /* the digest points into the map, which the transaction's end frees */
    g->digest.len = f->digest.len;
    g->digest.data = ngx_pnalloc(gc->ev->pool, f->digest.len);
    if (g->digest.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(g->digest.data, f->digest.data, f->digest.len);
    g->atime = f->atime;
    g->size = missing ? -1 : f->size;

    return NGX_OK;
}


/* blobs/<alg>/<2 hex>/<hex> */

static ngx_int_t
ngx_pt_gc_disk(ngx_pt_gc_t *gc)
{
    ngx_str_t   dir, alg;
    ngx_uint_t  i;

    static ngx_str_t  algs[] = { ngx_string("sha256"), ngx_string("sha512") };

    for (i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
        alg = algs[i];

        dir.len = gc->ev->pmcf->path.len + sizeof("/blobs/") - 1 + alg.len;
        dir.data = ngx_pnalloc(gc->ev->pool, dir.len + 1);
        if (dir.data == NULL) {
            return NGX_ERROR;
        }

        ngx_sprintf(dir.data, "%V/blobs/%V%Z", &gc->ev->pmcf->path, &alg);

        if (ngx_pt_gc_dir(gc, &dir, &alg, 0) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_pt_gc_dir(ngx_pt_gc_t *gc, ngx_str_t *dir, ngx_str_t *alg,
    ngx_uint_t depth)
{
    u_char     *name;
    size_t      len;
    ngx_int_t   rc;
    ngx_dir_t   d;
    ngx_str_t   sub, base;

    if (ngx_open_dir(dir, &d) == NGX_ERROR) {
        return NGX_OK;
    }

    rc = NGX_OK;

    while (rc == NGX_OK && ngx_read_dir(&d) == NGX_OK) {
        name = ngx_de_name(&d);
        len = ngx_de_namelen(&d);

        if (name[0] == '.') {
            continue;
        }

        sub.len = dir->len + 1 + len;
        sub.data = ngx_pnalloc(gc->ev->pool, sub.len + 1);
        if (sub.data == NULL) {
            rc = NGX_ERROR;
            break;
        }

        ngx_sprintf(sub.data, "%V/%*s%Z", dir, len, name);

        if (depth == 0) {
            rc = ngx_pt_gc_dir(gc, &sub, alg, 1);
            continue;
        }

        base.data = sub.data + dir->len + 1;
        base.len = len;

        rc = ngx_pt_gc_file(gc, sub.data, alg, &base);
    }

    ngx_close_dir(&d);

    return rc;
}


static ngx_int_t
ngx_pt_gc_file(ngx_pt_gc_t *gc, u_char *path, ngx_str_t *alg,
    ngx_str_t *name)
{
    uint64_t          mtime;
    MDB_txn          *txn;
    ngx_int_t         rc;
    ngx_str_t         digest;
    ngx_pt_file_t     f, *a;
    ngx_pt_digest_t   d;
    ngx_file_info_t   fi;

    digest.len = alg->len + 1 + name->len;
    digest.data = ngx_pnalloc(gc->ev->pool, digest.len);
    if (digest.data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(digest.data, "%V:%V", alg, name);

    if (ngx_pt_digest_parse(&digest, &d) != NGX_OK
        || ngx_file_info(path, &fi) == NGX_FILE_ERROR
        || !ngx_is_file(&fi))
    {
        return NGX_OK;
    }

    if (ngx_pt_txn_begin(gc->ev->log, 0, &txn) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_pt_file_get(gc->ev->log, txn, &digest, &f);

    ngx_pt_txn_abort(txn);

    if (rc != NGX_DECLINED) {
        return rc == NGX_ERROR ? NGX_ERROR : NGX_OK;
    }

    mtime = (uint64_t) ngx_file_mtime(&fi) * 1000;

    if (ngx_pt_set_has(&gc->refs, &digest)) {
        a = ngx_array_push(&gc->adopt);
        if (a == NULL) {
            return NGX_ERROR;
        }

        a->digest = digest;
        a->size = ngx_file_size(&fi);
        a->atime = mtime;

        return NGX_OK;
    }

    if (mtime + NGX_PT_EVICT_GRACE > gc->ev->now || mtime >= gc->before) {
        return NGX_OK;
    }

    if (ngx_delete_file(path) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_CRIT, gc->ev->log, ngx_errno,
                      ngx_delete_file_n " \"%s\" failed", path);
        return NGX_OK;
    }

    gc->files++;

    return NGX_OK;
}


/* sets of strings: red-black trees keyed by CRC32 */

static ngx_int_t
ngx_pt_set_add(ngx_pool_t *pool, ngx_rbtree_t *tree, ngx_str_t *s)
{
    ngx_str_node_t  *sn;

    sn = ngx_palloc(pool, sizeof(ngx_str_node_t) + s->len);
    if (sn == NULL) {
        return NGX_ERROR;
    }

    sn->node.key = ngx_crc32_short(s->data, s->len);
    sn->str.len = s->len;
    sn->str.data = (u_char *) sn + sizeof(ngx_str_node_t);
    ngx_memcpy(sn->str.data, s->data, s->len);

    ngx_rbtree_insert(tree, &sn->node);

    return NGX_OK;
}


static ngx_uint_t
ngx_pt_set_has(ngx_rbtree_t *tree, ngx_str_t *s)
{
    if (tree->root == NULL) {
        return 0;
    }

    return ngx_str_rbtree_lookup(tree, s, ngx_crc32_short(s->data, s->len))
           != NULL;
}


/*
 * Pins: the files of every repository whose per-image distribution, or
 * the pull-through distribution above it, has retain set. The set is made
 * again at the start of each eviction pass and every 10 seconds, with the
 * pinned bytes for the metrics.
 */

typedef struct {
    ngx_pool_t                 *pool;
    ngx_log_t                  *log;
    MDB_txn                    *txn;
    ngx_rbtree_t               *parents;
    ngx_array_t                 repos;       /* ngx_str_t */
    ngx_rbtree_t               *set;
    off_t                       bytes;
    ngx_uint_t                  files;
} ngx_pt_pins_t;


static ngx_int_t
ngx_pt_pins_parent(void *data, void *rec)
{
    ngx_pt_pins_t *p = data;
    ngx_pt_dist_t *d = rec;

    return d->retain ? ngx_pt_set_add(p->pool, p->parents, &d->meta.id)
                     : NGX_OK;
}


static ngx_int_t
ngx_pt_pins_image(void *data, void *rec)
{
    ngx_pt_pins_t *p = data;
    ngx_pt_dist_t *d = rec;

    ngx_str_t  *repo;

    if (!d->retain && !ngx_pt_set_has(p->parents, &d->parent)) {
        return NGX_OK;
    }

    repo = ngx_array_push(&p->repos);
    if (repo == NULL) {
        return NGX_ERROR;
    }

    repo->len = d->base_path.len;
    repo->data = ngx_pstrdup(p->pool, &d->base_path);

    return repo->data ? NGX_OK : NGX_ERROR;
}


static ngx_int_t
ngx_pt_pins_item(void *data, ngx_str_t *repo, ngx_str_t *item,
    ngx_str_t *value)
{
    ngx_pt_pins_t *p = data;

    ngx_int_t      rc;
    ngx_pt_file_t  f;

    if (ngx_pt_set_has(p->set, item)) {
        return NGX_OK;
    }

    rc = ngx_pt_file_get(p->log, p->txn, item, &f);

    if (rc == NGX_OK) {
        p->bytes += f.size;
        p->files++;
    }

    return ngx_pt_set_add(p->pool, p->set, item);
}


static ngx_pool_t         *ngx_pt_pins_pool;
static ngx_rbtree_t        ngx_pt_pins_set;
static ngx_rbtree_node_t   ngx_pt_pins_sentinel;
static uint64_t            ngx_pt_pins_made;


static ngx_int_t
ngx_pt_evict_pins(ngx_pt_evict_t *ev, ngx_uint_t force)
{
    MDB_txn            *txn;
    ngx_int_t           rc;
    ngx_str_t          *repo;
    ngx_uint_t          i;
    ngx_pool_t         *pool;
    ngx_rbtree_t        parents;
    ngx_pt_pins_t       p;
    ngx_rbtree_node_t   sentinel;

    if (ngx_pt_pins_pool && !force
        && ngx_pt_pins_made + NGX_PT_EVICT_PINS_PERIOD > ev->now)
    {
        ev->pins = ngx_pt_pins_set;
        return NGX_OK;
    }

    pool = ngx_create_pool(16384, ev->log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(&p, sizeof(ngx_pt_pins_t));

    ngx_rbtree_init(&parents, &sentinel, ngx_str_rbtree_insert_value);
    ngx_rbtree_init(&ngx_pt_pins_set, &ngx_pt_pins_sentinel,
                    ngx_str_rbtree_insert_value);

    p.pool = pool;
    p.log = ev->log;
    p.parents = &parents;
    p.set = &ngx_pt_pins_set;

    if (ngx_array_init(&p.repos, pool, 8, sizeof(ngx_str_t)) != NGX_OK
        || ngx_pt_txn_begin(ev->log, 0, &txn) != NGX_OK)
    {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    p.txn = txn;

    rc = ngx_pt_record_each(NULL, ev->log, txn, &ngx_pt_pt_dist_type,
                            ngx_pt_pins_parent, &p);
    if (rc == NGX_OK) {
        rc = ngx_pt_record_each(NULL, ev->log, txn, &ngx_pt_dist_type,
                                ngx_pt_pins_image, &p);
    }

    repo = p.repos.elts;

    for (i = 0; rc == NGX_OK && i < p.repos.nelts; i++) {
        rc = ngx_pt_items_each(pool, ev->log, txn, NGX_PT_DB_MANIFESTS,
                               &repo[i], ngx_pt_pins_item, &p);
        if (rc == NGX_OK) {
            rc = ngx_pt_items_each(pool, ev->log, txn, NGX_PT_DB_BLOBS,
                                   &repo[i], ngx_pt_pins_item, &p);
        }
    }

    ngx_pt_txn_abort(txn);

    if (rc != NGX_OK) {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    if (ngx_pt_pins_pool) {
        ngx_destroy_pool(ngx_pt_pins_pool);
    }

    ngx_pt_pins_pool = pool;
    ngx_pt_pins_made = ev->now;
    ev->pins = ngx_pt_pins_set;

    ngx_pt_shm_stat_set(NGX_PT_STAT_PINNED_BYTES, p.bytes);
    ngx_pt_shm_stat_set(NGX_PT_STAT_PINNED_FILES, p.files);

    return NGX_OK;
}


/*
 * Orphan cleanups the admin API asked for (POST orphans/cleanup/): their
 * tasks run, one garbage collection for all with the shortest protection
 * asked, then complete.
 */

static ngx_int_t
ngx_pt_evict_orphans(ngx_pt_evict_t *ev)
{
    uint64_t     protection;
    ngx_int_t    rc;
    ngx_array_t  ids;

    if (ngx_array_init(&ids, ev->pool, 4, sizeof(ngx_str_t)) != NGX_OK
        || ngx_pt_shm_gc_take(ev->pool, &ids, &protection) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ids.nelts == 0) {
        return NGX_OK;
    }

    (void) ngx_pt_evict_tasks(ev, &ids, "running", NULL);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                   "pullthrough evict: orphan cleanup of %ui tasks, "
                   "protection %uL ms", ids.nelts, protection);

    rc = ngx_pt_evict_gc(ev, protection);

    return ngx_pt_evict_tasks(ev, &ids, rc == NGX_OK ? "completed" : "failed",
                              rc == NGX_OK ? NULL
                              : "The orphan cleanup failed, see the error "
                                "log.");
}


static ngx_int_t
ngx_pt_evict_tasks(ngx_pt_evict_t *ev, ngx_array_t *ids, const char *state,
    const char *error)
{
    void           *rec;
    MDB_txn        *txn;
    ngx_int_t       rc;
    ngx_str_t      *id;
    ngx_uint_t      i;
    ngx_pt_task_t  *task;

    if (ngx_pt_txn_begin(ev->log, 1, &txn) != NGX_OK) {
        return NGX_ERROR;
    }

    id = ids->elts;

    for (i = 0; i < ids->nelts; i++) {
        rc = ngx_pt_record_load(ev->pool, ev->log, txn, &ngx_pt_task_type,
                                &id[i], &rec);
        if (rc == NGX_DECLINED) {
            continue;
        }

        task = rec;

        if (rc != NGX_OK
            || ngx_pt_now(ev->pool, &task->meta.updated) != NGX_OK)
        {
            ngx_pt_txn_abort(txn);
            return NGX_ERROR;
        }

        task->state.data = (u_char *) state;
        task->state.len = ngx_strlen(state);

        if (error) {
            task->error.data = (u_char *) error;
            task->error.len = ngx_strlen(error);
        }

        if (ngx_pt_record_save(ev->pool, ev->log, txn, &ngx_pt_task_type,
                               task)
            != NGX_OK)
        {
            ngx_pt_txn_abort(txn);
            return NGX_ERROR;
        }
    }

    return ngx_pt_txn_commit(ev->log, txn);
}
