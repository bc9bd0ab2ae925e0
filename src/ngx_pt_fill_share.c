
/*
 * ngx_pullthrough: fills shared by the workers. A fill publishes its
 * progress in the shared zone (ngx_pt_shm.c): its worker, its temp file,
 * the length and bytes written, its state. Another worker's miss for the
 * same repository and digest finds it there and becomes a mirror: no
 * exchange, no digest, no buffers, just the filling worker's temp file,
 * which its readers send as it grows, and a timer that copies the
 * published state every few ms. A fill also names its repository under
 * its digest, so that a miss for another repository (a shared base layer)
 * can follow it once its own upstream confirms the blob.
 */


#include <ngx_pt.h>
#include <ngx_pt_fill_int.h>

#include <signal.h>


#define NGX_PT_FILL_POLL       10          /* ms: a mirror's pace */
#define NGX_PT_FILL_KEEP       3600000     /* ms a running fill is shown */
#define NGX_PT_FILL_KEEP_END   60000       /* ms its end is */


static void ngx_pt_fill_index(ngx_pt_fill_t *fill);
static ngx_int_t ngx_pt_fill_mirror(ngx_pt_fill_t *fill,
    ngx_pt_shm_fill_t *sh);
static void ngx_pt_fill_poll(ngx_event_t *ev);
static void ngx_pt_fill_follow(ngx_pt_fill_t *fill, ngx_pt_shm_fill_t *sh);
static u_char *ngx_pt_fill_key_print(u_char *buf, ngx_str_t *repo,
    ngx_str_t *digest);


/* "<repo>\n<digest>": a fill's state in the shared zone */

static u_char *
ngx_pt_fill_key_print(u_char *buf, ngx_str_t *repo, ngx_str_t *digest)
{
    return ngx_sprintf(buf, "%V\n%V", repo, digest);
}


ngx_int_t
ngx_pt_fill_key(ngx_pt_fill_t *fill)
{
    fill->key.data = ngx_pnalloc(fill->pool, 1 + fill->repo.len
                                             + fill->digest.full.len);
    if (fill->key.data == NULL) {
        return NGX_ERROR;
    }

    fill->key.len = ngx_pt_fill_key_print(fill->key.data, &fill->repo,
                                          &fill->digest.full)
                    - fill->key.data;

    return NGX_OK;
}


/* which repository's fill fetches the digest, for the other repositories */

static void
ngx_pt_fill_index(ngx_pt_fill_t *fill)
{
    ngx_pt_shm_blob_t  idx;

    if (fill->repo.len > NGX_PT_SHM_REPO_MAX) {
        return;
    }

    idx.pid = ngx_pid;
    idx.seq = fill->seq;
    idx.repo_len = fill->repo.len;
    ngx_memcpy(idx.repo, fill->repo.data, fill->repo.len);

    ngx_pt_shm_blob_set(&fill->digest.full, &idx, NGX_PT_FILL_KEEP);
}


/*
 * The fill's key in the shared zone: either it is the first to fetch the
 * blob for the repository (NGX_OK: it publishes its state from now on), or
 * a live fill of another worker has it (NGX_DONE: this one becomes its
 * mirror, reading that worker's temp file as it grows, and its own temp
 * file goes).
 */

ngx_int_t
ngx_pt_fill_claim(ngx_pt_fill_t *fill)
{
    ngx_pt_shm_fill_t   sh, mine;

    ngx_memzero(&mine, sizeof(ngx_pt_shm_fill_t));
    mine.pid = ngx_pid;
    mine.seq = fill->seq;
    mine.state = NGX_PT_FILL_RUNNING;
    mine.expected = -1;

    if (ngx_pt_shm_fill_claim(&fill->key, &mine, NGX_PT_FILL_KEEP))
    {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, fill->log, 0,
                       "pullthrough fill: %V claimed in the shared zone",
                       &fill->digest.full);

        fill->shared = 1;
        ngx_pt_fill_index(fill);
        return NGX_OK;
    }

    if (ngx_pt_shm_fill_get(&fill->key, &sh) == NGX_OK) {
        switch (ngx_pt_fill_mirror(fill, &sh)) {

        case NGX_OK:
            return NGX_DONE;

        case NGX_ERROR:
            return NGX_ERROR;

        default: /* NGX_DECLINED */
            break;
        }
    }

    /* a fill that ended, or whose worker is gone: fetched here */

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, fill->log, 0,
                   "pullthrough fill: %V claimed in the shared zone over "
                   "an ended fill", &fill->digest.full);

    ngx_pt_shm_fill_set(&fill->key, &mine, NGX_PT_FILL_KEEP);
    fill->shared = 1;

    ngx_pt_fill_index(fill);

    return NGX_OK;
}


/* whether a live fill of the digest runs in any worker (the cache
 * manager leaves its file alone) */

ngx_uint_t
ngx_pt_fill_busy(ngx_str_t *digest)
{
    u_char              buf[NGX_PT_SHM_REPO_MAX + 1 + NGX_PT_DIGEST_MAX];
    ngx_str_t           key, repo;
    ngx_pt_shm_blob_t   idx;
    ngx_pt_shm_fill_t   sh;

    if (digest->len > NGX_PT_DIGEST_MAX
        || ngx_pt_shm_blob_get(digest, &idx) != NGX_OK)
    {
        return 0;
    }

    repo.data = idx.repo;
    repo.len = idx.repo_len;

    key.data = buf;
    key.len = ngx_pt_fill_key_print(buf, &repo, digest) - buf;

    return ngx_pt_shm_fill_get(&key, &sh) == NGX_OK
           && sh.pid == idx.pid && sh.seq == idx.seq
           && (sh.state == NGX_PT_FILL_RUNNING
               || sh.state == NGX_PT_FILL_COMMIT)
           && kill(sh.pid, 0) == 0;
}


/*
 * A live fill of digest d for another repository than repo: in this
 * worker, or one of another worker, which this worker then follows (out
 * NULL: only whether there is one). The caller has the upstream confirm
 * that repo has the blob before its client reads it (ngx_pt_fill_also()).
 */

ngx_int_t
ngx_pt_fill_other(ngx_str_t *repo, ngx_pt_digest_t *d, ngx_pt_fill_t **out)
{
    u_char              buf[NGX_PT_SHM_REPO_MAX + 1 + NGX_PT_DIGEST_MAX];
    ngx_int_t           rc;
    ngx_str_t           key, other;
    ngx_queue_t        *q;
    ngx_pt_fill_t      *fill;
    ngx_pt_shm_blob_t   idx;
    ngx_pt_shm_fill_t   sh;

    for (q = ngx_queue_head(&ngx_pt_fills);
         q != ngx_queue_sentinel(&ngx_pt_fills);
         q = ngx_queue_next(q))
    {
        fill = ngx_queue_data(q, ngx_pt_fill_t, queue);

        if (ngx_pt_fill_live(fill)
            && fill->digest.full.len == d->full.len
            && ngx_strncmp(fill->digest.full.data, d->full.data,
                           d->full.len) == 0
            && (fill->repo.len != repo->len
                || ngx_strncmp(fill->repo.data, repo->data, repo->len) != 0))
        {
            if (out) {
                *out = fill;
            }

            return NGX_OK;
        }
    }

    /* another worker's: the index names its repository, then its state */

    if (d->full.len > NGX_PT_DIGEST_MAX
        || ngx_pt_shm_blob_get(&d->full, &idx) != NGX_OK
        || idx.pid == ngx_pid
        || (idx.repo_len == repo->len
            && ngx_strncmp(idx.repo, repo->data, repo->len) == 0))
    {
        return NGX_DECLINED;
    }

    other.data = idx.repo;
    other.len = idx.repo_len;

    key.data = buf;
    key.len = ngx_pt_fill_key_print(buf, &other, &d->full) - buf;

    if (ngx_pt_shm_fill_get(&key, &sh) != NGX_OK
        || sh.pid != idx.pid || sh.seq != idx.seq
        || (sh.state != NGX_PT_FILL_RUNNING && sh.state != NGX_PT_FILL_COMMIT)
        || kill(sh.pid, 0) != 0)
    {
        return NGX_DECLINED;
    }

    if (out == NULL) {
        return NGX_OK;
    }

    fill = ngx_pt_fill_new(&other, d);
    if (fill == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_pt_fill_mirror(fill, &sh);

    if (rc != NGX_OK) {
        ngx_destroy_pool(fill->pool);
        return rc;
    }

    ngx_queue_insert_tail(&ngx_pt_fills, &fill->queue);
    *out = fill;

    return NGX_OK;
}


/*
 * Makes fill (its own temp file open, or none) the mirror of the live fill
 * of another worker that sh describes: NGX_DECLINED when there is none.
 */

static ngx_int_t
ngx_pt_fill_mirror(ngx_pt_fill_t *fill, ngx_pt_shm_fill_t *sh)
{
    ngx_fd_t    fd;
    ngx_str_t   other;

    if (sh->pid == ngx_pid
        || (sh->state != NGX_PT_FILL_RUNNING
            && sh->state != NGX_PT_FILL_COMMIT)
        || kill(sh->pid, 0) != 0)
    {
        return NGX_DECLINED;
    }

    if (ngx_pt_blob_temp(fill->pool, sh->pid, sh->seq, "fill", &other)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    fd = ngx_open_file(other.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        /* renamed into place just now, maybe: the final file then */
        if (ngx_pt_shm_fill_get(&fill->key, sh) == NGX_OK
            && sh->state == NGX_PT_FILL_DONE)
        {
            fd = ngx_open_file(fill->path.data, NGX_FILE_RDONLY,
                               NGX_FILE_OPEN, 0);
        }

        if (fd == NGX_INVALID_FILE) {
            return NGX_DECLINED;
        }
    }

    if (fill->fd != NGX_INVALID_FILE) {
        ngx_close_file(fill->fd);
        (void) ngx_delete_file(fill->temp.data);
    }

    fill->fd = fd;
    fill->temp = other;
    fill->mirror = 1;
    fill->owner = sh->pid;
    fill->seq = sh->seq;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, fill->log, 0,
                   "pullthrough fill: %V mirrors the fill of worker %P",
                   &fill->digest.full, sh->pid);

    fill->poll.handler = ngx_pt_fill_poll;
    fill->poll.data = fill;
    fill->poll.log = fill->log;
    fill->poll.cancelable = 1;

    /* an end, if any, at the first poll: readers attach first */
    if (sh->state != NGX_PT_FILL_DONE) {
        ngx_pt_fill_follow(fill, sh);
    }

    ngx_add_timer(&fill->poll, NGX_PT_FILL_POLL);

    return NGX_OK;
}


void
ngx_pt_fill_publish(ngx_pt_fill_t *fill)
{
    ngx_pt_shm_fill_t  sh;

    if (!fill->shared) {
        return;
    }

    ngx_memzero(&sh, sizeof(ngx_pt_shm_fill_t));

    sh.pid = ngx_pid;
    sh.seq = fill->seq;
    sh.state = fill->state;
    sh.header = fill->header;
    sh.expected = fill->expected;
    sh.written = fill->written;
    sh.error_status = fill->error_status;
    sh.bad_digest = (fill->error_code != NULL);

    ngx_pt_shm_fill_set(&fill->key, &sh,
                        (sh.state == NGX_PT_FILL_DONE
                         || sh.state == NGX_PT_FILL_FAILED)
                        ? NGX_PT_FILL_KEEP_END : NGX_PT_FILL_KEEP);
}


/* a mirror: what the filling worker has published, every few ms */

static void
ngx_pt_fill_poll(ngx_event_t *ev)
{
    ngx_pt_fill_t *fill = ev->data;

    ngx_file_info_t      fi, mine;
    ngx_pt_shm_fill_t  sh;

    if (ngx_queue_empty(&fill->readers) && fill->also == NULL) {
        /* nobody follows it any more, nothing to record at its end */

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, fill->log, 0,
                       "pullthrough fill: %V of worker %P no longer "
                       "followed: abandoned", &fill->digest.full,
                       fill->owner);

        fill->state = NGX_PT_FILL_FAILED;
        ngx_queue_remove(&fill->queue);
        ngx_pt_fill_unref(fill);
        return;
    }

    if (ngx_pt_shm_fill_get(&fill->key, &sh) != NGX_OK
        || sh.pid != fill->owner || sh.seq != fill->seq)
    {
        /*
         * Its entry is gone (expired, or evicted from a full zone: the
         * filling worker writes it again at its next write). The store
         * tells whether it ended well; a minute without it, it did not.
         */

        if (fill->missing == 0) {
            ngx_log_debug2(NGX_LOG_DEBUG_HTTP, fill->log, 0,
                           "pullthrough fill: %V of worker %P: its entry "
                           "is gone", &fill->digest.full, fill->owner);

            fill->missing = ngx_current_msec;
        }

        ngx_memzero(&sh, sizeof(ngx_pt_shm_fill_t));

        if (ngx_file_info(fill->path.data, &fi) != NGX_FILE_ERROR
            && ngx_fd_info(fill->fd, &mine) != NGX_FILE_ERROR
            && ngx_file_uniq(&fi) == ngx_file_uniq(&mine))
        {
            /* the very file it followed, renamed into place: verified */
            sh.state = NGX_PT_FILL_DONE;
            sh.header = 1;
            sh.written = ngx_file_size(&fi);
            sh.expected = sh.written;

        } else if (ngx_current_msec - fill->missing < NGX_PT_FILL_KEEP_END
                   && kill(fill->owner, 0) == 0)
        {
            ngx_add_timer(&fill->poll, NGX_PT_FILL_POLL);
            return;

        } else {
            sh.state = NGX_PT_FILL_FAILED;
            sh.error_status = NGX_HTTP_BAD_GATEWAY;
        }

    } else {
        fill->missing = 0;

        if ((sh.state == NGX_PT_FILL_RUNNING
             || sh.state == NGX_PT_FILL_COMMIT)
            && kill(fill->owner, 0) == -1 && ngx_errno == NGX_ESRCH)
        {
            ngx_log_error(NGX_LOG_ERR, fill->log, 0,
                          "pullthrough: worker %P died filling blob %V",
                          fill->owner, &fill->digest.full);

            sh.state = NGX_PT_FILL_FAILED;
            sh.error_status = NGX_HTTP_BAD_GATEWAY;
            sh.bad_digest = 0;
        }
    }

    ngx_pt_fill_follow(fill, &sh);

    /* a timer, as a task's completion: readers' posted requests run here */
    fill->in_task = 1;

    if (fill->state == NGX_PT_FILL_RUNNING) {
        ngx_pt_fill_notify(fill);
        fill->in_task = 0;
        ngx_add_timer(&fill->poll, NGX_PT_FILL_POLL);
        return;
    }

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, fill->log, 0,
                   "pullthrough fill: %V of worker %P followed to its end: "
                   "%s, %O bytes", &fill->digest.full, fill->owner,
                   fill->state == NGX_PT_FILL_DONE ? "stored" : "failed",
                   fill->written);

    ngx_queue_remove(&fill->queue);

    if (fill->state == NGX_PT_FILL_DONE) {
        ngx_pt_fill_record_also(fill);
    }

    ngx_pt_fill_notify(fill);
    fill->in_task = 0;

    /* the reference the mirror held while it followed */
    ngx_pt_fill_unref(fill);
}


/* a mirror takes the state of the fill it follows */

static void
ngx_pt_fill_follow(ngx_pt_fill_t *fill, ngx_pt_shm_fill_t *sh)
{
    fill->header = sh->header;
    fill->expected = sh->expected;
    fill->written = sh->written;
    fill->error_status = sh->error_status;
    fill->error_code = sh->bad_digest ? "BLOB_UNKNOWN" : NULL;

    fill->state = (sh->state == NGX_PT_FILL_DONE
                   || sh->state == NGX_PT_FILL_FAILED)
                  ? sh->state : NGX_PT_FILL_RUNNING;
}
