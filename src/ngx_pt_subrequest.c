
/*
 * ngx_pullthrough: the transport of upstream exchanges through nginx's
 * own proxy module. Each try is a background subrequest to an internal
 * location nested in the registry location, so that it inherits the
 * operator's proxy_* settings there (timeouts, TLS trust, resolver); this
 * file gives it the URL and headers through variables and takes the
 * answer back through a header and a body filter, before anything reaches
 * the client, then hands it to the exchange's callbacks.
 */


#include <ngx_pt.h>
#include <ngx_pt_subrequest.h>

#include <sys/mman.h>


/* the system's trust store (Debian's ca-certificates) */
#define NGX_PT_CA_BUNDLE     "/etc/ssl/certs/ca-certificates.crt"

/* what the proxy reads from the upstream at once, unbuffered */
#define NGX_PT_PROXY_BUFFER  (256 * 1024)


/* a try: the subrequest and the remote's own connect and read timeouts */
typedef struct {
    ngx_pt_fetch_t             *fetch;
    ngx_http_request_t         *sr;          /* NULL once it ended */
    ngx_event_t                 idle;
    unsigned                    connecting:1;
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

    { ngx_string("pullthrough_upstream_url"), NULL,
      ngx_pt_subrequest_variable, offsetof(ngx_pt_fetch_t, url),
      NGX_HTTP_VAR_NOCACHEABLE|NGX_HTTP_VAR_NOHASH, 0 },

    { ngx_string("pullthrough_upstream_accept"), NULL,
      ngx_pt_subrequest_variable, offsetof(ngx_pt_fetch_t, accept),
      NGX_HTTP_VAR_NOCACHEABLE|NGX_HTTP_VAR_NOHASH, 0 },

    { ngx_string("pullthrough_upstream_authorization"), NULL,
      ngx_pt_subrequest_variable, offsetof(ngx_pt_fetch_t, authorization),
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
            "    proxy_pass $pullthrough_upstream_url;\n"
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


/* a try of exchange f: a background subrequest of its request */

static ngx_int_t
ngx_pt_subrequest_start(ngx_pt_fetch_t *f)
{
    ngx_int_t                         rc;
    ngx_http_request_t               *sr;
    ngx_pt_subrequest_t              *s;
    ngx_http_post_subrequest_t       *ps;
    ngx_http_pullthrough_loc_conf_t  *plcf;

    plcf = ngx_http_get_module_loc_conf(f->r, ngx_http_pullthrough_module);

    s = ngx_pcalloc(f->pool, sizeof(ngx_pt_subrequest_t));
    ps = ngx_palloc(f->r->pool, sizeof(ngx_http_post_subrequest_t));

    if (s == NULL || ps == NULL) {
        return NGX_ERROR;
    }

    s->fetch = f;

    ps->handler = ngx_pt_subrequest_post;
    ps->data = s;

    rc = ngx_http_subrequest(f->r, f->settings->insecure
                                   ? &plcf->fetch_uri_insecure
                                   : &plcf->fetch_uri,
                             NULL, &sr, ps, NGX_HTTP_SUBREQUEST_BACKGROUND);
    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_set_ctx(sr, s, ngx_http_pullthrough_module);

    if (ngx_pt_subrequest_headers(sr, f) != NGX_OK) {
        return NGX_ERROR;
    }

    if (f->head) {
        sr->method = NGX_HTTP_HEAD;
        sr->method_name.data = ngx_pt_head_method.data;
        sr->method_name.len = ngx_pt_head_method.len - 1;
        sr->header_only = 1;
    }

    s->sr = sr;
    f->try = s;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, f->log, 0,
                   "pullthrough subrequest: %p for \"%V\"", sr, &f->url);

    ngx_pt_subrequest_idle_arm(s);

    return NGX_OK;
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

    if (s && ngx_http_post_request(s->sr, NULL) == NGX_OK) {
        ngx_http_run_posted_requests(s->sr->connection);
    }
}


/* total_timeout: the upstream connection times out now */

static void
ngx_pt_subrequest_time_out(ngx_pt_fetch_t *f)
{
    ngx_pt_subrequest_t  *s = f->try;

    if (s && s->sr->upstream && s->sr->upstream->peer.connection) {
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
