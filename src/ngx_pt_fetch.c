
/*
 * ngx_pullthrough: exchanges with upstream registries. An exchange asks
 * the remote's upstream for one URL on behalf of a request, and ends with
 * an answer or a failure for its owner (a registry request, a fill). It
 * may take several tries: the remote's credentials after a Basic
 * challenge, a token after a Bearer challenge (ngx_pt_auth.c), again after
 * a transient failure (max_retries, with backoff), after a redirect. Each
 * try waits for its turn under the remote's rate_limit and
 * download_concurrency (ngx_pt_shm.c) and is made by a transport: nginx's
 * proxy module (ngx_pt_subrequest.c) or libcurl (ngx_pt_curl.c) for the
 * remotes the proxy module cannot reach. The remote's total_timeout bounds
 * the whole exchange.
 */


#include <ngx_pt.h>
#include <ngx_pt_fetch.h>
#include <ngx_pt_auth.h>
#include <ngx_pt_curl.h>
#include <ngx_pt_metrics.h>
#include <ngx_pt_shm.h>
#include <ngx_pt_subrequest.h>


#define NGX_PT_MAX_REDIRECTS   5
#define NGX_PT_CONC_POLL       20        /* ms between looks for a slot */


static void ngx_pt_fetch_preempt(ngx_pt_fetch_t *f);
static ngx_int_t ngx_pt_fetch_turn(ngx_pt_fetch_t *f);
static void ngx_pt_fetch_wait(ngx_pt_fetch_t *f, ngx_msec_t delay);
static ngx_int_t ngx_pt_fetch_got_header(ngx_pt_fetch_t *f);
static void ngx_pt_fetch_got_body(ngx_pt_fetch_t *f, ngx_chain_t *in);
static void ngx_pt_fetch_ended(ngx_pt_fetch_t *f, ngx_int_t rc);
static void ngx_pt_fetch_log(ngx_pt_fetch_t *f, ngx_int_t rc);
static ngx_int_t ngx_pt_fetch_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static void ngx_pt_fetch_note(ngx_pt_fetch_t *f, ngx_msec_t ms);
static ngx_int_t ngx_pt_fetch_basic(ngx_pt_fetch_t *f);
static ngx_int_t ngx_pt_fetch_bearer(ngx_pt_fetch_t *f);
static void ngx_pt_fetch_token(void *data, ngx_str_t *token,
    ngx_uint_t refused);
static ngx_int_t ngx_pt_fetch_retry(ngx_pt_fetch_t *f, ngx_int_t rc);
static ngx_int_t ngx_pt_fetch_redirect(ngx_pt_fetch_t *f);
static ngx_int_t ngx_pt_fetch_location(ngx_pt_fetch_t *f, ngx_str_t *url);
static ngx_uint_t ngx_pt_fetch_same_origin(ngx_str_t *a, ngx_str_t *b);
static void ngx_pt_fetch_done(ngx_pt_fetch_t *f, ngx_int_t rc,
    ngx_uint_t in_post);
static void ngx_pt_fetch_fail(ngx_pt_fetch_t *f, ngx_int_t rc);
static void ngx_pt_fetch_again(ngx_pt_fetch_t *f);
static void ngx_pt_fetch_retry_handler(ngx_event_t *ev);
static void ngx_pt_fetch_rate_handler(ngx_event_t *ev);
static void ngx_pt_fetch_deadline(ngx_event_t *ev);
static void ngx_pt_fetch_stop(ngx_pt_fetch_t *f);
static void ngx_pt_fetch_uncount(ngx_pt_fetch_t *f);
static void ngx_pt_fetch_cleanup(void *data);


/*
 * An exchange of url for r, in pool (the request's, or the pool of a fill
 * that outlives it), with settings that live as long as the pool.
 */

ngx_int_t
ngx_pt_fetch_init(ngx_pt_fetch_t *f, ngx_http_request_t *r, ngx_pool_t *pool,
    ngx_pt_settings_t *s, ngx_str_t *url)
{
    f->r = r;
    f->pool = pool;
    f->log = r->connection->log;
    f->settings = s;

    f->url.len = url->len;
    f->url.data = ngx_pstrdup(pool, url);
    if (f->url.data == NULL) {
        return NGX_ERROR;
    }

    f->transport = s->curl ? &ngx_pt_curl_transport
                           : &ngx_pt_subrequest_transport;

    f->got_header = ngx_pt_fetch_got_header;
    f->got_body = ngx_pt_fetch_got_body;
    f->ended = ngx_pt_fetch_ended;

    ngx_pt_fetch_preempt(f);

    return NGX_OK;
}


/*
 * Credentials with the first request when the upstream is known to want
 * them: the remote's Basic ones once asked for, else a token it got for
 * this repository before. Each saves a 401 round trip.
 */

static void
ngx_pt_fetch_preempt(ngx_pt_fetch_t *f)
{
    ngx_str_t  token;

    if (f->settings->basic.len && ngx_pt_auth_basic_wanted(f->settings)) {
        f->authorization = f->settings->basic;

        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, f->log, 0,
                       "pullthrough exchange: Basic sent up front");
        return;
    }

    if (ngx_pt_auth_hint(f->settings, f->pool, &token) == NGX_OK
        && ngx_pt_auth_bearer_value(f->pool, &token, &f->authorization)
           == NGX_OK)
    {
        f->preempted = 1;

        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, f->log, 0,
                       "pullthrough exchange: token sent up front");
    }
}


/* a try: the first, or again after a challenge, a failure, a redirect */

ngx_int_t
ngx_pt_fetch_start(ngx_pt_fetch_t *f)
{
    ngx_int_t            rc;
    ngx_pool_cleanup_t  *cln;

    if (f->r == NULL) {
        return NGX_ERROR;
    }

    if (f->cln == NULL) {
        cln = ngx_pool_cleanup_add(f->r->pool, 0);
        if (cln == NULL) {
            return NGX_ERROR;
        }

        cln->handler = ngx_pt_fetch_cleanup;
        cln->data = f;
        f->cln = cln;
    }

    rc = ngx_pt_fetch_turn(f);
    if (rc != NGX_OK) {
        /* waiting for its turn: the timer starts it */
        return rc == NGX_AGAIN ? NGX_OK : rc;
    }

    ngx_pt_exchange_reset(f);

    /* the remote's total_timeout bounds the whole exchange, all tries */

    if (f->settings->total_timeout && !f->deadline.timer_set
        && !f->timed_out)
    {
        f->deadline.handler = ngx_pt_fetch_deadline;
        f->deadline.data = f;
        f->deadline.log = f->log;
        f->deadline.cancelable = 1;

        ngx_add_timer(&f->deadline, f->settings->total_timeout);
    }

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, f->log, 0,
                   "pullthrough exchange: %s \"%V\" through the %s "
                   "transport, try %ui", f->head ? "HEAD" : "GET", &f->url,
                   f->transport->name, f->retries + 1);

    return f->transport->start(f);
}


/*
 * The remote's download_concurrency and rate_limit: past them, tries wait
 * on a timer (NGX_AGAIN), they are not refused. A concurrency wait polls
 * the shared count; a rate wait has its turn counted when it begins, so
 * that waiting requests go in order.
 */

static ngx_int_t
ngx_pt_fetch_turn(ngx_pt_fetch_t *f)
{
    ngx_msec_t          delay;
    ngx_pt_settings_t  *s;

    s = f->settings;

    if (s->concurrency && !f->counted) {
        if (!ngx_pt_shm_conc_acquire(&s->remote, s->concurrency)) {
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, f->log, 0,
                           "pullthrough exchange: waits for one of the "
                           "remote's %ui slots", s->concurrency);

            ngx_pt_fetch_wait(f, NGX_PT_CONC_POLL);
            return NGX_AGAIN;
        }

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, f->log, 0,
                       "pullthrough exchange: holds one of the remote's "
                       "%ui slots", s->concurrency);

        f->counted = 1;
    }

    if (s->rate_limit && !f->rate_ok) {
        delay = ngx_pt_shm_rate_take(&s->remote, s->rate_limit);

        if (delay) {
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, f->log, 0,
                           "pullthrough exchange: rate limit, waits %M ms",
                           delay);

            /* counted already: the timer's try goes at once */
            f->rate_ok = 1;
            ngx_pt_fetch_wait(f, delay);
            return NGX_AGAIN;
        }
    }

    f->rate_ok = 0;

    return NGX_OK;
}


static void
ngx_pt_fetch_wait(ngx_pt_fetch_t *f, ngx_msec_t delay)
{
    f->rate.handler = ngx_pt_fetch_rate_handler;
    f->rate.data = f;
    f->rate.log = f->log;
    f->rate.cancelable = 1;

    ngx_add_timer(&f->rate, delay);
}


/* the answer's header is known (f->status and the rest): NGX_ERROR ends
 * the try */

static ngx_int_t
ngx_pt_fetch_got_header(ngx_pt_fetch_t *f)
{
    f->header = 1;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, f->log, 0,
                   "pullthrough exchange: upstream answered %ui, "
                   "length %O", f->status, f->length);

    if (f->status == NGX_HTTP_OK && f->body
        && f->length > (off_t) (f->body->end - f->body->start))
    {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, f->log, 0,
                       "pullthrough exchange: answer larger than %uz bytes",
                       (size_t) (f->body->end - f->body->start));

        f->too_big = 1;
        return NGX_ERROR;
    }

    if (f->status == NGX_HTTP_OK && f->header_handler) {
        return f->header_handler(f);
    }

    return NGX_OK;
}


/*
 * Upstream bytes: to the exchange's body handler, which may leave some
 * unconsumed (the transport then waits for ngx_pt_fetch_resume()), or into
 * its memory sink.
 */

static void
ngx_pt_fetch_got_body(ngx_pt_fetch_t *f, ngx_chain_t *in)
{
    size_t        size;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    for (cl = in; cl; cl = cl->next) {
        if (ngx_buf_in_memory(cl->buf)) {
            f->try_bytes += cl->buf->last - cl->buf->pos;
        }
    }

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
 * A try has ended: challenges, retries and redirects start another one,
 * anything else is the exchange's result.
 */

static void
ngx_pt_fetch_ended(ngx_pt_fetch_t *f, ngx_int_t rc)
{
    ngx_uint_t  in_post;

    in_post = f->in_post;
    f->in_post = 0;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, f->log, 0,
                   "pullthrough exchange: try ended: %i, status %ui, "
                   "\"%V\"", rc, f->status, &f->url);

    ngx_pt_metrics_upstream(&f->settings->remote_name,
                            f->header ? f->status : 0, 0);

    ngx_pt_fetch_log(f, rc);

    if (f->header && f->status == NGX_HTTP_UNAUTHORIZED && !f->auth_tried
        && !f->foreign && f->r)
    {
        if (ngx_pt_fetch_basic(f) == NGX_OK
            || ngx_pt_fetch_bearer(f) == NGX_OK)
        {
            return;
        }
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
        if (ngx_pt_fetch_redirect(f) == NGX_OK) {
            return;
        }

        rc = NGX_HTTP_BAD_GATEWAY;
    }

    ngx_pt_fetch_done(f, rc, in_post);
}


/*
 * A try's line at "info": the remote, what was asked (the URL without its
 * query, which may hold a signature), the answer, and the connection; and
 * its item in $pullthrough_upstream of the request that carried it.
 */

static void
ngx_pt_fetch_log(ngx_pt_fetch_t *f, ngx_int_t rc)
{
    u_char      *q;
    ngx_str_t    url;
    ngx_msec_t   ms;

    ms = ngx_current_msec - f->try_start;

    ngx_pt_fetch_note(f, ms);

    if (f->log->log_level < NGX_LOG_INFO) {
        return;
    }

    url = f->url;

    q = ngx_strlchr(url.data, url.data + url.len, '?');
    if (q) {
        url.len = q - url.data;
    }

    if (!f->header) {
        ngx_log_error(NGX_LOG_INFO, f->log, 0,
                      "pullthrough: upstream exchange: remote \"%V\" %s %V%s: "
                      "no answer (%i), %s connection, %M ms",
                      &f->settings->remote_name, f->head ? "HEAD" : "GET",
                      &url, q ? "?..." : "", rc,
                      f->reused ? "a kept" : "a new", ms);
        return;
    }

    ngx_log_error(NGX_LOG_INFO, f->log, 0,
                  "pullthrough: upstream exchange: remote \"%V\" %s %V%s: "
                  "%ui, %O bytes, %s%s connection, %M ms",
                  &f->settings->remote_name, f->head ? "HEAD" : "GET", &url,
                  q ? "?..." : "", f->status, f->try_bytes,
                  f->reused ? "a kept" : "a new",
                  f->http2 ? " HTTP/2" : "", ms);
}


/*
 * $pullthrough_upstream: "<status> <ms> <new|kept>" for each try the
 * request carried, ", " between them, written straight into the request's
 * cached value of the variable (its get handler only says "not found").
 */

static ngx_int_t  ngx_pt_fetch_var = NGX_ERROR;


ngx_int_t
ngx_pt_fetch_add_variables(ngx_conf_t *cf)
{
    ngx_str_t             name = ngx_string("pullthrough_upstream");
    ngx_http_variable_t  *v;

    v = ngx_http_add_variable(cf, &name, 0);
    if (v == NULL) {
        return NGX_ERROR;
    }

    v->get_handler = ngx_pt_fetch_variable;

    ngx_pt_fetch_var = ngx_http_get_variable_index(cf, &name);

    return ngx_pt_fetch_var == NGX_ERROR ? NGX_ERROR : NGX_OK;
}


static ngx_int_t
ngx_pt_fetch_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    v->not_found = 1;

    return NGX_OK;
}


static void
ngx_pt_fetch_note(ngx_pt_fetch_t *f, ngx_msec_t ms)
{
    u_char                     *p;
    size_t                      len;
    ngx_http_request_t         *r;
    ngx_http_variable_value_t  *vv;

    if (f->r == NULL || ngx_pt_fetch_var == NGX_ERROR
        || f->r->main->variables == NULL)
    {
        return;
    }

    r = f->r->main;
    vv = &r->variables[ngx_pt_fetch_var];

    len = (vv->valid ? vv->len + 2 : 0) + NGX_INT_T_LEN + 1 + NGX_TIME_T_LEN
          + sizeof(" kept") - 1;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return;
    }

    len = vv->valid ? ngx_sprintf(p, "%*s, ", (size_t) vv->len, vv->data) - p
                    : 0;

    if (f->header) {
        len = ngx_sprintf(p + len, "%ui", f->status) - p;

    } else {
        p[len++] = '-';
    }

    vv->len = ngx_sprintf(p + len, " %M %s", ms, f->reused ? "kept" : "new")
              - p;
    vv->data = p;
    vv->valid = 1;
    vv->no_cacheable = 0;
    vv->not_found = 0;
}


/*
 * A Basic challenge gets the remote's credentials, once, unless they were
 * sent up front (then they were refused).
 */

static ngx_int_t
ngx_pt_fetch_basic(ngx_pt_fetch_t *f)
{
    ngx_str_t  *basic;

    basic = &f->settings->basic;

    if (basic->len == 0 || f->authorization.data == basic->data
        || f->www_authenticate.len < 5
        || ngx_strncasecmp(f->www_authenticate.data, (u_char *) "Basic", 5)
           != 0)
    {
        return NGX_DECLINED;
    }

    f->auth_tried = 1;
    f->authorization = *basic;

    ngx_pt_auth_basic_seen(f->settings);

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, f->log, 0,
                   "pullthrough exchange: Basic challenge answered");

    return ngx_pt_fetch_start(f);
}


/* a Bearer challenge: a token first, cached or asked for, once */

static ngx_int_t
ngx_pt_fetch_bearer(ngx_pt_fetch_t *f)
{
    ngx_int_t           rc;
    ngx_str_t           token;
    ngx_pt_token_ask_t  ask;

    ask.challenge = &f->www_authenticate;
    ask.settings = f->settings;
    ask.fresh = f->preempted;
    ask.pool = f->pool;
    ask.log = f->log;
    ask.handler = ngx_pt_fetch_token;
    ask.data = f;

    rc = ngx_pt_auth_token(&ask, &token, &f->token_wait);

    if (rc == NGX_AGAIN) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, f->log, 0,
                       "pullthrough exchange: waits for a token");
        return NGX_OK;
    }

    if (rc != NGX_OK) {
        return NGX_DECLINED;
    }

    /* a cached token: straight back to the upstream */

    f->auth_tried = 1;

    if (ngx_pt_auth_bearer_value(f->pool, &token, &f->authorization)
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    return ngx_pt_fetch_start(f) == NGX_OK ? NGX_OK : NGX_DECLINED;
}


/*
 * The token asked for: back to the upstream with it. Without one, the
 * upstream's 401 stands when the realm refused the credentials; a realm
 * that failed otherwise is a 502, not a refusal.
 */

static void
ngx_pt_fetch_token(void *data, ngx_str_t *token, ngx_uint_t refused)
{
    ngx_pt_fetch_t *f = data;

    ngx_connection_t  *c;

    f->token_wait = NULL;
    c = f->r->connection;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, f->log, 0,
                   "pullthrough exchange: token %s",
                   token ? "received" : "refused or failed");

    if (token == NULL) {
        if (refused) {
            ngx_pt_fetch_done(f, NGX_OK, 0);

        } else {
            ngx_pt_fetch_fail(f, NGX_HTTP_BAD_GATEWAY);
        }

    } else {
        f->auth_tried = 1;

        if (ngx_pt_auth_bearer_value(f->pool, token, &f->authorization)
            != NGX_OK
            || ngx_pt_fetch_start(f) != NGX_OK)
        {
            ngx_pt_fetch_fail(f, NGX_HTTP_INTERNAL_SERVER_ERROR);
        }
    }

    ngx_http_run_posted_requests(c);
}


/*
 * Connection errors, timeouts, 429 and 5xx are tried again, up to the
 * remote's max_retries, with exponential backoff (or the upstream's
 * Retry-After, when short). Only answers that were not streamed: a 200
 * whose body broke off has reached clients already. Not the 5xx of an
 * upstream cache that tried its own upstream already: the tries of a
 * chain of caches would multiply.
 */

static ngx_int_t
ngx_pt_fetch_retry(ngx_pt_fetch_t *f, ngx_int_t rc)
{
    ngx_int_t   after;
    ngx_msec_t  delay;

    if (f->retries >= f->settings->max_retries || f->r == NULL
        || f->timed_out)
    {
        return NGX_DECLINED;
    }

    if (f->header) {
        if (f->status != NGX_HTTP_TOO_MANY_REQUESTS
            && (f->status < 500 || f->status > 599))
        {
            return NGX_DECLINED;
        }

        if (ngx_pt_exchange_gave_up(f)) {
            ngx_log_debug2(NGX_LOG_DEBUG_HTTP, f->log, 0,
                           "pullthrough exchange: \"%V\" is an upstream "
                           "cache's failure (%V): not tried again", &f->url,
                           &f->proxy_status);
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

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, f->log, 0,
                   "pullthrough exchange: try %ui scheduled in %M ms: \"%V\"",
                   f->retries + 2, delay, &f->url);

    f->retries++;

    ngx_log_error(NGX_LOG_WARN, f->log, 0,
                  "pullthrough: upstream %s for \"%V\", try %ui of %ui "
                  "in %M ms", f->header ? "failed" : "unreachable", &f->url,
                  f->retries, f->settings->max_retries, delay);

    f->retry.handler = ngx_pt_fetch_retry_handler;
    f->retry.data = f;
    f->retry.log = f->log;
    f->retry.cancelable = 1;

    ngx_add_timer(&f->retry, delay);

    return NGX_OK;
}


/*
 * Follows a redirect (blob storage on a CDN): credentials (the remote's
 * Basic ones, a token, its custom headers) go only to the same scheme,
 * host and port, and an https exchange is never led to http.
 */

static ngx_int_t
ngx_pt_fetch_redirect(ngx_pt_fetch_t *f)
{
    ngx_str_t  url;

    if (++f->redirects > NGX_PT_MAX_REDIRECTS) {
        ngx_log_error(NGX_LOG_ERR, f->log, 0,
                      "pullthrough: too many redirects from upstream");
        return NGX_ERROR;
    }

    if (ngx_pt_fetch_location(f, &url) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_strncasecmp(f->url.data, (u_char *) "https:", 6) == 0
        && ngx_strncasecmp(url.data, (u_char *) "https:", 6) != 0)
    {
        ngx_log_error(NGX_LOG_ERR, f->log, 0,
                      "pullthrough: upstream redirected \"%V\" to "
                      "\"%V\": https is never left for http", &f->url,
                      &url);
        return NGX_ERROR;
    }

    if (!ngx_pt_fetch_same_origin(&f->url, &url)) {
        /* nor a token flow: the other host would choose the realm */
        ngx_str_null(&f->authorization);
        f->foreign = 1;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, f->log, 0,
                   "pullthrough exchange: redirect to \"%V\"%s", &url,
                   f->foreign ? ", without credentials" : "");

    f->url = url;

    return ngx_pt_fetch_start(f);
}


/*
 * The Location as an absolute URL, in the exchange's pool: an absolute
 * one as it is; "//host/path" (RFC 3986's network-path reference) after
 * the current scheme; "/path" after the current scheme and authority.
 */

static ngx_int_t
ngx_pt_fetch_location(ngx_pt_fetch_t *f, ngx_str_t *url)
{
    u_char  *p, *last, *loc;
    size_t   len, n;

    loc = f->location.data;
    n = f->location.len;

    if (n && loc[0] != '/') {

        /* (a header value may lack a NUL: its length bounds the looks) */

        if ((n > 7 && ngx_strncasecmp(loc, (u_char *) "http://", 7) == 0)
            || (n > 8 && ngx_strncasecmp(loc, (u_char *) "https://", 8) == 0))
        {
            *url = f->location;
            return NGX_OK;
        }

        ngx_log_error(NGX_LOG_ERR, f->log, 0,
                      "pullthrough: upstream redirected to \"%V\"",
                      &f->location);
        return NGX_ERROR;
    }

    last = f->url.data + f->url.len;

    p = ngx_pt_strfind(f->url.data, last, (u_char *) "://", 3, 0);
    if (n == 0 || p == NULL) {
        return NGX_ERROR;
    }

    if (n > 1 && loc[1] == '/') {
        len = p + 1 - f->url.data;                  /* "https:" */

    } else {
        p = ngx_strlchr(p + 3, last, '/');
        len = (p ? p : last) - f->url.data;         /* "https://host" */
    }

    url->data = ngx_pnalloc(f->pool, len + n);
    if (url->data == NULL) {
        return NGX_ERROR;
    }

    url->len = ngx_cpymem(ngx_cpymem(url->data, f->url.data, len), loc, n)
               - url->data;

    return NGX_OK;
}


/* whether two absolute URLs have the same scheme and host[:port] */

static ngx_uint_t
ngx_pt_fetch_same_origin(ngx_str_t *a, ngx_str_t *b)
{
    u_char  *pa, *pb, *ea, *eb;

    pa = ngx_pt_strfind(a->data, a->data + a->len, (u_char *) "://", 3, 0);
    pb = ngx_pt_strfind(b->data, b->data + b->len, (u_char *) "://", 3, 0);

    if (pa == NULL || pb == NULL) {
        return 0;
    }

    pa += 3;
    pb += 3;

    for (ea = pa; ea < a->data + a->len && *ea != '/' && *ea != '?'; ea++) {
        /* void */
    }

    for (eb = pb; eb < b->data + b->len && *eb != '/' && *eb != '?'; eb++) {
        /* void */
    }

    /* from the scheme to the end of the authority */

    return ea - a->data == eb - b->data
           && ngx_strncasecmp(a->data, b->data, ea - a->data) == 0;
}


/*
 * The exchange is over: its owner gets the result. in_post tells the
 * owner that the request carrying the exchange is in its subrequest's
 * post handler (nginx may end it just after). done() may free f.
 */

static void
ngx_pt_fetch_done(ngx_pt_fetch_t *f, ngx_int_t rc, ngx_uint_t in_post)
{
    ngx_pt_fetch_detach(f);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, f->log, 0,
                   "pullthrough exchange: done: %i, \"%V\"", rc, &f->url);

    f->rc = rc;
    f->in_post = in_post;

    f->done(f, rc);
}


/* ends an exchange without an upstream answer: rc is what the client gets */

static void
ngx_pt_fetch_fail(ngx_pt_fetch_t *f, ngx_int_t rc)
{
    f->header = 0;

    ngx_pt_fetch_done(f, rc, 0);
}


/* a timer's try: on the request's connection, whose posted requests run */

static void
ngx_pt_fetch_again(ngx_pt_fetch_t *f)
{
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


static void
ngx_pt_fetch_retry_handler(ngx_event_t *ev)
{
    ngx_pt_fetch_again(ev->data);
}


static void
ngx_pt_fetch_rate_handler(ngx_event_t *ev)
{
    ngx_pt_fetch_again(ev->data);
}


/*
 * total_timeout has passed: a running try is made to time out, as nginx's
 * own timers would do it, and the exchange ends with a 504.
 */

static void
ngx_pt_fetch_deadline(ngx_event_t *ev)
{
    ngx_pt_fetch_t *f = ev->data;

    f->timed_out = 1;

    ngx_log_error(NGX_LOG_ERR, f->log, 0,
                  "pullthrough: \"%V\" took longer than the remote's "
                  "total_timeout", &f->url);

    if (f->retry.timer_set || f->rate.timer_set) {
        /* between two tries, or waiting for its turn: that is all */

        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, f->log, 0,
                       "pullthrough exchange: deadline hit between tries");

        if (f->rate.timer_set) {
            ngx_del_timer(&f->rate);
        }

        if (f->retry.timer_set) {
            ngx_del_timer(&f->retry);
        }

        ngx_pt_fetch_again(f);
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, f->log, 0,
                   "pullthrough exchange: deadline hit, %s",
                   f->try ? "the try times out" : "no try running");

    if (f->transport->running(f)) {
        f->transport->time_out(f);
    }
}


/* ends the running try early: the upstream sees its answer as complete */

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

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, f->log, 0,
                   "pullthrough exchange: stopped: \"%V\"", &f->url);

    f->transport->stop(f);
}


/* the body handler has room again: the upstream may send on */

void
ngx_pt_fetch_resume(ngx_pt_fetch_t *f)
{
    f->transport->resume(f);
}


/* a try is under way (not waiting for a retry, a token or its turn) */

ngx_uint_t
ngx_pt_fetch_running(ngx_pt_fetch_t *f)
{
    /* an exchange never made (a mirror's) has no transport */
    return f->transport && f->transport->running(f);
}


/* the exchange is over: the end of its request no longer concerns it */

void
ngx_pt_fetch_detach(ngx_pt_fetch_t *f)
{
    ngx_pt_fetch_uncount(f);

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
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, f->log, 0,
                       "pullthrough exchange: slot released");

        f->counted = 0;
        ngx_pt_shm_conc_release(&f->settings->remote);
    }
}


/*
 * The request that carried the exchange is gone, with whatever try it
 * carried: the owner is told (a fill's exchange is aborted).
 */

static void
ngx_pt_fetch_cleanup(void *data)
{
    ngx_pt_fetch_t *f = data;

    ngx_uint_t  waiting;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, f->log, 0,
                   "pullthrough exchange: its request is gone: \"%V\"",
                   &f->url);

    waiting = f->retry.timer_set || f->rate.timer_set || f->token_wait;

    /* its slot, its timers, and this cleanup (running now) */
    ngx_pt_fetch_detach(f);

    f->r = NULL;

    if (f->retry.timer_set) {
        ngx_del_timer(&f->retry);
    }

    if (f->token_wait) {
        ngx_pt_auth_cancel(f->token_wait);
        f->token_wait = NULL;
    }

    if (f->transport->running(f)) {
        f->rc = NGX_ERROR;
        f->transport->orphan(f);
        waiting = 1;
    }

    if (waiting && f->aborted) {
        f->aborted(f);
    }
}
