
/*
 * ngx_pullthrough: the admin API's read-only views of what pulls made:
 * repository versions and content (tags, manifests, blobs), with Pulp's
 * shapes. Content units have no records of their own: their ids are
 * derived from what they are, so the same blob has the same href in every
 * repository.
 */


#include <ngx_pt.h>
#include <ngx_pt_admin.h>


typedef struct {
    ngx_str_t                   id;
    ngx_str_t                   name;        /* tags */
    ngx_str_t                   digest;
    ngx_str_t                   repo;
} ngx_pt_unit_t;


typedef struct {
    ngx_pt_admin_t             *ctx;
    ngx_uint_t                  kind;
    ngx_array_t                 units;       /* ngx_pt_unit_t */
    ngx_str_t                   digest;      /* filters */
    ngx_str_t                   name;
    ngx_str_t                   id;
} ngx_pt_units_t;


static const char  *ngx_pt_content_paths[] = {
    "content/container/tags/",
    "content/container/manifests/",
    "content/container/blobs/"
};

static const char  *ngx_pt_content_prns[] = {
    "container.tag",
    "container.manifest",
    "container.blob"
};


static ngx_int_t ngx_pt_unit_id(ngx_pool_t *pool, ngx_uint_t kind,
    ngx_str_t *key, ngx_str_t *id);
static void ngx_pt_unit_href(ngx_pool_t *pool, ngx_uint_t kind, ngx_str_t *id,
    ngx_str_t *href);
static ngx_int_t ngx_pt_units_add(ngx_pt_units_t *u, ngx_str_t *repo,
    ngx_str_t *name, ngx_str_t *digest);
static ngx_int_t ngx_pt_units_scan(void *data, ngx_str_t *repo,
    ngx_str_t *item, ngx_str_t *value);
static ngx_int_t ngx_pt_units_version(ngx_pt_units_t *u, MDB_txn *txn,
    ngx_str_t *href);
static ngx_int_t ngx_pt_unit_render(ngx_pt_admin_t *ctx, MDB_txn *txn,
    ngx_uint_t kind, ngx_pt_unit_t *unit);
static void ngx_pt_version_render(ngx_pt_admin_t *ctx, ngx_pt_repo_t *repo,
    ngx_pt_version_t *v);


/* what a repository's record does not hold: its versions */

ngx_int_t
ngx_pt_admin_render_repo(ngx_pt_admin_t *ctx, MDB_txn *txn, void *rec)
{
    u_char          buf[NGX_PT_HREF_LEN];
    ngx_str_t       s;
    ngx_pt_repo_t  *repo = rec;

    ngx_pt_record_href(&ngx_pt_repo_type, &repo->meta.id, buf, &s);
    s.len = ngx_sprintf(buf + s.len, "versions/") - buf;

    ngx_pt_json_key(ctx->g, "versions_href");
    ngx_pt_json_str(ctx->g, &s);

    s.len = ngx_sprintf(buf + s.len, "%L/", repo->latest_version) - buf;

    ngx_pt_json_key(ctx->g, "latest_version_href");
    ngx_pt_json_str(ctx->g, &s);

    ngx_pt_json_key(ctx->g, "manifest_signing_service");
    ngx_pt_json_null(ctx->g);

    return NGX_OK;
}


/* what a per-image distribution's record does not hold: where it is */

ngx_int_t
ngx_pt_admin_render_dist(ngx_pt_admin_t *ctx, MDB_txn *txn, void *rec)
{
    u_char         *p;
    ngx_str_t       host, s;
    ngx_pt_dist_t  *dist = rec;

    ngx_pt_json_key(ctx->g, "repository_version");
    ngx_pt_json_null(ctx->g);

    host = ctx->r->headers_in.host ? ctx->r->headers_in.host->value
                                   : ctx->r->headers_in.server;

    p = ngx_pnalloc(ctx->pool, host.len + 1 + dist->base_path.len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    s.data = p;
    s.len = ngx_sprintf(p, "%V/%V", &host, &dist->base_path) - p;

    ngx_pt_json_key(ctx->g, "registry_path");
    ngx_pt_json_str(ctx->g, &s);

    return NGX_OK;
}


typedef struct {
    ngx_pt_admin_t             *ctx;
    ngx_array_t                 list;        /* ngx_pt_version_t */
} ngx_pt_versions_t;


/* a stored version: kept when it is the one asked for (or all are) */

static ngx_int_t
ngx_pt_admin_version_one(void *data, ngx_pt_version_t *v)
{
    ngx_pt_versions_t *vs = data;

    ngx_pt_version_t  *kept;

    if (vs->ctx->version >= 0 && v->number != vs->ctx->version) {
        return NGX_OK;
    }

    kept = ngx_array_push(&vs->list);
    if (kept == NULL) {
        return NGX_ERROR;
    }

    *kept = *v;

    return NGX_OK;
}


/* /repositories/container/container/<id>/versions/[<n>/] */

ngx_int_t
ngx_pt_admin_versions(ngx_pt_admin_t *ctx)
{
    void              *rec;
    MDB_txn           *txn;
    ngx_int_t          rc, limit, offset, n, count;
    ngx_pt_repo_t     *repo;
    ngx_pt_version_t  *d;
    ngx_pt_versions_t  vs;

    if (ngx_pt_txn_begin(ctx->log, 0, &txn) != NGX_OK) {
        return ngx_pt_admin_store_error(ctx);
    }

    rc = ngx_pt_record_load(ctx->pool, ctx->log, txn, &ngx_pt_repo_type,
                            &ctx->id, &rec);
    if (rc != NGX_OK) {
        ngx_pt_txn_abort(txn);

        if (rc == NGX_DECLINED) {
            (void) ngx_pt_admin_detail(ctx, NGX_HTTP_NOT_FOUND, "Not found.");
            return NGX_OK;
        }

        return ngx_pt_admin_store_error(ctx);
    }

    repo = rec;

    vs.ctx = ctx;

    rc = ngx_array_init(&vs.list, ctx->pool, 4, sizeof(ngx_pt_version_t));

    if (rc == NGX_OK) {
        rc = ngx_pt_versions_each(ctx->pool, ctx->log, txn, &repo->meta.id,
                                  ngx_pt_admin_version_one, &vs);
    }

    ngx_pt_txn_abort(txn);

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    d = vs.list.elts;

    if (ctx->version >= 0) {
        if (vs.list.nelts == 0) {
            (void) ngx_pt_admin_detail(ctx, NGX_HTTP_NOT_FOUND, "Not found.");
            return NGX_OK;
        }

        ngx_pt_version_render(ctx, repo, &d[0]);
        ctx->status = NGX_HTTP_OK;
        return NGX_OK;
    }

    limit = ctx->query.limit;
    offset = ctx->query.offset;
    count = vs.list.nelts;

    if (ngx_pt_admin_page(ctx, count) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* newest first, as Pulp lists them */
    for (n = count - 1 - offset; n >= 0 && n > count - 1 - offset - limit;
         n--)
    {
        ngx_pt_version_render(ctx, repo, &d[n]);
    }

    ngx_pt_json_array_close(ctx->g);
    ngx_pt_json_map_close(ctx->g);

    ctx->status = NGX_HTTP_OK;

    return NGX_OK;
}


static void
ngx_pt_version_render(ngx_pt_admin_t *ctx, ngx_pt_repo_t *repo,
    ngx_pt_version_t *v)
{
    u_char      buf[NGX_PT_HREF_LEN], qbuf[2 * NGX_PT_HREF_LEN];
    size_t      n;
    ngx_str_t   href, repo_href, s;
    ngx_uint_t  kind, counts[3];
    yajl_gen    g = ctx->g;

    n = (size_t) v->number;

    counts[NGX_PT_CONTENT_TAGS] = v->tags.nelts;
    counts[NGX_PT_CONTENT_MANIFESTS] = v->manifests.nelts;
    counts[NGX_PT_CONTENT_BLOBS] = v->blobs.nelts;

    ngx_pt_record_href(&ngx_pt_repo_type, &repo->meta.id, buf, &repo_href);
    href.data = buf;
    href.len = ngx_sprintf(buf + repo_href.len, "versions/%uz/", n) - buf;

    ngx_pt_json_map_open(g);

    ngx_pt_json_key(g, "pulp_href");
    ngx_pt_json_str(g, &href);

    s.data = qbuf;
    s.len = ngx_sprintf(qbuf, "prn:core.repositoryversion:%V/%uz",
                        &repo->meta.id, n) - qbuf;
    ngx_pt_json_key(g, "prn");
    ngx_pt_json_str(g, &s);

    ngx_pt_json_key(g, "pulp_created");
    ngx_pt_json_str(g, &v->created);
    ngx_pt_json_key(g, "pulp_last_updated");
    ngx_pt_json_str(g, &v->created);
    ngx_pt_json_key(g, "number");
    ngx_pt_json_int(g, n);
    ngx_pt_json_key(g, "repository");
    ngx_pt_json_str(g, &repo_href);
    ngx_pt_json_key(g, "base_version");
    ngx_pt_json_null(g);

    ngx_pt_json_key(g, "content_summary");
    ngx_pt_json_map_open(g);

    ngx_pt_json_key(g, "added");
    ngx_pt_json_map_open(g);
    ngx_pt_json_map_close(g);
    ngx_pt_json_key(g, "removed");
    ngx_pt_json_map_open(g);
    ngx_pt_json_map_close(g);

    ngx_pt_json_key(g, "present");
    ngx_pt_json_map_open(g);

    for (kind = 0; kind < 3; kind++) {
        if (counts[kind] == 0) {
            continue;
        }

        ngx_pt_json_key(g, ngx_pt_content_prns[kind]);
        ngx_pt_json_map_open(g);
        ngx_pt_json_key(g, "count");
        ngx_pt_json_int(g, counts[kind]);

        s.data = qbuf;
        s.len = ngx_sprintf(qbuf, NGX_PT_API_ROOT "%s?repository_version=%V",
                            ngx_pt_content_paths[kind], &href) - qbuf;
        ngx_pt_json_key(g, "href");
        ngx_pt_json_str(g, &s);
        ngx_pt_json_map_close(g);
    }

    ngx_pt_json_map_close(g);
    ngx_pt_json_map_close(g);
    ngx_pt_json_map_close(g);
}


/*
 * /content/container/{tags,manifests,blobs}/: all of a repository version
 * with ?repository_version=<href>, else every unit pulls recorded.
 */

ngx_int_t
ngx_pt_admin_content(ngx_pt_admin_t *ctx)
{
    MDB_txn         *txn;
    ngx_int_t        rc, limit, offset, i;
    ngx_uint_t       kind;
    ngx_str_t        version;
    ngx_pt_unit_t   *units;
    ngx_pt_units_t   u;

    static ngx_uint_t  dbs[] = {
        NGX_PT_DB_TAGS, NGX_PT_DB_MANIFESTS, NGX_PT_DB_BLOBS
    };

    kind = ctx->res->kind;

    u.ctx = ctx;
    u.kind = kind;
    u.id = ctx->id;

    if (ngx_array_init(&u.units, ctx->pool, 16, sizeof(ngx_pt_unit_t))
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_pt_admin_query_get(ctx, "digest", &u.digest);
    ngx_pt_admin_query_get(ctx, "name", &u.name);
    ngx_pt_admin_query_get(ctx, "repository_version", &version);

    if (ngx_pt_txn_begin(ctx->log, 0, &txn) != NGX_OK) {
        return ngx_pt_admin_store_error(ctx);
    }

    if (version.len) {
        rc = ngx_pt_units_version(&u, txn, &version);

        if (rc == NGX_DECLINED) {
            ngx_pt_txn_abort(txn);

            ngx_pt_json_map_open(ctx->g);
            ngx_pt_json_key(ctx->g, "repository_version");
            ngx_pt_json_array_open(ctx->g);
            ngx_pt_json_cstr(ctx->g, "Invalid hyperlink - Object does not "
                             "exist.");
            ngx_pt_json_array_close(ctx->g);
            ngx_pt_json_map_close(ctx->g);

            ctx->status = NGX_HTTP_BAD_REQUEST;
            return NGX_OK;
        }

    } else {
        rc = ngx_pt_items_each(ctx->pool, ctx->log, txn, dbs[kind], NULL,
                               ngx_pt_units_scan, &u);
    }

    if (rc != NGX_OK) {
        ngx_pt_txn_abort(txn);
        return ngx_pt_admin_store_error(ctx);
    }

    units = u.units.elts;

    if (ctx->id.len) {
        if (u.units.nelts == 0) {
            ngx_pt_txn_abort(txn);
            (void) ngx_pt_admin_detail(ctx, NGX_HTTP_NOT_FOUND, "Not found.");
            return NGX_OK;
        }

        rc = ngx_pt_unit_render(ctx, txn, kind, &units[0]);
        ngx_pt_txn_abort(txn);

        ctx->status = NGX_HTTP_OK;
        return rc;
    }

    limit = ctx->query.limit;
    offset = ctx->query.offset;

    rc = ngx_pt_admin_page(ctx, u.units.nelts);

    for (i = offset;
         rc == NGX_OK && i < offset + limit && i < (ngx_int_t) u.units.nelts;
         i++)
    {
        rc = ngx_pt_unit_render(ctx, txn, kind, &units[i]);
    }

    ngx_pt_txn_abort(txn);

    ngx_pt_json_array_close(ctx->g);
    ngx_pt_json_map_close(ctx->g);

    ctx->status = NGX_HTTP_OK;

    return rc;
}


/* a UUID (version 5 layout) from the SHA-256 of what the unit is */

static ngx_int_t
ngx_pt_unit_id(ngx_pool_t *pool, ngx_uint_t kind, ngx_str_t *key,
    ngx_str_t *id)
{
    u_char        *p, md[EVP_MAX_MD_SIZE];
    unsigned int   n;
    EVP_MD_CTX    *c;

    c = EVP_MD_CTX_new();
    if (c == NULL) {
        return NGX_ERROR;
    }

    if (EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1
        || EVP_DigestUpdate(c, ngx_pt_content_prns[kind],
                            ngx_strlen(ngx_pt_content_prns[kind])) != 1
        || EVP_DigestUpdate(c, key->data, key->len) != 1
        || EVP_DigestFinal_ex(c, md, &n) != 1)
    {
        EVP_MD_CTX_free(c);
        return NGX_ERROR;
    }

    EVP_MD_CTX_free(c);

    md[6] = (md[6] & 0x0f) | 0x50;
    md[8] = (md[8] & 0x3f) | 0x80;

    p = ngx_pnalloc(pool, NGX_PT_UUID_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    id->data = p;
    id->len = ngx_pt_uuid_format(p, md) - p;

    return NGX_OK;
}


static void
ngx_pt_unit_href(ngx_pool_t *pool, ngx_uint_t kind, ngx_str_t *id,
    ngx_str_t *href)
{
    href->data = ngx_pnalloc(pool, 128);
    if (href->data == NULL) {
        href->len = 0;
        return;
    }

    href->len = ngx_sprintf(href->data, NGX_PT_API_ROOT "%s%V/",
                            ngx_pt_content_paths[kind], id)
                - href->data;
}


/* a unit into the list: tags are per repository, the rest per digest */

static ngx_int_t
ngx_pt_units_add(ngx_pt_units_t *u, ngx_str_t *repo, ngx_str_t *name,
    ngx_str_t *digest)
{
    u_char         *p;
    ngx_str_t       key, id;
    ngx_uint_t      i;
    ngx_pt_unit_t  *unit;

    if ((u->digest.len && (u->digest.len != digest->len
                           || ngx_strncmp(u->digest.data, digest->data,
                                          digest->len) != 0))
        || (u->name.len && u->kind == NGX_PT_CONTENT_TAGS
            && (u->name.len != name->len
                || ngx_strncmp(u->name.data, name->data, name->len) != 0)))
    {
        return NGX_OK;
    }

    if (u->kind == NGX_PT_CONTENT_TAGS) {
        key.len = repo->len + name->len + digest->len + 2;
        key.data = ngx_pnalloc(u->ctx->pool, key.len);
        if (key.data == NULL) {
            return NGX_ERROR;
        }

        p = ngx_sprintf(key.data, "%V:%V@%V", repo, name, digest);
        key.len = p - key.data;

    } else {
        key = *digest;
    }

    if (ngx_pt_unit_id(u->ctx->pool, u->kind, &key, &id) != NGX_OK) {
        return NGX_ERROR;
    }

    if (u->id.len
        && ngx_strncmp(u->id.data, id.data, NGX_PT_UUID_LEN) != 0)
    {
        return NGX_OK;
    }

    unit = u->units.elts;
    for (i = 0; i < u->units.nelts; i++) {
        if (ngx_strncmp(unit[i].id.data, id.data, NGX_PT_UUID_LEN) == 0) {
            return NGX_OK;
        }
    }

    unit = ngx_array_push(&u->units);
    if (unit == NULL) {
        return NGX_ERROR;
    }

    unit->id = id;
    unit->repo = *repo;
    unit->digest = *digest;

    if (name) {
        unit->name = *name;
    } else {
        ngx_str_null(&unit->name);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_pt_units_scan(void *data, ngx_str_t *repo, ngx_str_t *item,
    ngx_str_t *value)
{
    ngx_pt_units_t *u = data;

    ngx_str_t      r, i, digest;
    ngx_pt_tag_t   t;

    /* copies: LMDB's memory is valid only in the transaction */

    r.len = repo->len;
    r.data = ngx_pstrdup(u->ctx->pool, repo);
    i.len = item->len;
    i.data = ngx_pstrdup(u->ctx->pool, item);

    if (r.data == NULL || i.data == NULL) {
        return NGX_ERROR;
    }

    if (u->kind != NGX_PT_CONTENT_TAGS) {
        return ngx_pt_units_add(u, &r, NULL, &i);
    }

    if (ngx_pt_tag_decode(value, &t) != NGX_OK) {
        return NGX_OK;
    }

    digest.len = t.digest.len;
    digest.data = ngx_pstrdup(u->ctx->pool, &t.digest);
    if (digest.data == NULL) {
        return NGX_ERROR;
    }

    return ngx_pt_units_add(u, &r, &i, &digest);
}


/* the units of one version, named by its href */

static ngx_int_t
ngx_pt_units_version(ngx_pt_units_t *u, MDB_txn *txn, ngx_str_t *href)
{
    u_char            *p, *last;
    void              *rec;
    size_t             root, i;
    ngx_int_t          n, rc;
    ngx_str_t          id, *digests;
    const char        *path;
    ngx_array_t       *list;
    ngx_keyval_t      *kv;
    ngx_pt_repo_t     *repo;
    ngx_pt_version_t   v;

    p = href->data;
    last = p + href->len;

    if (href->len > 8 && (ngx_strncasecmp(p, (u_char *) "http://", 7) == 0
                          || ngx_strncasecmp(p, (u_char *) "https://", 8) == 0))
    {
        p = ngx_strlchr(p + 8, last, '/');
        if (p == NULL) {
            return NGX_DECLINED;
        }
    }

    root = sizeof(NGX_PT_API_ROOT) - 1;
    path = ngx_pt_repo_type.path;

    if ((size_t) (last - p) < root + ngx_strlen(path) + NGX_PT_UUID_LEN + 10
        || ngx_strncmp(p, NGX_PT_API_ROOT, root) != 0
        || ngx_strncmp(p + root, path, ngx_strlen(path)) != 0)
    {
        return NGX_DECLINED;
    }

    p += root + ngx_strlen(path);

    id.data = p;
    id.len = NGX_PT_UUID_LEN;
    p += NGX_PT_UUID_LEN;

    if (!ngx_pt_id_valid(&id) || ngx_strncmp(p, "/versions/", 10) != 0) {
        return NGX_DECLINED;
    }

    p += 10;

    for (i = 0; p + i < last && p[i] != '/'; i++) { /* void */ }

    n = ngx_atoi(p, i);
    if (n == NGX_ERROR) {
        return NGX_DECLINED;
    }

    rc = ngx_pt_version_get(u->ctx->pool, u->ctx->log, txn, &id, n, &v);
    if (rc != NGX_OK) {
        return rc;
    }

    /* the repository's name, for tag units */

    rc = ngx_pt_record_load(u->ctx->pool, u->ctx->log, txn,
                            &ngx_pt_repo_type, &id, &rec);
    if (rc != NGX_OK) {
        return rc;
    }

    repo = rec;

    if (u->kind == NGX_PT_CONTENT_TAGS) {
        kv = v.tags.elts;

        for (i = 0; i < v.tags.nelts; i++) {
            if (ngx_pt_units_add(u, &repo->name, &kv[i].key, &kv[i].value)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }

        return NGX_OK;
    }

    list = (u->kind == NGX_PT_CONTENT_MANIFESTS) ? &v.manifests : &v.blobs;
    digests = list->elts;

    for (i = 0; i < list->nelts; i++) {
        if (ngx_pt_units_add(u, &repo->name, NULL, &digests[i]) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_pt_unit_render(ngx_pt_admin_t *ctx, MDB_txn *txn, ngx_uint_t kind,
    ngx_pt_unit_t *unit)
{
    u_char                 *p;
    ngx_int_t               rc;
    ngx_str_t               href, id, s, *digests;
    ngx_uint_t              i;
    yajl_gen                g = ctx->g;
    ngx_array_t            *list;
    ngx_pt_file_t           file;
    ngx_pt_manifest_rec_t   m;

    ngx_pt_json_map_open(g);

    ngx_pt_unit_href(ctx->pool, kind, &unit->id, &href);
    ngx_pt_json_key(g, "pulp_href");
    ngx_pt_json_str(g, &href);

    p = ngx_pnalloc(ctx->pool, 64 + NGX_PT_UUID_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    s.data = p;
    s.len = ngx_sprintf(p, "prn:%s:%V", ngx_pt_content_prns[kind], &unit->id)
            - p;
    ngx_pt_json_key(g, "prn");
    ngx_pt_json_str(g, &s);

    if (kind == NGX_PT_CONTENT_TAGS) {
        ngx_pt_json_key(g, "name");
        ngx_pt_json_str(g, &unit->name);

        if (ngx_pt_unit_id(ctx->pool, NGX_PT_CONTENT_MANIFESTS, &unit->digest,
                           &id) != NGX_OK)
        {
            return NGX_ERROR;
        }

        ngx_pt_unit_href(ctx->pool, NGX_PT_CONTENT_MANIFESTS, &id, &href);
        ngx_pt_json_key(g, "tagged_manifest");
        ngx_pt_json_str(g, &href);

        ngx_pt_json_map_close(g);
        return NGX_OK;
    }

    ngx_pt_json_key(g, "digest");
    ngx_pt_json_str(g, &unit->digest);

    /* ours: whether the store holds its file now (evicted content stays
     * listed, as Pulp's on-demand content does, and is fetched again) */

    rc = ngx_pt_file_get(ctx->log, txn, &unit->digest, &file);
    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    ngx_pt_json_key(g, "cached");
    ngx_pt_json_bool(g, rc == NGX_OK);

    if (kind == NGX_PT_CONTENT_BLOBS) {
        ngx_pt_json_map_close(g);
        return NGX_OK;
    }

    /* a manifest: what it names, from its record */

    rc = ngx_pt_manifest_get(ctx->pool, ctx->log, txn, &unit->repo,
                             &unit->digest, &m);
    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ngx_memzero(&m, sizeof(ngx_pt_manifest_rec_t));
    }

    /* a manifest record without a media type cannot be decoded */

    ngx_pt_json_key(g, "media_type");
    ngx_pt_json_str(g, m.media_type.len ? &m.media_type : NULL);

    ngx_pt_json_key(g, "config_blob");
    if (m.config.len) {
        if (ngx_pt_unit_id(ctx->pool, NGX_PT_CONTENT_BLOBS, &m.config, &id)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        ngx_pt_unit_href(ctx->pool, NGX_PT_CONTENT_BLOBS, &id, &href);
        ngx_pt_json_str(g, &href);

    } else {
        ngx_pt_json_null(g);
    }

    for (kind = NGX_PT_CONTENT_MANIFESTS; kind <= NGX_PT_CONTENT_BLOBS;
         kind++)
    {
        list = (kind == NGX_PT_CONTENT_MANIFESTS) ? &m.manifests : &m.blobs;

        ngx_pt_json_key(g, kind == NGX_PT_CONTENT_MANIFESTS
                           ? "listed_manifests" : "blobs");
        ngx_pt_json_array_open(g);

        digests = (list->elts && list->nelts) ? list->elts : NULL;

        for (i = 0; digests && i < list->nelts; i++) {
            if (ngx_pt_unit_id(ctx->pool, kind, &digests[i], &id) != NGX_OK) {
                return NGX_ERROR;
            }

            ngx_pt_unit_href(ctx->pool, kind, &id, &href);
            ngx_pt_json_str(g, &href);
        }

        ngx_pt_json_array_close(g);
    }

    ngx_pt_json_map_close(g);

    return NGX_OK;
}
