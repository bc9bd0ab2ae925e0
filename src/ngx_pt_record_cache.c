
/*
 * ngx_pullthrough: the records the registry reads on every request
 * (distributions, remotes), decoded once per worker. An entry is used
 * while the stored bytes are the same, so that a change made through the
 * admin API in any worker is seen by the next request, and freed once
 * replaced and no request holds it (each has its own pool and a count of
 * the requests using it).
 */


#include <ngx_pt.h>
#include <ngx_pt_record_cache.h>


#define NGX_PT_RECORD_CACHE  64


typedef struct {
    ngx_pt_type_t              *type;
    ngx_str_t                   raw;
    void                       *rec;
    ngx_pool_t                 *pool;
    ngx_uint_t                  refs;
    ngx_uint_t                  stale;
} ngx_pt_cached_t;


static ngx_pt_cached_t  *ngx_pt_record_cache[NGX_PT_RECORD_CACHE];
static ngx_uint_t        ngx_pt_record_cache_next;


static void
ngx_pt_cached_release(void *data)
{
    ngx_pt_cached_t *c = data;

    if (--c->refs == 0 && c->stale) {
        ngx_destroy_pool(c->pool);
    }
}


static void
ngx_pt_cached_drop(ngx_pt_cached_t *c)
{
    c->stale = 1;

    if (c->refs == 0) {
        ngx_destroy_pool(c->pool);
    }
}


ngx_int_t
ngx_pt_record_load_cached(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_pt_type_t *type, ngx_str_t *id, void **recp)
{
    void                *rec;
    ngx_int_t            rc;
    ngx_str_t            val;
    ngx_uint_t           i, slot;
    ngx_pool_t          *cpool;
    ngx_pt_meta_t       *meta;
    ngx_pt_cached_t     *c;
    ngx_pool_cleanup_t  *cln;

    rc = ngx_pt_record_raw(log, txn, type, id, &val);
    if (rc != NGX_OK) {
        return rc;
    }

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    slot = NGX_PT_RECORD_CACHE;

    for (i = 0; i < NGX_PT_RECORD_CACHE; i++) {
        c = ngx_pt_record_cache[i];

        if (c == NULL) {
            if (slot == NGX_PT_RECORD_CACHE) {
                slot = i;
            }
            continue;
        }

        meta = c->rec;

        if (c->type != type || meta->id.len != id->len
            || ngx_strncmp(meta->id.data, id->data, id->len) != 0)
        {
            continue;
        }

        if (c->raw.len == val.len
            && ngx_memcmp(c->raw.data, val.data, val.len) == 0)
        {
            c->refs++;
            cln->handler = ngx_pt_cached_release;
            cln->data = c;
            *recp = c->rec;
            return NGX_OK;
        }

        /* changed since: decode again */
        ngx_pt_record_cache[i] = NULL;
        ngx_pt_cached_drop(c);
        slot = i;
        break;
    }

    if (slot == NGX_PT_RECORD_CACHE) {
        slot = ngx_pt_record_cache_next++ % NGX_PT_RECORD_CACHE;
        ngx_pt_cached_drop(ngx_pt_record_cache[slot]);
        ngx_pt_record_cache[slot] = NULL;
    }

    cpool = ngx_create_pool(1024, ngx_cycle->log);
    if (cpool == NULL) {
        return NGX_ERROR;
    }

    c = ngx_pcalloc(cpool, sizeof(ngx_pt_cached_t));
    if (c == NULL) {
        ngx_destroy_pool(cpool);
        return NGX_ERROR;
    }

    c->raw.data = ngx_pnalloc(cpool, val.len);
    if (c->raw.data == NULL
        || ngx_pt_record_decode(cpool, type, &val, &rec) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "pullthrough: %s record \"%V\" is corrupt",
                      type->name, id);
        ngx_destroy_pool(cpool);
        return NGX_ERROR;
    }

    ngx_memcpy(c->raw.data, val.data, val.len);
    c->raw.len = val.len;
    c->type = type;
    c->rec = rec;
    c->pool = cpool;
    c->refs = 1;

    ngx_pt_record_cache[slot] = c;

    cln->handler = ngx_pt_cached_release;
    cln->data = c;

    *recp = rec;

    return NGX_OK;
}
