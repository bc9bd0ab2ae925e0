
/*
 * ngx_pullthrough: an image index (or manifest list) pulled by tag is
 * recorded with every manifest it lists in one repository version, as
 * Pulp does. The index is recorded without a version and answered; the
 * listed manifests the repository lacks (not their layers) are then
 * fetched by digest, a few at a time, by the same request after its
 * answer (which holds the client's connection meanwhile, as nginx's
 * background updates do), each recorded without a version; when the last
 * one ends, failed or not, one version is made of what the tags reach.
 * Each child is a flight under <repo>\0<digest>, claimed before the
 * index is answered, so a client that asks for a child meanwhile, in any
 * worker, waits for it instead of fetching it again.
 */


#include <ngx_pt.h>
#include <ngx_pt_registry_int.h>
#include <ngx_pt_blob.h>


#define NGX_PT_INDEX_AT_ONCE     4        /* child exchanges at a time */
#define NGX_PT_INDEX_FLIGHT      60000    /* ms a child's flight may take */


typedef struct ngx_pt_child_s  ngx_pt_child_t;

struct ngx_pt_index_s {
    ngx_http_request_t         *r;
    ngx_pt_req_t               *ctx;
    ngx_pt_manifest_info_t      mi;          /* repo and dist: the version */
    ngx_pt_child_t             *children;
    ngx_uint_t                  n;
    ngx_uint_t                  next;        /* the next to start */
    ngx_uint_t                  running;
};


struct ngx_pt_child_s {
    ngx_pt_index_t             *index;
    ngx_pt_digest_t             digest;
    ngx_pt_flight_t             flight;
    ngx_pt_fetch_t             *fetch;
    ngx_event_t                 ev;          /* its exchange ended */
    unsigned                    started:1;
    unsigned                    ended:1;
};


static ngx_int_t ngx_pt_index_missing(ngx_http_request_t *r,
    ngx_pt_req_t *ctx, ngx_pt_manifest_info_t *mi, ngx_array_t *missing);
static ngx_int_t ngx_pt_index_fetch(ngx_pt_child_t *ch);
static void ngx_pt_index_done(ngx_pt_fetch_t *f, ngx_int_t rc);
static void ngx_pt_index_handler(ngx_event_t *ev);
static ngx_int_t ngx_pt_index_record(ngx_pt_child_t *ch, ngx_pt_fetch_t *f);
static void ngx_pt_index_end(ngx_pt_child_t *ch, ngx_int_t status);
static void ngx_pt_index_cleanup(void *data);


/*
 * Called with a verified manifest about to be recorded by tag: for an
 * index whose manifests the repository lacks, mi->no_version is set, the
 * children's flights are claimed, and ngx_pt_index_start() fetches them
 * once the index is recorded. NGX_DECLINED: nothing to fetch.
 */

ngx_int_t
ngx_pt_index_prepare(ngx_http_request_t *r, ngx_pt_req_t *ctx,
    ngx_pt_manifest_info_t *mi)
{
    ngx_uint_t           i;
    ngx_array_t          missing;
    ngx_pt_index_t      *ix;
    ngx_pt_child_t      *ch;
    ngx_pool_cleanup_t  *cln;
    ngx_pt_digest_t     *d;

    if (mi->tag.len == 0 || mi->rec.manifests.nelts == 0) {
        return NGX_DECLINED;
    }

    if (ngx_array_init(&missing, r->pool, mi->rec.manifests.nelts,
                       sizeof(ngx_pt_digest_t)) != NGX_OK
        || ngx_pt_index_missing(r, ctx, mi, &missing) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (missing.nelts == 0) {
        return NGX_DECLINED;
    }

    ix = ngx_pcalloc(r->pool, sizeof(ngx_pt_index_t));
    ch = ngx_pcalloc(r->pool, missing.nelts * sizeof(ngx_pt_child_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (ix == NULL || ch == NULL || cln == NULL) {
        return NGX_ERROR;
    }

    ix->r = r;
    ix->ctx = ctx;
    ix->mi.repo = mi->repo;
    ix->mi.dist = mi->dist;
    ix->children = ch;
    ix->n = missing.nelts;

    cln->handler = ngx_pt_index_cleanup;
    cln->data = ix;

    /* claimed before the index is answered: its clients wait for them */

    d = missing.elts;

    for (i = 0; i < ix->n; i++) {
        ch[i].index = ix;
        ch[i].digest = d[i];
        ch[i].flight.log = r->connection->log;
        ch[i].ev.handler = ngx_pt_index_handler;
        ch[i].ev.data = &ch[i];
        ch[i].ev.log = r->connection->log;

        if (ngx_pt_manifest_key(r->pool, &mi->repo, &d[i].full,
                                &ch[i].flight.key) != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (!ngx_pt_flight_claim(&ch[i].flight, NGX_PT_INDEX_FLIGHT)) {
            /* another request fetches it and records it */
            ch[i].ended = 1;
        }
    }

    ctx->index = ix;
    mi->no_version = 1;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "pullthrough index: \"%V:%V\" lacks %ui manifests",
                   &mi->repo, &mi->tag, ix->n);

    return NGX_OK;
}


/* the listed manifests the repository has not recorded */

static ngx_int_t
ngx_pt_index_missing(ngx_http_request_t *r, ngx_pt_req_t *ctx,
    ngx_pt_manifest_info_t *mi, ngx_array_t *missing)
{
    off_t             size;
    ngx_int_t         rc;
    ngx_str_t        *s, type;
    ngx_uint_t        i;
    ngx_pt_digest_t  *d;

    s = mi->rec.manifests.elts;

    for (i = 0; i < mi->rec.manifests.nelts; i++) {
        rc = ngx_pt_content_manifest(r->pool, r->connection->log, &mi->repo,
                                     &s[i], &type, &size);
        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_OK) {
            continue;
        }

        d = ngx_array_push(missing);
        if (d == NULL) {
            return NGX_ERROR;
        }

        if (ngx_pt_digest_parse(&s[i], d) != NGX_OK) {
            /* not a digest this cache can verify: left out */
            missing->nelts--;
        }
    }

    return NGX_OK;
}


/* starts children up to NGX_PT_INDEX_AT_ONCE; the last one makes the
 * version */

ngx_int_t
ngx_pt_index_start(ngx_pt_index_t *ix)
{
    ngx_pt_child_t  *ch;

    while (ix->next < ix->n && ix->running < NGX_PT_INDEX_AT_ONCE) {
        ch = &ix->children[ix->next++];

        if (ch->ended) {
            continue;
        }

        if (ngx_pt_index_fetch(ch) != NGX_OK) {
            ngx_pt_flight_land(&ch->flight, NGX_PT_FLIGHT_ABANDONED);
            ch->ended = 1;
            continue;
        }

        ch->started = 1;
        ix->running++;
    }

    if (ix->running == 0) {
        /* nothing under way: the version now */
        ix->next = ix->n;

        if (ngx_pt_content_version_update(ix->r->pool,
                                          ix->r->connection->log, &ix->mi)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_pt_index_fetch(ngx_pt_child_t *ch)
{
    ngx_str_t                         url;
    ngx_pt_req_t                     *ctx;
    ngx_pt_fetch_t                   *f;
    ngx_pt_settings_t                *s;
    ngx_http_request_t               *r;
    ngx_http_pullthrough_loc_conf_t  *plcf;

    r = ch->index->r;
    ctx = ch->index->ctx;
    plcf = ngx_http_get_module_loc_conf(r, ngx_http_pullthrough_module);

    f = ngx_pcalloc(r->pool, sizeof(ngx_pt_fetch_t));
    if (f == NULL) {
        return NGX_ERROR;
    }

    s = ngx_pt_registry_settings(r, ctx);

    if (s == NULL
        || ngx_pt_registry_upstream_url(r, ctx, "manifests",
                                        &ch->digest.full, &url) != NGX_OK
        || ngx_pt_fetch_init(f, r, r->pool, s, &url) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_str_set(&f->accept, NGX_PT_MANIFEST_TYPES);
    f->done = ngx_pt_index_done;
    f->data = ch;

    f->body = ngx_create_temp_buf(r->pool, plcf->manifest_max_size);
    if (f->body == NULL || ngx_pt_fetch_start(f) != NGX_OK) {
        return NGX_ERROR;
    }

    ch->fetch = f;

    /* the request lives on until the child ends */
    r->main->count++;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "pullthrough index: fetching %V", &ch->digest.full);

    return NGX_OK;
}


static void
ngx_pt_index_done(ngx_pt_fetch_t *f, ngx_int_t rc)
{
    ngx_pt_child_t *ch = f->data;

    /* on its own event: the subrequest may not be finalized yet */
    ngx_post_event(&ch->ev, &ngx_posted_events);
}


static void
ngx_pt_index_handler(ngx_event_t *ev)
{
    ngx_pt_child_t *ch = ev->data;

    ngx_int_t            status;
    ngx_pt_fetch_t      *f;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ch->index->r;
    c = r->connection;
    f = ch->fetch;

    if (f->header && f->status == NGX_HTTP_OK && !f->too_big
        && f->rc < NGX_HTTP_SPECIAL_RESPONSE && f->rc != NGX_ERROR)
    {
        status = ngx_pt_index_record(ch, f);

    } else {
        ngx_log_error(NGX_LOG_WARN, c->log, 0,
                      "pullthrough: manifest %V listed by \"%V:%V\" could "
                      "not be fetched: the version is made without it",
                      &ch->digest.full, &ch->index->mi.repo,
                      &ch->index->ctx->reference);
        status = f->header ? (ngx_int_t) f->status : NGX_HTTP_BAD_GATEWAY;
    }

    ngx_pt_index_end(ch, status);

    /* the reference this child held */
    ngx_http_finalize_request(r, NGX_DONE);

    ngx_http_run_posted_requests(c);
}


/* a listed manifest: verified against its digest, stored, recorded */

static ngx_int_t
ngx_pt_index_record(ngx_pt_child_t *ch, ngx_pt_fetch_t *f)
{
    size_t                   len;
    ngx_str_t                computed;
    ngx_log_t               *log;
    ngx_pool_t              *pool;
    ngx_pt_manifest_info_t   mi;

    pool = ch->index->r->pool;
    log = ch->index->r->connection->log;
    len = f->body->last - f->body->pos;

    if (ngx_pt_digest_compute(pool, ch->digest.md, f->body->pos, len,
                              &computed) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memzero(&mi, sizeof(ngx_pt_manifest_info_t));

    mi.repo = ch->index->mi.repo;
    mi.dist = ch->index->mi.dist;
    mi.digest = ch->digest.full;
    mi.rec.size = len;
    mi.no_version = 1;

    if (computed.len != ch->digest.full.len
        || ngx_strncmp(computed.data, ch->digest.full.data, computed.len) != 0)
    {
        ngx_pt_shm_stat_add(NGX_PT_STAT_DIGEST_MISMATCHES, 1);
    }

    if (computed.len != ch->digest.full.len
        || ngx_strncmp(computed.data, ch->digest.full.data, computed.len) != 0
        || ngx_pt_content_parse_manifest(pool, &mi, f->body->pos, len)
           != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "pullthrough: manifest from \"%V\" does not match its "
                      "digest or is not valid: not stored", &f->url);
        return NGX_HTTP_BAD_GATEWAY;
    }

    ngx_pt_content_media_type(&mi, &f->content_type);

    ngx_pt_metrics_upstream(&f->settings->remote_name,
                            NGX_PT_METRICS_BYTES_ONLY, len);

    if (ngx_pt_blob_write_small(pool, log, &ch->digest, f->body->pos, len)
        != NGX_OK
        || ngx_pt_content_manifest_add(pool, log, &mi) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return 0;
}


/* a child ended: its waiters are told; the last one makes the version */

static void
ngx_pt_index_end(ngx_pt_child_t *ch, ngx_int_t status)
{
    ngx_pt_index_t  *ix;

    ix = ch->index;

    ch->ended = 1;
    ix->running--;

    ngx_pt_flight_land(&ch->flight, status);

    if (ix->next < ix->n || ix->running) {
        (void) ngx_pt_index_start(ix);
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ix->r->connection->log, 0,
                   "pullthrough index: the manifests of \"%V:%V\" fetched",
                   &ix->mi.repo, &ix->ctx->reference);

    (void) ngx_pt_content_version_update(ix->r->pool,
                                         ix->r->connection->log, &ix->mi);
}


/* the request ends: children not fetched are abandoned to their waiters */

static void
ngx_pt_index_cleanup(void *data)
{
    ngx_pt_index_t *ix = data;

    ngx_uint_t       i;
    ngx_pt_child_t  *ch;

    for (i = 0; i < ix->n; i++) {
        ch = &ix->children[i];

        ngx_pt_flight_land(&ch->flight, NGX_PT_FLIGHT_ABANDONED);

        if (ch->ev.posted) {
            ngx_delete_posted_event(&ch->ev);
        }
    }
}
