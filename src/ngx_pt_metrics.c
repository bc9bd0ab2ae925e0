
/*
 * ngx_pullthrough: the figures an operator watches, in Prometheus's text
 * format (0.0.4), from the location that has "pullthrough_metrics".
 *
 * Everything is counted in the shared zone, so that every worker's
 * requests add up and a reload (same zone size) keeps the totals: plain
 * counters and gauges in the stats entry (ngx_pt_shm_stats_t), counters by
 * distribution and by remote in labeled sets made on first use. Counting
 * costs atomic additions (a worker finds a labeled set under the zone's
 * lock once, then keeps where it is); nothing is ever written to a file
 * per request. The store's
 * totals are read from the store itself at each scrape; the file system's
 * figures and the pinned bytes are those the cache manager last saw (at
 * most a few seconds old).
 */


#include <ngx_pt.h>
#include <ngx_pt_metrics.h>
#include <ngx_pt_shm.h>
#include <ngx_pt_schema.h>

#include <sys/statvfs.h>


/* slots of a distribution's set: requests, then body bytes, by status */
#define NGX_PT_M_REQUESTS        0
#define NGX_PT_M_BYTES           NGX_PT_CACHE_STATUSES

/* slots of a remote's set */
#define NGX_PT_M_UPSTREAM        0       /* + class: 0 none, 1..5 1xx..5xx */
#define NGX_PT_M_FETCHED         6


typedef struct {
    ngx_uint_t                  which;
    const char                 *name;
    const char                 *type;
    const char                 *help;
} ngx_pt_metric_t;


static ngx_int_t ngx_pt_metrics_labeled(ngx_pt_metrics_out_t *o);
static void ngx_pt_metrics_line(ngx_pt_metrics_out_t *o, const char *fmt,
    ...);
static ngx_uint_t ngx_pt_metrics_set(ngx_pt_shm_labeled_t *l, u_char kind,
    ngx_str_t *label);
static void ngx_pt_metrics_series(ngx_pt_metrics_out_t *o,
    const char *metric, const char *name, ngx_str_t *value);
static void ngx_pt_metrics_label(ngx_pt_metrics_out_t *o, ngx_str_t *v);


static ngx_str_t  ngx_pt_cache_status_names[NGX_PT_CACHE_STATUSES] = {
    ngx_string("-"),
    ngx_string("HIT"),
    ngx_string("MISS"),
    ngx_string("JOIN"),
    ngx_string("REVALIDATED"),
    ngx_string("ERROR"),
    ngx_string("STALE"),
    ngx_string("UPDATING"),
    ngx_string("EXPIRED")
};


static ngx_pt_metric_t  ngx_pt_metrics_plain[] = {

    { NGX_PT_STAT_FILLS, "pullthrough_fills_in_progress", "gauge",
      "Blob fills from upstreams running now." },
    { NGX_PT_STAT_FILL_FAILURES, "pullthrough_fill_failures_total",
      "counter", "Blob fills that ended without storing the blob." },
    { NGX_PT_STAT_DIGEST_MISMATCHES, "pullthrough_digest_mismatches_total",
      "counter", "Blobs and manifests from upstreams refused: their bytes "
      "did not match their digest." },
    { NGX_PT_STAT_DISK_FULL, "pullthrough_disk_full_total", "counter",
      "Fills stopped because the store's file system was full." },
    { NGX_PT_STAT_TOKEN_REQUESTS, "pullthrough_token_requests_total",
      "counter", "Token requests to upstream authentication realms." },
    { NGX_PT_STAT_TOKEN_FAILURES, "pullthrough_token_failures_total",
      "counter", "Token requests that got no token." },
    { NGX_PT_STAT_EVICTIONS, "pullthrough_evictions_total", "counter",
      "Files evicted from the store (max_size, min_free, inactive)." },
    { NGX_PT_STAT_EVICTED_BYTES, "pullthrough_evicted_bytes_total",
      "counter", "Bytes of the files evicted from the store." },
    { NGX_PT_STAT_ORPHANS, "pullthrough_orphans_removed_total", "counter",
      "Files no repository had, removed by garbage collection." },
    { NGX_PT_STAT_ORPHAN_BYTES, "pullthrough_orphan_bytes_removed_total",
      "counter", "Bytes of the files garbage collection removed." },
    { NGX_PT_STAT_ACCESS_LOST, "pullthrough_access_times_lost_total",
      "counter", "Reads whose time was not kept (the shared zone was full "
      "of times the cache manager had not stored yet)." },
    { NGX_PT_STAT_PINNED_BYTES, "pullthrough_pinned_bytes", "gauge",
      "Bytes of the files of pinned distributions (retain), never "
      "evicted." },
    { NGX_PT_STAT_PINNED_FILES, "pullthrough_pinned_files", "gauge",
      "Files of pinned distributions." },
    { NGX_PT_STAT_DISK_FREE, "pullthrough_disk_free_bytes", "gauge",
      "Bytes available on the store's file system." },
    { NGX_PT_STAT_DISK_TOTAL, "pullthrough_disk_size_bytes", "gauge",
      "Size of the store's file system." },
    { 0, NULL, NULL, NULL }
};


/* the name of a $pullthrough_cache_status value */

ngx_str_t *
ngx_pt_cache_status_name(ngx_uint_t status)
{
    return &ngx_pt_cache_status_names[status < NGX_PT_CACHE_STATUSES
                                      ? status : 0];
}


/*
 * The counters of a label, found once per worker: a set in the zone is
 * never freed, so each worker keeps where its sets are in a small table
 * and takes the zone's lock only for a label it has not seen yet.
 */

#define NGX_PT_METRICS_SLOTS  64

typedef struct {
    uint32_t                    hash;
    size_t                      len;
    u_char                      key[1 + NGX_PT_NAME_MAX];
    ngx_pt_shm_counters_t      *counters;
} ngx_pt_metrics_slot_t;

static ngx_pt_metrics_slot_t  *ngx_pt_metrics_slots;


static ngx_pt_shm_counters_t *
ngx_pt_metrics_counters(u_char kind, ngx_str_t *label)
{
    u_char                  buf[1 + NGX_PT_NAME_MAX];
    uint32_t                hash;
    ngx_str_t               key;
    ngx_pt_metrics_slot_t  *slot;
    ngx_pt_shm_counters_t  *c;

    if (label->len > NGX_PT_NAME_MAX) {
        return NULL;
    }

    buf[0] = kind;
    ngx_memcpy(buf + 1, label->data, label->len);

    key.data = buf;
    key.len = 1 + label->len;

    hash = ngx_crc32_short(key.data, key.len);

    if (ngx_pt_metrics_slots == NULL) {
        ngx_pt_metrics_slots = ngx_calloc(NGX_PT_METRICS_SLOTS
                                          * sizeof(ngx_pt_metrics_slot_t),
                                          ngx_cycle->log);
    }

    slot = ngx_pt_metrics_slots
           ? &ngx_pt_metrics_slots[hash % NGX_PT_METRICS_SLOTS] : NULL;

    if (slot && slot->counters && slot->hash == hash
        && slot->len == key.len && ngx_memcmp(slot->key, buf, key.len) == 0)
    {
        return slot->counters;
    }

    c = ngx_pt_shm_counters(&key);

    if (c && slot) {
        slot->hash = hash;
        slot->len = key.len;
        ngx_memcpy(slot->key, buf, key.len);
        slot->counters = c;
    }

    return c;
}


/* a registry request has ended: its distribution ("" for none), cache
 * status and body bytes */

void
ngx_pt_metrics_request(ngx_str_t *dist, ngx_uint_t status, off_t bytes)
{
    ngx_pt_shm_counters_t  *c;

    if (status >= NGX_PT_CACHE_STATUSES) {
        return;
    }

    c = ngx_pt_metrics_counters('d', dist);
    if (c == NULL) {
        return;
    }

    (void) ngx_atomic_fetch_add(&c->v[NGX_PT_M_REQUESTS + status], 1);

    if (bytes > 0) {
        (void) ngx_atomic_fetch_add(&c->v[NGX_PT_M_BYTES + status], bytes);
    }
}


/* an upstream answered (status 0: it did not) */

void
ngx_pt_metrics_upstream(ngx_str_t *remote, ngx_uint_t status, off_t fetched)
{
    ngx_uint_t              cls;
    ngx_pt_shm_counters_t  *c;

    c = ngx_pt_metrics_counters('r', remote);
    if (c == NULL) {
        return;
    }

    if (status != NGX_PT_METRICS_BYTES_ONLY) {
        cls = (status >= 100 && status < 600) ? status / 100 : 0;
        (void) ngx_atomic_fetch_add(&c->v[NGX_PT_M_UPSTREAM + cls], 1);
    }

    if (fetched > 0) {
        (void) ngx_atomic_fetch_add(&c->v[NGX_PT_M_FETCHED], fetched);
    }
}


/* GET /metrics */

ngx_int_t
ngx_pt_metrics_handler(ngx_http_request_t *r)
{
    MDB_txn                           *txn;
    ngx_int_t                          rc;
    ngx_buf_t                         *b;
    ngx_chain_t                        out;
    ngx_pt_totals_t                    t;
    ngx_pt_metric_t                   *m;
    ngx_pt_metrics_out_t               o;
    ngx_http_pullthrough_main_conf_t  *pmcf;

    static ngx_str_t  type = ngx_string("text/plain; version=0.0.4");

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pullthrough_module);

    ngx_memzero(&o, sizeof(ngx_pt_metrics_out_t));
    o.pool = r->pool;

    /* the store's totals, as of the last commit */

    t.bytes = 0;
    t.files = 0;

    if (ngx_pt_txn_begin(r->connection->log, 0, &txn) == NGX_OK) {
        (void) ngx_pt_totals_get(r->connection->log, txn, &t);
        ngx_pt_txn_abort(txn);
    }

    ngx_pt_metrics_line(&o, "# HELP pullthrough_build_info The module's "
                        "version.\n"
                        "# TYPE pullthrough_build_info gauge\n"
                        "pullthrough_build_info{version=\"%s\"} 1\n",
                        NGX_PT_VERSION);
    ngx_pt_metrics_line(&o, "# HELP pullthrough_store_bytes Bytes of the "
                        "files in the store (blobs and manifests).\n"
                        "# TYPE pullthrough_store_bytes gauge\n"
                        "pullthrough_store_bytes %O\n", t.bytes);
    ngx_pt_metrics_line(&o, "# HELP pullthrough_store_files Files in the "
                        "store (blobs and manifests, one per digest).\n"
                        "# TYPE pullthrough_store_files gauge\n"
                        "pullthrough_store_files %uL\n", t.files);
    ngx_pt_metrics_line(&o, "# HELP pullthrough_store_max_bytes The "
                        "store's max_size (0: none).\n"
                        "# TYPE pullthrough_store_max_bytes gauge\n"
                        "pullthrough_store_max_bytes %O\n",
                        pmcf ? pmcf->max_size : 0);

    for (m = ngx_pt_metrics_plain; m->name; m++) {
        ngx_pt_metrics_line(&o, "# HELP %s %s\n# TYPE %s %s\n%s %uA\n",
                            m->name, m->help, m->name, m->type, m->name,
                            ngx_pt_shm_stat_get(m->which));
    }

    if (ngx_pt_metrics_labeled(&o) != NGX_OK || o.failed) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_type = type;
    r->headers_out.content_type_len = type.len;
    r->headers_out.content_length_n = o.len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_create_temp_buf(r->pool, o.len ? o.len : 1);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for ( /* void */ ; o.first; o.first = o.first->next) {
        b->last = ngx_cpymem(b->last, o.first->buf->pos,
                             o.first->buf->last - o.first->buf->pos);
    }

    b->last_buf = (r == r->main);
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static ngx_int_t
ngx_pt_metrics_labeled(ngx_pt_metrics_out_t *o)
{
    ngx_str_t              label, *st;
    ngx_uint_t             i, s, pass;
    ngx_array_t            all;
    ngx_pt_shm_labeled_t  *l;

    static const char  *classes[] = { "none", "1xx", "2xx", "3xx", "4xx",
                                      "5xx" };

    if (ngx_array_init(&all, o->pool, 16, sizeof(ngx_pt_shm_labeled_t))
        != NGX_OK
        || ngx_pt_shm_counters_all(o->pool, &all) != NGX_OK)
    {
        return NGX_ERROR;
    }

    l = all.elts;

    ngx_pt_metrics_line(o, "# HELP pullthrough_requests_total Registry "
                        "requests (/v2/) by pull-through distribution and "
                        "$pullthrough_cache_status (\"-\": none, e.g. "
                        "tags/list).\n"
                        "# TYPE pullthrough_requests_total counter\n");

    for (pass = 0; pass < 2; pass++) {

        if (pass == 1) {
            ngx_pt_metrics_line(o, "# HELP pullthrough_sent_bytes_total "
                                "Body bytes sent to registry clients, by "
                                "distribution and cache status: HIT, STALE, "
                                "REVALIDATED and UPDATING come from the "
                                "store.\n"
                                "# TYPE pullthrough_sent_bytes_total "
                                "counter\n");
        }

        for (i = 0; i < all.nelts; i++) {
            if (!ngx_pt_metrics_set(&l[i], 'd', &label)) {
                continue;
            }

            for (s = 0; s < NGX_PT_CACHE_STATUSES; s++) {
                st = &ngx_pt_cache_status_names[s];

                ngx_pt_metrics_series(o, pass ? "pullthrough_sent_bytes_total"
                                              : "pullthrough_requests_total",
                                      "distribution", &label);
                ngx_pt_metrics_line(o, ",cache_status=\"%V\"} %uA\n", st,
                                    l[i].counters.v[(pass ? NGX_PT_M_BYTES
                                                   : NGX_PT_M_REQUESTS) + s]);
            }
        }
    }

    ngx_pt_metrics_line(o, "# HELP pullthrough_upstream_requests_total "
                        "Requests to upstreams (each try, token requests "
                        "apart), by remote and status class (\"none\": no "
                        "answer).\n"
                        "# TYPE pullthrough_upstream_requests_total "
                        "counter\n");

    for (i = 0; i < all.nelts; i++) {
        if (!ngx_pt_metrics_set(&l[i], 'r', &label)) {
            continue;
        }

        for (s = 0; s < 6; s++) {
            ngx_pt_metrics_series(o, "pullthrough_upstream_requests_total",
                                  "remote", &label);
            ngx_pt_metrics_line(o, ",code=\"%s\"} %uA\n", classes[s],
                                l[i].counters.v[NGX_PT_M_UPSTREAM + s]);
        }
    }

    ngx_pt_metrics_line(o, "# HELP pullthrough_upstream_fetched_bytes_total "
                        "Bytes of verified blobs and manifests fetched from "
                        "upstreams, by remote.\n"
                        "# TYPE pullthrough_upstream_fetched_bytes_total "
                        "counter\n");

    for (i = 0; i < all.nelts; i++) {
        if (!ngx_pt_metrics_set(&l[i], 'r', &label)) {
            continue;
        }

        ngx_pt_metrics_series(o, "pullthrough_upstream_fetched_bytes_total",
                              "remote", &label);
        ngx_pt_metrics_line(o, "} %uA\n", l[i].counters.v[NGX_PT_M_FETCHED]);
    }

    return NGX_OK;
}


/* text appended in buffers of the request's pool */

static void
ngx_pt_metrics_line(ngx_pt_metrics_out_t *o, const char *fmt, ...)
{
    u_char       *p;
    va_list       args;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    if (o->failed) {
        return;
    }

    if (o->last == NULL
        || o->last->buf->end - o->last->buf->last < NGX_PT_METRICS_LINE)
    {
        b = ngx_create_temp_buf(o->pool, 16384);
        cl = ngx_alloc_chain_link(o->pool);

        if (b == NULL || cl == NULL) {
            o->failed = 1;
            return;
        }

        cl->buf = b;
        cl->next = NULL;

        if (o->last) {
            o->last->next = cl;
        } else {
            o->first = cl;
        }

        o->last = cl;
    }

    b = o->last->buf;

    va_start(args, fmt);
    p = ngx_vslprintf(b->last, b->end, fmt, args);
    va_end(args);

    o->len += p - b->last;
    b->last = p;
}


/* whether a labeled set is of a kind ('d', 'r'), and its label */

static ngx_uint_t
ngx_pt_metrics_set(ngx_pt_shm_labeled_t *l, u_char kind, ngx_str_t *label)
{
    if (l->key.len == 0 || l->key.data[0] != kind) {
        return 0;
    }

    label->data = l->key.data + 1;
    label->len = l->key.len - 1;

    return 1;
}


/* the beginning of a series: metric{name="value" */

static void
ngx_pt_metrics_series(ngx_pt_metrics_out_t *o, const char *metric,
    const char *name, ngx_str_t *value)
{
    ngx_pt_metrics_line(o, "%s{%s=\"", metric, name);
    ngx_pt_metrics_label(o, value);
    ngx_pt_metrics_line(o, "\"");
}


/* a label value, with \, " and newlines escaped as Prometheus wants */

static void
ngx_pt_metrics_label(ngx_pt_metrics_out_t *o, ngx_str_t *v)
{
    u_char      buf[2 * NGX_PT_NAME_MAX], *p;
    ngx_str_t   s;
    ngx_uint_t  i;

    p = buf;

    for (i = 0; i < v->len && p < buf + sizeof(buf) - 2; i++) {
        if (v->data[i] == '\\' || v->data[i] == '"') {
            *p++ = '\\';
            *p++ = v->data[i];

        } else if (v->data[i] == '\n') {
            *p++ = '\\';
            *p++ = 'n';

        } else {
            *p++ = v->data[i];
        }
    }

    s.data = buf;
    s.len = p - buf;

    ngx_pt_metrics_line(o, "%V", &s);
}
