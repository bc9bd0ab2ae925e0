
/*
 * ngx_pullthrough: the OCI 1.1 referrers API, GET /v2/<name>/referrers/
 * <digest>: the signatures, SBOMs and other artifacts whose subject is
 * that manifest, as an image index. Asked of the upstream's own referrers
 * API first; an upstream without it (404, 400, 405) is asked for the
 * referrers tag schema's index, the tag sha256-<hex>; an upstream with
 * neither, or none reachable, gives an empty index. So a repository is
 * never unknown here: a client always gets an index it can read.
 * ?artifactType= keeps the descriptors of that type, and says so in
 * OCI-Filters-Applied. What the upstream gave (its index, the tag's, or
 * "none": an empty index) is kept per repository and subject and served
 * as a tag is, for the freshness period, then asked again, and served
 * stale when the upstream fails. The artifacts themselves are manifests
 * and blobs, pulled through like any other.
 */


#include <ngx_pt.h>
#include <ngx_pt_registry_int.h>


#define NGX_PT_INDEX_TYPE  "application/vnd.oci.image.index.v1+json"


static ngx_int_t ngx_pt_referrers_cached(ngx_http_request_t *r,
    ngx_pt_req_t *ctx);
static ngx_int_t ngx_pt_referrers_failed(ngx_http_request_t *r,
    ngx_pt_req_t *ctx);
static void ngx_pt_referrers_store(ngx_http_request_t *r, ngx_pt_req_t *ctx,
    ngx_str_t *index);
static void ngx_pt_referrers_api_done(ngx_http_request_t *r);
static void ngx_pt_referrers_tag_done(ngx_http_request_t *r);
static yajl_val ngx_pt_referrers_index(ngx_http_request_t *r,
    ngx_pt_fetch_t *f, ngx_str_t *body);
static yajl_val ngx_pt_referrers_parse(ngx_http_request_t *r,
    ngx_str_t *body, ngx_str_t *from);
static ngx_int_t ngx_pt_referrers_answer(ngx_http_request_t *r,
    yajl_val manifests);
static ngx_uint_t ngx_pt_referrers_type_is(yajl_val d, ngx_str_t *type);


static ngx_str_t  ngx_pt_referrers_type = ngx_string(NGX_PT_INDEX_TYPE);
static ngx_str_t  ngx_pt_referrers_none = ngx_string("{\"manifests\":[]}");


ngx_int_t
ngx_pt_referrers_request(ngx_http_request_t *r, ngx_pt_req_t *ctx)
{
    ngx_http_pullthrough_loc_conf_t  *plcf;

    ngx_int_t   rc;
    ngx_msec_t  ttl;

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_pullthrough_module);

    rc = ngx_pt_referrers_cached(r, ctx);
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ttl = ngx_pt_manifest_ttl(r, ctx);

    if (rc == NGX_OK && ttl && ctx->referrers_at + ttl > ngx_pt_clock()) {
        ctx->cache_status = NGX_PT_CACHE_HIT;
        return ngx_pt_referrers_answer(r,
                          ngx_pt_referrers_parse(r, &ctx->referrers, NULL));
    }

    ctx->cache_status = NGX_PT_CACHE_MISS;

    return ngx_pt_registry_fetch(r, ctx, NULL, "referrers",
                                 &ctx->digest.full, 0,
                                 plcf->manifest_max_size,
                                 ngx_pt_referrers_api_done);
}


/* the upstream's referrers API answered, or could not */

static void
ngx_pt_referrers_api_done(ngx_http_request_t *r)
{
    u_char                           *p;
    yajl_val                          manifests;
    ngx_str_t                         tag, body;
    ngx_pt_req_t                     *ctx;
    ngx_pt_fetch_t                   *f;
    ngx_http_pullthrough_loc_conf_t  *plcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_pullthrough_module);
    f = ctx->fetch;

    manifests = ngx_pt_referrers_index(r, f, &body);

    if (manifests) {
        ngx_pt_referrers_store(r, ctx, &body);
        ngx_pt_registry_finalize(r, ngx_pt_referrers_answer(r, manifests));
        return;
    }

    if (!f->header
        || (f->status != NGX_HTTP_NOT_FOUND
            && f->status != NGX_HTTP_BAD_REQUEST
            && f->status != NGX_HTTP_NOT_ALLOWED))
    {
        ngx_pt_registry_finalize(r, ngx_pt_referrers_failed(r, ctx));
        return;
    }

    /* no referrers API upstream: the referrers tag schema's tag */

    tag.len = ctx->digest.full.len;
    tag.data = ngx_pnalloc(r->pool, tag.len);
    if (tag.data == NULL) {
        ngx_pt_registry_finalize(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    p = ngx_cpymem(tag.data, ctx->digest.full.data, tag.len);
    p = ngx_strlchr(tag.data, p, ':');
    if (p) {
        *p = '-';
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "pullthrough referrers: no API upstream, tag \"%V\"",
                   &tag);

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_pullthrough_module);

    ngx_pt_registry_finalize(r, ngx_pt_registry_fetch(r, ctx, NULL,
                                 "manifests", &tag, 0,
                                 plcf->manifest_max_size,
                                 ngx_pt_referrers_tag_done));
}


static void
ngx_pt_referrers_tag_done(ngx_http_request_t *r)
{
    yajl_val         manifests;
    ngx_str_t        body;
    ngx_pt_req_t    *ctx;
    ngx_pt_fetch_t  *f;

    ctx = ngx_http_get_module_ctx(r, ngx_http_pullthrough_module);
    f = ctx->fetch;

    manifests = ngx_pt_referrers_index(r, f, &body);

    if (manifests) {
        ngx_pt_referrers_store(r, ctx, &body);

    } else if (f->header && f->status == NGX_HTTP_NOT_FOUND) {
        /* neither the API nor the tag: nothing refers to it, for now */
        ngx_pt_referrers_store(r, ctx, &ngx_pt_referrers_none);

    } else {
        ngx_pt_registry_finalize(r, ngx_pt_referrers_failed(r, ctx));
        return;
    }

    ngx_pt_registry_finalize(r, ngx_pt_referrers_answer(r, manifests));
}


/* the stored index of the subject, if any, into ctx */

static ngx_int_t
ngx_pt_referrers_cached(ngx_http_request_t *r, ngx_pt_req_t *ctx)
{
    MDB_txn    *txn;
    ngx_int_t   rc;

    if (ngx_pt_txn_begin(r->connection->log, 0, &txn) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_pt_referrers_get(r->pool, r->connection->log, txn, &ctx->repo,
                              &ctx->digest.full, &ctx->referrers_at,
                              &ctx->referrers);

    ngx_pt_txn_abort(txn);

    if (rc != NGX_OK) {
        ngx_str_null(&ctx->referrers);
    }

    return rc;
}


/* the upstream could not say: what it said before, else an empty index */

static ngx_int_t
ngx_pt_referrers_failed(ngx_http_request_t *r, ngx_pt_req_t *ctx)
{
    if (ctx->referrers.len) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "pullthrough: the referrers of %V in \"%V\" could "
                      "not be asked for: the stored index is answered",
                      &ctx->digest.full, &ctx->repo);

        ctx->cache_status = NGX_PT_CACHE_STALE;

        return ngx_pt_referrers_answer(r,
                          ngx_pt_referrers_parse(r, &ctx->referrers, NULL));
    }

    /* nothing is known to refer to it */

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "pullthrough: the referrers of %V in \"%V\" could not be "
                  "asked for: an empty index is answered",
                  &ctx->digest.full, &ctx->repo);

    ctx->cache_status = NGX_PT_CACHE_ERROR;

    return ngx_pt_referrers_answer(r, NULL);
}


/* what the upstream said, kept: a failure to keep it is only logged */

static void
ngx_pt_referrers_store(ngx_http_request_t *r, ngx_pt_req_t *ctx,
    ngx_str_t *index)
{
    MDB_txn    *txn;
    ngx_log_t  *log;

    log = r->connection->log;

    if (ngx_pt_txn_begin(log, 1, &txn) != NGX_OK) {
        return;
    }

    if (ngx_pt_referrers_put(r->pool, log, txn, &ctx->repo,
                             &ctx->digest.full, ngx_pt_clock(), index)
        != NGX_OK)
    {
        ngx_pt_txn_abort(txn);
        return;
    }

    (void) ngx_pt_txn_commit(log, txn);
}


/* the "manifests" of an index the upstream sent, or NULL; its body */

static yajl_val
ngx_pt_referrers_index(ngx_http_request_t *r, ngx_pt_fetch_t *f,
    ngx_str_t *body)
{
    if (!f->header || f->status != NGX_HTTP_OK || f->too_big
        || f->body == NULL)
    {
        return NULL;
    }

    body->data = f->body->pos;
    body->len = f->body->last - f->body->pos;

    return ngx_pt_referrers_parse(r, body, &f->url);
}


static yajl_val
ngx_pt_referrers_parse(ngx_http_request_t *r, ngx_str_t *body,
    ngx_str_t *from)
{
    yajl_val   doc, manifests;
    ngx_str_t  err;

    doc = ngx_pt_json_parse(r->pool, body, &err);

    manifests = doc ? ngx_pt_json_get(doc, "manifests") : NULL;

    if (manifests == NULL || !YAJL_IS_ARRAY(manifests)) {
        if (from) {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "pullthrough: \"%V\" is not an image index: "
                          "ignored", from);
        }

        return NULL;
    }

    return manifests;
}


/* an index of the descriptors (of one artifactType when asked) */

static ngx_int_t
ngx_pt_referrers_answer(ngx_http_request_t *r, yajl_val manifests)
{
    size_t      i;
    yajl_gen    g;
    ngx_int_t   rc;
    ngx_str_t   type, body, applied;
    yajl_val    d;

    rc = ngx_pt_registry_arg(r, "artifactType", &type);
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_OK) {
        ngx_str_set(&applied, "artifactType");
        if (ngx_pt_registry_set_header(r, "OCI-Filters-Applied", &applied)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    g = ngx_pt_json_gen(r->pool);
    if (g == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_pt_json_map_open(g);
    ngx_pt_json_key(g, "schemaVersion");
    ngx_pt_json_int(g, 2);
    ngx_pt_json_key(g, "mediaType");
    ngx_pt_json_cstr(g, NGX_PT_INDEX_TYPE);
    ngx_pt_json_key(g, "manifests");
    ngx_pt_json_array_open(g);

    for (i = 0; manifests && i < manifests->u.array.len; i++) {
        d = manifests->u.array.values[i];

        if (!YAJL_IS_OBJECT(d)
            || (type.len && !ngx_pt_referrers_type_is(d, &type)))
        {
            continue;
        }

        ngx_pt_json_value(g, d);
    }

    ngx_pt_json_array_close(g);
    ngx_pt_json_map_close(g);

    if (ngx_pt_json_result(g, r->pool, &body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_pt_send(r, NGX_HTTP_OK, &ngx_pt_referrers_type, &body);
}


static ngx_uint_t
ngx_pt_referrers_type_is(yajl_val d, ngx_str_t *type)
{
    yajl_val  t;

    t = ngx_pt_json_get(d, "artifactType");

    return t && YAJL_IS_STRING(t)
           && ngx_strlen(t->u.string) == type->len
           && ngx_strncmp(t->u.string, type->data, type->len) == 0;
}
