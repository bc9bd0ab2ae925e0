
/*
 * ngx_pullthrough: flights (ngx_pt_flight.c), the one upstream request
 * for a thing that the requests of every worker wanting it wait for.
 */


#ifndef _NGX_PT_FLIGHT_H_INCLUDED_
#define _NGX_PT_FLIGHT_H_INCLUDED_


#include <ngx_pt.h>
#include <ngx_pt_shm.h>


#define NGX_PT_FLIGHT_POLL       20       /* ms between looks at a flight */
#define NGX_PT_FLIGHT_LINGER     1000     /* ms an ended flight shows its
                                             outcome to the pollers */
#define NGX_PT_FLIGHT_ABANDONED  -1       /* outcome: nothing known */


typedef struct {
    ngx_str_t                   key;         /* in the shared zone */
    ngx_pt_shm_flight_t         shm;         /* made, or waited for */
    ngx_log_t                  *log;

    /* a waiter: its event is posted when the flight ends in this worker,
     * and its handler polls (ngx_pt_flight_over) for the other workers */
    ngx_event_t                *ev;
    ngx_queue_t                 queue;
    ngx_msec_t                  until;
    ngx_int_t                   outcome;     /* an HTTP status, 0: done */

    unsigned                    owner:1;
    unsigned                    waiting:1;
} ngx_pt_flight_t;


ngx_uint_t ngx_pt_flight_claim(ngx_pt_flight_t *fl, ngx_msec_t ttl);
void ngx_pt_flight_land(ngx_pt_flight_t *fl, ngx_int_t status);
void ngx_pt_flight_wait(ngx_pt_flight_t *fl, ngx_event_t *ev,
    ngx_msec_t bound);
ngx_uint_t ngx_pt_flight_over(ngx_pt_flight_t *fl);
void ngx_pt_flight_unwait(ngx_pt_flight_t *fl);


#endif /* _NGX_PT_FLIGHT_H_INCLUDED_ */
