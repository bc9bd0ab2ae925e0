
/*
 * ngx_pullthrough: the inside of a fill, shared by the three files that
 * make it work: the fill itself (ngx_pt_fill.c), its publication to and
 * following by other workers (ngx_pt_fill_share.c), and the clients that
 * read it (ngx_pt_reader.c). Nothing else includes this header.
 */


#ifndef _NGX_PT_FILL_INT_H_INCLUDED_
#define _NGX_PT_FILL_INT_H_INCLUDED_


#include <ngx_pt.h>
#include <ngx_pt_fill.h>
#include <ngx_pt_shm.h>


#define NGX_PT_FILL_RUNNING    0
#define NGX_PT_FILL_COMMIT     1
#define NGX_PT_FILL_DONE       2
#define NGX_PT_FILL_FAILED     3

#define NGX_PT_FILL_HOLD       1000     /* ms: the period of its keep timer */

#define NGX_PT_FILL_KEEP_POOL  4096     /* the commit thread's pool */

/*
 * A fill a miss can follow: fetching, or committing (every byte written,
 * the verdict and the rename under way in a thread: a reader sends all but
 * the last byte and waits for the verdict, as it would have while the
 * fill ran).
 */
#define ngx_pt_fill_live(fill)                                               \
    ((fill)->state == NGX_PT_FILL_RUNNING                                    \
     || (fill)->state == NGX_PT_FILL_COMMIT)


/* the fill's one thread task: a write, or the verdict and the commit */
typedef struct {
    ngx_pt_fill_t              *fill;
    void                      (*done)(ngx_pt_fill_t *fill); /* event loop */
    u_char                     *data;
    size_t                      len;
    off_t                       offset;
    ngx_err_t                   err;
    ngx_uint_t                  ok;          /* the digest matches */
    ngx_pool_t                 *pool;        /* the commit thread's own */
    ngx_str_t                   kept;        /* what inspect kept */
} ngx_pt_fill_task_ctx_t;


struct ngx_pt_fill_s {
    ngx_queue_t                 queue;       /* fills of this worker */
    ngx_pool_t                 *pool;
    ngx_log_t                  *log;
    ngx_uint_t                  refs;
    ngx_uint_t                  state;

    ngx_str_t                   repo;
    ngx_pt_digest_t             digest;
    ngx_str_t                   temp;
    ngx_str_t                   path;
    ngx_fd_t                    fd;
    EVP_MD_CTX                 *md;

    ngx_pt_fetch_t              fetch;
    ngx_thread_pool_t          *tp;
    ngx_thread_task_t          *task;
    ngx_uint_t                  busy;        /* a task is in flight */
    ngx_uint_t                  blocked;     /* upstream waits for us */
    ngx_uint_t                  upstream_done;
    ngx_uint_t                  in_task;     /* in a task's completion */

    ngx_buf_t                  *cur;         /* being filled */
    ngx_buf_t                  *other;       /* being written */
    ngx_chain_t                *pending;     /* upstream bufs not copied */
    ngx_chain_t                *free;

    off_t                       expected;    /* -1: unknown */
    off_t                       received;
    off_t                       written;
    ngx_uint_t                  header;

    ngx_uint_t                  error_status;
    const char                 *error_code;

    ngx_queue_t                 readers;
    ngx_uint_t                  attached;    /* readers so far */

    ngx_str_t                   key;         /* in the shared zone */
    ngx_uint_t                  seq;
    ngx_pid_t                   owner;       /* a mirror's filling worker */
    ngx_event_t                 poll;        /* a mirror follows it */
    ngx_event_t                 keep;        /* holds a shutting down
                                                worker until it ends */
    ngx_msec_t                  missing;     /* its entry gone since */
    ngx_array_t                *also;        /* other repositories served:
                                                recorded too (ngx_str_t) */
    unsigned                    shared:1;    /* publishes its state */
    unsigned                    mirror:1;    /* another worker's fill */
    unsigned                    counted:1;   /* in fills in progress */
    unsigned                    in_post:1;   /* its exchange ends in its
                                                subrequest's post handler */
};


struct ngx_pt_reader_s {
    ngx_queue_t                 queue;
    ngx_http_request_t         *r;
    ngx_pt_fill_t              *fill;
    ngx_file_t                  file;
    off_t                       start;       /* the first byte it sends */
    off_t                       end;         /* after its last byte (a
                                                range), -1: the blob's */
    off_t                       sent;        /* file offset sent up to */
    ngx_chain_t                *free;
    ngx_chain_t                *busy;
    ngx_int_t                   rc;
    unsigned                    header_sent:1;
    unsigned                    partial:1;   /* a range: 206 */
    unsigned                    last_sent:1;
    unsigned                    finished:1;
};


extern ngx_queue_t         ngx_pt_fills;
extern ngx_pt_fill_ops_t  *ngx_pt_fill_ops;

/* ngx_pt_fill.c */
ngx_pt_fill_t *ngx_pt_fill_new(ngx_str_t *repo, ngx_pt_digest_t *d);
void ngx_pt_fill_unref(ngx_pt_fill_t *fill);
void ngx_pt_fill_notify(ngx_pt_fill_t *fill);
void ngx_pt_fill_record_also(ngx_pt_fill_t *fill);

/* ngx_pt_fill_share.c */
ngx_int_t ngx_pt_fill_key(ngx_pt_fill_t *fill);
ngx_int_t ngx_pt_fill_claim(ngx_pt_fill_t *fill);
void ngx_pt_fill_publish(ngx_pt_fill_t *fill);

/* ngx_pt_reader.c */
void ngx_pt_reader_run(ngx_pt_reader_t *rd);


#endif /* _NGX_PT_FILL_INT_H_INCLUDED_ */
