
/*
 * ngx_pullthrough: the LMDB environment (ngx_pt_store.c). Only the schema
 * (ngx_pt_schema.c) reads and writes through it: it alone knows the keys
 * and values.
 */


#ifndef _NGX_PT_STORE_H_INCLUDED_
#define _NGX_PT_STORE_H_INCLUDED_


#include <ngx_pt.h>

#include <lmdb.h>


#define NGX_PT_STORE_KEY_MAX  511        /* LMDB's default */


/* handler of a record during iteration: anything but NGX_OK stops it
 * (NGX_DONE: stopped without an error) */
typedef ngx_int_t (*ngx_pt_db_iter_pt)(void *data, ngx_str_t *key,
    ngx_str_t *val);


ngx_int_t ngx_pt_store_dirs(ngx_cycle_t *cycle, ngx_str_t *root);
ngx_int_t ngx_pt_store_open(ngx_log_t *log,
    ngx_http_pullthrough_main_conf_t *pmcf, const char **names,
    ngx_uint_t n);
void ngx_pt_store_close(void);
void ngx_pt_store_chown_env(ngx_cycle_t *cycle, ngx_str_t *root);
ngx_int_t ngx_pt_store_ready(void);

ngx_int_t ngx_pt_txn_begin(ngx_log_t *log, ngx_uint_t write, MDB_txn **txn);
ngx_int_t ngx_pt_txn_commit(ngx_log_t *log, MDB_txn *txn);
void ngx_pt_txn_abort(MDB_txn *txn);

/* NGX_OK, NGX_DECLINED when absent, NGX_ERROR */
ngx_int_t ngx_pt_db_get(ngx_log_t *log, MDB_txn *txn, ngx_uint_t db,
    ngx_str_t *key, ngx_str_t *val);
ngx_int_t ngx_pt_db_reserve(ngx_log_t *log, MDB_txn *txn, ngx_uint_t db,
    ngx_str_t *key, size_t size, u_char **p);
ngx_int_t ngx_pt_db_del(ngx_log_t *log, MDB_txn *txn, ngx_uint_t db,
    ngx_str_t *key);

/* the records whose keys begin with prefix (NULL: all), from the first
 * key after "after" (NULL: from the start), in key order */
ngx_int_t ngx_pt_db_count(ngx_log_t *log, MDB_txn *txn, ngx_uint_t db,
    size_t *n);
ngx_int_t ngx_pt_db_each(ngx_log_t *log, MDB_txn *txn, ngx_uint_t db,
    ngx_str_t *prefix, ngx_str_t *after, ngx_pt_db_iter_pt handler,
    void *data);
ngx_int_t ngx_pt_db_each_reverse(ngx_log_t *log, MDB_txn *txn,
    ngx_uint_t db, ngx_str_t *prefix, ngx_pt_db_iter_pt handler, void *data);
ngx_int_t ngx_pt_db_del_prefix(ngx_log_t *log, MDB_txn *txn, ngx_uint_t db,
    ngx_str_t *prefix);


#endif /* _NGX_PT_STORE_H_INCLUDED_ */
