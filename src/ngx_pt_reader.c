
/*
 * ngx_pullthrough: the clients of a fill. Each is a reader: it gets a
 * duplicate of the temp file's descriptor and sends the range written so
 * far with file buffers (sendfile when enabled), at its own pace, woken
 * after every write the fill completes. Until the verdict the last byte is
 * held back, so a client never holds a complete but unverified blob; when
 * the fill fails, a reader that sent its header has its connection cut, so
 * that a short body cannot be taken for a whole one.
 *
 * A client that asked for one range (Range: bytes=S-E, S- or -N) gets it
 * with 206 once the upstream told the blob's length, or 416 when it starts
 * past the end: the reader sends [start, end) of the file as it is
 * written. A range that ends before the last byte is complete as soon as
 * its bytes are written, before the verdict (a part is never a whole
 * blob); one that includes the last byte waits for the verdict as a whole
 * body does. Several ranges, a header it cannot read, an If-Range that is
 * not the blob's ETag, or an unknown length: the whole blob, 200.
 */


#include <ngx_pt.h>
#include <ngx_pt_fill_int.h>
#include <ngx_pt_fetch.h>


static void ngx_pt_reader_cleanup(void *data);
static ngx_int_t ngx_pt_reader_timed_out(ngx_pt_reader_t *rd);
static ngx_int_t ngx_pt_reader_failed(ngx_pt_reader_t *rd);
static ngx_int_t ngx_pt_reader_header(ngx_pt_reader_t *rd);
static ngx_int_t ngx_pt_reader_range(ngx_pt_reader_t *rd);
static ngx_int_t ngx_pt_reader_range_parse(ngx_str_t *v, off_t *first,
    off_t *last);
static u_char *ngx_pt_reader_number(u_char *p, u_char *end, off_t *n);
static ngx_uint_t ngx_pt_reader_if_range(ngx_pt_reader_t *rd);
static ngx_int_t ngx_pt_reader_send(ngx_pt_reader_t *rd);
static ngx_int_t ngx_pt_reader_buf(ngx_pt_reader_t *rd, ngx_chain_t **out);
static void ngx_pt_reader_wait(ngx_pt_reader_t *rd, ngx_uint_t timer);
static off_t ngx_pt_reader_published(ngx_pt_fill_t *fill);
static void ngx_pt_reader_finish(ngx_pt_reader_t *rd, ngx_int_t rc);
static void ngx_pt_reader_release(ngx_pt_reader_t *rd);


/*
 * Makes request r a reader of the fill: it answers with the blob as the
 * fill writes it. r waits (its handler returns NGX_DONE); its write event
 * handler is to call ngx_pt_reader_write() with *rdp, set before the
 * reader first runs.
 */

ngx_int_t
ngx_pt_fill_attach(ngx_pt_fill_t *fill, ngx_http_request_t *r,
    ngx_pt_reader_t **rdp)
{
    ngx_pt_reader_t     *rd;
    ngx_pool_cleanup_t  *cln;

    rd = ngx_pcalloc(r->pool, sizeof(ngx_pt_reader_t));
    if (rd == NULL) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    rd->file.fd = dup(fill->fd);
    if (rd->file.fd == NGX_INVALID_FILE) {
        return NGX_ERROR;
    }

    rd->file.name = fill->path;
    rd->file.log = r->connection->log;
    rd->r = r;
    rd->fill = fill;
    rd->end = -1;

    cln->handler = ngx_pt_reader_cleanup;
    cln->data = rd;

    fill->refs++;
    ngx_queue_insert_tail(&fill->readers, &rd->queue);

    r->main->count++;
    *rdp = rd;

    if (fill->attached++) {
        /* the fill was made for another request */
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "pullthrough fill: %V joined, reader %ui",
                       &fill->digest.full, fill->attached);
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "pullthrough reader: attached to %V%s, %O written",
                   &fill->digest.full, fill->mirror ? " (mirror)" : "",
                   fill->written);

    ngx_pt_reader_run(rd);

    return NGX_OK;
}


static void
ngx_pt_reader_cleanup(void *data)
{
    ngx_pt_reader_t *rd = data;

    if (rd->fill) {
        ngx_queue_remove(&rd->queue);
        ngx_pt_fill_unref(rd->fill);
        rd->fill = NULL;
    }

    ngx_close_file(rd->file.fd);
}


/* the reader's client can take more, or its write timer fired */

void
ngx_pt_reader_write(ngx_pt_reader_t *rd)
{
    if (rd == NULL || rd->fill == NULL) {
        return;
    }

    if (rd->r->connection->write->timedout
        && ngx_pt_reader_timed_out(rd) != NGX_OK)
    {
        return;
    }

    ngx_pt_reader_run(rd);
}


/*
 * As ngx_http_writer(): a delayed write (sendfile_max_chunk, limit_rate)
 * times out on purpose, any other timeout ends the client. NGX_OK: go on.
 */

static ngx_int_t
ngx_pt_reader_timed_out(ngx_pt_reader_t *rd)
{
    ngx_event_t         *wev;
    ngx_http_request_t  *r;

    r = rd->r;
    wev = r->connection->write;

    wev->timedout = 0;

    if (!wev->delayed) {
        r->connection->timedout = 1;
        r->connection->error = 1;
        ngx_log_error(NGX_LOG_INFO, r->connection->log, NGX_ETIMEDOUT,
                      "client timed out");
        ngx_pt_reader_finish(rd, NGX_ERROR);
        return NGX_DONE;
    }

    wev->delayed = 0;

    if (wev->ready) {
        return NGX_OK;
    }

    ngx_pt_reader_wait(rd, 1);

    return NGX_DONE;
}


/* what the fill has now, to the client: a failure, a header, bytes */

void
ngx_pt_reader_run(ngx_pt_reader_t *rd)
{
    ngx_int_t  rc;

    if (rd->fill == NULL) {
        return;
    }

    if (rd->finished) {
        ngx_pt_reader_release(rd);
        return;
    }

    if (rd->r->connection->error) {
        ngx_pt_reader_finish(rd, NGX_ERROR);
        return;
    }

    if (rd->fill->state == NGX_PT_FILL_FAILED) {
        ngx_pt_reader_finish(rd, ngx_pt_reader_failed(rd));
        return;
    }

    if (!rd->header_sent) {
        rc = ngx_pt_reader_header(rd);

        if (rc != NGX_OK) {
            if (rc != NGX_AGAIN) {
                ngx_pt_reader_finish(rd, rc);
            }

            return;
        }
    }

    rc = ngx_pt_reader_send(rd);

    if (rc == NGX_ERROR || rd->last_sent) {
        ngx_pt_reader_finish(rd, rc);
        return;
    }

    ngx_pt_reader_wait(rd, 0);
}


/* the fill failed: an OCI error, or a cut connection after the header */

static ngx_int_t
ngx_pt_reader_failed(ngx_pt_reader_t *rd)
{
    ngx_http_request_t  *r;

    r = rd->r;

    if (!rd->header_sent) {
        return ngx_pt_fill_ops->error(r, rd->fill->error_status,
                                      rd->fill->error_code);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "pullthrough reader: cut after %O bytes",
                   rd->sent - rd->start);

    r->keepalive = 0;
    r->connection->error = 1;

    return NGX_ERROR;
}


/*
 * NGX_AGAIN until the upstream answered; NGX_OK once the header is sent;
 * anything else ends the reader (NGX_DONE: its whole answer went, a 416
 * or a header only).
 */

static ngx_int_t
ngx_pt_reader_header(ngx_pt_reader_t *rd)
{
    off_t                length;
    ngx_int_t            rc;
    ngx_pt_fill_t       *fill;
    ngx_http_request_t  *r;

    fill = rd->fill;

    if (!fill->header) {
        return NGX_AGAIN;
    }

    r = rd->r;
    length = fill->expected;

    switch (ngx_pt_reader_range(rd)) {

    case NGX_OK:
        rc = ngx_pt_fill_ops->part(r, &fill->digest, rd->start, rd->end,
                                   length);
        break;

    case NGX_HTTP_RANGE_NOT_SATISFIABLE:
        /* the whole answer: this reader ends, the fill goes on */
        rc = ngx_pt_fill_ops->part(r, &fill->digest, length, length, length);
        return rc == NGX_OK ? NGX_DONE : rc;

    default: /* NGX_DECLINED */
        rc = ngx_pt_fill_ops->header(r, &fill->digest, length);
    }

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc == NGX_OK ? NGX_DONE : rc;
    }

    rd->header_sent = 1;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "pullthrough reader: header sent for %V, length %O%s",
                   &fill->digest.full, length,
                   rd->partial ? ", a range" : "");

    return NGX_OK;
}


/*
 * The one range the client asked for, once the blob's length is known:
 * NGX_OK with [rd->start, rd->end) set, NGX_HTTP_RANGE_NOT_SATISFIABLE
 * when it starts past the end (or is an empty suffix), NGX_DECLINED when
 * the whole blob goes: no Range, an unknown length, an If-Range that does
 * not name this blob, several ranges or a header it cannot read (ignored,
 * as nginx ignores what it cannot serve).
 */

static ngx_int_t
ngx_pt_reader_range(ngx_pt_reader_t *rd)
{
    off_t                first, last, length;
    ngx_http_request_t  *r;

    r = rd->r;
    length = rd->fill->expected;

    if (r->headers_in.range == NULL || length < 0) {
        return NGX_DECLINED;
    }

    if (!ngx_pt_reader_if_range(rd)
        || ngx_pt_reader_range_parse(&r->headers_in.range->value, &first,
                                     &last)
           != NGX_OK)
    {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "pullthrough reader: range \"%V\" ignored, the "
                       "whole blob", &r->headers_in.range->value);
        return NGX_DECLINED;
    }

    if (first < 0) {
        /* a suffix: the last "last" bytes ("-0": none) */
        first = (last < length) ? length - last : 0;
        last = length - 1;

    } else if (last < 0 || last >= length) {
        last = length - 1;
    }

    if (first >= length || first > last) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "pullthrough reader: range \"%V\" not satisfiable, "
                       "length %O", &r->headers_in.range->value, length);
        return NGX_HTTP_RANGE_NOT_SATISFIABLE;
    }

    rd->start = first;
    rd->end = last + 1;
    rd->sent = first;
    rd->partial = 1;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "pullthrough reader: range %O-%O of %O", first, last,
                   length);

    return NGX_OK;
}


/*
 * "bytes=S-E", "bytes=S-" (*last -1) or "bytes=-N" (*first -1, *last N),
 * spaces allowed around its parts as nginx allows them; anything else,
 * a second range included, is NGX_DECLINED. Numbers too large for an
 * off_t are the largest one: past the end of any blob.
 */

static ngx_int_t
ngx_pt_reader_range_parse(ngx_str_t *v, off_t *first, off_t *last)
{
    u_char  *p, *end;

    if (v->len < 6 || ngx_strncasecmp(v->data, (u_char *) "bytes=", 6) != 0)
    {
        return NGX_DECLINED;
    }

    p = v->data + 6;
    end = v->data + v->len;

    *first = -1;
    *last = -1;

    while (p < end && *p == ' ') { p++; }

    if (p < end && *p != '-') {
        p = ngx_pt_reader_number(p, end, first);
        if (p == NULL) {
            return NGX_DECLINED;
        }

        while (p < end && *p == ' ') { p++; }
    }

    if (p == end || *p++ != '-') {
        return NGX_DECLINED;
    }

    while (p < end && *p == ' ') { p++; }

    if (p < end) {
        p = ngx_pt_reader_number(p, end, last);
        if (p == NULL) {
            return NGX_DECLINED;
        }

        while (p < end && *p == ' ') { p++; }
    }

    if (p != end
        || (*first < 0 && *last < 0)
        || (*first >= 0 && *last >= 0 && *first > *last))
    {
        /* more after the range, "-" alone, or the end before the start */
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static u_char *
ngx_pt_reader_number(u_char *p, u_char *end, off_t *n)
{
    off_t  d;

    if (*p < '0' || *p > '9') {
        return NULL;
    }

    for (*n = 0; p < end && *p >= '0' && *p <= '9'; p++) {
        d = *p - '0';
        *n = (*n > (NGX_MAX_OFF_T_VALUE - d) / 10) ? NGX_MAX_OFF_T_VALUE
                                                  : *n * 10 + d;
    }

    return p;
}


/*
 * If-Range, as nginx reads it on hits: the range stands when it is the
 * blob's ETag, "<digest>"; another ETag or a date (blobs have no
 * Last-Modified) asks for the whole blob.
 */

static ngx_uint_t
ngx_pt_reader_if_range(ngx_pt_reader_t *rd)
{
    ngx_str_t  *v, *d;

    if (rd->r->headers_in.if_range == NULL) {
        return 1;
    }

    v = &rd->r->headers_in.if_range->value;
    d = &rd->fill->digest.full;

    return v->len == d->len + 2
           && v->data[0] == '"' && v->data[v->len - 1] == '"'
           && ngx_strncmp(v->data + 1, d->data, d->len) == 0;
}


/* until the socket is full, or there is nothing more to send */

static ngx_int_t
ngx_pt_reader_send(ngx_pt_reader_t *rd)
{
    ngx_int_t            rc;
    ngx_event_t         *wev;
    ngx_chain_t         *out;
    ngx_http_request_t  *r;

    r = rd->r;
    wev = r->connection->write;

    if (wev->delayed) {
        if (wev->timer_set) {
            /* the write event's timer resumes it */
            return NGX_AGAIN;
        }

        /*
         * The fill's upstream, on the same connection, deletes timers of
         * the client's write event: nothing would end this delay.
         */
        wev->delayed = 0;
    }

    for ( ;; ) {
        out = NULL;

        if (!r->connection->buffered) {
            if (ngx_pt_reader_buf(rd, &out) != NGX_OK) {
                return NGX_ERROR;
            }

            if (out == NULL) {
                return NGX_AGAIN;
            }
        }

        rc = ngx_http_output_filter(r, out);

        ngx_chain_update_chains(r->pool, &rd->free, &rd->busy, &out,
                                (ngx_buf_tag_t) &ngx_pt_fill_attach);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rd->last_sent || r->connection->buffered || wev->delayed) {
            return rc;
        }
    }
}


/*
 * A buffer of what was published since the last one, and the end of the
 * blob once verified, or of the range once its last byte is published;
 * *out NULL when there is nothing new.
 */

static ngx_int_t
ngx_pt_reader_buf(ngx_pt_reader_t *rd, ngx_chain_t **out)
{
    off_t           avail;
    ngx_buf_t      *b;
    ngx_chain_t    *cl;
    ngx_pt_fill_t  *fill;

    *out = NULL;

    fill = rd->fill;
    avail = ngx_pt_reader_published(fill);

    if (rd->partial) {
        avail = ngx_min(avail, rd->end);
    }

    if (avail <= rd->sent
        && !(fill->state == NGX_PT_FILL_DONE && !rd->last_sent))
    {
        return NGX_OK;
    }

    cl = ngx_chain_get_free_buf(rd->r->pool, &rd->free);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    b = cl->buf;
    ngx_memzero(b, sizeof(ngx_buf_t));

    b->tag = (ngx_buf_tag_t) &ngx_pt_fill_attach;

    if (avail > rd->sent) {
        b->in_file = 1;
        b->file = &rd->file;
        b->file_pos = rd->sent;
        b->file_last = avail;
        rd->sent = avail;
    }

    if (rd->partial ? rd->sent == rd->end
                    : (fill->state == NGX_PT_FILL_DONE
                       && rd->sent == fill->written))
    {
        b->last_buf = (rd->r == rd->r->main) ? 1 : 0;
        b->last_in_chain = 1;
        rd->last_sent = 1;

    } else {
        b->flush = 1;
    }

    if (!b->in_file && !b->last_buf) {
        b->sync = 1;
    }

    *out = cl;

    return NGX_OK;
}


/* what the fill lets readers send: the last byte waits for the digest */

static off_t
ngx_pt_reader_published(ngx_pt_fill_t *fill)
{
    if (fill->state == NGX_PT_FILL_DONE || fill->expected < 0) {
        return fill->written;
    }

    return ngx_min(fill->written, fill->expected - 1);
}


/*
 * A client that stops reading is given send_timeout, as nginx does; so is
 * one whose delayed write has run out (timer).
 */

static void
ngx_pt_reader_wait(ngx_pt_reader_t *rd, ngx_uint_t timer)
{
    ngx_event_t               *wev;
    ngx_http_request_t        *r;
    ngx_http_core_loc_conf_t  *clcf;

    r = rd->r;
    wev = r->connection->write;

    clcf = ngx_http_get_module_loc_conf(r->main, ngx_http_core_module);

    if (timer || (r->connection->buffered && !wev->delayed && !wev->ready)) {
        ngx_add_timer(wev, clcf->send_timeout);

    } else if (wev->timer_set && !wev->delayed) {
        ngx_del_timer(wev);
    }

    if (ngx_handle_write_event(wev, clcf->send_lowat) != NGX_OK) {
        ngx_pt_reader_finish(rd, NGX_ERROR);
    }
}


static void
ngx_pt_reader_finish(ngx_pt_reader_t *rd, ngx_int_t rc)
{
    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, rd->r->connection->log, 0,
                   "pullthrough reader: %V finished, %s: %i, %O bytes sent",
                   &rd->fill->digest.full,
                   rd->last_sent ? "sent all"
                   : rd->r->header_only ? "header only"
                   : rd->header_sent ? "aborted" : "error answered",
                   rc, rd->sent - rd->start);

    rd->finished = 1;
    rd->rc = rc;

    ngx_pt_reader_release(rd);
}


/*
 * The request that carries the upstream exchange stays until the exchange
 * ends: ending it sooner would abort the fill, which must complete even
 * when its client has gone (as proxy_store does).
 */

static void
ngx_pt_reader_release(ngx_pt_reader_t *rd)
{
    ngx_uint_t           parent, terminated;
    ngx_pt_fill_t       *fill;
    ngx_http_request_t  *r;

    r = rd->r;
    fill = rd->fill;

    parent = (fill->fetch.r == r);

    if (parent && ngx_pt_fetch_running(&fill->fetch)) {
        return;
    }

    /* nginx terminates it when the subrequest ends, just after */
    terminated = parent && fill->in_post && r->connection->error;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "pullthrough reader: detached from %V, request %s: %i",
                   &fill->digest.full,
                   terminated ? "left to nginx" : "finalized", rd->rc);

    ngx_queue_remove(&rd->queue);
    rd->fill = NULL;
    ngx_pt_fill_unref(fill);

    if (terminated) {
        return;
    }

    ngx_http_finalize_request(r, rd->rc);
}
