
/*
 * ngx_pullthrough: decoded records kept per worker (ngx_pt_record_cache.c).
 */


#ifndef _NGX_PT_RECORD_CACHE_H_INCLUDED_
#define _NGX_PT_RECORD_CACHE_H_INCLUDED_


#include <ngx_pt.h>
#include <ngx_pt_schema.h>


ngx_int_t ngx_pt_record_load_cached(ngx_pool_t *pool, ngx_log_t *log,
    MDB_txn *txn, ngx_pt_type_t *type, ngx_str_t *id, void **rec);


#endif /* _NGX_PT_RECORD_CACHE_H_INCLUDED_ */
