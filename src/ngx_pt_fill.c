
/*
 * ngx_pullthrough: a blob fill, the worker's download of a blob from
 * upstream into the store. Upstream bytes are copied into two fill-owned
 * buffers, hashed and written to a temp file by a thread pool task, one
 * task at a time, and the file is renamed into place only when its length
 * and digest match. Clients read the temp file as it grows
 * (ngx_pt_reader.c); the last byte waits for the verdict, so a client
 * never receives a complete, wrong blob. A fill belongs to the worker, not
 * to a request: it has its own pool and a reference count held by its
 * exchange, by a task in flight and by each reader. Other workers follow
 * it through the shared zone (ngx_pt_fill_share.c).
 */


#include <ngx_pt.h>
#include <ngx_pt_fill_int.h>
#include <ngx_pt_fetch.h>
#include <ngx_pt_settings.h>
#include <ngx_pt_metrics.h>

#include <sys/file.h>


static ngx_int_t ngx_pt_fill_open(ngx_pt_fill_t *fill,
    ngx_http_request_t *r);
static ngx_int_t ngx_pt_fill_buffers(ngx_pt_fill_t *fill,
    ngx_http_request_t *r);
static ngx_int_t ngx_pt_fill_exchange(ngx_pt_fill_t *fill,
    ngx_http_request_t *r, ngx_pt_settings_t *s, ngx_str_t *url);
static void ngx_pt_fill_discard(ngx_pt_fill_t *fill);
static void ngx_pt_fill_keep(ngx_event_t *ev);
static ngx_int_t ngx_pt_fill_header(ngx_pt_fetch_t *f);
static ngx_int_t ngx_pt_fill_body(ngx_pt_fetch_t *f, ngx_chain_t *in);
static ngx_int_t ngx_pt_fill_drain(ngx_pt_fill_t *fill);
static ngx_int_t ngx_pt_fill_post_write(ngx_pt_fill_t *fill);
static ngx_int_t ngx_pt_fill_post(ngx_pt_fill_t *fill,
    void (*handler)(void *data, ngx_log_t *log),
    void (*done)(ngx_pt_fill_t *fill));
static void ngx_pt_fill_task_done(ngx_event_t *ev);
static void ngx_pt_fill_write_thread(void *data, ngx_log_t *log);
static void ngx_pt_fill_write_done(ngx_pt_fill_t *fill);
static void ngx_pt_fill_upstream_done(ngx_pt_fetch_t *f, ngx_int_t rc);
static void ngx_pt_fill_aborted(ngx_pt_fetch_t *f);
static void ngx_pt_fill_commit(ngx_pt_fill_t *fill);
static void ngx_pt_fill_commit_thread(void *data, ngx_log_t *log);
static void ngx_pt_fill_inspect(ngx_pt_fill_task_ctx_t *ctx, ngx_log_t *log);
static void ngx_pt_fill_commit_done(ngx_pt_fill_t *fill);
static void ngx_pt_fill_uncount(ngx_pt_fill_t *fill, ngx_uint_t failed);
static void ngx_pt_fill_disk_error(ngx_pt_fill_t *fill, ngx_err_t err,
    const char *what);
static void ngx_pt_fill_fail(ngx_pt_fill_t *fill, ngx_uint_t status,
    const char *code);


ngx_queue_t         ngx_pt_fills;
ngx_pt_fill_ops_t  *ngx_pt_fill_ops;


void
ngx_pt_fill_init_process(ngx_pt_fill_ops_t *ops)
{
    ngx_queue_init(&ngx_pt_fills);
    ngx_pt_fill_ops = ops;
}


/* a live fill of the worker's own for repo and digest d */

ngx_pt_fill_t *
ngx_pt_fill_find(ngx_str_t *repo, ngx_pt_digest_t *d)
{
    ngx_queue_t    *q;
    ngx_pt_fill_t  *fill;

    for (q = ngx_queue_head(&ngx_pt_fills);
         q != ngx_queue_sentinel(&ngx_pt_fills);
         q = ngx_queue_next(q))
    {
        fill = ngx_queue_data(q, ngx_pt_fill_t, queue);

        if (ngx_pt_fill_live(fill)
            && fill->repo.len == repo->len
            && ngx_strncmp(fill->repo.data, repo->data, repo->len) == 0
            && fill->digest.full.len == d->full.len
            && ngx_strncmp(fill->digest.full.data, d->full.data,
                           d->full.len) == 0)
        {
            return fill;
        }
    }

    return NULL;
}


/* a fill of repo and digest d, with nothing running yet */

ngx_pt_fill_t *
ngx_pt_fill_new(ngx_str_t *repo, ngx_pt_digest_t *d)
{
    u_char         *p;
    ngx_pool_t     *pool;
    ngx_pt_fill_t  *fill;

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        return NULL;
    }

    fill = ngx_pcalloc(pool, sizeof(ngx_pt_fill_t));
    if (fill == NULL) {
        goto failed;
    }

    fill->pool = pool;
    fill->log = ngx_cycle->log;
    fill->refs = 1;
    fill->fd = NGX_INVALID_FILE;
    fill->expected = -1;
    ngx_queue_init(&fill->readers);

    /* copies: the fill may outlive the request */

    fill->repo.data = ngx_pstrdup(pool, repo);
    fill->repo.len = repo->len;

    p = ngx_pnalloc(pool, d->full.len);
    if (fill->repo.data == NULL || p == NULL) {
        goto failed;
    }

    ngx_memcpy(p, d->full.data, d->full.len);
    fill->digest = *d;
    fill->digest.full.data = p;
    fill->digest.alg.data = p;
    fill->digest.hex.data = p + 7;

    if (ngx_pt_blob_path(pool, &fill->digest, &fill->path) != NGX_OK
        || ngx_pt_fill_key(fill) != NGX_OK)
    {
        goto failed;
    }

    return fill;

failed:

    ngx_destroy_pool(pool);

    return NULL;
}


/* starts fetching a blob into the store on behalf of request r */

ngx_pt_fill_t *
ngx_pt_fill_create(ngx_http_request_t *r, ngx_str_t *repo, ngx_pt_digest_t *d,
    ngx_pt_settings_t *s, ngx_str_t *url, ngx_uint_t *joined)
{
    ngx_pt_fill_t  *fill;

    *joined = 0;

    fill = ngx_pt_fill_new(repo, d);
    if (fill == NULL) {
        return NULL;
    }

    if (ngx_pt_fill_open(fill, r) != NGX_OK) {
        goto failed;
    }

    /* another worker fetching it already: its clients follow that fill */

    switch (ngx_pt_fill_claim(fill)) {

    case NGX_DONE:
        /* ngx_pt_fill_mirror() told which worker's fill it follows */
        *joined = 1;
        ngx_queue_insert_tail(&ngx_pt_fills, &fill->queue);
        return fill;

    case NGX_ERROR:
        goto failed;

    default: /* NGX_OK */
        break;
    }

    if (ngx_pt_fill_buffers(fill, r) != NGX_OK
        || ngx_pt_fill_exchange(fill, r, s, url) != NGX_OK)
    {
        goto failed;
    }

    ngx_queue_insert_tail(&ngx_pt_fills, &fill->queue);

    fill->counted = 1;
    ngx_pt_shm_stat_add(NGX_PT_STAT_FILLS, 1);

    /*
     * A graceful shutdown (nginx -s reload, quit) waits for non-cancelable
     * timers: this one holds the worker until the fill is committed or
     * failed, as nginx holds it for requests in flight.
     */

    fill->keep.handler = ngx_pt_fill_keep;
    fill->keep.data = fill;
    fill->keep.log = fill->log;
    ngx_add_timer(&fill->keep, NGX_PT_FILL_HOLD);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, fill->log, 0,
                   "pullthrough fill: %V for \"%V\" created, \"%s\"",
                   &fill->digest.full, &fill->repo, fill->temp.data);

    return fill;

failed:

    ngx_pt_fill_discard(fill);

    return NULL;
}


/* the temp file, created and locked: its lock tells it is in use */

static ngx_int_t
ngx_pt_fill_open(ngx_pt_fill_t *fill, ngx_http_request_t *r)
{
    fill->seq = ngx_pt_blob_seq();

    if (ngx_pt_blob_temp(fill->pool, ngx_pid, fill->seq, "fill", &fill->temp)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    fill->fd = ngx_open_file(fill->temp.data, NGX_FILE_RDWR,
                             NGX_FILE_CREATE_OR_OPEN|O_EXCL,
                             NGX_FILE_DEFAULT_ACCESS);
    if (fill->fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_CRIT, r->connection->log, ngx_errno,
                      ngx_open_file_n " \"%s\" failed", fill->temp.data);
        return NGX_ERROR;
    }

    (void) flock(fill->fd, LOCK_EX|LOCK_NB);

    return NGX_OK;
}


/* the digest context, the two buffers and the task of a filling fill */

static ngx_int_t
ngx_pt_fill_buffers(ngx_pt_fill_t *fill, ngx_http_request_t *r)
{
    ngx_pt_fill_task_ctx_t           *ctx;
    ngx_http_pullthrough_loc_conf_t  *plcf;

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_pullthrough_module);

    fill->tp = plcf->thread_pool;

    fill->md = EVP_MD_CTX_new();
    if (fill->md == NULL
        || EVP_DigestInit_ex(fill->md, fill->digest.md, NULL) != 1)
    {
        return NGX_ERROR;
    }

    fill->cur = ngx_create_temp_buf(fill->pool, plcf->fill_buffer_size);
    fill->other = ngx_create_temp_buf(fill->pool, plcf->fill_buffer_size);

    fill->task = ngx_thread_task_alloc(fill->pool,
                                       sizeof(ngx_pt_fill_task_ctx_t));

    if (fill->cur == NULL || fill->other == NULL || fill->task == NULL) {
        return NGX_ERROR;
    }

    ctx = fill->task->ctx;
    ctx->fill = fill;

    return NGX_OK;
}


/* the exchange, on behalf of r, with the remote's settings copied */

static ngx_int_t
ngx_pt_fill_exchange(ngx_pt_fill_t *fill, ngx_http_request_t *r,
    ngx_pt_settings_t *s, ngx_str_t *url)
{
    ngx_pt_fetch_t  *f;

    f = &fill->fetch;

    s = ngx_pt_settings_copy(fill->pool, s);

    if (s == NULL || ngx_pt_fetch_init(f, r, fill->pool, s, url) != NGX_OK) {
        return NGX_ERROR;
    }

    f->log = fill->log;
    ngx_str_set(&f->accept, "*/*");

    f->header_handler = ngx_pt_fill_header;
    f->body_handler = ngx_pt_fill_body;
    f->done = ngx_pt_fill_upstream_done;
    f->aborted = ngx_pt_fill_aborted;
    f->data = fill;

    return ngx_pt_fetch_start(f);
}


static void
ngx_pt_fill_keep(ngx_event_t *ev)
{
    ngx_pt_fill_t *fill = ev->data;

    if (ngx_pt_fill_live(fill)) {
        ngx_add_timer(ev, NGX_PT_FILL_HOLD);
    }
}


/* a fill that could not start: what it made goes */

static void
ngx_pt_fill_discard(ngx_pt_fill_t *fill)
{
    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, fill->log, 0,
                   "pullthrough fill: %V could not start: discarded",
                   &fill->digest.full);

    if (fill->fetch.settings) {
        ngx_pt_fetch_detach(&fill->fetch);
    }

    if (fill->md) {
        EVP_MD_CTX_free(fill->md);
    }

    if (fill->fd != NGX_INVALID_FILE) {
        ngx_close_file(fill->fd);
        ngx_delete_file(fill->temp.data);
    }

    if (fill->shared) {
        fill->state = NGX_PT_FILL_FAILED;
        fill->error_status = NGX_HTTP_INTERNAL_SERVER_ERROR;
        ngx_pt_fill_publish(fill);
    }

    ngx_destroy_pool(fill->pool);
}


static ngx_int_t
ngx_pt_fill_header(ngx_pt_fetch_t *f)
{
    ngx_pt_fill_t *fill = f->data;

    fill->header = 1;
    fill->expected = f->length;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, fill->log, 0,
                   "pullthrough fill: %V upstream header, length %O",
                   &fill->digest.full, fill->expected);

    ngx_pt_fill_publish(fill);
    ngx_pt_fill_notify(fill);

    return NGX_OK;
}


static ngx_int_t
ngx_pt_fill_body(ngx_pt_fetch_t *f, ngx_chain_t *in)
{
    ngx_pt_fill_t *fill = f->data;

    ngx_chain_t  *cl, **ll;

    if (fill->state != NGX_PT_FILL_RUNNING) {
        return NGX_ERROR;
    }

    for (ll = &fill->pending; *ll; ll = &(*ll)->next) { /* void */ }


    for ( /* void */ ; in; in = in->next) {
        if (!ngx_buf_in_memory(in->buf) || ngx_buf_size(in->buf) == 0) {
            continue;
        }

        cl = ngx_chain_get_free_buf(fill->pool, &fill->free);
        if (cl == NULL) {
            ngx_pt_fill_fail(fill, NGX_HTTP_INTERNAL_SERVER_ERROR, NULL);
            return NGX_ERROR;
        }

        /* only the pointer is kept: upstream keeps the buffer busy */
        cl->buf = in->buf;
        *ll = cl;
        ll = &cl->next;
    }

    if (ngx_pt_fill_drain(fill) != NGX_OK) {
        /* the fetch stops: ngx_pt_fetch_body_filter() ends it */
        ngx_pt_fill_fail(fill, NGX_HTTP_BAD_GATEWAY, NULL);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Copies pending upstream bytes into the fill buffers. When both are busy
 * the rest stays unconsumed, which stops upstream reads: memory is bounded
 * by two fill buffers and the proxy buffer.
 */

static ngx_int_t
ngx_pt_fill_drain(ngx_pt_fill_t *fill)
{
    size_t        n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    while (fill->pending) {
        b = fill->pending->buf;

        n = ngx_min((size_t) (b->last - b->pos),
                    (size_t) (fill->cur->end - fill->cur->last));

        if (n == 0 && b->pos < b->last) {

            if (fill->busy) {
                if (!fill->blocked) {
                    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, fill->log, 0,
                                   "pullthrough fill: %V buffers full, "
                                   "upstream waits at %O bytes",
                                   &fill->digest.full, fill->received);
                }

                fill->blocked = 1;
                return NGX_OK;
            }

            if (ngx_pt_fill_post_write(fill) != NGX_OK) {
                return NGX_ERROR;
            }

            continue;
        }

        fill->cur->last = ngx_cpymem(fill->cur->last, b->pos, n);
        b->pos += n;
        fill->received += n;

        if (fill->expected >= 0 && fill->received > fill->expected) {
            ngx_log_error(NGX_LOG_ERR, fill->log, 0,
                          "pullthrough: upstream sent more than %O bytes "
                          "of blob %V", fill->expected, &fill->digest.full);
            return NGX_ERROR;
        }

        if (b->pos == b->last) {
            cl = fill->pending;
            fill->pending = cl->next;
            cl->buf = NULL;
            cl->next = fill->free;
            fill->free = cl;
        }
    }

    fill->blocked = 0;

    if (!fill->busy && fill->cur->last > fill->cur->pos) {
        return ngx_pt_fill_post_write(fill);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_pt_fill_post_write(ngx_pt_fill_t *fill)
{
    ngx_buf_t               *b;
    ngx_pt_fill_task_ctx_t  *ctx;

    b = fill->cur;
    fill->cur = fill->other;
    fill->other = b;

    ctx = fill->task->ctx;
    ctx->data = b->pos;
    ctx->len = b->last - b->pos;
    ctx->offset = fill->written;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, fill->log, 0,
                   "pullthrough fill: %V %uz bytes at %O to a thread",
                   &fill->digest.full, ctx->len, ctx->offset);

    return ngx_pt_fill_post(fill, ngx_pt_fill_write_thread,
                            ngx_pt_fill_write_done);
}


/*
 * The fill's task to the thread pool, one at a time: a task in flight holds
 * a reference, and done() runs in the event loop once it has run.
 */

static ngx_int_t
ngx_pt_fill_post(ngx_pt_fill_t *fill,
    void (*handler)(void *data, ngx_log_t *log),
    void (*done)(ngx_pt_fill_t *fill))
{
    ngx_pt_fill_task_ctx_t  *ctx;

    ctx = fill->task->ctx;
    ctx->err = 0;
    ctx->done = done;

    fill->task->handler = handler;
    fill->task->event.handler = ngx_pt_fill_task_done;
    fill->task->event.data = ctx;

    if (ngx_thread_task_post(fill->tp, fill->task) != NGX_OK) {
        return NGX_ERROR;
    }

    fill->busy = 1;
    fill->refs++;

    return NGX_OK;
}


static void
ngx_pt_fill_task_done(ngx_event_t *ev)
{
    ngx_pt_fill_task_ctx_t *ctx = ev->data;

    ngx_pt_fill_t  *fill;

    fill = ctx->fill;
    fill->busy = 0;
    fill->in_task = 1;

    ctx->done(fill);

    fill->in_task = 0;

    /* the task's reference */
    ngx_pt_fill_unref(fill);
}


/* in a pool thread: hash, then write, the bytes of one buffer */

static void
ngx_pt_fill_write_thread(void *data, ngx_log_t *log)
{
    ngx_pt_fill_task_ctx_t *ctx = data;

    u_char   *p;
    size_t    len;
    off_t     offset;
    ssize_t   n;

    if (EVP_DigestUpdate(ctx->fill->md, ctx->data, ctx->len) != 1) {
        ctx->err = NGX_EINVAL;
        return;
    }

    p = ctx->data;
    len = ctx->len;
    offset = ctx->offset;

    while (len) {
        n = pwrite(ctx->fill->fd, p, len, offset);

        if (n == -1) {
            if (ngx_errno == NGX_EINTR) {
                continue;
            }

            ctx->err = ngx_errno;
            return;
        }

        p += n;
        len -= n;
        offset += n;
    }

#if (NGX_LINUX)
    /* start writeback now, so that the fsync() of the commit is short */
    (void) sync_file_range(ctx->fill->fd, ctx->offset, ctx->len,
                           SYNC_FILE_RANGE_WRITE);
#endif
}


static void
ngx_pt_fill_write_done(ngx_pt_fill_t *fill)
{
    ngx_pt_fill_task_ctx_t  *ctx;

    ctx = fill->task->ctx;

    if (fill->state != NGX_PT_FILL_RUNNING) {
        return;
    }

    if (ctx->err) {
        ngx_pt_fill_disk_error(fill, ctx->err, "writing");
        ngx_pt_fill_fail(fill, NGX_HTTP_INTERNAL_SERVER_ERROR, NULL);
        return;
    }

    fill->written += ctx->len;
    fill->other->pos = fill->other->start;
    fill->other->last = fill->other->start;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, fill->log, 0,
                   "pullthrough fill: %V %uz bytes written, %O in all",
                   &fill->digest.full, ctx->len, fill->written);

    ngx_pt_fill_publish(fill);
    ngx_pt_fill_notify(fill);

    if (fill->pending && ngx_pt_fetch_running(&fill->fetch)) {
        /* the upstream waits for room: copy, then let it read on */

        if (ngx_pt_fill_drain(fill) != NGX_OK) {
            ngx_pt_fill_fail(fill, NGX_HTTP_INTERNAL_SERVER_ERROR, NULL);
            return;
        }

        if (!fill->blocked) {
            /* the upstream runs its own connection's posted requests */
            fill->in_task = 0;

            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, fill->log, 0,
                           "pullthrough fill: %V room again, upstream "
                           "resumed", &fill->digest.full);

            ngx_pt_fetch_resume(&fill->fetch);
        }

    } else if (fill->cur->last > fill->cur->pos) {
        if (ngx_pt_fill_post_write(fill) != NGX_OK) {
            ngx_pt_fill_fail(fill, NGX_HTTP_INTERNAL_SERVER_ERROR, NULL);
        }

    } else if (fill->upstream_done) {
        ngx_pt_fill_commit(fill);
    }
}


static void
ngx_pt_fill_upstream_done(ngx_pt_fetch_t *f, ngx_int_t rc)
{
    ngx_pt_fill_t *fill = f->data;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, fill->log, 0,
                   "pullthrough fill: %V upstream done: %i, %O bytes",
                   &fill->digest.full, rc, fill->received);

    /* readers released meanwhile know whether nginx ends the request */
    fill->in_post = f->in_post;

    if (fill->state != NGX_PT_FILL_RUNNING) {
        /*
         * Failed earlier (a full disk): the request that carried the
         * exchange waited for its end, which a transfer stopped between
         * two libcurl steps reaches only now. It is released.
         */
        ngx_pt_fill_notify(fill);
        fill->in_post = 0;
        ngx_pt_fill_unref(fill);
        return;
    }

    fill->pending = NULL;

    if (!f->header) {
        /* no response at all: refused, unreachable, timed out */
        ngx_log_error(NGX_LOG_ERR, fill->log, 0,
                      "pullthrough: fetching blob %V from \"%V\" failed",
                      &fill->digest.full, &f->url);

        ngx_pt_fill_fail(fill, rc == NGX_HTTP_GATEWAY_TIME_OUT
                               ? NGX_HTTP_GATEWAY_TIME_OUT
                               : NGX_HTTP_BAD_GATEWAY, NULL);

    } else if (f->status != NGX_HTTP_OK) {
        ngx_log_error(NGX_LOG_ERR, fill->log, 0,
                      "pullthrough: upstream answered %ui for blob %V "
                      "(\"%V\")", f->status, &fill->digest.full, &f->url);

        /* the upstream's 5xx is a bad gateway to clients, not our 500 */
        ngx_pt_fill_fail(fill, f->status >= NGX_HTTP_INTERNAL_SERVER_ERROR
                               ? NGX_HTTP_BAD_GATEWAY : f->status, NULL);

    } else if (rc != NGX_OK
               || (fill->expected >= 0 && fill->received != fill->expected))
    {
        ngx_log_error(NGX_LOG_ERR, fill->log, 0,
                      "pullthrough: blob %V from \"%V\" is incomplete: "
                      "%O of %O bytes", &fill->digest.full, &f->url,
                      fill->received, fill->expected);

        ngx_pt_fill_fail(fill, NGX_HTTP_BAD_GATEWAY, NULL);

    } else {
        fill->upstream_done = 1;
        fill->expected = fill->received;

        if (!fill->busy) {
            if (fill->cur->last > fill->cur->pos) {
                if (ngx_pt_fill_post_write(fill) != NGX_OK) {
                    ngx_pt_fill_fail(fill, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                     NULL);
                }

            } else {
                ngx_pt_fill_commit(fill);
            }
        }
    }

    fill->in_post = 0;

    /* the fetch's reference */
    ngx_pt_fill_unref(fill);
}


static void
ngx_pt_fill_aborted(ngx_pt_fetch_t *f)
{
    ngx_pt_fill_t *fill = f->data;

    fill->pending = NULL;

    if (fill->state == NGX_PT_FILL_RUNNING) {
        ngx_log_error(NGX_LOG_ERR, fill->log, 0,
                      "pullthrough: fill of blob %V was aborted",
                      &fill->digest.full);
        ngx_pt_fill_fail(fill, NGX_HTTP_BAD_GATEWAY, NULL);
    }

    ngx_pt_fill_unref(fill);
}


static void
ngx_pt_fill_commit(ngx_pt_fill_t *fill)
{
    ngx_pt_fill_task_ctx_t  *ctx;

    fill->state = NGX_PT_FILL_COMMIT;

    ctx = fill->task->ctx;
    ctx->ok = 0;
    ctx->pool = NULL;
    ngx_str_null(&ctx->kept);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, fill->log, 0,
                   "pullthrough fill: %V complete, %O bytes: verdict and "
                   "commit to a thread", &fill->digest.full, fill->written);

    if (ngx_pt_fill_post(fill, ngx_pt_fill_commit_thread,
                         ngx_pt_fill_commit_done)
        != NGX_OK)
    {
        fill->state = NGX_PT_FILL_RUNNING;
        ngx_pt_fill_fail(fill, NGX_HTTP_INTERNAL_SERVER_ERROR, NULL);
    }
}


/* in a pool thread: the verdict, then rename into place or delete */

static void
ngx_pt_fill_commit_thread(void *data, ngx_log_t *log)
{
    ngx_pt_fill_task_ctx_t *ctx = data;

    u_char         hex[2 * EVP_MAX_MD_SIZE], md[EVP_MAX_MD_SIZE];
    unsigned int    n;
    ngx_pt_fill_t  *fill;

    fill = ctx->fill;

    if (EVP_DigestFinal_ex(fill->md, md, &n) != 1) {
        ctx->err = NGX_EINVAL;
        return;
    }

    ngx_hex_dump(hex, md, n);

    if (2 * n != fill->digest.hex.len
        || ngx_strncmp(hex, fill->digest.hex.data, 2 * n) != 0)
    {
        (void) ngx_delete_file(fill->temp.data);
        return;
    }

    /* the verdict: stored unless the store fails (ctx->err) */
    ctx->ok = 1;

    if (fsync(fill->fd) == -1) {
        ctx->err = ngx_errno;
        (void) ngx_delete_file(fill->temp.data);
        return;
    }

    ngx_pt_blob_mkdirs(fill->path.data);

    if (ngx_rename_file(fill->temp.data, fill->path.data) == NGX_FILE_ERROR) {
        ctx->err = ngx_errno;
        (void) ngx_delete_file(fill->temp.data);
        return;
    }

    ngx_pt_fill_inspect(ctx, log);
}


/*
 * In the commit thread, once stored: what the record keeps of the blob's
 * bytes (what an image config says), in a pool of the task's own, which
 * the completion destroys after the record.
 */

static void
ngx_pt_fill_inspect(ngx_pt_fill_task_ctx_t *ctx, ngx_log_t *log)
{
    ngx_pt_fill_t  *fill;

    fill = ctx->fill;

    if (ngx_pt_fill_ops->inspect == NULL) {
        return;
    }

    ctx->pool = ngx_create_pool(NGX_PT_FILL_KEEP_POOL, log);
    if (ctx->pool == NULL) {
        return;
    }

    if (ngx_pt_fill_ops->inspect(ctx->pool, log, fill->fd, fill->written,
                                 &ctx->kept)
        != NGX_OK)
    {
        ngx_str_null(&ctx->kept);
    }
}


static void
ngx_pt_fill_commit_done(ngx_pt_fill_t *fill)
{
    ngx_pt_fill_task_ctx_t  *ctx;

    ctx = fill->task->ctx;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, fill->log, 0,
                   "pullthrough fill: %V verdict: %s", &fill->digest.full,
                   ctx->ok ? "digest match"
                           : ctx->err ? "none, digest not computed"
                                      : "digest mismatch");

    if (ctx->err) {
        ngx_pt_fill_disk_error(fill, ctx->err, "storing");
        fill->state = NGX_PT_FILL_RUNNING;
        ngx_pt_fill_fail(fill, NGX_HTTP_INTERNAL_SERVER_ERROR, NULL);

    } else if (!ctx->ok) {
        ngx_pt_shm_stat_add(NGX_PT_STAT_DIGEST_MISMATCHES, 1);
        ngx_log_error(NGX_LOG_ERR, fill->log, 0,
                      "pullthrough: blob from \"%V\" does not match its "
                      "digest %V: discarded", &fill->fetch.url,
                      &fill->digest.full);
        fill->state = NGX_PT_FILL_RUNNING;
        ngx_pt_fill_fail(fill, NGX_HTTP_BAD_GATEWAY, "BLOB_UNKNOWN");

    } else {
        fill->state = NGX_PT_FILL_DONE;

        ngx_pt_fill_uncount(fill, 0);

        if (fill->fetch.settings) {
            ngx_pt_metrics_upstream(&fill->fetch.settings->remote_name,
                                    NGX_PT_METRICS_BYTES_ONLY, fill->written);
        }

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, fill->log, 0,
                       "pullthrough fill: %V committed: renamed into "
                       "place, %O bytes",
                       &fill->digest.full, fill->written);

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, fill->log, 0,
                       "pullthrough fill: %V keeps %uz bytes of what it says",
                       &fill->digest.full, ctx->kept.len);

        if (ngx_pt_fill_ops->record(fill->pool, fill->log, &fill->repo,
                                    &fill->digest.full, fill->written,
                                    &ctx->kept)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ALERT, fill->log, 0,
                          "pullthrough: blob %V stored but not recorded",
                          &fill->digest.full);
        }

        ngx_pt_fill_record_also(fill);

        ngx_queue_remove(&fill->queue);
        ngx_pt_fill_publish(fill);
        ngx_pt_fill_notify(fill);
    }

    if (ctx->pool) {
        ngx_destroy_pool(ctx->pool);
        ctx->pool = NULL;
    }
}


static void
ngx_pt_fill_fail(ngx_pt_fill_t *fill, ngx_uint_t status, const char *code)
{
    ngx_chain_t  *cl;

    if (fill->state == NGX_PT_FILL_FAILED) {
        return;
    }

    if (fill->state == NGX_PT_FILL_RUNNING) {
        ngx_queue_remove(&fill->queue);
    }

    ngx_log_debug5(NGX_LOG_DEBUG_HTTP, fill->log, 0,
                   "pullthrough fill: %V failed: %ui%s%s, abandoned at %O "
                   "bytes", &fill->digest.full, status, code ? " " : "",
                   code ? code : "", fill->written);

    fill->state = NGX_PT_FILL_FAILED;
    fill->error_status = status;
    fill->error_code = code;

    ngx_pt_fill_uncount(fill, 1);

    ngx_pt_fill_publish(fill);

    /* what the upstream waits on is released, and the upstream stopped */

    for (cl = fill->pending; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
    }

    fill->pending = NULL;

    if (ngx_pt_fetch_running(&fill->fetch) && fill->in_task) {
        ngx_pt_fetch_abort(&fill->fetch);
        ngx_pt_fetch_resume(&fill->fetch);
    }

    /* a write still in flight deletes nothing: the file goes now */

    if (!fill->busy) {
        (void) ngx_delete_file(fill->temp.data);
    }

    ngx_pt_fill_notify(fill);
}


/* a fill of this worker's has ended: out of fills in progress */

static void
ngx_pt_fill_uncount(ngx_pt_fill_t *fill, ngx_uint_t failed)
{
    if (!fill->counted) {
        return;
    }

    fill->counted = 0;
    ngx_pt_shm_stat_add(NGX_PT_STAT_FILLS, -1);

    if (failed) {
        ngx_pt_shm_stat_add(NGX_PT_STAT_FILL_FAILURES, 1);
    }
}


/*
 * Writing or storing the temp file failed. A full file system stops the
 * fill like any other failure (its temp file removed, its readers ended)
 * and asks the cache manager to evict now.
 */

static void
ngx_pt_fill_disk_error(ngx_pt_fill_t *fill, ngx_err_t err, const char *what)
{
    ngx_http_pullthrough_main_conf_t  *pmcf;

    if (err != NGX_ENOSPC) {
        ngx_log_error(NGX_LOG_CRIT, fill->log, err,
                      "pullthrough: %s \"%s\" failed", what,
                      fill->temp.data);
        return;
    }

    pmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_pullthrough_module);

    ngx_log_error(NGX_LOG_ALERT, fill->log, err,
                  "pullthrough: the store \"%V\" is full: %s \"%s\" "
                  "failed, the fill of %V stops and eviction starts",
                  pmcf ? &pmcf->path : &fill->temp, what, fill->temp.data,
                  &fill->digest.full);

    ngx_pt_shm_stat_add(NGX_PT_STAT_DISK_FULL, 1);
    ngx_pt_shm_stat_set(NGX_PT_STAT_EVICT_NOW, 1);
}


void
ngx_pt_fill_unref(ngx_pt_fill_t *fill)
{
    if (--fill->refs) {
        return;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, fill->log, 0,
                   "pullthrough fill: %V freed, state %ui%s",
                   &fill->digest.full, fill->state,
                   fill->mirror ? ", a mirror" : "");

    if (fill->state == NGX_PT_FILL_RUNNING) {
        ngx_queue_remove(&fill->queue);
    }

    if (fill->state != NGX_PT_FILL_DONE && !fill->mirror) {
        (void) ngx_delete_file(fill->temp.data);
    }

    if (fill->fd != NGX_INVALID_FILE) {
        ngx_close_file(fill->fd);
    }

    if (fill->poll.timer_set) {
        ngx_del_timer(&fill->poll);
    }

    if (fill->keep.timer_set) {
        ngx_del_timer(&fill->keep);
    }

    ngx_pt_fetch_detach(&fill->fetch);

    if (fill->md) {
        EVP_MD_CTX_free(fill->md);
    }

    ngx_destroy_pool(fill->pool);
}


/* the blob, once stored, is recorded for repo too */

ngx_int_t
ngx_pt_fill_also(ngx_pt_fill_t *fill, ngx_str_t *repo)
{
    ngx_str_t   *r;
    ngx_uint_t   i;

    if (fill->also == NULL) {
        fill->also = ngx_array_create(fill->pool, 2, sizeof(ngx_str_t));
        if (fill->also == NULL) {
            return NGX_ERROR;
        }
    }

    r = fill->also->elts;

    for (i = 0; i < fill->also->nelts; i++) {
        if (r[i].len == repo->len
            && ngx_strncmp(r[i].data, repo->data, repo->len) == 0)
        {
            return NGX_OK;
        }
    }

    r = ngx_array_push(fill->also);
    if (r == NULL) {
        return NGX_ERROR;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, fill->log, 0,
                   "pullthrough fill: %V to be recorded for \"%V\" too",
                   &fill->digest.full, repo);

    r->len = repo->len;
    r->data = ngx_pstrdup(fill->pool, repo);

    return r->data ? NGX_OK : NGX_ERROR;
}


/* the repositories that followed the fill get the blob recorded too */

void
ngx_pt_fill_record_also(ngx_pt_fill_t *fill)
{
    ngx_str_t   *r;
    ngx_uint_t   i;

    if (fill->also == NULL) {
        return;
    }

    r = fill->also->elts;

    for (i = 0; i < fill->also->nelts; i++) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, fill->log, 0,
                       "pullthrough fill: %V recorded for \"%V\" too",
                       &fill->digest.full, &r[i]);

        if (ngx_pt_fill_ops->record(fill->pool, fill->log, &r[i],
                                    &fill->digest.full, fill->written, NULL)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ALERT, fill->log, 0,
                          "pullthrough: blob %V stored but not recorded "
                          "for \"%V\"", &fill->digest.full, &r[i]);
        }
    }
}


void
ngx_pt_fill_notify(ngx_pt_fill_t *fill)
{
    ngx_queue_t       *q, *next;
    ngx_pt_reader_t   *rd;
    ngx_connection_t  *c, *current;

    /*
     * The connection whose handler runs now, if any: the exchange's (its
     * filters and post handler), which nginx or the transport finishes
     * itself; a thread task's completion runs in none.
     */

    current = (fill->in_task || fill->fetch.r == NULL)
              ? NULL : fill->fetch.r->connection;

    for (q = ngx_queue_head(&fill->readers);
         q != ngx_queue_sentinel(&fill->readers);
         q = next)
    {
        next = ngx_queue_next(q);
        rd = ngx_queue_data(q, ngx_pt_reader_t, queue);
        c = rd->r->connection;

        ngx_pt_reader_run(rd);

        /*
         * Outside the reader's own connection handlers (another client's
         * exchange, a thread task's completion), nobody else runs what
         * finalizing it posted: a failed fill would leave it hanging.
         */

        if (c != current) {
            ngx_http_run_posted_requests(c);
        }
    }
}
