
/*
 * ngx_pullthrough: what an upstream exchange and its transports share
 * (ngx_pt_exchange.c). The exchange (ngx_pt_fetch.c) decides what to ask
 * and what to do with the answer; a transport (ngx_pt_subrequest.c,
 * ngx_pt_curl.c) makes one try at a time and hands the answer back through
 * the got_header, got_body and ended callbacks, never calling up.
 */


#ifndef _NGX_PT_EXCHANGE_H_INCLUDED_
#define _NGX_PT_EXCHANGE_H_INCLUDED_


#include <ngx_pt.h>


typedef struct ngx_pt_fetch_s  ngx_pt_fetch_t;


/* this cache in the Proxy-Status of its gateway errors (RFC 9209) */
#define NGX_PT_PROXY_NAME          "ngx_pullthrough"
#define NGX_PT_PROXY_STATUS_MAX    1024    /* an upstream's, passed on */


/* how libcurl reaches a remote: proxy, CA, client certificate (C strings) */
typedef struct {
    ngx_str_t                   ca_cert;     /* PEM */
    ngx_str_t                   client_cert; /* PEM */
    ngx_str_t                   client_key;  /* PEM */
    ngx_str_t                   proxy_url;
    ngx_str_t                   proxy_username;
    ngx_str_t                   proxy_password;
    ngx_uint_t                  tls_validation;
} ngx_pt_link_t;


/*
 * What an exchange takes from its remote, read once from the remote's
 * record (ngx_pt_settings.c): an edit of the remote applies to the next
 * exchange. Copied whole into the pool of whatever outlives the request.
 */
typedef struct {
    ngx_str_t                   remote;      /* id: tokens, limits */
    ngx_str_t                   remote_name; /* for the metrics */
    ngx_str_t                   name;        /* upstream repository name */
    ngx_str_t                   base_url;    /* no trailing slash */
    ngx_str_t                   basic;       /* "Basic ...", or empty */
    ngx_str_t                   username;    /* C strings, for libcurl */
    ngx_str_t                   password;
    ngx_pt_link_t               link;
    ngx_uint_t                  curl;        /* reached through libcurl */
    ngx_uint_t                  insecure;    /* tls_validation false */
    ngx_uint_t                  max_retries;
    ngx_uint_t                  rate_limit;  /* requests/s, 0: none */
    ngx_uint_t                  concurrency; /* at once, 0: any */
    ngx_msec_t                  total_timeout;    /* 0: none */
    ngx_msec_t                  connect_timeout;  /* 0: the location's */
    ngx_msec_t                  read_timeout;     /* 0: the location's */
    ngx_msec_t                  token_timeout;
    ngx_array_t                *headers;     /* ngx_keyval_t */
    ngx_thread_pool_t          *thread_pool;
} ngx_pt_settings_t;


typedef struct {
    const char                 *name;        /* for the debug log */
    ngx_int_t                 (*start)(ngx_pt_fetch_t *f);
    ngx_uint_t                (*running)(ngx_pt_fetch_t *f);
    void                      (*stop)(ngx_pt_fetch_t *f);     /* early */
    void                      (*resume)(ngx_pt_fetch_t *f);   /* room */
    void                      (*time_out)(ngx_pt_fetch_t *f); /* now */
    void                      (*orphan)(ngx_pt_fetch_t *f);   /* r gone */
} ngx_pt_transport_t;


struct ngx_pt_fetch_s {
    ngx_http_request_t         *r;           /* carries the tries */
    ngx_pool_t                 *pool;
    ngx_log_t                  *log;
    ngx_pt_settings_t          *settings;
    const ngx_pt_transport_t   *transport;
    void                       *try;         /* the transport's */

    /* the request */
    ngx_str_t                   url;
    ngx_str_t                   accept;
    ngx_str_t                   authorization;
    ngx_uint_t                  head;

    /* the answer */
    ngx_int_t                   rc;
    ngx_uint_t                  status;
    off_t                       length;
    ngx_str_t                   content_type;
    ngx_str_t                   digest;
    ngx_str_t                   location;
    ngx_str_t                   retry_after;
    ngx_str_t                   www_authenticate;
    ngx_str_t                   proxy_status; /* RFC 9209 */
    ngx_buf_t                  *body;        /* memory sink, its size caps */

    /* transports hand the answer to the exchange */
    ngx_int_t                 (*got_header)(ngx_pt_fetch_t *f);
    void                      (*got_body)(ngx_pt_fetch_t *f, ngx_chain_t *in);
    void                      (*ended)(ngx_pt_fetch_t *f, ngx_int_t rc);

    /* the exchange's owner: a fill, or a registry request */
    ngx_int_t                 (*header_handler)(ngx_pt_fetch_t *f);
    ngx_int_t                 (*body_handler)(ngx_pt_fetch_t *f,
                                              ngx_chain_t *in);
    void                      (*done)(ngx_pt_fetch_t *f, ngx_int_t rc);
    void                      (*aborted)(ngx_pt_fetch_t *f);
    void                       *data;

    /* the exchange's own */
    void                       *token_wait;  /* a token request */
    ngx_pool_cleanup_t         *cln;         /* on the request's pool */
    ngx_uint_t                  redirects;
    ngx_uint_t                  retries;
    ngx_event_t                 retry;       /* backoff */
    ngx_event_t                 rate;        /* waiting for its turn */
    ngx_event_t                 deadline;    /* total_timeout */

    /* the try, for its log line */
    ngx_msec_t                  try_start;
    off_t                       try_bytes;   /* of the body, received */

    unsigned                    header:1;
    unsigned                    too_big:1;
    unsigned                    stopped:1;
    unsigned                    timed_out:1;
    unsigned                    rate_ok:1;
    unsigned                    counted:1;   /* holds a concurrency slot */
    unsigned                    auth_tried:1;
    unsigned                    preempted:1;
    unsigned                    foreign:1;   /* redirected to another host:
                                                no credentials */
    unsigned                    in_post:1;   /* ended by a subrequest's
                                                post handler */
    unsigned                    http2:1;     /* the transport's */
    unsigned                    reused:1;    /* the transport's: on a kept
                                                connection */
};


void ngx_pt_exchange_reset(ngx_pt_fetch_t *f);
ngx_int_t ngx_pt_exchange_header(ngx_pt_fetch_t *f, ngx_str_t *name,
    ngx_str_t *value);
ngx_uint_t ngx_pt_exchange_gave_up(ngx_pt_fetch_t *f);


#endif /* _NGX_PT_EXCHANGE_H_INCLUDED_ */
