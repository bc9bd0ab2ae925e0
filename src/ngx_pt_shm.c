
/*
 * ngx_pullthrough: the state workers share, in one shared memory zone
 * ("pullthrough", sized by the pullthrough_zone directive). Entries are
 * typed: each kind has its key and its value struct, and kinds differ in
 * what may happen to them when the zone is full. Tokens and hints are a
 * cache, kept in least recently used order and evicted to make room: a
 * lost one costs a request to the upstream. Claims, fills in progress and
 * the counters of a remote's rate limit and concurrency are state: they
 * are never evicted, only removed when they expire or end, so that
 * pressure on the cache never changes how a fill or a limit behaves. When
 * nothing evictable is left, writing state fails and the caller goes on
 * without sharing it (a warning names the zone to enlarge).
 */


#include <ngx_pt.h>
#include <ngx_pt_shm.h>


typedef enum {
    /* evictable */
    NGX_PT_SHM_TOKEN = 0,        /* a bearer token: its bytes */
    NGX_PT_SHM_HINT,             /* a remote asked for Basic: no value */

    /* kept */
    NGX_PT_SHM_CLAIM,            /* a token request under way: no value */
    NGX_PT_SHM_FILL,             /* ngx_pt_shm_fill_t */
    NGX_PT_SHM_BLOB,             /* ngx_pt_shm_blob_t */
    NGX_PT_SHM_RATE,             /* ngx_pt_shm_rate_t */
    NGX_PT_SHM_CONC,             /* ngx_pt_shm_conc_t */

    /* added later: a zone kept across a reload keeps its numbers */
    NGX_PT_SHM_BACKOFF,          /* evictable: ngx_pt_shm_backoff_t */
    NGX_PT_SHM_NEGATIVE,         /* evictable: an upstream 404, no value */
    NGX_PT_SHM_FLIGHT,           /* kept: ngx_pt_shm_flight_t */
    NGX_PT_SHM_STATS,            /* kept, one: ngx_pt_shm_stats_t */
    NGX_PT_SHM_ACCESS,           /* kept in stats' own queue: a read file's
                                    digest, its last access (uint64_t) */
    NGX_PT_SHM_COUNTERS          /* kept: ngx_pt_shm_counters_t */
} ngx_pt_shm_kind_e;

#define ngx_pt_shm_evictable(kind)                                            \
    ((kind) <= NGX_PT_SHM_HINT || (kind) == NGX_PT_SHM_BACKOFF                \
     || (kind) == NGX_PT_SHM_NEGATIVE)


/* failures of an upstream in a row, and until when it is left alone */
typedef struct {
    uint64_t                    until;       /* wall clock, ms */
    ngx_uint_t                  failures;
} ngx_pt_shm_backoff_t;

#define NGX_PT_SHM_BACKOFF_FIRST  1000      /* ms, doubled per failure */
#define NGX_PT_SHM_BACKOFF_MAX    30000     /* ms */
#define NGX_PT_SHM_BACKOFF_TTL    (600 * 1000)  /* ms: failures forgotten */


/* a remote's token bucket: up to one second of requests */
typedef struct {
    double                      tokens;
    ngx_msec_t                  last;
} ngx_pt_shm_rate_t;


/* a remote's exchanges in progress, per worker slot: a worker that dies
 * does not keep its share, its replacement starts the slot from zero */
#define NGX_PT_SHM_CONC_SLOTS   64

typedef struct {
    uint32_t                    count[NGX_PT_SHM_CONC_SLOTS];
} ngx_pt_shm_conc_t;


typedef struct {
    ngx_rbtree_node_t           node;        /* key: CRC32 of kind and key */
    ngx_queue_t                 queue;       /* lru or kept */
    uint64_t                    expires;     /* wall clock, ms; 0: never */
    u_char                      kind;
    u_char                      unused;
    u_short                     key_len;
    uint32_t                    value_len;
    u_char                      data[1];     /* key, then value */
} ngx_pt_shm_node_t;


typedef struct {
    ngx_rbtree_t                rbtree;
    ngx_rbtree_node_t           sentinel;
    ngx_queue_t                 lru;         /* evictable, recent first */
    ngx_queue_t                 kept;        /* the others */
    uint64_t                    full_logged;
} ngx_pt_shm_sh_t;


typedef struct {
    ngx_pt_shm_sh_t            *sh;
    ngx_slab_pool_t            *shpool;
} ngx_pt_shm_ctx_t;


#define NGX_PT_SHM_EVICT_MAX    64       /* entries dropped per allocation */
#define NGX_PT_SHM_SWEEP_MAX    256      /* expired ones looked at */
#define NGX_PT_SHM_FULL_LOG     60000    /* ms between "full" warnings */


static ngx_int_t ngx_pt_shm_init_zone(ngx_shm_zone_t *shm_zone, void *data);
static void ngx_pt_shm_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_pt_shm_ctx_t *ngx_pt_shm_lock(void);
static void ngx_pt_shm_unlock(ngx_pt_shm_ctx_t *ctx);
static ngx_pt_shm_node_t *ngx_pt_shm_lookup(ngx_pt_shm_ctx_t *ctx,
    ngx_uint_t kind, ngx_str_t *key, ngx_uint_t live);
static ngx_pt_shm_node_t *ngx_pt_shm_store(ngx_pt_shm_ctx_t *ctx,
    ngx_uint_t kind, ngx_str_t *key, void *value, size_t len,
    ngx_msec_t ttl);
static void ngx_pt_shm_free(ngx_pt_shm_ctx_t *ctx, ngx_pt_shm_node_t *sn);
static void *ngx_pt_shm_alloc(ngx_pt_shm_ctx_t *ctx, size_t size);
static ngx_int_t ngx_pt_shm_read(ngx_uint_t kind, ngx_str_t *key,
    void *value, size_t size);
static void ngx_pt_shm_write(ngx_uint_t kind, ngx_str_t *key, void *value,
    size_t len, ngx_msec_t ttl);
static ngx_uint_t ngx_pt_shm_add_new(ngx_uint_t kind, ngx_str_t *key,
    void *value, size_t len, ngx_msec_t ttl);
static void ngx_pt_shm_remove(ngx_uint_t kind, ngx_str_t *key);
static ngx_pt_shm_ctx_t *ngx_pt_shm_stats_lock(ngx_pt_shm_stats_t **st);
static ngx_int_t ngx_pt_shm_key_copy(ngx_pool_t *pool, ngx_pt_shm_node_t *sn,
    ngx_str_t *key);


static ngx_shm_zone_t      *ngx_pt_shm_zone_ptr;
static ngx_pt_shm_stats_t  *ngx_pt_shm_stats_ptr;
static ngx_str_t        ngx_pt_shm_name = ngx_string("pullthrough");


/* pullthrough_zone size; */

char *
ngx_pt_shm_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ssize_t      size;
    ngx_str_t   *value;
    size_t      *sp;

    sp = (size_t *) ((char *) conf + cmd->offset);

    if (*sp != NGX_CONF_UNSET_SIZE) {
        return "is duplicate";
    }

    value = cf->args->elts;

    size = ngx_parse_size(&value[1]);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) NGX_PT_SHM_MIN_SIZE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone size \"%V\" is too small: the shared state "
                           "of workers needs at least %uzk",
                           &value[1], (size_t) NGX_PT_SHM_MIN_SIZE / 1024);
        return NGX_CONF_ERROR;
    }

    *sp = size;

    return NGX_CONF_OK;
}


ngx_int_t
ngx_pt_shm_add(ngx_conf_t *cf, size_t size)
{
    ngx_shm_zone_t    *zone;
    ngx_pt_shm_ctx_t  *ctx;

    zone = ngx_shared_memory_add(cf, &ngx_pt_shm_name, size,
                                 &ngx_http_pullthrough_module);
    if (zone == NULL) {
        return NGX_ERROR;
    }

    if (zone->data == NULL) {
        ctx = ngx_pcalloc(cf->pool, sizeof(ngx_pt_shm_ctx_t));
        if (ctx == NULL) {
            return NGX_ERROR;
        }

        zone->init = ngx_pt_shm_init_zone;
        zone->data = ctx;
    }

    ngx_pt_shm_zone_ptr = zone;

    return NGX_OK;
}


static ngx_int_t
ngx_pt_shm_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_pt_shm_ctx_t  *octx = data;

    ngx_pt_shm_ctx_t  *ctx;

    ctx = shm_zone->data;

    if (octx) {
        /* a reload with the same size keeps what the workers share */
        ctx->sh = octx->sh;
        ctx->shpool = octx->shpool;
        return NGX_OK;
    }

    ctx->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        ctx->sh = ctx->shpool->data;
        return NGX_OK;
    }

    ctx->sh = ngx_slab_alloc(ctx->shpool, sizeof(ngx_pt_shm_sh_t));
    if (ctx->sh == NULL) {
        return NGX_ERROR;
    }

    ctx->shpool->data = ctx->sh;

    ngx_rbtree_init(&ctx->sh->rbtree, &ctx->sh->sentinel,
                    ngx_pt_shm_insert_value);
    ngx_queue_init(&ctx->sh->lru);
    ngx_queue_init(&ctx->sh->kept);
    ctx->sh->full_logged = 0;

    /* a full zone is reported by this file, with the directive to raise */
    ctx->shpool->log_nomem = 0;

    return NGX_OK;
}


/* a new worker in a slot: what its predecessor counted is no more */

void
ngx_pt_shm_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t          slot;
    ngx_queue_t        *q;
    ngx_pt_shm_ctx_t   *ctx;
    ngx_pt_shm_node_t  *sn;
    ngx_pt_shm_conc_t  *conc;

    ctx = ngx_pt_shm_lock();
    if (ctx == NULL) {
        return;
    }

    slot = ngx_worker % NGX_PT_SHM_CONC_SLOTS;

    for (q = ngx_queue_head(&ctx->sh->kept);
         q != ngx_queue_sentinel(&ctx->sh->kept);
         q = ngx_queue_next(q))
    {
        sn = ngx_queue_data(q, ngx_pt_shm_node_t, queue);

        if (sn->kind == NGX_PT_SHM_CONC
            && sn->value_len == sizeof(ngx_pt_shm_conc_t))
        {
            conc = (ngx_pt_shm_conc_t *) (sn->data + sn->key_len);
            conc->count[slot] = 0;
        }
    }

    ngx_pt_shm_unlock(ctx);
}


/* tokens */

ngx_int_t
ngx_pt_shm_token_get(ngx_str_t *key, ngx_pool_t *pool, ngx_str_t *token)
{
    ngx_pt_shm_ctx_t   *ctx;
    ngx_pt_shm_node_t  *sn;

    ctx = ngx_pt_shm_lock();
    if (ctx == NULL) {
        return NGX_DECLINED;
    }

    sn = ngx_pt_shm_lookup(ctx, NGX_PT_SHM_TOKEN, key, 1);

    if (sn == NULL || sn->value_len == 0) {
        ngx_pt_shm_unlock(ctx);
        return NGX_DECLINED;
    }

    token->len = sn->value_len;
    token->data = ngx_pnalloc(pool, token->len);

    if (token->data) {
        ngx_memcpy(token->data, sn->data + sn->key_len, token->len);
    }

    /* used: the last to be evicted */
    ngx_queue_remove(&sn->queue);
    ngx_queue_insert_head(&ctx->sh->lru, &sn->queue);

    ngx_pt_shm_unlock(ctx);

    return token->data ? NGX_OK : NGX_DECLINED;
}


void
ngx_pt_shm_token_set(ngx_str_t *key, ngx_str_t *token, ngx_msec_t ttl)
{
    ngx_pt_shm_write(NGX_PT_SHM_TOKEN, key, token->data, token->len, ttl);
}


ngx_uint_t
ngx_pt_shm_hint_get(ngx_str_t *key)
{
    return ngx_pt_shm_read(NGX_PT_SHM_HINT, key, NULL, 0) == NGX_OK;
}


void
ngx_pt_shm_hint_set(ngx_str_t *key, ngx_msec_t ttl)
{
    ngx_pt_shm_write(NGX_PT_SHM_HINT, key, NULL, 0, ttl);
}


/* claims: 1 when this caller has it (no live claim had the key) */

ngx_uint_t
ngx_pt_shm_claim(ngx_str_t *key, ngx_msec_t ttl)
{
    return ngx_pt_shm_add_new(NGX_PT_SHM_CLAIM, key, NULL, 0, ttl);
}


void
ngx_pt_shm_unclaim(ngx_str_t *key)
{
    ngx_pt_shm_remove(NGX_PT_SHM_CLAIM, key);
}


/* fills */

ngx_uint_t
ngx_pt_shm_fill_claim(ngx_str_t *key, ngx_pt_shm_fill_t *fill,
    ngx_msec_t ttl)
{
    return ngx_pt_shm_add_new(NGX_PT_SHM_FILL, key, fill,
                              sizeof(ngx_pt_shm_fill_t), ttl);
}


ngx_int_t
ngx_pt_shm_fill_get(ngx_str_t *key, ngx_pt_shm_fill_t *fill)
{
    return ngx_pt_shm_read(NGX_PT_SHM_FILL, key, fill,
                           sizeof(ngx_pt_shm_fill_t));
}


void
ngx_pt_shm_fill_set(ngx_str_t *key, ngx_pt_shm_fill_t *fill, ngx_msec_t ttl)
{
    ngx_pt_shm_write(NGX_PT_SHM_FILL, key, fill, sizeof(ngx_pt_shm_fill_t),
                     ttl);
}


/* the blob index: only the repository name's bytes are stored */

ngx_int_t
ngx_pt_shm_blob_get(ngx_str_t *digest, ngx_pt_shm_blob_t *blob)
{
    size_t              len;
    ngx_pt_shm_ctx_t   *ctx;
    ngx_pt_shm_node_t  *sn;

    ctx = ngx_pt_shm_lock();
    if (ctx == NULL) {
        return NGX_DECLINED;
    }

    sn = ngx_pt_shm_lookup(ctx, NGX_PT_SHM_BLOB, digest, 1);

    if (sn == NULL || sn->value_len < offsetof(ngx_pt_shm_blob_t, repo)) {
        ngx_pt_shm_unlock(ctx);
        return NGX_DECLINED;
    }

    len = ngx_min(sn->value_len, sizeof(ngx_pt_shm_blob_t));
    ngx_memcpy(blob, sn->data + sn->key_len, len);

    ngx_pt_shm_unlock(ctx);

    if (blob->repo_len > len - offsetof(ngx_pt_shm_blob_t, repo)) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


void
ngx_pt_shm_blob_set(ngx_str_t *digest, ngx_pt_shm_blob_t *blob,
    ngx_msec_t ttl)
{
    if (blob->repo_len > NGX_PT_SHM_REPO_MAX) {
        return;
    }

    ngx_pt_shm_write(NGX_PT_SHM_BLOB, digest, blob,
                     offsetof(ngx_pt_shm_blob_t, repo) + blob->repo_len, ttl);
}


/*
 * Flights: the one upstream request for a manifest (a tag's revalidation,
 * a miss) that the requests of every worker wait for. Claiming returns 1
 * when the caller is to make it (no flight under way, or only one that
 * has ended); otherwise *fl is the flight under way. An ended flight
 * lingers a little with its outcome, for the waiters that poll.
 */

ngx_uint_t
ngx_pt_shm_flight_claim(ngx_str_t *key, ngx_pt_shm_flight_t *fl,
    ngx_msec_t ttl)
{
    ngx_pt_shm_ctx_t     *ctx;
    ngx_pt_shm_node_t    *sn;
    ngx_pt_shm_flight_t  *cur;

    ctx = ngx_pt_shm_lock();
    if (ctx == NULL) {
        return 1;
    }

    sn = ngx_pt_shm_lookup(ctx, NGX_PT_SHM_FLIGHT, key, 1);

    if (sn && sn->value_len == sizeof(ngx_pt_shm_flight_t)) {
        cur = (ngx_pt_shm_flight_t *) (sn->data + sn->key_len);

        if (!cur->done) {
            *fl = *cur;
            ngx_pt_shm_unlock(ctx);
            return 0;
        }
    }

    /* a full zone: the flight goes alone, unseen by others */
    fl->done = 0;
    (void) ngx_pt_shm_store(ctx, NGX_PT_SHM_FLIGHT, key, fl, sizeof(*fl), ttl);

    ngx_pt_shm_unlock(ctx);

    return 1;
}


ngx_int_t
ngx_pt_shm_flight_get(ngx_str_t *key, ngx_pt_shm_flight_t *fl)
{
    return ngx_pt_shm_read(NGX_PT_SHM_FLIGHT, key, fl,
                           sizeof(ngx_pt_shm_flight_t));
}


/* the flight's outcome, unless another flight has the key by now */

void
ngx_pt_shm_flight_end(ngx_str_t *key, ngx_pt_shm_flight_t *fl,
    ngx_msec_t linger)
{
    ngx_pt_shm_ctx_t     *ctx;
    ngx_pt_shm_node_t    *sn;
    ngx_pt_shm_flight_t  *cur;

    ctx = ngx_pt_shm_lock();
    if (ctx == NULL) {
        return;
    }

    sn = ngx_pt_shm_lookup(ctx, NGX_PT_SHM_FLIGHT, key, 0);

    if (sn && sn->value_len == sizeof(ngx_pt_shm_flight_t)) {
        cur = (ngx_pt_shm_flight_t *) (sn->data + sn->key_len);

        if (cur->pid == fl->pid && cur->seq == fl->seq) {
            fl->done = 1;
            (void) ngx_pt_shm_store(ctx, NGX_PT_SHM_FLIGHT, key, fl,
                                    sizeof(*fl), linger);
        }
    }

    ngx_pt_shm_unlock(ctx);
}


/*
 * An upstream that failed is left alone for a while: 1 s after the first
 * failure, twice as long after each next one, at most 30 s. Returns how
 * long it is left alone from now (0: it may be asked).
 */

ngx_msec_t
ngx_pt_shm_backoff_left(ngx_str_t *key)
{
    uint64_t              now;
    ngx_pt_shm_backoff_t  b;

    if (ngx_pt_shm_read(NGX_PT_SHM_BACKOFF, key, &b, sizeof(b)) != NGX_OK) {
        return 0;
    }

    now = ngx_pt_clock();

    return b.until > now ? (ngx_msec_t) (b.until - now) : 0;
}


ngx_msec_t
ngx_pt_shm_backoff_fail(ngx_str_t *key)
{
    ngx_msec_t             period;
    ngx_pt_shm_ctx_t      *ctx;
    ngx_pt_shm_node_t     *sn;
    ngx_pt_shm_backoff_t   b;

    ctx = ngx_pt_shm_lock();
    if (ctx == NULL) {
        return 0;
    }

    sn = ngx_pt_shm_lookup(ctx, NGX_PT_SHM_BACKOFF, key, 1);

    if (sn && sn->value_len == sizeof(b)) {
        ngx_memcpy(&b, sn->data + sn->key_len, sizeof(b));

    } else {
        b.failures = 0;
    }

    period = NGX_PT_SHM_BACKOFF_FIRST << ngx_min(b.failures, 5);
    period = ngx_min(period, NGX_PT_SHM_BACKOFF_MAX);

    b.failures++;
    b.until = ngx_pt_clock() + period;

    (void) ngx_pt_shm_store(ctx, NGX_PT_SHM_BACKOFF, key, &b, sizeof(b),
                            NGX_PT_SHM_BACKOFF_TTL);

    ngx_pt_shm_unlock(ctx);

    return period;
}


void
ngx_pt_shm_backoff_clear(ngx_str_t *key)
{
    ngx_pt_shm_remove(NGX_PT_SHM_BACKOFF, key);
}


/* what the upstream said does not exist, for a short while */

ngx_uint_t
ngx_pt_shm_negative_get(ngx_str_t *key)
{
    return ngx_pt_shm_read(NGX_PT_SHM_NEGATIVE, key, NULL, 0) == NGX_OK;
}


void
ngx_pt_shm_negative_set(ngx_str_t *key, ngx_msec_t ttl)
{
    ngx_pt_shm_write(NGX_PT_SHM_NEGATIVE, key, NULL, 0, ttl);
}


/*
 * A remote's rate_limit, for all workers: a token bucket refilled at rate
 * per second, holding up to one second of requests. Returns how long the
 * caller must wait before its request (0: now); the request is counted
 * either way, so that waiters go in order.
 */

ngx_msec_t
ngx_pt_shm_rate_take(ngx_str_t *remote, ngx_uint_t rate)
{
    double              tokens;
    ngx_msec_t          now;
    ngx_pt_shm_ctx_t   *ctx;
    ngx_pt_shm_node_t  *sn;
    ngx_pt_shm_rate_t   state;

    if (rate == 0) {
        return 0;
    }

    ctx = ngx_pt_shm_lock();
    if (ctx == NULL) {
        return 0;
    }

    now = ngx_current_msec;

    sn = ngx_pt_shm_lookup(ctx, NGX_PT_SHM_RATE, remote, 1);

    if (sn && sn->value_len == sizeof(ngx_pt_shm_rate_t)) {
        ngx_memcpy(&state, sn->data + sn->key_len, sizeof(state));

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

    /* a bucket unused for a while is full again: it may go */
    (void) ngx_pt_shm_store(ctx, NGX_PT_SHM_RATE, remote, &state,
                            sizeof(state), NGX_PT_SHM_RATE_TTL);

    ngx_pt_shm_unlock(ctx);

    if (tokens >= 0) {
        return 0;
    }

    return (ngx_msec_t) (-tokens * 1000 / rate) + 1;
}


/* a remote's download_concurrency: 1 when the caller may go now */

static ngx_uint_t
ngx_pt_shm_conc_update(ngx_str_t *remote, ngx_uint_t limit, ngx_int_t add)
{
    uint32_t            total;
    ngx_uint_t          i, slot, ok;
    ngx_pt_shm_ctx_t   *ctx;
    ngx_pt_shm_node_t  *sn;
    ngx_pt_shm_conc_t   conc;

    ctx = ngx_pt_shm_lock();
    if (ctx == NULL) {
        return 1;
    }

    slot = ngx_worker % NGX_PT_SHM_CONC_SLOTS;

    sn = ngx_pt_shm_lookup(ctx, NGX_PT_SHM_CONC, remote, 1);

    if (sn && sn->value_len == sizeof(ngx_pt_shm_conc_t)) {
        ngx_memcpy(&conc, sn->data + sn->key_len, sizeof(conc));

    } else {
        ngx_memzero(&conc, sizeof(conc));
    }

    ok = 1;

    if (add > 0) {
        for (total = 0, i = 0; i < NGX_PT_SHM_CONC_SLOTS; i++) {
            total += conc.count[i];
        }

        ok = (total < limit);

        if (ok) {
            conc.count[slot]++;
        }

    } else if (conc.count[slot]) {
        conc.count[slot]--;
    }

    /* counts never expire: they end with the exchanges they count */

    if (ngx_pt_shm_store(ctx, NGX_PT_SHM_CONC, remote, &conc, sizeof(conc), 0)
        == NULL)
    {
        /* the zone is full: the limit cannot be kept, nor held against */
        ok = 1;
    }

    ngx_pt_shm_unlock(ctx);

    return ok;
}


ngx_uint_t
ngx_pt_shm_conc_acquire(ngx_str_t *remote, ngx_uint_t limit)
{
    return ngx_pt_shm_conc_update(remote, limit, 1);
}


void
ngx_pt_shm_conc_release(ngx_str_t *remote)
{
    (void) ngx_pt_shm_conc_update(remote, 0, -1);
}


/*
 * The figures of the store and its traffic: one entry, made by the first
 * process that asks for it, never freed, so that each process keeps a
 * pointer to it; its counters change with atomic operations, without the
 * zone's lock. The accesses of files wait in its queue for the cache
 * manager, which moves them into the store in batches.
 */

ngx_pt_shm_stats_t *
ngx_pt_shm_stats(void)
{
    ngx_str_t            key;
    ngx_pt_shm_ctx_t    *ctx;
    ngx_pt_shm_node_t   *sn;
    ngx_pt_shm_stats_t  *st, fresh;

    if (ngx_pt_shm_stats_ptr) {
        return ngx_pt_shm_stats_ptr;
    }

    ctx = ngx_pt_shm_lock();
    if (ctx == NULL) {
        return NULL;
    }

    ngx_str_null(&key);

    sn = ngx_pt_shm_lookup(ctx, NGX_PT_SHM_STATS, &key, 0);

    if (sn == NULL || sn->value_len != sizeof(ngx_pt_shm_stats_t)) {
        /* none yet, or one of another layout (an older module) */
        ngx_memzero(&fresh, sizeof(ngx_pt_shm_stats_t));

        sn = ngx_pt_shm_store(ctx, NGX_PT_SHM_STATS, &key, &fresh,
                              sizeof(ngx_pt_shm_stats_t), 0);
        if (sn == NULL) {
            ngx_pt_shm_unlock(ctx);
            return NULL;
        }

        st = (ngx_pt_shm_stats_t *) (sn->data + sn->key_len);
        ngx_queue_init(&st->access);
        st->access_max = ngx_pt_shm_zone_ptr->shm.size / 4
                         / NGX_PT_SHM_ACCESS_COST;
    }

    ngx_pt_shm_stats_ptr = (ngx_pt_shm_stats_t *) (sn->data + sn->key_len);

    ngx_pt_shm_unlock(ctx);

    return ngx_pt_shm_stats_ptr;
}


void
ngx_pt_shm_stat_add(ngx_uint_t which, ngx_atomic_int_t n)
{
    ngx_pt_shm_stats_t  *st;

    st = ngx_pt_shm_stats();

    if (st) {
        (void) ngx_atomic_fetch_add(&st->value[which], n);
    }
}


void
ngx_pt_shm_stat_set(ngx_uint_t which, ngx_atomic_uint_t v)
{
    ngx_pt_shm_stats_t  *st;

    st = ngx_pt_shm_stats();

    if (st) {
        st->value[which] = v;
    }
}


ngx_atomic_uint_t
ngx_pt_shm_stat_get(ngx_uint_t which)
{
    ngx_pt_shm_stats_t  *st;

    st = ngx_pt_shm_stats();

    return st ? st->value[which] : 0;
}


/*
 * A file was read: its digest and now, for the cache manager. A worker
 * notes a digest at most once a second (a small table of what it noted
 * last), so that a hot file costs the zone's lock once a second, not
 * once per request: recency is kept to the second anyway.
 */

#define NGX_PT_SHM_NOTED       256
#define NGX_PT_SHM_NOTED_TIME  1000     /* ms */

typedef struct {
    uint32_t                    hash;
    uint64_t                    time;
} ngx_pt_shm_noted_t;

static ngx_pt_shm_noted_t  ngx_pt_shm_noted[NGX_PT_SHM_NOTED];


void
ngx_pt_shm_access(ngx_str_t *digest)
{
    uint32_t             hash;
    uint64_t             now;
    ngx_pt_shm_ctx_t    *ctx;
    ngx_pt_shm_node_t   *sn;
    ngx_pt_shm_noted_t  *noted;
    ngx_pt_shm_stats_t  *st;

    now = ngx_pt_clock();
    hash = ngx_crc32_short(digest->data, digest->len);
    noted = &ngx_pt_shm_noted[hash % NGX_PT_SHM_NOTED];

    if (noted->hash == hash && now - noted->time < NGX_PT_SHM_NOTED_TIME) {
        return;
    }

    noted->hash = hash;
    noted->time = now;

    st = ngx_pt_shm_stats();
    if (st == NULL) {
        return;
    }

    ctx = ngx_pt_shm_lock();
    if (ctx == NULL) {
        return;
    }

    sn = ngx_pt_shm_lookup(ctx, NGX_PT_SHM_ACCESS, digest, 0);

    if (sn && sn->value_len == sizeof(uint64_t)) {
        ngx_memcpy(sn->data + sn->key_len, &now, sizeof(uint64_t));
        ngx_pt_shm_unlock(ctx);
        return;
    }

    if (st->access_n >= st->access_max) {
        /* the manager is behind: this access is lost, not the zone */
        ngx_pt_shm_unlock(ctx);
        (void) ngx_atomic_fetch_add(&st->value[NGX_PT_STAT_ACCESS_LOST], 1);
        return;
    }

    sn = ngx_pt_shm_store(ctx, NGX_PT_SHM_ACCESS, digest, &now,
                          sizeof(uint64_t), 0);
    if (sn) {
        ngx_queue_remove(&sn->queue);
        ngx_queue_insert_tail(&st->access, &sn->queue);
        st->access_n++;
    }

    ngx_pt_shm_unlock(ctx);
}


/* up to n accesses, the oldest first, taken out of the zone */

ngx_int_t
ngx_pt_shm_access_take(ngx_pool_t *pool, ngx_uint_t n, ngx_array_t *out)
{
    ngx_queue_t          *q;
    ngx_pt_shm_ctx_t     *ctx;
    ngx_pt_shm_node_t    *sn;
    ngx_pt_shm_stats_t   *st;
    ngx_pt_shm_access_t  *a;

    ctx = ngx_pt_shm_stats_lock(&st);
    if (ctx == NULL) {
        return NGX_OK;
    }

    while (out->nelts < n && !ngx_queue_empty(&st->access)) {
        q = ngx_queue_head(&st->access);
        sn = ngx_queue_data(q, ngx_pt_shm_node_t, queue);

        a = ngx_array_push(out);
        if (a == NULL) {
            break;
        }

        if (ngx_pt_shm_key_copy(pool, sn, &a->digest) != NGX_OK) {
            out->nelts--;
            break;
        }

        ngx_memcpy(&a->atime, sn->data + sn->key_len, sizeof(uint64_t));

        ngx_pt_shm_free(ctx, sn);
        st->access_n--;
    }

    ngx_pt_shm_unlock(ctx);

    return NGX_OK;
}


/*
 * Counters by a label (a distribution, a remote): made on first use and
 * never freed, so a pointer to them stays valid; NULL when the zone is
 * full or has NGX_PT_SHM_COUNTERS_MAX sets already.
 */

ngx_pt_shm_counters_t *
ngx_pt_shm_counters(ngx_str_t *key)
{
    ngx_pt_shm_ctx_t       *ctx;
    ngx_pt_shm_node_t      *sn;
    ngx_pt_shm_stats_t     *st;
    ngx_pt_shm_counters_t   fresh;

    st = ngx_pt_shm_stats();
    if (st == NULL) {
        return NULL;
    }

    ctx = ngx_pt_shm_lock();
    if (ctx == NULL) {
        return NULL;
    }

    sn = ngx_pt_shm_lookup(ctx, NGX_PT_SHM_COUNTERS, key, 0);

    if (sn == NULL && st->counters < NGX_PT_SHM_COUNTERS_MAX) {
        ngx_memzero(&fresh, sizeof(ngx_pt_shm_counters_t));

        sn = ngx_pt_shm_store(ctx, NGX_PT_SHM_COUNTERS, key, &fresh,
                              sizeof(ngx_pt_shm_counters_t), 0);
        if (sn) {
            st->counters++;
        }
    }

    ngx_pt_shm_unlock(ctx);

    if (sn == NULL || sn->value_len != sizeof(ngx_pt_shm_counters_t)) {
        return NULL;
    }

    return (ngx_pt_shm_counters_t *) (sn->data + sn->key_len);
}


/* a copy of every set of counters, with its key */

ngx_int_t
ngx_pt_shm_counters_all(ngx_pool_t *pool, ngx_array_t *out)
{
    ngx_queue_t            *q;
    ngx_pt_shm_ctx_t       *ctx;
    ngx_pt_shm_node_t      *sn;
    ngx_pt_shm_labeled_t   *l;

    ctx = ngx_pt_shm_lock();
    if (ctx == NULL) {
        return NGX_OK;
    }

    for (q = ngx_queue_head(&ctx->sh->kept);
         q != ngx_queue_sentinel(&ctx->sh->kept);
         q = ngx_queue_next(q))
    {
        sn = ngx_queue_data(q, ngx_pt_shm_node_t, queue);

        if (sn->kind != NGX_PT_SHM_COUNTERS
            || sn->value_len != sizeof(ngx_pt_shm_counters_t))
        {
            continue;
        }

        l = ngx_array_push(out);
        if (l == NULL) {
            break;
        }

        if (ngx_pt_shm_key_copy(pool, sn, &l->key) != NGX_OK) {
            out->nelts--;
            break;
        }

        ngx_memcpy(&l->counters, sn->data + sn->key_len,
                   sizeof(ngx_pt_shm_counters_t));
    }

    ngx_pt_shm_unlock(ctx);

    return NGX_OK;
}


/*
 * Orphan cleanups: the admin API asks (its task's id, the protection
 * time), the cache manager takes every request at once and runs one
 * garbage collection for all. NGX_DECLINED: too many wait already.
 */

ngx_int_t
ngx_pt_shm_gc_ask(ngx_str_t *task, uint64_t protection)
{
    ngx_int_t            rc;
    ngx_pt_shm_ctx_t    *ctx;
    ngx_pt_shm_stats_t  *st;

    st = ngx_pt_shm_stats();

    if (st == NULL || task->len != NGX_PT_UUID_LEN) {
        return NGX_ERROR;
    }

    ctx = ngx_pt_shm_lock();
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    if (st->gc_n < NGX_PT_SHM_GC_TASKS) {
        if (st->gc_n == 0 || protection < st->gc_protection) {
            st->gc_protection = protection;
        }

        ngx_memcpy(st->gc_tasks[st->gc_n++], task->data, NGX_PT_UUID_LEN);
        rc = NGX_OK;

    } else {
        rc = NGX_DECLINED;
    }

    ngx_pt_shm_unlock(ctx);

    return rc;
}


ngx_int_t
ngx_pt_shm_gc_take(ngx_pool_t *pool, ngx_array_t *tasks,
    uint64_t *protection)
{
    ngx_str_t           *id;
    ngx_uint_t           i;
    ngx_pt_shm_ctx_t    *ctx;
    ngx_pt_shm_stats_t  *st;

    ctx = ngx_pt_shm_stats_lock(&st);
    if (ctx == NULL) {
        return NGX_OK;
    }

    for (i = 0; i < st->gc_n; i++) {
        id = ngx_array_push(tasks);
        if (id == NULL) {
            break;
        }

        id->len = NGX_PT_UUID_LEN;
        id->data = ngx_pnalloc(pool, NGX_PT_UUID_LEN);
        if (id->data == NULL) {
            tasks->nelts--;
            break;
        }

        ngx_memcpy(id->data, st->gc_tasks[i], NGX_PT_UUID_LEN);
    }

    *protection = st->gc_protection;
    st->gc_n = 0;

    ngx_pt_shm_unlock(ctx);

    return NGX_OK;
}


/* the generic part: typed values by kind and key */

/* the zone locked, and its stats entry */

static ngx_pt_shm_ctx_t *
ngx_pt_shm_stats_lock(ngx_pt_shm_stats_t **st)
{
    *st = ngx_pt_shm_stats();

    return *st ? ngx_pt_shm_lock() : NULL;
}


/* a copy of an entry's key, out of the zone */

static ngx_int_t
ngx_pt_shm_key_copy(ngx_pool_t *pool, ngx_pt_shm_node_t *sn, ngx_str_t *key)
{
    key->len = sn->key_len;
    key->data = ngx_pnalloc(pool, sn->key_len);

    if (key->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(key->data, sn->data, sn->key_len);

    return NGX_OK;
}


static ngx_int_t
ngx_pt_shm_read(ngx_uint_t kind, ngx_str_t *key, void *value, size_t size)
{
    ngx_int_t           rc;
    ngx_pt_shm_ctx_t   *ctx;
    ngx_pt_shm_node_t  *sn;

    ctx = ngx_pt_shm_lock();
    if (ctx == NULL) {
        return NGX_DECLINED;
    }

    sn = ngx_pt_shm_lookup(ctx, kind, key, 1);

    if (sn && sn->value_len == size) {
        ngx_memcpy(value, sn->data + sn->key_len, size);
        rc = NGX_OK;

    } else {
        rc = NGX_DECLINED;
    }

    ngx_pt_shm_unlock(ctx);

    return rc;
}


static void
ngx_pt_shm_write(ngx_uint_t kind, ngx_str_t *key, void *value, size_t len,
    ngx_msec_t ttl)
{
    ngx_pt_shm_ctx_t  *ctx;

    ctx = ngx_pt_shm_lock();
    if (ctx == NULL) {
        return;
    }

    (void) ngx_pt_shm_store(ctx, kind, key, value, len, ttl);

    ngx_pt_shm_unlock(ctx);
}


/* stores key unless a live entry has it: 1 when stored */

static ngx_uint_t
ngx_pt_shm_add_new(ngx_uint_t kind, ngx_str_t *key, void *value, size_t len,
    ngx_msec_t ttl)
{
    ngx_uint_t          stored;
    ngx_pt_shm_ctx_t   *ctx;

    ctx = ngx_pt_shm_lock();
    if (ctx == NULL) {
        return 1;
    }

    stored = 0;

    if (ngx_pt_shm_lookup(ctx, kind, key, 1) == NULL) {
        stored = (ngx_pt_shm_store(ctx, kind, key, value, len, ttl) != NULL);
    }

    ngx_pt_shm_unlock(ctx);

    return stored;
}


static void
ngx_pt_shm_remove(ngx_uint_t kind, ngx_str_t *key)
{
    ngx_pt_shm_ctx_t   *ctx;
    ngx_pt_shm_node_t  *sn;

    ctx = ngx_pt_shm_lock();
    if (ctx == NULL) {
        return;
    }

    sn = ngx_pt_shm_lookup(ctx, kind, key, 0);

    if (sn) {
        ngx_pt_shm_free(ctx, sn);
    }

    ngx_pt_shm_unlock(ctx);
}


static ngx_pt_shm_ctx_t *
ngx_pt_shm_lock(void)
{
    ngx_pt_shm_ctx_t  *ctx;

    if (ngx_pt_shm_zone_ptr == NULL) {
        return NULL;
    }

    ctx = ngx_pt_shm_zone_ptr->data;

    if (ctx->sh == NULL) {
        return NULL;
    }

    ngx_shmtx_lock(&ctx->shpool->mutex);

    return ctx;
}


static void
ngx_pt_shm_unlock(ngx_pt_shm_ctx_t *ctx)
{
    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


static uint32_t
ngx_pt_shm_hash(ngx_uint_t kind, ngx_str_t *key)
{
    u_char    k;
    uint32_t  crc;

    k = (u_char) kind;

    ngx_crc32_init(crc);
    ngx_crc32_update(&crc, &k, 1);
    ngx_crc32_update(&crc, key->data, key->len);
    ngx_crc32_final(crc);

    return crc;
}


static ngx_int_t
ngx_pt_shm_cmp(ngx_uint_t kind, u_char *key, size_t len,
    ngx_pt_shm_node_t *sn)
{
    if (kind != sn->kind) {
        return (kind < sn->kind) ? -1 : 1;
    }

    return ngx_memn2cmp(key, sn->data, len, sn->key_len);
}


/* the entry of kind and key; with live, an expired one is none */

static ngx_pt_shm_node_t *
ngx_pt_shm_lookup(ngx_pt_shm_ctx_t *ctx, ngx_uint_t kind, ngx_str_t *key,
    ngx_uint_t live)
{
    uint32_t            hash;
    ngx_int_t           rc;
    ngx_rbtree_node_t  *node, *sentinel;
    ngx_pt_shm_node_t  *sn;

    hash = ngx_pt_shm_hash(kind, key);

    node = ctx->sh->rbtree.root;
    sentinel = ctx->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        sn = (ngx_pt_shm_node_t *) node;

        rc = ngx_pt_shm_cmp(kind, key->data, key->len, sn);

        if (rc == 0) {
            if (live && sn->expires && sn->expires <= ngx_pt_clock()) {
                return NULL;
            }

            return sn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


static ngx_pt_shm_node_t *
ngx_pt_shm_store(ngx_pt_shm_ctx_t *ctx, ngx_uint_t kind, ngx_str_t *key,
    void *value, size_t len, ngx_msec_t ttl)
{
    uint64_t            expires;
    ngx_queue_t        *queue;
    ngx_pt_shm_node_t  *sn;

    if (key->len > 0xffff) {
        return NULL;
    }

    expires = ttl ? ngx_pt_clock() + ttl : 0;
    queue = ngx_pt_shm_evictable(kind) ? &ctx->sh->lru : &ctx->sh->kept;

    sn = ngx_pt_shm_lookup(ctx, kind, key, 0);

    if (sn && sn->value_len == len) {
        /* a value of the same size (a fill's progress, a count): in place */
        if (len) {
            ngx_memcpy(sn->data + sn->key_len, value, len);
        }

        sn->expires = expires;

        ngx_queue_remove(&sn->queue);
        ngx_queue_insert_head(queue, &sn->queue);

        return sn;
    }

    if (sn) {
        ngx_pt_shm_free(ctx, sn);
    }

    sn = ngx_pt_shm_alloc(ctx, offsetof(ngx_pt_shm_node_t, data)
                               + key->len + len);
    if (sn == NULL) {
        return NULL;
    }

    sn->node.key = ngx_pt_shm_hash(kind, key);
    sn->expires = expires;
    sn->kind = (u_char) kind;
    sn->key_len = (u_short) key->len;
    sn->value_len = (uint32_t) len;

    ngx_memcpy(sn->data, key->data, key->len);

    if (len) {
        ngx_memcpy(sn->data + key->len, value, len);
    }

    ngx_rbtree_insert(&ctx->sh->rbtree, &sn->node);
    ngx_queue_insert_head(queue, &sn->queue);

    return sn;
}


static void
ngx_pt_shm_free(ngx_pt_shm_ctx_t *ctx, ngx_pt_shm_node_t *sn)
{
    ngx_rbtree_delete(&ctx->sh->rbtree, &sn->node);
    ngx_queue_remove(&sn->queue);
    ngx_slab_free_locked(ctx->shpool, sn);
}


/*
 * Room for an entry: expired entries go first, then the least recently
 * used evictable ones. State is never evicted.
 */

static void *
ngx_pt_shm_alloc(ngx_pt_shm_ctx_t *ctx, size_t size)
{
    void               *p;
    uint64_t            now;
    ngx_uint_t          n;
    ngx_queue_t        *q, *next;
    ngx_pt_shm_node_t  *sn;

    p = ngx_slab_alloc_locked(ctx->shpool, size);
    if (p) {
        return p;
    }

    now = ngx_pt_clock();

    for (q = ngx_queue_last(&ctx->sh->kept), n = 0;
         q != ngx_queue_sentinel(&ctx->sh->kept) && n < NGX_PT_SHM_SWEEP_MAX;
         q = next, n++)
    {
        next = ngx_queue_prev(q);
        sn = ngx_queue_data(q, ngx_pt_shm_node_t, queue);

        if (sn->expires && sn->expires <= now) {
            ngx_pt_shm_free(ctx, sn);
        }
    }

    for (n = 0; n < NGX_PT_SHM_EVICT_MAX; n++) {
        p = ngx_slab_alloc_locked(ctx->shpool, size);
        if (p || ngx_queue_empty(&ctx->sh->lru)) {
            break;
        }

        q = ngx_queue_last(&ctx->sh->lru);
        ngx_pt_shm_free(ctx, ngx_queue_data(q, ngx_pt_shm_node_t, queue));
    }

    if (p == NULL && now - ctx->sh->full_logged >= NGX_PT_SHM_FULL_LOG) {
        ctx->sh->full_logged = now;
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "pullthrough: the shared zone \"%V\" is full: state "
                      "is not shared until room is made, raise "
                      "\"pullthrough_zone\"", &ngx_pt_shm_name);
    }

    return p;
}


static void
ngx_pt_shm_insert_value(ngx_rbtree_node_t *temp, ngx_rbtree_node_t *node,
    ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t  **p;
    ngx_pt_shm_node_t   *sn, *snt;

    for ( ;; ) {

        if (node->key != temp->key) {
            p = (node->key < temp->key) ? &temp->left : &temp->right;

        } else {
            sn = (ngx_pt_shm_node_t *) node;
            snt = (ngx_pt_shm_node_t *) temp;

            p = (ngx_pt_shm_cmp(sn->kind, sn->data, sn->key_len, snt) < 0)
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
