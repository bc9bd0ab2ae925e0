
/*
 * ngx_pullthrough: upstream authentication by bearer token, as Docker Hub,
 * ghcr.io, quay.io and token-auth registries ask for it. A 401 with a
 * Bearer challenge sends a token request to the challenge's realm; libcurl
 * does it in a thread pool task, the exchange waiting meanwhile (nothing
 * blocks the event loop). Tokens are kept in shared memory, so that every
 * worker uses them, keyed by remote, realm, service and scope: a token is
 * never sent for another remote.
 */


#include <ngx_pt.h>

#include <curl/curl.h>


#define NGX_PT_TOKEN_ZONE_SIZE   (1024 * 1024)
#define NGX_PT_TOKEN_MAX_BODY    (256 * 1024)
#define NGX_PT_TOKEN_DEFAULT_TTL 60
#define NGX_PT_TOKEN_CLAIM       15      /* seconds others wait for one */


typedef struct {
    ngx_rbtree_t                rbtree;
    ngx_rbtree_node_t           sentinel;
    ngx_queue_t                 lru;
} ngx_pt_tokens_sh_t;


typedef struct {
    ngx_rbtree_node_t           node;
    ngx_queue_t                 queue;
    uint64_t                    expires;     /* wall clock, ms */
    size_t                      key_len;
    size_t                      token_len;
    u_char                      data[1];     /* key, then token */
} ngx_pt_token_node_t;


typedef struct {
    ngx_pt_tokens_sh_t         *sh;
    ngx_slab_pool_t            *shpool;
} ngx_pt_tokens_t;


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
    ngx_thread_pool_t          *thread_pool;
    ngx_event_t                 poll;        /* another worker asks */
    ngx_msec_t                  deadline;
    ngx_str_t                   key;
    ngx_str_t                   hint;        /* remote and default scope */
    char                       *url;
    ngx_str_t                   username;
    ngx_str_t                   password;
    ngx_pt_link_t               link;        /* proxy, CA, client cert */
    long                        timeout_ms;
    ngx_msec_t                  started;
    ngx_uint_t                  tries;
    ngx_uint_t                  max_retries;
    ngx_event_t                 again;       /* backoff before a retry */

    /* results */
    long                        status;
    curl_off_t                  retry_after;
    ngx_str_t                   token;
    time_t                      ttl;
    char                        error[CURL_ERROR_SIZE];
} ngx_pt_token_req_t;


static ngx_int_t ngx_pt_auth_zone_init(ngx_shm_zone_t *shm_zone, void *data);
static ngx_int_t ngx_pt_auth_dup(ngx_pool_t *pool, ngx_str_t *s);
static ngx_pt_token_req_t *ngx_pt_auth_in_flight(ngx_str_t *key);
static ngx_int_t ngx_pt_auth_wait(ngx_pt_token_req_t *req, ngx_pt_fetch_t *f);
static void ngx_pt_auth_resume(ngx_pt_token_req_t *req, ngx_pt_fetch_t *f);
static ngx_int_t ngx_pt_auth_set_bearer(ngx_pt_fetch_t *f, ngx_str_t *token);
static ngx_int_t ngx_pt_auth_basic_key(ngx_pool_t *pool, ngx_str_t *remote,
    ngx_str_t *key);
static ngx_int_t ngx_pt_auth_hint_key(ngx_pool_t *pool,
    ngx_pt_upstream_auth_t *auth, ngx_str_t *key);
static ngx_int_t ngx_pt_auth_param(ngx_str_t *header, const char *name,
    ngx_pool_t *pool, ngx_str_t *value);
static ngx_int_t ngx_pt_auth_cached(ngx_str_t *key, ngx_pool_t *pool,
    ngx_str_t *token);
static void ngx_pt_auth_cache(ngx_str_t *key, ngx_str_t *token,
    ngx_msec_t ttl);
static uint64_t ngx_pt_auth_clock(void);
static ngx_pt_token_node_t *ngx_pt_auth_live(ngx_str_t *key);
static ngx_pt_token_node_t *ngx_pt_auth_lookup(ngx_str_t *key,
    uint32_t hash);
static void ngx_pt_auth_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_uint_t ngx_pt_auth_may_send(ngx_str_t *url);
static void ngx_pt_auth_thread(void *data, ngx_log_t *log);
static size_t ngx_pt_auth_write(char *ptr, size_t size, size_t nmemb,
    void *userdata);
static void ngx_pt_auth_done(ngx_event_t *ev);
static ngx_uint_t ngx_pt_auth_again(ngx_pt_token_req_t *req);
static void ngx_pt_auth_again_handler(ngx_event_t *ev);
static void ngx_pt_auth_poll(ngx_event_t *ev);
static void ngx_pt_auth_finish(ngx_pt_token_req_t *req);
static ngx_uint_t ngx_pt_auth_claim(ngx_str_t *key);
static void ngx_pt_auth_release(ngx_str_t *key);
static ngx_uint_t ngx_pt_auth_cache_add(ngx_str_t *key, ngx_str_t *value,
    ngx_msec_t ttl);
static void ngx_pt_auth_uncache(ngx_str_t *key);
static void ngx_pt_auth_conc_reset(void);
static void ngx_pt_auth_store_locked(ngx_pt_tokens_t *tokens, ngx_str_t *key,
    uint32_t hash, ngx_str_t *token, ngx_msec_t ttl);


typedef struct {
    void                       *req;
    ngx_pt_fetch_t             *fetch;       /* NULL once it ended */
} ngx_pt_token_waiter_t;


static ngx_shm_zone_t  *ngx_pt_tokens_zone;
static ngx_queue_t      ngx_pt_tokens_in_flight;
static ngx_str_t        ngx_pt_tokens_name = ngx_string("pullthrough_tokens");


ngx_int_t
ngx_pt_auth_zone_add(ngx_conf_t *cf)
{
    ngx_shm_zone_t   *zone;
    ngx_pt_tokens_t  *tokens;

    zone = ngx_shared_memory_add(cf, &ngx_pt_tokens_name,
                                 NGX_PT_TOKEN_ZONE_SIZE,
                                 &ngx_http_pullthrough_module);
    if (zone == NULL) {
        return NGX_ERROR;
    }

    if (zone->data == NULL) {
        tokens = ngx_pcalloc(cf->pool, sizeof(ngx_pt_tokens_t));
        if (tokens == NULL) {
            return NGX_ERROR;
        }

        zone->init = ngx_pt_auth_zone_init;
        zone->data = tokens;
    }

    ngx_pt_tokens_zone = zone;

    return NGX_OK;
}


static ngx_int_t
ngx_pt_auth_zone_init(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_pt_tokens_t  *otokens = data;

    ngx_pt_tokens_t  *tokens;

    tokens = shm_zone->data;

    if (otokens) {
        /* a reload keeps the tokens */
        tokens->sh = otokens->sh;
        tokens->shpool = otokens->shpool;
        return NGX_OK;
    }

    tokens->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        tokens->sh = tokens->shpool->data;
        return NGX_OK;
    }

    tokens->sh = ngx_slab_alloc(tokens->shpool, sizeof(ngx_pt_tokens_sh_t));
    if (tokens->sh == NULL) {
        return NGX_ERROR;
    }

    tokens->shpool->data = tokens->sh;

    ngx_rbtree_init(&tokens->sh->rbtree, &tokens->sh->sentinel,
                    ngx_pt_auth_insert_value);
    ngx_queue_init(&tokens->sh->lru);

    tokens->shpool->log_nomem = 0;

    return NGX_OK;
}


ngx_int_t
ngx_pt_auth_init_process(ngx_cycle_t *cycle)
{
    ngx_queue_init(&ngx_pt_tokens_in_flight);

    ngx_pt_auth_conc_reset();

    /* before any request: curl_global_init() is not thread-safe */

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "pullthrough: curl_global_init() failed");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Called with a 401 that carries a Bearer challenge. NGX_OK: a token is
 * on its way (or was cached) and the exchange restarts with it; NGX_DECLINED:
 * nothing to try, the 401 stands.
 */

ngx_int_t
ngx_pt_auth_bearer(ngx_pt_fetch_t *f)
{
    u_char                  *p;
    size_t                   len;
    ngx_str_t                realm, service, scope, token, *esc;
    ngx_pool_t              *pool;
    ngx_thread_task_t       *task;
    ngx_pt_token_req_t      *req, *other;

    if (f->www_authenticate.len < 7
        || ngx_strncasecmp(f->www_authenticate.data, (u_char *) "Bearer ", 7)
           != 0
        || f->r == NULL || f->auth == NULL)
    {
        return NGX_DECLINED;
    }

    if (ngx_pt_auth_param(&f->www_authenticate, "realm", f->pool, &realm)
        != NGX_OK
        || realm.len == 0)
    {
        ngx_log_error(NGX_LOG_ERR, f->log, 0,
                      "pullthrough: upstream Bearer challenge without realm");
        return NGX_DECLINED;
    }

    if (ngx_strncasecmp(realm.data, (u_char *) "https://", 8) != 0
        && ngx_strncasecmp(realm.data, (u_char *) "http://", 7) != 0)
    {
        ngx_log_error(NGX_LOG_ERR, f->log, 0,
                      "pullthrough: upstream token realm \"%V\" is not an "
                      "http(s) URL", &realm);
        return NGX_DECLINED;
    }

    /* user information in a realm is a way to mislead about its host */

    for (p = realm.data + 7; p < realm.data + realm.len; p++) {
        if (*p == '/' || *p == '?' || *p == '#') {
            break;
        }

        if (*p == '@') {
            ngx_log_error(NGX_LOG_ERR, f->log, 0,
                          "pullthrough: upstream token realm \"%V\" has "
                          "user information: refused", &realm);
            return NGX_DECLINED;
        }
    }

    (void) ngx_pt_auth_param(&f->www_authenticate, "service", f->pool,
                             &service);

    if (ngx_pt_auth_param(&f->www_authenticate, "scope", f->pool, &scope)
        != NGX_OK
        || scope.len == 0)
    {
        scope.len = sizeof("repository::pull") - 1 + f->auth->name.len;
        scope.data = ngx_pnalloc(f->pool, scope.len);
        if (scope.data == NULL) {
            return NGX_DECLINED;
        }

        ngx_sprintf(scope.data, "repository:%V:pull", &f->auth->name);
    }

    /* the cache key: the remote first, so remotes never share tokens */

    pool = ngx_create_pool(2048, f->log);
    if (pool == NULL) {
        return NGX_DECLINED;
    }

    task = ngx_thread_task_alloc(pool, sizeof(ngx_pt_token_req_t));
    if (task == NULL) {
        goto failed;
    }

    req = task->ctx;
    ngx_memzero(req, sizeof(ngx_pt_token_req_t));
    req->pool = pool;

    req->key.len = f->auth->remote.len + realm.len + service.len + scope.len
                   + 3;
    req->key.data = ngx_pnalloc(pool, req->key.len);
    if (req->key.data == NULL) {
        goto failed;
    }

    ngx_sprintf(req->key.data, "%V\n%V\n%V\n%V", &f->auth->remote, &realm,
                &service, &scope);

    /* a token sent up front and refused is not asked of the cache again */

    if (!f->preempted
        && ngx_pt_auth_cached(&req->key, f->pool, &token) == NGX_OK)
    {
        ngx_destroy_pool(pool);
        goto retry;
    }

    /* the same token already on its way: wait for it */

    other = ngx_pt_auth_in_flight(&req->key);

    if (other) {
        ngx_destroy_pool(pool);
        return ngx_pt_auth_wait(other, f);
    }

    if (ngx_pt_auth_hint_key(pool, f->auth, &req->hint) != NGX_OK
        || ngx_array_init(&req->waiters, pool, 4,
                          sizeof(ngx_pt_token_waiter_t *)) != NGX_OK)
    {
        goto failed;
    }

    /* realm?service=...&scope=..., the values escaped */

    esc = ngx_palloc(pool, 2 * sizeof(ngx_str_t));
    if (esc == NULL) {
        goto failed;
    }

    esc[0].len = service.len
                 + 2 * ngx_escape_uri(NULL, service.data, service.len,
                                      NGX_ESCAPE_ARGS);
    esc[1].len = scope.len
                 + 2 * ngx_escape_uri(NULL, scope.data, scope.len,
                                      NGX_ESCAPE_ARGS);

    len = realm.len + esc[0].len + esc[1].len + sizeof("?service=&scope=");

    req->url = ngx_pnalloc(pool, len);
    if (req->url == NULL) {
        goto failed;
    }

    p = ngx_cpymem(req->url, realm.data, realm.len);
    *p++ = ngx_strlchr(realm.data, realm.data + realm.len, '?') ? '&' : '?';

    if (service.len) {
        p = ngx_cpymem(p, "service=", 8);
        p = (u_char *) ngx_escape_uri(p, service.data, service.len,
                                      NGX_ESCAPE_ARGS);
        *p++ = '&';
    }

    p = ngx_cpymem(p, "scope=", 6);
    p = (u_char *) ngx_escape_uri(p, scope.data, scope.len, NGX_ESCAPE_ARGS);
    *p = '\0';

    /*
     * The remote's credentials go to the realm only over https or to this
     * machine: a challenge must not be a way to collect them in clear.
     */

    if (f->auth->username.len) {
        realm.len = ngx_strlen(req->url);
        realm.data = (u_char *) req->url;

        if (ngx_pt_auth_may_send(&realm)) {
            /* C strings for libcurl */

            req->username.data = ngx_pnalloc(pool, f->auth->username.len + 1);
            req->password.data = ngx_pnalloc(pool, f->auth->password.len + 1);

            if (req->username.data == NULL || req->password.data == NULL) {
                goto failed;
            }

            ngx_cpystrn(req->username.data, f->auth->username.data,
                        f->auth->username.len + 1);
            req->username.len = f->auth->username.len;

            ngx_cpystrn(req->password.data, f->auth->password.data,
                        f->auth->password.len + 1);
            req->password.len = f->auth->password.len;

        } else {
            ngx_log_error(NGX_LOG_WARN, f->log, 0,
                          "pullthrough: credentials are not sent to the "
                          "token realm \"%s\": it is neither https nor "
                          "local", req->url);
        }
    }

    if (ngx_pt_link_copy(pool, &req->link, &f->auth->link) != NGX_OK) {
        goto failed;
    }

    req->timeout_ms = f->auth->timeout_ms;
    req->started = ngx_current_msec;
    req->max_retries = f->max_retries;

    task->handler = ngx_pt_auth_thread;
    task->event.handler = ngx_pt_auth_done;
    task->event.data = req;
    req->task = task;
    req->thread_pool = f->auth->thread_pool;

    /*
     * One request for all workers: the first claims it in the shared
     * zone, the others watch the cache for its answer.
     */

    if (ngx_pt_auth_claim(&req->key)) {
        if (ngx_thread_task_post(req->thread_pool, task) != NGX_OK) {
            ngx_pt_auth_release(&req->key);
            goto failed;
        }

    } else {
        req->poll.handler = ngx_pt_auth_poll;
        req->poll.data = req;
        req->poll.log = ngx_cycle->log;
        req->poll.cancelable = 1;
        req->deadline = ngx_current_msec + NGX_PT_TOKEN_CLAIM * 1000;

        ngx_add_timer(&req->poll, 20);
    }

    ngx_queue_insert_tail(&ngx_pt_tokens_in_flight, &req->queue);

    if (ngx_pt_auth_wait(req, f) != NGX_OK) {
        /* the task runs on: its answer will be cached for others */
        return NGX_DECLINED;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, f->log, 0,
                   "pullthrough: token request to \"%s\"", req->url);

    return NGX_OK;

retry:

    /* a cached token: straight back to the upstream */

    if (ngx_pt_auth_set_bearer(f, &token) != NGX_OK) {
        return NGX_DECLINED;
    }

    f->auth_tried = 1;

    return ngx_pt_fetch_start(f) == NGX_OK ? NGX_OK : NGX_DECLINED;

failed:

    ngx_destroy_pool(pool);
    return NGX_DECLINED;
}


/* "<remote>\n\n\nrepository:<name>:pull", the token a pull usually needs */

static ngx_int_t
ngx_pt_auth_hint_key(ngx_pool_t *pool, ngx_pt_upstream_auth_t *auth,
    ngx_str_t *key)
{
    key->len = auth->remote.len + auth->name.len
               + sizeof("\n\n\nrepository::pull") - 1;
    key->data = ngx_pnalloc(pool, key->len);
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(key->data, "%V\n\n\nrepository:%V:pull", &auth->remote,
                &auth->name);

    return NGX_OK;
}


/*
 * A token this remote got for this repository before, sent with the first
 * request: registries that want one would otherwise answer 401 each time.
 */

void
ngx_pt_auth_preempt(ngx_pt_fetch_t *f)
{
    u_char     seen;
    ngx_str_t  key, token;

    /* a remote whose upstream asked for Basic credentials: them first */

    if (f->basic.len && f->authorization.len == 0
        && ngx_pt_auth_basic_key(f->pool, &f->remote, &key) == NGX_OK
        && ngx_pt_shared_read(&key, &seen, 1) == NGX_OK)
    {
        f->authorization = f->basic;
        return;
    }

    if (f->auth == NULL || f->authorization.len
        || ngx_pt_auth_hint_key(f->pool, f->auth, &key) != NGX_OK
        || ngx_pt_auth_cached(&key, f->pool, &token) != NGX_OK)
    {
        return;
    }

    if (ngx_pt_auth_set_bearer(f, &token) == NGX_OK) {
        f->preempted = 1;
    }
}


/*
 * The upstream of f's remote answered a Basic challenge: its credentials
 * go with the first request of its exchanges from now on (an hour after
 * the last challenge), which saves a round trip each.
 */

void
ngx_pt_auth_basic_seen(ngx_pt_fetch_t *f)
{
    ngx_str_t  key, value;

    if (ngx_pt_auth_basic_key(f->pool, &f->remote, &key) != NGX_OK) {
        return;
    }

    ngx_str_set(&value, "1");

    ngx_pt_auth_cache(&key, &value, 3600 * 1000);
}


static ngx_int_t
ngx_pt_auth_basic_key(ngx_pool_t *pool, ngx_str_t *remote, ngx_str_t *key)
{
    key->len = sizeof("basic\n") - 1 + remote->len;
    key->data = ngx_pnalloc(pool, key->len);
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(key->data, "basic\n%V", remote);

    return NGX_OK;
}


static ngx_int_t
ngx_pt_auth_set_bearer(ngx_pt_fetch_t *f, ngx_str_t *token)
{
    u_char  *p;

    p = ngx_pnalloc(f->pool, sizeof("Bearer ") - 1 + token->len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    f->authorization.data = p;
    f->authorization.len = ngx_cpymem(ngx_cpymem(p, "Bearer ", 7),
                                      token->data, token->len) - p;

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


/* f waits for req's token; the end of f's request lets go of it */

static ngx_int_t
ngx_pt_auth_wait(ngx_pt_token_req_t *req, ngx_pt_fetch_t *f)
{
    ngx_pool_cleanup_t      *cln;
    ngx_pt_token_waiter_t   *w, **wp;

    w = ngx_palloc(req->pool, sizeof(ngx_pt_token_waiter_t));
    wp = ngx_array_push(&req->waiters);
    cln = ngx_pool_cleanup_add(f->r->pool, 0);

    if (w == NULL || wp == NULL || cln == NULL) {
        return NGX_ERROR;
    }

    w->req = req;
    w->fetch = f;
    *wp = w;

    cln->handler = ngx_pt_auth_orphan;
    cln->data = w;
    f->token_cln = cln;

    return NGX_OK;
}


void
ngx_pt_auth_orphan(void *data)
{
    ngx_pt_token_waiter_t *w = data;

    ngx_pt_fetch_t  *f;

    f = w->fetch;
    w->fetch = NULL;

    if (f) {
        f->token_cln = NULL;
        f->r = NULL;

        if (f->aborted) {
            f->aborted(f);
        }
    }
}


ngx_pt_upstream_auth_t *
ngx_pt_auth_copy(ngx_pool_t *pool, ngx_pt_upstream_auth_t *src)
{
    ngx_pt_upstream_auth_t  *a;

    a = ngx_palloc(pool, sizeof(ngx_pt_upstream_auth_t));
    if (a == NULL) {
        return NULL;
    }

    *a = *src;

    if (ngx_pt_auth_dup(pool, &a->remote) != NGX_OK
        || ngx_pt_auth_dup(pool, &a->name) != NGX_OK
        || ngx_pt_auth_dup(pool, &a->username) != NGX_OK
        || ngx_pt_auth_dup(pool, &a->password) != NGX_OK
        || ngx_pt_link_copy(pool, &a->link, &src->link) != NGX_OK)
    {
        return NULL;
    }

    return a;
}


static ngx_int_t
ngx_pt_auth_dup(ngx_pool_t *pool, ngx_str_t *s)
{
    u_char  *p;

    if (s->len == 0) {
        return NGX_OK;
    }

    p = ngx_pnalloc(pool, s->len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, s->data, s->len);
    s->data = p;

    return NGX_OK;
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
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "ngx_pullthrough");
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, req->timeout_ms);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 5L);

    if (req->username.len) {
        /* libcurl keeps them from other hosts a redirect leads to */
        curl_easy_setopt(curl, CURLOPT_HTTPAUTH, (long) CURLAUTH_BASIC);
        curl_easy_setopt(curl, CURLOPT_USERNAME, (char *) req->username.data);
        curl_easy_setopt(curl, CURLOPT_PASSWORD, (char *) req->password.data);
    }

    /* the remote's forward proxy, trusted CA and client certificate */
    ngx_pt_link_apply(curl, &req->link);

    rc = curl_easy_perform(curl);

    if (rc == CURLE_OK) {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &req->status);
        curl_easy_getinfo(curl, CURLINFO_RETRY_AFTER, &req->retry_after);
    }

    curl_easy_cleanup(curl);

    if (rc != CURLE_OK || req->status != 200) {
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

    doc = yajl_tree_parse((char *) body.start, NULL, 0);

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

    if (req->token.data == NULL && ngx_pt_auth_again(req)) {
        /* still claimed: the others wait for the next try */
        return;
    }

    ngx_pt_auth_release(&req->key);

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

    if (req->token.data && req->status == 200) {
        /* kept until shortly before it expires (in ms: short-lived
         * tokens are not cut at a second's boundary) */
        ttl = req->ttl > 20 ? (ngx_msec_t) (req->ttl - 10) * 1000
                            : (ngx_msec_t) req->ttl * 750;

        ngx_pt_auth_cache(&req->key, &req->token, ttl);

        /* and offered up front next time: no 401 round trip */
        if (req->hint.len) {
            ngx_pt_auth_cache(&req->hint, &req->token, ttl);
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

    if (req->tries >= req->max_retries || ngx_exiting || ngx_terminate
        || (req->status != 0 && req->status != 429 && req->status < 500))
    {
        return 0;
    }

    delay = ngx_pt_backoff(req->tries,
                           (req->status == 429 && req->retry_after > 0)
                           ? (ngx_int_t) ngx_min(req->retry_after, 3600)
                           : NGX_PT_NO_RETRY_AFTER);

    if (delay == 0
        || ngx_current_msec - req->started + delay
           >= (ngx_msec_t) req->timeout_ms)
    {
        return 0;
    }

    req->tries++;

    ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                  "pullthrough: token request to \"%s\" failed: %s, "
                  "try %ui of %ui in %M ms", req->url, req->error,
                  req->tries, req->max_retries, delay);

    req->again.handler = ngx_pt_auth_again_handler;
    req->again.data = req;
    req->again.log = ngx_cycle->log;
    req->again.cancelable = 1;

    ngx_add_timer(&req->again, delay);

    return 1;
}


static void
ngx_pt_auth_again_handler(ngx_event_t *ev)
{
    ngx_pt_token_req_t *req = ev->data;

    if (ngx_thread_task_post(req->thread_pool, req->task) != NGX_OK) {
        req->tries = req->max_retries;
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

    if (ngx_pt_auth_cached(&req->key, req->pool, &req->token) == NGX_OK) {
        req->status = 200;
        ngx_pt_auth_finish(req);
        return;
    }

    if (ngx_pt_auth_claim(&req->key)) {
        /* it gave up, or died: asked here */
        if (ngx_thread_task_post(req->thread_pool, req->task) == NGX_OK) {
            return;
        }

        ngx_pt_auth_release(&req->key);
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

    ngx_add_timer(ev, 20);
}


/* the waiting exchanges go on, with the token or without */

static void
ngx_pt_auth_finish(ngx_pt_token_req_t *req)
{
    ngx_uint_t               i;
    ngx_pt_fetch_t          *f;
    ngx_connection_t        *c;
    ngx_pt_token_waiter_t  **w;

    ngx_queue_remove(&req->queue);

    w = req->waiters.elts;

    for (i = 0; i < req->waiters.nelts; i++) {
        f = w[i]->fetch;

        if (f == NULL) {
            /* its request ended meanwhile */
            continue;
        }

        w[i]->fetch = NULL;

        if (f->token_cln) {
            f->token_cln->handler = NULL;
            f->token_cln = NULL;
        }

        c = f->r->connection;

        ngx_pt_auth_resume(req, f);

        ngx_http_run_posted_requests(c);
    }

    ngx_destroy_pool(req->pool);
}


/* the claim of a token request, shared by the workers */

static ngx_uint_t
ngx_pt_auth_claim(ngx_str_t *key)
{
    u_char     buf[512];
    ngx_str_t  claim, none;

    if (key->len > sizeof(buf) - 6) {
        return 1;
    }

    claim.data = buf;
    claim.len = ngx_sprintf(buf, "claim\n%V", key) - buf;

    ngx_str_set(&none, "-");

    return ngx_pt_auth_cache_add(&claim, &none, NGX_PT_TOKEN_CLAIM * 1000);
}


static void
ngx_pt_auth_release(ngx_str_t *key)
{
    u_char     buf[512];
    ngx_str_t  claim;

    if (key->len > sizeof(buf) - 6) {
        return;
    }

    claim.data = buf;
    claim.len = ngx_sprintf(buf, "claim\n%V", key) - buf;

    ngx_pt_auth_uncache(&claim);
}


/*
 * Back to the upstream with the token. Without one, the upstream's 401
 * stands when the realm refused the credentials; a realm that failed
 * otherwise (unreachable, 429, 5xx, an answer without a token) is a 502,
 * not a refusal.
 */

static void
ngx_pt_auth_resume(ngx_pt_token_req_t *req, ngx_pt_fetch_t *f)
{
    if (req->token.data == NULL || req->status != 200) {

        if (req->status != NGX_HTTP_UNAUTHORIZED
            && req->status != NGX_HTTP_FORBIDDEN)
        {
            ngx_pt_fetch_fail(f, NGX_HTTP_BAD_GATEWAY);
            return;
        }

        ngx_pt_fetch_detach(f);
        f->rc = NGX_OK;
        f->done(f, NGX_OK);
        return;
    }

    f->auth_tried = 1;

    if (ngx_pt_auth_set_bearer(f, &req->token) != NGX_OK
        || ngx_pt_fetch_start(f) != NGX_OK)
    {
        ngx_pt_fetch_fail(f, NGX_HTTP_INTERNAL_SERVER_ERROR);
    }
}


/*
 * A remote's rate_limit, for all workers: a token bucket in the shared
 * zone ("rate\n<remote id>"), holding up to one second of requests.
 * Returns how long the caller must wait before its request (0: now); the
 * request is counted either way, so waiters queue up in order.
 */

ngx_msec_t
ngx_pt_auth_rate_take(ngx_str_t *remote, ngx_uint_t rate)
{
    u_char                buf[NGX_PT_UUID_LEN + 8];
    double                tokens, wait;
    uint32_t              hash;
    ngx_str_t             key, value;
    ngx_msec_t            now;
    ngx_pt_tokens_t      *tokens_zone;
    ngx_pt_token_node_t  *tn;

    struct {
        double            tokens;
        ngx_msec_t        last;
    } state;

    if (ngx_pt_tokens_zone == NULL || rate == 0
        || remote->len > NGX_PT_UUID_LEN)
    {
        return 0;
    }

    key.data = buf;
    key.len = ngx_sprintf(buf, "rate\n%V", remote) - buf;

    tokens_zone = ngx_pt_tokens_zone->data;
    hash = ngx_crc32_short(key.data, key.len);
    now = ngx_current_msec;

    ngx_shmtx_lock(&tokens_zone->shpool->mutex);

    tn = ngx_pt_auth_lookup(&key, hash);

    if (tn && tn->token_len == sizeof(state)) {
        ngx_memcpy(&state, tn->data + tn->key_len, sizeof(state));

        tokens = state.tokens
                 + (double) (ngx_msec_int_t) (now - state.last) * rate / 1000;
        if (tokens > (double) rate) {
            tokens = (double) rate;
        }

    } else {
        tokens = (double) rate;
    }

    tokens -= 1;

    state.tokens = tokens;
    state.last = now;

    value.data = (u_char *) &state;
    value.len = sizeof(state);

    ngx_pt_auth_store_locked(tokens_zone, &key, hash, &value, 3600 * 1000);

    ngx_shmtx_unlock(&tokens_zone->shpool->mutex);

    if (tokens >= 0) {
        return 0;
    }

    wait = -tokens * 1000 / rate;

    return (ngx_msec_t) wait + 1;
}


/*
 * A remote's download_concurrency, for all workers: the number of its
 * upstream exchanges in progress, counted per worker ("conc\n<remote id>",
 * one counter per worker slot) so that a worker that dies does not keep
 * its share: its replacement starts its slot again from zero.
 */

#define NGX_PT_CONC_SLOTS  64

typedef struct {
    uint32_t              count[NGX_PT_CONC_SLOTS];
} ngx_pt_conc_t;


static ngx_uint_t
ngx_pt_auth_conc_update(ngx_str_t *remote, ngx_uint_t limit, ngx_int_t add)
{
    u_char                buf[NGX_PT_UUID_LEN + 8];
    uint32_t              hash, total;
    ngx_str_t             key, value;
    ngx_uint_t            i, slot, ok;
    ngx_pt_conc_t         conc;
    ngx_pt_tokens_t      *zone;
    ngx_pt_token_node_t  *tn;

    if (ngx_pt_tokens_zone == NULL || remote->len > NGX_PT_UUID_LEN) {
        return 1;
    }

    key.data = buf;
    key.len = ngx_sprintf(buf, "conc\n%V", remote) - buf;

    zone = ngx_pt_tokens_zone->data;
    hash = ngx_crc32_short(key.data, key.len);
    slot = ngx_worker % NGX_PT_CONC_SLOTS;

    ngx_shmtx_lock(&zone->shpool->mutex);

    tn = ngx_pt_auth_lookup(&key, hash);

    if (tn && tn->token_len == sizeof(ngx_pt_conc_t)) {
        ngx_memcpy(&conc, tn->data + tn->key_len, sizeof(ngx_pt_conc_t));

    } else {
        ngx_memzero(&conc, sizeof(ngx_pt_conc_t));
    }

    ok = 1;

    if (add > 0) {
        for (total = 0, i = 0; i < NGX_PT_CONC_SLOTS; i++) {
            total += conc.count[i];
        }

        ok = (total < limit);

        if (ok) {
            conc.count[slot]++;
        }

    } else if (conc.count[slot]) {
        conc.count[slot]--;
    }

    value.data = (u_char *) &conc;
    value.len = sizeof(ngx_pt_conc_t);
    ngx_pt_auth_store_locked(zone, &key, hash, &value, 86400 * 1000);

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return ok;
}


ngx_uint_t
ngx_pt_auth_conc_acquire(ngx_str_t *remote, ngx_uint_t limit)
{
    return ngx_pt_auth_conc_update(remote, limit, 1);
}


void
ngx_pt_auth_conc_release(ngx_str_t *remote)
{
    (void) ngx_pt_auth_conc_update(remote, 0, -1);
}


/* a new worker in a slot: what its predecessor counted is no more */

static void
ngx_pt_auth_conc_reset(void)
{
    ngx_uint_t            slot;
    ngx_queue_t          *q;
    ngx_pt_conc_t        *conc;
    ngx_pt_tokens_t      *zone;
    ngx_pt_token_node_t  *tn;

    if (ngx_pt_tokens_zone == NULL) {
        return;
    }

    zone = ngx_pt_tokens_zone->data;
    slot = ngx_worker % NGX_PT_CONC_SLOTS;

    ngx_shmtx_lock(&zone->shpool->mutex);

    for (q = ngx_queue_head(&zone->sh->lru);
         q != ngx_queue_sentinel(&zone->sh->lru);
         q = ngx_queue_next(q))
    {
        tn = ngx_queue_data(q, ngx_pt_token_node_t, queue);

        if (tn->key_len > 5 && ngx_strncmp(tn->data, "conc\n", 5) == 0
            && tn->token_len == sizeof(ngx_pt_conc_t))
        {
            conc = (ngx_pt_conc_t *) (tn->data + tn->key_len);
            conc->count[slot] = 0;
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);
}


/*
 * The zone for the other parts: small fixed-size values by key (the state
 * of blob fills, which workers share).
 */

ngx_int_t
ngx_pt_shared_read(ngx_str_t *key, void *value, size_t size)
{
    ngx_int_t             rc;
    ngx_pt_tokens_t      *zone;
    ngx_pt_token_node_t  *tn;

    if (ngx_pt_tokens_zone == NULL) {
        return NGX_DECLINED;
    }

    zone = ngx_pt_tokens_zone->data;

    ngx_shmtx_lock(&zone->shpool->mutex);

    tn = ngx_pt_auth_live(key);

    if (tn && tn->token_len == size) {
        ngx_memcpy(value, tn->data + tn->key_len, size);
        rc = NGX_OK;

    } else {
        rc = NGX_DECLINED;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return rc;
}


void
ngx_pt_shared_write(ngx_str_t *key, void *value, size_t size, ngx_msec_t ttl)
{
    ngx_str_t  v;

    v.data = value;
    v.len = size;

    ngx_pt_auth_cache(key, &v, ttl);
}


/* 1 when stored: no unexpired value had the key */

ngx_uint_t
ngx_pt_shared_claim(ngx_str_t *key, void *value, size_t size, ngx_msec_t ttl)
{
    ngx_str_t  v;

    v.data = value;
    v.len = size;

    return ngx_pt_auth_cache_add(key, &v, ttl);
}


/* the shared token cache */

static ngx_int_t
ngx_pt_auth_cached(ngx_str_t *key, ngx_pool_t *pool, ngx_str_t *token)
{
    ngx_pt_tokens_t      *tokens;
    ngx_pt_token_node_t  *tn;

    if (ngx_pt_tokens_zone == NULL) {
        return NGX_DECLINED;
    }

    tokens = ngx_pt_tokens_zone->data;

    ngx_shmtx_lock(&tokens->shpool->mutex);

    tn = ngx_pt_auth_live(key);

    if (tn == NULL) {
        ngx_shmtx_unlock(&tokens->shpool->mutex);
        return NGX_DECLINED;
    }

    token->len = tn->token_len;
    token->data = ngx_pnalloc(pool, token->len);

    if (token->data) {
        ngx_memcpy(token->data, tn->data + tn->key_len, token->len);
    }

    ngx_queue_remove(&tn->queue);
    ngx_queue_insert_head(&tokens->sh->lru, &tn->queue);

    ngx_shmtx_unlock(&tokens->shpool->mutex);

    return token->data ? NGX_OK : NGX_DECLINED;
}


/* stores key unless an unexpired entry has it: 1 when stored */

static ngx_uint_t
ngx_pt_auth_cache_add(ngx_str_t *key, ngx_str_t *value, ngx_msec_t ttl)
{
    uint32_t              hash;
    ngx_pt_tokens_t      *tokens;
    ngx_pt_token_node_t  *tn;

    if (ngx_pt_tokens_zone == NULL) {
        return 1;
    }

    tokens = ngx_pt_tokens_zone->data;
    hash = ngx_crc32_short(key->data, key->len);

    ngx_shmtx_lock(&tokens->shpool->mutex);

    tn = ngx_pt_auth_lookup(key, hash);

    if (tn && tn->expires > ngx_pt_auth_clock()) {
        ngx_shmtx_unlock(&tokens->shpool->mutex);
        return 0;
    }

    ngx_pt_auth_store_locked(tokens, key, hash, value, ttl);

    ngx_shmtx_unlock(&tokens->shpool->mutex);

    return 1;
}


static void
ngx_pt_auth_uncache(ngx_str_t *key)
{
    uint32_t              hash;
    ngx_pt_tokens_t      *tokens;
    ngx_pt_token_node_t  *tn;

    if (ngx_pt_tokens_zone == NULL) {
        return;
    }

    tokens = ngx_pt_tokens_zone->data;
    hash = ngx_crc32_short(key->data, key->len);

    ngx_shmtx_lock(&tokens->shpool->mutex);

    tn = ngx_pt_auth_lookup(key, hash);

    if (tn) {
        ngx_rbtree_delete(&tokens->sh->rbtree, &tn->node);
        ngx_queue_remove(&tn->queue);
        ngx_slab_free_locked(tokens->shpool, tn);
    }

    ngx_shmtx_unlock(&tokens->shpool->mutex);
}


static void
ngx_pt_auth_cache(ngx_str_t *key, ngx_str_t *token, ngx_msec_t ttl)
{
    uint32_t          hash;
    ngx_pt_tokens_t  *tokens;

    if (ngx_pt_tokens_zone == NULL) {
        return;
    }

    tokens = ngx_pt_tokens_zone->data;
    hash = ngx_crc32_short(key->data, key->len);

    ngx_shmtx_lock(&tokens->shpool->mutex);
    ngx_pt_auth_store_locked(tokens, key, hash, token, ttl);
    ngx_shmtx_unlock(&tokens->shpool->mutex);
}


static void
ngx_pt_auth_store_locked(ngx_pt_tokens_t *tokens, ngx_str_t *key,
    uint32_t hash, ngx_str_t *token, ngx_msec_t ttl)
{
    size_t                size;
    ngx_uint_t            tries;
    ngx_queue_t          *q;
    ngx_pt_token_node_t  *tn;

    size = offsetof(ngx_pt_token_node_t, data) + key->len + token->len;

    tn = ngx_pt_auth_lookup(key, hash);

    if (tn && tn->token_len == token->len) {
        /* a value of the same size (a fill's progress, a count): in place */
        ngx_memcpy(tn->data + tn->key_len, token->data, token->len);
        tn->expires = ngx_pt_auth_clock() + ttl;

        ngx_queue_remove(&tn->queue);
        ngx_queue_insert_head(&tokens->sh->lru, &tn->queue);
        return;
    }

    if (tn) {
        ngx_rbtree_delete(&tokens->sh->rbtree, &tn->node);
        ngx_queue_remove(&tn->queue);
        ngx_slab_free_locked(tokens->shpool, tn);
    }

    /* room is made from the least recently used end */

    for (tries = 0; tries < 64; tries++) {
        tn = ngx_slab_alloc_locked(tokens->shpool, size);
        if (tn || ngx_queue_empty(&tokens->sh->lru)) {
            break;
        }

        q = ngx_queue_last(&tokens->sh->lru);
        ngx_queue_remove(q);

        tn = ngx_queue_data(q, ngx_pt_token_node_t, queue);
        ngx_rbtree_delete(&tokens->sh->rbtree, &tn->node);
        ngx_slab_free_locked(tokens->shpool, tn);
        tn = NULL;
    }

    if (tn == NULL) {
        return;
    }

    tn->node.key = hash;
    tn->expires = ngx_pt_auth_clock() + ttl;
    tn->key_len = key->len;
    tn->token_len = token->len;
    ngx_memcpy(tn->data, key->data, key->len);
    ngx_memcpy(tn->data + key->len, token->data, token->len);

    ngx_rbtree_insert(&tokens->sh->rbtree, &tn->node);
    ngx_queue_insert_head(&tokens->sh->lru, &tn->queue);
}


/* the wall clock in ms: workers compare expiry times in the shared zone */

static uint64_t
ngx_pt_auth_clock(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec;
}


/* the unexpired entry of key, under the zone's lock */

static ngx_pt_token_node_t *
ngx_pt_auth_live(ngx_str_t *key)
{
    ngx_pt_token_node_t  *tn;

    tn = ngx_pt_auth_lookup(key, ngx_crc32_short(key->data, key->len));

    return (tn && tn->expires > ngx_pt_auth_clock()) ? tn : NULL;
}


static ngx_pt_token_node_t *
ngx_pt_auth_lookup(ngx_str_t *key, uint32_t hash)
{
    ngx_int_t             rc;
    ngx_pt_tokens_t      *tokens;
    ngx_rbtree_node_t    *node, *sentinel;
    ngx_pt_token_node_t  *tn;

    tokens = ngx_pt_tokens_zone->data;

    node = tokens->sh->rbtree.root;
    sentinel = tokens->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        tn = (ngx_pt_token_node_t *) node;

        rc = ngx_memn2cmp(key->data, tn->data, key->len, tn->key_len);

        if (rc == 0) {
            return tn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


static void
ngx_pt_auth_insert_value(ngx_rbtree_node_t *temp, ngx_rbtree_node_t *node,
    ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t    **p;
    ngx_pt_token_node_t   *tn, *tnt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            tn = (ngx_pt_token_node_t *) node;
            tnt = (ngx_pt_token_node_t *) temp;

            p = (ngx_memn2cmp(tn->data, tnt->data, tn->key_len, tnt->key_len)
                 < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}
