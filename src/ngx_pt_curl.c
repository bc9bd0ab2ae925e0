/*
 * ngx_pullthrough: exchanges with upstreams that nginx's proxy module cannot
 * reach: through a forward proxy (CONNECT for https), trusting the remote's
 * own CA, presenting a client certificate. Each worker has one libcurl
 * multi handle, driven by a thread of its own (the driver): every transfer
 * of the worker is in it, so connections are reused across transfers, and
 * the transfers to an HTTP/2 upstream share one connection (multiplexed
 * layer fetches). The event loop asks the driver for a step of a transfer;
 * the driver hands the step back as soon as the header, some body or the
 * end has come, through a pipe the event loop watches. The event loop then
 * hands what came to the exchange as the proxy module's filters would
 * (ngx_pt_fetch.c), and asks for the next step once the consumer has taken
 * all of it. In between, the transfer is paused: an exchange holds one
 * buffer, whatever the blob's size, and the driver never touches it.
 */


#include <ngx_pt.h>
#include <ngx_pt_curl.h>

#include <curl/curl.h>
#include <pthread.h>


#define NGX_PT_CURL_BUFFER      (256 * 1024)    /* a step hands at most */
#define NGX_PT_CURL_READ        (64 * 1024)     /* libcurl's reads */
#define NGX_PT_CURL_HEADERS     (32 * 1024)
#define NGX_PT_CURL_WAIT        1000    /* ms: the driver's longest poll */
#define NGX_PT_CURL_CONNECTIONS 64      /* kept open by a worker */


/*
 * The proxy module's location configuration begins with its upstream
 * configuration: the operator's proxy_connect_timeout and proxy_read_timeout
 * in the registry location apply to both transports.
 */
extern ngx_module_t  ngx_http_proxy_module;


typedef struct ngx_pt_curl_s  ngx_pt_curl_t;

/*
 * A transfer's fields by who writes them. The event loop's and the
 * driver's are never written by the other, and are not bit-fields sharing
 * a word with the other's. The step's are the driver's while a step runs
 * (busy) and the event loop's once it was handed back; the driver writes
 * them only then.
 */
struct ngx_pt_curl_s {
    ngx_pool_t                 *pool;
    CURL                       *easy;
    struct curl_slist          *headers;
    char                       *url;
    char                        error[CURL_ERROR_SIZE];

    /* the event loop's */
    ngx_pt_fetch_t             *fetch;       /* NULL: orphaned */
    ngx_event_t                 kick;        /* resume, stop */
    ngx_uint_t                  busy;        /* a step is the driver's */
    ngx_uint_t                  given;       /* to the driver, once */
    unsigned                    cancel:1;
    unsigned                    header_sent:1;
    unsigned                    failed:1;    /* our side ended it */

    /* under the hub's lock: the event loop's requests, the way back */
    ngx_queue_t                 in;          /* hub->incoming */
    ngx_queue_t                 out_link;    /* hub->outgoing */
    u_char                      in_queued;
    u_char                      want_step;
    u_char                      want_cancel;
    u_char                      want_release;
    u_char                      released;    /* the driver let it go */

    /* the driver's */
    ngx_queue_t                 active;      /* hub->active: in a step */
    u_char                      added;       /* to the multi handle */
    u_char                      stepping;
    u_char                      paused;      /* CURL_WRITEFUNC_PAUSE */
    u_char                      done;        /* libcurl ended it */
    u_char                      header_given;
    CURLcode                    done_result;
    ngx_msec_t                  read_timeout;
    ngx_msec_t                  last_read;   /* the driver's clock */

    /* the step's */
    ngx_buf_t                   out;         /* body bytes for the consumer */
    u_char                     *hdr;         /* the final response's header */
    size_t                      hdr_len;
    ngx_uint_t                  status;
    CURLcode                    result;
    long                        connects;    /* new ones, -1: unknown */
    long                        version;     /* CURL_HTTP_VERSION_* */
    u_char                      header_done;
    u_char                      finished;
    u_char                      bad_header;
    u_char                      idle;        /* sock_read_timeout */
};


/*
 * The worker's multi handle and its driver. The lock guards the queues,
 * the transfers' requests and the flags; the multi handle and everything
 * in it are the driver's alone (libcurl's handles are not thread-safe,
 * curl_multi_wakeup() is).
 */
typedef struct {
    CURLM                      *multi;
    pthread_t                   thread;
    pthread_mutex_t             lock;
    ngx_queue_t                 incoming;    /* event loop -> driver */
    ngx_queue_t                 outgoing;    /* driver -> event loop */
    ngx_queue_t                 active;      /* the driver's */
    ngx_connection_t           *notify;      /* the pipe's reading end */
    int                         pipe[2];
    ngx_uint_t                  signalled;   /* a byte is in the pipe */
    ngx_uint_t                  quit;
    ngx_uint_t                  started;
    ngx_uint_t                  failed;
} ngx_pt_curl_hub_t;


static ngx_int_t ngx_pt_curl_start(ngx_pt_fetch_t *f);
static ngx_pt_curl_t *ngx_pt_curl_create(ngx_pt_fetch_t *f);
static ngx_int_t ngx_pt_curl_request(ngx_pt_curl_t *c, ngx_pt_fetch_t *f);
static ngx_int_t ngx_pt_curl_hub_start(ngx_log_t *log);
static void ngx_pt_curl_hub_stop(void);
static void ngx_pt_curl_ask(ngx_pt_curl_t *c, u_char *want);
static void ngx_pt_curl_notified(ngx_event_t *ev);
static void *ngx_pt_curl_drive(void *data);
static void ngx_pt_curl_apply(ngx_pt_curl_t *c);
static ngx_msec_t ngx_pt_curl_check(ngx_msec_t now);
static void ngx_pt_curl_hand_back(ngx_pt_curl_t *c);
static void ngx_pt_curl_resume(ngx_pt_curl_t *c);
static void ngx_pt_curl_stop(ngx_pt_curl_t *c);
static void ngx_pt_curl_orphan(ngx_pt_fetch_t *f);
static void ngx_pt_curl_step(ngx_pt_curl_t *c);
static void ngx_pt_curl_step_done(ngx_pt_curl_t *c);
static void ngx_pt_curl_process(ngx_pt_curl_t *c);
static void ngx_pt_curl_kick(ngx_event_t *ev);
static void ngx_pt_curl_next(ngx_pt_curl_t *c);
static void ngx_pt_curl_finish(ngx_pt_curl_t *c);
static void ngx_pt_curl_release(ngx_pt_curl_t *c);
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
 * TLS sessions and DNS answers are shared through a share handle too, so
 * that token requests (ngx_pt_auth.c, in the thread pool) could use them;
 * connections are the multi handle's.
 */
static CURLSH             *ngx_pt_curl_share;
static pthread_mutex_t     ngx_pt_curl_locks[CURL_LOCK_DATA_LAST];
static ngx_pt_curl_hub_t   ngx_pt_curl_hub;


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
    ngx_pt_curl_hub_stop();

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


/*
 * The hub starts with the worker's first transfer: its multi handle, the
 * pipe back to the event loop, the driver thread. A hub that could not
 * start is not tried again: the worker's transfers fail, and say so.
 */

static ngx_int_t
ngx_pt_curl_hub_start(ngx_log_t *log)
{
    int                 err;
    sigset_t            all, old;
    ngx_event_t        *rev;
    ngx_pt_curl_hub_t  *hub;

    hub = &ngx_pt_curl_hub;

    if (hub->started || hub->failed) {
        return hub->started ? NGX_OK : NGX_ERROR;
    }

    hub->failed = 1;
    hub->pipe[0] = -1;
    hub->pipe[1] = -1;

    ngx_queue_init(&hub->incoming);
    ngx_queue_init(&hub->outgoing);
    ngx_queue_init(&hub->active);

    if (pthread_mutex_init(&hub->lock, NULL) != 0) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      "pullthrough curl: pthread_mutex_init() failed");
        return NGX_ERROR;
    }

    hub->multi = curl_multi_init();
    if (hub->multi == NULL) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "pullthrough curl: curl_multi_init() failed");
        return NGX_ERROR;
    }

    /* HTTP/2 streams share a connection; idle connections stay open */
    curl_multi_setopt(hub->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    curl_multi_setopt(hub->multi, CURLMOPT_MAXCONNECTS,
                      (long) NGX_PT_CURL_CONNECTIONS);

    if (pipe2(hub->pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      "pullthrough curl: pipe2() failed");
        goto failed;
    }

    hub->notify = ngx_get_connection(hub->pipe[0], log);
    if (hub->notify == NULL) {
        goto failed;
    }

    rev = hub->notify->read;
    rev->handler = ngx_pt_curl_notified;
    rev->log = ngx_cycle->log;
    hub->notify->log = ngx_cycle->log;

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        goto failed;
    }

    /* the driver takes no signals: they are the worker's */

    (void) sigfillset(&all);
    (void) pthread_sigmask(SIG_SETMASK, &all, &old);

    err = pthread_create(&hub->thread, NULL, ngx_pt_curl_drive, hub);

    (void) pthread_sigmask(SIG_SETMASK, &old, NULL);

    if (err != 0) {
        ngx_log_error(NGX_LOG_ALERT, log, err,
                      "pullthrough curl: pthread_create() failed");
        goto failed;
    }

    hub->started = 1;
    hub->failed = 0;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                   "pullthrough curl: the worker's multi handle %p and its "
                   "driver started, notified through fd %d",
                   hub->multi, hub->pipe[0]);

    return NGX_OK;

failed:

    if (hub->notify) {
        ngx_close_connection(hub->notify);
        hub->notify = NULL;
        hub->pipe[0] = -1;
    }

    if (hub->pipe[0] != -1) {
        (void) close(hub->pipe[0]);
    }

    if (hub->pipe[1] != -1) {
        (void) close(hub->pipe[1]);
    }

    (void) curl_multi_cleanup(hub->multi);
    hub->multi = NULL;

    return NGX_ERROR;
}


/* the worker exits: the driver ends; transfers still in it go with it */

static void
ngx_pt_curl_hub_stop(void)
{
    ngx_pt_curl_hub_t  *hub;

    hub = &ngx_pt_curl_hub;

    if (!hub->started) {
        return;
    }

    (void) pthread_mutex_lock(&hub->lock);
    hub->quit = 1;
    (void) pthread_mutex_unlock(&hub->lock);

    (void) curl_multi_wakeup(hub->multi);
    (void) pthread_join(hub->thread, NULL);

    (void) curl_multi_cleanup(hub->multi);

    ngx_close_connection(hub->notify);
    (void) close(hub->pipe[1]);

    hub->started = 0;
}


/* the event loop asks the driver for something about transfer c */

static void
ngx_pt_curl_ask(ngx_pt_curl_t *c, u_char *want)
{
    ngx_pt_curl_hub_t  *hub;

    hub = &ngx_pt_curl_hub;
    c->given = 1;

    (void) pthread_mutex_lock(&hub->lock);

    *want = 1;

    if (!c->in_queued) {
        c->in_queued = 1;
        ngx_queue_insert_tail(&hub->incoming, &c->in);
    }

    (void) pthread_mutex_unlock(&hub->lock);

    (void) curl_multi_wakeup(hub->multi);
}


/* the pipe says the driver handed transfers back */

static void
ngx_pt_curl_notified(ngx_event_t *ev)
{
    u_char              buf[64];
    ngx_queue_t         back, *q;
    ngx_pt_curl_t      *c;
    ngx_pt_curl_hub_t  *hub;

    hub = &ngx_pt_curl_hub;

    while (read(hub->pipe[0], buf, sizeof(buf)) > 0) {
        /* void */
    }

    ngx_queue_init(&back);

    (void) pthread_mutex_lock(&hub->lock);

    hub->signalled = 0;

    while (!ngx_queue_empty(&hub->outgoing)) {
        q = ngx_queue_head(&hub->outgoing);
        ngx_queue_remove(q);
        ngx_queue_insert_tail(&back, q);
    }

    (void) pthread_mutex_unlock(&hub->lock);

    while (!ngx_queue_empty(&back)) {
        q = ngx_queue_head(&back);
        ngx_queue_remove(q);

        c = ngx_queue_data(q, ngx_pt_curl_t, out_link);

        if (c->released) {
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                           "pullthrough curl: %p let go by the driver", c);
            ngx_destroy_pool(c->pool);
            continue;
        }

        ngx_pt_curl_step_done(c);
    }
}


/*
 * The driver: the requests of the event loop, curl_multi_perform(), the
 * transfers whose step can be handed back, then curl_multi_poll() until a
 * socket is ready, a timer of libcurl's is due, a read timeout may be, or
 * the event loop wakes it.
 */

static void *
ngx_pt_curl_drive(void *data)
{
    ngx_pt_curl_hub_t *hub = data;

    int             running, left;
    char           *priv;
    CURLMsg        *msg;
    CURLMcode       mc;
    ngx_msec_t      wait;
    ngx_queue_t    *q;
    ngx_pt_curl_t  *c;

    (void) pthread_mutex_lock(&hub->lock);

    for ( ;; ) {

        while (!ngx_queue_empty(&hub->incoming)) {
            q = ngx_queue_head(&hub->incoming);
            ngx_queue_remove(q);

            c = ngx_queue_data(q, ngx_pt_curl_t, in);
            c->in_queued = 0;

            ngx_pt_curl_apply(c);
        }

        if (hub->quit) {
            break;
        }

        (void) pthread_mutex_unlock(&hub->lock);

        mc = curl_multi_perform(hub->multi, &running);

        while ((msg = curl_multi_info_read(hub->multi, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE) {
                continue;
            }

            priv = NULL;
            (void) curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE,
                                     &priv);
            c = (ngx_pt_curl_t *) priv;

            if (c) {
                c->done = 1;
                c->done_result = msg->data.result;
            }
        }

        (void) pthread_mutex_lock(&hub->lock);

        if (mc != CURLM_OK) {
            /* the multi handle itself failed: every step ends with it */
            for (q = ngx_queue_head(&hub->active);
                 q != ngx_queue_sentinel(&hub->active);
                 q = ngx_queue_next(q))
            {
                c = ngx_queue_data(q, ngx_pt_curl_t, active);
                c->done = 1;
                c->done_result = CURLE_FAILED_INIT;
                ngx_cpystrn((u_char *) c->error,
                            (u_char *) curl_multi_strerror(mc),
                            CURL_ERROR_SIZE);
            }
        }

        wait = ngx_pt_curl_check(ngx_pt_curl_clock());

        if (!ngx_queue_empty(&hub->incoming)) {
            continue;
        }

        (void) pthread_mutex_unlock(&hub->lock);

        (void) curl_multi_poll(hub->multi, NULL, 0, (int) wait, NULL);

        (void) pthread_mutex_lock(&hub->lock);
    }

    (void) pthread_mutex_unlock(&hub->lock);

    return NULL;
}


/* in the driver, under the lock: what the event loop asked for c */

static void
ngx_pt_curl_apply(ngx_pt_curl_t *c)
{
    ngx_pt_curl_hub_t  *hub;

    hub = &ngx_pt_curl_hub;

    if (c->want_release) {
        /* the event loop is done with it: out of the multi handle */

        if (c->stepping) {
            ngx_queue_remove(&c->active);
            c->stepping = 0;
        }

        if (c->added) {
            (void) curl_multi_remove_handle(hub->multi, c->easy);
        }

        curl_easy_cleanup(c->easy);
        c->easy = NULL;

        if (c->headers) {
            curl_slist_free_all(c->headers);
            c->headers = NULL;
        }

        c->released = 1;
        ngx_queue_insert_tail(&hub->outgoing, &c->out_link);

        return;
    }

    if (c->want_cancel) {
        c->want_cancel = 0;

        /* the connection is closed at once, not after the transfer */

        if (c->added) {
            (void) curl_multi_remove_handle(hub->multi, c->easy);
            c->added = 0;
        }

        if (!c->done) {
            c->done = 1;
            c->done_result = CURLE_ABORTED_BY_CALLBACK;
        }
    }

    if (c->want_step) {
        c->want_step = 0;

        if (!c->added && !c->done) {
            if (curl_multi_add_handle(hub->multi, c->easy) != CURLM_OK) {
                c->done = 1;
                c->done_result = CURLE_FAILED_INIT;

            } else {
                c->added = 1;
                c->last_read = ngx_pt_curl_clock();
            }
        }

        c->stepping = 1;
        ngx_queue_insert_tail(&hub->active, &c->active);

        if (c->paused && c->added) {
            /* libcurl hands the bytes it kept first */
            c->paused = 0;
            (void) curl_easy_pause(c->easy, CURLPAUSE_CONT);
        }
    }

    if (c->stepping && c->done) {
        ngx_pt_curl_hand_back(c);
    }
}


/*
 * In the driver, under the lock: the steps that have something for the
 * event loop are handed back. Returns how long the driver may poll.
 */

static ngx_msec_t
ngx_pt_curl_check(ngx_msec_t now)
{
    ssize_t             n;
    ngx_msec_t          wait, left;
    ngx_queue_t        *q, *next;
    ngx_pt_curl_t      *c;
    ngx_pt_curl_hub_t  *hub;

    hub = &ngx_pt_curl_hub;
    wait = NGX_PT_CURL_WAIT;

    for (q = ngx_queue_head(&hub->active);
         q != ngx_queue_sentinel(&hub->active);
         q = next)
    {
        next = ngx_queue_next(q);
        c = ngx_queue_data(q, ngx_pt_curl_t, active);

        if (!c->done && c->read_timeout
            && now - c->last_read >= c->read_timeout)
        {
            c->idle = 1;
            c->done = 1;
            c->done_result = CURLE_OPERATION_TIMEDOUT;
        }

        if (c->done || c->bad_header || c->paused
            || (c->header_done && !c->header_given)
            || c->out.last > c->out.pos)
        {
            ngx_pt_curl_hand_back(c);
            continue;
        }

        if (c->read_timeout) {
            left = c->read_timeout - (now - c->last_read);
            wait = ngx_min(wait, left);
        }
    }

    /* one byte in the pipe says there is something: a full pipe too */

    if (!ngx_queue_empty(&hub->outgoing) && !hub->signalled) {
        n = write(hub->pipe[1], "s", 1);
        hub->signalled = (n == 1 || ngx_errno == NGX_EAGAIN);
    }

    return wait ? wait : 1;
}


/* in the driver, under the lock: the step of c ends */

static void
ngx_pt_curl_hand_back(ngx_pt_curl_t *c)
{
    ngx_pt_curl_hub_t  *hub;

    hub = &ngx_pt_curl_hub;

    ngx_queue_remove(&c->active);
    c->stepping = 0;

    if (c->header_done && !c->header_given) {
        c->header_given = 1;

        if (curl_easy_getinfo(c->easy, CURLINFO_NUM_CONNECTS, &c->connects)
            != CURLE_OK)
        {
            c->connects = -1;
        }

        (void) curl_easy_getinfo(c->easy, CURLINFO_HTTP_VERSION, &c->version);
    }

    c->finished = c->done;
    c->result = c->done_result;

    ngx_queue_insert_tail(&hub->outgoing, &c->out_link);
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

    if (ngx_pt_curl_hub_start(f->log) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, f->log, 0,
                      "pullthrough: could not start a transfer of \"%V\": "
                      "the worker's libcurl driver did not start", &f->url);
        return NGX_ERROR;
    }

    c = ngx_pt_curl_create(f);

    if (c == NULL || ngx_pt_curl_request(c, f) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, f->log, 0,
                      "pullthrough: could not start a transfer of \"%V\"",
                      &f->url);

        if (c) {
            ngx_pt_curl_destroy(c);
        }

        return NGX_ERROR;
    }

    c->fetch = f;
    f->try = c;

    ngx_pt_curl_step(c);

    return NGX_OK;
}


/* a transfer in a pool of its own: its buffers and easy handle */

static ngx_pt_curl_t *
ngx_pt_curl_create(ngx_pt_fetch_t *f)
{
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
    c->read_timeout = f->settings->read_timeout ? f->settings->read_timeout
                                                : ucf->read_timeout;
    c->connects = -1;

    c->out.start = ngx_palloc(pool, NGX_PT_CURL_BUFFER);
    c->hdr = ngx_pnalloc(pool, NGX_PT_CURL_HEADERS);
    c->url = ngx_pnalloc(pool, f->url.len + 1);
    c->easy = curl_easy_init();

    if (c->out.start == NULL || c->hdr == NULL || c->url == NULL
        || c->easy == NULL)
    {
        ngx_pt_curl_destroy(c);
        return NULL;
    }

    c->out.pos = c->out.start;
    c->out.last = c->out.start;
    c->out.end = c->out.start + NGX_PT_CURL_BUFFER;
    c->out.temporary = 1;

    (void) ngx_cpystrn((u_char *) c->url, f->url.data, f->url.len + 1);

    c->kick.handler = ngx_pt_curl_kick;
    c->kick.data = c;
    c->kick.log = ngx_cycle->log;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, f->log, 0,
                   "pullthrough curl: %p created for \"%V\": easy handle %p",
                   c, &f->url, c->easy);

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
    curl_easy_setopt(c->easy, CURLOPT_PRIVATE, (char *) c);
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

    /*
     * HTTP/2 with an https upstream that offers it (ALPN), and a transfer
     * waits for a connection being opened to the same upstream rather than
     * opening another: the layers of a pull are streams on one connection.
     * Not with plain http: libcurl would learn nothing from the connection
     * (no ALPN), and the waiting transfer would wait for the other's end.
     */
    curl_easy_setopt(c->easy, CURLOPT_HTTP_VERSION,
                     (long) CURL_HTTP_VERSION_2TLS);

    if (f->url.len > 8
        && ngx_strncasecmp(f->url.data, (u_char *) "https://", 8) == 0)
    {
        curl_easy_setopt(c->easy, CURLOPT_PIPEWAIT, 1L);
    }

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


/* a step: the driver runs the transfer until it has something to hand */

static void
ngx_pt_curl_step(ngx_pt_curl_t *c)
{
    c->busy = 1;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->fetch->log, 0,
                   "pullthrough curl: %p step asked of the driver", c);

    ngx_pt_curl_ask(c, &c->want_step);
}


static ngx_msec_t
ngx_pt_curl_clock(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);

    return (ngx_msec_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


/* in the driver: the response's header lines, the last response's kept */

static size_t
ngx_pt_curl_on_header(char *p, size_t size, size_t n, void *data)
{
    ngx_pt_curl_t *c = data;

    size_t   len;
    u_char  *s;

    len = size * n;

    if (c->header_done) {
        /* trailers: the header was handed over, and is the event loop's */
        return len;
    }

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


/*
 * In the driver: body bytes. They wait in libcurl (a pause) when the
 * buffer is full, and when no step runs: the buffer is the event loop's.
 */

static size_t
ngx_pt_curl_on_body(char *p, size_t size, size_t n, void *data)
{
    ngx_pt_curl_t *c = data;

    size_t  len;

    len = size * n;

    if (!c->stepping || len > (size_t) (c->out.end - c->out.last)) {
        c->paused = 1;
        return CURL_WRITEFUNC_PAUSE;
    }

    c->out.last = ngx_cpymem(c->out.last, p, len);
    c->last_read = ngx_pt_curl_clock();

    return len;
}


/* on the event loop: a step handed back */

static void
ngx_pt_curl_step_done(ngx_pt_curl_t *c)
{
    ngx_connection_t  *conn;

    c->busy = 0;

    if (c->fetch == NULL) {
        ngx_pt_curl_release(c);
        return;
    }

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, c->fetch->log, 0,
                   "pullthrough curl: %p step done: %uz bytes%s%s", c,
                   (size_t) (c->out.last - c->out.pos),
                   c->header_done && !c->header_sent ? ", the header" : "",
                   c->finished ? ", finished" : "");

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


/* ended by this side (a fill failed, total_timeout): now */

static void
ngx_pt_curl_stop(ngx_pt_curl_t *c)
{
    c->cancel = 1;

    if (c->busy) {
        /* the driver ends the step, and closes the connection */
        ngx_pt_curl_ask(c, &c->want_cancel);
        return;
    }

    if (!c->kick.posted) {
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
                   c->busy ? ", goes when its step is handed back" : "");

    c->fetch = NULL;
    c->cancel = 1;

    if (c->busy) {
        ngx_pt_curl_ask(c, &c->want_cancel);
        return;
    }

    ngx_pt_curl_release(c);
}


static void
ngx_pt_curl_finish(ngx_pt_curl_t *c)
{
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

    if (c->header_done && c->connects >= 0) {
        f->reused = (c->connects == 0);
    }

    f->http2 = (c->version == CURL_HTTP_VERSION_2_0);

    f->try = NULL;
    c->fetch = NULL;

    ngx_pt_curl_release(c);

    f->ended(f, rc);
}


/* on the event loop: the transfer is done with; the driver lets it go */

static void
ngx_pt_curl_release(ngx_pt_curl_t *c)
{
    if (c->kick.posted) {
        ngx_delete_posted_event(&c->kick);
    }

    if (!c->given) {
        ngx_pt_curl_destroy(c);
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "pullthrough curl: %p given back to the driver", c);

    ngx_pt_curl_ask(c, &c->want_release);
}


/* a transfer the driver never had */

static void
ngx_pt_curl_destroy(ngx_pt_curl_t *c)
{
    if (c->easy) {
        curl_easy_cleanup(c->easy);
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
    ngx_pt_curl_stop_fetch,          /* total_timeout: stops now */
    ngx_pt_curl_orphan
};
