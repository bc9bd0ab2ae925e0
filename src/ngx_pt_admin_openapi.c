
/*
 * ngx_pullthrough: the admin API's OpenAPI 3 document, which Pulp's
 * clients (pulp-cli, pulp-glue, squeezer, the generated bindings) read
 * before anything else. It is written once per configuration cycle from
 * what answers the requests: the resource table names the operations
 * (Pulp's operation ids and href parameters) and the methods taken; the
 * records' field tables give the request and response schemas and the
 * filters a list takes; views without records describe their answers
 * with a small property table beside the code that renders them. The
 * document is served from memory, with an ETag.
 */


#include <ngx_pt.h>
#include <ngx_pt_admin.h>
#include <ngx_md5.h>


typedef struct {
    ngx_str_t                   doc;
    ngx_str_t                   etag;
    ngx_cycle_t                *cycle;       /* whose pool holds them */
} ngx_pt_openapi_t;


static void ngx_pt_openapi_paths(yajl_gen g);
static void ngx_pt_openapi_resource(yajl_gen g, ngx_pt_admin_resource_t *res);
static void ngx_pt_openapi_versions(yajl_gen g, ngx_pt_admin_resource_t *res);
static void ngx_pt_openapi_operation(yajl_gen g, ngx_pt_admin_api_t *api,
    const char *op, const char *suffix, const char *summary);
static void ngx_pt_openapi_params(yajl_gen g, ngx_pt_type_t *type,
    ngx_pt_admin_api_t *api, ngx_uint_t list);
static void ngx_pt_openapi_param(yajl_gen g, const char *name,
    const char *in, const char *type, ngx_uint_t array, ngx_uint_t explode);
static void ngx_pt_openapi_ordering(yajl_gen g, ngx_pt_type_t *type);
static void ngx_pt_openapi_body(yajl_gen g, const char *schema,
    const char *prefix);
static void ngx_pt_openapi_answer(yajl_gen g, const char *status,
    const char *schema, const char *prefix, const char *suffix);
static void ngx_pt_openapi_components(yajl_gen g);
static void ngx_pt_openapi_schemas(yajl_gen g, ngx_pt_admin_resource_t *res,
    ngx_pt_admin_api_t *api);
static void ngx_pt_openapi_input(yajl_gen g, ngx_pt_type_t *type,
    ngx_uint_t partial);
static void ngx_pt_openapi_output(yajl_gen g, ngx_pt_type_t *type,
    ngx_pt_admin_prop_t *extra);
static void ngx_pt_openapi_page(yajl_gen g, const char *schema);
static void ngx_pt_openapi_field(yajl_gen g, ngx_pt_field_t *f,
    ngx_uint_t output);
static void ngx_pt_openapi_props(yajl_gen g, ngx_pt_admin_prop_t *props);
static void ngx_pt_openapi_prop(yajl_gen g, const char *kind);
static void ngx_pt_openapi_type(yajl_gen g, const char *type);
static void ngx_pt_openapi_name(yajl_gen g, const char *prefix,
    const char *name, const char *suffix);
static void ngx_pt_openapi_key(yajl_gen g, const char *prefix,
    const char *name, const char *suffix);


static ngx_pt_openapi_t  ngx_pt_openapi;


/* what every record shows before its fields */

static ngx_pt_admin_prop_t  ngx_pt_openapi_meta[] = {
    { "pulp_href", "uri" },
    { "prn", "string" },
    { "pulp_created", "date-time" },
    { "pulp_last_updated", "date-time" },
    { NULL, NULL }
};


/*
 * Built while the configuration is read, once for each cycle that has an
 * admin location: workers inherit it.
 */

ngx_int_t
ngx_pt_admin_openapi_init(ngx_conf_t *cf)
{
    u_char     digest[16], *p;
    yajl_gen   g;
    ngx_md5_t  md5;

    if (ngx_pt_openapi.cycle == cf->cycle) {
        return NGX_OK;
    }

    g = ngx_pt_json_gen(cf->pool);
    if (g == NULL) {
        return NGX_ERROR;
    }

    ngx_pt_json_map_open(g);

    ngx_pt_json_key(g, "openapi");
    ngx_pt_json_cstr(g, "3.0.3");

    ngx_pt_json_key(g, "info");
    ngx_pt_json_map_open(g);
    ngx_pt_json_key(g, "title");
    ngx_pt_json_cstr(g, "Pulp 3 API");
    ngx_pt_json_key(g, "description");
    ngx_pt_json_cstr(g, "The admin API of ngx_pullthrough, a pull-through "
                     "cache with Pulp's paths and shapes.");
    ngx_pt_json_key(g, "version");
    ngx_pt_json_cstr(g, "v3");
    ngx_pt_json_key(g, "x-pulp-app-versions");
    ngx_pt_json_map_open(g);
    ngx_pt_json_key(g, "core");
    ngx_pt_json_cstr(g, NGX_PT_PULP_CORE_VERSION);
    ngx_pt_json_key(g, "container");
    ngx_pt_json_cstr(g, NGX_PT_PULP_CONTAINER_VERSION);
    ngx_pt_json_map_close(g);
    ngx_pt_json_key(g, "x-pulp-domain-enabled");
    ngx_pt_json_bool(g, 0);
    ngx_pt_json_map_close(g);

    ngx_pt_openapi_paths(g);
    ngx_pt_openapi_components(g);

    ngx_pt_json_map_close(g);

    if (ngx_pt_json_result(g, cf->pool, &ngx_pt_openapi.doc) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_md5_init(&md5);
    ngx_md5_update(&md5, ngx_pt_openapi.doc.data, ngx_pt_openapi.doc.len);
    ngx_md5_final(digest, &md5);

    p = ngx_pnalloc(cf->pool, 2 * sizeof(digest) + 2);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_pt_openapi.etag.data = p;
    *p++ = '"';
    p = ngx_hex_dump(p, digest, sizeof(digest));
    *p++ = '"';
    ngx_pt_openapi.etag.len = p - ngx_pt_openapi.etag.data;

    ngx_pt_openapi.cycle = cf->cycle;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, cf->log, 0,
                   "pullthrough openapi: document of %uz bytes",
                   ngx_pt_openapi.doc.len);

    return NGX_OK;
}


/* GET docs/api.json, whatever the query string (?bindings, ?component=) */

ngx_int_t
ngx_pt_admin_openapi(ngx_pt_admin_t *ctx)
{
    ngx_table_elt_t     *h;
    ngx_http_request_t  *r = ctx->r;

    if (ngx_pt_openapi.doc.len == 0) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "ETag");
    h->value = ngx_pt_openapi.etag;
    r->headers_out.etag = h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Cache-Control");
    ngx_str_set(&h->value, "no-cache");

    /* If-None-Match is answered by nginx's not_modified filter */

    ctx->raw = ngx_pt_openapi.doc;
    ctx->status = NGX_HTTP_OK;

    return NGX_OK;
}


static void
ngx_pt_openapi_paths(yajl_gen g)
{
    ngx_pt_admin_resource_t  *res;

    ngx_pt_json_key(g, "paths");
    ngx_pt_json_map_open(g);

    for (res = ngx_pt_admin_resources; res->path; res++) {
        if (res->api) {
            ngx_pt_openapi_resource(g, res);
        }
    }

    ngx_pt_json_map_close(g);
}


/* a collection's path and, with objects of its own, an object's href */

static void
ngx_pt_openapi_resource(yajl_gen g, ngx_pt_admin_resource_t *res)
{
    u_char               buf[NGX_PT_HREF_LEN];
    ngx_uint_t           m;
    ngx_pt_admin_api_t  *api = res->api;

    ngx_sprintf(buf, NGX_PT_API_ROOT "%s%Z", res->path);

    ngx_pt_json_key(g, (char *) buf);
    ngx_pt_json_map_open(g);

    if (res->collection_methods & NGX_HTTP_GET) {
        ngx_pt_json_key(g, "get");
        ngx_pt_openapi_operation(g, api, api->list ? api->list : api->op,
                                 api->list ? NULL : "_list",
                                 api->single ? "Inspect" : "List");
        ngx_pt_openapi_params(g, res->view ? NULL : res->type, api,
                              !api->single);
        ngx_pt_json_key(g, "responses");
        ngx_pt_json_map_open(g);
        ngx_pt_openapi_answer(g, "200", api->schema,
                              api->single ? NULL : "Paginated",
                              api->single ? "Response" : "ResponseList");
        ngx_pt_json_map_close(g);
        ngx_pt_json_map_close(g);
    }

    if (res->collection_methods & NGX_HTTP_POST) {
        ngx_pt_json_key(g, "post");
        ngx_pt_openapi_operation(g, api, api->create ? api->create : api->op,
                                 api->create ? NULL : "_create", "Create");
        ngx_pt_openapi_body(g, api->schema, NULL);
        ngx_pt_json_key(g, "responses");
        ngx_pt_json_map_open(g);

        if (res->flags & NGX_PT_ADMIN_AT_ONCE) {
            ngx_pt_openapi_answer(g, "201", api->schema, NULL, "Response");

        } else {
            ngx_pt_openapi_answer(g, "202", "AsyncOperation", NULL,
                                  "Response");
        }

        ngx_pt_json_map_close(g);
        ngx_pt_json_map_close(g);
    }

    ngx_pt_json_map_close(g);

    if (api->href == NULL) {
        return;
    }

    ngx_sprintf(buf, "{%s}%Z", api->href);

    ngx_pt_json_key(g, (char *) buf);
    ngx_pt_json_map_open(g);

    ngx_pt_json_key(g, "parameters");
    ngx_pt_json_array_open(g);
    ngx_pt_openapi_param(g, api->href, "path", "string", 0, 0);
    ngx_pt_json_array_close(g);

    m = res->item_methods;

    if (m & NGX_HTTP_GET) {
        ngx_pt_json_key(g, "get");
        ngx_pt_openapi_operation(g, api, api->op, "_read", "Inspect");
        ngx_pt_openapi_params(g, NULL, api, 0);
        ngx_pt_json_key(g, "responses");
        ngx_pt_json_map_open(g);
        ngx_pt_openapi_answer(g, "200", api->schema, NULL, "Response");
        ngx_pt_json_map_close(g);
        ngx_pt_json_map_close(g);
    }

    if (m & NGX_HTTP_PUT) {
        ngx_pt_json_key(g, "put");
        ngx_pt_openapi_operation(g, api, api->op, "_update", "Update");
        ngx_pt_openapi_body(g, api->schema, NULL);
        ngx_pt_json_key(g, "responses");
        ngx_pt_json_map_open(g);
        ngx_pt_openapi_answer(g, "202", "AsyncOperation", NULL, "Response");
        ngx_pt_json_map_close(g);
        ngx_pt_json_map_close(g);
    }

    if (m & NGX_HTTP_PATCH) {
        ngx_pt_json_key(g, "patch");
        ngx_pt_openapi_operation(g, api, api->op, "_partial_update",
                                 "Update");
        ngx_pt_openapi_body(g, api->schema, "Patched");
        ngx_pt_json_key(g, "responses");
        ngx_pt_json_map_open(g);
        ngx_pt_openapi_answer(g, "202", "AsyncOperation", NULL, "Response");
        ngx_pt_json_map_close(g);
        ngx_pt_json_map_close(g);
    }

    if (m & NGX_HTTP_DELETE) {
        ngx_pt_json_key(g, "delete");
        ngx_pt_openapi_operation(g, api, api->op, "_delete", "Delete");
        ngx_pt_json_key(g, "responses");
        ngx_pt_json_map_open(g);
        ngx_pt_openapi_answer(g, "202", "AsyncOperation", NULL, "Response");
        ngx_pt_json_map_close(g);
        ngx_pt_json_map_close(g);
    }

    ngx_pt_json_map_close(g);

    if (res->flags & NGX_PT_ADMIN_VERSIONS) {
        ngx_pt_openapi_versions(g, res);
    }
}


/* a repository's versions: {<repository>}versions/ and a version's href */

static void
ngx_pt_openapi_versions(yajl_gen g, ngx_pt_admin_resource_t *res)
{
    u_char               buf[NGX_PT_HREF_LEN];
    ngx_pt_admin_api_t  *api = &ngx_pt_admin_version_api;

    ngx_sprintf(buf, "{%s}versions/%Z", res->api->href);

    ngx_pt_json_key(g, (char *) buf);
    ngx_pt_json_map_open(g);
    ngx_pt_json_key(g, "parameters");
    ngx_pt_json_array_open(g);
    ngx_pt_openapi_param(g, res->api->href, "path", "string", 0, 0);
    ngx_pt_json_array_close(g);
    ngx_pt_json_key(g, "get");
    ngx_pt_openapi_operation(g, api, api->op, "_list", "List");
    ngx_pt_openapi_params(g, NULL, api, 1);
    ngx_pt_json_key(g, "responses");
    ngx_pt_json_map_open(g);
    ngx_pt_openapi_answer(g, "200", api->schema, "Paginated", "ResponseList");
    ngx_pt_json_map_close(g);
    ngx_pt_json_map_close(g);
    ngx_pt_json_map_close(g);

    ngx_sprintf(buf, "{%s}%Z", api->href);

    ngx_pt_json_key(g, (char *) buf);
    ngx_pt_json_map_open(g);
    ngx_pt_json_key(g, "parameters");
    ngx_pt_json_array_open(g);
    ngx_pt_openapi_param(g, api->href, "path", "string", 0, 0);
    ngx_pt_json_array_close(g);
    ngx_pt_json_key(g, "get");
    ngx_pt_openapi_operation(g, api, api->op, "_read", "Inspect");
    ngx_pt_openapi_params(g, NULL, api, 0);
    ngx_pt_json_key(g, "responses");
    ngx_pt_json_map_open(g);
    ngx_pt_openapi_answer(g, "200", api->schema, NULL, "Response");
    ngx_pt_json_map_close(g);
    ngx_pt_json_map_close(g);
    ngx_pt_json_map_close(g);
}


/* opens the operation object and writes what every operation has */

static void
ngx_pt_openapi_operation(yajl_gen g, ngx_pt_admin_api_t *api, const char *op,
    const char *suffix, const char *summary)
{
    u_char  buf[128];

    ngx_pt_json_map_open(g);

    ngx_sprintf(buf, "%s%s%Z", op, suffix ? suffix : "");
    ngx_pt_json_key(g, "operationId");
    ngx_pt_json_cstr(g, (char *) buf);

    ngx_sprintf(buf, "%s %s%Z", summary, api->tag);
    ngx_pt_json_key(g, "summary");
    ngx_pt_json_cstr(g, (char *) buf);

    ngx_pt_json_key(g, "tags");
    ngx_pt_json_array_open(g);
    ngx_pt_json_cstr(g, api->tag);
    ngx_pt_json_array_close(g);

    /* credentials when the client has them, as the admin location may ask
     * for them; none otherwise */

    ngx_pt_json_key(g, "security");
    ngx_pt_json_array_open(g);
    ngx_pt_json_map_open(g);
    ngx_pt_json_key(g, "basicAuth");
    ngx_pt_json_array_open(g);
    ngx_pt_json_array_close(g);
    ngx_pt_json_map_close(g);
    ngx_pt_json_map_open(g);
    ngx_pt_json_map_close(g);
    ngx_pt_json_array_close(g);
}


/*
 * A GET's query parameters: sparse fields always; for a list its page,
 * and then a list of records' ordering and filters (each filterable field
 * with each suffix), or a view's own parameters
 */

static void
ngx_pt_openapi_params(yajl_gen g, ngx_pt_type_t *type, ngx_pt_admin_api_t *api,
    ngx_uint_t list)
{
    u_char           buf[128];
    ngx_uint_t       n;
    const char     **p;
    ngx_pt_field_t  *f;

    ngx_pt_json_key(g, "parameters");
    ngx_pt_json_array_open(g);

    ngx_pt_openapi_param(g, "fields", "query", "string", 1, 1);
    ngx_pt_openapi_param(g, "exclude_fields", "query", "string", 1, 1);

    if (!list) {
        ngx_pt_json_array_close(g);
        return;
    }

    ngx_pt_openapi_param(g, "limit", "query", "integer", 0, 0);
    ngx_pt_openapi_param(g, "offset", "query", "integer", 0, 0);

    if (type) {
        ngx_pt_openapi_ordering(g, type);

        for (f = type->fields; f->name; f++) {
            if (f->type == NGX_PT_T_LABELS) {
                ngx_pt_openapi_param(g, "pulp_label_select", "query",
                                     "string", 0, 0);
            }

            if (!ngx_pt_admin_filterable(f)) {
                continue;
            }

            for (n = 0; ngx_pt_admin_filter_ops[n]; n++) {
                ngx_sprintf(buf, "%s%s%Z", f->name,
                            ngx_pt_admin_filter_ops[n]);
                ngx_pt_openapi_param(g, (char *) buf, "query", "string",
                                     n == NGX_PT_OP_IN, 0);
            }
        }
    }

    /* a view's own, and what a list of records takes besides its fields;
     * ordering and __in take comma-separated lists */

    for (p = api->params; p && *p; p++) {
        n = ngx_strlen(*p);
        ngx_pt_openapi_param(g, *p, "query", "string",
                             ngx_strcmp(*p, "ordering") == 0
                             || (n > 4 && ngx_strcmp(*p + n - 4, "__in") == 0),
                             0);
    }

    ngx_pt_json_array_close(g);
}


static void
ngx_pt_openapi_param(yajl_gen g, const char *name, const char *in,
    const char *type, ngx_uint_t array, ngx_uint_t explode)
{
    ngx_uint_t  path;

    path = (ngx_strcmp(in, "path") == 0);

    ngx_pt_json_map_open(g);
    ngx_pt_json_key(g, "name");
    ngx_pt_json_cstr(g, name);
    ngx_pt_json_key(g, "in");
    ngx_pt_json_cstr(g, in);
    ngx_pt_json_key(g, "required");
    ngx_pt_json_bool(g, path);

    ngx_pt_json_key(g, "schema");
    ngx_pt_json_map_open(g);

    if (array) {
        ngx_pt_openapi_type(g, "array");
        ngx_pt_json_key(g, "items");
        ngx_pt_json_map_open(g);
    }

    ngx_pt_openapi_type(g, type);

    if (array) {
        ngx_pt_json_map_close(g);
    }

    ngx_pt_json_map_close(g);

    if (path) {
        ngx_pt_json_key(g, "style");
        ngx_pt_json_cstr(g, "simple");

    } else if (array) {
        /* __in takes one comma-separated value; fields may be repeated */
        ngx_pt_json_key(g, "style");
        ngx_pt_json_cstr(g, "form");
        ngx_pt_json_key(g, "explode");
        ngx_pt_json_bool(g, explode);
    }

    ngx_pt_json_map_close(g);
}


/* ordering: each value and its reverse */

static void
ngx_pt_openapi_ordering(yajl_gen g, ngx_pt_type_t *type)
{
    u_char           buf[128];
    ngx_uint_t       i, desc;
    ngx_pt_field_t  *f;

    ngx_pt_json_map_open(g);
    ngx_pt_json_key(g, "name");
    ngx_pt_json_cstr(g, "ordering");
    ngx_pt_json_key(g, "in");
    ngx_pt_json_cstr(g, "query");
    ngx_pt_json_key(g, "required");
    ngx_pt_json_bool(g, 0);
    ngx_pt_json_key(g, "schema");
    ngx_pt_json_map_open(g);
    ngx_pt_openapi_type(g, "array");
    ngx_pt_json_key(g, "items");
    ngx_pt_json_map_open(g);
    ngx_pt_openapi_type(g, "string");
    ngx_pt_json_key(g, "enum");
    ngx_pt_json_array_open(g);

    for (desc = 0; desc < 2; desc++) {
        for (i = 0; ngx_pt_admin_orderings[i]; i++) {
            ngx_sprintf(buf, "%s%s%Z", desc ? "-" : "",
                        ngx_pt_admin_orderings[i]);
            ngx_pt_json_cstr(g, (char *) buf);
        }

        for (f = type->fields; f->name; f++) {
            if (ngx_pt_admin_filterable(f) && f->type == NGX_PT_T_STR) {
                ngx_sprintf(buf, "%s%s%Z", desc ? "-" : "", f->name);
                ngx_pt_json_cstr(g, (char *) buf);
            }
        }
    }

    ngx_pt_json_array_close(g);
    ngx_pt_json_map_close(g);
    ngx_pt_json_map_close(g);
    ngx_pt_json_key(g, "style");
    ngx_pt_json_cstr(g, "form");
    ngx_pt_json_key(g, "explode");
    ngx_pt_json_bool(g, 0);
    ngx_pt_json_map_close(g);
}


static void
ngx_pt_openapi_body(yajl_gen g, const char *schema, const char *prefix)
{
    ngx_pt_json_key(g, "requestBody");
    ngx_pt_json_map_open(g);
    ngx_pt_json_key(g, "required");
    ngx_pt_json_bool(g, prefix == NULL);
    ngx_pt_json_key(g, "content");
    ngx_pt_json_map_open(g);
    ngx_pt_json_key(g, "application/json");
    ngx_pt_json_map_open(g);
    ngx_pt_json_key(g, "schema");
    ngx_pt_json_map_open(g);
    ngx_pt_json_key(g, "$ref");
    ngx_pt_openapi_name(g, prefix ? prefix : "", schema, "");
    ngx_pt_json_map_close(g);
    ngx_pt_json_map_close(g);
    ngx_pt_json_map_close(g);
    ngx_pt_json_map_close(g);
}


static void
ngx_pt_openapi_answer(yajl_gen g, const char *status, const char *schema,
    const char *prefix, const char *suffix)
{
    ngx_pt_json_key(g, status);
    ngx_pt_json_map_open(g);
    ngx_pt_json_key(g, "description");
    ngx_pt_json_cstr(g, "");
    ngx_pt_json_key(g, "content");
    ngx_pt_json_map_open(g);
    ngx_pt_json_key(g, "application/json");
    ngx_pt_json_map_open(g);
    ngx_pt_json_key(g, "schema");
    ngx_pt_json_map_open(g);
    ngx_pt_json_key(g, "$ref");
    ngx_pt_openapi_name(g, prefix ? prefix : "", schema, suffix);
    ngx_pt_json_map_close(g);
    ngx_pt_json_map_close(g);
    ngx_pt_json_map_close(g);
    ngx_pt_json_map_close(g);
}


/* a schema's name in components, and a reference to it */

static void
ngx_pt_openapi_key(yajl_gen g, const char *prefix, const char *name,
    const char *suffix)
{
    u_char  buf[256];

    ngx_sprintf(buf, "%s%s%s%Z", prefix, name, suffix);
    ngx_pt_json_key(g, (char *) buf);
}


/* "#/components/schemas/<prefix><name><suffix>" */

static void
ngx_pt_openapi_name(yajl_gen g, const char *prefix, const char *name,
    const char *suffix)
{
    u_char  buf[256];

    ngx_sprintf(buf, "#/components/schemas/%s%s%s%Z", prefix, name, suffix);
    ngx_pt_json_cstr(g, (char *) buf);
}


static void
ngx_pt_openapi_components(yajl_gen g)
{
    ngx_pt_admin_resource_t  *res;

    static ngx_pt_admin_prop_t  async[] = {
        { "task", "uri" },
        { NULL, NULL }
    };

    ngx_pt_json_key(g, "components");
    ngx_pt_json_map_open(g);

    ngx_pt_json_key(g, "schemas");
    ngx_pt_json_map_open(g);

    ngx_pt_json_key(g, "AsyncOperationResponse");
    ngx_pt_json_map_open(g);
    ngx_pt_openapi_type(g, "object");
    ngx_pt_openapi_props(g, async);
    ngx_pt_json_key(g, "required");
    ngx_pt_json_array_open(g);
    ngx_pt_json_cstr(g, "task");
    ngx_pt_json_array_close(g);
    ngx_pt_json_map_close(g);

    for (res = ngx_pt_admin_resources; res->path; res++) {
        if (res->api) {
            ngx_pt_openapi_schemas(g, res, res->api);
        }

        if (res->flags & NGX_PT_ADMIN_VERSIONS) {
            ngx_pt_openapi_schemas(g, NULL, &ngx_pt_admin_version_api);
        }
    }

    ngx_pt_json_map_close(g);

    ngx_pt_json_key(g, "securitySchemes");
    ngx_pt_json_map_open(g);
    ngx_pt_json_key(g, "basicAuth");
    ngx_pt_json_map_open(g);
    ngx_pt_json_key(g, "type");
    ngx_pt_json_cstr(g, "http");
    ngx_pt_json_key(g, "scheme");
    ngx_pt_json_cstr(g, "basic");
    ngx_pt_json_key(g, "description");
    ngx_pt_json_cstr(g, "What the admin location's own access control "
                     "asks for (auth_basic), if any.");
    ngx_pt_json_map_close(g);
    ngx_pt_json_map_close(g);

    ngx_pt_json_map_close(g);
}


/*
 * A resource's schemas: its answer, its page, and what its writes take.
 * Generic lists share their type's names with the type's own resource,
 * which writes them first.
 */

static void
ngx_pt_openapi_schemas(yajl_gen g, ngx_pt_admin_resource_t *res,
    ngx_pt_admin_api_t *api)
{
    ngx_pt_type_t  *type;

    if (api->shared) {
        return;
    }

    type = res ? res->type : NULL;

    if (res && !(res->collection_methods & NGX_HTTP_GET)) {
        goto input;
    }

    ngx_pt_openapi_key(g, "", api->schema, "Response");
    ngx_pt_json_map_open(g);
    ngx_pt_openapi_type(g, "object");

    if (api->shape) {
        ngx_pt_openapi_output(g, api->shape, api->props);

    } else if (type && res->render == NULL) {
        ngx_pt_openapi_output(g, type, api->props);

    } else {
        ngx_pt_openapi_props(g, api->props);
    }

    ngx_pt_json_map_close(g);

    if (!api->single) {
        ngx_pt_openapi_page(g, api->schema);
    }

input:

    if (res && (res->collection_methods & NGX_HTTP_POST)) {
        ngx_pt_openapi_key(g, "", api->schema, "");
        ngx_pt_json_map_open(g);
        ngx_pt_openapi_type(g, "object");

        if (type) {
            ngx_pt_openapi_input(g, type, 0);

        } else {
            ngx_pt_openapi_props(g, api->body);
        }

        ngx_pt_json_map_close(g);

    } else if (res && type && (res->item_methods & NGX_HTTP_PUT)) {
        ngx_pt_openapi_key(g, "", api->schema, "");
        ngx_pt_json_map_open(g);
        ngx_pt_openapi_type(g, "object");
        ngx_pt_openapi_input(g, type, 0);
        ngx_pt_json_map_close(g);
    }

    if (res && type && (res->item_methods & NGX_HTTP_PATCH)) {
        ngx_pt_openapi_key(g, "Patched", api->schema, "");
        ngx_pt_json_map_open(g);
        ngx_pt_openapi_type(g, "object");
        ngx_pt_openapi_input(g, type, 1);
        ngx_pt_json_map_close(g);
    }
}


/* what a write takes: the fields not set by the module */

static void
ngx_pt_openapi_input(yajl_gen g, ngx_pt_type_t *type, ngx_uint_t partial)
{
    ngx_uint_t       required;
    ngx_pt_field_t  *f;

    ngx_pt_json_key(g, "properties");
    ngx_pt_json_map_open(g);

    required = 0;

    for (f = type->fields; f->name; f++) {
        if (f->flags & (NGX_PT_F_INTERNAL|NGX_PT_F_READONLY|NGX_PT_F_FIXED)) {
            continue;
        }

        ngx_pt_json_key(g, f->name);
        ngx_pt_openapi_field(g, f, 0);

        required += (f->flags & NGX_PT_F_REQUIRED) ? 1 : 0;
    }

    ngx_pt_json_map_close(g);

    if (partial || required == 0) {
        return;
    }

    ngx_pt_json_key(g, "required");
    ngx_pt_json_array_open(g);

    for (f = type->fields; f->name; f++) {
        if ((f->flags & NGX_PT_F_REQUIRED)
            && !(f->flags & (NGX_PT_F_INTERNAL|NGX_PT_F_READONLY
                             |NGX_PT_F_FIXED)))
        {
            ngx_pt_json_cstr(g, f->name);
        }
    }

    ngx_pt_json_array_close(g);
}


/* what a record shows, as ngx_pt_record_render() writes it */

static void
ngx_pt_openapi_output(yajl_gen g, ngx_pt_type_t *type,
    ngx_pt_admin_prop_t *extra)
{
    ngx_pt_field_t       *f;
    ngx_uint_t            secrets;
    ngx_pt_admin_prop_t  *p;

    ngx_pt_json_key(g, "properties");
    ngx_pt_json_map_open(g);

    for (p = ngx_pt_openapi_meta; p->name; p++) {
        ngx_pt_json_key(g, p->name);
        ngx_pt_openapi_prop(g, p->kind);
    }

    secrets = 0;

    for (f = type->fields; f->name; f++) {
        if (f->flags & (NGX_PT_F_INTERNAL|NGX_PT_F_READONLY|NGX_PT_F_HOOKED))
        {
            continue;
        }

        if (f->flags & NGX_PT_F_SECRET) {
            secrets++;
            continue;
        }

        ngx_pt_json_key(g, f->name);
        ngx_pt_openapi_field(g, f, 1);
    }

    if (secrets) {
        ngx_pt_json_key(g, "hidden_fields");
        ngx_pt_openapi_prop(g, "objects");
    }

    for (p = extra; p && p->name; p++) {
        ngx_pt_json_key(g, p->name);
        ngx_pt_openapi_prop(g, p->kind);
    }

    ngx_pt_json_map_close(g);
}


static void
ngx_pt_openapi_page(yajl_gen g, const char *schema)
{
    ngx_pt_admin_prop_t  *p;

    static ngx_pt_admin_prop_t  page[] = {
        { "count", "integer" },
        { "next", "uri?" },
        { "previous", "uri?" },
        { NULL, NULL }
    };

    ngx_pt_openapi_key(g, "Paginated", schema, "ResponseList");
    ngx_pt_json_map_open(g);
    ngx_pt_openapi_type(g, "object");
    ngx_pt_json_key(g, "required");
    ngx_pt_json_array_open(g);
    ngx_pt_json_cstr(g, "count");
    ngx_pt_json_cstr(g, "results");
    ngx_pt_json_array_close(g);

    ngx_pt_json_key(g, "properties");
    ngx_pt_json_map_open(g);
    ngx_pt_json_key(g, "results");
    ngx_pt_json_map_open(g);
    ngx_pt_openapi_type(g, "array");
    ngx_pt_json_key(g, "items");
    ngx_pt_json_map_open(g);
    ngx_pt_json_key(g, "$ref");
    ngx_pt_openapi_name(g, "", schema, "Response");
    ngx_pt_json_map_close(g);
    ngx_pt_json_map_close(g);

    for (p = page; p->name; p++) {
        ngx_pt_json_key(g, p->name);
        ngx_pt_openapi_prop(g, p->kind);
    }

    ngx_pt_json_map_close(g);
    ngx_pt_json_map_close(g);
}


/* a field's schema, from its table entry */

static void
ngx_pt_openapi_field(yajl_gen g, ngx_pt_field_t *f, ngx_uint_t output)
{
    ngx_pt_json_map_open(g);

    switch (f->type) {

    case NGX_PT_T_BOOL:
        ngx_pt_openapi_type(g, "boolean");
        break;

    case NGX_PT_T_INT:
        ngx_pt_openapi_type(g, "integer");
        ngx_pt_json_key(g, "format");
        ngx_pt_json_cstr(g, "int64");

        if (f->max > f->min) {
            ngx_pt_json_key(g, "minimum");
            ngx_pt_json_int(g, f->min);
            ngx_pt_json_key(g, "maximum");
            ngx_pt_json_int(g, f->max);
        }

        break;

    case NGX_PT_T_NUM:
        ngx_pt_openapi_type(g, "number");
        ngx_pt_json_key(g, "format");
        ngx_pt_json_cstr(g, "double");
        ngx_pt_json_key(g, "minimum");
        ngx_pt_json_num(g, 0.0);

        if (f->max > 0) {
            ngx_pt_json_key(g, "maximum");
            ngx_pt_json_int(g, f->max);
        }

        break;

    case NGX_PT_T_STRLIST:
        ngx_pt_openapi_type(g, "array");
        ngx_pt_json_key(g, "items");
        ngx_pt_json_map_open(g);
        ngx_pt_openapi_type(g, "string");
        ngx_pt_json_map_close(g);
        break;

    case NGX_PT_T_LABELS:
        ngx_pt_openapi_type(g, "object");
        ngx_pt_json_key(g, "additionalProperties");
        ngx_pt_json_map_open(g);
        ngx_pt_openapi_type(g, "string");
        ngx_pt_json_key(g, "nullable");
        ngx_pt_json_bool(g, 1);
        ngx_pt_json_map_close(g);
        break;

    case NGX_PT_T_HEADERS:
        ngx_pt_openapi_type(g, "array");
        ngx_pt_json_key(g, "items");
        ngx_pt_json_map_open(g);
        ngx_pt_openapi_type(g, "object");
        ngx_pt_json_key(g, "additionalProperties");
        ngx_pt_json_map_open(g);
        ngx_pt_openapi_type(g, "string");
        ngx_pt_json_map_close(g);
        ngx_pt_json_map_close(g);
        break;

    case NGX_PT_T_REF:
        ngx_pt_openapi_type(g, "string");
        ngx_pt_json_key(g, "format");
        ngx_pt_json_cstr(g, "uri");
        break;

    default: /* NGX_PT_T_STR */
        ngx_pt_openapi_type(g, "string");

        if (f->max > 0) {
            ngx_pt_json_key(g, "maxLength");
            ngx_pt_json_int(g, f->max);
        }

        if (!output && !(f->flags & NGX_PT_F_BLANK)) {
            ngx_pt_json_key(g, "minLength");
            ngx_pt_json_int(g, 1);
        }

        break;
    }

    if (f->flags & NGX_PT_F_NULLABLE) {
        ngx_pt_json_key(g, "nullable");
        ngx_pt_json_bool(g, 1);
    }

    if (!output && (f->flags & NGX_PT_F_SECRET)) {
        ngx_pt_json_key(g, "writeOnly");
        ngx_pt_json_bool(g, 1);
    }

    if (output && (f->flags & NGX_PT_F_FIXED)) {
        ngx_pt_json_key(g, "readOnly");
        ngx_pt_json_bool(g, 1);
    }

    ngx_pt_json_map_close(g);
}


static void
ngx_pt_openapi_props(yajl_gen g, ngx_pt_admin_prop_t *props)
{
    ngx_pt_admin_prop_t  *p;

    ngx_pt_json_key(g, "properties");
    ngx_pt_json_map_open(g);

    for (p = props; p && p->name; p++) {
        ngx_pt_json_key(g, p->name);
        ngx_pt_openapi_prop(g, p->kind);
    }

    ngx_pt_json_map_close(g);
}


/* a property's schema from its kind (ngx_pt_admin_prop_t) */

static void
ngx_pt_openapi_prop(yajl_gen g, const char *kind)
{
    size_t      len;
    ngx_uint_t  nullable;

    len = ngx_strlen(kind);
    nullable = (len && kind[len - 1] == '?');
    len -= nullable;

    ngx_pt_json_map_open(g);

    if (len == 3 && ngx_strncmp(kind, "uri", 3) == 0) {
        ngx_pt_openapi_type(g, "string");
        ngx_pt_json_key(g, "format");
        ngx_pt_json_cstr(g, "uri");

    } else if (len == 9 && ngx_strncmp(kind, "date-time", 9) == 0) {
        ngx_pt_openapi_type(g, "string");
        ngx_pt_json_key(g, "format");
        ngx_pt_json_cstr(g, "date-time");

    } else if (len == 5 && ngx_strncmp(kind, "array", 5) == 0) {
        ngx_pt_openapi_type(g, "array");
        ngx_pt_json_key(g, "items");
        ngx_pt_json_map_open(g);
        ngx_pt_openapi_type(g, "string");
        ngx_pt_json_map_close(g);

    } else if (len == 7 && ngx_strncmp(kind, "objects", 7) == 0) {
        ngx_pt_openapi_type(g, "array");
        ngx_pt_json_key(g, "items");
        ngx_pt_json_map_open(g);
        ngx_pt_openapi_type(g, "object");
        ngx_pt_json_map_close(g);

    } else {
        /* string, integer, number, boolean, object */
        ngx_pt_json_key(g, "type");
        yajl_gen_string(g, (const unsigned char *) kind, len);
    }

    if (nullable) {
        ngx_pt_json_key(g, "nullable");
        ngx_pt_json_bool(g, 1);
    }

    ngx_pt_json_map_close(g);
}


static void
ngx_pt_openapi_type(yajl_gen g, const char *type)
{
    ngx_pt_json_key(g, "type");
    ngx_pt_json_cstr(g, type);
}
