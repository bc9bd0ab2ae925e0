
/*
 * ngx_pullthrough: the OCI 1.1 referrers API, GET /v2/<name>/referrers/
 * <digest>: the signatures, SBOMs and other artifacts whose subject is
 * that manifest, as an image index. Asked of the upstream's own referrers
 * API first; an upstream without it (404, 400, 405) is asked for the
 * referrers tag schema's index, the tag sha256-<hex>; an upstream with
 * neither, or none reachable, gives an empty index. So a repository is
 * never unknown here: a client always gets an index it can read.
 * ?artifactType= keeps the descriptors of that type, and says so in
 * OCI-Filters-Applied. The artifacts themselves are manifests and blobs,
 * pulled through like any other.
 */


#include <ngx_pt.h>
#include <ngx_pt_registry_int.h>


#define NGX_PT_INDEX_TYPE  "application/vnd.oci.image.index.v1+json"


static void ngx_pt_referrers_api_done(ngx_http_request_t *r);
static void ngx_pt_referrers_tag_done(ngx_http_request_t *r);
static yajl_val ngx_pt_referrers_index(ngx_http_request_t *r,
    ngx_pt_fetch_t *f);
static ngx_int_t ngx_pt_referrers_answer(ngx_http_request_t *r,
    yajl_val manifests);
static ngx_uint_t ngx_pt_referrers_type_is(yajl_val d, ngx_str_t *type);


static ngx_str_t  ngx_pt_referrers_type = ngx_string(NGX_PT_INDEX_TYPE);


ngx_int_t
ngx_pt_referrers_request(ngx_http_request_t *r, ngx_pt_req_t *ctx)
{
    ngx_http_pullthrough_loc_conf_t  *plcf;

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_pullthrough_module);

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
    ngx_str_t                         tag;
    ngx_pt_req_t                     *ctx;
    ngx_pt_fetch_t                   *f;
    ngx_http_pullthrough_loc_conf_t  *plcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_pullthrough_module);
    f = ctx->fetch;

    manifests = ngx_pt_referrers_index(r, f);

    if (manifests) {
        ngx_pt_registry_finalize(r, ngx_pt_referrers_answer(r, manifests));
        return;
    }

    if (!f->header
        || (f->status != NGX_HTTP_NOT_FOUND
            && f->status != NGX_HTTP_BAD_REQUEST
            && f->status != NGX_HTTP_NOT_ALLOWED))
    {
        /* no upstream to ask: nothing is known to refer to it */
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "pullthrough: the referrers of %V in \"%V\" could "
                      "not be asked for: an empty index is answered",
                      &ctx->digest.full, &ctx->repo);

        ngx_pt_registry_finalize(r, ngx_pt_referrers_answer(r, NULL));
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
    ngx_pt_req_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_pullthrough_module);

    /* the tag's index, or nothing refers to it */

    ngx_pt_registry_finalize(r, ngx_pt_referrers_answer(r,
                                ngx_pt_referrers_index(r, ctx->fetch)));
}


/* the "manifests" of an index the upstream sent, or NULL */

static yajl_val
ngx_pt_referrers_index(ngx_http_request_t *r, ngx_pt_fetch_t *f)
{
    yajl_val   doc, manifests;
    ngx_str_t  body, err;

    if (!f->header || f->status != NGX_HTTP_OK || f->too_big
        || f->body == NULL)
    {
        return NULL;
    }

    body.data = f->body->pos;
    body.len = f->body->last - f->body->pos;

    doc = ngx_pt_json_parse(r->pool, &body, &err);

    manifests = doc ? ngx_pt_json_get(doc, "manifests") : NULL;

    if (manifests == NULL || !YAJL_IS_ARRAY(manifests)) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "pullthrough: \"%V\" is not an image index: ignored",
                      &f->url);
        return NULL;
    }

    return manifests;
}


/* an index of the descriptors (of one artifactType when asked) */

static ngx_int_t
ngx_pt_referrers_answer(ngx_http_request_t *r, yajl_val manifests)
{
    u_char     *p;
    size_t      i;
    yajl_gen    g;
    ngx_str_t   arg, type, body, applied;
    yajl_val    d;

    ngx_str_null(&type);

    if (ngx_http_arg(r, (u_char *) "artifactType", 12, &arg) == NGX_OK
        && arg.len)
    {
        type.data = ngx_pnalloc(r->pool, arg.len);
        if (type.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = type.data;
        ngx_unescape_uri(&p, &arg.data, arg.len, 0);
        type.len = p - type.data;

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
