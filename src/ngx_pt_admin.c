
/*
 * ngx_pullthrough: the admin API, a JSON API with Pulp's paths and shapes
 * for pull-through remotes and distributions, and the tasks that Pulp
 * clients wait on. Work is done synchronously, each change in one LMDB
 * write transaction; the task a 202 names is already finished.
 */


#include <ngx_pt.h>
#include <ngx_pt_admin.h>


#define NGX_PT_RES_REMOTES    0
#define NGX_PT_RES_PT_DISTS   1
#define NGX_PT_RES_TASKS      2
#define NGX_PT_RES_REPOS      3
#define NGX_PT_RES_DISTS      4
#define NGX_PT_RES_CONTENT    5   /* and up: tags, manifests, blobs */

#define NGX_PT_DEFAULT_LIMIT  100

#define NGX_PT_HREF_LEN       256




typedef struct {
    const char                 *path;
    ngx_pt_type_t              *type;
    ngx_uint_t                  collection_methods;
    ngx_uint_t                  item_methods;
    const char                 *collection_allow;
    const char                 *item_allow;
} ngx_pt_admin_resource_t;


/* one list filter: name=, name__contains=, ... */
typedef struct {
    size_t                      offset;      /* of the ngx_str_t */
    ngx_uint_t                  op;
    ngx_str_t                   value;
} ngx_pt_filter_t;

#define NGX_PT_OP_EXACT       0
#define NGX_PT_OP_CONTAINS    1
#define NGX_PT_OP_ICONTAINS   2
#define NGX_PT_OP_STARTSWITH  3
#define NGX_PT_OP_IN          4


typedef struct {
    ngx_pt_admin_t             *ctx;
    ngx_array_t                 records;     /* void * */
    ngx_array_t                *filters;     /* ngx_pt_filter_t */
    ngx_int_t                   status;
} ngx_pt_list_t;


static ngx_int_t ngx_pt_admin_route(ngx_http_request_t *r,
    ngx_pt_admin_t *ctx);
static void ngx_pt_admin_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_pt_admin_read_body(ngx_pt_admin_t *ctx);
static void ngx_pt_admin_run(ngx_pt_admin_t *ctx);
static ngx_int_t ngx_pt_admin_dispatch(ngx_pt_admin_t *ctx);
static ngx_int_t ngx_pt_admin_send(ngx_pt_admin_t *ctx);
static ngx_int_t ngx_pt_admin_field_errors(ngx_pt_admin_t *ctx,
    ngx_pt_errors_t *errs);
static yajl_val ngx_pt_admin_body_object(ngx_pt_admin_t *ctx,
    ngx_int_t *rc);

static ngx_int_t ngx_pt_admin_list(ngx_pt_admin_t *ctx);
static ngx_int_t ngx_pt_admin_list_collect(void *data, void *rec);
static ngx_int_t ngx_pt_admin_filter_match(ngx_pt_filter_t *flt, void *rec);
static ngx_int_t ngx_pt_admin_parse_args(ngx_pt_admin_t *ctx,
    ngx_array_t *filters, ngx_int_t *limit, ngx_int_t *offset);
static int ngx_libc_cdecl ngx_pt_admin_cmp(const void *one, const void *two);
static ngx_int_t ngx_pt_admin_page_link(ngx_pt_admin_t *ctx, ngx_int_t limit,
    ngx_int_t offset);
static ngx_int_t ngx_pt_admin_get(ngx_pt_admin_t *ctx);
static ngx_int_t ngx_pt_admin_render(ngx_pt_admin_t *ctx, MDB_txn *txn,
    void *rec);
static ngx_int_t ngx_pt_admin_render_children(ngx_pt_admin_t *ctx,
    MDB_txn *txn, ngx_str_t *parent);
static void ngx_pt_admin_render_task(ngx_pt_admin_t *ctx,
    ngx_pt_task_t *task);

static ngx_int_t ngx_pt_admin_write(ngx_pt_admin_t *ctx);
static ngx_int_t ngx_pt_admin_check_remote(ngx_pt_admin_t *ctx,
    MDB_txn *txn, ngx_pt_remote_t *remote, ngx_pt_remote_t *old,
    ngx_pt_errors_t *errs);
static ngx_int_t ngx_pt_admin_check_dist(ngx_pt_admin_t *ctx, MDB_txn *txn,
    ngx_pt_dist_t *dist, ngx_pt_dist_t *old, ngx_pt_errors_t *errs);
static ngx_int_t ngx_pt_admin_unique(ngx_pt_admin_t *ctx, MDB_txn *txn,
    ngx_uint_t db, ngx_str_t *value, ngx_str_t *self, const char *field,
    ngx_pt_errors_t *errs);
static ngx_int_t ngx_pt_admin_overlap(void *data, void *rec);
static ngx_int_t ngx_pt_admin_index(ngx_pt_admin_t *ctx, MDB_txn *txn,
    ngx_uint_t db, ngx_str_t *old, ngx_str_t *new, ngx_str_t *id);
static ngx_int_t ngx_pt_admin_delete_remote(ngx_pt_admin_t *ctx,
    MDB_txn *txn, ngx_pt_remote_t *remote);
static ngx_int_t ngx_pt_admin_users(void *data, void *rec);
static ngx_int_t ngx_pt_admin_task(ngx_pt_admin_t *ctx, MDB_txn *txn,
    const char *name, ngx_str_t *created, ngx_str_t *href);


static ngx_pt_admin_resource_t  ngx_pt_admin_resources[] = {

    { "remotes/container/pull-through/", &ngx_pt_remote_type,
      NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_POST,
      NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_PUT|NGX_HTTP_PATCH|NGX_HTTP_DELETE,
      "GET, HEAD, POST", "GET, HEAD, PUT, PATCH, DELETE" },

    { "distributions/container/pull-through/", &ngx_pt_pt_dist_type,
      NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_POST,
      NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_PUT|NGX_HTTP_PATCH|NGX_HTTP_DELETE,
      "GET, HEAD, POST", "GET, HEAD, PUT, PATCH, DELETE" },

    { "tasks/", &ngx_pt_task_type,
      NGX_HTTP_GET|NGX_HTTP_HEAD,
      NGX_HTTP_GET|NGX_HTTP_HEAD,
      "GET, HEAD", "GET, HEAD" },

    /* what pulls make: read-only, but for deleting an image's distribution */

    { "repositories/container/container/", &ngx_pt_repo_type,
      NGX_HTTP_GET|NGX_HTTP_HEAD,
      NGX_HTTP_GET|NGX_HTTP_HEAD,
      "GET, HEAD", "GET, HEAD" },

    { "distributions/container/container/", &ngx_pt_dist_type,
      NGX_HTTP_GET|NGX_HTTP_HEAD,
      NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_DELETE,
      "GET, HEAD", "GET, HEAD, DELETE" },

    { "content/container/tags/", NULL,
      NGX_HTTP_GET|NGX_HTTP_HEAD, NGX_HTTP_GET|NGX_HTTP_HEAD,
      "GET, HEAD", "GET, HEAD" },

    { "content/container/manifests/", NULL,
      NGX_HTTP_GET|NGX_HTTP_HEAD, NGX_HTTP_GET|NGX_HTTP_HEAD,
      "GET, HEAD", "GET, HEAD" },

    { "content/container/blobs/", NULL,
      NGX_HTTP_GET|NGX_HTTP_HEAD, NGX_HTTP_GET|NGX_HTTP_HEAD,
      "GET, HEAD", "GET, HEAD" },

    { NULL, NULL, 0, 0, NULL, NULL }
};


/* list ordering, for the qsort() comparator */
static size_t      ngx_pt_order_offset;
static ngx_int_t   ngx_pt_order_desc;


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

    rc = ngx_pt_admin_route(r, ctx);

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

        if (rc != NGX_OK && rc != NGX_DECLINED) {
            return rc;
        }

        return ngx_pt_admin_send(ctx);
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
        return rc;
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

    ctx->res = i;
    ctx->type = res->type;

    if (p < last) {
        ctx->id.data = p;
        ctx->id.len = NGX_PT_UUID_LEN;

        if ((size_t) (last - p) < NGX_PT_UUID_LEN
            || !ngx_pt_id_valid(&ctx->id))
        {
            goto not_found;
        }

        p += NGX_PT_UUID_LEN;

        if (ctx->res == NGX_PT_RES_REPOS
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

    if (!ngx_pt_store_ready()) {
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
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
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

    if (rc == NGX_OK) {
        rc = ngx_pt_admin_send(ctx);
    }

    ngx_http_finalize_request(ctx->r, rc);
}


static ngx_int_t
ngx_pt_admin_dispatch(ngx_pt_admin_t *ctx)
{
    ngx_http_request_t  *r = ctx->r;

    if (ctx->res >= NGX_PT_RES_CONTENT) {
        return ngx_pt_admin_content(ctx, ctx->res - NGX_PT_RES_CONTENT);
    }

    if (ctx->versions) {
        return ngx_pt_admin_versions(ctx);
    }

    if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
        return ctx->id.len ? ngx_pt_admin_get(ctx) : ngx_pt_admin_list(ctx);
    }

    return ngx_pt_admin_write(ctx);
}


static ngx_int_t
ngx_pt_admin_send(ngx_pt_admin_t *ctx)
{
    ngx_str_t  out;

    static ngx_str_t  json = ngx_string("application/json");

    if (ngx_pt_json_result(ctx->g, ctx->pool, &out) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_pt_send(ctx->r, ctx->status, &json, &out);
}


/* {"detail": "..."}; returns NGX_DECLINED so callers can send at once */

ngx_int_t
ngx_pt_admin_detail(ngx_pt_admin_t *ctx, ngx_uint_t status,
    const char *fmt, ...)
{
    u_char     buf[1024];
    va_list    args;
    ngx_str_t  s;

    va_start(args, fmt);
    s.data = buf;
    s.len = ngx_vslprintf(buf, buf + sizeof(buf), fmt, args) - buf;
    va_end(args);

    ngx_pt_json_map_open(ctx->g);
    ngx_pt_json_key(ctx->g, "detail");
    ngx_pt_json_str(ctx->g, &s);
    ngx_pt_json_map_close(ctx->g);

    ctx->status = status;

    return NGX_DECLINED;
}


static ngx_int_t
ngx_pt_admin_field_errors(ngx_pt_admin_t *ctx, ngx_pt_errors_t *errs)
{
    ngx_pt_errors_render(ctx->g, errs);
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


/* the request body as a JSON object, or NULL with the 400 in ctx */

static yajl_val
ngx_pt_admin_body_object(ngx_pt_admin_t *ctx, ngx_int_t *rc)
{
    yajl_val   v;
    ngx_str_t  err;

    *rc = NGX_OK;

    v = ngx_pt_json_parse(ctx->pool, &ctx->body, &err);

    if (v == NULL) {
        if (err.len == 0) {
            *rc = NGX_ERROR;
            return NULL;
        }

        (void) ngx_pt_admin_detail(ctx, NGX_HTTP_BAD_REQUEST,
                                   "JSON parse error - %V", &err);
        return NULL;
    }

    if (!YAJL_IS_OBJECT(v)) {
        ngx_pt_json_map_open(ctx->g);
        ngx_pt_json_key(ctx->g, "non_field_errors");
        ngx_pt_json_array_open(ctx->g);
        ngx_pt_json_cstr(ctx->g,
            YAJL_IS_ARRAY(v)
            ? "Invalid data. Expected a dictionary, but got list."
            : YAJL_IS_STRING(v)
            ? "Invalid data. Expected a dictionary, but got str."
            : (YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v))
            ? "Invalid data. Expected a dictionary, but got bool."
            : YAJL_IS_INTEGER(v)
            ? "Invalid data. Expected a dictionary, but got int."
            : YAJL_IS_NUMBER(v)
            ? "Invalid data. Expected a dictionary, but got float."
            : "Invalid data. Expected a dictionary, but got NoneType.");
        ngx_pt_json_array_close(ctx->g);
        ngx_pt_json_map_close(ctx->g);
        ctx->status = NGX_HTTP_BAD_REQUEST;
        return NULL;
    }

    return v;
}


/* lists */

static ngx_int_t
ngx_pt_admin_list(ngx_pt_admin_t *ctx)
{
    void           **recs;
    MDB_txn         *txn;
    ngx_int_t        limit, offset, rc, i;
    ngx_array_t      filters;
    ngx_pt_list_t    list;

    if (ngx_array_init(&filters, ctx->pool, 4, sizeof(ngx_pt_filter_t))
        != NGX_OK
        || ngx_array_init(&list.records, ctx->pool, 16, sizeof(void *))
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_pt_admin_parse_args(ctx, &filters, &limit, &offset);
    if (rc != NGX_OK) {
        return rc == NGX_DECLINED ? NGX_OK : rc;
    }

    list.ctx = ctx;
    list.filters = &filters;
    list.status = NGX_OK;

    if (ngx_pt_txn_begin(ctx->log, 0, &txn) != NGX_OK) {
        return ngx_pt_admin_store_error(ctx);
    }

    rc = ngx_pt_record_each(ctx->pool, ctx->log, txn, ctx->type,
                            ngx_pt_admin_list_collect, &list);

    if (rc != NGX_OK) {
        ngx_pt_txn_abort(txn);
        return ngx_pt_admin_store_error(ctx);
    }

    recs = list.records.elts;

    ngx_qsort(recs, list.records.nelts, sizeof(void *), ngx_pt_admin_cmp);

    rc = ngx_pt_admin_page(ctx, list.records.nelts, limit, offset);

    for (i = offset;
         rc == NGX_OK && i < offset + limit
         && i < (ngx_int_t) list.records.nelts;
         i++)
    {
        rc = ngx_pt_admin_render(ctx, txn, recs[i]);
    }

    ngx_pt_txn_abort(txn);

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_pt_json_array_close(ctx->g);
    ngx_pt_json_map_close(ctx->g);

    ctx->status = NGX_HTTP_OK;

    return NGX_OK;
}


static ngx_int_t
ngx_pt_admin_list_collect(void *data, void *rec)
{
    ngx_pt_list_t *list = data;

    void             **p;
    ngx_uint_t         i;
    ngx_pt_filter_t   *flt;

    flt = list->filters->elts;
    for (i = 0; i < list->filters->nelts; i++) {
        if (!ngx_pt_admin_filter_match(&flt[i], rec)) {
            return NGX_OK;
        }
    }

    p = ngx_array_push(&list->records);
    if (p == NULL) {
        return NGX_ERROR;
    }

    *p = rec;

    return NGX_OK;
}


static ngx_int_t
ngx_pt_admin_filter_match(ngx_pt_filter_t *flt, void *rec)
{
    u_char     *p, *c, *last;
    ngx_str_t  *s;

    s = (ngx_str_t *) ((u_char *) rec + flt->offset);

    switch (flt->op) {

    case NGX_PT_OP_EXACT:
        return s->len == flt->value.len
               && ngx_strncmp(s->data, flt->value.data, s->len) == 0;

    case NGX_PT_OP_CONTAINS:
        return ngx_pt_strfind(s->data, s->data + s->len, flt->value.data,
                              flt->value.len, 0) != NULL;

    case NGX_PT_OP_ICONTAINS:
        return ngx_pt_strfind(s->data, s->data + s->len, flt->value.data,
                              flt->value.len, 1) != NULL;

    case NGX_PT_OP_STARTSWITH:
        return s->len >= flt->value.len
               && ngx_strncmp(s->data, flt->value.data, flt->value.len) == 0;

    default: /* NGX_PT_OP_IN */
        last = flt->value.data + flt->value.len;

        for (c = flt->value.data; c <= last; c = p + 1) {
            p = ngx_strlchr(c, last, ',');
            if (p == NULL) {
                p = last;
            }

            if ((size_t) (p - c) == s->len
                && ngx_strncmp(c, s->data, s->len) == 0)
            {
                return 1;
            }
        }

        return 0;
    }
}


/*
 * limit, offset, ordering and the filters of the query string. Returns
 * NGX_DECLINED with a 400 in ctx for a bad ordering.
 */

static ngx_int_t
ngx_pt_admin_parse_args(ngx_pt_admin_t *ctx, ngx_array_t *filters,
    ngx_int_t *limit, ngx_int_t *offset)
{
    u_char           *p, *q, *last, *eq, *end, *dst;
    size_t            flen;
    ngx_int_t         n, desc;
    ngx_str_t         name, value, ordering;
    ngx_uint_t        op;
    const char       *field;
    ngx_pt_filter_t  *flt;
    ngx_pt_field_t   *f;

    static const struct {
        const char  *suffix;
        ngx_uint_t   op;
    } ops[] = {
        { "", NGX_PT_OP_EXACT },
        { "__contains", NGX_PT_OP_CONTAINS },
        { "__icontains", NGX_PT_OP_ICONTAINS },
        { "__startswith", NGX_PT_OP_STARTSWITH },
        { "__in", NGX_PT_OP_IN },
        { NULL, 0 }
    };

    *limit = NGX_PT_DEFAULT_LIMIT;
    *offset = 0;
    ngx_str_null(&ordering);

    p = ctx->r->args.data;
    last = p + ctx->r->args.len;

    for ( /* void */ ; p < last; p = end + 1) {
        end = ngx_strlchr(p, last, '&');
        if (end == NULL) {
            end = last;
        }

        eq = ngx_strlchr(p, end, '=');
        if (eq == NULL) {
            continue;
        }

        name.data = p;
        name.len = eq - p;

        /* query values are form-encoded: "+" is a space */

        value.data = ngx_pnalloc(ctx->pool, end - eq);
        if (value.data == NULL) {
            return NGX_ERROR;
        }

        for (q = eq + 1, dst = value.data; q < end; q++) {
            *dst++ = (*q == '+') ? ' ' : *q;
        }

        q = value.data;
        dst = value.data;
        ngx_unescape_uri(&dst, &q, (eq + 1 < end) ? end - eq - 1 : 0, 0);
        value.len = dst - value.data;

        if (name.len == 5 && ngx_strncmp(name.data, "limit", 5) == 0) {
            n = ngx_atoi(value.data, value.len);
            if (n > 0) {
                *limit = n;
            }
            continue;
        }

        if (name.len == 6 && ngx_strncmp(name.data, "offset", 6) == 0) {
            n = ngx_atoi(value.data, value.len);
            if (n > 0) {
                *offset = n;
            }
            continue;
        }

        if (name.len == 8 && ngx_strncmp(name.data, "ordering", 8) == 0) {
            ordering = value;
            continue;
        }

        /* filters apply to string fields named "name" and "base_path" */

        for (n = 0; ops[n].suffix; n++) {
            flen = ngx_strlen(ops[n].suffix);

            if (name.len > flen
                && ngx_strncmp(name.data + name.len - flen, ops[n].suffix,
                               flen) == 0)
            {
                field = NULL;
                name.len -= flen;

                for (f = ctx->type->fields; f->name; f++) {
                    if (f->type == NGX_PT_T_STR
                        && (ngx_strcmp(f->name, "name") == 0
                            || ngx_strcmp(f->name, "base_path") == 0)
                        && ngx_strlen(f->name) == name.len
                        && ngx_strncmp(f->name, name.data, name.len) == 0)
                    {
                        field = f->name;
                        break;
                    }
                }

                name.len += flen;

                if (field == NULL) {
                    continue;
                }

                op = ops[n].op;

                flt = ngx_array_push(filters);
                if (flt == NULL) {
                    return NGX_ERROR;
                }

                flt->offset = f->offset;
                flt->op = op;
                flt->value = value;
                break;
            }
        }
    }

    /* ordering: name, pulp_created, pulp_last_updated, "-" descending */

    ngx_pt_order_offset = offsetof(ngx_pt_meta_t, created);
    ngx_pt_order_desc = 1;

    if (ordering.data == NULL || ordering.len == 0) {
        return NGX_OK;
    }

    desc = (ordering.data[0] == '-');
    name.data = ordering.data + desc;
    name.len = ordering.len - desc;

    if (name.len == 12 && ngx_strncmp(name.data, "pulp_created", 12) == 0) {
        ngx_pt_order_offset = offsetof(ngx_pt_meta_t, created);

    } else if (name.len == 17
               && ngx_strncmp(name.data, "pulp_last_updated", 17) == 0)
    {
        ngx_pt_order_offset = offsetof(ngx_pt_meta_t, updated);

    } else {
        for (f = ctx->type->fields; f->name; f++) {
            if ((ngx_strcmp(f->name, "name") == 0
                 || ngx_strcmp(f->name, "base_path") == 0)
                && ngx_strlen(f->name) == name.len
                && ngx_strncmp(f->name, name.data, name.len) == 0)
            {
                break;
            }
        }

        if (f->name == NULL) {
            ngx_pt_json_map_open(ctx->g);
            ngx_pt_json_key(ctx->g, "ordering");
            ngx_pt_json_array_open(ctx->g);

            value.data = ngx_pnalloc(ctx->pool, ordering.len + 80);
            if (value.data == NULL) {
                return NGX_ERROR;
            }

            value.len = ngx_sprintf(value.data, "Select a valid choice. %V "
                                    "is not one of the available choices.",
                                    &ordering)
                        - value.data;
            ngx_pt_json_str(ctx->g, &value);
            ngx_pt_json_array_close(ctx->g);
            ngx_pt_json_map_close(ctx->g);

            ctx->status = NGX_HTTP_BAD_REQUEST;
            return NGX_DECLINED;
        }

        ngx_pt_order_offset = f->offset;
    }

    ngx_pt_order_desc = desc;

    return NGX_OK;
}


static int ngx_libc_cdecl
ngx_pt_admin_cmp(const void *one, const void *two)
{
    size_t      n;
    ngx_int_t   rc;
    ngx_str_t  *a, *b;

    a = (ngx_str_t *) (*(u_char **) one + ngx_pt_order_offset);
    b = (ngx_str_t *) (*(u_char **) two + ngx_pt_order_offset);

    n = ngx_min(a->len, b->len);
    rc = ngx_memcmp(a->data, b->data, n);

    if (rc == 0) {
        rc = (a->len > b->len) - (a->len < b->len);
    }

    if (rc == 0) {
        /* ties: by id, so that pages never overlap */
        a = &(*(ngx_pt_meta_t **) one)->id;
        b = &(*(ngx_pt_meta_t **) two)->id;
        rc = ngx_memcmp(a->data, b->data, NGX_PT_UUID_LEN);
    }

    return ngx_pt_order_desc ? -rc : rc;
}


/*
 * Opens a page of a list: {"count", "next", "previous", "results": [ —
 * the caller adds the results and closes the array and the object.
 */

ngx_int_t
ngx_pt_admin_page(ngx_pt_admin_t *ctx, ngx_uint_t count, ngx_int_t limit,
    ngx_int_t offset)
{
    ngx_int_t  rc;

    rc = NGX_OK;

    ngx_pt_json_map_open(ctx->g);
    ngx_pt_json_key(ctx->g, "count");
    ngx_pt_json_int(ctx->g, count);

    ngx_pt_json_key(ctx->g, "next");
    if (offset + limit < (ngx_int_t) count) {
        rc = ngx_pt_admin_page_link(ctx, limit, offset + limit);
    } else {
        ngx_pt_json_null(ctx->g);
    }

    ngx_pt_json_key(ctx->g, "previous");
    if (offset > 0 && rc == NGX_OK) {
        rc = ngx_pt_admin_page_link(ctx, limit,
                                    offset > limit ? offset - limit : 0);
    } else {
        ngx_pt_json_null(ctx->g);
    }

    ngx_pt_json_key(ctx->g, "results");
    ngx_pt_json_array_open(ctx->g);

    return rc;
}


/* an absolute URL of another page, other query arguments kept */

static ngx_int_t
ngx_pt_admin_page_link(ngx_pt_admin_t *ctx, ngx_int_t limit,
    ngx_int_t offset)
{
    u_char              *buf, *p, *a, *end, *last;
    size_t               len;
    ngx_str_t            host, url;
    ngx_http_request_t  *r = ctx->r;

    if (r->headers_in.host) {
        host = r->headers_in.host->value;
    } else {
        host = r->headers_in.server;
    }

    len = sizeof("https://") + host.len + r->uri.len * 3 + r->args.len
          + sizeof("&limit=&offset=") + 2 * NGX_INT_T_LEN;

    buf = ngx_pnalloc(ctx->pool, len);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(buf, "%s://%V",
#if (NGX_HTTP_SSL)
                    r->connection->ssl ? "https" : "http",
#else
                    "http",
#endif
                    &host);

    p = (u_char *) ngx_escape_uri(p, r->uri.data, r->uri.len,
                                  NGX_ESCAPE_URI);
    *p++ = '?';

    a = r->args.data;
    last = a + r->args.len;

    for ( /* void */ ; a < last; a = end + 1) {
        end = ngx_strlchr(a, last, '&');
        if (end == NULL) {
            end = last;
        }

        if ((end - a >= 6 && ngx_strncmp(a, "limit=", 6) == 0)
            || (end - a >= 7 && ngx_strncmp(a, "offset=", 7) == 0)
            || end == a)
        {
            continue;
        }

        p = ngx_cpymem(p, a, end - a);
        *p++ = '&';
    }

    p = ngx_sprintf(p, "limit=%i", limit);

    if (offset > 0) {
        p = ngx_sprintf(p, "&offset=%i", offset);
    }

    url.data = buf;
    url.len = p - buf;

    ngx_pt_json_str(ctx->g, &url);

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


static ngx_int_t
ngx_pt_admin_render(ngx_pt_admin_t *ctx, MDB_txn *txn, void *rec)
{
    ngx_int_t  rc;

    if (ctx->res == NGX_PT_RES_TASKS) {
        ngx_pt_admin_render_task(ctx, rec);
        return NGX_OK;
    }

    ngx_pt_json_map_open(ctx->g);
    ngx_pt_record_render(ctx->g, ctx->type, rec);

    if (ctx->res == NGX_PT_RES_PT_DISTS) {
        ngx_pt_json_key(ctx->g, "distributions");
        rc = ngx_pt_admin_render_children(ctx, txn,
                                          &((ngx_pt_meta_t *) rec)->id);
        if (rc != NGX_OK) {
            return rc;
        }

    } else if (ctx->res == NGX_PT_RES_REPOS) {
        ngx_pt_admin_render_repo(ctx, rec);

    } else if (ctx->res == NGX_PT_RES_DISTS) {
        ngx_pt_admin_render_dist(ctx, rec);
    }

    ngx_pt_json_map_close(ctx->g);

    return NGX_OK;
}


/* hrefs of the per-image distributions that pulls made under a parent */

static ngx_int_t
ngx_pt_admin_render_children(ngx_pt_admin_t *ctx, MDB_txn *txn,
    ngx_str_t *parent)
{
    u_char          buf[NGX_PT_HREF_LEN];
    ngx_str_t       href;
    ngx_uint_t      i;
    ngx_array_t    *children;
    ngx_pt_dist_t **dists;

    children = ngx_pt_content_children(ctx->pool, ctx->log, txn, parent);
    if (children == NULL) {
        return NGX_ERROR;
    }

    dists = children->elts;

    ngx_pt_json_array_open(ctx->g);

    for (i = 0; i < children->nelts; i++) {
        ngx_pt_record_href(&ngx_pt_dist_type, &dists[i]->meta.id, buf, &href);
        ngx_pt_json_str(ctx->g, &href);
    }

    ngx_pt_json_array_close(ctx->g);

    return NGX_OK;
}


static void
ngx_pt_admin_render_task(ngx_pt_admin_t *ctx, ngx_pt_task_t *task)
{
    u_char      buf[NGX_PT_HREF_LEN];
    ngx_str_t   s, *created;
    ngx_uint_t  i;
    yajl_gen    g = ctx->g;

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
    ngx_pt_json_key(g, "unblocked_at");
    ngx_pt_json_str(g, &task->meta.created);
    ngx_pt_json_key(g, "started_at");
    ngx_pt_json_str(g, &task->meta.created);
    ngx_pt_json_key(g, "finished_at");
    ngx_pt_json_str(g, &task->meta.updated);

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
    ngx_pt_json_array_close(g);
    ngx_pt_json_key(g, "result");
    ngx_pt_json_null(g);

    ngx_pt_json_map_close(g);
}


/*
 * POST, PUT, PATCH and DELETE. Everything, the checks against other
 * records included, happens in one write transaction.
 */

static ngx_int_t
ngx_pt_admin_write(ngx_pt_admin_t *ctx)
{
    void             *rec, *old;
    u_char            buf[NGX_PT_HREF_LEN];
    MDB_txn          *txn;
    yajl_val          body;
    ngx_int_t         rc;
    ngx_str_t         now, href, task, *name, *path, *oname, *opath;
    ngx_uint_t        mode;
    const char       *task_name;
    ngx_pt_meta_t    *meta;
    ngx_pt_errors_t   errs;
    ngx_pt_type_t    *type = ctx->type;
    ngx_http_request_t  *r = ctx->r;

    body = NULL;
    old = NULL;
    oname = NULL;
    opath = NULL;

    if (ngx_pt_errors_init(ctx->pool, &errs) != NGX_OK
        || ngx_pt_now(ctx->pool, &now) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (r->method != NGX_HTTP_DELETE) {
        body = ngx_pt_admin_body_object(ctx, &rc);
        if (body == NULL) {
            return rc == NGX_OK ? NGX_OK : NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (ngx_pt_txn_begin(ctx->log, 1, &txn) != NGX_OK) {
        return ngx_pt_admin_store_error(ctx);
    }

    if (ctx->id.len) {
        rc = ngx_pt_record_load(ctx->pool, ctx->log, txn, type, &ctx->id,
                                &old);
        if (rc == NGX_DECLINED) {
            ngx_pt_txn_abort(txn);
            (void) ngx_pt_admin_detail(ctx, NGX_HTTP_NOT_FOUND, "Not found.");
            return NGX_OK;
        }

        if (rc != NGX_OK) {
            goto failed;
        }
    }

    if (r->method == NGX_HTTP_DELETE) {

        if (ctx->res == NGX_PT_RES_DISTS) {
            if (ngx_pt_content_delete_image(ctx->pool, ctx->log, txn, old)
                != NGX_OK)
            {
                goto failed;
            }

        } else if (ctx->res == NGX_PT_RES_REMOTES) {
            rc = ngx_pt_admin_delete_remote(ctx, txn, old);
            if (rc == NGX_DECLINED) {
                ngx_pt_txn_abort(txn);
                return NGX_OK;
            }

            if (rc != NGX_OK) {
                goto failed;
            }

            if (ngx_pt_index_del(ctx->log, txn, NGX_PT_DB_REMOTE_NAMES,
                              &((ngx_pt_remote_t *) old)->name)
                == NGX_ERROR)
            {
                goto failed;
            }

        } else {
            /* per-image distributions are removed with their parent */
            if (ngx_pt_content_delete_dist(ctx->pool, ctx->log, txn, &ctx->id)
                != NGX_OK
                || ngx_pt_index_del(ctx->log, txn, NGX_PT_DB_DIST_NAMES,
                              &((ngx_pt_dist_t *) old)->name) == NGX_ERROR
                || ngx_pt_index_del(ctx->log, txn, NGX_PT_DB_DIST_PATHS,
                                 &((ngx_pt_dist_t *) old)->base_path)
                   == NGX_ERROR)
            {
                goto failed;
            }
        }

        if ((ctx->res != NGX_PT_RES_DISTS
             && ngx_pt_record_delete(ctx->log, txn, type, &ctx->id)
                == NGX_ERROR)
            || ngx_pt_admin_task(ctx, txn, "pulpcore.app.tasks.base."
                                 "general_delete", NULL, &task) != NGX_OK)
        {
            goto failed;
        }

        goto commit;
    }

    /* create or update */

    if (old) {
        rec = ngx_pt_record_copy(ctx->pool, type, old);
        mode = (r->method == NGX_HTTP_PATCH) ? NGX_PT_INPUT_PARTIAL
                                             : NGX_PT_INPUT_REPLACE;
    } else {
        rec = ngx_pt_record_new(ctx->pool, type);
        mode = NGX_PT_INPUT_CREATE;
    }

    if (rec == NULL) {
        ngx_pt_txn_abort(txn);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_pt_record_input(ctx->pool, type, body, rec, mode, &errs);
    if (rc == NGX_ERROR) {
        ngx_pt_txn_abort(txn);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_OK) {
        rc = (ctx->res == NGX_PT_RES_REMOTES)
             ? ngx_pt_admin_check_remote(ctx, txn, rec, old, &errs)
             : ngx_pt_admin_check_dist(ctx, txn, rec, old, &errs);

        if (rc != NGX_OK) {
            goto failed;
        }
    }

    if (errs.items.nelts) {
        ngx_pt_txn_abort(txn);
        return ngx_pt_admin_field_errors(ctx, &errs);
    }

    meta = rec;

    if (old == NULL) {
        if (ngx_pt_uuid(ctx->pool, &meta->id) != NGX_OK) {
            goto failed;
        }

        meta->created = now;
    }

    meta->updated = now;

    if (ctx->res == NGX_PT_RES_REMOTES) {
        name = &((ngx_pt_remote_t *) rec)->name;
        if (old) {
            oname = &((ngx_pt_remote_t *) old)->name;
        }

        rc = ngx_pt_admin_index(ctx, txn, NGX_PT_DB_REMOTE_NAMES, oname, name,
                                &meta->id);

    } else {
        name = &((ngx_pt_dist_t *) rec)->name;
        path = &((ngx_pt_dist_t *) rec)->base_path;
        if (old) {
            oname = &((ngx_pt_dist_t *) old)->name;
            opath = &((ngx_pt_dist_t *) old)->base_path;
        }

        rc = ngx_pt_admin_index(ctx, txn, NGX_PT_DB_DIST_NAMES, oname, name,
                                &meta->id);
        if (rc == NGX_OK) {
            rc = ngx_pt_admin_index(ctx, txn, NGX_PT_DB_DIST_PATHS, opath,
                                    path, &meta->id);
        }

        /* the images cached under an old base_path no longer exist */

        if (rc == NGX_OK && opath
            && (opath->len != path->len
                || ngx_strncmp(opath->data, path->data, path->len) != 0))
        {
            rc = ngx_pt_content_delete_dist(ctx->pool, ctx->log, txn,
                                            &meta->id);
        }
    }

    if (rc != NGX_OK
        || ngx_pt_record_save(ctx->pool, ctx->log, txn, type, rec) != NGX_OK)
    {
        goto failed;
    }

    /* Pulp: a remote is created at once, everything else through a task */

    if (old == NULL && ctx->res == NGX_PT_RES_REMOTES) {
        rc = ngx_pt_txn_commit(ctx->log, txn);
        txn = NULL;

        if (rc != NGX_OK) {
            goto failed;
        }

        ngx_pt_json_map_open(ctx->g);
        ngx_pt_record_render(ctx->g, type, rec);
        ngx_pt_json_map_close(ctx->g);

        ctx->status = NGX_HTTP_CREATED;
        return NGX_OK;
    }

    if (old == NULL) {
        ngx_pt_record_href(type, &meta->id, buf, &href);
        task_name = "pulpcore.app.tasks.base.general_create";

    } else {
        task_name = "pulpcore.app.tasks.base.general_update";
    }

    if (ngx_pt_admin_task(ctx, txn, task_name, old ? NULL : &href, &task)
        != NGX_OK)
    {
        goto failed;
    }

commit:

    /* a commit ends the transaction, whether it succeeds or not */

    rc = ngx_pt_txn_commit(ctx->log, txn);
    txn = NULL;

    if (rc != NGX_OK) {
        goto failed;
    }

    ngx_pt_json_map_open(ctx->g);
    ngx_pt_json_key(ctx->g, "task");
    ngx_pt_json_str(ctx->g, &task);
    ngx_pt_json_map_close(ctx->g);

    ctx->status = NGX_HTTP_ACCEPTED;

    return NGX_OK;

failed:

    /* every way out of a write ends its transaction: none holds the lock */

    if (txn) {
        ngx_pt_txn_abort(txn);
    }

    return ngx_pt_admin_store_error(ctx);
}


static ngx_int_t
ngx_pt_admin_check_remote(ngx_pt_admin_t *ctx, MDB_txn *txn,
    ngx_pt_remote_t *remote, ngx_pt_remote_t *old, ngx_pt_errors_t *errs)
{
    if (ngx_pt_remote_validate(ctx->pool, remote, errs) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_pt_admin_unique(ctx, txn, NGX_PT_DB_REMOTE_NAMES,
                               &remote->name, old ? &old->meta.id : NULL,
                               "name", errs);
}


typedef struct {
    ngx_pt_admin_t             *ctx;
    ngx_pt_dist_t              *dist;
    ngx_pt_errors_t            *errs;
} ngx_pt_overlap_t;


static ngx_int_t
ngx_pt_admin_check_dist(ngx_pt_admin_t *ctx, MDB_txn *txn,
    ngx_pt_dist_t *dist, ngx_pt_dist_t *old, ngx_pt_errors_t *errs)
{
    ngx_int_t         rc;
    ngx_str_t         val, *self;
    ngx_pt_overlap_t  ov;

    self = old ? &old->meta.id : NULL;

    rc = ngx_pt_record_raw(ctx->log, txn, &ngx_pt_remote_type, &dist->remote,
                           &val);
    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED
        && ngx_pt_error_addc(errs, "remote", "Invalid hyperlink - Object "
                             "does not exist.") != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_pt_admin_unique(ctx, txn, NGX_PT_DB_DIST_NAMES, &dist->name, self,
                            "name", errs)
        != NGX_OK
        || ngx_pt_admin_unique(ctx, txn, NGX_PT_DB_DIST_PATHS,
                               &dist->base_path, self, "base_path", errs)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    ov.ctx = ctx;
    ov.dist = dist;
    ov.errs = errs;

    return ngx_pt_record_each(ctx->pool, ctx->log, txn, &ngx_pt_pt_dist_type,
                              ngx_pt_admin_overlap, &ov);
}


static ngx_int_t
ngx_pt_admin_unique(ngx_pt_admin_t *ctx, MDB_txn *txn, ngx_uint_t db,
    ngx_str_t *value, ngx_str_t *self, const char *field,
    ngx_pt_errors_t *errs)
{
    ngx_int_t  rc;
    ngx_str_t  id;

    rc = ngx_pt_index_get(ctx->log, txn, db, value, &id);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED
        || (self && id.len == self->len
            && ngx_strncmp(id.data, self->data, id.len) == 0))
    {
        return NGX_OK;
    }

    return ngx_pt_error_addc(errs, field, "This field must be unique.");
}


/*
 * base_paths of pull-through distributions may not nest on component
 * boundaries: the registry could not tell which one a name belongs to.
 */

static ngx_int_t
ngx_pt_admin_overlap(void *data, void *rec)
{
    ngx_pt_overlap_t *ov = data;

    u_char         *p;
    ngx_str_t       msg;
    ngx_pt_dist_t  *other, *dist;

    dist = ov->dist;
    other = rec;

    if (dist->meta.id.len == other->meta.id.len
        && ngx_strncmp(dist->meta.id.data, other->meta.id.data,
                       dist->meta.id.len) == 0)
    {
        return NGX_OK;
    }

    if (other->base_path.len == dist->base_path.len
        || (!ngx_pt_path_prefix(&other->base_path, &dist->base_path)
            && !ngx_pt_path_prefix(&dist->base_path, &other->base_path)))
    {
        /* equal paths are reported as not unique */
        return NGX_OK;
    }

    p = ngx_pnalloc(ov->ctx->pool, other->name.len + 64);
    if (p == NULL) {
        return NGX_ERROR;
    }

    msg.data = p;
    msg.len = ngx_sprintf(p, "Overlaps with existing distribution \"%V\".",
                          &other->name)
              - p;

    if (ngx_pt_error_add(ov->errs, "base_path", &msg) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_DONE;
}


/* moves a unique index entry from old to new */

static ngx_int_t
ngx_pt_admin_index(ngx_pt_admin_t *ctx, MDB_txn *txn, ngx_uint_t db,
    ngx_str_t *old, ngx_str_t *new, ngx_str_t *id)
{
    if (old && old->len == new->len
        && ngx_strncmp(old->data, new->data, old->len) == 0)
    {
        return NGX_OK;
    }

    if (old && ngx_pt_index_del(ctx->log, txn, db, old) == NGX_ERROR) {
        return NGX_ERROR;
    }

    return ngx_pt_index_put(ctx->log, txn, db, new, id);
}


typedef struct {
    ngx_pt_admin_t             *ctx;
    ngx_str_t                  *remote;
    ngx_array_t                 users;       /* ngx_str_t names */
} ngx_pt_users_t;


/*
 * Pulp lets a deleted remote dangle under its distributions; refusing is
 * kinder than a cache that fails on the next miss.
 */

static ngx_int_t
ngx_pt_admin_delete_remote(ngx_pt_admin_t *ctx, MDB_txn *txn,
    ngx_pt_remote_t *remote)
{
    u_char          *p, *last;
    size_t           len;
    ngx_str_t       *names;
    ngx_uint_t       i;
    ngx_pt_users_t   u;

    u.ctx = ctx;
    u.remote = &remote->meta.id;

    if (ngx_array_init(&u.users, ctx->pool, 4, sizeof(ngx_str_t)) != NGX_OK
        || ngx_pt_record_each(ctx->pool, ctx->log, txn,
                              &ngx_pt_pt_dist_type, ngx_pt_admin_users, &u)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (u.users.nelts == 0) {
        return NGX_OK;
    }

    names = u.users.elts;
    len = 0;

    for (i = 0; i < u.users.nelts; i++) {
        len += names[i].len + 4;
    }

    p = ngx_pnalloc(ctx->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    last = p;

    for (i = 0; i < u.users.nelts; i++) {
        last = ngx_sprintf(last, "%s\"%V\"", i ? ", " : "", &names[i]);
    }

    (void) ngx_pt_admin_detail(ctx, NGX_HTTP_CONFLICT,
                               "Remote \"%V\" is used by distribution(s) "
                               "%*s; delete them or point them at another "
                               "remote first.",
                               &remote->name, last - p, p);

    return NGX_DECLINED;
}


static ngx_int_t
ngx_pt_admin_users(void *data, void *rec)
{
    ngx_pt_users_t *u = data;

    ngx_str_t      *name;
    ngx_pt_dist_t  *dist = rec;

    if (dist->remote.len == u->remote->len
        && ngx_strncmp(dist->remote.data, u->remote->data, dist->remote.len)
           == 0)
    {
        name = ngx_array_push(&u->users);
        if (name == NULL) {
            return NGX_ERROR;
        }

        *name = dist->name;
    }

    return NGX_OK;
}


/* a finished task, as Pulp clients expect to find behind a 202 */

static ngx_int_t
ngx_pt_admin_task(ngx_pt_admin_t *ctx, MDB_txn *txn, const char *name,
    ngx_str_t *created, ngx_str_t *href)
{
    u_char         *buf;
    ngx_str_t      *s;
    ngx_pt_task_t  *task;

    task = ngx_pt_record_new(ctx->pool, &ngx_pt_task_type);
    if (task == NULL
        || ngx_pt_uuid(ctx->pool, &task->meta.id) != NGX_OK
        || ngx_pt_now(ctx->pool, &task->meta.created) != NGX_OK)
    {
        return NGX_ERROR;
    }

    task->meta.updated = task->meta.created;
    task->name.data = (u_char *) name;
    task->name.len = ngx_strlen(name);
    ngx_str_set(&task->state, "completed");

    task->created = ngx_array_create(ctx->pool, 1, sizeof(ngx_str_t));
    if (task->created == NULL) {
        return NGX_ERROR;
    }

    if (created) {
        s = ngx_array_push(task->created);
        if (s == NULL) {
            return NGX_ERROR;
        }

        *s = *created;
    }

    if (ngx_pt_record_save(ctx->pool, ctx->log, txn, &ngx_pt_task_type, task)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    buf = ngx_pnalloc(ctx->pool, NGX_PT_HREF_LEN);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    ngx_pt_record_href(&ngx_pt_task_type, &task->meta.id, buf, href);

    return NGX_OK;
}
