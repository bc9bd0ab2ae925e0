
/*
 * ngx_pullthrough: the clients of a fill. Each is a reader: it gets a
 * duplicate of the temp file's descriptor and sends the range written so
 * far with file buffers (sendfile when enabled), at its own pace, woken
 * after every write the fill completes. Until the verdict the last byte is
 * held back, so a client never holds a complete but unverified blob; when
 * the fill fails, a reader that sent its header has its connection cut, so
 * that a short body cannot be taken for a whole one.
 */


#include <ngx_pt.h>
#include <ngx_pt_fill_int.h>
#include <ngx_pt_fetch.h>


static void ngx_pt_reader_cleanup(void *data);
static ngx_int_t ngx_pt_reader_timed_out(ngx_pt_reader_t *rd);
static ngx_int_t ngx_pt_reader_failed(ngx_pt_reader_t *rd);
static ngx_int_t ngx_pt_reader_header(ngx_pt_reader_t *rd);
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
                   "pullthrough reader: cut after %O bytes", rd->sent);

    r->keepalive = 0;
    r->connection->error = 1;

    return NGX_ERROR;
}


/* NGX_AGAIN until the upstream answered; NGX_OK once the header is sent */

static ngx_int_t
ngx_pt_reader_header(ngx_pt_reader_t *rd)
{
    ngx_int_t            rc;
    ngx_http_request_t  *r;

    if (!rd->fill->header) {
        return NGX_AGAIN;
    }

    r = rd->r;

    rc = ngx_pt_fill_ops->header(r, &rd->fill->digest, rd->fill->expected);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc == NGX_OK ? NGX_DONE : rc;
    }

    rd->header_sent = 1;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "pullthrough reader: header sent for %V, length %O",
                   &rd->fill->digest.full, rd->fill->expected);

    return NGX_OK;
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
 * blob once verified; *out NULL when there is nothing new.
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

    if (fill->state == NGX_PT_FILL_DONE && rd->sent == fill->written) {
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
                   : rd->r->header_only ? "header only" : "aborted",
                   rc, rd->sent);

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
