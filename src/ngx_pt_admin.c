
/*
 * ngx_pullthrough: the admin API, a JSON API with Pulp's paths and shapes
 * for pull-through remotes and distributions, what pulls made under them,
 * and the tasks that Pulp clients wait on. This file routes a request to
 * its resource and answers; the resource table says, per resource, which
 * methods it takes and the hooks that make it differ from the others.
 * Work is done synchronously, each change in one LMDB write transaction
 * (ngx_pt_admin_write.c); the task a 202 names is already finished.
 */


#include <ngx_pt.h>
#include <ngx_pt_admin.h>


#define NGX_PT_DETAIL_LEN     1024

#define NGX_PT_READ           (NGX_HTTP_GET|NGX_HTTP_HEAD)
#define NGX_PT_READ_ALLOW     "GET, HEAD"


static ngx_int_t ngx_pt_admin_route(ngx_http_request_t *r,
    ngx_pt_admin_t *ctx);
static void ngx_pt_admin_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_pt_admin_read_body(ngx_pt_admin_t *ctx);
static void ngx_pt_admin_run(ngx_pt_admin_t *ctx);
static ngx_int_t ngx_pt_admin_dispatch(ngx_pt_admin_t *ctx);
static ngx_int_t ngx_pt_admin_finish(ngx_pt_admin_t *ctx, ngx_int_t rc);
static ngx_int_t ngx_pt_admin_send(ngx_pt_admin_t *ctx);
static ngx_int_t ngx_pt_admin_sparse(ngx_pt_admin_t *ctx, ngx_str_t *out);
static void ngx_pt_admin_sparse_object(ngx_pt_admin_t *ctx, yajl_gen g,
    yajl_val o);
static ngx_uint_t ngx_pt_admin_sparse_asked(ngx_pt_admin_t *ctx,
    const char *param);
static ngx_uint_t ngx_pt_admin_sparse_listed(ngx_pt_admin_t *ctx,
    const char *param, const char *key);
static ngx_int_t ngx_pt_admin_get(ngx_pt_admin_t *ctx);


/* the OpenAPI document's part of what this file answers */

static ngx_pt_admin_api_t  ngx_pt_admin_remote_api = {
    "remotes_container_pull_through",
    "container_container_pull_through_remote_href",
    "container.ContainerPullThroughRemote",
    "Remotes: Container Pull-Through", NULL, NULL, NULL, NULL, NULL, NULL, 0, 0
};

static ngx_pt_admin_api_t  ngx_pt_admin_remotes_api = {
    "remotes", NULL, "container.ContainerPullThroughRemote", "Remotes",
    NULL, NULL, NULL, NULL, NULL, NULL, 0, 1
};

static ngx_pt_admin_prop_t  ngx_pt_admin_pt_dist_props[] = {
    { "distributions", "array" },
    { NULL, NULL }
};

static ngx_pt_admin_api_t  ngx_pt_admin_pt_dist_api = {
    "distributions_container_pull_through",
    "container_container_pull_through_distribution_href",
    "container.ContainerPullThroughDistribution",
    "Distributions: Container Pull-Through", ngx_pt_admin_pt_dist_props,
    NULL, NULL, NULL, NULL, NULL, 0, 0
};

static ngx_pt_admin_prop_t  ngx_pt_admin_task_props[] = {
    { "pulp_href", "uri" },
    { "prn", "string" },
    { "pulp_created", "date-time" },
    { "pulp_last_updated", "date-time" },
    { "state", "string" },
    { "name", "string" },
    { "logging_cid", "string" },
    { "created_by", "uri?" },
    { "unblocked_at", "date-time?" },
    { "started_at", "date-time?" },
    { "finished_at", "date-time?" },
    { "error", "object?" },
    { "worker", "uri?" },
    { "parent_task", "uri?" },
    { "child_tasks", "array" },
    { "task_group", "uri?" },
    { "progress_reports", "objects" },
    { "created_resources", "array" },
    { "reserved_resources_record", "array" },
    { "result", "object?" },
    { NULL, NULL }
};

/* a task's reserved_resources, by how it held them */
static const char  *ngx_pt_admin_task_params[] = {
    "exclusive_resources", "exclusive_resources__in",
    "shared_resources", "shared_resources__in", NULL
};

static ngx_pt_admin_api_t  ngx_pt_admin_task_api = {
    "tasks", "task_href", "Task", "Tasks", ngx_pt_admin_task_props,
    ngx_pt_admin_task_params, NULL, NULL, NULL, NULL, 0, 0
};


ngx_pt_admin_resource_t  ngx_pt_admin_resources[] = {

    { "remotes/container/pull-through/", &ngx_pt_remote_type,
      NGX_PT_READ|NGX_HTTP_POST,
      NGX_PT_READ|NGX_HTTP_PUT|NGX_HTTP_PATCH|NGX_HTTP_DELETE,
      "GET, HEAD, POST", "GET, HEAD, PUT, PATCH, DELETE",
      NGX_PT_ADMIN_AT_ONCE, 0, NULL, NULL, NULL,
      ngx_pt_admin_check_remote, ngx_pt_admin_index_remote,
      ngx_pt_admin_remove_remote,
      &ngx_pt_admin_remote_api, NULL },

    { "distributions/container/pull-through/", &ngx_pt_pt_dist_type,
      NGX_PT_READ|NGX_HTTP_POST,
      NGX_PT_READ|NGX_HTTP_PUT|NGX_HTTP_PATCH|NGX_HTTP_DELETE,
      "GET, HEAD, POST", "GET, HEAD, PUT, PATCH, DELETE",
      0, 0, NULL, NULL, ngx_pt_admin_render_children,
      ngx_pt_admin_check_dist, ngx_pt_admin_index_dist,
      ngx_pt_admin_remove_dist,
      &ngx_pt_admin_pt_dist_api, NULL },

    { "tasks/", &ngx_pt_task_type,
      NGX_PT_READ, NGX_PT_READ, NGX_PT_READ_ALLOW, NGX_PT_READ_ALLOW,
      0, 0, NULL, ngx_pt_admin_render_task, NULL, NULL, NULL, NULL,
      &ngx_pt_admin_task_api, NULL },

    /* what pulls make: read-only, but for deleting an image's distribution
     * or repository and pinning a distribution (PATCH of retain) */

    { "repositories/container/container/", &ngx_pt_repo_type,
      NGX_PT_READ, NGX_PT_READ|NGX_HTTP_DELETE,
      NGX_PT_READ_ALLOW, "GET, HEAD, DELETE",
      NGX_PT_ADMIN_VERSIONS, 0, NULL, NULL, ngx_pt_admin_render_repo,
      NULL, NULL, ngx_pt_admin_remove_repo,
      &ngx_pt_admin_repo_api, NULL },

    { "distributions/container/container/", &ngx_pt_dist_type,
      NGX_PT_READ, NGX_PT_READ|NGX_HTTP_PATCH|NGX_HTTP_DELETE,
      NGX_PT_READ_ALLOW, "GET, HEAD, PATCH, DELETE",
      0, 0, NULL, NULL, ngx_pt_admin_render_dist,
      NULL, NULL, ngx_pt_admin_remove_image,
      &ngx_pt_admin_dist_api, NULL },

    { "content/container/tags/", NULL,
      NGX_PT_READ, NGX_PT_READ, NGX_PT_READ_ALLOW, NGX_PT_READ_ALLOW,
      0, NGX_PT_CONTENT_TAGS, ngx_pt_admin_content,
      NULL, NULL, NULL, NULL, NULL,
      &ngx_pt_admin_tag_api, NULL },

    { "content/container/manifests/", NULL,
      NGX_PT_READ, NGX_PT_READ, NGX_PT_READ_ALLOW, NGX_PT_READ_ALLOW,
      0, NGX_PT_CONTENT_MANIFESTS, ngx_pt_admin_content,
      NULL, NULL, NULL, NULL, NULL,
      &ngx_pt_admin_manifest_api, NULL },

    { "content/container/blobs/", NULL,
      NGX_PT_READ, NGX_PT_READ, NGX_PT_READ_ALLOW, NGX_PT_READ_ALLOW,
      0, NGX_PT_CONTENT_BLOBS, ngx_pt_admin_content,
      NULL, NULL, NULL, NULL, NULL,
      &ngx_pt_admin_blob_api, NULL },

    { "pulp_container/namespaces/", NULL,
      NGX_PT_READ, NGX_PT_READ, NGX_PT_READ_ALLOW, NGX_PT_READ_ALLOW,
      0, 0, ngx_pt_admin_namespaces, NULL, NULL, NULL, NULL, NULL,
      &ngx_pt_admin_namespace_api, NULL },

    { "artifacts/", NULL,
      NGX_PT_READ, NGX_PT_READ, NGX_PT_READ_ALLOW, NGX_PT_READ_ALLOW,
      0, 0, ngx_pt_admin_artifacts, NULL, NULL, NULL, NULL, NULL,
      &ngx_pt_admin_artifact_api, NULL },

    /* Pulp's per-image remotes: views of the pull-through remote, one per
     * per-image distribution (ngx_pt_admin_generic.c) */

    { "remotes/container/container/", &ngx_pt_dist_type,
      NGX_PT_READ, NGX_PT_READ, NGX_PT_READ_ALLOW, NGX_PT_READ_ALLOW,
      0, 0, NULL, ngx_pt_admin_render_image_remote, NULL, NULL, NULL, NULL,
      &ngx_pt_admin_image_remote_api, NULL },

    /* Pulp's generic lists: the objects' hrefs are their own type's */

    { "distributions/", &ngx_pt_pt_dist_type,
      NGX_PT_READ, 0, NGX_PT_READ_ALLOW, NULL,
      NGX_PT_ADMIN_LIST_ONLY, 0, NULL, ngx_pt_admin_render_distribution,
      NULL, NULL, NULL, NULL,
      &ngx_pt_admin_distributions_api, &ngx_pt_dist_type },

    { "content/", NULL,
      NGX_PT_READ, 0, NGX_PT_READ_ALLOW, NULL,
      NGX_PT_ADMIN_LIST_ONLY, 0, ngx_pt_admin_content_all, NULL, NULL, NULL,
      NULL, NULL,
      &ngx_pt_admin_contents_api, NULL },

    { "remotes/", &ngx_pt_remote_type,
      NGX_PT_READ, 0, NGX_PT_READ_ALLOW, NULL,
      NGX_PT_ADMIN_LIST_ONLY, 0, NULL, NULL, NULL, NULL, NULL, NULL,
      &ngx_pt_admin_remotes_api, NULL },

    { "repositories/", &ngx_pt_repo_type,
      NGX_PT_READ, 0, NGX_PT_READ_ALLOW, NULL,
      NGX_PT_ADMIN_LIST_ONLY, 0, NULL, NULL, ngx_pt_admin_render_repo,
      NULL, NULL, NULL,
      &ngx_pt_admin_repos_api, NULL },

    /* the store as a whole */

    { "status/", NULL,
      NGX_PT_READ, 0, NGX_PT_READ_ALLOW, NULL,
      0, 0, ngx_pt_admin_status, NULL, NULL, NULL, NULL, NULL,
      &ngx_pt_admin_status_api, NULL },

    { "orphans/cleanup/", NULL,
      NGX_HTTP_POST, 0, "POST", NULL,
      0, 0, ngx_pt_admin_orphans, NULL, NULL, NULL, NULL, NULL,
      &ngx_pt_admin_orphans_api, NULL },

    /* the OpenAPI document, which describes the others */

    { "docs/api.json/", NULL,
      NGX_PT_READ, 0, NGX_PT_READ_ALLOW, NULL,
      NGX_PT_ADMIN_LIST_ONLY|NGX_PT_ADMIN_NO_STORE, 0, ngx_pt_admin_openapi,
      NULL, NULL, NULL, NULL, NULL, NULL, NULL },

    { NULL, NULL, 0, 0, NULL, NULL, 0, 0, NULL, NULL, NULL, NULL, NULL,
      NULL, NULL, NULL }
};


ngx_int_t
ngx_http_pullthrough_admin_handler(ngx_http_request_t *r)
{
    ngx_int_t                         rc;
    ngx_pt_admin_t                   *ctx;
    ngx_http_pullthrough_loc_conf_t  *plcf;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_pt_admin_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->r = r;
    ctx->pool = r->pool;
    ctx->log = r->connection->log;

    ctx->g = ngx_pt_json_gen(r->pool);
    if (ctx->g == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_pullthrough_module);

    rc = ngx_pt_admin_guard(ctx);

    if (rc == NGX_OK) {
        rc = ngx_pt_admin_route(r, ctx);
    }

    if (rc != NGX_OK || !(r->method & (NGX_HTTP_POST|NGX_HTTP_PUT
                                       |NGX_HTTP_PATCH)))
    {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc == NGX_OK) {
            rc = ngx_pt_admin_dispatch(ctx);
        }

        /* NGX_DECLINED: the route already put an error in ctx */

        return ngx_pt_admin_finish(ctx, rc);
    }

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_pullthrough_module);

    /* bodies are bounded before a byte is read: chunked ones cannot be */

    if (r->headers_in.chunked || r->headers_in.content_length_n < 0) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        r->headers_out.status = NGX_HTTP_LENGTH_REQUIRED;
        r->keepalive = 0;
        (void) ngx_pt_admin_detail(ctx, NGX_HTTP_LENGTH_REQUIRED,
                                   "A Content-Length header is required.");
        return ngx_pt_admin_send(ctx);
    }

    if (r->headers_in.content_length_n > (off_t) plcf->admin_max_body) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        (void) ngx_pt_admin_detail(ctx, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                   "Request body is larger than %uz bytes.",
                                   plcf->admin_max_body);
        return ngx_pt_admin_send(ctx);
    }

    rc = ngx_http_read_client_request_body(r, ngx_pt_admin_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return ngx_pt_admin_finish(ctx, rc);
    }

    return NGX_DONE;
}

/*
 * Finds the resource and id in the URI. Anything unknown is answered here
 * (404, 405): NGX_DECLINED then means "send what ctx holds".
 */

static ngx_int_t
ngx_pt_admin_route(ngx_http_request_t *r, ngx_pt_admin_t *ctx)
{
    size_t                    root, len;
    u_char                   *p, *last;
    ngx_uint_t                i, methods;
    const char               *allow;
    ngx_table_elt_t          *h;
    ngx_pt_admin_resource_t  *res;

    root = sizeof(NGX_PT_API_ROOT) - 1;

    p = r->uri.data;
    last = p + r->uri.len;

    if (r->uri.len < root || ngx_strncmp(p, NGX_PT_API_ROOT, root) != 0) {
        goto not_found;
    }

    p += root;

    res = NULL;

    for (i = 0; ngx_pt_admin_resources[i].path; i++) {
        len = ngx_strlen(ngx_pt_admin_resources[i].path);

        /* the trailing slash of a collection is optional */

        if ((size_t) (last - p) >= len - 1
            && ngx_strncmp(p, ngx_pt_admin_resources[i].path, len - 1) == 0
            && (p + len - 1 == last || p[len - 1] == '/'))
        {
            res = &ngx_pt_admin_resources[i];
            p += len - 1;
            if (p < last) {
                p++;
            }
            break;
        }
    }

    if (res == NULL) {
        goto not_found;
    }

    ctx->res = res;
    ctx->type = res->type;
    ctx->kind = res->kind;

    if (p < last) {
        if (res->flags & NGX_PT_ADMIN_LIST_ONLY) {
            goto not_found;
        }

        ctx->id.data = p;
        ctx->id.len = NGX_PT_UUID_LEN;

        if ((size_t) (last - p) < NGX_PT_UUID_LEN
            || !ngx_pt_id_valid(&ctx->id))
        {
            goto not_found;
        }

        p += NGX_PT_UUID_LEN;

        if ((res->flags & NGX_PT_ADMIN_VERSIONS)
            && last - p >= 9 && ngx_strncmp(p, "/versions", 9) == 0)
        {
            /* <id>/versions/ and <id>/versions/<number>/ */

            p += 9;
            ctx->versions = 1;
            ctx->version = -1;

            if (p < last && *p == '/') {
                p++;
            }

            if (p < last) {
                for (len = 0; p + len < last && p[len] != '/'; len++) {
                    /* void */
                }

                ctx->version = ngx_atoi(p, len);
                if (ctx->version == NGX_ERROR) {
                    goto not_found;
                }

                p += len;
            }
        }

        if (!(p == last || (p + 1 == last && *p == '/'))) {
            goto not_found;
        }

        methods = res->item_methods;
        allow = res->item_allow;

        if (ctx->versions) {
            /* versions are read-only: a DELETE is the repository's */
            methods = NGX_PT_READ;
            allow = NGX_PT_READ_ALLOW;
        }

    } else {
        methods = res->collection_methods;
        allow = res->collection_allow;
    }

    if (!(r->method & methods)) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Allow");
        h->value.data = (u_char *) allow;
        h->value.len = ngx_strlen(allow);

        return ngx_pt_admin_detail(ctx, NGX_HTTP_NOT_ALLOWED,
                                   "Method \"%V\" not allowed.",
                                   &r->method_name);
    }

    if (!(res->flags & NGX_PT_ADMIN_NO_STORE) && !ngx_pt_store_ready()) {
        return ngx_pt_admin_detail(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                   "The metadata store is not available, "
                                   "see the error log.");
    }

    return NGX_OK;

not_found:

    return ngx_pt_admin_detail(ctx, NGX_HTTP_NOT_FOUND, "Not found.");
}

static void
ngx_pt_admin_body_handler(ngx_http_request_t *r)
{
    ngx_pt_admin_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_pullthrough_module);

    if (ngx_pt_admin_read_body(ctx) != NGX_OK) {
        ngx_http_finalize_request(r, ngx_pt_admin_finish(ctx,
                                         NGX_HTTP_INTERNAL_SERVER_ERROR));
        return;
    }

    ngx_pt_admin_run(ctx);
}

/* the body in one piece: it is small and bounded by the limit */

static ngx_int_t
ngx_pt_admin_read_body(ngx_pt_admin_t *ctx)
{
    size_t        len;
    u_char       *p;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    len = 0;

    if (ctx->r->request_body == NULL) {
        ngx_str_set(&ctx->body, "");
        return NGX_OK;
    }

    for (cl = ctx->r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;
        len += b->in_file ? (size_t) (b->file_last - b->file_pos)
                          : (size_t) (b->last - b->pos);
    }

    p = ngx_pnalloc(ctx->pool, len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->body.data = p;

    for (cl = ctx->r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            n = ngx_read_file(b->file, p, b->file_last - b->file_pos,
                              b->file_pos);
            if (n != b->file_last - b->file_pos) {
                return NGX_ERROR;
            }

            p += n;

        } else {
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
        }
    }

    ctx->body.len = p - ctx->body.data;

    return NGX_OK;
}

static void
ngx_pt_admin_run(ngx_pt_admin_t *ctx)
{
    ngx_int_t  rc;

    rc = ngx_pt_admin_dispatch(ctx);

    ngx_http_finalize_request(ctx->r, ngx_pt_admin_finish(ctx, rc));
}


static ngx_int_t
ngx_pt_admin_dispatch(ngx_pt_admin_t *ctx)
{
    ngx_http_request_t  *r = ctx->r;

    if (ctx->res->type == NULL && ctx->res->view
        && !(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)))
    {
        /* a resource without records: its view takes every method */
        return ctx->res->view(ctx);
    }

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_pt_admin_write(ctx);
    }

    if (ngx_pt_admin_query_parse(ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->res->view) {
        return ctx->res->view(ctx);
    }

    if (ctx->versions) {
        return ngx_pt_admin_versions(ctx);
    }

    return ctx->id.len ? ngx_pt_admin_get(ctx) : ngx_pt_admin_list(ctx);
}


/*
 * Sends what ctx holds. A status code from a step that failed is answered
 * in JSON too, never with nginx's HTML error page: Pulp clients parse
 * every answer.
 */

static ngx_int_t
ngx_pt_admin_finish(ngx_pt_admin_t *ctx, ngx_int_t rc)
{
    if (ngx_pt_error_status(ctx->r, rc)) {
        (void) ngx_pt_admin_detail(ctx, rc,
                                   rc == NGX_HTTP_INTERNAL_SERVER_ERROR
                                   ? "Internal error, see the error log."
                                   : "The request failed (%i).", rc);
        rc = NGX_OK;
    }

    if (rc != NGX_OK && rc != NGX_DECLINED) {
        return rc;
    }

    return ngx_pt_admin_send(ctx);
}

/*
 * Pulp's sparse fieldsets: ?fields=a,b keeps those keys of each object
 * answered (each result of a list, or the object itself), ?exclude_fields=
 * drops those; both may be repeated. The answer is rewritten from its own
 * JSON, only when they are asked for.
 */

static ngx_int_t
ngx_pt_admin_sparse(ngx_pt_admin_t *ctx, ngx_str_t *out)
{
    size_t     i, j;
    yajl_gen   g;
    yajl_val   doc, v;
    ngx_str_t  err;

    if (ctx->status != NGX_HTTP_OK || ctx->query.params.nelts == 0
        || (!ngx_pt_admin_sparse_asked(ctx, "fields")
            && !ngx_pt_admin_sparse_asked(ctx, "exclude_fields")))
    {
        return NGX_OK;
    }

    doc = ngx_pt_json_parse(ctx->pool, out, &err);
    if (doc == NULL || !YAJL_IS_OBJECT(doc)) {
        return NGX_OK;
    }

    g = ngx_pt_json_gen(ctx->pool);
    if (g == NULL) {
        return NGX_ERROR;
    }

    v = ngx_pt_json_get(doc, "results");

    if (v == NULL || !YAJL_IS_ARRAY(v) || ngx_pt_json_get(doc, "count") == NULL)
    {
        /* one object */
        ngx_pt_admin_sparse_object(ctx, g, doc);
        return ngx_pt_json_result(g, ctx->pool, out);
    }

    /* a page: count, next, previous as they are, each result cut */

    ngx_pt_json_map_open(g);

    for (i = 0; i < doc->u.object.len; i++) {
        ngx_pt_json_key(g, doc->u.object.keys[i]);

        if (doc->u.object.values[i] != v) {
            ngx_pt_json_value(g, doc->u.object.values[i]);
            continue;
        }

        ngx_pt_json_array_open(g);

        for (j = 0; j < v->u.array.len; j++) {
            ngx_pt_admin_sparse_object(ctx, g, v->u.array.values[j]);
        }

        ngx_pt_json_array_close(g);
    }

    ngx_pt_json_map_close(g);

    return ngx_pt_json_result(g, ctx->pool, out);
}


static void
ngx_pt_admin_sparse_object(ngx_pt_admin_t *ctx, yajl_gen g, yajl_val o)
{
    size_t       i;
    const char  *key;

    if (!YAJL_IS_OBJECT(o)) {
        ngx_pt_json_value(g, o);
        return;
    }

    ngx_pt_json_map_open(g);

    for (i = 0; i < o->u.object.len; i++) {
        key = o->u.object.keys[i];

        if ((ngx_pt_admin_sparse_asked(ctx, "fields")
             && !ngx_pt_admin_sparse_listed(ctx, "fields", key))
            || ngx_pt_admin_sparse_listed(ctx, "exclude_fields", key))
        {
            continue;
        }

        ngx_pt_json_key(g, key);
        ngx_pt_json_value(g, o->u.object.values[i]);
    }

    ngx_pt_json_map_close(g);
}


static ngx_uint_t
ngx_pt_admin_sparse_asked(ngx_pt_admin_t *ctx, const char *param)
{
    ngx_str_t  v;

    ngx_pt_admin_query_get(ctx, param, &v);

    return v.len != 0;
}


/* whether key is in one of the comma-separated values of param */

static ngx_uint_t
ngx_pt_admin_sparse_listed(ngx_pt_admin_t *ctx, const char *param,
    const char *key)
{
    u_char        *p, *c, *last;
    size_t         len, klen;
    ngx_uint_t     i;
    ngx_keyval_t  *kv;

    len = ngx_strlen(param);
    klen = ngx_strlen(key);
    kv = ctx->query.params.elts;

    for (i = 0; i < ctx->query.params.nelts; i++) {
        if (kv[i].key.len != len
            || ngx_strncmp(kv[i].key.data, param, len) != 0)
        {
            continue;
        }

        last = kv[i].value.data + kv[i].value.len;

        for (p = kv[i].value.data; p < last; p = c + 1) {
            c = ngx_strlchr(p, last, ',');
            if (c == NULL) {
                c = last;
            }

            if ((size_t) (c - p) == klen && ngx_strncmp(p, key, klen) == 0) {
                return 1;
            }
        }
    }

    return 0;
}


static ngx_int_t
ngx_pt_admin_send(ngx_pt_admin_t *ctx)
{
    ngx_str_t         out;
    ngx_table_elt_t  *h;

    static ngx_str_t  json = ngx_string("application/json");

    if (ctx->raw.data && ctx->status == NGX_HTTP_OK) {
        out = ctx->raw;

    } else if (ngx_pt_json_result(ctx->g, ctx->pool, &out) != NGX_OK
               || ngx_pt_admin_sparse(ctx, &out) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h = ngx_list_push(&ctx->r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "X-Content-Type-Options");
    ngx_str_set(&h->value, "nosniff");

    return ngx_pt_send(ctx->r, ctx->status, &json, &out);
}

/*
 * {"detail": "..."}, in place of anything written before; returns
 * NGX_DECLINED so callers can send at once.
 */

ngx_int_t
ngx_pt_admin_detail(ngx_pt_admin_t *ctx, ngx_uint_t status,
    const char *fmt, ...)
{
    u_char     buf[NGX_PT_DETAIL_LEN];
    va_list    args;
    yajl_gen   g;
    ngx_str_t  s;

    va_start(args, fmt);
    s.data = buf;
    s.len = ngx_vslprintf(buf, buf + sizeof(buf), fmt, args) - buf;
    va_end(args);

    g = ngx_pt_json_gen(ctx->pool);
    if (g) {
        ctx->g = g;
    }

    ngx_pt_json_map_open(ctx->g);
    ngx_pt_json_key(ctx->g, "detail");
    ngx_pt_json_str(ctx->g, &s);
    ngx_pt_json_map_close(ctx->g);

    ctx->status = status;

    return NGX_DECLINED;
}

/* a 400 about one field of the request: {"<field>": ["<message>"]} */

ngx_int_t
ngx_pt_admin_field_error(ngx_pt_admin_t *ctx, const char *field,
    const char *message)
{
    ngx_pt_json_map_open(ctx->g);
    ngx_pt_json_key(ctx->g, field);
    ngx_pt_json_array_open(ctx->g);
    ngx_pt_json_cstr(ctx->g, message);
    ngx_pt_json_array_close(ctx->g);
    ngx_pt_json_map_close(ctx->g);

    ctx->status = NGX_HTTP_BAD_REQUEST;

    return NGX_OK;
}


ngx_int_t
ngx_pt_admin_store_error(ngx_pt_admin_t *ctx)
{
    (void) ngx_pt_admin_detail(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR,
                               "The metadata store failed, see the error "
                               "log.");
    return NGX_OK;
}

static ngx_int_t
ngx_pt_admin_get(ngx_pt_admin_t *ctx)
{
    void      *rec;
    MDB_txn   *txn;
    ngx_int_t  rc;

    if (ngx_pt_txn_begin(ctx->log, 0, &txn) != NGX_OK) {
        return ngx_pt_admin_store_error(ctx);
    }

    rc = ngx_pt_record_load(ctx->pool, ctx->log, txn, ctx->type, &ctx->id,
                            &rec);

    if (rc == NGX_OK) {
        rc = ngx_pt_admin_render(ctx, txn, rec);
        ctx->status = NGX_HTTP_OK;
    }

    ngx_pt_txn_abort(txn);

    if (rc == NGX_DECLINED) {
        (void) ngx_pt_admin_detail(ctx, NGX_HTTP_NOT_FOUND, "Not found.");
        return NGX_OK;
    }

    if (rc != NGX_OK) {
        return ngx_pt_admin_store_error(ctx);
    }

    return NGX_OK;
}


/* a record: its fields and what its resource adds, or its own render */

ngx_int_t
ngx_pt_admin_render(ngx_pt_admin_t *ctx, MDB_txn *txn, void *rec)
{
    ngx_int_t  rc;

    if (ctx->res->render) {
        return ctx->res->render(ctx, txn, rec);
    }

    ngx_pt_json_map_open(ctx->g);
    ngx_pt_record_render(ctx->g, ctx->type, rec);

    if (ctx->res->extra) {
        rc = ctx->res->extra(ctx, txn, rec);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    ngx_pt_json_map_close(ctx->g);

    return NGX_OK;
}

/* hrefs of the per-image distributions that pulls made under a parent */

ngx_int_t
ngx_pt_admin_render_children(ngx_pt_admin_t *ctx, MDB_txn *txn, void *rec)
{
    u_char        buf[NGX_PT_HREF_LEN];
    ngx_str_t     href, *ids;
    ngx_uint_t    i;
    ngx_array_t  *children;

    children = ngx_pt_content_children(ctx->pool, ctx->log, txn,
                                       &((ngx_pt_meta_t *) rec)->id);
    if (children == NULL) {
        return NGX_ERROR;
    }

    ids = children->elts;

    ngx_pt_json_key(ctx->g, "distributions");
    ngx_pt_json_array_open(ctx->g);

    for (i = 0; i < children->nelts; i++) {
        ngx_pt_record_href(&ngx_pt_dist_type, &ids[i], buf, &href);
        ngx_pt_json_str(ctx->g, &href);
    }

    ngx_pt_json_array_close(ctx->g);

    return NGX_OK;
}

ngx_int_t
ngx_pt_admin_render_task(ngx_pt_admin_t *ctx, MDB_txn *txn, void *rec)
{
    u_char          buf[NGX_PT_HREF_LEN];
    ngx_str_t       s, *created;
    ngx_uint_t      i, waiting, running;
    yajl_gen        g = ctx->g;
    ngx_pt_task_t  *task = rec;

    ngx_pt_json_map_open(g);

    ngx_pt_record_href(&ngx_pt_task_type, &task->meta.id, buf, &s);
    ngx_pt_json_key(g, "pulp_href");
    ngx_pt_json_str(g, &s);

    s.len = ngx_sprintf(buf, "prn:core.task:%V", &task->meta.id) - buf;
    ngx_pt_json_key(g, "prn");
    ngx_pt_json_str(g, &s);

    ngx_pt_json_key(g, "pulp_created");
    ngx_pt_json_str(g, &task->meta.created);
    ngx_pt_json_key(g, "pulp_last_updated");
    ngx_pt_json_str(g, &task->meta.updated);
    ngx_pt_json_key(g, "state");
    ngx_pt_json_str(g, &task->state);
    ngx_pt_json_key(g, "name");
    ngx_pt_json_str(g, &task->name);
    ngx_pt_json_key(g, "logging_cid");
    ngx_pt_json_cstr(g, "");
    ngx_pt_json_key(g, "created_by");
    ngx_pt_json_null(g);
    waiting = (task->state.len == 7
               && ngx_strncmp(task->state.data, "waiting", 7) == 0);
    running = waiting || (task->state.len == 7
                          && ngx_strncmp(task->state.data, "running", 7)
                             == 0);

    ngx_pt_json_key(g, "unblocked_at");
    ngx_pt_json_str(g, &task->meta.created);
    ngx_pt_json_key(g, "started_at");
    if (waiting) {
        ngx_pt_json_null(g);
    } else {
        ngx_pt_json_str(g, &task->meta.created);
    }
    ngx_pt_json_key(g, "finished_at");
    if (running) {
        ngx_pt_json_null(g);
    } else {
        ngx_pt_json_str(g, &task->meta.updated);
    }

    ngx_pt_json_key(g, "error");
    if (task->error.data) {
        ngx_pt_json_map_open(g);
        ngx_pt_json_key(g, "description");
        ngx_pt_json_str(g, &task->error);
        ngx_pt_json_map_close(g);
    } else {
        ngx_pt_json_null(g);
    }

    ngx_pt_json_key(g, "worker");
    ngx_pt_json_null(g);
    ngx_pt_json_key(g, "parent_task");
    ngx_pt_json_null(g);
    ngx_pt_json_key(g, "child_tasks");
    ngx_pt_json_array_open(g);
    ngx_pt_json_array_close(g);
    ngx_pt_json_key(g, "task_group");
    ngx_pt_json_null(g);
    ngx_pt_json_key(g, "progress_reports");
    ngx_pt_json_array_open(g);
    ngx_pt_json_array_close(g);

    ngx_pt_json_key(g, "created_resources");
    ngx_pt_json_array_open(g);
    if (task->created) {
        created = task->created->elts;
        for (i = 0; i < task->created->nelts; i++) {
            ngx_pt_json_str(g, &created[i]);
        }
    }
    ngx_pt_json_array_close(g);

    ngx_pt_json_key(g, "reserved_resources_record");
    ngx_pt_json_array_open(g);
    if (task->reserved) {
        created = task->reserved->elts;
        for (i = 0; i < task->reserved->nelts; i++) {
            ngx_pt_json_str(g, &created[i]);
        }
    }
    ngx_pt_json_array_close(g);
    ngx_pt_json_key(g, "result");
    ngx_pt_json_null(g);

    ngx_pt_json_map_close(g);

    return NGX_OK;
}
