
/*
 * ngx_pullthrough: manifests on /v2/. A manifest by digest never changes:
 * once recorded it is served from disk. A tag is served from disk while
 * fresh, that is for its freshness period (the remote's tag_ttl, else
 * pullthrough_tag_ttl) after the upstream last confirmed it; after that
 * one request asks the upstream with a HEAD and, when the digest moved,
 * fetches the new manifest with a GET. That request makes a "flight",
 * kept in the shared zone under <repo>\0<reference>: the requests of
 * every worker that want the same tag meanwhile are served the cached
 * manifest (pullthrough_tag_revalidate updating) or wait for the flight
 * (wait), so the upstream sees one check per tag and period for the
 * whole server. Misses are flights too: concurrent clients of a manifest
 * nobody has cached cost one upstream GET. When the upstream fails, the
 * cached manifest is served (STALE, up to pullthrough_tag_max_stale) and
 * the remote is left alone for a growing back-off; an upstream 404 for
 * what nobody cached is remembered for pullthrough_negative_ttl.
 */


#include <ngx_pt.h>
#include <ngx_pt_registry_int.h>
#include <ngx_pt_blob.h>
#include <ngx_pt_content.h>


#define NGX_PT_FLIGHT_MISS       60000    /* ms a miss's flight may take,
                                             without total_timeout */


static ngx_int_t ngx_pt_manifest_lookup(ngx_http_request_t *r,
    ngx_pt_req_t *ctx);
static ngx_uint_t ngx_pt_manifest_fresh(ngx_http_request_t *r,
    ngx_pt_req_t *ctx);
static ngx_uint_t ngx_pt_manifest_stale_ok(ngx_http_request_t *r,
    ngx_pt_req_t *ctx);
static ngx_int_t ngx_pt_manifest_hit(ngx_http_request_t *r,
    ngx_pt_req_t *ctx, ngx_uint_t status);
static ngx_int_t ngx_pt_manifest_stale(ngx_http_request_t *r,
    ngx_pt_req_t *ctx, ngx_pt_fetch_t *f);
static ngx_int_t ngx_pt_manifest_expired(ngx_http_request_t *r,
    ngx_pt_req_t *ctx);
static ngx_int_t ngx_pt_manifest_revalidate(ngx_http_request_t *r,
    ngx_pt_req_t *ctx);
static void ngx_pt_manifest_revalidated(ngx_http_request_t *r);
static ngx_int_t ngx_pt_manifest_check_failed(ngx_http_request_t *r,
    ngx_pt_req_t *ctx, ngx_pt_fetch_t *f);
static void ngx_pt_manifest_check_note(ngx_http_request_t *r,
    ngx_pt_req_t *ctx, ngx_pt_fetch_t *f);
static ngx_uint_t ngx_pt_manifest_check_ok(ngx_pt_fetch_t *f);
static ngx_uint_t ngx_pt_manifest_fetch_ok(ngx_pt_fetch_t *f);
static ngx_int_t ngx_pt_manifest_background(ngx_http_request_t *r,
    ngx_pt_req_t *ctx);
static void ngx_pt_manifest_bg_done(ngx_pt_fetch_t *f, ngx_int_t rc);
static void ngx_pt_manifest_bg_handler(ngx_event_t *ev);
static void ngx_pt_manifest_bg_checked(ngx_http_request_t *r,
    ngx_pt_req_t *ctx, ngx_pt_fetch_t *f);
static void ngx_pt_manifest_bg_fetched(ngx_http_request_t *r,
    ngx_pt_req_t *ctx, ngx_pt_fetch_t *f);
static ngx_int_t ngx_pt_manifest_miss(ngx_http_request_t *r,
    ngx_pt_req_t *ctx);
static ngx_int_t ngx_pt_manifest_fetch(ngx_http_request_t *r,
    ngx_pt_req_t *ctx);
static void ngx_pt_manifest_fetched(ngx_http_request_t *r);
static ngx_int_t ngx_pt_manifest_head(ngx_http_request_t *r,
    ngx_pt_req_t *ctx, ngx_pt_fetch_t *f);
static ngx_int_t ngx_pt_manifest_failed(ngx_http_request_t *r,
    ngx_pt_req_t *ctx, ngx_pt_fetch_t *f);
static ngx_int_t ngx_pt_manifest_answer(ngx_http_request_t *r,
    ngx_pt_req_t *ctx, ngx_int_t status);
static ngx_int_t ngx_pt_manifest_store(ngx_http_request_t *r,
    ngx_pt_req_t *ctx, ngx_pt_fetch_t *f);
static ngx_uint_t ngx_pt_manifest_claim(ngx_http_request_t *r,
    ngx_pt_req_t *ctx, ngx_msec_t ttl);
static void ngx_pt_manifest_land(ngx_pt_req_t *ctx, ngx_int_t status);
static ngx_int_t ngx_pt_manifest_wait(ngx_http_request_t *r,
    ngx_pt_req_t *ctx, ngx_msec_t bound);
static void ngx_pt_manifest_wait_handler(ngx_event_t *ev);
static ngx_int_t ngx_pt_manifest_cleanup_add(ngx_http_request_t *r,
    ngx_pt_req_t *ctx);
static void ngx_pt_manifest_cleanup(void *data);
static ngx_int_t ngx_pt_manifest_flight_key(ngx_http_request_t *r,
    ngx_pt_req_t *ctx);


ngx_int_t
ngx_pt_manifest_request(ngx_http_request_t *r, ngx_pt_req_t *ctx)
{
    ngx_int_t  rc;

    rc = ngx_pt_manifest_lookup(r, ctx);
    if (rc != NGX_OK) {
        return rc;
    }

    if (!ctx->cached) {
        return ngx_pt_manifest_miss(r, ctx);
    }

    if (ctx->by_digest || ngx_pt_manifest_fresh(r, ctx)) {
        return ngx_pt_manifest_hit(r, ctx, NGX_PT_CACHE_HIT);
    }

    return ngx_pt_manifest_expired(r, ctx);
}


/* what the store has: the tag, the manifest record, its file's path */

static ngx_int_t
ngx_pt_manifest_lookup(ngx_http_request_t *r, ngx_pt_req_t *ctx)
{
    ngx_int_t   rc;
    ngx_str_t   digest;
    ngx_log_t  *log;

    log = r->connection->log;
    ctx->cached = 0;
    digest = ctx->reference;

    rc = ngx_pt_content_lookup(r->pool, log, &ctx->repo,
                               ctx->by_digest ? NULL : &ctx->reference,
                               &digest, &ctx->tag, &ctx->type, &ctx->size);

    if (rc == NGX_DECLINED) {
        return NGX_OK;
    }

    if (rc != NGX_OK
        || (!ctx->by_digest
            && ngx_pt_digest_parse(&digest, &ctx->digest) != NGX_OK)
        || ngx_pt_blob_path(r->pool, &ctx->digest, &ctx->path) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!ngx_pt_content_type_safe(&ctx->type)) {
        /* stored by an older module from a lying upstream: not rendered */
        ngx_str_set(&ctx->type, "application/octet-stream");
    }

    ctx->cached = 1;

    return NGX_OK;
}


/* freshness: the remote's tag_ttl (s), else pullthrough_tag_ttl */

ngx_msec_t
ngx_pt_manifest_ttl(ngx_http_request_t *r, ngx_pt_req_t *ctx)
{
    ngx_http_pullthrough_loc_conf_t  *plcf;

    if (!ngx_pt_null_num(ctx->remote->tag_ttl)) {
        return (ngx_msec_t) (ctx->remote->tag_ttl * 1000);
    }

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_pullthrough_module);

    return plcf->tag_ttl;
}


static ngx_uint_t
ngx_pt_manifest_fresh(ngx_http_request_t *r, ngx_pt_req_t *ctx)
{
    ngx_msec_t  ttl;

    ttl = ngx_pt_manifest_ttl(r, ctx);

    return ttl && ctx->tag.checked + ttl > ngx_pt_clock();
}


/* whether an expired tag may still be served: pullthrough_tag_max_stale */

static ngx_uint_t
ngx_pt_manifest_stale_ok(ngx_http_request_t *r, ngx_pt_req_t *ctx)
{
    ngx_http_pullthrough_loc_conf_t  *plcf;

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_pullthrough_module);

    return plcf->tag_max_stale == NGX_PT_UNLIMITED
           || ctx->tag.checked + ngx_pt_manifest_ttl(r, ctx)
              + plcf->tag_max_stale >= ngx_pt_clock();
}


static ngx_int_t
ngx_pt_manifest_hit(ngx_http_request_t *r, ngx_pt_req_t *ctx,
    ngx_uint_t status)
{
    ngx_int_t  rc;

    rc = ngx_pt_registry_send_file(r, &ctx->path, &ctx->type,
                                   &ctx->digest.full, ctx->size);
    if (rc != NGX_DECLINED) {
        ctx->cache_status = status;
        return rc;
    }

    /* recorded but the file is gone or cut short: fetch it again */

    ctx->cached = 0;

    return ngx_pt_manifest_miss(r, ctx);
}


/* the cached manifest of an expired tag, when the upstream cannot tell */

static ngx_int_t
ngx_pt_manifest_stale(ngx_http_request_t *r, ngx_pt_req_t *ctx,
    ngx_pt_fetch_t *f)
{
    if (ngx_pt_manifest_stale_ok(r, ctx)) {
        return ngx_pt_manifest_hit(r, ctx, NGX_PT_CACHE_STALE);
    }

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "pullthrough: \"%V:%V\" was last confirmed too long ago "
                  "for pullthrough_tag_max_stale: not served",
                  &ctx->repo, &ctx->reference);

    if (f) {
        return ngx_pt_registry_upstream_error(r, ctx, f, "MANIFEST_UNKNOWN");
    }

    ctx->cache_status = NGX_PT_CACHE_ERROR;

    return ngx_pt_registry_error(r, NGX_HTTP_BAD_GATEWAY, "UNAVAILABLE",
                                 "the upstream registry is failing and the "
                                 "cached tag is too old to be served");
}


/*
 * An expired tag: the first request makes the check, the others are
 * served the cached manifest meanwhile or wait for it.
 */

static ngx_int_t
ngx_pt_manifest_expired(ngx_http_request_t *r, ngx_pt_req_t *ctx)
{
    ngx_int_t                         rc;
    ngx_msec_t                        bound;
    ngx_pt_tag_t                      t;
    ngx_http_pullthrough_loc_conf_t  *plcf;

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_pullthrough_module);

    if (ngx_pt_manifest_flight_key(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_pt_shm_backoff_left(&ctx->remote->meta.id)) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "pullthrough manifest: \"%V:%V\" expired, its "
                       "upstream is left alone", &ctx->repo, &ctx->reference);
        return ngx_pt_manifest_stale(r, ctx, NULL);
    }

    if (ctx->waited) {
        /* the check waited for did not confirm it: failed, or gone */
        return ngx_pt_manifest_stale(r, ctx, NULL);
    }

    bound = plcf->revalidate_timeout + NGX_PT_FLIGHT_LINGER;

    if (ngx_pt_manifest_claim(r, ctx, bound)) {

        /* the check of another request (another worker's) may have ended
         * between the tag's read and this claim: read it again */

        rc = ngx_pt_content_tag(r->pool, r->connection->log, &ctx->repo,
                                &ctx->reference, &t);

        if (rc == NGX_OK && t.checked > ctx->tag.checked
            && t.digest.len == ctx->tag.digest.len
            && ngx_strncmp(t.digest.data, ctx->tag.digest.data,
                           t.digest.len) == 0)
        {
            ctx->tag = t;

            if (ngx_pt_manifest_fresh(r, ctx)) {
                ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                               "pullthrough manifest: \"%V:%V\" confirmed "
                               "meanwhile", &ctx->repo, &ctx->reference);

                ngx_pt_manifest_land(ctx, 0);
                return ngx_pt_manifest_hit(r, ctx, NGX_PT_CACHE_HIT);
            }
        }

        if (plcf->tag_revalidate == NGX_PT_REVALIDATE_BACKGROUND
            && ngx_pt_manifest_stale_ok(r, ctx))
        {
            return ngx_pt_manifest_background(r, ctx);
        }

        return ngx_pt_manifest_revalidate(r, ctx);
    }

    if (plcf->tag_revalidate == NGX_PT_REVALIDATE_WAIT
        || !ngx_pt_manifest_stale_ok(r, ctx))
    {
        return ngx_pt_manifest_wait(r, ctx, bound);
    }

    return ngx_pt_manifest_hit(r, ctx, NGX_PT_CACHE_UPDATING);
}


/* the check: a HEAD, without retries, within revalidate_timeout */

static ngx_int_t
ngx_pt_manifest_revalidate(ngx_http_request_t *r, ngx_pt_req_t *ctx)
{
    ngx_pt_settings_t                *s, *quick;
    ngx_http_pullthrough_loc_conf_t  *plcf;

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_pullthrough_module);

    s = ngx_pt_registry_settings(r, ctx);
    if (s == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    quick = ngx_palloc(r->pool, sizeof(ngx_pt_settings_t));
    if (quick == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    *quick = *s;
    quick->max_retries = 0;

    if (quick->total_timeout == 0
        || quick->total_timeout > plcf->revalidate_timeout)
    {
        quick->total_timeout = plcf->revalidate_timeout;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "pullthrough manifest: \"%V:%V\" expired, revalidating "
                   "%V", &ctx->repo, &ctx->reference, &ctx->tag.digest);

    ctx->revalidating = 1;

    return ngx_pt_registry_fetch(r, ctx, quick, "manifests", &ctx->reference,
                                 1, 0, ngx_pt_manifest_revalidated);
}


static void
ngx_pt_manifest_revalidated(ngx_http_request_t *r)
{
    ngx_int_t        rc;
    ngx_pt_req_t    *ctx;
    ngx_pt_fetch_t  *f;

    ctx = ngx_http_get_module_ctx(r, ngx_http_pullthrough_module);
    f = ctx->fetch;

    if (!ngx_pt_manifest_check_ok(f)) {
        ngx_pt_registry_finalize(r, ngx_pt_manifest_check_failed(r, ctx, f));
        return;
    }

    ngx_pt_shm_backoff_clear(&ctx->remote->meta.id);

    if (f->status == NGX_HTTP_NOT_FOUND) {
        /* as Pulp does: what was cached stays served */

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "pullthrough: remote \"%V\" no longer has \"%V:%V\": "
                      "the cached manifest is served", &ctx->remote->name,
                      &ctx->name, &ctx->reference);

        rc = ngx_pt_content_tag_confirm(r->pool, r->connection->log,
                                        &ctx->repo, &ctx->reference,
                                        &ctx->tag.digest);
        ngx_pt_manifest_land(ctx, rc == NGX_ERROR ? NGX_PT_FLIGHT_ABANDONED
                                                  : 0);
        ngx_pt_registry_finalize(r, ngx_pt_manifest_hit(r, ctx,
                                                        NGX_PT_CACHE_STALE));
        return;
    }

    if (f->digest.len == ctx->tag.digest.len
        && ngx_strncmp(f->digest.data, ctx->tag.digest.data,
                       f->digest.len) == 0)
    {
        rc = ngx_pt_content_tag_confirm(r->pool, r->connection->log,
                                        &ctx->repo, &ctx->reference,
                                        &ctx->tag.digest);
        if (rc == NGX_ERROR) {
            ngx_pt_registry_finalize(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        ngx_pt_manifest_land(ctx, 0);
        ngx_pt_registry_finalize(r, ngx_pt_manifest_hit(r, ctx,
                                                NGX_PT_CACHE_REVALIDATED));
        return;
    }

    /* moved, or a HEAD without Docker-Content-Digest: the GET tells */

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "pullthrough manifest: \"%V:%V\" upstream is at \"%V\"",
                   &ctx->repo, &ctx->reference, &f->digest);

    ngx_pt_registry_finalize(r, ngx_pt_manifest_fetch(r, ctx));
}


/* what the check's answer is: 200 or 404 tell, the rest fail */

static ngx_uint_t
ngx_pt_manifest_check_ok(ngx_pt_fetch_t *f)
{
    return f->header && f->rc != NGX_ERROR
           && f->rc < NGX_HTTP_SPECIAL_RESPONSE
           && (f->status == NGX_HTTP_OK || f->status == NGX_HTTP_NOT_FOUND);
}


static ngx_uint_t
ngx_pt_manifest_fetch_ok(ngx_pt_fetch_t *f)
{
    return f->header && f->status == NGX_HTTP_OK && !f->too_big
           && f->rc < NGX_HTTP_SPECIAL_RESPONSE && f->rc != NGX_ERROR;
}


/* stale-if-error: the upstream could not confirm an expired tag */

static ngx_int_t
ngx_pt_manifest_check_failed(ngx_http_request_t *r, ngx_pt_req_t *ctx,
    ngx_pt_fetch_t *f)
{
    ngx_pt_manifest_check_note(r, ctx, f);

    return ngx_pt_manifest_stale(r, ctx, f);
}


/* a failed check: logged once, the remote left alone, its waiters told */

static void
ngx_pt_manifest_check_note(ngx_http_request_t *r, ngx_pt_req_t *ctx,
    ngx_pt_fetch_t *f)
{
    u_char      buf[64], *last;
    ngx_msec_t  period;

    if (f->header) {
        last = ngx_sprintf(buf, "it answered %ui", f->status);

    } else if (f->rc == NGX_HTTP_GATEWAY_TIME_OUT) {
        last = ngx_cpymem(buf, "timed out", sizeof("timed out") - 1);

    } else {
        last = ngx_cpymem(buf, "unreachable", sizeof("unreachable") - 1);
    }

    period = ngx_pt_shm_backoff_fail(&ctx->remote->meta.id);

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "pullthrough: remote \"%V\" could not revalidate "
                  "\"%V:%V\" (%*s): the cached manifest is served, the "
                  "remote is left alone for %M ms", &ctx->remote->name,
                  &ctx->name, &ctx->reference, last - buf, buf, period);

    ngx_pt_manifest_land(ctx, f->header ? (ngx_int_t) f->status
                                        : NGX_HTTP_BAD_GATEWAY);
}


/*
 * pullthrough_tag_revalidate background: the cached manifest is answered
 * at once and the check runs after it, holding the request (and so the
 * client's connection, as nginx's background cache updates do) until it
 * ends; a moved tag is then fetched and recorded for the next clients.
 */

static ngx_int_t
ngx_pt_manifest_background(ngx_http_request_t *r, ngx_pt_req_t *ctx)
{
    ngx_int_t        rc;
    ngx_file_info_t  fi;

    /* only a manifest that can be served from disk is answered first */

    if (ngx_file_info(ctx->path.data, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) != ctx->size)
    {
        return ngx_pt_manifest_revalidate(r, ctx);
    }

    rc = ngx_pt_manifest_revalidate(r, ctx);
    if (rc != NGX_DONE) {
        return rc;
    }

    ctx->background = 1;
    ctx->fetch->done = ngx_pt_manifest_bg_done;
    ctx->bg.handler = ngx_pt_manifest_bg_handler;
    ctx->bg.data = r;
    ctx->bg.log = r->connection->log;
    ctx->cache_status = NGX_PT_CACHE_UPDATING;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "pullthrough manifest: \"%V:%V\" answered, checked in "
                   "the background", &ctx->repo, &ctx->reference);

    /* the exchange's reference on r is given back when the check ends */

    rc = ngx_pt_registry_send_file(r, &ctx->path, &ctx->type,
                                   &ctx->digest.full, ctx->size);

    return rc == NGX_DECLINED ? NGX_HTTP_INTERNAL_SERVER_ERROR : rc;
}


static void
ngx_pt_manifest_bg_done(ngx_pt_fetch_t *f, ngx_int_t rc)
{
    ngx_http_request_t *r = f->data;

    ngx_pt_req_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_pullthrough_module);

    /* on its own event: the subrequest may not be finalized yet */
    ngx_post_event(&ctx->bg, &ngx_posted_events);
}


static void
ngx_pt_manifest_bg_handler(ngx_event_t *ev)
{
    ngx_pt_req_t        *ctx;
    ngx_pt_fetch_t      *f;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ev->data;
    c = r->connection;
    ctx = ngx_http_get_module_ctx(r, ngx_http_pullthrough_module);
    f = ctx->fetch;

    if (f->head) {
        ngx_pt_manifest_bg_checked(r, ctx, f);

    } else {
        ngx_pt_manifest_bg_fetched(r, ctx, f);
    }

    /* the reference of the exchange that ended */
    ngx_http_finalize_request(r, NGX_DONE);

    ngx_http_run_posted_requests(c);
}


static void
ngx_pt_manifest_bg_checked(ngx_http_request_t *r, ngx_pt_req_t *ctx,
    ngx_pt_fetch_t *f)
{
    ngx_int_t  rc;

    if (!ngx_pt_manifest_check_ok(f)) {
        ngx_pt_manifest_check_note(r, ctx, f);
        return;
    }

    ngx_pt_shm_backoff_clear(&ctx->remote->meta.id);

    if (f->status == NGX_HTTP_NOT_FOUND
        || (f->digest.len == ctx->tag.digest.len
            && ngx_strncmp(f->digest.data, ctx->tag.digest.data,
                           f->digest.len) == 0))
    {
        if (f->status == NGX_HTTP_NOT_FOUND) {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "pullthrough: remote \"%V\" no longer has "
                          "\"%V:%V\": the cached manifest is served",
                          &ctx->remote->name, &ctx->name, &ctx->reference);
        }

        rc = ngx_pt_content_tag_confirm(r->pool, r->connection->log,
                                        &ctx->repo, &ctx->reference,
                                        &ctx->tag.digest);
        ngx_pt_manifest_land(ctx, rc == NGX_ERROR ? NGX_PT_FLIGHT_ABANDONED
                                                  : 0);
        return;
    }

    rc = ngx_pt_manifest_fetch(r, ctx);

    if (rc == NGX_DONE) {
        ctx->fetch->done = ngx_pt_manifest_bg_done;
        return;
    }

    ngx_pt_manifest_land(ctx, NGX_PT_FLIGHT_ABANDONED);
}


static void
ngx_pt_manifest_bg_fetched(ngx_http_request_t *r, ngx_pt_req_t *ctx,
    ngx_pt_fetch_t *f)
{
    ngx_int_t  rc;

    if (!ngx_pt_manifest_fetch_ok(f)) {
        if (!f->header || f->status >= NGX_HTTP_INTERNAL_SERVER_ERROR
            || f->status == NGX_HTTP_TOO_MANY_REQUESTS)
        {
            (void) ngx_pt_shm_backoff_fail(&ctx->remote->meta.id);
        }

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "pullthrough: remote \"%V\" moved \"%V:%V\" but its "
                      "new manifest could not be fetched: the cached one "
                      "stays", &ctx->remote->name, &ctx->name,
                      &ctx->reference);

        ngx_pt_manifest_land(ctx, f->header ? (ngx_int_t) f->status
                                            : NGX_HTTP_BAD_GATEWAY);
        return;
    }

    rc = ngx_pt_manifest_store(r, ctx, f);

    ngx_pt_manifest_land(ctx, rc == NGX_OK ? 0 : NGX_HTTP_BAD_GATEWAY);
}


/* nothing cached: one flight for every client, or the answer remembered */

static ngx_int_t
ngx_pt_manifest_miss(ngx_http_request_t *r, ngx_pt_req_t *ctx)
{
    ngx_msec_t  bound;

    if (ngx_pt_manifest_flight_key(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* an absence is remembered under the flight's key */

    if (!ctx->flight.owner && ngx_pt_shm_negative_get(&ctx->flight.key)) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "pullthrough manifest: \"%V:%V\" is known missing",
                       &ctx->repo, &ctx->reference);
        return ngx_pt_manifest_answer(r, ctx, NGX_HTTP_NOT_FOUND);
    }

    if (r->method == NGX_HTTP_HEAD && !ctx->flight.owner) {
        /* relayed, never stored: nothing for others to wait for */
        ctx->cache_status = NGX_PT_CACHE_MISS;
        return ngx_pt_registry_fetch(r, ctx, NULL, "manifests",
                                     &ctx->reference, 1, 0,
                                     ngx_pt_manifest_fetched);
    }

    if (!ctx->flight.owner) {
        if (ctx->waited && ctx->flight.outcome > 0) {
            /* the flight waited for failed: its answer, no other try */
            return ngx_pt_manifest_answer(r, ctx, ctx->flight.outcome);
        }

        bound = ngx_pt_registry_settings(r, ctx)
                ? ctx->settings->total_timeout : 0;
        bound = bound ? bound + NGX_PT_FLIGHT_LINGER : NGX_PT_FLIGHT_MISS;

        if (!ngx_pt_manifest_claim(r, ctx, bound) && !ctx->waited) {
            return ngx_pt_manifest_wait(r, ctx, bound);
        }
    }

    return ngx_pt_manifest_fetch(r, ctx);
}


static ngx_int_t
ngx_pt_manifest_fetch(ngx_http_request_t *r, ngx_pt_req_t *ctx)
{
    ngx_http_pullthrough_loc_conf_t  *plcf;

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_pullthrough_module);

    if (!ctx->revalidating) {
        ctx->cache_status = NGX_PT_CACHE_MISS;
    }

    return ngx_pt_registry_fetch(r, ctx, NULL, "manifests", &ctx->reference,
                                 0, plcf->manifest_max_size,
                                 ngx_pt_manifest_fetched);
}


static void
ngx_pt_manifest_fetched(ngx_http_request_t *r)
{
    ngx_int_t        rc;
    ngx_str_t        body;
    ngx_pt_req_t    *ctx;
    ngx_pt_fetch_t  *f;

    ctx = ngx_http_get_module_ctx(r, ngx_http_pullthrough_module);
    f = ctx->fetch;

    if (!ngx_pt_manifest_fetch_ok(f)) {
        ngx_pt_registry_finalize(r, ngx_pt_manifest_failed(r, ctx, f));
        return;
    }

    if (f->head) {
        ngx_pt_registry_finalize(r, ngx_pt_manifest_head(r, ctx, f));
        return;
    }

    rc = ngx_pt_manifest_store(r, ctx, f);

    if (rc != NGX_OK) {
        ctx->cache_status = NGX_PT_CACHE_ERROR;
        ngx_pt_manifest_land(ctx, NGX_HTTP_BAD_GATEWAY);

        if (rc == NGX_DECLINED) {
            rc = ngx_pt_registry_error(r, NGX_HTTP_BAD_GATEWAY,
                                       "MANIFEST_INVALID", ctx->refusal);
        }

        ngx_pt_registry_finalize(r, rc);
        return;
    }

    ngx_pt_manifest_land(ctx, 0);

    if (ctx->revalidating) {
        ctx->cache_status = (ctx->tag.digest.len == ctx->digest.full.len
                             && ngx_strncmp(ctx->tag.digest.data,
                                            ctx->digest.full.data,
                                            ctx->tag.digest.len) == 0)
                            ? NGX_PT_CACHE_REVALIDATED : NGX_PT_CACHE_EXPIRED;
    }

    body.data = f->body->pos;
    body.len = f->body->last - f->body->pos;

    if (ngx_pt_registry_set_header(r, "Docker-Content-Digest",
                                   &ctx->digest.full) != NGX_OK
        || ngx_pt_registry_etag(r, &ctx->digest.full) != NGX_OK)
    {
        ngx_pt_registry_finalize(r, NGX_ERROR);
        return;
    }

    ngx_pt_registry_finalize(r, ngx_pt_send(r, NGX_HTTP_OK, &f->content_type,
                                            &body));
}


/* a HEAD miss: the upstream's answer, nothing verified, nothing stored */

static ngx_int_t
ngx_pt_manifest_head(ngx_http_request_t *r, ngx_pt_req_t *ctx,
    ngx_pt_fetch_t *f)
{
    ngx_str_t  digest;

    digest = ctx->by_digest ? ctx->reference : f->digest;

    if (digest.len
        && ngx_pt_registry_set_header(r, "Docker-Content-Digest", &digest)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = f->length;
    r->headers_out.content_type = f->content_type;
    r->headers_out.content_type_len = f->content_type.len;

    return ngx_http_send_header(r);
}


/*
 * The upstream did not give the manifest: an absence is remembered, a
 * failure makes the remote's back-off grow, and an expired tag whose new
 * manifest could not be had is served as it was.
 */

static ngx_int_t
ngx_pt_manifest_failed(ngx_http_request_t *r, ngx_pt_req_t *ctx,
    ngx_pt_fetch_t *f)
{
    ngx_int_t                         rc;
    ngx_http_pullthrough_loc_conf_t  *plcf;

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_pullthrough_module);

    if (f->header && f->status == NGX_HTTP_NOT_FOUND) {
        if (plcf->negative_ttl && !ctx->cached) {
            ngx_pt_shm_negative_set(&ctx->flight.key, plcf->negative_ttl);
        }

    } else if (!f->header || f->status >= NGX_HTTP_INTERNAL_SERVER_ERROR
               || f->status == NGX_HTTP_TOO_MANY_REQUESTS)
    {
        (void) ngx_pt_shm_backoff_fail(&ctx->remote->meta.id);
    }

    if (ctx->revalidating && ctx->cached) {
        ngx_pt_manifest_land(ctx, f->header ? (ngx_int_t) f->status
                                            : NGX_HTTP_BAD_GATEWAY);
        return ngx_pt_manifest_stale(r, ctx, f);
    }

    rc = ngx_pt_registry_upstream_error(r, ctx, f, "MANIFEST_UNKNOWN");

    ngx_pt_manifest_land(ctx, r->headers_out.status
                              ? (ngx_int_t) r->headers_out.status
                              : NGX_HTTP_BAD_GATEWAY);

    return rc;
}


/* what the clients of a failed flight get, without asking again */

static ngx_int_t
ngx_pt_manifest_answer(ngx_http_request_t *r, ngx_pt_req_t *ctx,
    ngx_int_t status)
{
    ngx_int_t  rc;

    /* the owner's own failure is a failed gateway to its waiters */

    rc = ngx_pt_registry_status_error(r, ctx,
                                      status == NGX_HTTP_INTERNAL_SERVER_ERROR
                                      ? NGX_HTTP_BAD_GATEWAY : status,
                                      "MANIFEST_UNKNOWN");

    if (status == NGX_HTTP_NOT_FOUND) {
        /* remembered, not asked again */
        ctx->cache_status = NGX_PT_CACHE_HIT;
    }

    return rc;
}


/*
 * Verifies a fetched manifest against the digest asked for (or the one
 * upstream announced for a tag), stores its exact bytes and records it.
 * NGX_DECLINED: refused, ctx->refusal says why (logged already).
 */

static ngx_int_t
ngx_pt_manifest_store(ngx_http_request_t *r, ngx_pt_req_t *ctx,
    ngx_pt_fetch_t *f)
{
    ngx_str_t                computed, expected;
    const EVP_MD            *md;
    ngx_pt_digest_t          announced;
    ngx_pt_manifest_info_t   mi;

    md = EVP_sha256();
    ngx_str_null(&expected);

    if (ctx->by_digest) {
        md = ctx->digest.md;
        expected = ctx->reference;

    } else if (f->digest.len) {
        if (ngx_pt_digest_parse(&f->digest, &announced) != NGX_OK) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "pullthrough: upstream sent an invalid "
                          "Docker-Content-Digest \"%V\" for \"%V\"",
                          &f->digest, &f->url);
            ctx->refusal = "upstream sent an invalid digest";
            return NGX_DECLINED;
        }

        md = announced.md;
        expected = f->digest;
    }

    if (ngx_pt_digest_compute(r->pool, md, f->body->pos,
                              f->body->last - f->body->pos, &computed)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (expected.len
        && (expected.len != computed.len
            || ngx_strncmp(expected.data, computed.data, computed.len) != 0))
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "pullthrough: manifest from \"%V\" has digest %V, "
                      "expected %V: not stored", &f->url, &computed,
                      &expected);
        ctx->refusal = "the upstream manifest does not match its digest";
        ngx_pt_shm_stat_add(NGX_PT_STAT_DIGEST_MISMATCHES, 1);
        return NGX_DECLINED;
    }

    if (ngx_pt_digest_parse(&computed, &ctx->digest) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memzero(&mi, sizeof(ngx_pt_manifest_info_t));

    mi.repo = ctx->repo;
    mi.dist = ctx->dist;
    mi.digest = computed;
    mi.rec.size = f->body->last - f->body->pos;

    if (!ctx->by_digest) {
        mi.tag = ctx->reference;
    }

    if (ngx_pt_content_parse_manifest(r->pool, &mi, f->body->pos,
                                      f->body->last - f->body->pos)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "pullthrough: manifest from \"%V\" is not valid JSON: "
                      "not stored", &f->url);
        ctx->refusal = "the upstream manifest is not valid";
        return NGX_DECLINED;
    }

    /* the upstream's Content-Type if it is a registry type, else the
     * manifest's own */

    ngx_pt_content_media_type(&mi, &f->content_type);
    f->content_type = mi.rec.media_type;

    /* an index by tag: its manifests too, then one version */

    if (ngx_pt_index_prepare(r, ctx, &mi) == NGX_ERROR
        || ngx_pt_blob_write_small(r->pool, r->connection->log, &ctx->digest,
                                   f->body->pos, f->body->last - f->body->pos)
           != NGX_OK
        || ngx_pt_content_manifest_add(r->pool, r->connection->log, &mi)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_pt_metrics_upstream(&f->settings->remote_name,
                            NGX_PT_METRICS_BYTES_ONLY, mi.rec.size);

    if (ctx->index && ngx_pt_index_start(ctx->index) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_OK;
}


/* keys in the shared zone: <repo>\0<reference> */

ngx_int_t
ngx_pt_manifest_key(ngx_pool_t *pool, ngx_str_t *repo, ngx_str_t *ref,
    ngx_str_t *key)
{
    u_char  *p;

    key->len = repo->len + 1 + ref->len;
    key->data = ngx_pnalloc(pool, key->len);
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(key->data, repo->data, repo->len);
    *p++ = '\0';
    ngx_memcpy(p, ref->data, ref->len);

    return NGX_OK;
}


/* the key of the request's flight (and absence): made when one is needed,
 * not on the hits' path */

static ngx_int_t
ngx_pt_manifest_flight_key(ngx_http_request_t *r, ngx_pt_req_t *ctx)
{
    if (ctx->flight.key.data) {
        return NGX_OK;
    }

    ctx->flight.log = r->connection->log;

    return ngx_pt_manifest_key(r->pool, &ctx->repo, &ctx->reference,
                               &ctx->flight.key);
}


/* flights: 1 when this request is to make it */

static ngx_uint_t
ngx_pt_manifest_claim(ngx_http_request_t *r, ngx_pt_req_t *ctx,
    ngx_msec_t ttl)
{
    if (ngx_pt_manifest_cleanup_add(r, ctx) != NGX_OK) {
        /* not shared: nothing could land the flight for its waiters */
        return 1;
    }

    return ngx_pt_flight_claim(&ctx->flight, ttl);
}


static void
ngx_pt_manifest_land(ngx_pt_req_t *ctx, ngx_int_t status)
{
    ngx_pt_flight_land(&ctx->flight, status);
}


/* r waits for the flight in ctx->flight, at most bound ms */

static ngx_int_t
ngx_pt_manifest_wait(ngx_http_request_t *r, ngx_pt_req_t *ctx,
    ngx_msec_t bound)
{
    ctx->wait.handler = ngx_pt_manifest_wait_handler;
    ctx->wait.data = r;
    ctx->wait.log = r->connection->log;

    ngx_pt_flight_wait(&ctx->flight, &ctx->wait, bound);

    /* r waits: the handler's NGX_DONE gives this reference back */
    r->main->count++;

    return NGX_DONE;
}


static void
ngx_pt_manifest_wait_handler(ngx_event_t *ev)
{
    ngx_pt_req_t        *ctx;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ev->data;
    c = r->connection;
    ctx = ngx_http_get_module_ctx(r, ngx_http_pullthrough_module);

    if (!ngx_pt_flight_over(&ctx->flight)) {
        return;
    }

    ctx->waited = 1;

    ngx_pt_registry_finalize(r, ngx_pt_manifest_request(r, ctx));

    ngx_http_run_posted_requests(c);
}


/* a request that ends waiting or owning a flight lets go of it */

static ngx_int_t
ngx_pt_manifest_cleanup_add(ngx_http_request_t *r, ngx_pt_req_t *ctx)
{
    ngx_pool_cleanup_t  *cln;

    if (ctx->request) {
        return NGX_OK;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_pt_manifest_cleanup;
    cln->data = ctx;
    ctx->request = r;

    return NGX_OK;
}


static void
ngx_pt_manifest_cleanup(void *data)
{
    ngx_pt_req_t  *ctx = data;

    ngx_pt_flight_unwait(&ctx->flight);
    ngx_pt_manifest_land(ctx, NGX_PT_FLIGHT_ABANDONED);

    if (ctx->bg.posted) {
        ngx_delete_posted_event(&ctx->bg);
    }
}
