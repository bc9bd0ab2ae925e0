
/*
 * ngx_pullthrough: flights. A request that is to ask the upstream for
 * something others may want at the same moment (a tag's check, a missing
 * manifest) claims a flight under a key in the shared zone: the workers'
 * requests that find it running wait for it instead of asking too. The
 * waiters of the claiming worker are woken the moment it lands; those of
 * other workers poll the zone every 20 ms. A landed flight lingers a
 * second with its outcome (0, or the HTTP status its owner answered), so
 * that pollers learn it; a flight whose worker died expires with the
 * bound it was claimed with.
 */


#include <ngx_pt.h>
#include <ngx_pt_flight.h>


/* this worker's waiters */
static ngx_queue_t  ngx_pt_flight_waiters;
static ngx_uint_t   ngx_pt_flight_seq;


/* 1: fl is the caller's to make; 0: fl->shm is the flight under way */

ngx_uint_t
ngx_pt_flight_claim(ngx_pt_flight_t *fl, ngx_msec_t ttl)
{
    fl->shm.pid = ngx_pid;
    fl->shm.seq = ++ngx_pt_flight_seq;
    fl->shm.done = 0;
    fl->shm.status = 0;

    if (!ngx_pt_shm_flight_claim(&fl->key, &fl->shm, ttl)) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, fl->log, 0,
                       "pullthrough flight: under way in worker %P (%ui)",
                       fl->shm.pid, fl->shm.seq);
        return 0;
    }

    fl->owner = 1;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, fl->log, 0,
                   "pullthrough flight: %ui taken", fl->shm.seq);

    return 1;
}


/* the outcome for the waiters: this worker's are woken now */

void
ngx_pt_flight_land(ngx_pt_flight_t *fl, ngx_int_t status)
{
    ngx_queue_t      *q;
    ngx_pt_flight_t  *w;

    if (!fl->owner) {
        return;
    }

    fl->owner = 0;
    fl->shm.status = status;

    ngx_pt_shm_flight_end(&fl->key, &fl->shm, NGX_PT_FLIGHT_LINGER);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, fl->log, 0,
                   "pullthrough flight: %ui landed: %i", fl->shm.seq, status);

    if (ngx_pt_flight_waiters.next == NULL) {
        return;
    }

    for (q = ngx_queue_head(&ngx_pt_flight_waiters);
         q != ngx_queue_sentinel(&ngx_pt_flight_waiters);
         q = ngx_queue_next(q))
    {
        w = ngx_queue_data(q, ngx_pt_flight_t, queue);

        if (w->shm.pid == fl->shm.pid && w->shm.seq == fl->shm.seq
            && !w->ev->posted)
        {
            ngx_post_event(w->ev, &ngx_posted_events);
        }
    }
}


/* ev's handler is to call ngx_pt_flight_over() until it says 1 */

void
ngx_pt_flight_wait(ngx_pt_flight_t *fl, ngx_event_t *ev, ngx_msec_t bound)
{
    if (ngx_pt_flight_waiters.next == NULL) {
        ngx_queue_init(&ngx_pt_flight_waiters);
    }

    fl->ev = ev;
    fl->until = ngx_current_msec + bound;
    fl->waiting = 1;

    ngx_queue_insert_tail(&ngx_pt_flight_waiters, &fl->queue);
    ngx_add_timer(ev, NGX_PT_FLIGHT_POLL);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, fl->log, 0,
                   "pullthrough flight: waiting for %ui", fl->shm.seq);
}


/* 1 when the flight waited for is over (fl->outcome), or waited enough */

ngx_uint_t
ngx_pt_flight_over(ngx_pt_flight_t *fl)
{
    ngx_int_t            rc;
    ngx_uint_t           same;
    ngx_pt_shm_flight_t  cur;

    rc = ngx_pt_shm_flight_get(&fl->key, &cur);

    same = (rc == NGX_OK && cur.pid == fl->shm.pid
            && cur.seq == fl->shm.seq);

    if (same && !cur.done
        && (ngx_msec_int_t) (fl->until - ngx_current_msec) > 0)
    {
        ngx_add_timer(fl->ev, NGX_PT_FLIGHT_POLL);
        return 0;
    }

    fl->outcome = (same && cur.done) ? cur.status : NGX_PT_FLIGHT_ABANDONED;

    ngx_pt_flight_unwait(fl);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, fl->log, 0,
                   "pullthrough flight: %ui waited for, outcome %i",
                   fl->shm.seq, fl->outcome);

    return 1;
}


void
ngx_pt_flight_unwait(ngx_pt_flight_t *fl)
{
    if (!fl->waiting) {
        return;
    }

    fl->waiting = 0;
    ngx_queue_remove(&fl->queue);

    if (fl->ev->timer_set) {
        ngx_del_timer(fl->ev);
    }

    if (fl->ev->posted) {
        ngx_delete_posted_event(fl->ev);
    }
}
