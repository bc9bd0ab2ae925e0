
/*
 * ngx_pullthrough: exchanges with upstreams that nginx's proxy module cannot
 * reach: through a forward proxy (CONNECT for https), trusting the remote's
 * own CA, presenting a client certificate. libcurl does the HTTP work in
 * the thread pool, one bounded step at a time: a task runs the transfer
 * until the header is complete, some data has come, it ends, or a short
 * while has passed. The event loop then hands what came to the exchange as
 * the proxy module's filters would (ngx_pt_fetch.c), and posts the next
 * step once the consumer has taken all of it. The transfer is paused in
 * between, so an exchange holds one buffer, whatever the blob's size.
 */


#include <ngx_pt.h>
#include <ngx_pt_curl.h>

#include <curl/curl.h>
#include <pthread.h>


/* what a step hands over at most, and when it hands over less */
#define NGX_PT_CURL_BUFFER      (256 * 1024)
#define NGX_PT_CURL_BATCH       (128 * 1024)
#define NGX_PT_CURL_READ        (64 * 1024)     /* libcurl's reads */
#define NGX_PT_CURL_LATENCY     20      /* ms: data waits no longer */
#define NGX_PT_CURL_STEP        250     /* ms: a step with nothing ends */
#define NGX_PT_CURL_POLL        20      /* ms */
#define NGX_PT_CURL_HEADERS     (32 * 1024)


/*
 * The proxy module's location configuration begins with its upstream
 * configuration: the operator's proxy_connect_timeout and proxy_read_timeout
 * in the registry location apply to both transports.
 */
extern ngx_module_t  ngx_http_proxy_module;


typedef struct ngx_pt_curl_s  ngx_pt_curl_t;

struct ngx_pt_curl_s {
    ngx_pool_t                 *pool;
    ngx_pt_fetch_t             *fetch;       /* NULL: orphaned */
    ngx_thread_task_t          *task;
    ngx_thread_pool_t          *thread_pool;
    ngx_event_t                 kick;        /* resume, stop */

    CURL                       *easy;
    CURLM                      *multi;
    struct curl_slist          *headers;
    char                       *url;
    char                        error[CURL_ERROR_SIZE];

    ngx_buf_t                   out;         /* body bytes for the consumer */

    u_char                     *hdr;         /* the final response's header */
    size_t                      hdr_len;
    ngx_uint_t                  status;

    ngx_msec_t                  read_timeout;
    ngx_msec_t                  last_read;   /* thread's clock */
    CURLcode                    result;

    /* read by the thread, written by the event loop while a step runs */
    volatile ngx_uint_t         cancel;
    ngx_uint_t                  busy;        /* a step is in flight */

    /* the thread's while a step runs, the event loop's in between */
    unsigned                    added:1;     /* to the multi handle */
    unsigned                    paused:1;    /* the buffer was full */
    unsigned                    header_done:1;
    unsigned                    header_sent:1;
    unsigned                    finished:1;
    unsigned                    idle:1;      /* sock_read_timeout */
    unsigned                    bad_header:1;
    unsigned                    failed:1;    /* our side ended it */
};


static ngx_int_t ngx_pt_curl_start(ngx_pt_fetch_t *f);
static ngx_pt_curl_t *ngx_pt_curl_create(ngx_pt_fetch_t *f);
static ngx_int_t ngx_pt_curl_request(ngx_pt_curl_t *c, ngx_pt_fetch_t *f);
static void ngx_pt_curl_resume(ngx_pt_curl_t *c);
static void ngx_pt_curl_stop(ngx_pt_curl_t *c);
static void ngx_pt_curl_orphan(ngx_pt_fetch_t *f);
static void ngx_pt_curl_step(ngx_pt_curl_t *c);
static void ngx_pt_curl_step_thread(void *data, ngx_log_t *log);
static void ngx_pt_curl_step_done(ngx_event_t *ev);
static void ngx_pt_curl_process(ngx_pt_curl_t *c);
static void ngx_pt_curl_kick(ngx_event_t *ev);
static void ngx_pt_curl_next(ngx_pt_curl_t *c);
static void ngx_pt_curl_finish(ngx_pt_curl_t *c);
static void ngx_pt_curl_destroy(ngx_pt_curl_t *c);
static ngx_int_t ngx_pt_curl_header(ngx_pt_curl_t *c, ngx_pt_fetch_t *f);
static ngx_int_t ngx_pt_curl_add_header(ngx_pt_curl_t *c, ngx_str_t *name,
    ngx_str_t *value);
static size_t ngx_pt_curl_on_header(char *p, size_t size, size_t n,
    void *data);
static size_t ngx_pt_curl_on_body(char *p, size_t size, size_t n,
    void *data);
static ngx_msec_t ngx_pt_curl_clock(void);
static void ngx_pt_link_blob(CURL *curl, CURLoption option, ngx_str_t *pem);
static void ngx_pt_curl_lock(CURL *handle, curl_lock_data data,
    curl_lock_access access, void *userptr);
static void ngx_pt_curl_unlock(CURL *handle, curl_lock_data data,
    void *userptr);


/*
 * TLS sessions and DNS answers are shared by a worker's transfers, under
 * locks: steps run in several threads. Connections are not (libcurl does
 * not support sharing them between threads): they stay in the multi handle
 * of the transfer that used them, and multi handles of transfers that
 * ended well are kept for the next ones, so connections are reused
 * (libcurl matches host, proxy and TLS settings before reusing one).
 */
#define NGX_PT_CURL_IDLE        16

static CURLSH           *ngx_pt_curl_share;
static pthread_mutex_t   ngx_pt_curl_locks[CURL_LOCK_DATA_LAST];
static CURLM            *ngx_pt_curl_idle[NGX_PT_CURL_IDLE];
static ngx_uint_t        ngx_pt_curl_nidle;


ngx_int_t
ngx_pt_curl_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t  i;

    /* before any request: curl_global_init() is not thread-safe */

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "pullthrough: curl_global_init() failed");
        return NGX_ERROR;
    }

    for (i = 0; i < CURL_LOCK_DATA_LAST; i++) {
        if (pthread_mutex_init(&ngx_pt_curl_locks[i], NULL) != 0) {
            return NGX_ERROR;
        }
    }

    ngx_pt_curl_share = curl_share_init();
    if (ngx_pt_curl_share == NULL) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "pullthrough: curl_share_init() failed");
        return NGX_ERROR;
    }

    curl_share_setopt(ngx_pt_curl_share, CURLSHOPT_LOCKFUNC,
                      ngx_pt_curl_lock);
    curl_share_setopt(ngx_pt_curl_share, CURLSHOPT_UNLOCKFUNC,
                      ngx_pt_curl_unlock);
    curl_share_setopt(ngx_pt_curl_share, CURLSHOPT_SHARE,
                      CURL_LOCK_DATA_SSL_SESSION);
    curl_share_setopt(ngx_pt_curl_share, CURLSHOPT_SHARE,
                      CURL_LOCK_DATA_DNS);

    return NGX_OK;
}


void
ngx_pt_curl_exit_process(ngx_cycle_t *cycle)
{
    while (ngx_pt_curl_nidle) {
        (void) curl_multi_cleanup(ngx_pt_curl_idle[--ngx_pt_curl_nidle]);
    }

    if (ngx_pt_curl_share) {
        (void) curl_share_cleanup(ngx_pt_curl_share);
        ngx_pt_curl_share = NULL;
    }
}


static void
ngx_pt_curl_lock(CURL *handle, curl_lock_data data,
    curl_lock_access access, void *userptr)
{
    (void) pthread_mutex_lock(&ngx_pt_curl_locks[data]);
}


static void
ngx_pt_curl_unlock(CURL *handle, curl_lock_data data, void *userptr)
{
    (void) pthread_mutex_unlock(&ngx_pt_curl_locks[data]);
}


/* libcurl options for the link, on a handle of a token or registry request */

void
ngx_pt_link_apply(void *easy, ngx_pt_link_t *link)
{
    CURL  *curl = easy;

    if (!link->tls_validation) {
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);

    } else if (link->ca_cert.len) {
        /* the remote's CA replaces the system's trust store */
        ngx_pt_link_blob(curl, CURLOPT_CAINFO_BLOB, &link->ca_cert);
        curl_easy_setopt(curl, CURLOPT_CAPATH, NULL);
    }

    if (link->client_cert.len) {
        ngx_pt_link_blob(curl, CURLOPT_SSLCERT_BLOB, &link->client_cert);
        curl_easy_setopt(curl, CURLOPT_SSLCERTTYPE, "PEM");

        if (link->client_key.len) {
            ngx_pt_link_blob(curl, CURLOPT_SSLKEY_BLOB, &link->client_key);
            curl_easy_setopt(curl, CURLOPT_SSLKEYTYPE, "PEM");
        }
    }

    if (link->proxy_url.len) {
        curl_easy_setopt(curl, CURLOPT_PROXY, (char *) link->proxy_url.data);

        /* an https:// proxy is checked as the upstream is */

        if (!link->tls_validation) {
            curl_easy_setopt(curl, CURLOPT_PROXY_SSL_VERIFYPEER, 0L);
            curl_easy_setopt(curl, CURLOPT_PROXY_SSL_VERIFYHOST, 0L);

        } else if (link->ca_cert.len) {
            ngx_pt_link_blob(curl, CURLOPT_PROXY_CAINFO_BLOB, &link->ca_cert);
            curl_easy_setopt(curl, CURLOPT_PROXY_CAPATH, NULL);
        }

        if (link->proxy_username.len) {
            curl_easy_setopt(curl, CURLOPT_PROXYAUTH, (long) CURLAUTH_BASIC);
            curl_easy_setopt(curl, CURLOPT_PROXYUSERNAME,
                             (char *) link->proxy_username.data);
            curl_easy_setopt(curl, CURLOPT_PROXYPASSWORD,
                             link->proxy_password.len
                             ? (char *) link->proxy_password.data : "");
        }

    } else {
        /* not the environment's http_proxy either: only the remote's */
        curl_easy_setopt(curl, CURLOPT_PROXY, "");
    }
}


static void
ngx_pt_link_blob(CURL *curl, CURLoption option, ngx_str_t *pem)
{
    struct curl_blob  blob;

    blob.data = pem->data;
    blob.len = pem->len;
    blob.flags = CURL_BLOB_COPY;

    curl_easy_setopt(curl, option, &blob);
}


/* a try of exchange f through libcurl */

static ngx_int_t
ngx_pt_curl_start(ngx_pt_fetch_t *f)
{
    ngx_pt_curl_t  *c;

    c = ngx_pt_curl_create(f);

    if (c == NULL || ngx_pt_curl_request(c, f) != NGX_OK) {
        goto failed;
    }

    c->fetch = f;
    f->try = c;

    ngx_pt_curl_step(c);

    if (!c->busy) {
        f->try = NULL;
        goto failed;
    }

    return NGX_OK;

failed:

    ngx_log_error(NGX_LOG_ALERT, f->log, 0,
                  "pullthrough: could not start a transfer of \"%V\"",
                  &f->url);

    if (c) {
        ngx_pt_curl_destroy(c);
    }

    return NGX_ERROR;
}


/* a transfer in a pool of its own: its buffers, task and handles */

static ngx_pt_curl_t *
ngx_pt_curl_create(ngx_pt_fetch_t *f)
{
    ngx_uint_t                 kept;
    ngx_pool_t                *pool;
    ngx_pt_curl_t             *c;
    ngx_http_upstream_conf_t  *ucf;

    ucf = ngx_http_get_module_loc_conf(f->r, ngx_http_proxy_module);

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        return NULL;
    }

    c = ngx_pcalloc(pool, sizeof(ngx_pt_curl_t));
    if (c == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    c->pool = pool;
    c->thread_pool = f->settings->thread_pool;
    c->read_timeout = f->settings->read_timeout ? f->settings->read_timeout
                                                : ucf->read_timeout;

    c->out.start = ngx_palloc(pool, NGX_PT_CURL_BUFFER);
    c->hdr = ngx_pnalloc(pool, NGX_PT_CURL_HEADERS);
    c->url = ngx_pnalloc(pool, f->url.len + 1);
    c->task = ngx_thread_task_alloc(pool, 0);

    kept = (ngx_pt_curl_nidle != 0);

    c->easy = curl_easy_init();
    c->multi = kept ? ngx_pt_curl_idle[--ngx_pt_curl_nidle]
                    : curl_multi_init();

    if (c->out.start == NULL || c->hdr == NULL || c->url == NULL
        || c->task == NULL || c->easy == NULL || c->multi == NULL)
    {
        ngx_pt_curl_destroy(c);
        return NULL;
    }

    c->out.pos = c->out.start;
    c->out.last = c->out.start;
    c->out.end = c->out.start + NGX_PT_CURL_BUFFER;
    c->out.temporary = 1;

    (void) ngx_cpystrn((u_char *) c->url, f->url.data, f->url.len + 1);

    c->task->ctx = c;
    c->task->handler = ngx_pt_curl_step_thread;
    c->task->event.handler = ngx_pt_curl_step_done;
    c->task->event.data = c;

    c->kick.handler = ngx_pt_curl_kick;
    c->kick.data = c;
    c->kick.log = ngx_cycle->log;

    ngx_log_debug5(NGX_LOG_DEBUG_HTTP, f->log, 0,
                   "pullthrough curl: %p created for \"%V\": easy handle "
                   "%p, %s multi handle %p", c, &f->url, c->easy,
                   kept ? "a kept" : "a new", c->multi);

    return c;
}


/* the request: the exchange's URL and headers, the remote's link */

static ngx_int_t
ngx_pt_curl_request(ngx_pt_curl_t *c, ngx_pt_fetch_t *f)
{
    ngx_str_t                  name;
    ngx_uint_t                 i;
    ngx_msec_t                 connect_timeout;
    ngx_keyval_t              *kv;
    ngx_pt_settings_t         *s;
    ngx_http_upstream_conf_t  *ucf;

    s = f->settings;
    ucf = ngx_http_get_module_loc_conf(f->r, ngx_http_proxy_module);

    connect_timeout = s->connect_timeout ? s->connect_timeout
                                         : ucf->connect_timeout;

    /* the request headers: the remote's own, never the client's */

    ngx_str_set(&name, "Accept");
    if (ngx_pt_curl_add_header(c, &name, &f->accept) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_str_set(&name, "Authorization");
    if (ngx_pt_curl_add_header(c, &name, &f->authorization) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the remote's own, as credentials: not after a redirect elsewhere */
    kv = (s->headers && !f->foreign) ? s->headers->elts : NULL;

    for (i = 0; kv && i < s->headers->nelts; i++) {
        if (ngx_pt_curl_add_header(c, &kv[i].key, &kv[i].value) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    curl_easy_setopt(c->easy, CURLOPT_URL, c->url);
    curl_easy_setopt(c->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->easy, CURLOPT_ERRORBUFFER, c->error);
    curl_easy_setopt(c->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c->easy, CURLOPT_USERAGENT, NGX_PT_USER_AGENT);
    curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(c->easy, CURLOPT_HEADERFUNCTION, ngx_pt_curl_on_header);
    curl_easy_setopt(c->easy, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, ngx_pt_curl_on_body);
    curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(c->easy, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
    curl_easy_setopt(c->easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c->easy, CURLOPT_BUFFERSIZE, (long) NGX_PT_CURL_READ);
    curl_easy_setopt(c->easy, CURLOPT_SHARE, ngx_pt_curl_share);

    /* redirects are the exchange's to follow: credentials stay behind */
    curl_easy_setopt(c->easy, CURLOPT_FOLLOWLOCATION, 0L);

    curl_easy_setopt(c->easy, CURLOPT_CONNECTTIMEOUT_MS,
                     (long) connect_timeout);

    if (f->head) {
        curl_easy_setopt(c->easy, CURLOPT_NOBODY, 1L);
    }

    ngx_pt_link_apply(c->easy, &s->link);

    return NGX_OK;
}


static ngx_int_t
ngx_pt_curl_add_header(ngx_pt_curl_t *c, ngx_str_t *name, ngx_str_t *value)
{
    u_char             *line;
    struct curl_slist  *list;

    if (value->len == 0) {
        return NGX_OK;
    }

    line = ngx_pnalloc(c->pool, name->len + 2 + value->len + 1);
    if (line == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(line, "%V: %V%Z", name, value);

    list = curl_slist_append(c->headers, (char *) line);
    if (list == NULL) {
        return NGX_ERROR;
    }

    c->headers = list;

    return NGX_OK;
}


static void
ngx_pt_curl_step(ngx_pt_curl_t *c)
{
    c->busy = 1;

    if (ngx_thread_task_post(c->thread_pool, c->task) != NGX_OK) {
        c->busy = 0;
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, c->fetch->log, 0,
                   "pullthrough curl: %p step to the thread pool%s", c,
                   c->paused ? ", resumes the paused transfer" : "");
}


static ngx_msec_t
ngx_pt_curl_clock(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);

    return (ngx_msec_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


/* in a pool thread: the transfer runs until there is something to hand */

static void
ngx_pt_curl_step_thread(void *data, ngx_log_t *log)
{
    ngx_pt_curl_t *c = data;

    int         running, left;
    CURLMsg    *msg;
    CURLMcode   mc;
    ngx_msec_t  start, now;

    start = ngx_pt_curl_clock();

    if (!c->added) {
        if (curl_multi_add_handle(c->multi, c->easy) != CURLM_OK) {
            c->result = CURLE_FAILED_INIT;
            c->finished = 1;
            return;
        }

        c->added = 1;
        c->last_read = start;

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                       "pullthrough curl: %p added to its multi handle", c);
    }

    if (c->paused) {
        /* libcurl hands the bytes it kept first */
        c->paused = 0;
        (void) curl_easy_pause(c->easy, CURLPAUSE_CONT);
    }

    for ( ;; ) {

        if (c->cancel) {
            return;
        }

        mc = curl_multi_perform(c->multi, &running);

        if (mc != CURLM_OK) {
            ngx_cpystrn((u_char *) c->error,
                        (u_char *) curl_multi_strerror(mc), CURL_ERROR_SIZE);
            c->result = CURLE_FAILED_INIT;
            c->finished = 1;
            return;
        }

        while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
            if (msg->msg == CURLMSG_DONE) {
                c->result = msg->data.result;
                c->finished = 1;
            }
        }

        if (c->finished || c->paused || c->bad_header
            || (c->header_done && !c->header_sent))
        {
            return;
        }

        now = ngx_pt_curl_clock();

        if (c->out.last > c->out.pos) {
            if (c->out.last - c->out.pos >= NGX_PT_CURL_BATCH
                || now - start >= NGX_PT_CURL_LATENCY)
            {
                return;
            }

        } else if (now - start >= NGX_PT_CURL_STEP) {
            /* back in the pool's queue: other tasks get their turn */
            return;
        }

        if (c->read_timeout && now - c->last_read >= c->read_timeout) {
            c->idle = 1;
            c->result = CURLE_OPERATION_TIMEDOUT;
            c->finished = 1;
            return;
        }

        (void) curl_multi_poll(c->multi, NULL, 0, NGX_PT_CURL_POLL, NULL);
    }
}


/* in a pool thread: the response's header lines, the last response's kept */

static size_t
ngx_pt_curl_on_header(char *p, size_t size, size_t n, void *data)
{
    ngx_pt_curl_t *c = data;

    size_t   len;
    u_char  *s;

    len = size * n;
    c->last_read = ngx_pt_curl_clock();

    if (len >= 12 && ngx_strncmp(p, "HTTP/", 5) == 0) {
        /* a status line: an interim response (100) or a new one */
        s = (u_char *) ngx_strlchr((u_char *) p, (u_char *) p + len, ' ');

        if (s == NULL || (u_char *) p + len - s < 4) {
            c->bad_header = 1;
            return 0;
        }

        c->status = ngx_atoi(s + 1, 3);
        c->hdr_len = 0;
        c->header_done = 0;

        return len;
    }

    if (len <= 2 && (p[0] == '\r' || p[0] == '\n')) {
        if (c->status >= 200) {
            c->header_done = 1;
        }

        return len;
    }

    if (c->hdr_len + len > NGX_PT_CURL_HEADERS) {
        c->bad_header = 1;
        return 0;
    }

    ngx_memcpy(c->hdr + c->hdr_len, p, len);
    c->hdr_len += len;

    return len;
}


/* in a pool thread: body bytes, or a pause when the buffer is full */

static size_t
ngx_pt_curl_on_body(char *p, size_t size, size_t n, void *data)
{
    ngx_pt_curl_t *c = data;

    size_t  len;

    len = size * n;

    if (c->cancel) {
        return 0;
    }

    if (len > (size_t) (c->out.end - c->out.last)) {
        c->paused = 1;
        return CURL_WRITEFUNC_PAUSE;
    }

    c->out.last = ngx_cpymem(c->out.last, p, len);
    c->last_read = ngx_pt_curl_clock();

    return len;
}


static void
ngx_pt_curl_step_done(ngx_event_t *ev)
{
    ngx_pt_curl_t *c = ev->data;

    ngx_connection_t  *conn;

    c->busy = 0;

    if (c->fetch == NULL) {
        ngx_pt_curl_destroy(c);
        return;
    }

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, c->fetch->log, 0,
                   "pullthrough curl: %p step done: %uz bytes%s%s", c,
                   (size_t) (c->out.last - c->out.pos),
                   c->header_done && !c->header_sent ? ", the header" : "",
                   c->finished ? ", finished"
                               : c->paused ? ", paused: its buffer is full"
                                           : "");

    conn = c->fetch->r ? c->fetch->r->connection : NULL;

    ngx_pt_curl_process(c);

    if (conn) {
        ngx_http_run_posted_requests(conn);
    }
}


/* what a step brought: the header, then the body, then maybe the end */

static void
ngx_pt_curl_process(ngx_pt_curl_t *c)
{
    ngx_chain_t      cl;
    ngx_pt_fetch_t  *f;

    f = c->fetch;

    if (c->header_done && !c->header_sent && !f->stopped) {
        c->header_sent = 1;

        if (ngx_pt_curl_header(c, f) != NGX_OK) {
            c->failed = 1;
            ngx_pt_curl_finish(c);
            return;
        }
    }

    if (c->out.last > c->out.pos && !f->stopped) {
        cl.buf = &c->out;
        cl.next = NULL;

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, f->log, 0,
                       "pullthrough curl: %p %uz body bytes to the exchange",
                       c, (size_t) (c->out.last - c->out.pos));

        f->got_body(f, &cl);

        if (c->fetch == NULL) {
            return;
        }

        if (c->out.pos < c->out.last && !f->stopped) {
            /* the consumer keeps them: ngx_pt_curl_resume() comes */

            ngx_log_debug2(NGX_LOG_DEBUG_HTTP, f->log, 0,
                           "pullthrough curl: %p paused: the exchange keeps "
                           "%uz bytes", c,
                           (size_t) (c->out.last - c->out.pos));
            return;
        }
    }

    ngx_pt_curl_next(c);
}


static void
ngx_pt_curl_next(ngx_pt_curl_t *c)
{
    ngx_pt_fetch_t  *f;

    f = c->fetch;

    c->out.pos = c->out.start;
    c->out.last = c->out.start;

    if (c->finished || c->cancel || f->stopped || c->bad_header) {
        ngx_pt_curl_finish(c);
        return;
    }

    ngx_pt_curl_step(c);

    if (!c->busy) {
        c->failed = 1;
        ngx_pt_curl_finish(c);
    }
}


/* the consumer took what it kept: the transfer goes on */

static void
ngx_pt_curl_resume(ngx_pt_curl_t *c)
{
    if (!c->busy && !c->kick.posted) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->fetch->log, 0,
                       "pullthrough curl: %p resumed", c);

        ngx_post_event(&c->kick, &ngx_posted_events);
    }
}


/* ended by this side (a fill failed, total_timeout): at the next step */

static void
ngx_pt_curl_stop(ngx_pt_curl_t *c)
{
    c->cancel = 1;

    if (!c->busy && !c->kick.posted) {
        ngx_post_event(&c->kick, &ngx_posted_events);
    }
}


static void
ngx_pt_curl_kick(ngx_event_t *ev)
{
    ngx_pt_curl_t *c = ev->data;

    ngx_connection_t  *conn;

    if (c->busy || c->fetch == NULL) {
        return;
    }

    if (c->out.pos < c->out.last && !c->cancel && !c->fetch->stopped) {
        return;
    }

    conn = c->fetch->r ? c->fetch->r->connection : NULL;

    ngx_pt_curl_next(c);

    if (conn) {
        ngx_http_run_posted_requests(conn);
    }
}


/* the request that carried the exchange is gone */

static void
ngx_pt_curl_orphan(ngx_pt_fetch_t *f)
{
    ngx_pt_curl_t  *c;

    c = f->try;
    f->try = NULL;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, f->log, 0,
                   "pullthrough curl: %p orphaned%s", c,
                   c->busy ? ", goes at the end of its step" : "");

    c->fetch = NULL;
    c->cancel = 1;

    if (!c->busy) {
        ngx_pt_curl_destroy(c);
    }
}


static void
ngx_pt_curl_finish(ngx_pt_curl_t *c)
{
    long             connects;
    ngx_int_t        rc;
    ngx_pt_fetch_t  *f;

    f = c->fetch;

    if (c->failed) {
        rc = NGX_ERROR;

    } else if (f->timed_out) {
        rc = NGX_HTTP_GATEWAY_TIME_OUT;

    } else if (f->stopped) {
        /* as a subrequest whose upstream length was set to 0 */
        rc = NGX_OK;

    } else if (c->bad_header) {
        ngx_log_error(NGX_LOG_ERR, f->log, 0,
                      "pullthrough: \"%V\": the upstream sent an invalid "
                      "or too large header", &f->url);
        rc = NGX_HTTP_BAD_GATEWAY;

    } else if (c->result == CURLE_OK) {
        rc = NGX_OK;

    } else {
        rc = (c->result == CURLE_OPERATION_TIMEDOUT)
             ? NGX_HTTP_GATEWAY_TIME_OUT : NGX_HTTP_BAD_GATEWAY;

        if (c->idle) {
            ngx_log_error(NGX_LOG_ERR, f->log, 0,
                          "pullthrough: \"%V\": no data within the remote's "
                          "sock_read_timeout", &f->url);

        } else {
            ngx_log_error(NGX_LOG_ERR, f->log, 0,
                          "pullthrough: \"%V\" failed%s: %s", &f->url,
                          f->settings->link.proxy_url.len
                          ? " (through the remote's proxy)" : "",
                          c->error[0] ? c->error
                                      : curl_easy_strerror(c->result));
        }
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, f->log, 0,
                   "pullthrough curl: %p finished: CURLcode %d, rc %i", c,
                   (int) c->result, rc);

    /* no new connection for the transfer: it went on a kept one */

    if (c->header_done
        && curl_easy_getinfo(c->easy, CURLINFO_NUM_CONNECTS, &connects)
           == CURLE_OK)
    {
        f->reused = (connects == 0);
    }

    f->try = NULL;
    c->fetch = NULL;

    ngx_pt_curl_destroy(c);

    f->ended(f, rc);
}


static void
ngx_pt_curl_destroy(ngx_pt_curl_t *c)
{
    ngx_uint_t  keep;

    /* a multi handle of a transfer that ended well serves the next one */
    keep = c->multi && c->finished && c->result == CURLE_OK && !c->cancel
           && !c->bad_header && ngx_pt_curl_nidle < NGX_PT_CURL_IDLE;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "pullthrough curl: %p cleaned up, its multi handle %s",
                   c, keep ? "kept" : "closed");

    if (c->kick.posted) {
        ngx_delete_posted_event(&c->kick);
    }

    if (c->easy) {
        if (c->added) {
            (void) curl_multi_remove_handle(c->multi, c->easy);
        }

        curl_easy_cleanup(c->easy);
    }

    if (c->multi) {
        if (keep) {
            /* its connection, if kept alive, serves the next transfer */
            ngx_pt_curl_idle[ngx_pt_curl_nidle++] = c->multi;

        } else {
            (void) curl_multi_cleanup(c->multi);
        }
    }

    if (c->headers) {
        curl_slist_free_all(c->headers);
    }

    ngx_destroy_pool(c->pool);
}


/* the final response's header, into the exchange as the filter's */

static ngx_int_t
ngx_pt_curl_header(ngx_pt_curl_t *c, ngx_pt_fetch_t *f)
{
    u_char     *p, *last, *eol, *colon, *v, *e;
    ngx_str_t   name, value;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, f->log, 0,
                   "pullthrough curl: %p header received: %ui, %uz bytes",
                   c, c->status, c->hdr_len);

    f->status = c->status;

    p = c->hdr;
    last = c->hdr + c->hdr_len;

    for ( /* void */ ; p < last; p = eol + 1) {
        eol = ngx_strlchr(p, last, '\n');
        if (eol == NULL) {
            eol = last;
        }

        colon = ngx_strlchr(p, eol, ':');
        if (colon == NULL) {
            continue;
        }

        name.data = p;
        name.len = colon - p;

        for (v = colon + 1; v < eol && (*v == ' ' || *v == '\t'); v++) {
            /* void */
        }

        for (e = eol; e > v && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t');
             e--)
        {
            /* void */
        }

        value.data = v;
        value.len = e - v;

        if (ngx_pt_exchange_header(f, &name, &value) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return f->got_header(f);
}


/* the transport, as exchanges see it */

static ngx_uint_t
ngx_pt_curl_running(ngx_pt_fetch_t *f)
{
    return f->try != NULL;
}


static void
ngx_pt_curl_stop_fetch(ngx_pt_fetch_t *f)
{
    if (f->try) {
        ngx_pt_curl_stop(f->try);
    }
}


static void
ngx_pt_curl_resume_fetch(ngx_pt_fetch_t *f)
{
    if (f->try) {
        ngx_pt_curl_resume(f->try);
    }
}


const ngx_pt_transport_t  ngx_pt_curl_transport = {
    "libcurl",
    ngx_pt_curl_start,
    ngx_pt_curl_running,
    ngx_pt_curl_stop_fetch,
    ngx_pt_curl_resume_fetch,
    ngx_pt_curl_stop_fetch,          /* total_timeout: stops at next step */
    ngx_pt_curl_orphan
};
