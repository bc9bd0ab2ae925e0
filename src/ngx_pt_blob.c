
/*
 * ngx_pullthrough: the blob store. Content-addressed files under
 * <store>/blobs/<algorithm>/<2 hex>/<hex>, and the fill that makes them:
 * upstream bytes are copied into two fill-owned buffers, hashed and written
 * to a temp file by a thread pool task, one task at a time, and the file is
 * renamed into place only when its length and digest match. Clients read
 * the temp file as it grows; the last byte waits for the verdict, so a
 * client never receives a complete, wrong blob. A fill publishes its
 * progress in the shared zone: another worker's clients of the same blob
 * and repository follow it there (a mirror fill, reading the same temp
 * file) instead of fetching the blob a second time.
 */


#include <ngx_pt.h>

#include <openssl/evp.h>
#include <sys/file.h>
#include <signal.h>


#define NGX_PT_FILL_RUNNING    0
#define NGX_PT_FILL_COMMIT     1
#define NGX_PT_FILL_DONE       2
#define NGX_PT_FILL_FAILED     3

#define NGX_PT_FILL_POLL       10          /* ms: a mirror's pace */
#define NGX_PT_FILL_KEEP       3600000     /* ms a running fill is shown */
#define NGX_PT_FILL_KEEP_END   60000       /* ms its end is */


/* a fill's state as other workers see it (the shared zone) */
typedef struct {
    ngx_pid_t                   pid;
    ngx_uint_t                  seq;
    ngx_uint_t                  state;
    ngx_uint_t                  header;
    off_t                       expected;
    off_t                       written;
    ngx_uint_t                  error_status;
    ngx_uint_t                  bad_digest;
} ngx_pt_fill_share_t;


/* which repository's fill fetches a digest (the shared zone) */
#define NGX_PT_FILL_REPO_MAX   1024
#define NGX_PT_DIGEST_MAX      (sizeof("sha512:") - 1 + 128)

typedef struct {
    ngx_pid_t                   pid;
    ngx_uint_t                  seq;
    size_t                      repo_len;
    u_char                      repo[NGX_PT_FILL_REPO_MAX];
} ngx_pt_fill_index_t;


typedef struct {
    ngx_pt_fill_t              *fill;
    u_char                     *data;
    size_t                      len;
    off_t                       offset;
    ngx_err_t                   err;
    ngx_uint_t                  ok;
} ngx_pt_fill_task_ctx_t;


struct ngx_pt_fill_s {
    ngx_queue_t                 queue;       /* fills of this worker */
    ngx_pool_t                 *pool;
    ngx_log_t                  *log;
    ngx_uint_t                  refs;
    ngx_uint_t                  state;

    ngx_str_t                   repo;
    ngx_pt_digest_t             digest;
    ngx_str_t                   temp;
    ngx_str_t                   path;
    ngx_fd_t                    fd;
    EVP_MD_CTX                 *md;

    ngx_pt_fetch_t              fetch;
    ngx_thread_pool_t          *tp;
    ngx_thread_task_t          *task;
    ngx_uint_t                  busy;        /* a task is in flight */
    ngx_uint_t                  blocked;     /* upstream waits for us */
    ngx_uint_t                  upstream_done;
    ngx_uint_t                  in_task;     /* in a task's completion */

    ngx_buf_t                  *cur;         /* being filled */
    ngx_buf_t                  *other;       /* being written */
    ngx_chain_t                *pending;     /* upstream bufs not copied */
    ngx_chain_t                *free;

    off_t                       expected;    /* -1: unknown */
    off_t                       received;
    off_t                       written;
    ngx_uint_t                  header;

    ngx_uint_t                  error_status;
    const char                 *error_code;

    ngx_queue_t                 readers;

    ngx_str_t                   key;         /* in the shared zone */
    ngx_uint_t                  seq;
    ngx_pid_t                   owner;       /* a mirror's filling worker */
    ngx_event_t                 poll;        /* a mirror follows it */
    ngx_msec_t                  missing;     /* its entry gone since */
    ngx_array_t                *also;        /* other repositories served:
                                                recorded too (ngx_str_t) */
    unsigned                    shared:1;    /* publishes its state */
    unsigned                    mirror:1;    /* another worker's fill */
};


struct ngx_pt_reader_s {
    ngx_queue_t                 queue;
    ngx_http_request_t         *r;
    ngx_pt_fill_t              *fill;
    ngx_file_t                  file;
    off_t                       sent;
    ngx_chain_t                *free;
    ngx_chain_t                *busy;
    ngx_int_t                   rc;
    unsigned                    header_sent:1;
    unsigned                    last_sent:1;
    unsigned                    finished:1;
};


static ngx_int_t ngx_pt_fill_header(ngx_pt_fetch_t *f);
static ngx_int_t ngx_pt_fill_body(ngx_pt_fetch_t *f, ngx_chain_t *in);
static ngx_int_t ngx_pt_fill_drain(ngx_pt_fill_t *fill);
static ngx_int_t ngx_pt_fill_post_write(ngx_pt_fill_t *fill);
static void ngx_pt_fill_write_thread(void *data, ngx_log_t *log);
static void ngx_pt_fill_write_done(ngx_event_t *ev);
static void ngx_pt_fill_upstream_done(ngx_pt_fetch_t *f, ngx_int_t rc);
static void ngx_pt_fill_aborted(ngx_pt_fetch_t *f);
static void ngx_pt_fill_commit(ngx_pt_fill_t *fill);
static void ngx_pt_fill_commit_thread(void *data, ngx_log_t *log);
static void ngx_pt_fill_commit_done(ngx_event_t *ev);
static void ngx_pt_fill_fail(ngx_pt_fill_t *fill, ngx_uint_t status,
    const char *code);
static void ngx_pt_fill_unref(ngx_pt_fill_t *fill);
static void ngx_pt_fill_notify(ngx_pt_fill_t *fill);
static off_t ngx_pt_fill_published(ngx_pt_fill_t *fill);
static ngx_pt_fill_t *ngx_pt_fill_new(ngx_str_t *repo, ngx_pt_digest_t *d);
static ngx_int_t ngx_pt_fill_key(ngx_pt_fill_t *fill);
static void ngx_pt_fill_index(ngx_pt_fill_t *fill);
static ngx_int_t ngx_pt_fill_claim(ngx_pt_fill_t *fill);
static void ngx_pt_fill_publish(ngx_pt_fill_t *fill);
static void ngx_pt_fill_poll(ngx_event_t *ev);
static void ngx_pt_fill_follow(ngx_pt_fill_t *fill, ngx_pt_fill_share_t *sh);
static ngx_int_t ngx_pt_fill_mirror(ngx_pt_fill_t *fill,
    ngx_pt_fill_share_t *sh);
static u_char *ngx_pt_fill_key_print(u_char *buf, ngx_str_t *repo,
    ngx_str_t *digest);
static void ngx_pt_fill_record_also(ngx_pt_fill_t *fill);
static void ngx_pt_reader_cleanup(void *data);
static void ngx_pt_reader_write_handler(ngx_http_request_t *r);
static void ngx_pt_reader_run(ngx_pt_reader_t *rd);
static void ngx_pt_reader_finish(ngx_pt_reader_t *rd, ngx_int_t rc);
static void ngx_pt_reader_release(ngx_pt_reader_t *rd);


static ngx_queue_t  ngx_pt_fills;
static ngx_str_t    ngx_pt_store_root;
static ngx_uint_t   ngx_pt_fill_seq;


ngx_int_t
ngx_pt_blob_init(ngx_cycle_t *cycle, ngx_http_pullthrough_main_conf_t *pmcf)
{
    ngx_queue_init(&ngx_pt_fills);
    ngx_pt_store_root = pmcf->path;

    ngx_pt_blob_clean_temp(cycle, &pmcf->path);

    return NGX_OK;
}


/*
 * Temp files are named <pid>.<n>.<kind>: those no process holds any more
 * (a worker killed mid-fill, an nginx that crashed) are removed when nginx
 * starts and when a worker starts.
 */

void
ngx_pt_blob_clean_temp(ngx_cycle_t *cycle, ngx_str_t *root)
{
    u_char      *name, *p;
    size_t       len;
    ngx_fd_t     fd;
    ngx_dir_t    dir;
    ngx_int_t    pid;
    ngx_str_t    path;
    ngx_uint_t   locked;

    path.len = root->len + sizeof("/tmp/") + NGX_MAX_PATH;
    path.data = ngx_pnalloc(cycle->pool, path.len);
    if (path.data == NULL) {
        return;
    }

    p = ngx_sprintf(path.data, "%V/tmp%Z", root);

    if (ngx_open_dir(&path, &dir) == NGX_ERROR) {
        return;
    }

    p[-1] = '/';

    while (ngx_read_dir(&dir) == NGX_OK) {
        name = ngx_de_name(&dir);
        len = ngx_de_namelen(&dir);

        if (name[0] == '.' || len > NGX_MAX_PATH) {
            continue;
        }

        p = ngx_strlchr(name, name + len, '.');
        if (p == NULL) {
            continue;
        }

        pid = ngx_atoi(name, p - name);
        if (pid == NGX_ERROR || pid == ngx_pid) {
            continue;
        }

        ngx_memcpy(path.data + root->len + sizeof("/tmp/") - 1, name, len);
        path.data[root->len + sizeof("/tmp/") - 1 + len] = '\0';

        /*
         * A file in use is locked by its writer; the lock goes with the
         * process, even one that is a zombie or whose pid was reused.
         */

        fd = ngx_open_file(path.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
        if (fd == NGX_INVALID_FILE) {
            continue;
        }

        locked = (flock(fd, LOCK_EX|LOCK_NB) == -1);
        ngx_close_file(fd);

        if (locked) {
            continue;
        }

        if (ngx_delete_file(path.data) == NGX_FILE_ERROR) {
            ngx_log_error(NGX_LOG_WARN, cycle->log, ngx_errno,
                          ngx_delete_file_n " \"%s\" failed", path.data);

        } else {
            ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                          "pullthrough: removed stale temp file \"%s\"",
                          path.data);
        }
    }

    ngx_close_dir(&dir);
}


/* "sha256:<64 hex>" or "sha512:<128 hex>", lowercase */

ngx_int_t
ngx_pt_digest_parse(ngx_str_t *s, ngx_pt_digest_t *d)
{
    size_t      hexlen;
    ngx_uint_t  i;

    if (s->len > 7 && ngx_strncmp(s->data, "sha256:", 7) == 0) {
        d->md = EVP_sha256();
        hexlen = 64;
        d->alg.len = 6;

    } else if (s->len > 7 && ngx_strncmp(s->data, "sha512:", 7) == 0) {
        d->md = EVP_sha512();
        hexlen = 128;
        d->alg.len = 6;

    } else {
        return NGX_DECLINED;
    }

    if (s->len != 7 + hexlen) {
        return NGX_DECLINED;
    }

    for (i = 7; i < s->len; i++) {
        if (!((s->data[i] >= '0' && s->data[i] <= '9')
              || (s->data[i] >= 'a' && s->data[i] <= 'f')))
        {
            return NGX_DECLINED;
        }
    }

    d->full = *s;
    d->alg.data = s->data;
    d->hex.data = s->data + 7;
    d->hex.len = hexlen;

    return NGX_OK;
}


/* the digest of bytes in memory, as "<alg>:<hex>" */

ngx_int_t
ngx_pt_digest_compute(ngx_pool_t *pool, const EVP_MD *md, u_char *data,
    size_t len, ngx_str_t *out)
{
    u_char        *p, buf[EVP_MAX_MD_SIZE];
    unsigned int   n;

    if (EVP_Digest(data, len, buf, &n, md, NULL) != 1) {
        return NGX_ERROR;
    }

    p = ngx_pnalloc(pool, 7 + 2 * n);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;
    p = ngx_cpymem(p, (md == EVP_sha512()) ? "sha512:" : "sha256:", 7);
    p = ngx_hex_dump(p, buf, n);
    out->len = p - out->data;

    return NGX_OK;
}


/* <store>/blobs/<alg>/<xx>/<hex>, NUL-terminated */

ngx_int_t
ngx_pt_blob_path(ngx_pool_t *pool, ngx_pt_digest_t *d, ngx_str_t *path)
{
    u_char  *p;

    path->len = ngx_pt_store_root.len + sizeof("/blobs/") - 1 + d->alg.len
                + 4 + d->hex.len;

    p = ngx_pnalloc(pool, path->len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    path->data = p;

    p = ngx_sprintf(p, "%V/blobs/%V/%*s/%V%Z", &ngx_pt_store_root, &d->alg,
                    (size_t) 2, d->hex.data, &d->hex);

    return NGX_OK;
}


/*
 * Writes a small verified object (a manifest) into the store. It is done
 * in place, being a few KiB; large bodies go through fills.
 */

ngx_int_t
ngx_pt_blob_write_small(ngx_pool_t *pool, ngx_log_t *log, ngx_pt_digest_t *d,
    u_char *data, size_t len)
{
    u_char     *p, *slash;
    ssize_t     n;
    ngx_fd_t    fd;
    ngx_str_t   path, temp;

    if (ngx_pt_blob_path(pool, d, &path) != NGX_OK) {
        return NGX_ERROR;
    }

    temp.len = ngx_pt_store_root.len + sizeof("/tmp/.") + 2 * NGX_INT_T_LEN
               + 8;
    temp.data = ngx_pnalloc(pool, temp.len);
    if (temp.data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(temp.data, "%V/tmp/%P.%ui.small%Z", &ngx_pt_store_root,
                ngx_pid, ++ngx_pt_fill_seq);

    fd = ngx_open_file(temp.data, NGX_FILE_WRONLY, NGX_FILE_TRUNCATE,
                       NGX_FILE_DEFAULT_ACCESS);
    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                      ngx_open_file_n " \"%s\" failed", temp.data);
        return NGX_ERROR;
    }

    (void) flock(fd, LOCK_EX|LOCK_NB);

    n = ngx_write_fd(fd, data, len);

    ngx_close_file(fd);

    if (n != (ssize_t) len) {
        ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                      "pullthrough: writing \"%s\" failed", temp.data);
        ngx_delete_file(temp.data);
        return NGX_ERROR;
    }

    /* the two directory levels are made on first use */

    for (p = path.data + ngx_pt_store_root.len + sizeof("/blobs/") - 1;
         (slash = (u_char *) ngx_strchr(p, '/')) != NULL;
         p = slash + 1)
    {
        *slash = '\0';
        (void) ngx_create_dir(path.data, 0700);
        *slash = '/';
    }

    if (ngx_rename_file(temp.data, path.data) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                      ngx_rename_file_n " \"%s\" to \"%s\" failed",
                      temp.data, path.data);
        ngx_delete_file(temp.data);
        return NGX_ERROR;
    }

    return NGX_OK;
}


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

        if (fill->state == NGX_PT_FILL_RUNNING
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

static ngx_pt_fill_t *
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
    ngx_pt_fetch_t *tpl, ngx_uint_t *joined)
{
    ngx_uint_t                        i;
    ngx_pool_t                       *pool;
    ngx_array_t                      *headers;
    ngx_keyval_t                     *kv, *src;
    ngx_pt_fill_t                    *fill;
    ngx_pt_fill_task_ctx_t           *ctx;
    ngx_http_pullthrough_loc_conf_t  *plcf;

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_pullthrough_module);

    *joined = 0;

    fill = ngx_pt_fill_new(repo, d);
    if (fill == NULL) {
        return NULL;
    }

    pool = fill->pool;
    fill->tp = plcf->thread_pool;

    fill->temp.len = ngx_pt_store_root.len + sizeof("/tmp/.fill")
                     + 2 * NGX_INT_T_LEN;
    fill->temp.data = ngx_pnalloc(pool, fill->temp.len);
    if (fill->temp.data == NULL) {
        goto failed;
    }

    fill->seq = ++ngx_pt_fill_seq;
    fill->temp.len = ngx_sprintf(fill->temp.data, "%V/tmp/%P.%ui.fill%Z",
                                 &ngx_pt_store_root, ngx_pid, fill->seq)
                     - fill->temp.data - 1;

    fill->fd = ngx_open_file(fill->temp.data, NGX_FILE_RDWR,
                             NGX_FILE_CREATE_OR_OPEN|O_EXCL,
                             NGX_FILE_DEFAULT_ACCESS);
    if (fill->fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_CRIT, r->connection->log, ngx_errno,
                      ngx_open_file_n " \"%s\" failed", fill->temp.data);
        goto failed;
    }

    /* held while the file is in use: cleanup tells leftovers by it */
    (void) flock(fill->fd, LOCK_EX|LOCK_NB);

    /* another worker fetching it already: its clients follow that fill */

    switch (ngx_pt_fill_claim(fill)) {

    case NGX_DONE:
        *joined = 1;
        ngx_queue_insert_tail(&ngx_pt_fills, &fill->queue);
        return fill;

    case NGX_ERROR:
        goto failed;

    default: /* NGX_OK */
        break;
    }

    fill->md = EVP_MD_CTX_new();
    if (fill->md == NULL || EVP_DigestInit_ex(fill->md, d->md, NULL) != 1) {
        goto failed;
    }

    fill->cur = ngx_create_temp_buf(pool, plcf->fill_buffer_size);
    fill->other = ngx_create_temp_buf(pool, plcf->fill_buffer_size);

    fill->task = ngx_thread_task_alloc(pool, sizeof(ngx_pt_fill_task_ctx_t));

    if (fill->cur == NULL || fill->other == NULL || fill->task == NULL) {
        goto failed;
    }

    ctx = fill->task->ctx;
    ctx->fill = fill;

    /* the exchange as the request set it up, in the fill's own pool */

    fill->fetch.r = r;
    fill->fetch.pool = pool;
    fill->fetch.log = fill->log;
    ngx_str_set(&fill->fetch.accept, "*/*");

    fill->fetch.max_retries = tpl->max_retries;
    fill->fetch.insecure = tpl->insecure;
    fill->fetch.total_timeout = tpl->total_timeout;
    fill->fetch.rate_limit = tpl->rate_limit;
    fill->fetch.concurrency = tpl->concurrency;
    fill->fetch.connect_timeout = tpl->connect_timeout;
    fill->fetch.read_timeout = tpl->read_timeout;

    fill->fetch.url.len = tpl->url.len;
    fill->fetch.url.data = ngx_pstrdup(pool, &tpl->url);
    fill->fetch.remote.len = tpl->remote.len;
    fill->fetch.remote.data = ngx_pstrdup(pool, &tpl->remote);

    if (fill->fetch.url.data == NULL || fill->fetch.remote.data == NULL) {
        goto failed;
    }

    if (tpl->basic.len) {
        fill->fetch.basic.data = ngx_pstrdup(pool, &tpl->basic);
        fill->fetch.basic.len = tpl->basic.len;

        if (fill->fetch.basic.data == NULL) {
            goto failed;
        }
    }

    if (tpl->auth) {
        fill->fetch.auth = ngx_pt_auth_copy(pool, tpl->auth);
        if (fill->fetch.auth == NULL) {
            goto failed;
        }

        ngx_pt_auth_preempt(&fill->fetch);
    }

    if (tpl->link) {
        fill->fetch.link = ngx_palloc(pool, sizeof(ngx_pt_link_t));
        if (fill->fetch.link == NULL
            || ngx_pt_link_copy(pool, fill->fetch.link, tpl->link) != NGX_OK)
        {
            goto failed;
        }
    }

    headers = tpl->headers;

    if (headers && headers->nelts) {
        /* copies: the remote's record is the request's */
        fill->fetch.headers = ngx_array_create(pool, headers->nelts,
                                               sizeof(ngx_keyval_t));
        if (fill->fetch.headers == NULL) {
            goto failed;
        }

        src = headers->elts;

        for (i = 0; i < headers->nelts; i++) {
            kv = ngx_array_push(fill->fetch.headers);
            if (kv == NULL) {
                goto failed;
            }

            kv->key.len = src[i].key.len;
            kv->key.data = ngx_pstrdup(pool, &src[i].key);
            kv->value.len = src[i].value.len;
            kv->value.data = ngx_pstrdup(pool, &src[i].value);

            if (kv->key.data == NULL || kv->value.data == NULL) {
                goto failed;
            }
        }
    }
    fill->fetch.header_handler = ngx_pt_fill_header;
    fill->fetch.body_handler = ngx_pt_fill_body;
    fill->fetch.done = ngx_pt_fill_upstream_done;
    fill->fetch.aborted = ngx_pt_fill_aborted;
    fill->fetch.data = fill;

    if (fill->fetch.url.data == NULL
        || ngx_pt_fetch_start(&fill->fetch) != NGX_OK)
    {
        goto failed;
    }

    ngx_queue_insert_tail(&ngx_pt_fills, &fill->queue);

    return fill;

failed:

    if (fill) {
        ngx_pt_fetch_detach(&fill->fetch);

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
    }

    ngx_destroy_pool(pool);

    return NULL;
}


static ngx_int_t
ngx_pt_fill_header(ngx_pt_fetch_t *f)
{
    ngx_pt_fill_t *fill = f->data;

    fill->header = 1;
    fill->expected = f->length;

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
    ctx->err = 0;

    fill->task->handler = ngx_pt_fill_write_thread;
    fill->task->event.handler = ngx_pt_fill_write_done;
    fill->task->event.data = ctx;

    if (ngx_thread_task_post(fill->tp, fill->task) != NGX_OK) {
        return NGX_ERROR;
    }

    fill->busy = 1;
    fill->refs++;

    return NGX_OK;
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
ngx_pt_fill_write_done(ngx_event_t *ev)
{
    ngx_pt_fill_task_ctx_t *ctx = ev->data;

    ngx_pt_fill_t       *fill;

    fill = ctx->fill;
    fill->busy = 0;
    fill->in_task = 1;

    if (fill->state != NGX_PT_FILL_RUNNING) {
        goto done;
    }

    if (ctx->err) {
        ngx_log_error(NGX_LOG_CRIT, fill->log, ctx->err,
                      "pullthrough: writing \"%s\" failed", fill->temp.data);
        ngx_pt_fill_fail(fill, NGX_HTTP_INTERNAL_SERVER_ERROR, NULL);
        goto done;
    }

    fill->written += ctx->len;
    fill->other->pos = fill->other->start;
    fill->other->last = fill->other->start;

    ngx_pt_fill_publish(fill);
    ngx_pt_fill_notify(fill);

    if (fill->pending && ngx_pt_fetch_running(&fill->fetch)) {
        /* the upstream waits for room: copy, then let it read on */

        if (ngx_pt_fill_drain(fill) != NGX_OK) {
            ngx_pt_fill_fail(fill, NGX_HTTP_INTERNAL_SERVER_ERROR, NULL);
            goto done;
        }

        if (!fill->blocked) {
            /* the upstream runs its own connection's posted requests */
            fill->in_task = 0;
            ngx_pt_fetch_resume(&fill->fetch);
        }

    } else if (fill->cur->last > fill->cur->pos) {
        if (ngx_pt_fill_post_write(fill) != NGX_OK) {
            ngx_pt_fill_fail(fill, NGX_HTTP_INTERNAL_SERVER_ERROR, NULL);
        }

    } else if (fill->upstream_done) {
        ngx_pt_fill_commit(fill);
    }

done:

    fill->in_task = 0;
    ngx_pt_fill_unref(fill);
}


static void
ngx_pt_fill_upstream_done(ngx_pt_fetch_t *f, ngx_int_t rc)
{
    ngx_pt_fill_t *fill = f->data;

    if (fill->state != NGX_PT_FILL_RUNNING) {
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

        ngx_pt_fill_fail(fill, f->status, NULL);

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
    ctx->err = 0;
    ctx->ok = 0;

    fill->task->handler = ngx_pt_fill_commit_thread;
    fill->task->event.handler = ngx_pt_fill_commit_done;
    fill->task->event.data = ctx;

    if (ngx_thread_task_post(fill->tp, fill->task) != NGX_OK) {
        fill->state = NGX_PT_FILL_RUNNING;
        ngx_pt_fill_fail(fill, NGX_HTTP_INTERNAL_SERVER_ERROR, NULL);
        return;
    }

    fill->busy = 1;
    fill->refs++;
}


/* in a pool thread: the verdict, then rename into place or delete */

static void
ngx_pt_fill_commit_thread(void *data, ngx_log_t *log)
{
    ngx_pt_fill_task_ctx_t *ctx = data;

    u_char         *p, *slash, hex[2 * EVP_MAX_MD_SIZE], md[EVP_MAX_MD_SIZE];
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

    if (fsync(fill->fd) == -1) {
        ctx->err = ngx_errno;
        (void) ngx_delete_file(fill->temp.data);
        return;
    }

    for (p = fill->path.data + ngx_pt_store_root.len + sizeof("/blobs/") - 1;
         (slash = (u_char *) ngx_strchr(p, '/')) != NULL;
         p = slash + 1)
    {
        *slash = '\0';
        (void) ngx_create_dir(fill->path.data, 0700);
        *slash = '/';
    }

    if (ngx_rename_file(fill->temp.data, fill->path.data) == NGX_FILE_ERROR) {
        ctx->err = ngx_errno;
        (void) ngx_delete_file(fill->temp.data);
        return;
    }

    ctx->ok = 1;
}


static void
ngx_pt_fill_commit_done(ngx_event_t *ev)
{
    ngx_pt_fill_task_ctx_t *ctx = ev->data;

    ngx_pt_fill_t  *fill;

    fill = ctx->fill;
    fill->busy = 0;
    fill->in_task = 1;

    if (ctx->err) {
        ngx_log_error(NGX_LOG_CRIT, fill->log, ctx->err,
                      "pullthrough: storing \"%s\" as \"%s\" failed",
                      fill->temp.data, fill->path.data);
        fill->state = NGX_PT_FILL_RUNNING;
        ngx_pt_fill_fail(fill, NGX_HTTP_INTERNAL_SERVER_ERROR, NULL);

    } else if (!ctx->ok) {
        ngx_log_error(NGX_LOG_ERR, fill->log, 0,
                      "pullthrough: blob from \"%V\" does not match its "
                      "digest %V: discarded", &fill->fetch.url,
                      &fill->digest.full);
        fill->state = NGX_PT_FILL_RUNNING;
        ngx_pt_fill_fail(fill, NGX_HTTP_BAD_GATEWAY, "BLOB_UNKNOWN");

    } else {
        fill->state = NGX_PT_FILL_DONE;

        if (ngx_pt_content_blob_add(fill->pool, fill->log, &fill->repo,
                                    &fill->digest.full, fill->written)
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

    fill->in_task = 0;
    ngx_pt_fill_unref(fill);
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

    fill->state = NGX_PT_FILL_FAILED;
    fill->error_status = status;
    fill->error_code = code;

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


static void
ngx_pt_fill_unref(ngx_pt_fill_t *fill)
{
    if (--fill->refs) {
        return;
    }

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

    ngx_pt_fetch_detach(&fill->fetch);

    if (fill->md) {
        EVP_MD_CTX_free(fill->md);
    }

    ngx_destroy_pool(fill->pool);
}


/*
 * The fill's key in the shared zone: either it is the first to fetch the
 * blob for the repository (NGX_OK: it publishes its state from now on), or
 * a live fill of another worker has it (NGX_DONE: this one becomes its
 * mirror, reading that worker's temp file as it grows, and its own temp
 * file goes).
 */

static ngx_int_t
ngx_pt_fill_claim(ngx_pt_fill_t *fill)
{
    ngx_pt_fill_share_t   sh, mine;

    ngx_memzero(&mine, sizeof(ngx_pt_fill_share_t));
    mine.pid = ngx_pid;
    mine.seq = fill->seq;
    mine.state = NGX_PT_FILL_RUNNING;
    mine.expected = -1;

    if (ngx_pt_shared_claim(&fill->key, &mine, sizeof(mine),
                            NGX_PT_FILL_KEEP))
    {
        fill->shared = 1;
        ngx_pt_fill_index(fill);
        return NGX_OK;
    }

    if (ngx_pt_shared_read(&fill->key, &sh, sizeof(sh)) == NGX_OK) {
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

    ngx_pt_shared_write(&fill->key, &mine, sizeof(mine), NGX_PT_FILL_KEEP);
    fill->shared = 1;

    ngx_pt_fill_index(fill);

    return NGX_OK;
}


/* "fill\n<repo>\n<digest>": a fill's state in the shared zone */

static u_char *
ngx_pt_fill_key_print(u_char *buf, ngx_str_t *repo, ngx_str_t *digest)
{
    return ngx_sprintf(buf, "fill\n%V\n%V", repo, digest);
}


static ngx_int_t
ngx_pt_fill_key(ngx_pt_fill_t *fill)
{
    fill->key.data = ngx_pnalloc(fill->pool, sizeof("fill\n\n") - 1
                                             + fill->repo.len
                                             + fill->digest.full.len);
    if (fill->key.data == NULL) {
        return NGX_ERROR;
    }

    fill->key.len = ngx_pt_fill_key_print(fill->key.data, &fill->repo,
                                          &fill->digest.full)
                    - fill->key.data;

    return NGX_OK;
}


/* "blob\n<digest>": which repository's fill fetches the digest, for the
 * other repositories */

static void
ngx_pt_fill_index(ngx_pt_fill_t *fill)
{
    u_char               buf[sizeof("blob\n") + NGX_PT_DIGEST_MAX];
    ngx_str_t            key;
    ngx_pt_fill_index_t  idx;

    if (fill->repo.len > NGX_PT_FILL_REPO_MAX
        || fill->digest.full.len > NGX_PT_DIGEST_MAX)
    {
        return;
    }

    key.data = buf;
    key.len = ngx_sprintf(buf, "blob\n%V", &fill->digest.full) - buf;

    ngx_memzero(&idx, sizeof(ngx_pt_fill_index_t));
    idx.pid = ngx_pid;
    idx.seq = fill->seq;
    idx.repo_len = fill->repo.len;
    ngx_memcpy(idx.repo, fill->repo.data, fill->repo.len);

    ngx_pt_shared_write(&key, &idx, sizeof(idx), NGX_PT_FILL_KEEP);
}


/*
 * A running fill of digest d for another repository than repo: in this
 * worker, or one of another worker, which this worker then follows (out
 * NULL: only whether there is one). The caller has the upstream confirm
 * that repo has the blob before its client reads it (ngx_pt_fill_also()).
 */

ngx_int_t
ngx_pt_fill_other(ngx_str_t *repo, ngx_pt_digest_t *d, ngx_pt_fill_t **out)
{
    u_char                ibuf[sizeof("blob\n") + NGX_PT_DIGEST_MAX];
    u_char                fbuf[sizeof("fill\n\n") + NGX_PT_FILL_REPO_MAX
                               + NGX_PT_DIGEST_MAX];
    ngx_int_t             rc;
    ngx_str_t             key, other;
    ngx_queue_t          *q;
    ngx_pt_fill_t        *fill;
    ngx_pt_fill_index_t   idx;
    ngx_pt_fill_share_t   sh;

    for (q = ngx_queue_head(&ngx_pt_fills);
         q != ngx_queue_sentinel(&ngx_pt_fills);
         q = ngx_queue_next(q))
    {
        fill = ngx_queue_data(q, ngx_pt_fill_t, queue);

        if (fill->state == NGX_PT_FILL_RUNNING
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

    if (d->full.len > NGX_PT_DIGEST_MAX) {
        return NGX_DECLINED;
    }

    key.data = ibuf;
    key.len = ngx_sprintf(ibuf, "blob\n%V", &d->full) - ibuf;

    if (ngx_pt_shared_read(&key, &idx, sizeof(idx)) != NGX_OK
        || idx.pid == ngx_pid || idx.repo_len > NGX_PT_FILL_REPO_MAX
        || (idx.repo_len == repo->len
            && ngx_strncmp(idx.repo, repo->data, repo->len) == 0))
    {
        return NGX_DECLINED;
    }

    other.data = idx.repo;
    other.len = idx.repo_len;

    key.data = fbuf;
    key.len = ngx_pt_fill_key_print(fbuf, &other, &d->full) - fbuf;

    if (ngx_pt_shared_read(&key, &sh, sizeof(sh)) != NGX_OK
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

    r->len = repo->len;
    r->data = ngx_pstrdup(fill->pool, repo);

    return r->data ? NGX_OK : NGX_ERROR;
}


static void
ngx_pt_fill_record_also(ngx_pt_fill_t *fill)
{
    ngx_str_t   *r;
    ngx_uint_t   i;

    if (fill->also == NULL) {
        return;
    }

    r = fill->also->elts;

    for (i = 0; i < fill->also->nelts; i++) {
        if (ngx_pt_content_blob_add(fill->pool, fill->log, &r[i],
                                    &fill->digest.full, fill->written)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ALERT, fill->log, 0,
                          "pullthrough: blob %V stored but not recorded "
                          "for \"%V\"", &fill->digest.full, &r[i]);
        }
    }
}


/*
 * Makes fill (its own temp file open, or none) the mirror of the live fill
 * of another worker that sh describes: NGX_DECLINED when there is none.
 */

static ngx_int_t
ngx_pt_fill_mirror(ngx_pt_fill_t *fill, ngx_pt_fill_share_t *sh)
{
    u_char     *p;
    ngx_fd_t    fd;
    ngx_str_t   other;

    if (sh->pid == ngx_pid
        || (sh->state != NGX_PT_FILL_RUNNING
            && sh->state != NGX_PT_FILL_COMMIT)
        || kill(sh->pid, 0) != 0)
    {
        return NGX_DECLINED;
    }

    other.data = ngx_pnalloc(fill->pool, ngx_pt_store_root.len
                                         + sizeof("/tmp/.fill")
                                         + 2 * NGX_INT_T_LEN);
    if (other.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(other.data, "%V/tmp/%P.%ui.fill%Z",
                    &ngx_pt_store_root, sh->pid, sh->seq);
    other.len = p - other.data - 1;

    fd = ngx_open_file(other.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        /* renamed into place just now, maybe: the final file then */
        if (ngx_pt_shared_read(&fill->key, sh, sizeof(*sh)) == NGX_OK
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
                   "pullthrough: blob %V follows the fill of worker %P",
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


static void
ngx_pt_fill_publish(ngx_pt_fill_t *fill)
{
    ngx_pt_fill_share_t  sh;

    if (!fill->shared) {
        return;
    }

    ngx_memzero(&sh, sizeof(ngx_pt_fill_share_t));

    sh.pid = ngx_pid;
    sh.seq = fill->seq;
    sh.state = fill->state;
    sh.header = fill->header;
    sh.expected = fill->expected;
    sh.written = fill->written;
    sh.error_status = fill->error_status;
    sh.bad_digest = (fill->error_code != NULL);

    ngx_pt_shared_write(&fill->key, &sh, sizeof(sh),
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
    ngx_pt_fill_share_t  sh;

    if (ngx_queue_empty(&fill->readers) && fill->also == NULL) {
        /* nobody follows it any more, nothing to record at its end */
        fill->state = NGX_PT_FILL_FAILED;
        ngx_queue_remove(&fill->queue);
        ngx_pt_fill_unref(fill);
        return;
    }

    if (ngx_pt_shared_read(&fill->key, &sh, sizeof(sh)) != NGX_OK
        || sh.pid != fill->owner || sh.seq != fill->seq)
    {
        /*
         * Its entry is gone (expired, or evicted from a full zone: the
         * filling worker writes it again at its next write). The store
         * tells whether it ended well; a minute without it, it did not.
         */

        if (fill->missing == 0) {
            fill->missing = ngx_current_msec;
        }

        ngx_memzero(&sh, sizeof(ngx_pt_fill_share_t));

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
ngx_pt_fill_follow(ngx_pt_fill_t *fill, ngx_pt_fill_share_t *sh)
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


static off_t
ngx_pt_fill_published(ngx_pt_fill_t *fill)
{
    if (fill->state == NGX_PT_FILL_DONE || fill->expected < 0) {
        return fill->written;
    }

    /* the last byte waits for the digest */
    return ngx_min(fill->written, fill->expected - 1);
}


static void
ngx_pt_fill_notify(ngx_pt_fill_t *fill)
{
    ngx_queue_t       *q, *next;
    ngx_pt_reader_t   *rd;
    ngx_connection_t  *c;

    for (q = ngx_queue_head(&fill->readers);
         q != ngx_queue_sentinel(&fill->readers);
         q = next)
    {
        next = ngx_queue_next(q);
        rd = ngx_queue_data(q, ngx_pt_reader_t, queue);
        c = rd->r->connection;

        ngx_pt_reader_run(rd);

        /*
         * Outside the connection's own handlers (a thread task's
         * completion), nobody else runs what finalizing it posted.
         */

        if (fill->in_task) {
            ngx_http_run_posted_requests(c);
        }
    }
}


/*
 * Makes request r a reader of the fill: it answers with the blob as the
 * fill writes it. r waits (its handler returns NGX_DONE).
 */

ngx_int_t
ngx_pt_fill_attach(ngx_pt_fill_t *fill, ngx_http_request_t *r)
{
    ngx_pt_reader_t     *rd;
    ngx_pool_cleanup_t  *cln;

    rd = ngx_pcalloc(r->pool, sizeof(ngx_pt_reader_t));
    if (rd == NULL) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    rd->file.fd = dup(fill->fd);
    if (rd->file.fd == NGX_INVALID_FILE) {
        return NGX_ERROR;
    }

    rd->file.name = fill->path;
    rd->file.log = r->connection->log;
    rd->r = r;
    rd->fill = fill;

    cln->handler = ngx_pt_reader_cleanup;
    cln->data = rd;

    fill->refs++;
    ngx_queue_insert_tail(&fill->readers, &rd->queue);

    r->main->count++;
    r->write_event_handler = ngx_pt_reader_write_handler;

    ngx_pt_registry_set_reader(r, rd);

    ngx_pt_reader_run(rd);

    return NGX_OK;
}


static void
ngx_pt_reader_cleanup(void *data)
{
    ngx_pt_reader_t *rd = data;

    if (rd->fill) {
        ngx_queue_remove(&rd->queue);
        ngx_pt_fill_unref(rd->fill);
        rd->fill = NULL;
    }

    ngx_close_file(rd->file.fd);
}


static void
ngx_pt_reader_write_handler(ngx_http_request_t *r)
{
    ngx_event_t               *wev;
    ngx_pt_reader_t           *rd;
    ngx_http_core_loc_conf_t  *clcf;

    rd = ngx_pt_registry_get_reader(r);

    if (rd == NULL || rd->fill == NULL) {
        return;
    }

    wev = r->connection->write;

    /* as ngx_http_writer(): a delayed write (sendfile_max_chunk, limit_rate)
     * times out on purpose */

    if (wev->timedout) {
        wev->timedout = 0;

        if (!wev->delayed) {
            r->connection->timedout = 1;
            r->connection->error = 1;
            ngx_log_error(NGX_LOG_INFO, r->connection->log, NGX_ETIMEDOUT,
                          "client timed out");
            ngx_pt_reader_finish(rd, NGX_ERROR);
            return;
        }

        wev->delayed = 0;

        if (!wev->ready) {
            clcf = ngx_http_get_module_loc_conf(r->main, ngx_http_core_module);
            ngx_add_timer(wev, clcf->send_timeout);

            if (ngx_handle_write_event(wev, clcf->send_lowat) != NGX_OK) {
                ngx_pt_reader_finish(rd, NGX_ERROR);
            }

            return;
        }
    }

    ngx_pt_reader_run(rd);
}


static void
ngx_pt_reader_run(ngx_pt_reader_t *rd)
{
    off_t                      avail;
    ngx_int_t                  rc;
    ngx_buf_t                 *b;
    ngx_event_t               *wev;
    ngx_chain_t               *cl, *out;
    ngx_pt_fill_t             *fill;
    ngx_http_request_t        *r;
    ngx_http_core_loc_conf_t  *clcf;

    r = rd->r;
    fill = rd->fill;

    if (fill == NULL) {
        return;
    }

    if (rd->finished) {
        ngx_pt_reader_release(rd);
        return;
    }

    if (r->connection->error) {
        ngx_pt_reader_finish(rd, NGX_ERROR);
        return;
    }

    if (fill->state == NGX_PT_FILL_FAILED) {

        if (!rd->header_sent) {
            rc = ngx_pt_registry_fill_error(r, fill->error_status,
                                            fill->error_code);
            ngx_pt_reader_finish(rd, rc);
            return;
        }

        /* cut the connection: the client must not take a short body */
        r->keepalive = 0;
        r->connection->error = 1;
        ngx_pt_reader_finish(rd, NGX_ERROR);
        return;
    }

    if (!rd->header_sent) {
        if (!fill->header) {
            return;
        }

        rc = ngx_pt_registry_blob_header(r, &fill->digest, fill->expected);

        if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
            ngx_pt_reader_finish(rd, rc);
            return;
        }

        rd->header_sent = 1;
    }

    wev = r->connection->write;

    if (wev->delayed) {
        if (wev->timer_set) {
            /* the write event's timer resumes it */
            return;
        }

        /*
         * The fill's upstream, on the same connection, deletes timers of
         * the client's write event: nothing would end this delay.
         */
        wev->delayed = 0;
    }

    /* until the socket is full, or there is nothing more to send */

    for ( ;; ) {
        out = NULL;
        avail = ngx_pt_fill_published(fill);

        if (!r->connection->buffered
            && (avail > rd->sent
                || (fill->state == NGX_PT_FILL_DONE && !rd->last_sent)))
        {
            cl = ngx_chain_get_free_buf(r->pool, &rd->free);
            if (cl == NULL) {
                ngx_pt_reader_finish(rd, NGX_ERROR);
                return;
            }

            b = cl->buf;
            ngx_memzero(b, sizeof(ngx_buf_t));

            b->tag = (ngx_buf_tag_t) &ngx_pt_fill_attach;

            if (avail > rd->sent) {
                b->in_file = 1;
                b->file = &rd->file;
                b->file_pos = rd->sent;
                b->file_last = avail;
                rd->sent = avail;
            }

            if (fill->state == NGX_PT_FILL_DONE && rd->sent == fill->written) {
                b->last_buf = (r == r->main) ? 1 : 0;
                b->last_in_chain = 1;
                rd->last_sent = 1;

            } else {
                b->flush = 1;
            }

            if (!b->in_file && !b->last_buf) {
                b->sync = 1;
            }

            out = cl;
        }

        if (out == NULL && !r->connection->buffered) {
            return;
        }

        rc = ngx_http_output_filter(r, out);

        ngx_chain_update_chains(r->pool, &rd->free, &rd->busy, &out,
                                (ngx_buf_tag_t) &ngx_pt_fill_attach);

        if (rc == NGX_ERROR) {
            ngx_pt_reader_finish(rd, NGX_ERROR);
            return;
        }

        if (rd->last_sent || r->connection->buffered || wev->delayed) {
            break;
        }
    }

    if (rd->last_sent) {
        ngx_pt_reader_finish(rd, rc);
        return;
    }

    /* a client that stops reading is given send_timeout, as nginx does */

    clcf = ngx_http_get_module_loc_conf(r->main, ngx_http_core_module);

    if (r->connection->buffered && !wev->delayed && !wev->ready) {
        ngx_add_timer(wev, clcf->send_timeout);

    } else if (wev->timer_set && !wev->delayed) {
        ngx_del_timer(wev);
    }

    if (ngx_handle_write_event(wev, clcf->send_lowat) != NGX_OK) {
        ngx_pt_reader_finish(rd, NGX_ERROR);
    }
}


static void
ngx_pt_reader_finish(ngx_pt_reader_t *rd, ngx_int_t rc)
{
    rd->finished = 1;
    rd->rc = rc;

    ngx_pt_reader_release(rd);
}


/*
 * The request that carries the upstream exchange stays until the exchange
 * ends: ending it sooner would abort the fill, which must complete even
 * when its client has gone (as proxy_store does).
 */

static void
ngx_pt_reader_release(ngx_pt_reader_t *rd)
{
    ngx_uint_t           parent, terminated;
    ngx_pt_fill_t       *fill;
    ngx_http_request_t  *r;

    r = rd->r;
    fill = rd->fill;

    parent = (fill->fetch.r == r);

    if (parent && ngx_pt_fetch_running(&fill->fetch)) {
        return;
    }

    /* nginx terminates it when the subrequest ends, just after */
    terminated = parent && ngx_pt_fetch_in_post == &fill->fetch
                 && r->connection->error;

    ngx_queue_remove(&rd->queue);
    rd->fill = NULL;
    ngx_pt_fill_unref(fill);

    if (terminated) {
        return;
    }

    ngx_http_finalize_request(r, rd->rc);
}
