
/*
 * ngx_pullthrough: the upstream connections of the proxy-module transport.
 * Its internal location proxies to "pullthrough_peers", an upstream this
 * file adds at configuration time with a peer selection of its own: each
 * subrequest names its target (the addresses of the remote's host and a
 * key: scheme, host, port, certificate checks), a connection to it is
 * taken from a per-worker cache of idle ones when there is one, else made,
 * and given back to the cache when the proxy module says the answer left
 * it reusable, as nginx's keepalive does for an upstream block. TLS
 * sessions are kept per key too, so that a new connection resumes the
 * last one's session. Without this, a variable proxy_pass opens a
 * connection, and does a full handshake, for every exchange.
 */


#include <ngx_pt.h>
#include <ngx_pt_peer.h>


#define NGX_PT_PEER_IDLE      64            /* idle connections a worker
                                               keeps, all targets */
#define NGX_PT_PEER_TIMEOUT   (60 * 1000)   /* ms an idle one is kept */
#define NGX_PT_PEER_REQUESTS  1000          /* requests on one */
#define NGX_PT_PEER_SESSIONS  64            /* TLS sessions kept */
#define NGX_PT_PEER_KEY_MAX   300


/* an idle connection, or a free slot for one */
typedef struct {
    ngx_queue_t                 queue;
    ngx_connection_t           *connection;
    u_char                      key[NGX_PT_PEER_KEY_MAX];
    size_t                      key_len;
    socklen_t                   socklen;
    ngx_sockaddr_t              sockaddr;
} ngx_pt_peer_idle_t;


/* a target's last TLS session */
typedef struct {
    u_char                      key[NGX_PT_PEER_KEY_MAX];
    size_t                      key_len;
    ngx_ssl_session_t          *session;
    ngx_msec_t                  used;
} ngx_pt_peer_session_t;


/* a subrequest's peer: its target and where its tries stand */
typedef struct {
    ngx_pt_peer_target_t       *target;
    ngx_http_request_t         *r;
    ngx_uint_t                  current;     /* the address tried */
} ngx_pt_peer_data_t;


static ngx_int_t ngx_pt_peer_init_upstream(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_pt_peer_init(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_pt_peer_get(ngx_peer_connection_t *pc, void *data);
static void ngx_pt_peer_free(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state);
static void ngx_pt_peer_keep(ngx_peer_connection_t *pc,
    ngx_pt_peer_data_t *pd);
static void ngx_pt_peer_idle_read(ngx_event_t *ev);
static void ngx_pt_peer_idle_write(ngx_event_t *ev);
static void ngx_pt_peer_close(ngx_connection_t *c);
static ngx_int_t ngx_pt_peer_idle_init(void);
#if (NGX_HTTP_SSL)
static ngx_int_t ngx_pt_peer_set_session(ngx_peer_connection_t *pc,
    void *data);
static void ngx_pt_peer_save_session(ngx_peer_connection_t *pc, void *data);
static ngx_pt_peer_session_t *ngx_pt_peer_session_find(ngx_str_t *key,
    ngx_uint_t add);
#endif


static ngx_queue_t            ngx_pt_peer_cache;     /* idle, newest first */
static ngx_queue_t            ngx_pt_peer_free_slots;
static ngx_pt_peer_idle_t    *ngx_pt_peer_slots;

#if (NGX_HTTP_SSL)
static ngx_pt_peer_session_t  ngx_pt_peer_sessions[NGX_PT_PEER_SESSIONS];
#endif


/* the upstream the internal location proxies to: once per configuration */

ngx_int_t
ngx_pt_peer_add_upstream(ngx_conf_t *cf)
{
    ngx_url_t                      u;
    ngx_http_upstream_srv_conf_t  *uscf;

    ngx_memzero(&u, sizeof(ngx_url_t));

    ngx_str_set(&u.host, NGX_PT_PEER_NAME);
    u.url = u.host;
    u.no_resolve = 1;
    u.no_port = 1;

    uscf = ngx_http_upstream_add(cf, &u, 0);
    if (uscf == NULL) {
        return NGX_ERROR;
    }

    uscf->peer.init_upstream = ngx_pt_peer_init_upstream;

    return NGX_OK;
}


static ngx_int_t
ngx_pt_peer_init_upstream(ngx_conf_t *cf, ngx_http_upstream_srv_conf_t *us)
{
    us->peer.init = ngx_pt_peer_init;

    return NGX_OK;
}


/* a subrequest of the transport starts its upstream: its own target */

static ngx_int_t
ngx_pt_peer_init(ngx_http_request_t *r, ngx_http_upstream_srv_conf_t *us)
{
    ngx_pt_peer_data_t    *pd;
    ngx_pt_peer_target_t  *target;

    target = ngx_http_get_module_ctx(r, ngx_http_pullthrough_module);

    if (target == NULL || target->naddrs == 0) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "pullthrough: \"" NGX_PT_PEER_NAME "\" is the module's "
                      "own upstream, for its subrequests only");
        return NGX_ERROR;
    }

    if (ngx_pt_peer_slots == NULL && ngx_pt_peer_idle_init() != NGX_OK) {
        return NGX_ERROR;
    }

    pd = ngx_palloc(r->pool, sizeof(ngx_pt_peer_data_t));
    if (pd == NULL) {
        return NGX_ERROR;
    }

    pd->target = target;
    pd->r = r;
    pd->current = 0;

    r->upstream->peer.data = pd;
    r->upstream->peer.get = ngx_pt_peer_get;
    r->upstream->peer.free = ngx_pt_peer_free;
    r->upstream->peer.tries = target->naddrs;

#if (NGX_HTTP_SSL)
    r->upstream->peer.set_session = ngx_pt_peer_set_session;
    r->upstream->peer.save_session = ngx_pt_peer_save_session;
#endif

    return NGX_OK;
}


static ngx_int_t
ngx_pt_peer_idle_init(void)
{
    ngx_uint_t  i;

    ngx_pt_peer_slots = ngx_pcalloc(ngx_cycle->pool,
                                    NGX_PT_PEER_IDLE
                                    * sizeof(ngx_pt_peer_idle_t));
    if (ngx_pt_peer_slots == NULL) {
        return NGX_ERROR;
    }

    ngx_queue_init(&ngx_pt_peer_cache);
    ngx_queue_init(&ngx_pt_peer_free_slots);

    for (i = 0; i < NGX_PT_PEER_IDLE; i++) {
        ngx_queue_insert_head(&ngx_pt_peer_free_slots,
                              &ngx_pt_peer_slots[i].queue);
    }

    return NGX_OK;
}


/* a kept connection to the target if there is one, else an address */

static ngx_int_t
ngx_pt_peer_get(ngx_peer_connection_t *pc, void *data)
{
    ngx_pt_peer_data_t *pd = data;

    ngx_queue_t           *q;
    ngx_addr_t            *addr;
    ngx_connection_t      *c;
    ngx_pt_peer_idle_t    *idle;
    ngx_pt_peer_target_t  *t;

    t = pd->target;

    for (q = ngx_queue_head(&ngx_pt_peer_cache);
         q != ngx_queue_sentinel(&ngx_pt_peer_cache);
         q = ngx_queue_next(q))
    {
        idle = ngx_queue_data(q, ngx_pt_peer_idle_t, queue);

        if (idle->key_len != t->key.len
            || ngx_memcmp(idle->key, t->key.data, t->key.len) != 0)
        {
            continue;
        }

        ngx_queue_remove(q);
        ngx_queue_insert_head(&ngx_pt_peer_free_slots, q);

        c = idle->connection;
        idle->connection = NULL;

        if (c->read->timer_set) {
            ngx_del_timer(c->read);
        }

        c->idle = 0;
        c->sent = 0;
        c->data = NULL;
        c->log = pc->log;
        c->read->log = pc->log;
        c->write->log = pc->log;
        c->pool->log = pc->log;

        pc->connection = c;
        pc->cached = 1;
        pc->sockaddr = &idle->sockaddr.sockaddr;
        pc->socklen = idle->socklen;
        pc->name = &t->name;

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                       "pullthrough peer: kept connection %p to \"%V\"", c,
                       &t->key);

        return NGX_DONE;
    }

    addr = &t->addrs[pd->current % t->naddrs];

    pc->sockaddr = addr->sockaddr;
    pc->socklen = addr->socklen;
    pc->name = &t->name;
    pc->cached = 0;
    pc->connection = NULL;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                   "pullthrough peer: new connection to \"%V\" at %V",
                   &t->key, &addr->name);

    return NGX_OK;
}


/* a try ended: the next address after a failure, else keep the connection */

static void
ngx_pt_peer_free(ngx_peer_connection_t *pc, void *data, ngx_uint_t state)
{
    ngx_pt_peer_data_t *pd = data;

    if (state & NGX_PEER_FAILED) {
        if (!pc->cached) {
            pd->current++;
        }

    } else {
        ngx_pt_peer_keep(pc, pd);
    }

    if (pc->tries) {
        pc->tries--;
    }
}


static void
ngx_pt_peer_keep(ngx_peer_connection_t *pc, ngx_pt_peer_data_t *pd)
{
    ngx_queue_t           *q;
    ngx_connection_t      *c;
    ngx_http_upstream_t   *u;
    ngx_pt_peer_idle_t    *idle;
    ngx_pt_peer_target_t  *t;

    c = pc->connection;
    u = pd->r->upstream;
    t = pd->target;

    if (c == NULL
        || c->read->eof || c->read->error || c->read->timedout
        || c->write->error || c->write->timedout
        || c->requests >= NGX_PT_PEER_REQUESTS
        || u == NULL || !u->keepalive || !u->request_body_sent
        || ngx_terminate || ngx_exiting
        || t->key.len > NGX_PT_PEER_KEY_MAX
        || ngx_handle_read_event(c->read, 0) != NGX_OK)
    {
        return;
    }

    /* a free slot, or the least recently kept connection's */

    if (ngx_queue_empty(&ngx_pt_peer_free_slots)) {
        q = ngx_queue_last(&ngx_pt_peer_cache);
        ngx_queue_remove(q);

        idle = ngx_queue_data(q, ngx_pt_peer_idle_t, queue);
        ngx_pt_peer_close(idle->connection);

    } else {
        q = ngx_queue_head(&ngx_pt_peer_free_slots);
        ngx_queue_remove(q);

        idle = ngx_queue_data(q, ngx_pt_peer_idle_t, queue);
    }

    ngx_queue_insert_head(&ngx_pt_peer_cache, q);

    idle->connection = c;
    idle->key_len = t->key.len;
    ngx_memcpy(idle->key, t->key.data, t->key.len);
    idle->socklen = pc->socklen;
    ngx_memcpy(&idle->sockaddr, pc->sockaddr, pc->socklen);

    pc->connection = NULL;

    c->read->delayed = 0;
    ngx_add_timer(c->read, NGX_PT_PEER_TIMEOUT);

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    c->read->handler = ngx_pt_peer_idle_read;
    c->write->handler = ngx_pt_peer_idle_write;
    c->data = idle;
    c->idle = 1;
    c->log = ngx_cycle->log;
    c->read->log = ngx_cycle->log;
    c->write->log = ngx_cycle->log;
    c->pool->log = ngx_cycle->log;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "pullthrough peer: connection %p to \"%V\" kept", c,
                   &t->key);
}


/* an idle connection: the upstream closed it, it timed out, or shutdown */

static void
ngx_pt_peer_idle_read(ngx_event_t *ev)
{
    char                 buf[1];
    ssize_t              n;
    ngx_err_t            err;
    ngx_connection_t    *c;
    ngx_pt_peer_idle_t  *idle;

    c = ev->data;
    idle = c->data;

    if (!c->close && !ev->timedout) {
        n = recv(c->fd, buf, 1, MSG_PEEK);
        err = ngx_socket_errno;

        if (n == -1 && err == NGX_EAGAIN) {
            if (ngx_handle_read_event(ev, 0) == NGX_OK) {
                return;
            }
        }
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "pullthrough peer: kept connection %p closed", c);

    ngx_queue_remove(&idle->queue);
    ngx_queue_insert_head(&ngx_pt_peer_free_slots, &idle->queue);
    idle->connection = NULL;

    ngx_pt_peer_close(c);
}


static void
ngx_pt_peer_idle_write(ngx_event_t *ev)
{
    /* nothing to write on an idle connection */
}


static void
ngx_pt_peer_close(ngx_connection_t *c)
{
#if (NGX_HTTP_SSL)
    if (c->ssl) {
        c->ssl->no_wait_shutdown = 1;
        c->ssl->no_send_shutdown = 1;

        if (ngx_ssl_shutdown(c) == NGX_AGAIN) {
            c->ssl->handler = ngx_pt_peer_close;
            return;
        }
    }
#endif

    ngx_destroy_pool(c->pool);
    ngx_close_connection(c);
}


#if (NGX_HTTP_SSL)

/* a new TLS connection resumes the target's last session */

static ngx_int_t
ngx_pt_peer_set_session(ngx_peer_connection_t *pc, void *data)
{
    ngx_pt_peer_data_t *pd = data;

    ngx_pt_peer_session_t  *s;

    s = ngx_pt_peer_session_find(&pd->target->key, 0);

    if (s == NULL || s->session == NULL) {
        return NGX_OK;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                   "pullthrough peer: TLS session of \"%V\" offered",
                   &pd->target->key);

    return ngx_ssl_set_session(pc->connection, s->session);
}


static void
ngx_pt_peer_save_session(ngx_peer_connection_t *pc, void *data)
{
    ngx_pt_peer_data_t *pd = data;

    ngx_ssl_session_t      *session;
    ngx_pt_peer_session_t  *s;

    session = ngx_ssl_get_session(pc->connection);
    if (session == NULL) {
        return;
    }

    s = ngx_pt_peer_session_find(&pd->target->key, 1);
    if (s == NULL) {
        ngx_ssl_free_session(session);
        return;
    }

    if (s->session) {
        ngx_ssl_free_session(s->session);
    }

    s->session = session;
}


/* the slot of a key; add: the least recently used one if it has none */

static ngx_pt_peer_session_t *
ngx_pt_peer_session_find(ngx_str_t *key, ngx_uint_t add)
{
    ngx_uint_t              i;
    ngx_pt_peer_session_t  *s, *oldest;

    if (key->len > NGX_PT_PEER_KEY_MAX) {
        return NULL;
    }

    oldest = &ngx_pt_peer_sessions[0];

    for (i = 0; i < NGX_PT_PEER_SESSIONS; i++) {
        s = &ngx_pt_peer_sessions[i];

        if (s->key_len == key->len
            && ngx_memcmp(s->key, key->data, key->len) == 0)
        {
            s->used = ngx_current_msec;
            return s;
        }

        if (s->used < oldest->used) {
            oldest = s;
        }
    }

    if (!add) {
        return NULL;
    }

    if (oldest->session) {
        ngx_ssl_free_session(oldest->session);
        oldest->session = NULL;
    }

    oldest->key_len = key->len;
    ngx_memcpy(oldest->key, key->data, key->len);
    oldest->used = ngx_current_msec;

    return oldest;
}

#endif
