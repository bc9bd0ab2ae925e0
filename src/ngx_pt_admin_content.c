
/*
 * ngx_pullthrough: the admin API's read-only views of what pulls made:
 * repository versions, content (tags, manifests, blobs) and namespaces,
 * with Pulp's shapes. Content units have no records of their own: their ids are
 * derived from what they are, so the same blob has the same href in every
 * repository.
 */


#include <ngx_pt.h>
#include <ngx_pt_admin.h>


static const char  *ngx_pt_content_paths[] = {
    "content/container/tags/",
    "content/container/manifests/",
    "content/container/blobs/"
};

/* the OpenAPI document's part of what this file answers */

static ngx_pt_admin_prop_t  ngx_pt_admin_version_props[] = {
    { "pulp_href", "uri" },
    { "prn", "string" },
    { "pulp_created", "date-time" },
    { "pulp_last_updated", "date-time" },
    { "number", "integer" },
    { "repository", "uri" },
    { "base_version", "uri?" },
    { "content_summary", "object" },
    { NULL, NULL }
};

static const char  *ngx_pt_admin_version_params[] = {
    "ordering", NULL
};

ngx_pt_admin_api_t  ngx_pt_admin_version_api = {
    "repositories_container_container_versions",
    "container_container_repository_version_href", "RepositoryVersion",
    "Repositories: Container Versions", ngx_pt_admin_version_props,
    ngx_pt_admin_version_params, NULL, NULL, NULL, NULL, 0, 0
};

static ngx_pt_admin_prop_t  ngx_pt_admin_tag_props[] = {
    { "pulp_href", "uri" },
    { "prn", "string" },
    { "name", "string" },
    { "tagged_manifest", "uri" },
    { NULL, NULL }
};

static const char  *ngx_pt_admin_tag_params[] = {
    "ordering", "name", "name__in", "digest", "digest__in",
    "repository_version", NULL
};

ngx_pt_admin_api_t  ngx_pt_admin_tag_api = {
    "content_container_tags", "container_tag_href", "container.Tag",
    "Content: Tags", ngx_pt_admin_tag_props, ngx_pt_admin_tag_params,
    NULL, NULL, NULL, NULL, 0, 0
};

/* Pulp's generic /content/: the units of every type, as any unit */

static ngx_pt_admin_prop_t  ngx_pt_admin_contents_props[] = {
    { "pulp_href", "uri" },
    { "prn", "string" },
    { NULL, NULL }
};

static const char  *ngx_pt_admin_contents_params[] = {
    "repository_version", "pulp_type__in", NULL
};

ngx_pt_admin_api_t  ngx_pt_admin_contents_api = {
    "content", NULL, "MultipleArtifactContent", "Content",
    ngx_pt_admin_contents_props, ngx_pt_admin_contents_params,
    NULL, NULL, NULL, NULL, 0, 0
};

static ngx_pt_admin_prop_t  ngx_pt_admin_manifest_props[] = {
    { "pulp_href", "uri" },
    { "prn", "string" },
    { "digest", "string" },
    { "cached", "boolean" },             /* ours */
    { "media_type", "string?" },
    { "config_blob", "uri?" },
    { "listed_manifests", "array" },
    { "blobs", "array" },
    { "annotations", "object" },
    { "labels", "object" },
    { "is_bootable", "boolean" },
    { "is_flatpak", "boolean" },
    { "type", "string?" },
    { "architecture", "string?" },
    { "os", "string?" },
    { "compressed_image_size", "integer?" },
    { NULL, NULL }
};

static const char  *ngx_pt_admin_unit_params[] = {
    "ordering", "digest", "digest__in", "repository_version", NULL
};

ngx_pt_admin_api_t  ngx_pt_admin_manifest_api = {
    "content_container_manifests", "container_manifest_href",
    "container.Manifest", "Content: Manifests", ngx_pt_admin_manifest_props,
    ngx_pt_admin_unit_params, NULL, NULL, NULL, NULL, 0, 0
};

static ngx_pt_admin_prop_t  ngx_pt_admin_blob_props[] = {
    { "pulp_href", "uri" },
    { "prn", "string" },
    { "digest", "string" },
    { "cached", "boolean" },             /* ours */
    { NULL, NULL }
};

ngx_pt_admin_api_t  ngx_pt_admin_blob_api = {
    "content_container_blobs", "container_blob_href", "container.Blob",
    "Content: Blobs", ngx_pt_admin_blob_props, ngx_pt_admin_unit_params,
    NULL, NULL, NULL, NULL, 0, 0
};

static ngx_pt_admin_prop_t  ngx_pt_admin_namespace_props[] = {
    { "pulp_href", "uri" },
    { "prn", "string" },
    { "pulp_created", "date-time" },
    { "name", "string" },
    { NULL, NULL }
};

static const char  *ngx_pt_admin_namespace_params[] = {
    "ordering", "name", NULL
};

ngx_pt_admin_api_t  ngx_pt_admin_namespace_api = {
    "pulp_container_namespaces", "container_container_namespace_href",
    "container.ContainerNamespace", "Pulp_Container/Namespaces",
    ngx_pt_admin_namespace_props, ngx_pt_admin_namespace_params,
    NULL, NULL, NULL, NULL, 0, 0
};

static ngx_pt_admin_prop_t  ngx_pt_admin_repo_props[] = {
    { "versions_href", "uri" },
    { "latest_version_href", "uri" },
    { "manifest_signing_service", "uri?" },
    { NULL, NULL }
};

ngx_pt_admin_api_t  ngx_pt_admin_repo_api = {
    "repositories_container_container", "container_container_repository_href",
    "container.ContainerRepository", "Repositories: Container",
    ngx_pt_admin_repo_props, NULL, NULL, NULL, NULL, NULL, 0, 0
};

ngx_pt_admin_api_t  ngx_pt_admin_repos_api = {
    "repositories", NULL, "container.ContainerRepository", "Repositories",
    NULL, NULL, NULL, NULL, NULL, NULL, 0, 1
};

static ngx_pt_admin_prop_t  ngx_pt_admin_dist_props[] = {
    { "repository_version", "uri?" },
    { "remote", "uri?" },
    { "registry_path", "string" },
    { NULL, NULL }
};

ngx_pt_admin_api_t  ngx_pt_admin_dist_api = {
    "distributions_container_container",
    "container_container_distribution_href", "container.ContainerDistribution",
    "Distributions: Container", ngx_pt_admin_dist_props, NULL, NULL, NULL,
    NULL, NULL, 0, 0
};


static void ngx_pt_unit_href(ngx_uint_t kind, ngx_pt_unit_t *unit,
    u_char *buf, ngx_str_t *href);
static ngx_int_t ngx_pt_units_version(ngx_pt_admin_t *ctx, MDB_txn *txn,
    ngx_str_t *href, ngx_pt_unit_t *filter, ngx_array_t *out, size_t *count);
static ngx_int_t ngx_pt_units_page_of(ngx_pt_admin_t *ctx, MDB_txn *txn,
    ngx_str_t *version, ngx_pt_unit_t *filter, ngx_array_t *out,
    size_t *count);
static ngx_int_t ngx_pt_units_select(ngx_pt_admin_t *ctx, MDB_txn *txn,
    ngx_str_t *version, ngx_pt_unit_t *filter, ngx_str_t *digests,
    ngx_str_t *names, ngx_array_t *out, size_t *count);
static ngx_uint_t ngx_pt_admin_content_typed(ngx_str_t *types,
    ngx_uint_t kind);
static void ngx_pt_unit_render_prn(yajl_gen g, ngx_uint_t kind,
    ngx_pt_unit_t *unit);
static ngx_uint_t ngx_pt_unit_match(ngx_uint_t kind, ngx_pt_unit_t *filter,
    ngx_pt_unit_t *unit);
static ngx_int_t ngx_pt_unit_render(ngx_pt_admin_t *ctx, MDB_txn *txn,
    ngx_uint_t kind, ngx_pt_unit_t *unit);
static ngx_int_t ngx_pt_unit_render_nature(ngx_pt_admin_t *ctx, MDB_txn *txn,
    ngx_pt_manifest_rec_t *m);
static void ngx_pt_json_value_or_empty(yajl_gen g, yajl_val v);
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
    u_char         *p, buf[NGX_PT_HREF_LEN];
    ngx_str_t       host, s;
    ngx_pt_dist_t  *dist = rec;

    ngx_pt_json_key(ctx->g, "repository_version");
    ngx_pt_json_null(ctx->g);

    /* Pulp's per-image remote: a view of the pull-through one */

    ngx_pt_json_key(ctx->g, "remote");

    if (dist->remote.len) {
        ngx_pt_admin_image_remote_href(dist, buf, &s);
        ngx_pt_json_str(ctx->g, &s);

    } else {
        ngx_pt_json_null(ctx->g);
    }

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

        ngx_pt_json_key(g, ngx_pt_unit_prn(kind));
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
 * /content/container/{tags,manifests,blobs}/: the units of a repository
 * version with ?repository_version=<href>, else every unit pulls
 * recorded, from the units' indexes; ?digest= and (tags) ?name= filter.
 * What a page costs is its units, whatever the store holds.
 */

ngx_int_t
ngx_pt_admin_content(ngx_pt_admin_t *ctx)
{
    size_t          count;
    MDB_txn        *txn;
    ngx_int_t       rc;
    ngx_str_t       version, digests, names;
    ngx_uint_t      i, kind;
    ngx_array_t     out;
    ngx_pt_unit_t  *units, filter, one;

    kind = ctx->kind;

    ngx_memzero(&filter, sizeof(ngx_pt_unit_t));

    ngx_pt_admin_query_get(ctx, "digest", &filter.digest);
    ngx_pt_admin_query_get(ctx, "name", &filter.name);
    ngx_pt_admin_query_get(ctx, "repository_version", &version);
    ngx_pt_admin_query_get(ctx, "digest__in", &digests);
    ngx_pt_admin_query_get(ctx, "name__in", &names);

    if (kind != NGX_PT_CONTENT_TAGS) {
        ngx_str_null(&names);
    }

    if (ngx_array_init(&out, ctx->pool, ngx_max(ctx->query.limit, 1),
                       sizeof(ngx_pt_unit_t))
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_pt_txn_begin(ctx->log, 0, &txn) != NGX_OK) {
        return ngx_pt_admin_store_error(ctx);
    }

    if (ctx->id.len) {
        rc = ngx_pt_unit_find(ctx->pool, ctx->log, txn, kind, &ctx->id, &one);

        if (rc == NGX_OK) {
            rc = ngx_pt_unit_render(ctx, txn, kind, &one);
            ngx_pt_txn_abort(txn);

            ctx->status = NGX_HTTP_OK;
            return rc;
        }

        ngx_pt_txn_abort(txn);

        if (rc == NGX_DECLINED) {
            (void) ngx_pt_admin_detail(ctx, NGX_HTTP_NOT_FOUND, "Not found.");
            return NGX_OK;
        }

        return ngx_pt_admin_store_error(ctx);
    }

    rc = ngx_pt_units_select(ctx, txn, &version, &filter, &digests, &names,
                             &out, &count);

    if (rc == NGX_DECLINED) {
        ngx_pt_txn_abort(txn);
        return ngx_pt_admin_field_error(ctx, "repository_version",
                                        "Invalid hyperlink - Object does "
                                        "not exist.");
    }

    if (rc != NGX_OK) {
        ngx_pt_txn_abort(txn);
        return ngx_pt_admin_store_error(ctx);
    }

    rc = ngx_pt_admin_page(ctx, count);

    units = out.elts;

    for (i = 0; rc == NGX_OK && i < out.nelts; i++) {
        rc = ngx_pt_unit_render(ctx, txn, kind, &units[i]);
    }

    ngx_pt_txn_abort(txn);

    ngx_pt_json_array_close(ctx->g);
    ngx_pt_json_map_close(ctx->g);

    ctx->status = NGX_HTTP_OK;

    return rc;
}


/*
 * /content/: tags, then manifests, then blobs, each kind in its own
 * order, one page cut across them; ?repository_version= limits them to a
 * version's, ?pulp_type__in= to some kinds (container.tag, ...).
 */

ngx_int_t
ngx_pt_admin_content_all(ngx_pt_admin_t *ctx)
{
    u_char          buf[NGX_PT_HREF_LEN];
    size_t          count, total;
    MDB_txn        *txn;
    ngx_int_t       rc, offset, limit;
    ngx_str_t       version, types, href;
    ngx_uint_t      kind, i;
    ngx_array_t     out[NGX_PT_CONTENT_BLOBS + 1];
    ngx_pt_unit_t  *units, filter;

    ngx_memzero(&filter, sizeof(ngx_pt_unit_t));

    ngx_pt_admin_query_get(ctx, "repository_version", &version);
    ngx_pt_admin_query_get(ctx, "pulp_type__in", &types);

    for (kind = 0; kind <= NGX_PT_CONTENT_BLOBS; kind++) {
        if (ngx_array_init(&out[kind], ctx->pool, 4, sizeof(ngx_pt_unit_t))
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (ngx_pt_txn_begin(ctx->log, 0, &txn) != NGX_OK) {
        return ngx_pt_admin_store_error(ctx);
    }

    offset = ctx->query.offset;
    limit = ctx->query.limit;
    total = 0;
    rc = NGX_OK;

    for (kind = 0; rc == NGX_OK && kind <= NGX_PT_CONTENT_BLOBS; kind++) {
        if (types.len && !ngx_pt_admin_content_typed(&types, kind)) {
            continue;
        }

        ctx->kind = kind;
        ctx->query.offset = (size_t) offset > total ? offset - total : 0;

        rc = ngx_pt_units_page_of(ctx, txn, &version, &filter, &out[kind],
                                  &count);

        total += count;
        ctx->query.limit -= out[kind].nelts;
    }

    ctx->query.offset = offset;
    ctx->query.limit = limit;

    if (rc == NGX_DECLINED) {
        ngx_pt_txn_abort(txn);
        return ngx_pt_admin_field_error(ctx, "repository_version",
                                        "Invalid hyperlink - Object does "
                                        "not exist.");
    }

    if (rc == NGX_OK) {
        rc = ngx_pt_admin_page(ctx, total);
    }

    for (kind = 0; rc == NGX_OK && kind <= NGX_PT_CONTENT_BLOBS; kind++) {
        units = out[kind].elts;

        for (i = 0; i < out[kind].nelts; i++) {
            ngx_pt_json_map_open(ctx->g);

            ngx_pt_unit_href(kind, &units[i], buf, &href);
            ngx_pt_json_key(ctx->g, "pulp_href");
            ngx_pt_json_str(ctx->g, &href);

            ngx_pt_json_key(ctx->g, "prn");
            ngx_pt_unit_render_prn(ctx->g, kind, &units[i]);

            ngx_pt_json_map_close(ctx->g);
        }
    }

    ngx_pt_txn_abort(txn);

    if (rc != NGX_OK) {
        return ngx_pt_admin_store_error(ctx);
    }

    ngx_pt_json_array_close(ctx->g);
    ngx_pt_json_map_close(ctx->g);

    ctx->status = NGX_HTTP_OK;

    return NGX_OK;
}


/* whether a kind's Pulp type is in a comma-separated list */

static ngx_uint_t
ngx_pt_admin_content_typed(ngx_str_t *types, ngx_uint_t kind)
{
    ngx_str_t  type;

    type.data = (u_char *) ngx_pt_unit_prn(kind);
    type.len = ngx_strlen(type.data);

    return ngx_pt_admin_listed(types, &type);
}


/* a page of the units of a version, or of all, that the filter lets by */

static ngx_int_t
ngx_pt_units_page_of(ngx_pt_admin_t *ctx, MDB_txn *txn, ngx_str_t *version,
    ngx_pt_unit_t *filter, ngx_array_t *out, size_t *count)
{
    if (version->len) {
        return ngx_pt_units_version(ctx, txn, version, filter, out, count);
    }

    return ngx_pt_units_page(ctx->pool, ctx->log, txn, ctx->kind, filter,
                             ctx->query.offset, ctx->query.limit, out, count);
}


/*
 * With ?digest__in= or (tags) ?name__in=, each value (or pair of values)
 * is an exact filter of its own: their units, one after the other, make
 * the list that the page is cut from.
 */

static ngx_int_t
ngx_pt_units_select(ngx_pt_admin_t *ctx, MDB_txn *txn, ngx_str_t *version,
    ngx_pt_unit_t *filter, ngx_str_t *digests, ngx_str_t *names,
    ngx_array_t *out, size_t *count)
{
    u_char         *d, *de, *n, *ne, *dl, *nl;
    size_t          part, skip;
    ngx_int_t       rc, offset, limit;
    ngx_uint_t      i;
    ngx_array_t     all;
    ngx_pt_unit_t   one, *u, *units;

    if (digests->len == 0 && names->len == 0) {
        return ngx_pt_units_page_of(ctx, txn, version, filter, out, count);
    }

    if (ngx_array_init(&all, ctx->pool, 4, sizeof(ngx_pt_unit_t)) != NGX_OK) {
        return NGX_ERROR;
    }

    offset = ctx->query.offset;
    limit = ctx->query.limit;

    ctx->query.offset = 0;
    ctx->query.limit = NGX_PT_MAX_LIMIT;

    rc = NGX_OK;
    dl = digests->data + digests->len;
    nl = names->data + names->len;

    for (d = digests->data; rc == NGX_OK && d <= dl; d = de + 1) {
        de = digests->len ? ngx_strlchr(d, dl, ',') : dl;
        de = de ? de : dl;

        for (n = names->data; rc == NGX_OK && n <= nl; n = ne + 1) {
            ne = names->len ? ngx_strlchr(n, nl, ',') : nl;
            ne = ne ? ne : nl;

            one = *filter;

            if (digests->len) {
                one.digest.data = d;
                one.digest.len = de - d;
            }

            if (names->len) {
                one.name.data = n;
                one.name.len = ne - n;
            }

            /* an empty value, or one that the exact filter contradicts */

            if ((digests->len && one.digest.len == 0)
                || (names->len && one.name.len == 0)
                || !ngx_pt_unit_match(ctx->kind, filter, &one))
            {
                continue;
            }

            rc = ngx_pt_units_page_of(ctx, txn, version, &one, &all, &part);
        }
    }

    ctx->query.offset = offset;
    ctx->query.limit = limit;

    if (rc != NGX_OK) {
        return rc;
    }

    *count = all.nelts;
    units = all.elts;

    for (i = 0, skip = (size_t) offset; i < all.nelts; i++) {
        if (skip) {
            skip--;
            continue;
        }

        if (out->nelts >= (ngx_uint_t) limit) {
            break;
        }

        u = ngx_array_push(out);
        if (u == NULL) {
            return NGX_ERROR;
        }

        *u = units[i];
    }

    return NGX_OK;
}


/* a unit's href; buf: NGX_PT_HREF_LEN */

static void
ngx_pt_unit_href(ngx_uint_t kind, ngx_pt_unit_t *unit, u_char *buf,
    ngx_str_t *href)
{
    u_char  id[NGX_PT_UUID_LEN];

    href->data = buf;

    if (ngx_pt_unit_id(kind, unit, id) != NGX_OK) {
        href->len = 0;
        return;
    }

    href->len = ngx_sprintf(buf, NGX_PT_API_ROOT "%s%*s/",
                            ngx_pt_content_paths[kind],
                            (size_t) NGX_PT_UUID_LEN, id)
                - buf;
}


static void
ngx_pt_unit_render_prn(yajl_gen g, ngx_uint_t kind, ngx_pt_unit_t *unit)
{
    u_char     buf[NGX_PT_HREF_LEN], id[NGX_PT_UUID_LEN];
    ngx_str_t  s;

    if (ngx_pt_unit_id(kind, unit, id) != NGX_OK) {
        ngx_pt_json_null(g);
        return;
    }

    s.data = buf;
    s.len = ngx_sprintf(buf, "prn:%s:%*s", ngx_pt_unit_prn(kind),
                        (size_t) NGX_PT_UUID_LEN, id)
            - buf;
    ngx_pt_json_str(g, &s);
}


static ngx_uint_t
ngx_pt_unit_match(ngx_uint_t kind, ngx_pt_unit_t *filter, ngx_pt_unit_t *unit)
{
    if (filter->digest.len
        && (filter->digest.len != unit->digest.len
            || ngx_strncmp(filter->digest.data, unit->digest.data,
                           unit->digest.len) != 0))
    {
        return 0;
    }

    if (kind == NGX_PT_CONTENT_TAGS && filter->name.len
        && (filter->name.len != unit->name.len
            || ngx_strncmp(filter->name.data, unit->name.data,
                           unit->name.len) != 0))
    {
        return 0;
    }

    return 1;
}


/* a page of the units of one version, named by its href */

static ngx_int_t
ngx_pt_units_version(ngx_pt_admin_t *ctx, MDB_txn *txn, ngx_str_t *href,
    ngx_pt_unit_t *filter, ngx_array_t *out, size_t *count)
{
    u_char            *p, *last;
    void              *rec;
    size_t             root, i, nelts;
    ngx_int_t          n, rc;
    ngx_str_t          id, *digests;
    ngx_uint_t         kind;
    const char        *path;
    ngx_array_t       *list;
    ngx_keyval_t      *kv;
    ngx_pt_unit_t      unit, *u;
    ngx_pt_repo_t     *repo;
    ngx_pt_version_t   v;

    kind = ctx->kind;

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

    rc = ngx_pt_version_get(ctx->pool, ctx->log, txn, &id, n, &v);
    if (rc != NGX_OK) {
        return rc;
    }

    /* the repository's name, for tag units */

    rc = ngx_pt_record_load(ctx->pool, ctx->log, txn, &ngx_pt_repo_type,
                            &id, &rec);
    if (rc != NGX_OK) {
        return rc;
    }

    repo = rec;

    list = (kind == NGX_PT_CONTENT_TAGS) ? &v.tags
           : (kind == NGX_PT_CONTENT_MANIFESTS) ? &v.manifests : &v.blobs;

    kv = list->elts;
    digests = list->elts;
    nelts = list->elts ? list->nelts : 0;

    /* a version's lists are sets: the units are its entries */

    *count = 0;

    for (i = 0; i < nelts; i++) {
        ngx_memzero(&unit, sizeof(ngx_pt_unit_t));

        unit.repo = repo->name;

        if (kind == NGX_PT_CONTENT_TAGS) {
            unit.name = kv[i].key;
            unit.digest = kv[i].value;

        } else {
            unit.digest = digests[i];
        }

        if (!ngx_pt_unit_match(kind, filter, &unit)
            || (*count)++ < (size_t) ctx->query.offset
            || out->nelts >= (ngx_uint_t) ctx->query.limit)
        {
            continue;
        }

        u = ngx_array_push(out);
        if (u == NULL) {
            return NGX_ERROR;
        }

        *u = unit;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_pt_unit_render(ngx_pt_admin_t *ctx, MDB_txn *txn, ngx_uint_t kind,
    ngx_pt_unit_t *unit)
{
    u_char                  buf[NGX_PT_HREF_LEN], id[NGX_PT_UUID_LEN];
    ngx_int_t               rc;
    ngx_str_t               href, *digests;
    ngx_uint_t              i;
    yajl_gen                g = ctx->g;
    ngx_array_t            *list;
    ngx_pt_unit_t           ref;
    ngx_pt_file_t           file;
    ngx_pt_manifest_rec_t   m;

    if (ngx_pt_unit_id(kind, unit, id) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_pt_json_map_open(g);

    ngx_pt_unit_href(kind, unit, buf, &href);
    ngx_pt_json_key(g, "pulp_href");
    ngx_pt_json_str(g, &href);

    ngx_pt_json_key(g, "prn");
    ngx_pt_unit_render_prn(g, kind, unit);

    ngx_memzero(&ref, sizeof(ngx_pt_unit_t));

    if (kind == NGX_PT_CONTENT_TAGS) {
        ngx_pt_json_key(g, "name");
        ngx_pt_json_str(g, &unit->name);

        ref.digest = unit->digest;
        ngx_pt_unit_href(NGX_PT_CONTENT_MANIFESTS, &ref, buf, &href);
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

    rc = unit->repo.len ? ngx_pt_manifest_get(ctx->pool, ctx->log, txn,
                                              &unit->repo, &unit->digest, &m)
                        : NGX_DECLINED;
    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ngx_memzero(&m, sizeof(ngx_pt_manifest_rec_t));
        m.layers_size = NGX_PT_NULL_INT;
    }

    /* a manifest record without a media type cannot be decoded */

    ngx_pt_json_key(g, "media_type");
    ngx_pt_json_str(g, &m.media_type);

    ngx_pt_json_key(g, "config_blob");
    if (m.config.len) {
        ref.digest = m.config;
        ngx_pt_unit_href(NGX_PT_CONTENT_BLOBS, &ref, buf, &href);
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
            ref.digest = digests[i];
            ngx_pt_unit_href(kind, &ref, buf, &href);
            ngx_pt_json_str(g, &href);
        }

        ngx_pt_json_array_close(g);
    }

    if (ngx_pt_unit_render_nature(ctx, txn, &m) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_pt_json_map_close(g);

    return NGX_OK;
}


/*
 * Pulp's fields of what an image is: its manifest's own (type, layers,
 * annotations) from its record, and its config's (architecture, os,
 * labels, and a bootable or flatpak type) from the config's record, which
 * exists once the config blob was fetched through the cache. Unknown:
 * null, labels and annotations {}, the flags false.
 */

static ngx_int_t
ngx_pt_unit_render_nature(ngx_pt_admin_t *ctx, MDB_txn *txn,
    ngx_pt_manifest_rec_t *m)
{
    ngx_int_t         rc;
    ngx_str_t         type, *arch, *os;
    yajl_gen          g = ctx->g;
    ngx_pt_config_t   c;

    static ngx_str_t  none = ngx_null_string;

    ngx_memzero(&c, sizeof(ngx_pt_config_t));

    rc = m->config.len ? ngx_pt_config_get(ctx->pool, ctx->log, txn,
                                           &m->config, &c)
                       : NGX_DECLINED;
    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    type = m->type;

    if (type.len == 0 && m->media_type.len
        && ngx_pt_manifest_is_index(&m->media_type))
    {
        /* a record of an earlier release */
        ngx_str_set(&type, "index");
    }

    if (!(type.len == 5 && ngx_strncmp(type.data, "index", 5) == 0)
        && !(type.len == 8 && ngx_strncmp(type.data, "bootable", 8) == 0))
    {
        if (c.bootable) {
            ngx_str_set(&type, "bootable");

        } else if (c.flatpak) {
            ngx_str_set(&type, "flatpak");
        }
    }

    ngx_pt_json_key(g, "annotations");
    ngx_pt_json_value_or_empty(g, m->annotations);
    ngx_pt_json_key(g, "labels");
    ngx_pt_json_value_or_empty(g, c.labels);

    ngx_pt_json_key(g, "is_bootable");
    ngx_pt_json_bool(g, type.len == 8
                        && ngx_strncmp(type.data, "bootable", 8) == 0);
    ngx_pt_json_key(g, "is_flatpak");
    ngx_pt_json_bool(g, type.len == 7
                        && ngx_strncmp(type.data, "flatpak", 7) == 0);

    ngx_pt_json_key(g, "type");
    ngx_pt_json_str(g, type.len ? &type : &none);

    /* schema 1 names its platform itself, others in their config */

    arch = m->architecture.data ? &m->architecture : &c.architecture;
    os = m->os.data ? &m->os : &c.os;

    ngx_pt_json_key(g, "architecture");
    ngx_pt_json_str(g, arch);
    ngx_pt_json_key(g, "os");
    ngx_pt_json_str(g, os);

    ngx_pt_json_key(g, "compressed_image_size");
    ngx_pt_json_int(g, m->layers_size);

    return NGX_OK;
}


static void
ngx_pt_json_value_or_empty(yajl_gen g, yajl_val v)
{
    if (v) {
        ngx_pt_json_value(g, v);
        return;
    }

    ngx_pt_json_map_open(g);
    ngx_pt_json_map_close(g);
}


/*
 * /pulp_container/namespaces/: as Pulp makes one of the first component of
 * a distribution's base_path when a pull creates it, the first components
 * of the pull-through distributions whose pulls made per-image ones, each
 * once (the earliest one's creation), in the order of names. Derived, not
 * stored: the id is made of the name, as a content unit's.
 */

typedef struct {
    ngx_pt_admin_t             *ctx;
    MDB_txn                    *txn;
    ngx_array_t                 found;       /* ngx_pt_namespace_t */
} ngx_pt_namespaces_t;


typedef struct {
    ngx_str_t                   name;
    ngx_str_t                   created;
} ngx_pt_namespace_t;


static ngx_int_t
ngx_pt_admin_namespace_one(void *data, void *rec)
{
    ngx_pt_namespaces_t *ns = data;

    u_char              *slash;
    ngx_str_t            name;
    ngx_array_t          children;
    ngx_pt_dist_t       *dist = rec;
    ngx_pt_namespace_t  *n;

    if (ngx_array_init(&children, ns->ctx->pool, 1, sizeof(ngx_str_t))
        != NGX_OK
        || ngx_pt_children_list(ns->ctx->pool, ns->ctx->log, ns->txn,
                                &dist->meta.id, 1, &children)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (children.nelts == 0) {
        /* no pull through it yet */
        return NGX_OK;
    }

    slash = ngx_strlchr(dist->base_path.data,
                        dist->base_path.data + dist->base_path.len, '/');

    name.data = dist->base_path.data;
    name.len = (slash ? slash : dist->base_path.data + dist->base_path.len)
               - name.data;

    n = ngx_array_push(&ns->found);
    if (n == NULL) {
        return NGX_ERROR;
    }

    /* copies: the record goes after this handler */

    n->name.len = name.len;
    n->name.data = ngx_pstrdup(ns->ctx->pool, &name);
    n->created.len = dist->meta.created.len;
    n->created.data = ngx_pstrdup(ns->ctx->pool, &dist->meta.created);

    return (n->name.data && n->created.data) ? NGX_OK : NGX_ERROR;
}


static int ngx_libc_cdecl
ngx_pt_admin_namespace_cmp(const void *a, const void *b)
{
    const ngx_pt_namespace_t  *x = a, *y = b;
    ngx_int_t                  rc;

    rc = ngx_memn2cmp(x->name.data, y->name.data, x->name.len, y->name.len);

    return rc ? rc : ngx_memn2cmp(x->created.data, y->created.data,
                                  x->created.len, y->created.len);
}


static void
ngx_pt_admin_namespace_render(ngx_pt_admin_t *ctx, ngx_pt_namespace_t *n)
{
    u_char         buf[NGX_PT_HREF_LEN], id[NGX_PT_UUID_LEN];
    ngx_str_t      s;
    ngx_pt_unit_t  unit;

    ngx_memzero(&unit, sizeof(ngx_pt_unit_t));
    unit.digest = n->name;

    if (ngx_pt_unit_id(NGX_PT_UNIT_NAMESPACES, &unit, id) != NGX_OK) {
        ngx_memzero(id, NGX_PT_UUID_LEN);
    }

    ngx_pt_json_map_open(ctx->g);

    s.data = buf;
    s.len = ngx_sprintf(buf, NGX_PT_API_ROOT "pulp_container/namespaces/%*s/",
                        (size_t) NGX_PT_UUID_LEN, id) - buf;
    ngx_pt_json_key(ctx->g, "pulp_href");
    ngx_pt_json_str(ctx->g, &s);

    s.len = ngx_sprintf(buf, "prn:container.containernamespace:%*s",
                        (size_t) NGX_PT_UUID_LEN, id) - buf;
    ngx_pt_json_key(ctx->g, "prn");
    ngx_pt_json_str(ctx->g, &s);

    ngx_pt_json_key(ctx->g, "pulp_created");
    ngx_pt_json_str(ctx->g, &n->created);
    ngx_pt_json_key(ctx->g, "name");
    ngx_pt_json_str(ctx->g, &n->name);

    ngx_pt_json_map_close(ctx->g);
}


ngx_int_t
ngx_pt_admin_namespaces(ngx_pt_admin_t *ctx)
{
    u_char               id[NGX_PT_UUID_LEN];
    MDB_txn             *txn;
    ngx_int_t            rc;
    ngx_str_t            name;
    ngx_uint_t           i, n, count;
    ngx_pt_unit_t        unit;
    ngx_pt_namespace_t  *ns;
    ngx_pt_namespaces_t  w;

    w.ctx = ctx;

    if (ngx_array_init(&w.found, ctx->pool, 8, sizeof(ngx_pt_namespace_t))
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_pt_txn_begin(ctx->log, 0, &txn) != NGX_OK) {
        return ngx_pt_admin_store_error(ctx);
    }

    w.txn = txn;

    rc = ngx_pt_record_each(NULL, ctx->log, txn, &ngx_pt_pt_dist_type,
                            ngx_pt_admin_namespace_one, &w);

    ngx_pt_txn_abort(txn);

    if (rc != NGX_OK) {
        return ngx_pt_admin_store_error(ctx);
    }

    /* each name once, with its earliest creation */

    ns = w.found.elts;
    ngx_qsort(ns, w.found.nelts, sizeof(ngx_pt_namespace_t),
              ngx_pt_admin_namespace_cmp);

    for (i = 0, n = 0; i < w.found.nelts; i++) {
        if (n && ns[n - 1].name.len == ns[i].name.len
            && ngx_strncmp(ns[n - 1].name.data, ns[i].name.data,
                           ns[i].name.len) == 0)
        {
            continue;
        }

        ns[n++] = ns[i];
    }

    ngx_pt_admin_query_get(ctx, "name", &name);

    /* keep what the id or the name asks for */

    for (i = 0, count = 0; i < n; i++) {
        if (name.len && (name.len != ns[i].name.len
                         || ngx_strncmp(name.data, ns[i].name.data,
                                        name.len) != 0))
        {
            continue;
        }

        if (ctx->id.len) {
            ngx_memzero(&unit, sizeof(ngx_pt_unit_t));
            unit.digest = ns[i].name;

            if (ngx_pt_unit_id(NGX_PT_UNIT_NAMESPACES, &unit, id) != NGX_OK
                || ngx_strncmp(id, ctx->id.data, NGX_PT_UUID_LEN) != 0)
            {
                continue;
            }
        }

        ns[count++] = ns[i];
    }

    if (ctx->id.len) {
        if (count == 0) {
            (void) ngx_pt_admin_detail(ctx, NGX_HTTP_NOT_FOUND, "Not found.");
            return NGX_OK;
        }

        ngx_pt_admin_namespace_render(ctx, &ns[0]);
        ctx->status = NGX_HTTP_OK;
        return NGX_OK;
    }

    if (ngx_pt_admin_page(ctx, count) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (i = ctx->query.offset;
         i < count && i < (ngx_uint_t) (ctx->query.offset + ctx->query.limit);
         i++)
    {
        ngx_pt_admin_namespace_render(ctx, &ns[i]);
    }

    ngx_pt_json_array_close(ctx->g);
    ngx_pt_json_map_close(ctx->g);

    ctx->status = NGX_HTTP_OK;

    return NGX_OK;
}
