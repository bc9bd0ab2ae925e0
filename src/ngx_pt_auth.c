
/*
 * ngx_pullthrough: upstream authentication, as Docker Hub, ghcr.io,
 * quay.io and token-auth registries ask for it. A 401 with a Bearer
 * challenge becomes a token request to the challenge's realm, made by
 * libcurl in a thread pool task while the exchange that asked waits
 * (nothing blocks the event loop). Tokens are kept in the shared zone,
 * keyed by remote, realm, service and scope, so that every worker uses
 * them and a token is never sent for another remote; one request serves
 * every exchange of every worker that needs the same token. This part
 * knows nothing of exchanges: it is given a challenge and the remote's
 * settings, and calls back with the token.
 */


#include <ngx_pt.h>
#include <ngx_pt_auth.h>
#include <ngx_pt_curl.h>
#include <ngx_pt_settings.h>
#include <ngx_pt_shm.h>

#include <curl/curl.h>


#define NGX_PT_TOKEN_MAX_BODY    (256 * 1024)
#define NGX_PT_TOKEN_DEFAULT_TTL 60          /* s, without expires_in */
#define NGX_PT_TOKEN_CLAIM       15000       /* ms others wait for one */
#define NGX_PT_TOKEN_POLL        20          /* ms between their looks */
#define NGX_PT_BASIC_HINT        3600000     /* ms Basic is sent up front */
#define NGX_PT_TOKEN_MAX_REDIRS  5
#define NGX_PT_TOKEN_MARGIN      10          /* s cut from a long life */
#define NGX_PT_TOKEN_SHORT       20          /* s: under, 3/4 of its life */
#define NGX_PT_RETRY_AFTER_CAP   3600        /* s of a realm's Retry-After */


/* a Bearer challenge's parameters */
typedef struct {
    ngx_str_t                   realm;
    ngx_str_t                   service;
    ngx_str_t                   scope;
} ngx_pt_challenge_t;


/*
 * A token request, in its own pool: the exchanges waiting for it may end
 * before it does. Exchanges of this worker that need the same token while
 * it runs wait for it too (one request, not one each).
 */
typedef struct {
    ngx_queue_t                 queue;       /* requests in flight */
    ngx_pool_t                 *pool;
    ngx_array_t                 waiters;     /* ngx_pt_token_waiter_t * */
    ngx_thread_task_t          *task;
    ngx_pt_settings_t          *settings;    /* a copy */
    ngx_event_t                 poll;        /* another worker asks */
    ngx_msec_t                  deadline;
    ngx_str_t                   key;
    ngx_str_t                   hint;        /* remote and default scope */
    char                       *url;
    ngx_uint_t                  credentials; /* the remote's, to the realm */
    ngx_msec_t                  started;
    ngx_uint_t                  tries;
    ngx_event_t                 again;       /* backoff before a retry */

    /* results */
    long                        status;
    curl_off_t                  retry_after;
    ngx_str_t                   token;
    time_t                      ttl;
    char                        error[CURL_ERROR_SIZE];
} ngx_pt_token_req_t;


typedef struct {
    ngx_pt_token_req_t         *req;
    ngx_pt_token_handler_pt     handler;     /* NULL once cancelled */
    void                       *data;
} ngx_pt_token_waiter_t;


static ngx_int_t ngx_pt_auth_challenge(ngx_pt_token_ask_t *ask,
    ngx_pt_challenge_t *ch);
static ngx_int_t ngx_pt_auth_key(ngx_pool_t *pool, ngx_pt_settings_t *s,
    ngx_pt_challenge_t *ch, ngx_str_t *key);
static ngx_int_t ngx_pt_auth_hint_key(ngx_pool_t *pool, ngx_pt_settings_t *s,
    ngx_str_t *key);
static ngx_pt_token_req_t *ngx_pt_auth_request(ngx_pt_token_ask_t *ask,
    ngx_pt_challenge_t *ch, ngx_str_t *key);
static ngx_int_t ngx_pt_auth_url(ngx_pt_token_req_t *req,
    ngx_pt_challenge_t *ch);
static ngx_int_t ngx_pt_auth_launch(ngx_pt_token_req_t *req);
static ngx_pt_token_req_t *ngx_pt_auth_in_flight(ngx_str_t *key);
static ngx_int_t ngx_pt_auth_wait(ngx_pt_token_req_t *req,
    ngx_pt_token_ask_t *ask, void **wait);
static ngx_int_t ngx_pt_auth_param(ngx_str_t *header, const char *name,
    ngx_pool_t *pool, ngx_str_t *value);
static ngx_uint_t ngx_pt_auth_may_send(ngx_str_t *url);
static void ngx_pt_auth_thread(void *data, ngx_log_t *log);
static ngx_uint_t ngx_pt_auth_token_valid(u_char *p);
static size_t ngx_pt_auth_write(char *ptr, size_t size, size_t nmemb,
    void *userdata);
static void ngx_pt_auth_done(ngx_event_t *ev);
static ngx_uint_t ngx_pt_auth_again(ngx_pt_token_req_t *req);
static void ngx_pt_auth_again_handler(ngx_event_t *ev);
static void ngx_pt_auth_poll(ngx_event_t *ev);
static void ngx_pt_auth_finish(ngx_pt_token_req_t *req);


static ngx_queue_t  ngx_pt_tokens_in_flight;


ngx_int_t
ngx_pt_auth_init_process(ngx_cycle_t *cycle)
{
    ngx_queue_init(&ngx_pt_tokens_in_flight);

    return NGX_OK;
}


/*
 * A token for a Bearer challenge. NGX_OK: a cached one, in *token;
 * NGX_AGAIN: asked for, ask->handler gets it, and *wait lets the caller
 * stop waiting; NGX_DECLINED: nothing to try, the 401 stands.
 */

ngx_int_t
ngx_pt_auth_token(ngx_pt_token_ask_t *ask, ngx_str_t *token, void **wait)
{
    ngx_str_t            key;
    ngx_pt_challenge_t   ch;
    ngx_pt_token_req_t  *req;

    if (ngx_pt_auth_challenge(ask, &ch) != NGX_OK
        || ngx_pt_auth_key(ask->pool, ask->settings, &ch, &key) != NGX_OK)
    {
        return NGX_DECLINED;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ask->log, 0,
                   "pullthrough token: asked for \"%V\" of \"%V\"%s",
                   &ch.scope, &ch.realm,
                   ask->fresh ? ", the cached one was refused" : "");

    /* a token sent up front and refused is not asked of the cache again */

    if (!ask->fresh
        && ngx_pt_shm_token_get(&key, ask->pool, token) == NGX_OK)
    {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ask->log, 0,
                       "pullthrough token: cached for \"%V\"", &ch.scope);
        return NGX_OK;
    }

    /* the same token already on its way: wait for it */

    req = ngx_pt_auth_in_flight(&key);

    if (req) {
        return ngx_pt_auth_wait(req, ask, wait);
    }

    req = ngx_pt_auth_request(ask, &ch, &key);
    if (req == NULL) {
        return NGX_DECLINED;
    }

    if (ngx_pt_auth_launch(req) != NGX_OK) {
        ngx_destroy_pool(req->pool);
        return NGX_DECLINED;
    }

    ngx_queue_insert_tail(&ngx_pt_tokens_in_flight, &req->queue);

    /* without a waiter the request runs on: its token is cached for others */

    return ngx_pt_auth_wait(req, ask, wait);
}


/* the caller no longer waits (its request ended): the token request goes on */

void
ngx_pt_auth_cancel(void *wait)
{
    ngx_pt_token_waiter_t  *w = wait;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "pullthrough token: waiter %p cancelled: \"%s\"",
                   w, w->req->url);

    w->handler = NULL;
    w->data = NULL;
}


/*
 * A token this remote got for this repository before, sent with the first
 * request: registries that want one would otherwise answer 401 each time.
 */

ngx_int_t
ngx_pt_auth_hint(ngx_pt_settings_t *s, ngx_pool_t *pool, ngx_str_t *token)
{
    ngx_str_t  key;

    if (ngx_pt_auth_hint_key(pool, s, &key) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_pt_shm_token_get(&key, pool, token);
}


/*
 * The remote's upstream answered a Basic challenge: its credentials go
 * with the first request of its exchanges from now on (an hour after the
 * last challenge), which saves a round trip each.
 */

void
ngx_pt_auth_basic_seen(ngx_pt_settings_t *s)
{
    ngx_pt_shm_hint_set(&s->remote, NGX_PT_BASIC_HINT);
}


ngx_uint_t
ngx_pt_auth_basic_wanted(ngx_pt_settings_t *s)
{
    return ngx_pt_shm_hint_get(&s->remote);
}


/* "Bearer <token>" */

ngx_int_t
ngx_pt_auth_bearer_value(ngx_pool_t *pool, ngx_str_t *token,
    ngx_str_t *value)
{
    u_char  *p;

    p = ngx_pnalloc(pool, sizeof("Bearer ") - 1 + token->len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    value->data = p;
    value->len = ngx_cpymem(ngx_cpymem(p, "Bearer ", 7), token->data,
                            token->len) - p;

    return NGX_OK;
}


/* realm, service and scope; the realm an http(s) URL without userinfo */

static ngx_int_t
ngx_pt_auth_challenge(ngx_pt_token_ask_t *ask, ngx_pt_challenge_t *ch)
{
    u_char     *p;
    ngx_str_t  *h;

    h = ask->challenge;

    if (h->len < 7 || ngx_strncasecmp(h->data, (u_char *) "Bearer ", 7) != 0)
    {
        return NGX_DECLINED;
    }

    if (ngx_pt_auth_param(h, "realm", ask->pool, &ch->realm) != NGX_OK
        || ch->realm.len == 0)
    {
        ngx_log_error(NGX_LOG_ERR, ask->log, 0,
                      "pullthrough: upstream Bearer challenge without realm");
        return NGX_DECLINED;
    }

    /* (the realm is a copy without a NUL: its length bounds every look) */

    if (!(ch->realm.len > 8
          && ngx_strncasecmp(ch->realm.data, (u_char *) "https://", 8) == 0)
        && !(ch->realm.len > 7
             && ngx_strncasecmp(ch->realm.data, (u_char *) "http://", 7)
                == 0))
    {
        ngx_log_error(NGX_LOG_ERR, ask->log, 0,
                      "pullthrough: upstream token realm \"%V\" is not an "
                      "http(s) URL", &ch->realm);
        return NGX_DECLINED;
    }

    /* user information in a realm is a way to mislead about its host */

    for (p = ch->realm.data + 7; p < ch->realm.data + ch->realm.len; p++) {
        if (*p == '/' || *p == '?' || *p == '#') {
            break;
        }

        if (*p == '@') {
            ngx_log_error(NGX_LOG_ERR, ask->log, 0,
                          "pullthrough: upstream token realm \"%V\" has "
                          "user information: refused", &ch->realm);
            return NGX_DECLINED;
        }
    }

    (void) ngx_pt_auth_param(h, "service", ask->pool, &ch->service);

    if (ngx_pt_auth_param(h, "scope", ask->pool, &ch->scope) == NGX_OK
        && ch->scope.len)
    {
        return NGX_OK;
    }

    ch->scope.len = sizeof("repository::pull") - 1 + ask->settings->name.len;
    ch->scope.data = ngx_pnalloc(ask->pool, ch->scope.len);
    if (ch->scope.data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(ch->scope.data, "repository:%V:pull", &ask->settings->name);

    return NGX_OK;
}


/* the cache key: the remote first, so remotes never share tokens */

static ngx_int_t
ngx_pt_auth_key(ngx_pool_t *pool, ngx_pt_settings_t *s,
    ngx_pt_challenge_t *ch, ngx_str_t *key)
{
    key->len = s->remote.len + ch->realm.len + ch->service.len
               + ch->scope.len + 3;
    key->data = ngx_pnalloc(pool, key->len);
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(key->data, "%V\n%V\n%V\n%V", &s->remote, &ch->realm,
                &ch->service, &ch->scope);

    return NGX_OK;
}


/* "<remote>\n\n\nrepository:<name>:pull", the token a pull usually needs */

static ngx_int_t
ngx_pt_auth_hint_key(ngx_pool_t *pool, ngx_pt_settings_t *s, ngx_str_t *key)
{
    key->len = s->remote.len + s->name.len
               + sizeof("\n\n\nrepository::pull") - 1;
    key->data = ngx_pnalloc(pool, key->len);
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(key->data, "%V\n\n\nrepository:%V:pull", &s->remote,
                &s->name);

    return NGX_OK;
}


/* a token request, in a pool and a thread task of its own */

static ngx_pt_token_req_t *
ngx_pt_auth_request(ngx_pt_token_ask_t *ask, ngx_pt_challenge_t *ch,
    ngx_str_t *key)
{
    ngx_str_t            url;
    ngx_pool_t          *pool;
    ngx_thread_task_t   *task;
    ngx_pt_token_req_t  *req;

    pool = ngx_create_pool(2048, ngx_cycle->log);
    if (pool == NULL) {
        return NULL;
    }

    task = ngx_thread_task_alloc(pool, sizeof(ngx_pt_token_req_t));
    if (task == NULL) {
        goto failed;
    }

    req = task->ctx;
    ngx_memzero(req, sizeof(ngx_pt_token_req_t));

    req->pool = pool;
    req->task = task;
    req->started = ngx_current_msec;

    req->key.len = key->len;
    req->key.data = ngx_pstrdup(pool, key);
    req->settings = ngx_pt_settings_copy(pool, ask->settings);

    if (req->key.data == NULL || req->settings == NULL
        || ngx_pt_auth_hint_key(pool, req->settings, &req->hint) != NGX_OK
        || ngx_array_init(&req->waiters, pool, 4,
                          sizeof(ngx_pt_token_waiter_t *)) != NGX_OK
        || ngx_pt_auth_url(req, ch) != NGX_OK)
    {
        goto failed;
    }

    /*
     * The remote's credentials go to the realm only over https or to this
     * machine: a challenge must not be a way to collect them in clear.
     */

    if (req->settings->username.len) {
        url.data = (u_char *) req->url;
        url.len = ngx_strlen(req->url);

        req->credentials = ngx_pt_auth_may_send(&url);

        if (!req->credentials) {
            ngx_log_error(NGX_LOG_WARN, ask->log, 0,
                          "pullthrough: credentials are not sent to the "
                          "token realm \"%s\": it is neither https nor "
                          "local", req->url);
        }
    }

    task->handler = ngx_pt_auth_thread;
    task->event.handler = ngx_pt_auth_done;
    task->event.data = req;

    return req;

failed:

    ngx_destroy_pool(pool);
    return NULL;
}


/* realm?service=...&scope=..., the values escaped */

static ngx_int_t
ngx_pt_auth_url(ngx_pt_token_req_t *req, ngx_pt_challenge_t *ch)
{
    u_char  *p;
    size_t   len;

    len = ch->realm.len + sizeof("?service=&scope=")
          + ch->service.len
          + 2 * ngx_escape_uri(NULL, ch->service.data, ch->service.len,
                               NGX_ESCAPE_ARGS)
          + ch->scope.len
          + 2 * ngx_escape_uri(NULL, ch->scope.data, ch->scope.len,
                               NGX_ESCAPE_ARGS);

    req->url = ngx_pnalloc(req->pool, len);
    if (req->url == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(req->url, ch->realm.data, ch->realm.len);
    *p++ = ngx_strlchr(ch->realm.data, ch->realm.data + ch->realm.len, '?')
           ? '&' : '?';

    if (ch->service.len) {
        p = ngx_cpymem(p, "service=", 8);
        p = (u_char *) ngx_escape_uri(p, ch->service.data, ch->service.len,
                                      NGX_ESCAPE_ARGS);
        *p++ = '&';
    }

    p = ngx_cpymem(p, "scope=", 6);
    p = (u_char *) ngx_escape_uri(p, ch->scope.data, ch->scope.len,
                                  NGX_ESCAPE_ARGS);
    *p = '\0';

    return NGX_OK;
}


/*
 * One request for all workers: the first claims it in the shared zone and
 * asks the realm, the others watch the cache for its answer.
 */

static ngx_int_t
ngx_pt_auth_launch(ngx_pt_token_req_t *req)
{
    if (ngx_pt_shm_claim(&req->key, NGX_PT_TOKEN_CLAIM)) {

        if (ngx_thread_task_post(req->settings->thread_pool, req->task)
            != NGX_OK)
        {
            ngx_pt_shm_unclaim(&req->key);
            return NGX_ERROR;
        }

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                       "pullthrough token request: to \"%s\"", req->url);
        return NGX_OK;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "pullthrough token request: another worker asks \"%s\"",
                   req->url);

    req->poll.handler = ngx_pt_auth_poll;
    req->poll.data = req;
    req->poll.log = ngx_cycle->log;
    req->poll.cancelable = 1;
    req->deadline = ngx_current_msec + NGX_PT_TOKEN_CLAIM;

    ngx_add_timer(&req->poll, NGX_PT_TOKEN_POLL);

    return NGX_OK;
}


static ngx_pt_token_req_t *
ngx_pt_auth_in_flight(ngx_str_t *key)
{
    ngx_queue_t         *q;
    ngx_pt_token_req_t  *req;

    for (q = ngx_queue_head(&ngx_pt_tokens_in_flight);
         q != ngx_queue_sentinel(&ngx_pt_tokens_in_flight);
         q = ngx_queue_next(q))
    {
        req = ngx_queue_data(q, ngx_pt_token_req_t, queue);

        if (req->key.len == key->len
            && ngx_strncmp(req->key.data, key->data, key->len) == 0)
        {
            return req;
        }
    }

    return NULL;
}


/* the asker waits for req's token: NGX_AGAIN, or NGX_DECLINED */

static ngx_int_t
ngx_pt_auth_wait(ngx_pt_token_req_t *req, ngx_pt_token_ask_t *ask,
    void **wait)
{
    ngx_pt_token_waiter_t  *w, **wp;

    w = ngx_palloc(req->pool, sizeof(ngx_pt_token_waiter_t));
    wp = ngx_array_push(&req->waiters);

    if (w == NULL || wp == NULL) {
        return NGX_DECLINED;
    }

    w->req = req;
    w->handler = ask->handler;
    w->data = ask->data;
    *wp = w;

    *wait = w;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ask->log, 0,
                   "pullthrough token: waiter %p queued, %ui waiting: "
                   "\"%s\"", w, req->waiters.nelts, req->url);

    return NGX_AGAIN;
}


/* name="value" (or name=value) in a challenge */

static ngx_int_t
ngx_pt_auth_param(ngx_str_t *header, const char *name, ngx_pool_t *pool,
    ngx_str_t *value)
{
    u_char      *p, *last, *start, *dst;
    size_t       len;
    ngx_uint_t   match;

    ngx_str_null(value);

    len = ngx_strlen(name);
    p = header->data + 7;
    last = header->data + header->len;

    while (p < last) {

        while (p < last && (*p == ' ' || *p == ',' || *p == '\t')) {
            p++;
        }

        start = p;

        while (p < last && *p != '=' && *p != ',') {
            p++;
        }

        if (p == last || *p != '=') {
            continue;
        }

        match = ((size_t) (p - start) == len
                 && ngx_strncasecmp(start, (u_char *) name, len) == 0);
        p++;

        if (p < last && *p == '"') {
            p++;
            start = p;

            value->data = ngx_pnalloc(pool, last - p);
            if (value->data == NULL) {
                return NGX_ERROR;
            }

            dst = value->data;

            while (p < last && *p != '"') {
                if (*p == '\\' && p + 1 < last) {
                    p++;
                }

                *dst++ = *p++;
            }

            value->len = dst - value->data;
            p++;

        } else {
            start = p;

            while (p < last && *p != ',' && *p != ' ') {
                p++;
            }

            value->data = start;
            value->len = p - start;
        }

        if (match) {
            return NGX_OK;
        }

        ngx_str_null(value);
    }

    return NGX_DECLINED;
}


static ngx_uint_t
ngx_pt_auth_may_send(ngx_str_t *url)
{
    u_char      *host, *end, *last, *p;
    ngx_uint_t   dots;

    if (url->len > 8 && ngx_strncasecmp(url->data, (u_char *) "https://", 8)
                        == 0)
    {
        return 1;
    }

    if (url->len <= 7
        || ngx_strncasecmp(url->data, (u_char *) "http://", 7) != 0)
    {
        return 0;
    }

    /* the whole host of plain http: a loopback name or address, no more */

    host = url->data + 7;
    last = url->data + url->len;

    for (end = host; end < last && *end != '/' && *end != '?' && *end != '#';
         end++)
    {
        if (*end == '@') {
            /* user information: what looks like the host may not be it */
            return 0;
        }
    }

    if (end - host >= 5 && ngx_strncmp(host, "[::1]", 5) == 0) {
        return host + 5 == end || host[5] == ':';
    }

    p = ngx_strlchr(host, end, ':');
    if (p) {
        end = p;
    }

    if (end - host == 9 && ngx_strncasecmp(host, (u_char *) "localhost", 9)
                           == 0)
    {
        return 1;
    }

    if (end - host < 7 || ngx_strncmp(host, "127.", 4) != 0) {
        return 0;
    }

    for (dots = 0, p = host; p < end; p++) {
        if (*p == '.') {
            dots++;

        } else if (*p < '0' || *p > '9') {
            return 0;
        }
    }

    return dots == 3;
}


/* in a pool thread: the token request, by libcurl */

static void
ngx_pt_auth_thread(void *data, ngx_log_t *log)
{
    ngx_pt_token_req_t *req = data;

    CURL       *curl;
    CURLcode    rc;
    yajl_val    doc, v;
    ngx_buf_t   body;

    req->status = 0;
    req->retry_after = 0;
    req->error[0] = '\0';

    ngx_memzero(&body, sizeof(ngx_buf_t));

    body.start = malloc(NGX_PT_TOKEN_MAX_BODY + 1);
    if (body.start == NULL) {
        ngx_cpystrn((u_char *) req->error, (u_char *) "out of memory",
                    CURL_ERROR_SIZE);
        return;
    }

    body.pos = body.start;
    body.last = body.start;
    body.end = body.start + NGX_PT_TOKEN_MAX_BODY;

    curl = curl_easy_init();
    if (curl == NULL) {
        free(body.start);
        ngx_cpystrn((u_char *) req->error, (u_char *) "curl_easy_init()",
                    CURL_ERROR_SIZE);
        return;
    }

    curl_easy_setopt(curl, CURLOPT_URL, req->url);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, req->error);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, ngx_pt_auth_write);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, NGX_PT_USER_AGENT);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS,
                     (long) req->settings->token_timeout);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(curl, CURLOPT_MAXREDIRS, (long) NGX_PT_TOKEN_MAX_REDIRS);

    if (req->credentials) {
        /* libcurl keeps them from other hosts a redirect leads to */
        curl_easy_setopt(curl, CURLOPT_HTTPAUTH, (long) CURLAUTH_BASIC);
        curl_easy_setopt(curl, CURLOPT_USERNAME,
                         (char *) req->settings->username.data);
        curl_easy_setopt(curl, CURLOPT_PASSWORD,
                         (char *) req->settings->password.data);
    }

    /* the remote's forward proxy, trusted CA and client certificate */
    ngx_pt_link_apply(curl, &req->settings->link);

    rc = curl_easy_perform(curl);

    if (rc == CURLE_OK) {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &req->status);
        curl_easy_getinfo(curl, CURLINFO_RETRY_AFTER, &req->retry_after);
    }

    curl_easy_cleanup(curl);

    if (rc != CURLE_OK || req->status != NGX_HTTP_OK) {
        if (rc == CURLE_OK) {
            ngx_snprintf((u_char *) req->error, CURL_ERROR_SIZE,
                         "the realm answered %l%Z", req->status);

        } else if (req->error[0] == '\0') {
            ngx_cpystrn((u_char *) req->error,
                        (u_char *) curl_easy_strerror(rc), CURL_ERROR_SIZE);
        }

        free(body.start);
        return;
    }

    *body.last = '\0';

    doc = (ngx_pt_json_depth(body.start, body.last) == NGX_OK)
          ? yajl_tree_parse((char *) body.start, NULL, 0) : NULL;

    free(body.start);

    v = ngx_pt_json_get(doc, "token");
    if (v == NULL || !YAJL_IS_STRING(v) || v->u.string[0] == '\0') {
        v = ngx_pt_json_get(doc, "access_token");
    }

    if (v == NULL || !YAJL_IS_STRING(v) || v->u.string[0] == '\0') {
        ngx_cpystrn((u_char *) req->error,
                    (u_char *) "the realm's answer has no token",
                    CURL_ERROR_SIZE);
        yajl_tree_free(doc);
        /* the status stays 200: nothing to try again */
        return;
    }

    if (!ngx_pt_auth_token_valid((u_char *) v->u.string)) {
        /* it goes into a header line: CR, LF and the like would split it */
        ngx_cpystrn((u_char *) req->error,
                    (u_char *) "the realm's token has characters a header "
                    "cannot carry", CURL_ERROR_SIZE);
        yajl_tree_free(doc);
        return;
    }

    req->token.len = ngx_strlen(v->u.string);
    req->token.data = malloc(req->token.len);

    if (req->token.data) {
        ngx_memcpy(req->token.data, v->u.string, req->token.len);
    }

    v = ngx_pt_json_get(doc, "expires_in");
    req->ttl = (v && YAJL_IS_INTEGER(v) && YAJL_GET_INTEGER(v) > 0)
               ? (time_t) YAJL_GET_INTEGER(v) : NGX_PT_TOKEN_DEFAULT_TTL;

    yajl_tree_free(doc);
}


/* a bearer token: visible ASCII only (RFC 6750's b64token and JWTs) */

static ngx_uint_t
ngx_pt_auth_token_valid(u_char *p)
{
    for ( /* void */ ; *p; p++) {
        if (*p <= 0x20 || *p >= 0x7f) {
            return 0;
        }
    }

    return 1;
}


static size_t
ngx_pt_auth_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    ngx_buf_t *b = userdata;

    size_t  n;

    n = size * nmemb;

    if (n > (size_t) (b->end - b->last)) {
        /* far more than a token: refused */
        return 0;
    }

    b->last = ngx_cpymem(b->last, ptr, n);

    return n;
}


static void
ngx_pt_auth_done(ngx_event_t *ev)
{
    ngx_pt_token_req_t *req = ev->data;

    u_char      *token;
    ngx_msec_t   ttl;

    ngx_pt_shm_stat_add(NGX_PT_STAT_TOKEN_REQUESTS, 1);

    if (req->token.data == NULL || req->status != NGX_HTTP_OK) {
        ngx_pt_shm_stat_add(NGX_PT_STAT_TOKEN_FAILURES, 1);
    }

    if (req->token.data == NULL && ngx_pt_auth_again(req)) {
        /* still claimed: the others wait for the next try */
        return;
    }

    ngx_pt_shm_unclaim(&req->key);

    /* the token into the request's pool: libcurl's thread used malloc() */

    token = NULL;

    if (req->token.data) {
        token = ngx_pnalloc(req->pool, req->token.len);
        if (token) {
            ngx_memcpy(token, req->token.data, req->token.len);
        }

        free(req->token.data);
    }

    req->token.data = token;

    if (req->token.data && req->status == NGX_HTTP_OK) {
        /* kept until shortly before it expires (in ms: short-lived
         * tokens are not cut at a second's boundary) */
        ttl = req->ttl > NGX_PT_TOKEN_SHORT
              ? (ngx_msec_t) (req->ttl - NGX_PT_TOKEN_MARGIN) * 1000
              : (ngx_msec_t) req->ttl * 750;

        ngx_pt_shm_token_set(&req->key, &req->token, ttl);

        /* and offered up front next time: no 401 round trip */
        if (req->hint.len) {
            ngx_pt_shm_token_set(&req->hint, &req->token, ttl);
        }

    } else {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "pullthrough: token request to \"%s\" failed: %s",
                      req->url, req->error);
    }

    ngx_pt_auth_finish(req);
}


/*
 * A token request that failed for a transient cause (unreachable, timed
 * out, 429, 5xx) is tried again as exchanges are: up to the remote's
 * max_retries, with the same backoff, within its total_timeout.
 */

static ngx_uint_t
ngx_pt_auth_again(ngx_pt_token_req_t *req)
{
    ngx_msec_t  delay;

    if (req->tries >= req->settings->max_retries || ngx_exiting || ngx_terminate
        || (req->status != 0 && req->status != NGX_HTTP_TOO_MANY_REQUESTS
            && req->status < NGX_HTTP_INTERNAL_SERVER_ERROR))
    {
        return 0;
    }

    delay = ngx_pt_backoff(req->tries,
                           (req->status == NGX_HTTP_TOO_MANY_REQUESTS
                            && req->retry_after > 0)
                           ? (ngx_int_t) ngx_min(req->retry_after,
                                                 NGX_PT_RETRY_AFTER_CAP)
                           : NGX_PT_NO_RETRY_AFTER);

    if (delay == 0
        || ngx_current_msec - req->started + delay
           >= req->settings->token_timeout)
    {
        return 0;
    }

    req->tries++;

    ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                  "pullthrough: token request to \"%s\" failed: %s, "
                  "try %ui of %ui in %M ms", req->url, req->error,
                  req->tries, req->settings->max_retries, delay);

    req->again.handler = ngx_pt_auth_again_handler;
    req->again.data = req;
    req->again.log = ngx_cycle->log;
    req->again.cancelable = 1;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "pullthrough token request: retry in %M ms: \"%s\"",
                   delay, req->url);

    ngx_add_timer(&req->again, delay);

    return 1;
}


static void
ngx_pt_auth_again_handler(ngx_event_t *ev)
{
    ngx_pt_token_req_t *req = ev->data;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "pullthrough token request: try %ui to \"%s\"",
                   req->tries + 1, req->url);

    if (ngx_thread_task_post(req->settings->thread_pool, req->task)
        != NGX_OK)
    {
        req->tries = req->settings->max_retries;
        req->status = 0;
        ngx_cpystrn((u_char *) req->error, (u_char *) "no thread for it",
                    CURL_ERROR_SIZE);
        ngx_pt_auth_done(&req->task->event);
    }
}


/* another worker's token request: its answer appears in the cache */

static void
ngx_pt_auth_poll(ngx_event_t *ev)
{
    ngx_pt_token_req_t *req = ev->data;

    if (ngx_pt_shm_token_get(&req->key, req->pool, &req->token) == NGX_OK) {
        req->status = NGX_HTTP_OK;
        ngx_pt_auth_finish(req);
        return;
    }

    if (ngx_pt_shm_claim(&req->key, NGX_PT_TOKEN_CLAIM)) {
        /* it gave up, or died: asked here */
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                       "pullthrough token request: taken over: \"%s\"",
                       req->url);

        if (ngx_thread_task_post(req->settings->thread_pool, req->task)
            == NGX_OK)
        {
            return;
        }

        ngx_pt_shm_unclaim(&req->key);
        ngx_str_null(&req->token);
        ngx_cpystrn((u_char *) req->error, (u_char *) "no thread for it",
                    CURL_ERROR_SIZE);
        ngx_pt_auth_finish(req);
        return;
    }

    if (ngx_current_msec >= req->deadline) {
        ngx_str_null(&req->token);
        ngx_cpystrn((u_char *) req->error,
                    (u_char *) "another worker's request did not end",
                    CURL_ERROR_SIZE);
        ngx_pt_auth_finish(req);
        return;
    }

    ngx_add_timer(ev, NGX_PT_TOKEN_POLL);
}


/*
 * The waiting exchanges go on, with the token or without: without one,
 * they are told whether the realm refused the credentials (401, 403) or
 * failed otherwise (unreachable, 429, 5xx, an answer without a token).
 */

static void
ngx_pt_auth_finish(ngx_pt_token_req_t *req)
{
    ngx_str_t               *token;
    ngx_uint_t               i, refused;
    ngx_pt_token_waiter_t  **w, *waiter;

    ngx_queue_remove(&req->queue);

    token = (req->token.data && req->status == NGX_HTTP_OK) ? &req->token
                                                            : NULL;
    refused = (req->status == NGX_HTTP_UNAUTHORIZED
               || req->status == NGX_HTTP_FORBIDDEN);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "pullthrough token request: %s, %ui waiting: \"%s\"",
                   token ? "token" : "no token", req->waiters.nelts,
                   req->url);

    w = req->waiters.elts;

    for (i = 0; i < req->waiters.nelts; i++) {
        waiter = w[i];

        if (waiter->handler == NULL) {
            /* its exchange ended meanwhile */
            continue;
        }

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                       "pullthrough token: waiter %p woken", waiter);

        waiter->handler(waiter->data, token, refused);
    }

    ngx_destroy_pool(req->pool);
}
