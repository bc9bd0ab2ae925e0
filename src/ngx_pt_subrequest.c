
/*
 * ngx_pullthrough: the transport of upstream exchanges through nginx's
 * own proxy module. Each try is a background subrequest to an internal
 * location nested in the registry location, so that it inherits the
 * operator's proxy_* settings there (timeouts, TLS trust, resolver); this
 * file resolves the URL's host (nginx's resolver, as proxy_pass would),
 * gives the subrequest its target (ngx_pt_peer.c connects to it, on a
 * kept connection when there is one), its URL and headers through
 * variables, and takes the answer back through a header and a body
 * filter, before anything reaches the client, then hands it to the
 * exchange's callbacks.
 */


#include <ngx_pt.h>
#include <ngx_pt_subrequest.h>
#include <ngx_pt_peer.h>

#include <sys/mman.h>


/* the system's trust store (Debian's ca-certificates) */
#define NGX_PT_CA_BUNDLE     "/etc/ssl/certs/ca-certificates.crt"

/* what the proxy reads from the upstream at once, unbuffered */
#define NGX_PT_PROXY_BUFFER  (256 * 1024)


/* a try: the subrequest and the remote's own connect and read timeouts */
typedef struct {
    ngx_pt_peer_target_t        target;      /* first: ngx_pt_peer.c */
    ngx_pt_fetch_t             *fetch;
    ngx_http_request_t         *sr;          /* NULL once it ended */
    ngx_event_t                 idle;
    ngx_event_t                 end;         /* a try that never started */
    ngx_resolver_ctx_t         *resolving;

    /* the URL in the parts the internal location uses */
    ngx_str_t                   scheme;
    ngx_str_t                   host;        /* the Host header */
    ngx_str_t                   server_name; /* SNI, certificate checks */
    ngx_str_t                   uri;
    in_port_t                   port;

    ngx_int_t                   end_rc;
    unsigned                    connecting:1;
    unsigned                    stopped:1;
    unsigned                    in_start:1;  /* the resolver may answer
                                                at once */
} ngx_pt_subrequest_t;


static ngx_int_t ngx_pt_subrequest_start(ngx_pt_fetch_t *f);
static ngx_uint_t ngx_pt_subrequest_running(ngx_pt_fetch_t *f);
static void ngx_pt_subrequest_stop(ngx_pt_fetch_t *f);
static void ngx_pt_subrequest_resume(ngx_pt_fetch_t *f);
static void ngx_pt_subrequest_time_out(ngx_pt_fetch_t *f);
static void ngx_pt_subrequest_orphan(ngx_pt_fetch_t *f);
static ngx_int_t ngx_pt_subrequest_headers(ngx_http_request_t *sr,
    ngx_pt_fetch_t *f);
static ngx_int_t ngx_pt_subrequest_post(ngx_http_request_t *sr, void *data,
    ngx_int_t rc);
static ngx_pt_subrequest_t *ngx_pt_subrequest_get(ngx_http_request_t *r);
static ngx_int_t ngx_pt_subrequest_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_pt_subrequest_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static void ngx_pt_subrequest_idle_arm(ngx_pt_subrequest_t *s);
static void ngx_pt_subrequest_idle(ngx_event_t *ev);
static void ngx_pt_subrequest_connection_time_out(ngx_connection_t *c);
static ngx_int_t ngx_pt_subrequest_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_pt_subrequest_part(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_pt_subrequest_target(ngx_pt_subrequest_t *s);
static ngx_int_t ngx_pt_subrequest_resolve(ngx_pt_subrequest_t *s);
static void ngx_pt_subrequest_resolved(ngx_resolver_ctx_t *ctx);
static ngx_int_t ngx_pt_subrequest_launch(ngx_pt_subrequest_t *s);
static void ngx_pt_subrequest_end_soon(ngx_pt_subrequest_t *s,
    ngx_int_t rc);
static void ngx_pt_subrequest_end(ngx_event_t *ev);


const ngx_pt_transport_t  ngx_pt_subrequest_transport = {
    "subrequest",
    ngx_pt_subrequest_start,
    ngx_pt_subrequest_running,
    ngx_pt_subrequest_stop,
    ngx_pt_subrequest_resume,
    ngx_pt_subrequest_time_out,
    ngx_pt_subrequest_orphan
};


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


static ngx_http_variable_t  ngx_pt_subrequest_vars[] = {

    { ngx_string("pullthrough_upstream_accept"), NULL,
      ngx_pt_subrequest_variable, offsetof(ngx_pt_fetch_t, accept),
      NGX_HTTP_VAR_NOCACHEABLE|NGX_HTTP_VAR_NOHASH, 0 },

    { ngx_string("pullthrough_upstream_authorization"), NULL,
      ngx_pt_subrequest_variable, offsetof(ngx_pt_fetch_t, authorization),
      NGX_HTTP_VAR_NOCACHEABLE|NGX_HTTP_VAR_NOHASH, 0 },

    { ngx_string("pullthrough_upstream_scheme"), NULL,
      ngx_pt_subrequest_part, offsetof(ngx_pt_subrequest_t, scheme),
      NGX_HTTP_VAR_NOCACHEABLE|NGX_HTTP_VAR_NOHASH, 0 },

    { ngx_string("pullthrough_upstream_host"), NULL,
      ngx_pt_subrequest_part, offsetof(ngx_pt_subrequest_t, host),
      NGX_HTTP_VAR_NOCACHEABLE|NGX_HTTP_VAR_NOHASH, 0 },

    { ngx_string("pullthrough_upstream_server_name"), NULL,
      ngx_pt_subrequest_part, offsetof(ngx_pt_subrequest_t, server_name),
      NGX_HTTP_VAR_NOCACHEABLE|NGX_HTTP_VAR_NOHASH, 0 },

    { ngx_string("pullthrough_upstream_uri"), NULL,
      ngx_pt_subrequest_part, offsetof(ngx_pt_subrequest_t, uri),
      NGX_HTTP_VAR_NOCACHEABLE|NGX_HTTP_VAR_NOHASH, 0 },

      ngx_http_null_variable
};


static ngx_str_t  ngx_pt_head_method = ngx_string("HEAD ");
static ngx_str_t  ngx_pt_content_type = ngx_string("Content-Type");


ngx_int_t
ngx_pt_subrequest_add_variables(ngx_conf_t *cf)
{
    return ngx_pt_add_variables(cf, ngx_pt_subrequest_vars);
}


ngx_int_t
ngx_pt_subrequest_init_filters(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_pt_subrequest_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_pt_subrequest_body_filter;

    return NGX_OK;
}


/*
 * The internal location that carries upstream exchanges, nested in the
 * registry location so that it inherits the operator's proxy_* settings
 * there (timeouts, TLS trust, resolver). It is parsed from a memory file,
 * as an "include" would be.
 */

char *
ngx_pt_subrequest_location(ngx_conf_t *cf, ngx_str_t *parent, ngx_str_t *uri,
    ngx_str_t *insecure_uri)
{
    int               fd;
    char             *rv;
    u_char           *p;
    ssize_t           n;
    ngx_str_t         text, name;
    ngx_uint_t        i;
    const char       *tls;
    ngx_file_info_t   fi;

    static const char  *suffixes[] = { ".pullthrough/",
                                       ".pullthrough-insecure/" };

    if (ngx_pt_peer_add_upstream(cf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    text.data = ngx_pnalloc(cf->pool, 4096 + 2 * parent->len);
    if (text.data == NULL) {
        return NGX_CONF_ERROR;
    }

    p = text.data;

    /*
     * Two of them: remotes verify upstream certificates against the
     * system's trust store, but for those with tls_validation false.
     */

    for (i = 0; i < 2; i++) {
        name.len = parent->len + ngx_strlen(suffixes[i]);
        name.data = ngx_pnalloc(cf->pool, name.len);
        if (name.data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memcpy(ngx_cpymem(name.data, parent->data, parent->len),
                   suffixes[i], ngx_strlen(suffixes[i]));

        if (i == 0) {
            *uri = name;

            if (ngx_file_info(NGX_PT_CA_BUNDLE, &fi) != NGX_FILE_ERROR) {
                tls = "    proxy_ssl_verify on;\n"
                      "    proxy_ssl_verify_depth 8;\n"
                      "    proxy_ssl_trusted_certificate " NGX_PT_CA_BUNDLE
                      ";\n";

            } else {
                ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                                   "no \"" NGX_PT_CA_BUNDLE "\": upstream "
                                   "certificates are not verified");
                tls = "    proxy_ssl_verify off;\n";
            }

        } else {
            *insecure_uri = name;
            tls = "    proxy_ssl_verify off;\n";
        }

        p = ngx_sprintf(p,
            "location %V {\n"
            "    internal;\n"
            "    proxy_pass $pullthrough_upstream_scheme://" NGX_PT_PEER_NAME
                    "$pullthrough_upstream_uri;\n"
            "    proxy_set_header Host $pullthrough_upstream_host;\n"
            "    proxy_ssl_name $pullthrough_upstream_server_name;\n"
            "    proxy_ssl_protocols TLSv1.2 TLSv1.3;\n"
            "    proxy_ssl_session_reuse on;\n"
            "    proxy_http_version 1.1;\n"
            "    proxy_buffering off;\n"
            "    proxy_request_buffering off;\n"
            "    proxy_buffer_size %uz;\n"
            "    proxy_buffers 4 %uz;\n"
            "    proxy_busy_buffers_size %uz;\n"
            "    proxy_ignore_client_abort on;\n"
            "    proxy_intercept_errors off;\n"
            "    proxy_redirect off;\n"
            "    proxy_pass_request_headers on;\n"
            "    proxy_pass_request_body off;\n"
            "    proxy_set_header Connection \"\";\n"
            "    proxy_set_header Accept $pullthrough_upstream_accept;\n"
            "    proxy_set_header Authorization "
                    "$pullthrough_upstream_authorization;\n"
            "    proxy_set_header User-Agent \"" NGX_PT_USER_AGENT "\";\n"
            "    proxy_ssl_server_name on;\n"
            "%s"
            "    log_subrequest off;\n"
            "}\n",
            &name, (size_t) NGX_PT_PROXY_BUFFER, (size_t) NGX_PT_PROXY_BUFFER,
            (size_t) NGX_PT_PROXY_BUFFER, tls);
    }

    text.len = p - text.data;

    fd = memfd_create("pullthrough", MFD_CLOEXEC);
    if (fd == -1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "memfd_create() failed");
        return NGX_CONF_ERROR;
    }

    n = write(fd, text.data, text.len);

    if (n != (ssize_t) text.len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno, "write() failed");
        close(fd);
        return NGX_CONF_ERROR;
    }

    name.data = ngx_pnalloc(cf->pool, sizeof("/proc/self/fd/") + NGX_INT_T_LEN);
    if (name.data == NULL) {
        close(fd);
        return NGX_CONF_ERROR;
    }

    name.len = ngx_sprintf(name.data, "/proc/self/fd/%d%Z", fd) - name.data
               - 1;

    rv = ngx_conf_parse(cf, &name);

    close(fd);

    return rv;
}


/*
 * A try of exchange f: its target first (the host resolved, at once when
 * nginx's resolver has it cached or it is an address), then a background
 * subrequest of its request.
 */

static ngx_int_t
ngx_pt_subrequest_start(ngx_pt_fetch_t *f)
{
    ngx_int_t             rc;
    ngx_pt_subrequest_t  *s;

    s = ngx_pcalloc(f->pool, sizeof(ngx_pt_subrequest_t));
    if (s == NULL) {
        return NGX_ERROR;
    }

    s->fetch = f;

    rc = ngx_pt_subrequest_target(s);

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_ERR, f->log, 0,
                      "pullthrough: \"%V\" is not a URL the proxy module "
                      "can fetch", &f->url);
        return NGX_ERROR;
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    f->try = s;

    if (s->target.naddrs) {
        return ngx_pt_subrequest_launch(s);
    }

    return ngx_pt_subrequest_resolve(s);
}


/* the URL's parts, the target's key and name, its address if it is one */

static ngx_int_t
ngx_pt_subrequest_target(ngx_pt_subrequest_t *s)
{
    u_char          *p, *last, *host, *colon;
    size_t           n;
    ngx_url_t        u;
    ngx_uint_t       tls;
    ngx_pt_fetch_t  *f;

    f = s->fetch;

    p = f->url.data;
    last = p + f->url.len;

    if (f->url.len > 8 && ngx_strncasecmp(p, (u_char *) "https://", 8) == 0) {
        tls = 1;
        n = 8;

    } else if (f->url.len > 7
               && ngx_strncasecmp(p, (u_char *) "http://", 7) == 0)
    {
        tls = 0;
        n = 7;

    } else {
        return NGX_DECLINED;
    }

    s->scheme.data = p;
    s->scheme.len = n - 3;

    host = p + n;

    for (p = host; p < last && *p != '/' && *p != '?'; p++) { /* void */ }

    s->host.data = host;
    s->host.len = p - host;

    s->uri.data = p;
    s->uri.len = last - p;

    if (s->host.len == 0 || s->uri.len == 0 || *p != '/') {
        return NGX_DECLINED;
    }

    /* the server name: without the port, an IPv6 address without [] */

    if (host[0] == '[') {
        colon = ngx_strlchr(host, p, ']');
        if (colon == NULL) {
            return NGX_DECLINED;
        }

        s->server_name.data = host + 1;
        s->server_name.len = colon - host - 1;
        colon = (colon + 1 < p && colon[1] == ':') ? colon + 1 : NULL;

    } else {
        colon = ngx_strlchr(host, p, ':');
        s->server_name.data = host;
        s->server_name.len = (colon ? colon : p) - host;
    }

    s->port = tls ? 443 : 80;

    if (colon) {
        n = ngx_atoi(colon + 1, p - colon - 1);
        if (n == (size_t) NGX_ERROR || n < 1 || n > 65535) {
            return NGX_DECLINED;
        }

        s->port = (in_port_t) n;
    }

    if (s->server_name.len == 0) {
        return NGX_DECLINED;
    }

    /* what a kept connection or a TLS session may serve again */

    s->target.key.len = s->scheme.len + 3 + s->server_name.len + 1
                        + NGX_INT_T_LEN + 2;
    s->target.key.data = ngx_pnalloc(f->pool, s->target.key.len);
    s->target.name.len = s->server_name.len + 3 + NGX_INT_T_LEN;
    s->target.name.data = ngx_pnalloc(f->pool, s->target.name.len);

    if (s->target.key.data == NULL || s->target.name.data == NULL) {
        return NGX_ERROR;
    }

    s->target.key.len = ngx_sprintf(s->target.key.data, "%V://%V:%d %c",
                                    &s->scheme, &s->server_name,
                                    (int) s->port,
                                    f->settings->insecure ? 'i' : 'v')
                        - s->target.key.data;

    s->target.name.len = ngx_sprintf(s->target.name.data, "%V:%d",
                                     &s->server_name, (int) s->port)
                         - s->target.name.data;

    /* an address: no resolver needed */

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = s->target.name;
    u.no_resolve = 1;

    if (ngx_parse_url(f->pool, &u) != NGX_OK || u.naddrs == 0) {
        return NGX_OK;
    }

    s->target.addrs = u.addrs;
    s->target.naddrs = u.naddrs;

    return NGX_OK;
}


/* the host by nginx's resolver, the registry location's */

static ngx_int_t
ngx_pt_subrequest_resolve(ngx_pt_subrequest_t *s)
{
    ngx_pt_fetch_t            *f;
    ngx_resolver_ctx_t        *ctx, temp;
    ngx_http_core_loc_conf_t  *clcf;

    f = s->fetch;
    clcf = ngx_http_get_module_loc_conf(f->r, ngx_http_core_module);

    temp.name = s->server_name;

    ctx = ngx_resolve_start(clcf->resolver, &temp);

    if (ctx == NULL) {
        f->try = NULL;
        return NGX_ERROR;
    }

    if (ctx == NGX_NO_RESOLVER) {
        ngx_log_error(NGX_LOG_ERR, f->log, 0,
                      "no resolver defined to resolve %V", &s->server_name);

        ngx_pt_subrequest_end_soon(s, NGX_HTTP_BAD_GATEWAY);
        return NGX_OK;
    }

    ctx->name = s->server_name;
    ctx->handler = ngx_pt_subrequest_resolved;
    ctx->data = s;
    ctx->timeout = clcf->resolver_timeout;

    s->resolving = ctx;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, f->log, 0,
                   "pullthrough subrequest: resolving \"%V\"",
                   &s->server_name);

    s->in_start = 1;

    if (ngx_resolve_name(ctx) != NGX_OK) {
        s->resolving = NULL;
        f->try = NULL;
        return NGX_ERROR;
    }

    s->in_start = 0;

    return NGX_OK;
}


static void
ngx_pt_subrequest_resolved(ngx_resolver_ctx_t *ctx)
{
    ngx_pt_subrequest_t *s = ctx->data;

    ngx_uint_t       i;
    ngx_addr_t      *addr;
    ngx_pt_fetch_t  *f;

    f = s->fetch;
    s->resolving = NULL;

    if (ctx->state) {
        ngx_log_error(NGX_LOG_ERR, f->log, 0,
                      "pullthrough: \"%V\" could not be resolved (%i: %s)",
                      &ctx->name, ctx->state,
                      ngx_resolver_strerror(ctx->state));

        ngx_resolve_name_done(ctx);
        ngx_pt_subrequest_end_soon(s, NGX_HTTP_BAD_GATEWAY);
        return;
    }

    addr = ngx_pcalloc(f->pool, ctx->naddrs * sizeof(ngx_addr_t));
    if (addr == NULL) {
        ngx_resolve_name_done(ctx);
        ngx_pt_subrequest_end_soon(s, NGX_ERROR);
        return;
    }

    for (i = 0; i < ctx->naddrs; i++) {
        addr[i].socklen = ctx->addrs[i].socklen;
        addr[i].sockaddr = ngx_palloc(f->pool, addr[i].socklen);
        addr[i].name.data = ngx_pnalloc(f->pool, NGX_SOCKADDR_STRLEN);

        if (addr[i].sockaddr == NULL || addr[i].name.data == NULL) {
            ngx_resolve_name_done(ctx);
            ngx_pt_subrequest_end_soon(s, NGX_ERROR);
            return;
        }

        ngx_memcpy(addr[i].sockaddr, ctx->addrs[i].sockaddr,
                   addr[i].socklen);
        ngx_inet_set_port(addr[i].sockaddr, s->port);

        addr[i].name.len = ngx_sock_ntop(addr[i].sockaddr, addr[i].socklen,
                                         addr[i].name.data,
                                         NGX_SOCKADDR_STRLEN, 1);
    }

    s->target.addrs = addr;
    s->target.naddrs = ctx->naddrs;

    ngx_resolve_name_done(ctx);

    if (s->stopped) {
        ngx_pt_subrequest_end_soon(s, NGX_OK);
        return;
    }

    if (ngx_pt_subrequest_launch(s) != NGX_OK) {
        ngx_pt_subrequest_end_soon(s, NGX_ERROR);
        return;
    }

    /* the subrequest is posted: whoever started the try runs it, unless
     * the name came later, from the resolver's own event */

    if (!s->in_start) {
        ngx_http_run_posted_requests(f->r->connection);
    }
}


/* the subrequest itself, once its target is known */

static ngx_int_t
ngx_pt_subrequest_launch(ngx_pt_subrequest_t *s)
{
    ngx_int_t                         rc;
    ngx_pt_fetch_t                   *f;
    ngx_http_request_t               *sr;
    ngx_http_post_subrequest_t       *ps;
    ngx_http_pullthrough_loc_conf_t  *plcf;

    f = s->fetch;

    plcf = ngx_http_get_module_loc_conf(f->r, ngx_http_pullthrough_module);

    ps = ngx_palloc(f->r->pool, sizeof(ngx_http_post_subrequest_t));
    if (ps == NULL) {
        f->try = NULL;
        return NGX_ERROR;
    }

    ps->handler = ngx_pt_subrequest_post;
    ps->data = s;

    rc = ngx_http_subrequest(f->r, f->settings->insecure
                                   ? &plcf->fetch_uri_insecure
                                   : &plcf->fetch_uri,
                             NULL, &sr, ps, NGX_HTTP_SUBREQUEST_BACKGROUND);
    if (rc != NGX_OK) {
        f->try = NULL;
        return NGX_ERROR;
    }

    ngx_http_set_ctx(sr, s, ngx_http_pullthrough_module);

    if (ngx_pt_subrequest_headers(sr, f) != NGX_OK) {
        f->try = NULL;
        return NGX_ERROR;
    }

    if (f->head) {
        sr->method = NGX_HTTP_HEAD;
        sr->method_name.data = ngx_pt_head_method.data;
        sr->method_name.len = ngx_pt_head_method.len - 1;
        sr->header_only = 1;
    }

    s->sr = sr;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, f->log, 0,
                   "pullthrough subrequest: %p for \"%V\"", sr, &f->url);

    ngx_pt_subrequest_idle_arm(s);

    return NGX_OK;
}


/* a try that ends before a subrequest: from the event loop, not inside */

static void
ngx_pt_subrequest_end_soon(ngx_pt_subrequest_t *s, ngx_int_t rc)
{
    s->end_rc = rc;
    s->end.handler = ngx_pt_subrequest_end;
    s->end.data = s;
    s->end.log = s->fetch->log;

    ngx_post_event(&s->end, &ngx_posted_events);
}


static void
ngx_pt_subrequest_end(ngx_event_t *ev)
{
    ngx_pt_subrequest_t *s = ev->data;

    ngx_pt_fetch_t      *f;
    ngx_connection_t    *c;

    f = s->fetch;

    if (f->try != s) {
        /* orphaned meanwhile */
        return;
    }

    f->try = NULL;
    c = f->r->connection;

    f->ended(f, f->timed_out ? NGX_HTTP_GATEWAY_TIME_OUT : s->end_rc);

    ngx_http_run_posted_requests(c);
}


/*
 * The request headers the proxy passes: the remote's own (not after a
 * redirect to another host), and never the client's (the subrequest
 * starts with a copy of them).
 */

static ngx_int_t
ngx_pt_subrequest_headers(ngx_http_request_t *sr, ngx_pt_fetch_t *f)
{
    ngx_uint_t        i;
    ngx_array_t      *headers;
    ngx_keyval_t     *kv;
    ngx_table_elt_t  *h;

    if (ngx_list_init(&sr->headers_in.headers, sr->pool, 4,
                      sizeof(ngx_table_elt_t)) != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* a remote's headers are its credentials too: not to another host */
    headers = f->foreign ? NULL : f->settings->headers;

    if (headers == NULL) {
        return NGX_OK;
    }

    kv = headers->elts;

    for (i = 0; i < headers->nelts; i++) {
        h = ngx_list_push(&sr->headers_in.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        h->key = kv[i].key;
        h->value = kv[i].value;
        h->lowcase_key = ngx_pnalloc(sr->pool, h->key.len);
        if (h->lowcase_key == NULL) {
            return NGX_ERROR;
        }

        h->hash = ngx_hash_strlow(h->lowcase_key, h->key.data, h->key.len);
    }

    return NGX_OK;
}


/* the subrequest is finalized: the try has ended */

static ngx_int_t
ngx_pt_subrequest_post(ngx_http_request_t *sr, void *data, ngx_int_t rc)
{
    ngx_pt_subrequest_t *s = data;

    ngx_pt_fetch_t  *f;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, sr->connection->log, 0,
                   "pullthrough subrequest: %p done: %i, current %d",
                   sr, rc, s->sr == sr);

    if (s->sr != sr) {
        /* orphaned: its exchange went with its request */
        return NGX_OK;
    }

    f = s->fetch;

    s->sr = NULL;
    f->try = NULL;

    if (s->idle.timer_set) {
        ngx_del_timer(&s->idle);
    }

    /*
     * NGX_OK whatever happened: the upstream's error is the exchange's
     * result, not a reason to end the client's request.
     */

    f->in_post = 1;
    f->ended(f, rc);

    return NGX_OK;
}


static ngx_uint_t
ngx_pt_subrequest_running(ngx_pt_fetch_t *f)
{
    return f->try != NULL;
}


/*
 * Ends a try early, without the NGX_ERROR of a body filter, which would
 * mark the client's connection as failed: the upstream sees its response
 * as complete, and the connection is not kept.
 */

static void
ngx_pt_subrequest_stop(ngx_pt_fetch_t *f)
{
    ngx_pt_subrequest_t  *s = f->try;

    if (s && s->sr == NULL) {
        /* still resolving: it ends as soon as the name is known */
        s->stopped = 1;
        return;
    }

    if (s && s->sr->upstream) {
        s->sr->upstream->length = 0;
        s->sr->upstream->keepalive = 0;
    }
}


/* the exchange has room again: the upstream may read on */

static void
ngx_pt_subrequest_resume(ngx_pt_fetch_t *f)
{
    ngx_pt_subrequest_t  *s = f->try;

    if (s && s->sr && ngx_http_post_request(s->sr, NULL) == NGX_OK) {
        ngx_http_run_posted_requests(s->sr->connection);
    }
}


/* total_timeout: the upstream connection times out now */

static void
ngx_pt_subrequest_time_out(ngx_pt_fetch_t *f)
{
    ngx_pt_subrequest_t  *s = f->try;

    if (s && s->resolving) {
        /* the name never came: the try ends now, as a timeout */
        ngx_resolve_name_done(s->resolving);
        s->resolving = NULL;
        ngx_pt_subrequest_end_soon(s, NGX_HTTP_GATEWAY_TIME_OUT);
        return;
    }

    if (s && s->sr && s->sr->upstream && s->sr->upstream->peer.connection) {
        ngx_pt_subrequest_connection_time_out(
                                          s->sr->upstream->peer.connection);
    }
}


/* the request that carried the subrequest is gone, and the subrequest */

static void
ngx_pt_subrequest_orphan(ngx_pt_fetch_t *f)
{
    ngx_pt_subrequest_t  *s = f->try;

    if (s == NULL) {
        return;
    }

    if (s->idle.timer_set) {
        ngx_del_timer(&s->idle);
    }

    if (s->resolving) {
        ngx_resolve_name_done(s->resolving);
        s->resolving = NULL;
    }

    if (s->end.posted) {
        ngx_delete_posted_event(&s->end);
    }

    s->sr = NULL;
    f->try = NULL;
}


/* the try of a subrequest of this module, if r is one and still current */

static ngx_pt_subrequest_t *
ngx_pt_subrequest_get(ngx_http_request_t *r)
{
    ngx_pt_subrequest_t  *s;

    if (r == r->main) {
        return NULL;
    }

    s = ngx_http_get_module_ctx(r, ngx_http_pullthrough_module);

    return (s && s->sr == r) ? s : NULL;
}


/* what the upstream answered, into the exchange */

static ngx_int_t
ngx_pt_subrequest_header_filter(ngx_http_request_t *r)
{
    ngx_uint_t            i;
    ngx_pt_fetch_t       *f;
    ngx_list_part_t      *part;
    ngx_table_elt_t      *h;
    ngx_pt_subrequest_t  *s;

    s = ngx_pt_subrequest_get(r);
    if (s == NULL) {
        return ngx_http_next_header_filter(r);
    }

    f = s->fetch;

    f->status = r->headers_out.status;
    f->length = r->headers_out.content_length_n;
    f->reused = (r->upstream && r->upstream->peer.cached);

    ngx_pt_subrequest_idle_arm(s);

    if (r->headers_out.content_type.len
        && ngx_pt_exchange_header(f, &ngx_pt_content_type,
                                  &r->headers_out.content_type)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* nginx keeps a relative Location in the list only */

    h = r->headers_out.location;

    if (h && ngx_pt_exchange_header(f, &h->key, &h->value) != NGX_OK) {
        return NGX_ERROR;
    }

    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash && ngx_pt_exchange_header(f, &h[i].key, &h[i].value)
                         != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return f->got_header(f);
}


static ngx_int_t
ngx_pt_subrequest_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_pt_subrequest_t  *s;

    s = ngx_pt_subrequest_get(r);
    if (s == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    if (in && s->fetch->settings->read_timeout) {
        ngx_pt_subrequest_idle_arm(s);
    }

    s->fetch->got_body(s->fetch, in);

    return NGX_OK;
}


/*
 * The remote's connect_timeout (or sock_connect_timeout) and
 * sock_read_timeout, per subrequest: not connected in time, or no byte
 * from the upstream for that long. The upstream then times out (504), and
 * max_retries may try again.
 */

static void
ngx_pt_subrequest_idle_arm(ngx_pt_subrequest_t *s)
{
    ngx_msec_t          t;
    ngx_pt_settings_t  *st;

    st = s->fetch->settings;

    if (st->connect_timeout
        && !(s->sr && s->sr->upstream && s->sr->upstream->request_sent))
    {
        t = st->connect_timeout;
        s->connecting = 1;

    } else {
        t = st->read_timeout;
        s->connecting = 0;
    }

    if (t == 0) {
        if (s->idle.timer_set) {
            ngx_del_timer(&s->idle);
        }

        return;
    }

    s->idle.handler = ngx_pt_subrequest_idle;
    s->idle.data = s;
    s->idle.log = s->fetch->log;
    s->idle.cancelable = 1;

    ngx_add_timer(&s->idle, t);
}


static void
ngx_pt_subrequest_idle(ngx_event_t *ev)
{
    ngx_pt_subrequest_t *s = ev->data;

    ngx_http_upstream_t  *u;

    if (s->sr == NULL || s->sr->upstream == NULL
        || s->sr->upstream->peer.connection == NULL)
    {
        return;
    }

    u = s->sr->upstream;

    if (u->request_sent && s->connecting) {
        /* connected in time: from now on, reads are watched */

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, s->fetch->log, 0,
                       "pullthrough subrequest: %p connected in time",
                       s->sr);

        ngx_pt_subrequest_idle_arm(s);
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, s->fetch->log, 0,
                   "pullthrough subrequest: %p %s timer fired", s->sr,
                   u->request_sent ? "read" : "connect");

    ngx_log_error(NGX_LOG_ERR, s->fetch->log, 0,
                  "pullthrough: \"%V\": %s the remote's %s", &s->fetch->url,
                  u->request_sent ? "no data within" : "not connected within",
                  u->request_sent ? "sock_read_timeout" : "connect_timeout");

    ngx_pt_subrequest_connection_time_out(u->peer.connection);
}


/* an upstream connection times out now, as nginx's own timers do it */

static void
ngx_pt_subrequest_connection_time_out(ngx_connection_t *c)
{
    c->read->timedout = 1;
    c->write->timedout = 1;

    ngx_post_event(c->read, &ngx_posted_events);
    ngx_post_event(c->write, &ngx_posted_events);
}


/* a part of the try's URL, for the internal location's proxy_pass */

static ngx_int_t
ngx_pt_subrequest_part(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    ngx_str_t            *str;
    ngx_pt_subrequest_t  *s;

    s = ngx_pt_subrequest_get(r);

    if (s == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    str = (ngx_str_t *) ((u_char *) s + data);

    v->data = str->data;
    v->len = str->len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_pt_subrequest_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t            *str;
    ngx_pt_subrequest_t  *s;

    s = ngx_pt_subrequest_get(r);

    if (s == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    str = (ngx_str_t *) ((u_char *) s->fetch + data);

    v->data = str->data;
    v->len = str->len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}
