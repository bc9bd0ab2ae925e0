
/*
 * ngx_pullthrough: the registry API on /v2/ (OCI distribution, pull side).
 */


#include <ngx_pt.h>


static ngx_int_t ngx_pt_registry_send(ngx_http_request_t *r,
    ngx_uint_t status, ngx_str_t *body);
static ngx_int_t ngx_pt_registry_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, const char *message);


ngx_int_t
ngx_http_pullthrough_registry_handler(ngx_http_request_t *r)
{
    ngx_str_t  body;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_pt_registry_error(r, NGX_HTTP_NOT_ALLOWED, "UNSUPPORTED",
                                     "The operation is unsupported: this "
                                     "registry is a read-only cache.");
    }

    if (r->uri.len == sizeof("/v2/") - 1
        && ngx_strncmp(r->uri.data, "/v2/", r->uri.len) == 0)
    {
        ngx_str_set(&body, "{}");
        return ngx_pt_registry_send(r, NGX_HTTP_OK, &body);
    }

    return ngx_pt_registry_error(r, NGX_HTTP_NOT_FOUND, "NAME_UNKNOWN",
                                 "repository name not known to registry");
}


static ngx_int_t
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

    return ngx_pt_registry_send(r, status, &body);
}


static ngx_int_t
ngx_pt_registry_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *body)
{
    ngx_int_t         rc;
    ngx_buf_t        *b;
    ngx_chain_t       out;
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Docker-Distribution-API-Version");
    ngx_str_set(&h->value, "registry/2.0");

    r->headers_out.status = status;
    r->headers_out.content_length_n = body->len;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = body->data;
    b->last = body->data + body->len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}
