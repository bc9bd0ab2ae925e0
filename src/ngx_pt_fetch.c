
/*
 * ngx_pullthrough: exchanges with upstream registries. Each one is a
 * background subrequest to an internal location nested in the registry
 * location, where nginx's proxy module does the HTTP work; this file feeds
 * it the URL and headers through variables and takes the response back
 * through a header and a body filter, before anything reaches the client.
 * Remotes the proxy module cannot reach (a forward proxy, their own CA, a
 * client certificate) go through libcurl instead (ngx_pt_curl.c), which
 * hands its answers to the same code.
 */


#include <ngx_pt.h>

#include <sys/mman.h>


static ngx_int_t ngx_pt_fetch_post(ngx_http_request_t *sr, void *data,
    ngx_int_t rc);
static void ngx_pt_fetch_finish(ngx_pt_fetch_t *f, ngx_int_t rc,
    ngx_uint_t subrequest);
static void ngx_pt_fetch_cleanup(void *data);
static ngx_int_t ngx_pt_fetch_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_pt_fetch_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_table_elt_t *ngx_pt_fetch_header(ngx_http_request_t *r,
    const char *name);
static void ngx_pt_fetch_stop(ngx_pt_fetch_t *f);
static ngx_int_t ngx_pt_fetch_retry(ngx_pt_fetch_t *f, ngx_int_t rc);
static void ngx_pt_fetch_retry_handler(ngx_event_t *ev);
static void ngx_pt_fetch_deadline(ngx_event_t *ev);
static void ngx_pt_fetch_time_out(ngx_connection_t *c);
static void ngx_pt_fetch_idle_arm(ngx_pt_fetch_t *f);
static void ngx_pt_fetch_idle(ngx_event_t *ev);
static void ngx_pt_fetch_rate_handler(ngx_event_t *ev);
static void ngx_pt_fetch_uncount(ngx_pt_fetch_t *f);
static ngx_int_t ngx_pt_fetch_headers(ngx_http_request_t *sr,
    ngx_pt_fetch_t *f);
static ngx_int_t ngx_pt_fetch_redirect(ngx_pt_fetch_t *f);
static ngx_int_t ngx_pt_fetch_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_pt_cache_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


/* the system's trust store (Debian's ca-certificates) */
#define NGX_PT_CA_BUNDLE     "/etc/ssl/certs/ca-certificates.crt"

/* what the proxy reads from the upstream at once, unbuffered */
#define NGX_PT_PROXY_BUFFER  (256 * 1024)


/* the exchange whose subrequest is being finalized, if any */
ngx_pt_fetch_t  *ngx_pt_fetch_in_post;


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


static ngx_http_variable_t  ngx_pt_fetch_vars[] = {

    { ngx_string("pullthrough_upstream_url"), NULL, ngx_pt_fetch_variable,
      offsetof(ngx_pt_fetch_t, url),
      NGX_HTTP_VAR_NOCACHEABLE|NGX_HTTP_VAR_NOHASH, 0 },

    { ngx_string("pullthrough_upstream_accept"), NULL, ngx_pt_fetch_variable,
      offsetof(ngx_pt_fetch_t, accept),
      NGX_HTTP_VAR_NOCACHEABLE|NGX_HTTP_VAR_NOHASH, 0 },

    { ngx_string("pullthrough_upstream_authorization"), NULL,
      ngx_pt_fetch_variable, offsetof(ngx_pt_fetch_t, authorization),
      NGX_HTTP_VAR_NOCACHEABLE|NGX_HTTP_VAR_NOHASH, 0 },

    { ngx_string("pullthrough_cache_status"), NULL,
      ngx_pt_cache_status_variable, 0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_str_t  ngx_pt_head_method = ngx_string("HEAD ");

static ngx_str_t  ngx_pt_cache_statuses[] = {
    ngx_string("-"),
    ngx_string("HIT"),
    ngx_string("MISS"),
    ngx_string("JOIN"),
    ngx_string("REVALIDATED"),
    ngx_string("ERROR")
};


ngx_int_t
ngx_pt_fetch_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_pt_fetch_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


ngx_int_t
ngx_pt_fetch_init_filters(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_pt_fetch_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_pt_fetch_body_filter;

    return NGX_OK;
}


/*
 * The internal location that carries upstream exchanges, nested in the
 * registry location so that it inherits the operator's proxy_* settings
 * there (timeouts, TLS trust, resolver). It is parsed from a memory file,
 * as an "include" would be.
 */

char *
ngx_pt_fetch_location(ngx_conf_t *cf, ngx_str_t *parent, ngx_str_t *uri,
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
            "    proxy_set_header User-Agent \"ngx_pullthrough\";\n"
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


/* starts (or restarts, for a redirect) the subrequest of an exchange */

ngx_int_t
ngx_pt_fetch_start(ngx_pt_fetch_t *f)
{
    ngx_int_t                          rc;
    ngx_msec_t                         delay;
    ngx_http_request_t                *sr;
    ngx_pool_cleanup_t                *cln;
    ngx_http_post_subrequest_t        *ps;
    ngx_http_pullthrough_loc_conf_t   *plcf;

    if (f->r == NULL) {
        return NGX_ERROR;
    }

    /*
     * The remote's download_concurrency: past it, exchanges wait for one
     * to end (polling the shared count), they are not refused.
     */

    if (f->concurrency && !f->counted) {
        if (!ngx_pt_auth_conc_acquire(&f->remote, f->concurrency)) {
            f->rate.handler = ngx_pt_fetch_rate_handler;
            f->rate.data = f;
            f->rate.log = f->log;
            f->rate.cancelable = 1;

            ngx_add_timer(&f->rate, 20);

            return NGX_OK;
        }

        f->counted = 1;
    }

    /* the remote's rate_limit: every upstream request waits its turn */

    if (f->rate_limit && !f->rate_ok) {
        delay = ngx_pt_auth_rate_take(&f->remote, f->rate_limit);

        if (delay) {
            f->rate.handler = ngx_pt_fetch_rate_handler;
            f->rate.data = f;
            f->rate.log = f->log;
            f->rate.cancelable = 1;

            ngx_add_timer(&f->rate, delay);

            return NGX_OK;
        }
    }

    f->rate_ok = 0;

    plcf = ngx_http_get_module_loc_conf(f->r, ngx_http_pullthrough_module);

    if (f->cln == NULL) {
        cln = ngx_pool_cleanup_add(f->r->pool, 0);
        if (cln == NULL) {
            return NGX_ERROR;
        }

        cln->handler = ngx_pt_fetch_cleanup;
        cln->data = f;
        f->cln = cln;
    }

    f->status = 0;
    f->length = -1;
    f->header = 0;
    f->too_big = 0;
    f->stopped = 0;
    ngx_str_null(&f->content_type);
    ngx_str_null(&f->digest);
    ngx_str_null(&f->location);
    ngx_str_null(&f->retry_after);
    ngx_str_null(&f->www_authenticate);

    if (f->body) {
        f->body->pos = f->body->start;
        f->body->last = f->body->start;
    }

    /* the remote's total_timeout bounds the whole exchange, all tries */

    if (f->total_timeout && !f->deadline.timer_set && !f->timed_out) {
        f->deadline.handler = ngx_pt_fetch_deadline;
        f->deadline.data = f;
        f->deadline.log = f->log;
        f->deadline.cancelable = 1;

        ngx_add_timer(&f->deadline, f->total_timeout);
    }

    if (f->link) {
        /* connect and read timeouts are libcurl's there */
        return ngx_pt_curl_start(f);
    }

    ps = ngx_palloc(f->r->pool, sizeof(ngx_http_post_subrequest_t));
    if (ps == NULL) {
        return NGX_ERROR;
    }

    ps->handler = ngx_pt_fetch_post;
    ps->data = f;

    rc = ngx_http_subrequest(f->r, f->insecure ? &plcf->fetch_uri_insecure
                                                : &plcf->fetch_uri,
                             NULL, &sr, ps, NGX_HTTP_SUBREQUEST_BACKGROUND);
    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_set_ctx(sr, f, ngx_http_pullthrough_module);

    /*
     * The request headers the proxy passes: the remote's own, and never
     * the client's (the subrequest starts with a copy of them).
     */

    if (ngx_pt_fetch_headers(sr, f) != NGX_OK) {
        return NGX_ERROR;
    }

    if (f->head) {
        sr->method = NGX_HTTP_HEAD;
        sr->method_name.data = ngx_pt_head_method.data;
        sr->method_name.len = ngx_pt_head_method.len - 1;
        sr->header_only = 1;
    }

    f->sr = sr;

    ngx_pt_fetch_idle_arm(f);

    return NGX_OK;
}


static ngx_int_t
ngx_pt_fetch_post(ngx_http_request_t *sr, void *data, ngx_int_t rc)
{
    ngx_pt_fetch_t *f = data;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, sr->connection->log, 0,
                   "pullthrough fetch done: %i, status %ui, current %d",
                   rc, f->status, f->sr == sr);

    if (f->sr != sr) {
        return NGX_OK;
    }

    f->sr = NULL;

    if (f->idle.timer_set) {
        ngx_del_timer(&f->idle);
    }

    /*
     * NGX_OK whatever happened: the upstream's error is the exchange's
     * result, not a reason to end the client's request.
     */

    ngx_pt_fetch_finish(f, rc, 1);

    return NGX_OK;
}


/* the libcurl transport's end of a try */

void
ngx_pt_fetch_end(ngx_pt_fetch_t *f, ngx_int_t rc)
{
    ngx_pt_fetch_finish(f, rc, 0);
}


/*
 * A try has ended: challenges, retries and redirects start another one,
 * anything else is the exchange's result.
 */

static void
ngx_pt_fetch_finish(ngx_pt_fetch_t *f, ngx_int_t rc, ngx_uint_t subrequest)
{
    /*
     * A Basic challenge gets the remote's credentials, once, unless they
     * were sent up front (then they were refused)
     */

    if (f->header && f->status == NGX_HTTP_UNAUTHORIZED && f->basic.len
        && !f->auth_tried && f->authorization.data != f->basic.data
        && f->www_authenticate.len >= 5
        && ngx_strncasecmp(f->www_authenticate.data, (u_char *) "Basic", 5)
           == 0)
    {
        f->auth_tried = 1;
        f->authorization = f->basic;
        ngx_pt_auth_basic_seen(f);

        if (ngx_pt_fetch_start(f) == NGX_OK) {
            return;
        }
    }

    /* a Bearer challenge: a token first (maybe asynchronously), once */

    if (f->header && f->status == NGX_HTTP_UNAUTHORIZED && !f->auth_tried
        && ngx_pt_auth_bearer(f) == NGX_OK)
    {
        return;
    }

    if (f->timed_out && !(f->header && f->status == NGX_HTTP_OK
                          && rc < NGX_HTTP_SPECIAL_RESPONSE
                          && !f->stopped))
    {
        /* what the upstream had said does not count: it was too late */
        f->header = 0;
        rc = NGX_HTTP_GATEWAY_TIME_OUT;
    }

    /* transient failures, before anything reached a client: again */

    if (ngx_pt_fetch_retry(f, rc) == NGX_OK) {
        return;
    }

    if (f->header && rc < NGX_HTTP_SPECIAL_RESPONSE
        && (f->status == NGX_HTTP_MOVED_PERMANENTLY
            || f->status == NGX_HTTP_MOVED_TEMPORARILY
            || f->status == NGX_HTTP_SEE_OTHER
            || f->status == NGX_HTTP_TEMPORARY_REDIRECT
            || f->status == NGX_HTTP_PERMANENT_REDIRECT)
        && f->location.len)
    {
        rc = ngx_pt_fetch_redirect(f);

        if (rc == NGX_OK) {
            return;
        }

        rc = NGX_HTTP_BAD_GATEWAY;
    }

    /* the exchange is over: the request's end no longer concerns it */
    ngx_pt_fetch_detach(f);

    /* done() may free f (a fill's last reference): f is not used after */

    f->rc = rc;

    if (subrequest) {
        ngx_pt_fetch_in_post = f;
    }

    f->done(f, rc);

    ngx_pt_fetch_in_post = NULL;
}


/*
 * Follows a redirect (blob storage on a CDN): credentials are not sent to
 * another host, the Location is taken as is.
 */

static ngx_int_t
ngx_pt_fetch_redirect(ngx_pt_fetch_t *f)
{
    u_char     *p, *host_end, *url_host;
    size_t      len;
    ngx_str_t   url;

    if (++f->redirects > 5) {
        ngx_log_error(NGX_LOG_ERR, f->log, 0,
                      "pullthrough: too many redirects from upstream");
        return NGX_ERROR;
    }

    url = f->location;

    if (url.data[0] == '/') {
        /* relative: on the host of the current URL */
        p = ngx_pt_strfind(f->url.data, f->url.data + f->url.len,
                        (u_char *) "://", 3, 0);
        if (p == NULL) {
            return NGX_ERROR;
        }

        host_end = ngx_strlchr(p + 3, f->url.data + f->url.len, '/');
        if (host_end == NULL) {
            host_end = f->url.data + f->url.len;
        }

        len = host_end - f->url.data;

        url.data = ngx_pnalloc(f->pool, len + f->location.len);
        if (url.data == NULL) {
            return NGX_ERROR;
        }

        url.len = ngx_cpymem(ngx_cpymem(url.data, f->url.data, len),
                             f->location.data, f->location.len)
                  - url.data;

    } else if (ngx_strncasecmp(url.data, (u_char *) "http://", 7) != 0
               && ngx_strncasecmp(url.data, (u_char *) "https://", 8) != 0)
    {
        ngx_log_error(NGX_LOG_ERR, f->log, 0,
                      "pullthrough: upstream redirected to \"%V\"",
                      &f->location);
        return NGX_ERROR;

    } else {
        /* copy: the header lives in the finished subrequest's pool */
        url.data = ngx_pnalloc(f->pool, f->location.len);
        if (url.data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(url.data, f->location.data, f->location.len);
    }

    /* the same host keeps the credentials, another host never gets them */

    url_host = ngx_pt_strfind(url.data, url.data + url.len,
                           (u_char *) "://", 3, 0);
    p = ngx_pt_strfind(f->url.data, f->url.data + f->url.len,
                    (u_char *) "://", 3, 0);

    if (url_host == NULL || p == NULL) {
        return NGX_ERROR;
    }

    url_host += 3;
    p += 3;

    host_end = url_host;
    while (host_end < url.data + url.len && *host_end != '/'
           && *host_end != '?')
    {
        host_end++;
    }

    len = host_end - url_host;

    if ((size_t) (f->url.data + f->url.len - p) < len
        || ngx_strncasecmp(p, url_host, len) != 0
        || (p + len < f->url.data + f->url.len
            && p[len] != '/' && p[len] != '?'))
    {
        /* nor a token flow: the other host would choose the realm */
        ngx_str_null(&f->authorization);
        ngx_str_null(&f->basic);
        f->auth = NULL;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, f->log, 0,
                   "pullthrough: following redirect to \"%V\"", &url);

    f->url = url;

    return ngx_pt_fetch_start(f);
}


/*
 * Connection errors, timeouts, 429 and 5xx are tried again, up to the
 * remote's max_retries, with exponential backoff (or the upstream's
 * Retry-After, when short). Only answers that were not streamed: a 200
 * whose body broke off has reached clients already.
 */

static ngx_int_t
ngx_pt_fetch_retry(ngx_pt_fetch_t *f, ngx_int_t rc)
{
    ngx_msec_t  delay;
    ngx_int_t   after;

    if (f->retries >= f->max_retries || f->r == NULL || f->timed_out) {
        return NGX_DECLINED;
    }

    if (f->header) {
        if (f->status != 429 && (f->status < 500 || f->status > 599)) {
            return NGX_DECLINED;
        }

    } else if (rc != NGX_HTTP_BAD_GATEWAY && rc != NGX_HTTP_GATEWAY_TIME_OUT) {
        return NGX_DECLINED;
    }

    after = (f->header && f->retry_after.len)
            ? ngx_atoi(f->retry_after.data, f->retry_after.len)
            : NGX_PT_NO_RETRY_AFTER;

    delay = ngx_pt_backoff(f->retries, after);

    if (delay == 0) {
        /* a long wait is the client's to decide: answered now */
        return NGX_DECLINED;
    }

    f->retries++;

    ngx_log_error(NGX_LOG_WARN, f->log, 0,
                  "pullthrough: upstream %s for \"%V\", try %ui of %ui "
                  "in %M ms", f->header ? "failed" : "unreachable", &f->url,
                  f->retries, f->max_retries, delay);

    f->retry.handler = ngx_pt_fetch_retry_handler;
    f->retry.data = f;
    f->retry.log = f->log;
    f->retry.cancelable = 1;

    ngx_add_timer(&f->retry, delay);

    return NGX_OK;
}


static void
ngx_pt_fetch_rate_handler(ngx_event_t *ev)
{
    ngx_pt_fetch_t *f = ev->data;

    ngx_connection_t  *c;

    if (f->r == NULL) {
        return;
    }

    c = f->r->connection;

    /* a rate wait had its turn counted when it began; a concurrency wait
     * tries for a slot again */
    if (!f->concurrency || f->counted) {
        f->rate_ok = 1;
    }

    if (ngx_pt_fetch_start(f) != NGX_OK) {
        ngx_pt_fetch_fail(f, NGX_HTTP_INTERNAL_SERVER_ERROR);
    }

    ngx_http_run_posted_requests(c);
}


static void
ngx_pt_fetch_retry_handler(ngx_event_t *ev)
{
    ngx_pt_fetch_t *f = ev->data;

    ngx_connection_t  *c;

    if (f->r == NULL) {
        return;
    }

    c = f->r->connection;

    if (f->timed_out) {
        ngx_pt_fetch_fail(f, NGX_HTTP_GATEWAY_TIME_OUT);

    } else if (ngx_pt_fetch_start(f) != NGX_OK) {
        ngx_pt_fetch_fail(f, NGX_HTTP_INTERNAL_SERVER_ERROR);
    }

    ngx_http_run_posted_requests(c);
}


/* ends an exchange without an upstream answer: rc is what the client gets */

void
ngx_pt_fetch_fail(ngx_pt_fetch_t *f, ngx_int_t rc)
{
    ngx_pt_fetch_detach(f);

    f->header = 0;
    f->rc = rc;
    f->done(f, rc);
}


/* for owners of an exchange that may outlive its request, or die first */

static ngx_int_t
ngx_pt_fetch_headers(ngx_http_request_t *sr, ngx_pt_fetch_t *f)
{
    ngx_uint_t        i;
    ngx_keyval_t     *kv;
    ngx_table_elt_t  *h;

    if (ngx_list_init(&sr->headers_in.headers, sr->pool, 4,
                      sizeof(ngx_table_elt_t)) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (f->headers == NULL) {
        return NGX_OK;
    }

    kv = f->headers->elts;

    for (i = 0; i < f->headers->nelts; i++) {
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


/*
 * total_timeout has passed: the upstream connection is made to time out,
 * as nginx's own timers would do it, and the exchange ends with a 504.
 */

static void
ngx_pt_fetch_deadline(ngx_event_t *ev)
{
    ngx_pt_fetch_t *f = ev->data;

    ngx_connection_t     *c;
    ngx_http_upstream_t  *u;

    f->timed_out = 1;

    ngx_log_error(NGX_LOG_ERR, f->log, 0,
                  "pullthrough: \"%V\" took longer than the remote's "
                  "total_timeout", &f->url);

    if (f->retry.timer_set || f->rate.timer_set) {
        /* between two tries, or waiting for its turn: that is all */
        if (f->rate.timer_set) {
            ngx_del_timer(&f->rate);
        }

        if (f->retry.timer_set) {
            ngx_del_timer(&f->retry);
        }

        ngx_pt_fetch_retry_handler(&f->retry);
        return;
    }

    if (f->curl) {
        /* the transfer stops at its next step, and ends with a 504 */
        ngx_pt_curl_stop(f->curl);
        return;
    }

    if (f->sr == NULL || f->sr->upstream == NULL) {
        return;
    }

    u = f->sr->upstream;
    c = u->peer.connection;

    if (c == NULL) {
        return;
    }

    ngx_pt_fetch_time_out(c);
}


/* an upstream connection times out now, as nginx's own timers do it */

static void
ngx_pt_fetch_time_out(ngx_connection_t *c)
{
    c->read->timedout = 1;
    c->write->timedout = 1;

    ngx_post_event(c->read, &ngx_posted_events);
    ngx_post_event(c->write, &ngx_posted_events);
}


/*
 * The remote's connect_timeout (or sock_connect_timeout) and
 * sock_read_timeout, per subrequest: not connected in time, or no byte
 * from the upstream for that long. The upstream then times out (504), and
 * max_retries may try again.
 */

static void
ngx_pt_fetch_idle_arm(ngx_pt_fetch_t *f)
{
    ngx_msec_t  t;

    if (f->connect_timeout
        && !(f->sr && f->sr->upstream && f->sr->upstream->request_sent))
    {
        t = f->connect_timeout;
        f->connecting = 1;

    } else {
        t = f->read_timeout;
        f->connecting = 0;
    }

    if (t == 0) {
        if (f->idle.timer_set) {
            ngx_del_timer(&f->idle);
        }

        return;
    }

    f->idle.handler = ngx_pt_fetch_idle;
    f->idle.data = f;
    f->idle.log = f->log;
    f->idle.cancelable = 1;

    ngx_add_timer(&f->idle, t);
}


static void
ngx_pt_fetch_idle(ngx_event_t *ev)
{
    ngx_pt_fetch_t *f = ev->data;

    ngx_http_upstream_t  *u;

    if (f->sr == NULL || f->sr->upstream == NULL
        || f->sr->upstream->peer.connection == NULL)
    {
        return;
    }

    u = f->sr->upstream;

    if (u->request_sent && f->connecting) {
        /* connected in time: from now on, reads are watched */
        ngx_pt_fetch_idle_arm(f);
        return;
    }

    ngx_log_error(NGX_LOG_ERR, f->log, 0,
                  "pullthrough: \"%V\": %s the remote's %s", &f->url,
                  u->request_sent ? "no data within" : "not connected within",
                  u->request_sent ? "sock_read_timeout" : "connect_timeout");

    ngx_pt_fetch_time_out(u->peer.connection);
}


void
ngx_pt_fetch_detach(ngx_pt_fetch_t *f)
{
    ngx_pt_fetch_uncount(f);

    if (f->idle.timer_set) {
        ngx_del_timer(&f->idle);
    }

    if (f->deadline.timer_set) {
        ngx_del_timer(&f->deadline);
    }

    if (f->rate.timer_set) {
        ngx_del_timer(&f->rate);
    }

    if (f->cln) {
        f->cln->handler = NULL;
        f->cln = NULL;
    }
}


static void
ngx_pt_fetch_uncount(ngx_pt_fetch_t *f)
{
    if (f->counted) {
        f->counted = 0;
        ngx_pt_auth_conc_release(&f->remote);
    }
}


static void
ngx_pt_fetch_cleanup(void *data)
{
    ngx_pt_fetch_t *f = data;

    ngx_pt_fetch_uncount(f);

    if (f->idle.timer_set) {
        ngx_del_timer(&f->idle);
    }

    /* the request that carried the exchange is gone */

    f->cln = NULL;
    f->r = NULL;

    if (f->deadline.timer_set) {
        ngx_del_timer(&f->deadline);
    }

    if (f->retry.timer_set || f->rate.timer_set) {
        if (f->retry.timer_set) {
            ngx_del_timer(&f->retry);
        }

        if (f->rate.timer_set) {
            ngx_del_timer(&f->rate);
        }

        if (f->aborted) {
            f->aborted(f);
        }

        return;
    }

    if (f->sr || f->curl) {
        f->sr = NULL;
        f->rc = NGX_ERROR;

        if (f->curl) {
            ngx_pt_curl_orphan(f);
        }

        if (f->aborted) {
            f->aborted(f);
        }
    }
}


static ngx_table_elt_t *
ngx_pt_fetch_header(ngx_http_request_t *r, const char *name)
{
    size_t            len;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    len = ngx_strlen(name);

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

        if (h[i].hash && h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return &h[i];
        }
    }

    return NULL;
}


static ngx_int_t
ngx_pt_dup(ngx_pool_t *pool, ngx_str_t *src, ngx_str_t *dst)
{
    dst->data = ngx_pnalloc(pool, src->len);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(dst->data, src->data, src->len);
    dst->len = src->len;

    return NGX_OK;
}


/* what the upstream answered, kept in the exchange's own pool */

static ngx_int_t
ngx_pt_fetch_header_filter(ngx_http_request_t *r)
{
    ngx_pt_fetch_t   *f;
    ngx_table_elt_t  *h;

    if (r == r->main) {
        return ngx_http_next_header_filter(r);
    }

    f = ngx_http_get_module_ctx(r, ngx_http_pullthrough_module);
    if (f == NULL || f->sr != r) {
        return ngx_http_next_header_filter(r);
    }

    f->status = r->headers_out.status;

    ngx_pt_fetch_idle_arm(f);
    f->length = r->headers_out.content_length_n;

    if (r->headers_out.content_type.len
        && ngx_pt_dup(f->pool, &r->headers_out.content_type,
                      &f->content_type) != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* nginx keeps a relative Location in the list only */

    h = r->headers_out.location ? r->headers_out.location
                                : ngx_pt_fetch_header(r, "Location");

    if (h && ngx_pt_dup(f->pool, &h->value, &f->location) != NGX_OK) {
        return NGX_ERROR;
    }

    h = ngx_pt_fetch_header(r, "Docker-Content-Digest");
    if (h && ngx_pt_dup(f->pool, &h->value, &f->digest) != NGX_OK) {
        return NGX_ERROR;
    }

    h = ngx_pt_fetch_header(r, "Retry-After");
    if (h && ngx_pt_dup(f->pool, &h->value, &f->retry_after) != NGX_OK) {
        return NGX_ERROR;
    }

    h = ngx_pt_fetch_header(r, "WWW-Authenticate");
    if (h && ngx_pt_dup(f->pool, &h->value, &f->www_authenticate) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_pt_fetch_got_header(f);
}


/* the answer's header is known (f->status and the rest): NGX_ERROR ends
 * the exchange */

ngx_int_t
ngx_pt_fetch_got_header(ngx_pt_fetch_t *f)
{
    f->header = 1;

    if (f->status == NGX_HTTP_OK && f->body) {
        if (f->length > (off_t) (f->body->end - f->body->start)) {
            f->too_big = 1;
            return NGX_ERROR;
        }
    }

    if (f->status == NGX_HTTP_OK && f->header_handler) {
        return f->header_handler(f);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_pt_fetch_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_pt_fetch_t  *f;

    if (r == r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    f = ngx_http_get_module_ctx(r, ngx_http_pullthrough_module);
    if (f == NULL || f->sr != r) {
        return ngx_http_next_body_filter(r, in);
    }

    if (in && f->read_timeout) {
        ngx_pt_fetch_idle_arm(f);
    }

    ngx_pt_fetch_got_body(f, in);

    return NGX_OK;
}


/*
 * Upstream bytes: to the exchange's body handler, which may leave some
 * unconsumed (the upstream then waits for ngx_pt_fetch_resume()), or into
 * its memory sink.
 */

void
ngx_pt_fetch_got_body(ngx_pt_fetch_t *f, ngx_chain_t *in)
{
    size_t        size;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    if (f->status == NGX_HTTP_OK && f->body_handler && !f->stopped) {
        if (f->body_handler(f, in) == NGX_OK) {
            return;
        }

        ngx_pt_fetch_stop(f);
    }

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (!ngx_buf_in_memory(b)) {
            continue;
        }

        size = b->last - b->pos;

        if (f->status == NGX_HTTP_OK && f->body && !f->stopped) {
            if (size > (size_t) (f->body->end - f->body->last)) {
                f->too_big = 1;
                ngx_pt_fetch_stop(f);

            } else {
                f->body->last = ngx_cpymem(f->body->last, b->pos, size);
            }
        }

        b->pos = b->last;
    }
}


/*
 * Ends an exchange early, without the NGX_ERROR of a body filter, which
 * would mark the client's connection as failed: the upstream sees its
 * response as complete, and the connection is not kept.
 */

void
ngx_pt_fetch_abort(ngx_pt_fetch_t *f)
{
    if (ngx_pt_fetch_running(f)) {
        ngx_pt_fetch_stop(f);
    }
}


static void
ngx_pt_fetch_stop(ngx_pt_fetch_t *f)
{
    f->stopped = 1;

    if (f->sr && f->sr->upstream) {
        f->sr->upstream->length = 0;
        f->sr->upstream->keepalive = 0;
    }

    if (f->curl) {
        ngx_pt_curl_stop(f->curl);
    }
}


/* the body handler has room again: the upstream may read on */

void
ngx_pt_fetch_resume(ngx_pt_fetch_t *f)
{
    ngx_http_request_t  *sr;

    if (f->curl) {
        ngx_pt_curl_resume(f->curl);
        return;
    }

    sr = f->sr;

    if (sr && ngx_http_post_request(sr, NULL) == NGX_OK) {
        ngx_http_run_posted_requests(sr->connection);
    }
}


/* a try is under way (not waiting for a retry, a token or its turn) */

ngx_uint_t
ngx_pt_fetch_running(ngx_pt_fetch_t *f)
{
    return f->sr != NULL || f->curl != NULL;
}


static ngx_int_t
ngx_pt_fetch_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    ngx_str_t       *s;
    ngx_pt_fetch_t  *f;

    f = (r != r->main) ? ngx_http_get_module_ctx(r, ngx_http_pullthrough_module)
                       : NULL;

    if (f == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    s = (ngx_str_t *) ((u_char *) f + data);

    v->data = s->data;
    v->len = s->len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_pt_cache_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_uint_t  status;

    status = ngx_pt_registry_cache_status(r);

    if (status == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = ngx_pt_cache_statuses[status].data;
    v->len = ngx_pt_cache_statuses[status].len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}
