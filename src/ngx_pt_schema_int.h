
/*
 * ngx_pullthrough: what the files of the schema share and nothing else
 * uses: values with their format byte, the keys of a repository's
 * content, and the content units' upkeep (ngx_pt_schema_units.c), which
 * the writers of tags, manifests and blobs call.
 */


#ifndef _NGX_PT_SCHEMA_INT_H_INCLUDED_
#define _NGX_PT_SCHEMA_INT_H_INCLUDED_


#include <ngx_pt.h>
#include <ngx_pt_schema.h>


ngx_int_t ngx_pt_value_get(ngx_log_t *log, MDB_txn *txn, ngx_uint_t db,
    ngx_str_t *key, ngx_str_t *value);
ngx_int_t ngx_pt_value_put(ngx_log_t *log, MDB_txn *txn, ngx_uint_t db,
    ngx_str_t *key, ngx_str_t *value);
ngx_int_t ngx_pt_value_strip(ngx_log_t *log, ngx_uint_t db,
    ngx_str_t *value);
ngx_int_t ngx_pt_key_item(ngx_pool_t *pool, ngx_str_t *repo,
    ngx_str_t *item, ngx_str_t *key);

/* an entry of tags, manifests or blobs was written: old is NULL for a
 * new one, else (tags) the digest it had */
ngx_int_t ngx_pt_units_track(ngx_pool_t *pool, ngx_log_t *log,
    MDB_txn *txn, ngx_uint_t db, ngx_str_t *repo, ngx_str_t *item,
    ngx_str_t *old, ngx_str_t *value);

/* a repository's entries of db are about to be deleted */
ngx_int_t ngx_pt_units_untrack(ngx_pool_t *pool, ngx_log_t *log,
    MDB_txn *txn, ngx_uint_t db, ngx_str_t *repo);

ngx_int_t ngx_pt_upgrade_3_4(ngx_log_t *log);


#endif /* _NGX_PT_SCHEMA_INT_H_INCLUDED_ */
