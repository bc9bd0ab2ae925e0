
/*
 * ngx_pullthrough: who may use the admin API from a web browser. Its
 * clients are tools (pulp-cli, curl, httpie, Ansible), and a browser must
 * not be made to act for a web page: a write must say it carries JSON
 * (an HTML form cannot, and a script of another origin cannot without a
 * CORS preflight, which is never granted), a request naming a host this
 * server does not answer for (DNS rebinding) is refused, and so is one
 * whose Origin is another site. Hosts answered for: IP addresses,
 * "localhost", and the server's server_name entries, copied when the
 * configuration is read (nginx frees its own list after that).
 */


#include <ngx_pt.h>
#include <ngx_pt_admin.h>


static ngx_int_t ngx_pt_admin_host_ok(ngx_http_request_t *r,
    ngx_str_t *host);
static ngx_table_elt_t *ngx_pt_admin_origin(ngx_http_request_t *r);
static ngx_int_t ngx_pt_admin_origin_ok(ngx_http_request_t *r,
    ngx_table_elt_t *origin);
static ngx_int_t ngx_pt_admin_json_ok(ngx_http_request_t *r);


/* at configuration: the names of the admin location's server */

ngx_int_t
ngx_pt_admin_hosts(ngx_conf_t *cf, ngx_http_pullthrough_loc_conf_t *plcf)
{
    ngx_uint_t                 i;
    ngx_http_server_name_t    *sn, *copy;
    ngx_http_core_srv_conf_t  *cscf;

    cscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_core_module);

    plcf->admin_hosts = ngx_array_create(cf->pool,
                                         cscf->server_names.nelts + 1,
                                         sizeof(ngx_http_server_name_t));
    if (plcf->admin_hosts == NULL) {
        return NGX_ERROR;
    }

    sn = cscf->server_names.elts;

    for (i = 0; i < cscf->server_names.nelts; i++) {
        copy = ngx_array_push(plcf->admin_hosts);
        if (copy == NULL) {
            return NGX_ERROR;
        }

        *copy = sn[i];

        copy->name.data = ngx_pstrdup(cf->pool, &sn[i].name);
        if (copy->name.data == NULL && sn[i].name.len) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* NGX_OK, or NGX_DECLINED with the refusal in ctx */

ngx_int_t
ngx_pt_admin_guard(ngx_pt_admin_t *ctx)
{
    ngx_str_t            host, none = ngx_null_string;
    ngx_table_elt_t     *origin;
    ngx_http_request_t  *r;

    r = ctx->r;
    host = r->headers_in.server;

    if (host.len && ngx_pt_admin_host_ok(r, &host) != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, ctx->log, 0,
                      "pullthrough: admin request for host \"%V\" refused: "
                      "not a server_name of this server", &host);
        (void) ngx_pt_admin_detail(ctx, NGX_HTTP_FORBIDDEN,
                                   "Host \"%V\" is not served here (add it "
                                   "to server_name).", &host);
        return NGX_DECLINED;
    }

    origin = ngx_pt_admin_origin(r);

    if (origin && ngx_pt_admin_origin_ok(r, origin) != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, ctx->log, 0,
                      "pullthrough: admin request from origin \"%V\" "
                      "refused", &origin->value);
        (void) ngx_pt_admin_detail(ctx, NGX_HTTP_FORBIDDEN,
                                   "Requests from other origins are not "
                                   "allowed.");
        return NGX_DECLINED;
    }

    if ((r->method & (NGX_HTTP_POST|NGX_HTTP_PUT|NGX_HTTP_PATCH))
        && ngx_pt_admin_json_ok(r) != NGX_OK)
    {
        (void) ngx_pt_admin_detail(ctx, NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                   "Unsupported media type \"%V\" in "
                                   "request.",
                                   r->headers_in.content_type
                                   ? &r->headers_in.content_type->value
                                   : &none);
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* an address, localhost, or one of the server's names */

static ngx_int_t
ngx_pt_admin_host_ok(ngx_http_request_t *r, ngx_str_t *host)
{
    size_t                            n;
    ngx_uint_t                        i;
    ngx_http_server_name_t           *sn;
    ngx_http_pullthrough_loc_conf_t  *plcf;

    if (host->data[0] == '['
        || ngx_inet_addr(host->data, host->len) != INADDR_NONE
        || (host->len == 9 && ngx_strncmp(host->data, "localhost", 9) == 0))
    {
        return NGX_OK;
    }

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_pullthrough_module);

    if (plcf->admin_hosts == NULL) {
        return NGX_DECLINED;
    }

    sn = plcf->admin_hosts->elts;

    for (i = 0; i < plcf->admin_hosts->nelts; i++) {

#if (NGX_PCRE)
        if (sn[i].regex) {
            if (ngx_regex_exec(sn[i].regex->regex, host, NULL, 0) >= 0) {
                return NGX_OK;
            }

            continue;
        }
#endif

        n = sn[i].name.len;

        if (n == 0) {
            continue;
        }

        if (n == host->len
            && ngx_strncasecmp(sn[i].name.data, host->data, n) == 0)
        {
            return NGX_OK;
        }

        /* "*.example.com" and ".example.com" */

        if (sn[i].name.data[0] == '*' && n > 2 && host->len > n - 1
            && ngx_strncasecmp(sn[i].name.data + 1,
                               host->data + host->len - (n - 1), n - 1) == 0)
        {
            return NGX_OK;
        }

        if (sn[i].name.data[0] == '.'
            && ((host->len == n - 1
                 && ngx_strncasecmp(sn[i].name.data + 1, host->data, n - 1)
                    == 0)
                || (host->len > n
                    && ngx_strncasecmp(sn[i].name.data,
                                       host->data + host->len - n, n) == 0)))
        {
            return NGX_OK;
        }

        /* "cache.example.*" */

        if (sn[i].name.data[n - 1] == '*' && host->len > n - 1
            && ngx_strncasecmp(sn[i].name.data, host->data, n - 1) == 0)
        {
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/* the Origin header browsers send (tools send none) */

static ngx_table_elt_t *
ngx_pt_admin_origin(ngx_http_request_t *r)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == 6
            && ngx_strncasecmp(h[i].key.data, (u_char *) "origin", 6) == 0)
        {
            return &h[i];
        }
    }
}


/* the very host the request names, scheme aside */

static ngx_int_t
ngx_pt_admin_origin_ok(ngx_http_request_t *r, ngx_table_elt_t *origin)
{
    u_char           *p, *last;
    ngx_table_elt_t  *host;

    host = r->headers_in.host;
    last = origin->value.data + origin->value.len;

    p = ngx_strlcasestrn(origin->value.data, last, (u_char *) "://", 3 - 1);
    if (p == NULL || host == NULL) {
        /* "null" (a sandboxed or file: page), or nothing to compare */
        return NGX_DECLINED;
    }

    p += 3;

    if ((size_t) (last - p) == host->value.len
        && ngx_strncasecmp(p, host->value.data, host->value.len) == 0)
    {
        return NGX_OK;
    }

    return NGX_DECLINED;
}


/* application/json, with parameters or not */

static ngx_int_t
ngx_pt_admin_json_ok(ngx_http_request_t *r)
{
    size_t      n;
    ngx_str_t  *ct;

    if (r->headers_in.content_type == NULL) {
        return NGX_DECLINED;
    }

    ct = &r->headers_in.content_type->value;
    n = sizeof("application/json") - 1;

    if (ct->len < n
        || ngx_strncasecmp(ct->data, (u_char *) "application/json", n) != 0)
    {
        return NGX_DECLINED;
    }

    if (ct->len > n && ct->data[n] != ';' && ct->data[n] != ' ') {
        return NGX_DECLINED;
    }

    return NGX_OK;
}
