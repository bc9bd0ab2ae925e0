
/*
 * ngx_pullthrough: the registry API on /v2/ (the pull side of the OCI
 * distribution spec). Hits are files served by nginx's own machinery;
 * misses go upstream through ngx_pt_fetch.c and, for blobs, ngx_pt_blob.c.
 */


#include <ngx_pt.h>
#include <ngx_pt_registry.h>
#include <ngx_pt_registry_int.h>
#include <ngx_pt_fetch.h>
#include <ngx_pt_fill.h>
#include <ngx_pt_settings.h>
#include <ngx_pt_content.h>
#include <ngx_pt_record_cache.h>
#include <ngx_pt_json.h>

#include <fnmatch.h>


static ngx_int_t ngx_pt_registry_route(ngx_http_request_t *r,
    ngx_pt_req_t *ctx);
static ngx_int_t ngx_pt_registry_status(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_int_t ngx_pt_registry_start(ngx_http_request_t *r);
static ngx_int_t ngx_pt_registry_name_valid(ngx_str_t *name);
static ngx_int_t ngx_pt_registry_tag_valid(ngx_str_t *tag);
static ngx_int_t ngx_pt_registry_resolve(ngx_http_request_t *r,
    ngx_pt_req_t *ctx);
static ngx_int_t ngx_pt_registry_mirror(ngx_http_request_t *r,
    ngx_pt_req_t *ctx, MDB_txn *txn);
static ngx_int_t ngx_pt_registry_mirror_ns(void *data, void *rec);
static ngx_int_t ngx_pt_registry_docker_hub(ngx_http_request_t *r,
    ngx_pt_req_t *ctx);
static ngx_int_t ngx_pt_registry_allowed(ngx_pt_remote_t *remote,
    ngx_str_t *name);
static ngx_int_t ngx_pt_glob(ngx_str_t *glob, char *name);
static ngx_int_t ngx_pt_registry_attach(ngx_http_request_t *r,
    ngx_pt_req_t *ctx, ngx_pt_fill_t *fill);
static void ngx_pt_registry_reader_write(ngx_http_request_t *r);
static ngx_int_t ngx_pt_registry_blob_header(ngx_http_request_t *r,
    ngx_pt_digest_t *d, off_t length);
static ngx_int_t ngx_pt_registry_blob_part(ngx_http_request_t *r,
    ngx_pt_digest_t *d, off_t start, off_t end, off_t length);
static ngx_int_t ngx_pt_registry_blob_send_header(ngx_http_request_t *r,
    ngx_pt_digest_t *d, ngx_uint_t status, off_t length);
static ngx_int_t ngx_pt_registry_fill_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *code);
static ngx_int_t ngx_pt_registry_record_blob(ngx_pool_t *pool,
    ngx_log_t *log, ngx_str_t *repo, ngx_str_t *digest, off_t size,
    ngx_str_t *config);
static ngx_int_t ngx_pt_cache_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_pt_registry_blob_absent(ngx_http_request_t *r,
    ngx_pt_req_t *ctx, ngx_uint_t set);
static ngx_int_t ngx_pt_registry_blob(ngx_http_request_t *r,
    ngx_pt_req_t *ctx);
static void ngx_pt_registry_blob_checked(ngx_http_request_t *r);
static ngx_int_t ngx_pt_registry_blob_fill(ngx_http_request_t *r,
    ngx_pt_req_t *ctx);
static void ngx_pt_registry_fetch_done(ngx_pt_fetch_t *f, ngx_int_t rc);
static void ngx_pt_registry_resume(ngx_http_request_t *r);
static ngx_int_t ngx_pt_registry_list(ngx_http_request_t *r,
    ngx_pt_req_t *ctx);
static ngx_int_t ngx_pt_registry_gateway_error(ngx_http_request_t *r,
    ngx_pt_fetch_t *f, ngx_uint_t status, const char *error,
    const char *message);
static ngx_uint_t ngx_pt_registry_printable(ngx_str_t *s);


/* what fills ask of the registry */
ngx_pt_fill_ops_t  ngx_pt_registry_fill_ops = {
    ngx_pt_registry_blob_header,
    ngx_pt_registry_fill_error,
    ngx_pt_registry_blob_part,
    ngx_pt_registry_record_blob,
    ngx_pt_config_read
};


static ngx_http_variable_t  ngx_pt_registry_vars[] = {

    { ngx_string("pullthrough_cache_status"), NULL,
      ngx_pt_cache_status_variable, 0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_str_t  ngx_pt_json_type = ngx_string("application/json");
static ngx_str_t  ngx_pt_octet_type = ngx_string("application/octet-stream");


/*
 * A status code from a step that failed is answered as the OCI error JSON
 * that registry clients parse, never with nginx's HTML error page.
 */

static ngx_int_t
ngx_pt_registry_status(ngx_http_request_t *r, ngx_int_t rc)
{
    if (!ngx_pt_error_status(r, rc)) {
        return rc;
    }

    return ngx_pt_registry_error(r, rc,
                                 rc == NGX_HTTP_SERVICE_UNAVAILABLE
                                 ? "UNAVAILABLE" : "UNKNOWN",
                                 rc == NGX_HTTP_INTERNAL_SERVER_ERROR
                                 ? "internal error, see the error log"
                                 : "the request failed");
}


void
ngx_pt_registry_finalize(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_finalize_request(r, ngx_pt_registry_status(r, rc));
}


ngx_int_t
ngx_http_pullthrough_registry_handler(ngx_http_request_t *r)
{
    return ngx_pt_registry_status(r, ngx_pt_registry_start(r));
}


static ngx_int_t
ngx_pt_registry_start(ngx_http_request_t *r)
{
    ngx_int_t      rc;
    ngx_str_t      body, v;
    ngx_pt_req_t  *ctx;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_set(&v, "registry/2.0");
    if (ngx_pt_registry_set_header(r, "Docker-Distribution-API-Version", &v)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* bytes from upstreams are never sniffed into something to render */
    ngx_str_set(&v, "nosniff");
    if (ngx_pt_registry_set_header(r, "X-Content-Type-Options", &v)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_pt_registry_error(r, NGX_HTTP_NOT_ALLOWED, "UNSUPPORTED",
                                     "The operation is unsupported: this "
                                     "registry is a read-only cache.");
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_pt_req_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_pullthrough_module);

    /* route and resolve answer errors themselves: r->header_sent tells */

    rc = ngx_pt_registry_route(r, ctx);
    if (rc != NGX_OK || r->header_sent) {
        return rc;
    }

    if (ctx->kind == NGX_PT_REQ_BASE) {
        ngx_str_set(&body, "{}");
        return ngx_pt_send(r, NGX_HTTP_OK, &ngx_pt_json_type, &body);
    }

    if (!ngx_pt_store_ready()) {
        return ngx_pt_registry_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                     "UNAVAILABLE", "The metadata store is "
                                     "not available.");
    }

    if (ctx->kind == NGX_PT_REQ_CATALOG) {
        return ngx_pt_registry_list(r, ctx);
    }

    rc = ngx_pt_registry_resolve(r, ctx);
    if (rc != NGX_OK || r->header_sent) {
        return rc;
    }

    switch (ctx->kind) {

    case NGX_PT_REQ_TAGS:
        return ngx_pt_registry_list(r, ctx);

    case NGX_PT_REQ_MANIFEST:
        return ngx_pt_manifest_request(r, ctx);

    case NGX_PT_REQ_REFERRERS:
        return ngx_pt_referrers_request(r, ctx);

    default: /* NGX_PT_REQ_BLOB */
        return ngx_pt_registry_blob(r, ctx);
    }
}


/*
 * /v2/, /v2/_catalog, /v2/<name>/tags/list, /v2/<name>/manifests/<ref>,
 * /v2/<name>/blobs/<digest>.
 */

static ngx_int_t
ngx_pt_registry_route(ngx_http_request_t *r, ngx_pt_req_t *ctx)
{
    ngx_pt_route_error_t  e;

    if (ngx_pt_registry_parse(&r->uri, ctx, &e) == NGX_OK) {
        return NGX_OK;
    }

    return ngx_pt_registry_error(r, e.status, e.code, e.message);
}


/*
 * What a /v2/ path asks for, into ctx; nothing but the path is read, so
 * that it can be fuzzed alone. NGX_DECLINED: the error is in *e.
 */

ngx_int_t
ngx_pt_registry_parse(ngx_str_t *uri, ngx_pt_req_t *ctx,
    ngx_pt_route_error_t *e)
{
    u_char     *p, *last, *slash, *seg;
    ngx_str_t   path;

    if (uri->len < 4 || ngx_strncmp(uri->data, "/v2/", 4) != 0) {
        goto unknown;
    }

    path.data = uri->data + 4;
    path.len = uri->len - 4;

    if (path.len == 0) {
        ctx->kind = NGX_PT_REQ_BASE;
        return NGX_OK;
    }

    if (path.len == sizeof("_catalog") - 1
        && ngx_strncmp(path.data, "_catalog", path.len) == 0)
    {
        ctx->kind = NGX_PT_REQ_CATALOG;
        return NGX_OK;
    }

    last = path.data + path.len;

    if (path.len > sizeof("/tags/list") - 1
        && ngx_strncmp(last - 10, "/tags/list", 10) == 0)
    {
        ctx->kind = NGX_PT_REQ_TAGS;
        ctx->repo.data = path.data;
        ctx->repo.len = path.len - 10;

    } else {
        /* <name>/<manifests|blobs>/<reference> */

        for (slash = last - 1; slash > path.data && *slash != '/'; slash--) {
            /* void */
        }

        if (slash == path.data || slash + 1 == last) {
            goto unknown;
        }

        ctx->reference.data = slash + 1;
        ctx->reference.len = last - slash - 1;

        for (seg = slash - 1; seg > path.data && *seg != '/'; seg--) {
            /* void */
        }

        if (seg == path.data) {
            goto unknown;
        }

        p = seg + 1;

        if (slash - p == 9 && ngx_strncmp(p, "manifests", 9) == 0) {
            ctx->kind = NGX_PT_REQ_MANIFEST;

        } else if (slash - p == 5 && ngx_strncmp(p, "blobs", 5) == 0) {
            ctx->kind = NGX_PT_REQ_BLOB;

        } else if (slash - p == 9 && ngx_strncmp(p, "referrers", 9) == 0) {
            ctx->kind = NGX_PT_REQ_REFERRERS;

        } else {
            goto unknown;
        }

        ctx->repo.data = path.data;
        ctx->repo.len = seg - path.data;
    }

    if (!ngx_pt_registry_name_valid(&ctx->repo)) {
        e->status = NGX_HTTP_BAD_REQUEST;
        e->code = "NAME_INVALID";
        e->message = "invalid repository name";
        return NGX_DECLINED;
    }

    if (ctx->kind == NGX_PT_REQ_BLOB || ctx->kind == NGX_PT_REQ_REFERRERS
        || (ctx->kind == NGX_PT_REQ_MANIFEST
            && ngx_strlchr(ctx->reference.data,
                           ctx->reference.data + ctx->reference.len, ':')))
    {
        if (ngx_pt_digest_parse(&ctx->reference, &ctx->digest) != NGX_OK) {
            e->status = NGX_HTTP_BAD_REQUEST;
            e->code = "DIGEST_INVALID";
            e->message = "invalid digest: malformed, or of an algorithm "
                         "other than sha256 and sha512";
            return NGX_DECLINED;
        }

        ctx->by_digest = 1;

    } else if (ctx->kind == NGX_PT_REQ_MANIFEST
               && !ngx_pt_registry_tag_valid(&ctx->reference))
    {
        /* no manifest can have it: unknown, as the spec answers a GET or
         * HEAD that fails (MANIFEST_INVALID is for pushes) */
        e->status = NGX_HTTP_NOT_FOUND;
        e->code = "MANIFEST_UNKNOWN";
        e->message = "manifest unknown: not a valid tag";
        return NGX_DECLINED;
    }

    return NGX_OK;

unknown:

    e->status = NGX_HTTP_NOT_FOUND;
    e->code = "NAME_UNKNOWN";
    e->message = "repository name not known to registry";

    return NGX_DECLINED;
}


static ngx_int_t
ngx_pt_registry_name_valid(ngx_str_t *name)
{
    u_char  *p, *c, *last;

    if (name->len == 0 || name->len > 255) {
        return 0;
    }

    last = name->data + name->len;

    for (c = name->data; c <= last; c = p + 1) {
        p = ngx_strlchr(c, last, '/');
        if (p == NULL) {
            p = last;
        }

        if (!ngx_pt_oci_component_valid(c, p - c)) {
            return 0;
        }
    }

    return 1;
}


/* [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127} */

static ngx_int_t
ngx_pt_registry_tag_valid(ngx_str_t *tag)
{
    u_char      c;
    ngx_uint_t  i;

    if (tag->len == 0 || tag->len > 128) {
        return 0;
    }

    for (i = 0; i < tag->len; i++) {
        c = tag->data[i];

        if (!(isalnum(c) || c == '_' || (i && (c == '.' || c == '-')))) {
            return 0;
        }
    }

    return 1;
}


/*
 * The pull-through distribution whose base_path is the longest leading run
 * of path components, and the remote behind it.
 */

static ngx_int_t
ngx_pt_registry_resolve(ngx_http_request_t *r, ngx_pt_req_t *ctx)
{
    void       *rec;
    MDB_txn    *txn;
    ngx_int_t   rc;
    ngx_str_t   prefix, id;
    ngx_log_t  *log;

    log = r->connection->log;

    if (ngx_pt_txn_begin(log, 0, &txn) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rec = NULL;
    rc = NGX_DECLINED;
    prefix = ctx->repo;

    for ( ;; ) {
        while (prefix.len && prefix.data[prefix.len - 1] != '/') {
            prefix.len--;
        }

        if (prefix.len == 0) {
            break;
        }

        prefix.len--;

        rc = ngx_pt_index_get(log, txn, NGX_PT_DB_DIST_PATHS, &prefix, &id);
        if (rc == NGX_ERROR) {
            break;
        }

        if (rc == NGX_OK) {
            rc = ngx_pt_record_load_cached(r->pool, log, txn,
                                           &ngx_pt_pt_dist_type, &id, &rec);
            if (rc != NGX_DECLINED) {
                break;
            }
        }
    }

    if (rc == NGX_OK) {
        ctx->dist = rec;
        ctx->name.data = ctx->repo.data + prefix.len + 1;
        ctx->name.len = ctx->repo.len - prefix.len - 1;

    } else if (rc == NGX_DECLINED) {
        /* no base_path: a mirror's request, if the location or "ns" says
         * which distribution serves it */
        rc = ngx_pt_registry_mirror(r, ctx, txn);
    }

    if (rc == NGX_OK) {
        rc = ngx_pt_record_load_cached(r->pool, log, txn, &ngx_pt_remote_type,
                                       &ctx->dist->remote, &rec);
        if (rc == NGX_OK) {
            ctx->remote = rec;
        }
    }

    ngx_pt_txn_abort(txn);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_pt_registry_error(r, NGX_HTTP_NOT_FOUND, "NAME_UNKNOWN",
                                     "repository name not known to "
                                     "registry");
    }

    if (ngx_pt_registry_docker_hub(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the remote's filters, evaluated on every request: edits apply now */

    if (!ngx_pt_registry_allowed(ctx->remote, &ctx->name)) {
        return ngx_pt_registry_error(r, NGX_HTTP_NOT_FOUND, "NAME_UNKNOWN",
                                     "Repository not found.");
    }

    return NGX_OK;
}


/*
 * A name that no base_path begins, as a registry mirror is asked (Docker's
 * registry-mirrors, containerd's hosts.toml, registries.conf mirrors):
 * containerd's ?ns=<registry host> picks the pull-through distribution
 * whose remote is that registry, else "pullthrough_registry default=" the
 * location's. The repository is then <base_path>/<name>, as for a request
 * that named the base_path.
 */

typedef struct {
    ngx_http_request_t         *r;
    MDB_txn                    *txn;
    ngx_str_t                   ns;
    ngx_str_t                   preferred;   /* the default's base_path */
    ngx_str_t                   id;          /* the best so far */
    ngx_str_t                   base_path;
} ngx_pt_mirror_t;


static ngx_int_t
ngx_pt_registry_mirror(ngx_http_request_t *r, ngx_pt_req_t *ctx, MDB_txn *txn)
{
    u_char                           *p;
    void                             *rec;
    ngx_int_t                         rc;
    ngx_str_t                         id;
    ngx_log_t                        *log;
    ngx_pt_dist_t                    *dist;
    ngx_pt_mirror_t                   m;
    ngx_http_pullthrough_loc_conf_t  *plcf;

    log = r->connection->log;
    plcf = ngx_http_get_module_loc_conf(r, ngx_http_pullthrough_module);

    ngx_memzero(&m, sizeof(ngx_pt_mirror_t));
    ngx_str_null(&id);

    m.r = r;
    m.txn = txn;
    m.preferred = plcf->default_path;

    rc = ngx_pt_registry_arg(r, "ns", &m.ns);
    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_OK) {
        rc = ngx_pt_record_each(NULL, log, txn, &ngx_pt_pt_dist_type,
                                ngx_pt_registry_mirror_ns, &m);
        if (rc != NGX_OK) {
            return NGX_ERROR;
        }

        id = m.id;
    }

    if (id.len == 0 && plcf->default_path.len) {
        rc = ngx_pt_index_get(log, txn, NGX_PT_DB_DIST_PATHS,
                              &plcf->default_path, &id);
        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }
    }

    if (id.len == 0) {
        return NGX_DECLINED;
    }

    /* a per-image distribution's base_path is not a pull-through one */

    rc = ngx_pt_record_load_cached(r->pool, log, txn, &ngx_pt_pt_dist_type,
                                   &id, &rec);
    if (rc != NGX_OK) {
        return rc;
    }

    dist = rec;

    p = ngx_pnalloc(r->pool, dist->base_path.len + 1 + ctx->repo.len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->asked = ctx->repo;
    ctx->dist = dist;

    ctx->repo.len = ngx_sprintf(p, "%V/%V", &dist->base_path, &ctx->asked)
                    - p;
    ctx->repo.data = p;
    ctx->name.data = p + dist->base_path.len + 1;
    ctx->name.len = ctx->asked.len;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                   "pullthrough registry: \"%V\" as a mirror: \"%V\"",
                   &ctx->asked, &ctx->repo);

    return NGX_OK;
}


/* a pull-through distribution whose remote serves the registry of "ns":
 * the default one if it does, else the one first by base_path */

static ngx_int_t
ngx_pt_registry_mirror_ns(void *data, void *rec)
{
    ngx_pt_mirror_t *m = data;

    void           *remote;
    ngx_int_t       rc;
    ngx_pt_dist_t  *dist = rec;

    if (m->id.len && m->preferred.len
        && m->base_path.len == m->preferred.len
        && ngx_strncmp(m->base_path.data, m->preferred.data,
                       m->preferred.len) == 0)
    {
        return NGX_OK;
    }

    rc = ngx_pt_record_load_cached(m->r->pool, m->r->connection->log, m->txn,
                                   &ngx_pt_remote_type, &dist->remote,
                                   &remote);
    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc != NGX_OK || !ngx_pt_settings_serves(remote, &m->ns)) {
        return NGX_OK;
    }

    if (m->id.len
        && !(dist->base_path.len == m->preferred.len
             && ngx_strncmp(dist->base_path.data, m->preferred.data,
                            m->preferred.len) == 0)
        && ngx_memn2cmp(dist->base_path.data, m->base_path.data,
                        dist->base_path.len, m->base_path.len) >= 0)
    {
        return NGX_OK;
    }

    /* copies: the record is freed after this handler */

    m->id.len = dist->meta.id.len;
    m->id.data = ngx_pstrdup(m->r->pool, &dist->meta.id);
    m->base_path.len = dist->base_path.len;
    m->base_path.data = ngx_pstrdup(m->r->pool, &dist->base_path);

    return (m->id.data && m->base_path.data) ? NGX_OK : NGX_ERROR;
}


/*
 * Docker Hub keeps official images under "library/": "busybox" is
 * "library/busybox" upstream, and here both are one repository. Only a
 * one-component upstream name gets it: with a prefix in the remote's url
 * the upstream name has two at least. So does a cache whose remote is
 * another cache: that one adds "library/" if its own remote is Docker
 * Hub, once along the chain.
 */

static ngx_int_t
ngx_pt_registry_docker_hub(ngx_http_request_t *r, ngx_pt_req_t *ctx)
{
    u_char     *p;
    size_t      base;
    ngx_str_t   prefix;

    if (!ngx_pt_settings_docker_hub(ctx->remote)) {
        return NGX_OK;
    }

    ngx_pt_settings_prefix(ctx->remote, &prefix);

    if (prefix.len
        || ngx_strlchr(ctx->name.data, ctx->name.data + ctx->name.len, '/'))
    {
        return NGX_OK;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "pullthrough registry: Docker Hub's \"library/%V\"",
                   &ctx->name);

    base = ctx->repo.len - ctx->name.len;

    p = ngx_pnalloc(r->pool, ctx->repo.len + sizeof("library/") - 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->repo.len = ngx_sprintf(p, "%*slibrary/%V", base, ctx->repo.data,
                                &ctx->name) - p;
    ctx->repo.data = p;
    ctx->name.data = p + base;
    ctx->name.len = ctx->repo.len - base;

    return NGX_OK;
}


/* shell globs on the upstream name, "*" matching "/" too */

static ngx_int_t
ngx_pt_registry_allowed(ngx_pt_remote_t *remote, ngx_str_t *name)
{
    u_char      buf[512];
    ngx_str_t  *globs;
    ngx_uint_t  i, ok;

    if (name->len >= sizeof(buf)) {
        return 0;
    }

    ngx_memcpy(buf, name->data, name->len);
    buf[name->len] = '\0';

    ok = 1;

    if (remote->includes && remote->includes->nelts) {
        ok = 0;
        globs = remote->includes->elts;

        for (i = 0; i < remote->includes->nelts; i++) {
            if (ngx_pt_glob(&globs[i], (char *) buf)) {
                ok = 1;
                break;
            }
        }
    }

    if (ok && remote->excludes) {
        globs = remote->excludes->elts;

        for (i = 0; i < remote->excludes->nelts; i++) {
            if (ngx_pt_glob(&globs[i], (char *) buf)) {
                return 0;
            }
        }
    }

    return ok;
}


static ngx_int_t
ngx_pt_glob(ngx_str_t *glob, char *name)
{
    u_char  buf[1024];

    if (glob->len >= sizeof(buf)) {
        return 0;
    }

    /* the stored strings are NUL-terminated, but copies need not be */
    ngx_memcpy(buf, glob->data, glob->len);
    buf[glob->len] = '\0';

    return fnmatch((char *) buf, name, 0) == 0;
}


/* blobs */

static ngx_int_t
ngx_pt_registry_blob(ngx_http_request_t *r, ngx_pt_req_t *ctx)
{
    ngx_int_t        rc, member;
    ngx_str_t        path;
    ngx_file_info_t  fi;

    member = ngx_pt_content_blob_has(r->pool, r->connection->log, &ctx->repo,
                                     &ctx->digest.full);
    if (member == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_pt_blob_path(r->pool, &ctx->digest, &path) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (member == NGX_OK) {
        rc = ngx_pt_registry_send_file(r, &path, &ngx_pt_octet_type,
                                       &ctx->digest.full, -1);
        if (rc != NGX_DECLINED) {
            ctx->cache_status = NGX_PT_CACHE_HIT;
            return rc;
        }

    } else if (ngx_file_info(path.data, &fi) != NGX_FILE_ERROR) {
        /*
         * Stored for another repository: this one may see it only once
         * its upstream confirms, which costs a HEAD and no download.
         */
        ctx->cache_status = NGX_PT_CACHE_HIT;

        return ngx_pt_registry_fetch(r, ctx, NULL, "blobs",
                                     &ctx->digest.full, 1, 0,
                                     ngx_pt_registry_blob_checked);
    }

    rc = ngx_pt_registry_blob_absent(r, ctx, 0);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    if (r->method == NGX_HTTP_GET
        && ngx_pt_fill_find(&ctx->repo, &ctx->digest) == NULL
        && ngx_pt_fill_other(&ctx->repo, &ctx->digest, NULL) == NGX_OK)
    {
        /*
         * Another repository's fill fetches it (a base layer they share):
         * once this repository's upstream confirms it has the blob (a
         * HEAD), the client follows that fill instead of a second one.
         */
        ctx->cache_status = NGX_PT_CACHE_JOIN;
        ctx->follow = 1;

        return ngx_pt_registry_fetch(r, ctx, NULL, "blobs",
                                     &ctx->digest.full, 1, 0,
                                     ngx_pt_registry_blob_checked);
    }

    ctx->cache_status = NGX_PT_CACHE_MISS;

    if (r->method == NGX_HTTP_HEAD) {
        return ngx_pt_registry_fetch(r, ctx, NULL, "blobs",
                                     &ctx->digest.full, 1, 0,
                                     ngx_pt_registry_blob_checked);
    }

    return ngx_pt_registry_blob_fill(r, ctx);
}


/*
 * The negative cache of blobs: an upstream 404 for a blob is remembered
 * for pullthrough_negative_ttl, under <repo>\0\0<digest> (apart from the
 * manifests' <repo>\0<reference>). With set 0: answers 404 when it is
 * remembered, else NGX_DECLINED.
 */

static ngx_int_t
ngx_pt_registry_blob_absent(ngx_http_request_t *r, ngx_pt_req_t *ctx,
    ngx_uint_t set)
{
    u_char                           *p;
    ngx_str_t                         key;
    ngx_http_pullthrough_loc_conf_t  *plcf;

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_pullthrough_module);

    if (plcf->negative_ttl == 0) {
        return NGX_DECLINED;
    }

    key.len = ctx->repo.len + 2 + ctx->digest.full.len;
    key.data = ngx_pnalloc(r->pool, key.len);
    if (key.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(key.data, ctx->repo.data, ctx->repo.len);
    *p++ = '\0';
    *p++ = '\0';
    ngx_memcpy(p, ctx->digest.full.data, ctx->digest.full.len);

    if (set) {
        ngx_pt_shm_negative_set(&key, plcf->negative_ttl);
        return NGX_OK;
    }

    if (!ngx_pt_shm_negative_get(&key)) {
        return NGX_DECLINED;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "pullthrough registry: blob %V of \"%V\" is known "
                   "missing", &ctx->digest.full, &ctx->repo);

    ctx->cache_status = NGX_PT_CACHE_HIT;

    return ngx_pt_registry_error(r, NGX_HTTP_NOT_FOUND, "BLOB_UNKNOWN",
                                 "blob unknown to registry");
}


static void
ngx_pt_registry_blob_checked(ngx_http_request_t *r)
{
    ngx_int_t         rc;
    ngx_str_t         path;
    ngx_pt_req_t     *ctx;
    ngx_pt_fill_t    *fill;
    ngx_pt_fetch_t   *f;
    ngx_file_info_t   fi;

    ctx = ngx_http_get_module_ctx(r, ngx_http_pullthrough_module);
    f = ctx->fetch;

    if (!f->header || f->status != NGX_HTTP_OK
        || f->rc >= NGX_HTTP_SPECIAL_RESPONSE || f->rc == NGX_ERROR)
    {
        if (f->header && f->status == NGX_HTTP_NOT_FOUND) {
            (void) ngx_pt_registry_blob_absent(r, ctx, 1);
        }

        rc = ngx_pt_registry_upstream_error(r, ctx, f, "BLOB_UNKNOWN");
        ngx_pt_registry_finalize(r, rc);
        return;
    }

    if (ctx->follow) {
        /* confirmed: the other repository's fill, if it still runs */

        fill = NULL;
        rc = ngx_pt_fill_other(&ctx->repo, &ctx->digest, &fill);

        if (rc == NGX_ERROR) {
            ngx_pt_registry_finalize(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        if (rc == NGX_OK) {
            if (ngx_pt_fill_also(fill, &ctx->repo) != NGX_OK) {
                ngx_pt_registry_finalize(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
                return;
            }

            ngx_pt_registry_finalize(r, ngx_pt_registry_attach(r, ctx,
                                                                 fill));
            return;
        }

        /* it ended meanwhile: stored, or fetched here */

        if (ngx_pt_blob_path(r->pool, &ctx->digest, &path) != NGX_OK) {
            ngx_pt_registry_finalize(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        if (ngx_file_info(path.data, &fi) == NGX_FILE_ERROR) {
            ctx->cache_status = NGX_PT_CACHE_MISS;
            rc = ngx_pt_registry_blob_fill(r, ctx);
            ngx_pt_registry_finalize(r, rc);
            return;
        }

        ctx->cache_status = NGX_PT_CACHE_HIT;
    }

    if (ctx->cache_status == NGX_PT_CACHE_HIT) {
        /* confirmed, and the file is here: this repository's from now on */

        if (ngx_pt_blob_path(r->pool, &ctx->digest, &path) != NGX_OK) {
            ngx_pt_registry_finalize(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        if (ngx_file_info(path.data, &fi) != NGX_FILE_ERROR
            && ngx_pt_content_blob_add(r->pool, r->connection->log,
                                       &ctx->repo, &ctx->digest.full,
                                       ngx_file_size(&fi), NULL) != NGX_OK)
        {
            ngx_pt_registry_finalize(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        rc = ngx_pt_registry_send_file(r, &path, &ngx_pt_octet_type,
                                       &ctx->digest.full, -1);
        if (rc != NGX_DECLINED) {
            ngx_pt_registry_finalize(r, rc);
            return;
        }

        ctx->cache_status = NGX_PT_CACHE_MISS;

        if (r->method == NGX_HTTP_GET) {
            rc = ngx_pt_registry_blob_fill(r, ctx);
            ngx_pt_registry_finalize(r, rc);
            return;
        }
    }

    /* a HEAD miss: upstream's length, nothing downloaded */

    rc = ngx_pt_registry_blob_header(r, &ctx->digest, f->length);
    ngx_pt_registry_finalize(r, rc);
}


static ngx_int_t
ngx_pt_registry_blob_fill(ngx_http_request_t *r, ngx_pt_req_t *ctx)
{
    ngx_str_t           url;
    ngx_uint_t          joined;
    ngx_pt_fill_t      *fill;
    ngx_pt_settings_t  *s;

    fill = ngx_pt_fill_find(&ctx->repo, &ctx->digest);

    if (fill) {
        ctx->cache_status = NGX_PT_CACHE_JOIN;

    } else {
        s = ngx_pt_registry_settings(r, ctx);

        if (s == NULL
            || ngx_pt_registry_upstream_url(r, ctx, "blobs",
                                            &ctx->digest.full, &url)
               != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        fill = ngx_pt_fill_create(r, &ctx->repo, &ctx->digest, s, &url,
                                  &joined);
        if (fill == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (joined) {
            /* the fill of another worker */
            ctx->cache_status = NGX_PT_CACHE_JOIN;
        }
    }

    return ngx_pt_registry_attach(r, ctx, fill);
}


/* r reads the blob as the fill writes it */

static ngx_int_t
ngx_pt_registry_attach(ngx_http_request_t *r, ngx_pt_req_t *ctx,
    ngx_pt_fill_t *fill)
{
    r->write_event_handler = ngx_pt_registry_reader_write;

    if (ngx_pt_fill_attach(fill, r, &ctx->reader) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_DONE;
}


static void
ngx_pt_registry_reader_write(ngx_http_request_t *r)
{
    ngx_pt_req_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_pullthrough_module);

    ngx_pt_reader_write(ctx->reader);
}


/* the exchanges' settings, from the remote's record: one snapshot */

ngx_pt_settings_t *
ngx_pt_registry_settings(ngx_http_request_t *r, ngx_pt_req_t *ctx)
{
    if (ctx->settings == NULL) {
        ctx->settings = ngx_pt_settings_create(r, ctx->remote, &ctx->name);
    }

    return ctx->settings;
}


/* a blob stored by a fill, for a repository */

static ngx_int_t
ngx_pt_registry_record_blob(ngx_pool_t *pool, ngx_log_t *log,
    ngx_str_t *repo, ngx_str_t *digest, off_t size, ngx_str_t *config)
{
    return ngx_pt_content_blob_add(pool, log, repo, digest, size, config);
}


/* headers of a blob response, for fills' readers and HEAD misses */

static ngx_int_t
ngx_pt_registry_blob_header(ngx_http_request_t *r, ngx_pt_digest_t *d,
    off_t length)
{
    return ngx_pt_registry_blob_send_header(r, d, NGX_HTTP_OK, length);
}


/*
 * A fill's reader asked for one range of a blob of length bytes: 206 with
 * the bytes [start, end); when start is past the end, the whole answer:
 * 416 as an OCI error, its Content-Range giving only the length.
 */

static ngx_int_t
ngx_pt_registry_blob_part(ngx_http_request_t *r, ngx_pt_digest_t *d,
    off_t start, off_t end, off_t length)
{
    ngx_str_t  v;

    v.data = ngx_pnalloc(r->pool, sizeof("bytes -/") - 1 + 3 * NGX_OFF_T_LEN);
    if (v.data == NULL) {
        return NGX_ERROR;
    }

    if (start >= length) {
        v.len = ngx_sprintf(v.data, "bytes */%O", length) - v.data;

        if (ngx_pt_registry_set_header(r, "Content-Range", &v) != NGX_OK) {
            return NGX_ERROR;
        }

        return ngx_pt_registry_error(r, NGX_HTTP_RANGE_NOT_SATISFIABLE,
                                     "RANGE_INVALID", "the requested range "
                                     "is not satisfiable");
    }

    v.len = ngx_sprintf(v.data, "bytes %O-%O/%O", start, end - 1, length)
            - v.data;

    if (ngx_pt_registry_set_header(r, "Content-Range", &v) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_pt_registry_blob_send_header(r, d, NGX_HTTP_PARTIAL_CONTENT,
                                            end - start);
}


static ngx_int_t
ngx_pt_registry_blob_send_header(ngx_http_request_t *r, ngx_pt_digest_t *d,
    ngx_uint_t status, off_t length)
{
    if (ngx_pt_registry_set_header(r, "Docker-Content-Digest", &d->full)
        != NGX_OK
        || ngx_pt_registry_etag(r, &d->full) != NGX_OK)
    {
        return NGX_ERROR;
    }

    r->headers_out.status = status;
    r->headers_out.content_length_n = length;
    r->headers_out.content_type = ngx_pt_octet_type;
    r->headers_out.content_type_len = ngx_pt_octet_type.len;

    return ngx_http_send_header(r);
}


static ngx_int_t
ngx_pt_registry_fill_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code)
{
    ngx_pt_req_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_pullthrough_module);

    if (code) {
        return ngx_pt_registry_error(r, status, code,
                                     "the upstream blob does not match its "
                                     "digest");
    }

    if (status == NGX_HTTP_NOT_FOUND) {
        (void) ngx_pt_registry_blob_absent(r, ctx, 1);
    }

    return ngx_pt_registry_status_error(r, ctx, status, "BLOB_UNKNOWN");
}


/*
 * The answer to an exchange known only by the status it ended with (a
 * fill's, a flight's): 502, 504 and 500 are its own failures, any other
 * status the upstream's answer.
 */

ngx_int_t
ngx_pt_registry_status_error(ngx_http_request_t *r, ngx_pt_req_t *ctx,
    ngx_uint_t status, const char *unknown)
{
    ngx_pt_fetch_t  f;

    ngx_memzero(&f, sizeof(ngx_pt_fetch_t));

    if (status == NGX_HTTP_BAD_GATEWAY || status == NGX_HTTP_GATEWAY_TIME_OUT
        || status == NGX_HTTP_INTERNAL_SERVER_ERROR)
    {
        f.rc = status;

    } else {
        f.header = 1;
        f.status = status;
    }

    return ngx_pt_registry_upstream_error(r, ctx, &f, unknown);
}


/* an exchange on behalf of r, with settings s (NULL: the remote's): r
 * waits, next runs when it ends */

ngx_int_t
ngx_pt_registry_fetch(ngx_http_request_t *r, ngx_pt_req_t *ctx,
    ngx_pt_settings_t *s, const char *what, ngx_str_t *ref, ngx_uint_t head,
    size_t body, void (*next)(ngx_http_request_t *r))
{
    u_char          *p;
    ngx_str_t        accept, url;
    ngx_pt_fetch_t  *f;

    f = ngx_pcalloc(r->pool, sizeof(ngx_pt_fetch_t));
    if (f == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* NULL: the remote's own settings */

    if (s == NULL) {
        s = ngx_pt_registry_settings(r, ctx);
    }

    if (s == NULL
        || ngx_pt_registry_upstream_url(r, ctx, what, ref, &url) != NGX_OK
        || ngx_pt_fetch_init(f, r, r->pool, s, &url) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    f->head = head;
    f->done = ngx_pt_registry_fetch_done;
    f->data = r;

    if (what[0] == 'r') {
        /* the referrers API answers an index */
        ngx_str_set(&f->accept, "application/vnd.oci.image.index.v1+json");

    } else if (what[0] == 'm') {
        /* the types this cache understands, then what the client asked */

        accept = r->headers_in.accept ? r->headers_in.accept->value
                                      : (ngx_str_t) ngx_null_string;

        f->accept.len = sizeof(NGX_PT_MANIFEST_TYPES) - 1
                        + (accept.len ? accept.len + 2 : 0);
        f->accept.data = ngx_pnalloc(r->pool, f->accept.len);
        if (f->accept.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = ngx_cpymem(f->accept.data, NGX_PT_MANIFEST_TYPES,
                       sizeof(NGX_PT_MANIFEST_TYPES) - 1);
        if (accept.len) {
            *p++ = ',';
            *p++ = ' ';
            ngx_memcpy(p, accept.data, accept.len);
        }

    } else {
        ngx_str_set(&f->accept, "*/*");
    }

    if (body && !head) {
        f->body = ngx_create_temp_buf(r->pool, body);
        if (f->body == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (ngx_pt_fetch_start(f) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->fetch = f;
    ctx->next = next;

    /* r waits: the handler's NGX_DONE gives this reference back */
    r->main->count++;

    return NGX_DONE;
}


static void
ngx_pt_registry_fetch_done(ngx_pt_fetch_t *f, ngx_int_t rc)
{
    ngx_http_request_t *r = f->data;

    /* continue once the subrequest is fully finalized */

    r->write_event_handler = ngx_pt_registry_resume;

    (void) ngx_http_post_request(r, NULL);
}


static void
ngx_pt_registry_resume(ngx_http_request_t *r)
{
    ngx_pt_req_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_pullthrough_module);

    r->write_event_handler = ngx_http_request_empty_handler;

    ctx->next(r);
}


/* what the client gets when the upstream could not give what it asked */

ngx_int_t
ngx_pt_registry_upstream_error(ngx_http_request_t *r, ngx_pt_req_t *ctx,
    ngx_pt_fetch_t *f, const char *unknown)
{
    ngx_str_t  *url;

    ctx->cache_status = NGX_PT_CACHE_ERROR;
    url = &f->url;

    if (!f->header) {
        if (f->rc == NGX_HTTP_INTERNAL_SERVER_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (f->rc == NGX_HTTP_GATEWAY_TIME_OUT) {
            return ngx_pt_registry_gateway_error(r, f,
                                                 NGX_HTTP_GATEWAY_TIME_OUT,
                                                 "http_response_timeout",
                                                 "the upstream registry "
                                                 "timed out");
        }

        return ngx_pt_registry_gateway_error(r, f, NGX_HTTP_BAD_GATEWAY,
                                             "destination_unavailable",
                                             "the upstream registry is "
                                             "unreachable");
    }

    if (f->too_big) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "pullthrough: manifest from \"%V\" is larger than "
                      "pullthrough_manifest_max_size", url);
        return ngx_pt_registry_error(r, NGX_HTTP_BAD_GATEWAY,
                                     "MANIFEST_INVALID", "the upstream "
                                     "manifest exceeds the size limit");
    }

    switch (f->status) {

    case NGX_HTTP_OK:
        /* an answer that ended early */
        return ngx_pt_registry_gateway_error(r, f, NGX_HTTP_BAD_GATEWAY,
                                             "http_response_incomplete",
                                             "the upstream answer was "
                                             "incomplete");

    case NGX_HTTP_NOT_FOUND:
        return ngx_pt_registry_error(r, NGX_HTTP_NOT_FOUND, unknown,
                                     unknown[0] == 'M'
                                     ? "manifest unknown to registry"
                                     : "blob unknown to registry");

    case NGX_HTTP_UNAUTHORIZED:
        return ngx_pt_registry_error(r, NGX_HTTP_UNAUTHORIZED, "UNAUTHORIZED",
                                     "the upstream registry refused the "
                                     "credentials");

    case NGX_HTTP_FORBIDDEN:
        return ngx_pt_registry_error(r, NGX_HTTP_FORBIDDEN, "DENIED",
                                     "the upstream registry denied access");

    case NGX_HTTP_TOO_MANY_REQUESTS:
        if (f->retry_after.len
            && ngx_pt_registry_set_header(r, "Retry-After", &f->retry_after)
               != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_pt_registry_error(r, NGX_HTTP_TOO_MANY_REQUESTS,
                                     "TOOMANYREQUESTS",
                                     "the upstream registry is rate "
                                     "limiting");

    default:
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "pullthrough: upstream answered %ui for \"%V\"",
                      f->status, url);
        return ngx_pt_registry_gateway_error(r, f, NGX_HTTP_BAD_GATEWAY,
                                             NULL, "the upstream registry "
                                             "failed");
    }
}


/* printable ASCII (and tabs): what may go into a header line of ours */

static ngx_uint_t
ngx_pt_registry_printable(ngx_str_t *s)
{
    size_t  i;

    for (i = 0; i < s->len; i++) {
        if ((s->data[i] < 0x20 && s->data[i] != '\t') || s->data[i] > 0x7e) {
            return 0;
        }
    }

    return 1;
}


/*
 * A 502 or 504 of this cache's own, after its retries: its Proxy-Status
 * (RFC 9209) says why, so that a cache pulling from this one knows that
 * asking again would only repeat them (ngx_pt_fetch.c does not), and a
 * client sees what failed along a chain of caches: the Proxy-Status of an
 * upstream cache's answer first, this cache's member last.
 */

static ngx_int_t
ngx_pt_registry_gateway_error(ngx_http_request_t *r, ngx_pt_fetch_t *f,
    ngx_uint_t status, const char *error, const char *message)
{
    u_char     *p;
    size_t      len;
    ngx_str_t   v, up;

    up = f->proxy_status;

    if (up.len > NGX_PT_PROXY_STATUS_MAX || !ngx_pt_registry_printable(&up)) {
        /* an upstream's, passed on only as a sane header value */
        up.len = 0;
    }

    len = up.len + sizeof(", " NGX_PT_PROXY_NAME "; error=; received-status=")
          + (error ? ngx_strlen(error) : 0) + NGX_INT_T_LEN;

    v.data = ngx_pnalloc(r->pool, len);
    if (v.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = v.data;

    if (up.len) {
        p = ngx_sprintf(p, "%V, ", &up);
    }

    p = ngx_cpymem(p, NGX_PT_PROXY_NAME, sizeof(NGX_PT_PROXY_NAME) - 1);

    if (error) {
        p = ngx_sprintf(p, "; error=%s", error);
    }

    if (f->header) {
        p = ngx_sprintf(p, "; received-status=%ui", f->status);
    }

    v.len = p - v.data;

    if (ngx_pt_registry_set_header(r, "Proxy-Status", &v) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_pt_registry_error(r, status, "UNAVAILABLE", message);
}


ngx_int_t
ngx_pt_registry_upstream_url(ngx_http_request_t *r, ngx_pt_req_t *ctx,
    const char *what, ngx_str_t *ref, ngx_str_t *url)
{
    u_char             *p;
    ngx_pt_settings_t  *s;

    /* the upstream name: the remote's prefix and the name */

    s = ngx_pt_registry_settings(r, ctx);
    if (s == NULL) {
        return NGX_ERROR;
    }

    url->len = s->base_url.len + sizeof("/v2///") + s->name.len
               + ngx_strlen(what) + ref->len;
    url->data = ngx_pnalloc(r->pool, url->len);
    if (url->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(url->data, "%V/v2/%V/%s/%V", &s->base_url, &s->name,
                    what, ref);
    url->len = p - url->data;

    return NGX_OK;
}


/*
 * A stored file, with nginx's own machinery as the static module does:
 * open file cache, sendfile, ranges, conditional requests on the ETag.
 * NGX_DECLINED when the file is not there.
 */

ngx_int_t
ngx_pt_registry_send_file(ngx_http_request_t *r, ngx_str_t *path,
    ngx_str_t *type, ngx_str_t *digest, off_t size)
{
    ngx_int_t                  rc;
    ngx_buf_t                 *b;
    ngx_chain_t                out;
    ngx_open_file_info_t       of;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    ngx_memzero(&of, sizeof(ngx_open_file_info_t));

    of.read_ahead = clcf->read_ahead;
    of.directio = clcf->directio;
    of.valid = clcf->open_file_cache_valid;
    of.min_uses = clcf->open_file_cache_min_uses;
    of.errors = clcf->open_file_cache_errors;
    of.events = clcf->open_file_cache_events;

    if (ngx_open_cached_file(clcf->open_file_cache, path, &of, r->pool)
        != NGX_OK)
    {
        if (of.err == NGX_ENOENT || of.err == NGX_ENOTDIR) {
            return NGX_DECLINED;
        }

        ngx_log_error(NGX_LOG_CRIT, r->connection->log, of.err,
                      "%s \"%s\" failed", of.failed, path->data);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (size >= 0 && of.size != size) {
        /* a file a crash left short: never served */
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "pullthrough: \"%s\" has %O bytes, %O recorded",
                      path->data, of.size, size);
        return NGX_DECLINED;
    }

    /* read: the last to be evicted (the cache manager stores it) */
    ngx_pt_shm_access(digest);

    if (ngx_pt_registry_set_header(r, "Docker-Content-Digest", digest)
        != NGX_OK
        || ngx_pt_registry_etag(r, digest) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = of.size;
    r->headers_out.content_type = *type;
    r->headers_out.content_type_len = type->len;
    r->allow_ranges = 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->file = ngx_pcalloc(r->pool, sizeof(ngx_file_t));
    if (b->file == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->file_pos = 0;
    b->file_last = of.size;
    b->in_file = b->file_last ? 1 : 0;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;
    b->sync = b->in_file ? 0 : 1;

    b->file->fd = of.fd;
    b->file->name = *path;
    b->file->log = r->connection->log;
    b->file->directio = of.is_directio;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* /v2/_catalog and /v2/<name>/tags/list, from the metadata store */

static ngx_int_t
ngx_pt_registry_list(ngx_http_request_t *r, ngx_pt_req_t *ctx)
{
    u_char      *p;
    yajl_gen     g;
    ngx_int_t    n;
    ngx_str_t    arg, last, body, link, *items;
    ngx_uint_t   i, more, none;
    ngx_array_t  list;

    n = 0;
    none = 0;
    ngx_str_null(&last);

    if (ngx_http_arg(r, (u_char *) "n", 1, &arg) == NGX_OK) {
        n = ngx_atoi(arg.data, arg.len);
        if (n == NGX_ERROR) {
            return ngx_pt_registry_error(r, NGX_HTTP_BAD_REQUEST,
                                         "PAGINATION_NUMBER_INVALID",
                                         "invalid number of results "
                                         "requested");
        }

        /* n=0 asks for no results (and no next page), not for all */
        none = (n == 0);
    }

    if (ngx_pt_registry_arg(r, "last", &last) == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_array_init(&list, r->pool, 16, sizeof(ngx_str_t)) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    more = 0;

    if (!none
        && ngx_pt_content_names(r->pool, r->connection->log,
                                ctx->kind == NGX_PT_REQ_CATALOG
                                ? NULL : &ctx->repo,
                                &last, (ngx_uint_t) n, &list, &more)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->kind == NGX_PT_REQ_TAGS && list.nelts == 0 && last.len == 0
        && ngx_pt_content_tag(r->pool, r->connection->log, &ctx->repo, NULL,
                              NULL) == NGX_DECLINED)
    {
        return ngx_pt_registry_error(r, NGX_HTTP_NOT_FOUND, "NAME_UNKNOWN",
                                     "repository name not known to "
                                     "registry");
    }

    g = ngx_pt_json_gen(r->pool);
    if (g == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    items = list.elts;

    ngx_pt_json_map_open(g);

    if (ctx->kind == NGX_PT_REQ_TAGS) {
        ngx_pt_json_key(g, "name");
        ngx_pt_json_str(g, ctx->asked.len ? &ctx->asked : &ctx->repo);
        ngx_pt_json_key(g, "tags");

    } else {
        ngx_pt_json_key(g, "repositories");
    }

    ngx_pt_json_array_open(g);
    for (i = 0; i < list.nelts; i++) {
        ngx_pt_json_str(g, &items[i]);
    }
    ngx_pt_json_array_close(g);
    ngx_pt_json_map_close(g);

    if (ngx_pt_json_result(g, r->pool, &body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (more && list.nelts) {
        link.len = r->uri.len + 3 * items[list.nelts - 1].len + NGX_INT_T_LEN
                   + sizeof("<?n=&last=>; rel=\"next\"");
        link.data = ngx_pnalloc(r->pool, link.len);
        if (link.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = ngx_sprintf(link.data, "<%V?n=%i&last=", &r->uri, n);
        p = (u_char *) ngx_escape_uri(p, items[list.nelts - 1].data,
                                      items[list.nelts - 1].len,
                                      NGX_ESCAPE_ARGS);
        p = ngx_cpymem(p, ">; rel=\"next\"", sizeof(">; rel=\"next\"") - 1);
        link.len = p - link.data;

        if (ngx_pt_registry_set_header(r, "Link", &link) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return ngx_pt_send(r, NGX_HTTP_OK, &ngx_pt_json_type, &body);
}


/* a query argument, unescaped; NGX_DECLINED: absent or empty */

ngx_int_t
ngx_pt_registry_arg(ngx_http_request_t *r, const char *name,
    ngx_str_t *value)
{
    u_char     *p;
    ngx_str_t   arg;

    ngx_str_null(value);

    if (ngx_http_arg(r, (u_char *) name, ngx_strlen(name), &arg) != NGX_OK
        || arg.len == 0)
    {
        return NGX_DECLINED;
    }

    value->data = ngx_pnalloc(r->pool, arg.len);
    if (value->data == NULL) {
        return NGX_ERROR;
    }

    p = value->data;
    ngx_unescape_uri(&p, &arg.data, arg.len, 0);
    value->len = p - value->data;

    return NGX_OK;
}


/* {"errors": [{"code", "message", "detail"}]} */

ngx_int_t
ngx_pt_registry_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message)
{
    yajl_gen   g;
    ngx_str_t  body;

    g = ngx_pt_json_gen(r->pool);
    if (g == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_pt_json_map_open(g);
    ngx_pt_json_key(g, "errors");
    ngx_pt_json_array_open(g);
    ngx_pt_json_map_open(g);
    ngx_pt_json_key(g, "code");
    ngx_pt_json_cstr(g, code);
    ngx_pt_json_key(g, "message");
    ngx_pt_json_cstr(g, message);
    ngx_pt_json_key(g, "detail");
    ngx_pt_json_null(g);
    ngx_pt_json_map_close(g);
    ngx_pt_json_array_close(g);
    ngx_pt_json_map_close(g);

    if (ngx_pt_json_result(g, r->pool, &body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* an error page must not inherit a digest set for the content */
    r->headers_out.etag = NULL;

    return ngx_pt_send(r, status, &ngx_pt_json_type, &body);
}


ngx_int_t
ngx_pt_registry_set_header(ngx_http_request_t *r, const char *key,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) key;
    h->key.len = ngx_strlen(key);
    h->value = *value;

    return NGX_OK;
}


ngx_int_t
ngx_pt_registry_etag(ngx_http_request_t *r, ngx_str_t *digest)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "ETag");

    h->value.len = digest->len + 2;
    h->value.data = ngx_pnalloc(r->pool, h->value.len);
    if (h->value.data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(h->value.data, "\"%V\"", digest);

    r->headers_out.etag = h;

    return NGX_OK;
}


ngx_int_t
ngx_pt_registry_add_variables(ngx_conf_t *cf)
{
    return ngx_pt_add_variables(cf, ngx_pt_registry_vars);
}


/* $pullthrough_cache_status: HIT, MISS, JOIN, ERROR */

static ngx_int_t
ngx_pt_cache_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_uint_t                        status;
    ngx_pt_req_t                     *ctx;
    ngx_http_pullthrough_loc_conf_t  *plcf;

    r = r->main;

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_pullthrough_module);
    ctx = ngx_http_get_module_ctx(r, ngx_http_pullthrough_module);

    status = (plcf->registry && ctx) ? ctx->cache_status : 0;

    if (status == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = ngx_pt_cache_status_name(status)->data;
    v->len = ngx_pt_cache_status_name(status)->len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


/* the log phase: the request counted for the metrics */

ngx_int_t
ngx_pt_registry_log_handler(ngx_http_request_t *r)
{
    off_t                             bytes;
    ngx_str_t                         none = ngx_null_string;
    ngx_pt_req_t                     *ctx;
    ngx_http_pullthrough_loc_conf_t  *plcf;

    if (r != r->main) {
        return NGX_OK;
    }

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_pullthrough_module);

    if (plcf == NULL || plcf->registry != 1) {
        return NGX_OK;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_pullthrough_module);

    bytes = r->connection->sent - r->header_size;

    ngx_pt_metrics_request((ctx && ctx->dist) ? &ctx->dist->name : &none,
                           ctx ? ctx->cache_status : 0, bytes);

    return NGX_OK;
}
