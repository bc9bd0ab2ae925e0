
/*
 * ngx_pullthrough: the layout of the metadata store, the one place that
 * knows its keys and values. Other parts read and write typed things (a
 * record, a tag, a manifest, a version) through the functions here.
 *
 *   meta                schema_version     -> decimal text
 *   remotes, pt_distributions, distributions, repositories, tasks
 *                       <id>               -> record (JSON, field tables)
 *   remote_names, distribution_names, distribution_paths, repository_names
 *                       <name>             -> id
 *   versions            <repository id>/<number, %010d> -> version (JSON)
 *   tags                <repo>\0<tag>      -> digest
 *   manifests           <repo>\0<digest>   -> manifest (JSON)
 *   blobs               <repo>\0<digest>   -> size (decimal; -1 until the
 *                                             blob is fetched for the repo)
 *   files               <digest>           -> "<size> <last access ms>", one
 *                                             per file under blobs/
 *   lru                 <access ms, 8 bytes big-endian><digest> -> ""
 *   meta                store_totals       -> "<bytes> <files>"
 *   created             <records' db, 1 byte><created><id> -> "", every
 *                                             record in the order made
 *   children            <parent id><id>    -> "", the per-image
 *                                             distributions of each
 *                                             pull-through one
 *   manifest_units, blob_units
 *                       <digest>           -> "", every digest some
 *                                             repository has
 *   unit_holders        <kind><digest>\0<repo> -> "", which ones
 *   unit_ids            <content unit id>  -> <kind><digest>, or
 *                                             t<repo>\0<tag>
 *
 * The last four belong to content units (ngx_pt_schema_units.c); the
 * writers of tags, manifests and blobs keep them in step.
 *
 *   referrers           <repo>\0<subject digest> -> "<asked ms> <index
 *                                             JSON>": the referrers index
 *                                             the upstream gave, and when
 *   configs             <config digest>    -> {"architecture", "os",
 *                                             "labels", "bootable",
 *                                             "flatpak"}: what a config
 *                                             blob says, read when it was
 *                                             stored
 *
 * Every value but the schema version begins with one byte, its format, so
 * that a value written in an older format is still read (or upgraded)
 * when a later one adds to it; a byte below 0x20 cannot begin the
 * unversioned values of schema version 1, which are text. The schema
 * version counts changes of the layout as a whole: a store written with
 * an older one is upgraded at start, step by step, in batches of short
 * transactions that can be interrupted and run again.
 */


#include <ngx_pt.h>
#include <ngx_pt_schema.h>
#include <ngx_pt_schema_int.h>
#include <ngx_pt_json.h>


#define NGX_PT_VALUE_FORMATS    0x20     /* bytes below: a format */

#define NGX_PT_UPGRADE_BATCH    1000     /* values rewritten per transaction */

#define NGX_PT_VERSION_KEY_LEN  (NGX_PT_UUID_LEN + 1 + NGX_INT64_LEN)


typedef ngx_int_t (*ngx_pt_upgrade_pt)(ngx_log_t *log);


typedef struct {
    ngx_pool_t                 *pool;
    ngx_log_t                  *log;
    void                       *data;
    ngx_pt_type_t              *type;
    ngx_pt_record_pt            record;
    ngx_pt_item_pt              item;
    ngx_pt_version_pt           version;
    ngx_uint_t                  db;
    size_t                      skip;        /* of a key: its prefix */
    ngx_uint_t                  n;           /* at most, 0: any */
    ngx_array_t                *out;
    ngx_uint_t                  more;
} ngx_pt_walk_t;


typedef struct {
    ngx_pool_t                 *pool;
    ngx_array_t                 keys;        /* ngx_keyval_t: key, value */
} ngx_pt_batch_t;


static ngx_int_t ngx_pt_schema_check(ngx_log_t *log, ngx_str_t *root);
static ngx_int_t ngx_pt_schema_version(ngx_log_t *log, MDB_txn *txn,
    ngx_int_t *version);
static ngx_int_t ngx_pt_schema_set_version(ngx_log_t *log, MDB_txn *txn,
    ngx_int_t version);
static ngx_int_t ngx_pt_schema_upgrade(ngx_log_t *log, ngx_str_t *root,
    ngx_int_t from);
static ngx_int_t ngx_pt_upgrade_1_2(ngx_log_t *log);
static ngx_int_t ngx_pt_upgrade_2_3(ngx_log_t *log);
static ngx_int_t ngx_pt_record_index(ngx_log_t *log, MDB_txn *txn,
    ngx_pt_type_t *type, ngx_pt_meta_t *meta, ngx_str_t *parent,
    ngx_uint_t del);
static ngx_int_t ngx_pt_upgrade_unversioned(void *data, ngx_str_t *key,
    ngx_str_t *val);
static ngx_int_t ngx_pt_item_get(ngx_pool_t *pool, ngx_log_t *log,
    MDB_txn *txn, ngx_uint_t db, ngx_str_t *repo, ngx_str_t *item,
    ngx_str_t *value);
static ngx_int_t ngx_pt_item_put(ngx_pool_t *pool, ngx_log_t *log,
    MDB_txn *txn, ngx_uint_t db, ngx_str_t *repo, ngx_str_t *item,
    ngx_str_t *value);
static ngx_uint_t ngx_pt_type_db(ngx_pt_type_t *type);
static void ngx_pt_key_version(u_char *buf, ngx_str_t *repo_id,
    int64_t number, ngx_str_t *key);
static ngx_int_t ngx_pt_walk_record(void *data, ngx_str_t *key,
    ngx_str_t *val);
static ngx_int_t ngx_pt_walk_item(void *data, ngx_str_t *key,
    ngx_str_t *val);
static ngx_int_t ngx_pt_walk_version(void *data, ngx_str_t *key,
    ngx_str_t *val);
static ngx_int_t ngx_pt_walk_key(void *data, ngx_str_t *key,
    ngx_str_t *val);
static ngx_int_t ngx_pt_schema_list(ngx_pool_t *pool, ngx_log_t *log,
    MDB_txn *txn, ngx_uint_t db, ngx_str_t *prefix, ngx_str_t *after,
    ngx_uint_t n, ngx_array_t *out, ngx_uint_t *more);
static ngx_int_t ngx_pt_strings_decode(ngx_pool_t *pool, yajl_val v,
    ngx_array_t *a);
static void ngx_pt_strings_encode(yajl_gen g, const char *key,
    ngx_array_t *a);
static ngx_int_t ngx_pt_version_decode(ngx_pool_t *pool, ngx_str_t *value,
    ngx_pt_version_t *v);
static void ngx_pt_json_string(yajl_val v, ngx_str_t *s);
static void ngx_pt_manifest_encode_nature(yajl_gen g,
    ngx_pt_manifest_rec_t *m);


static const char  *ngx_pt_db_names[NGX_PT_DB_COUNT] = {
    "meta",
    "remotes",
    "remote_names",
    "pt_distributions",
    "distributions",
    "distribution_names",
    "distribution_paths",
    "repositories",
    "repository_names",
    "versions",
    "tags",
    "manifests",
    "blobs",
    "tasks",
    "files",
    "lru",
    "created",
    "children",
    "manifest_units",
    "blob_units",
    "unit_holders",
    "unit_ids",
    "referrers",
    "configs"
};


/*
 * The format each database's values are written in; a reader takes every
 * format from 1 to this one. Tags: 1 "<digest>", 2 "<digest> <checked>"
 * (when the upstream last confirmed the tag, ms since the epoch).
 */
static const u_char  ngx_pt_db_formats[NGX_PT_DB_COUNT] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    2,                              /* tags */
    1, 1, 1,
    1, 1,                           /* files, lru */
    1, 1,                           /* created, children */
    1, 1, 1, 1,                     /* manifest_units, blob_units,
                                       unit_holders, unit_ids */
    1,                              /* referrers */
    1                               /* configs */
};


/* the steps from each schema version to the next */
static ngx_pt_upgrade_pt  ngx_pt_upgrades[NGX_PT_SCHEMA_VERSION] = {
    NULL,                           /* 0: none */
    ngx_pt_upgrade_1_2,             /* 1 -> 2: values get their format */
    ngx_pt_upgrade_2_3,             /* 2 -> 3: the created and children
                                       indexes */
    ngx_pt_upgrade_3_4              /* 3 -> 4: the content units' indexes
                                       (ngx_pt_schema_units.c) */
};


/*
 * While the configuration is read (start, reload, nginx -t): the store's
 * directories, its databases, and its schema version checked, or written
 * into a new store, or upgraded (not by nginx -t). The environment stays
 * open for the declarative configuration; the caller closes it with
 * ngx_pt_schema_release() before fork(), which LMDB's must not cross.
 */

ngx_int_t
ngx_pt_schema_prepare(ngx_cycle_t *cycle,
    ngx_http_pullthrough_main_conf_t *pmcf)
{
    ngx_int_t  rc;

    if (ngx_process == NGX_PROCESS_SIGNALLER) {
        /* "nginx -s": it reads the configuration, the store is not its */
        return NGX_OK;
    }

    if (ngx_pt_store_dirs(cycle, &pmcf->path) != NGX_OK
        || ngx_pt_store_open(cycle->log, pmcf, ngx_pt_db_names,
                             NGX_PT_DB_COUNT)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_pt_schema_check(cycle->log, &pmcf->path);

    if (rc != NGX_OK) {
        ngx_pt_schema_release(cycle, pmcf);
    }

    return rc;
}


/* the master is done with the store it prepared */

void
ngx_pt_schema_release(ngx_cycle_t *cycle,
    ngx_http_pullthrough_main_conf_t *pmcf)
{
    if (ngx_process == NGX_PROCESS_SIGNALLER) {
        return;
    }

    ngx_pt_store_close();
    ngx_pt_store_chown_env(cycle, &pmcf->path);
}


/* a value of the store's own, in meta: NGX_DECLINED if it has none */

ngx_int_t
ngx_pt_meta_get(ngx_log_t *log, MDB_txn *txn, ngx_str_t *key,
    ngx_str_t *value)
{
    return ngx_pt_value_get(log, txn, NGX_PT_DB_META, key, value);
}


ngx_int_t
ngx_pt_meta_put(ngx_log_t *log, MDB_txn *txn, ngx_str_t *key,
    ngx_str_t *value)
{
    return ngx_pt_value_put(log, txn, NGX_PT_DB_META, key, value);
}


/* a worker's own environment */

ngx_int_t
ngx_pt_schema_open(ngx_cycle_t *cycle, ngx_http_pullthrough_main_conf_t *pmcf)
{
    return ngx_pt_store_open(cycle->log, pmcf, ngx_pt_db_names,
                             NGX_PT_DB_COUNT);
}


static ngx_int_t
ngx_pt_schema_check(ngx_log_t *log, ngx_str_t *root)
{
    MDB_txn    *txn;
    ngx_int_t   rc, version;

    if (ngx_pt_txn_begin(log, 1, &txn) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_pt_schema_version(log, txn, &version);

    if (rc == NGX_DECLINED) {
        /* a new store */
        if (ngx_pt_schema_set_version(log, txn, NGX_PT_SCHEMA_VERSION)
            != NGX_OK)
        {
            ngx_pt_txn_abort(txn);
            return NGX_ERROR;
        }

        return ngx_pt_txn_commit(log, txn);
    }

    ngx_pt_txn_abort(txn);

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "pullthrough: cannot read the schema version of the "
                      "store \"%V\"", root);
        return NGX_ERROR;
    }

    if (version > NGX_PT_SCHEMA_VERSION || version < 1) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "pullthrough: the store \"%V\" has schema version "
                      "\"%i\", this module knows versions up to %d: it was "
                      "written by a newer ngx_pullthrough", root, version,
                      NGX_PT_SCHEMA_VERSION);
        return NGX_ERROR;
    }

    if (version == NGX_PT_SCHEMA_VERSION) {
        return NGX_OK;
    }

    if (ngx_test_config) {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "pullthrough: the store \"%V\" has schema version %i: "
                      "it is upgraded to %d when nginx starts",
                      root, version, NGX_PT_SCHEMA_VERSION);
        return NGX_OK;
    }

    return ngx_pt_schema_upgrade(log, root, version);
}


/* NGX_DECLINED: none written yet; a version that does not parse: -1 */

static ngx_int_t
ngx_pt_schema_version(ngx_log_t *log, MDB_txn *txn, ngx_int_t *version)
{
    ngx_int_t  rc;
    ngx_str_t  key, val;

    ngx_str_set(&key, "schema_version");

    rc = ngx_pt_db_get(log, txn, NGX_PT_DB_META, &key, &val);

    if (rc == NGX_OK) {
        *version = ngx_atoi(val.data, val.len);

        if (*version == NGX_ERROR) {
            *version = -1;
        }
    }

    return rc;
}


/* the one value without a format byte: it tells the format of the others */

static ngx_int_t
ngx_pt_schema_set_version(ngx_log_t *log, MDB_txn *txn, ngx_int_t version)
{
    u_char     *p, buf[NGX_INT_T_LEN];
    ngx_str_t   key;
    size_t      len;

    ngx_str_set(&key, "schema_version");

    len = ngx_sprintf(buf, "%i", version) - buf;

    if (ngx_pt_db_reserve(log, txn, NGX_PT_DB_META, &key, len, &p)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_memcpy(p, buf, len);

    return NGX_OK;
}


/* each step rewrites what it must, then moves the version on by one */

static ngx_int_t
ngx_pt_schema_upgrade(ngx_log_t *log, ngx_str_t *root, ngx_int_t from)
{
    MDB_txn    *txn;
    ngx_int_t   v;

    for (v = from; v < NGX_PT_SCHEMA_VERSION; v++) {

        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "pullthrough: upgrading the store \"%V\" from schema "
                      "version %i to %i", root, v, v + 1);

        if (ngx_pt_upgrades[v](log) != NGX_OK
            || ngx_pt_txn_begin(log, 1, &txn) != NGX_OK)
        {
            goto failed;
        }

        if (ngx_pt_schema_set_version(log, txn, v + 1) != NGX_OK) {
            ngx_pt_txn_abort(txn);
            goto failed;
        }

        if (ngx_pt_txn_commit(log, txn) != NGX_OK) {
            goto failed;
        }
    }

    return NGX_OK;

failed:

    ngx_log_error(NGX_LOG_EMERG, log, 0,
                  "pullthrough: the upgrade of the store \"%V\" to schema "
                  "version %i failed: it is left at version %i and the "
                  "upgrade starts again at the next start", root, v + 1, v);

    return NGX_ERROR;
}


/*
 * 1 -> 2: every value gets its format byte. Values that have one already
 * (an interrupted upgrade) are left as they are.
 */

static ngx_int_t
ngx_pt_upgrade_1_2(ngx_log_t *log)
{
    MDB_txn         *txn;
    ngx_int_t        rc;
    ngx_str_t        after;
    ngx_uint_t       db, i, total;
    ngx_pool_t      *pool;
    ngx_keyval_t    *kv;
    ngx_pt_batch_t   batch;

    /* the last key of each batch, for the next one */
    pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    txn = NULL;
    total = 0;
    rc = NGX_OK;

    for (db = NGX_PT_DB_META + 1; db < NGX_PT_DB_COUNT && rc == NGX_OK; db++)
    {
        ngx_str_null(&after);

        do {
            batch.pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, log);
            if (batch.pool == NULL) {
                rc = NGX_ERROR;
                break;
            }

            rc = ngx_array_init(&batch.keys, batch.pool, NGX_PT_UPGRADE_BATCH,
                                sizeof(ngx_keyval_t));

            if (rc == NGX_OK) {
                rc = ngx_pt_txn_begin(log, 1, &txn);
            }

            if (rc != NGX_OK) {
                ngx_destroy_pool(batch.pool);
                break;
            }

            rc = ngx_pt_db_each(log, txn, db, NULL, &after,
                                ngx_pt_upgrade_unversioned, &batch);

            kv = batch.keys.elts;

            for (i = 0; rc == NGX_OK && i < batch.keys.nelts; i++) {
                rc = ngx_pt_value_put(log, txn, db, &kv[i].key, &kv[i].value);
            }

            if (rc == NGX_OK) {
                rc = ngx_pt_txn_commit(log, txn);

            } else {
                ngx_pt_txn_abort(txn);
            }

            total += batch.keys.nelts;

            if (rc == NGX_OK && batch.keys.nelts) {
                after.len = kv[batch.keys.nelts - 1].key.len;
                after.data = ngx_pstrdup(pool, &kv[batch.keys.nelts - 1].key);

                if (after.data == NULL) {
                    rc = NGX_ERROR;
                }
            }

            i = batch.keys.nelts;
            ngx_destroy_pool(batch.pool);

        } while (rc == NGX_OK && i == NGX_PT_UPGRADE_BATCH);
    }

    ngx_destroy_pool(pool);

    if (rc == NGX_OK) {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "pullthrough: %ui values were given their format",
                      total);
    }

    return rc;
}


/* a value without a format byte, copied into the batch; a full one stops */

static ngx_int_t
ngx_pt_upgrade_unversioned(void *data, ngx_str_t *key, ngx_str_t *val)
{
    ngx_pt_batch_t *batch = data;

    ngx_keyval_t  *kv;

    if (val->len && val->data[0] < NGX_PT_VALUE_FORMATS) {
        return NGX_OK;
    }

    kv = ngx_array_push(&batch->keys);
    if (kv == NULL) {
        return NGX_ERROR;
    }

    kv->key.len = key->len;
    kv->key.data = ngx_pstrdup(batch->pool, key);
    kv->value.len = val->len;
    kv->value.data = ngx_pnalloc(batch->pool, val->len + 1);

    if (kv->key.data == NULL || kv->value.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(kv->value.data, val->data, val->len);

    return batch->keys.nelts == NGX_PT_UPGRADE_BATCH ? NGX_DONE : NGX_OK;
}


/* values: a format byte, then the value */

ngx_int_t
ngx_pt_value_get(ngx_log_t *log, MDB_txn *txn, ngx_uint_t db, ngx_str_t *key,
    ngx_str_t *value)
{
    ngx_int_t  rc;

    rc = ngx_pt_db_get(log, txn, db, key, value);

    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_pt_value_strip(log, db, value);
}


ngx_int_t
ngx_pt_value_strip(ngx_log_t *log, ngx_uint_t db, ngx_str_t *value)
{
    if (value->len == 0 || value->data[0] == 0
        || value->data[0] > ngx_pt_db_formats[db])
    {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "pullthrough: a value of \"%s\" has format %d, this "
                      "module reads formats 1 to %d", ngx_pt_db_names[db],
                      value->len ? value->data[0] : -1,
                      ngx_pt_db_formats[db]);
        return NGX_ERROR;
    }

    value->data++;
    value->len--;

    return NGX_OK;
}


ngx_int_t
ngx_pt_value_put(ngx_log_t *log, MDB_txn *txn, ngx_uint_t db, ngx_str_t *key,
    ngx_str_t *value)
{
    u_char  *p;

    if (ngx_pt_db_reserve(log, txn, db, key, 1 + value->len, &p) != NGX_OK) {
        return NGX_ERROR;
    }

    *p++ = ngx_pt_db_formats[db];
    ngx_memcpy(p, value->data, value->len);

    return NGX_OK;
}


/* keys */

/* <repo>\0<item>; without an item, the prefix of all of repo's */

ngx_int_t
ngx_pt_key_item(ngx_pool_t *pool, ngx_str_t *repo, ngx_str_t *item,
    ngx_str_t *key)
{
    u_char  *p;

    key->len = repo->len + 1 + (item ? item->len : 0);
    key->data = ngx_pnalloc(pool, key->len);
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(key->data, repo->data, repo->len);
    *p++ = '\0';

    if (item) {
        ngx_memcpy(p, item->data, item->len);
    }

    return NGX_OK;
}


/* a repository's entry in a content database: tags, manifests, blobs */

static ngx_int_t
ngx_pt_item_get(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_uint_t db, ngx_str_t *repo, ngx_str_t *item, ngx_str_t *value)
{
    ngx_str_t  key;

    if (ngx_pt_key_item(pool, repo, item, &key) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_pt_value_get(log, txn, db, &key, value);
}


/* a new entry, or a tag that moves, changes the content units too */

static ngx_int_t
ngx_pt_item_put(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_uint_t db, ngx_str_t *repo, ngx_str_t *item, ngx_str_t *value)
{
    ngx_int_t     rc;
    ngx_str_t     key, old, was;
    ngx_pt_tag_t  t;

    if (ngx_pt_key_item(pool, repo, item, &key) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_pt_value_get(log, txn, db, &key, &old);
    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_OK && db != NGX_PT_DB_TAGS) {
        return ngx_pt_value_put(log, txn, db, &key, value);
    }

    /* the tag's digest until now: a copy, the put reuses its page */

    ngx_str_null(&was);

    if (rc == NGX_OK && ngx_pt_tag_decode(&old, &t) == NGX_OK) {
        was.len = t.digest.len;
        was.data = ngx_pstrdup(pool, &t.digest);
        if (was.data == NULL) {
            return NGX_ERROR;
        }
    }

    if (ngx_pt_value_put(log, txn, db, &key, value) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_pt_units_track(pool, log, txn, db, repo, item,
                              rc == NGX_OK ? &was : NULL, value);
}


/* <repository id>/<number>, zero-padded to sort; number -1: the prefix */

static void
ngx_pt_key_version(u_char *buf, ngx_str_t *repo_id, int64_t number,
    ngx_str_t *key)
{
    key->data = buf;

    if (number < 0) {
        key->len = ngx_sprintf(buf, "%*s/", ngx_min(repo_id->len,
                                                    NGX_PT_UUID_LEN),
                               repo_id->data) - buf;
        return;
    }

    key->len = ngx_sprintf(buf, "%*s/%010L", ngx_min(repo_id->len,
                                                     NGX_PT_UUID_LEN),
                           repo_id->data, number) - buf;
}


/* unique indexes: name -> id */

ngx_int_t
ngx_pt_index_get(ngx_log_t *log, MDB_txn *txn, ngx_uint_t db,
    ngx_str_t *name, ngx_str_t *id)
{
    return ngx_pt_value_get(log, txn, db, name, id);
}


ngx_int_t
ngx_pt_index_put(ngx_log_t *log, MDB_txn *txn, ngx_uint_t db,
    ngx_str_t *name, ngx_str_t *id)
{
    return ngx_pt_value_put(log, txn, db, name, id);
}


ngx_int_t
ngx_pt_index_del(ngx_log_t *log, MDB_txn *txn, ngx_uint_t db,
    ngx_str_t *name)
{
    return ngx_pt_db_del(log, txn, db, name);
}


/* up to n names after "after" (0: all) */

ngx_int_t
ngx_pt_index_list(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_uint_t db, ngx_str_t *after, ngx_uint_t n, ngx_array_t *out,
    ngx_uint_t *more)
{
    return ngx_pt_schema_list(pool, log, txn, db, NULL, after, n, out, more);
}


/* records: the database of each type */

static ngx_uint_t
ngx_pt_type_db(ngx_pt_type_t *type)
{
    if (type == &ngx_pt_remote_type) {
        return NGX_PT_DB_REMOTES;
    }

    if (type == &ngx_pt_pt_dist_type) {
        return NGX_PT_DB_PT_DISTS;
    }

    if (type == &ngx_pt_dist_type) {
        return NGX_PT_DB_DISTS;
    }

    if (type == &ngx_pt_repo_type) {
        return NGX_PT_DB_REPOS;
    }

    return NGX_PT_DB_TASKS;
}


/* records */

ngx_int_t
ngx_pt_record_load(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_pt_type_t *type, ngx_str_t *id, void **rec)
{
    ngx_int_t  rc;
    ngx_str_t  val;

    rc = ngx_pt_record_raw(log, txn, type, id, &val);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_pt_record_decode(pool, type, &val, rec) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "pullthrough: %s record \"%V\" is corrupt",
                      type->name, id);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the stored form of a record, in the transaction's memory */

ngx_int_t
ngx_pt_record_raw(ngx_log_t *log, MDB_txn *txn, ngx_pt_type_t *type,
    ngx_str_t *id, ngx_str_t *raw)
{
    return ngx_pt_value_get(log, txn, ngx_pt_type_db(type), id, raw);
}


ngx_int_t
ngx_pt_record_save(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_pt_type_t *type, void *rec)
{
    ngx_str_t       val;
    ngx_pt_meta_t  *meta = rec;

    if (ngx_pt_record_encode(pool, type, rec, &val) != NGX_OK
        || ngx_pt_value_put(log, txn, ngx_pt_type_db(type), &meta->id, &val)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_pt_record_index(log, txn, type, meta,
                               type == &ngx_pt_dist_type
                               ? &((ngx_pt_dist_t *) rec)->parent : NULL, 0);
}


/* the record and its index entries (read first: they need its fields) */

ngx_int_t
ngx_pt_record_delete(ngx_log_t *log, MDB_txn *txn, ngx_pt_type_t *type,
    ngx_str_t *id)
{
    void        *rec;
    ngx_int_t    rc;
    ngx_pool_t  *pool;

    pool = ngx_create_pool(4096, log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_pt_record_load(pool, log, txn, type, id, &rec);

    if (rc == NGX_OK) {
        rc = ngx_pt_record_index(log, txn, type, rec,
                                 type == &ngx_pt_dist_type
                                 ? &((ngx_pt_dist_t *) rec)->parent : NULL,
                                 1);
    }

    ngx_destroy_pool(pool);

    if (rc == NGX_ERROR) {
        /* a corrupt record still goes */
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "pullthrough: the index entries of %s \"%V\" stay",
                      type->name, id);
    }

    return ngx_pt_db_del(log, txn, ngx_pt_type_db(type), id);
}


/* <db><created><id> in created, <parent><id> in children */

static ngx_int_t
ngx_pt_record_index(ngx_log_t *log, MDB_txn *txn, ngx_pt_type_t *type,
    ngx_pt_meta_t *meta, ngx_str_t *parent, ngx_uint_t del)
{
    u_char     buf[1 + NGX_PT_CREATED_MAX + NGX_PT_UUID_LEN], *p;
    ngx_str_t  key, none;

    if (meta->created.len > NGX_PT_CREATED_MAX
        || meta->id.len != NGX_PT_UUID_LEN)
    {
        return NGX_ERROR;
    }

    ngx_str_null(&none);

    p = buf;
    *p++ = (u_char) ngx_pt_type_db(type);
    p = ngx_cpymem(p, meta->created.data, meta->created.len);
    p = ngx_cpymem(p, meta->id.data, meta->id.len);

    key.data = buf;
    key.len = p - buf;

    if (del ? ngx_pt_db_del(log, txn, NGX_PT_DB_CREATED, &key) == NGX_ERROR
            : ngx_pt_value_put(log, txn, NGX_PT_DB_CREATED, &key, &none)
              != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (parent == NULL || parent->len != NGX_PT_UUID_LEN) {
        return NGX_OK;
    }

    p = ngx_cpymem(buf, parent->data, parent->len);
    p = ngx_cpymem(p, meta->id.data, meta->id.len);

    key.len = p - buf;

    if (del ? ngx_pt_db_del(log, txn, NGX_PT_DB_CHILDREN, &key) == NGX_ERROR
            : ngx_pt_value_put(log, txn, NGX_PT_DB_CHILDREN, &key, &none)
              != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


typedef struct {
    ngx_pool_t                 *pool;
    ngx_uint_t                  skip;
    ngx_uint_t                  n;
    size_t                      at;          /* of the id in a key */
    ngx_array_t                *out;
} ngx_pt_ids_walk_t;


static ngx_int_t
ngx_pt_ids_one(void *data, ngx_str_t *key, ngx_str_t *val)
{
    ngx_pt_ids_walk_t *w = data;

    ngx_str_t  *id;

    if (w->skip) {
        w->skip--;
        return NGX_OK;
    }

    if (w->out->nelts >= w->n) {
        return NGX_DONE;
    }

    if (key->len < NGX_PT_UUID_LEN + w->at) {
        return NGX_OK;
    }

    id = ngx_array_push(w->out);
    if (id == NULL) {
        return NGX_ERROR;
    }

    id->len = NGX_PT_UUID_LEN;
    id->data = ngx_pnalloc(w->pool, NGX_PT_UUID_LEN);
    if (id->data == NULL) {
        return NGX_ERROR;
    }

    /* created keys: the id ends the key; children keys: after the parent */
    ngx_memcpy(id->data, w->at ? key->data + w->at
                               : key->data + key->len - NGX_PT_UUID_LEN,
               NGX_PT_UUID_LEN);

    return NGX_OK;
}


/*
 * The ids of up to n records of a type in the order they were made (desc:
 * newest first), after the first "offset": a page costs its own size.
 */

ngx_int_t
ngx_pt_records_page(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_pt_type_t *type, ngx_uint_t desc, ngx_uint_t offset, ngx_uint_t n,
    ngx_array_t *out)
{
    u_char             db;
    ngx_str_t          prefix;
    ngx_pt_ids_walk_t  w;

    db = (u_char) ngx_pt_type_db(type);

    prefix.data = &db;
    prefix.len = 1;

    w.pool = pool;
    w.skip = offset;
    w.n = n;
    w.at = 0;
    w.out = out;

    if (n == 0) {
        return NGX_OK;
    }

    return desc ? ngx_pt_db_each_reverse(log, txn, NGX_PT_DB_CREATED, &prefix,
                                         ngx_pt_ids_one, &w)
                : ngx_pt_db_each(log, txn, NGX_PT_DB_CREATED, &prefix, NULL,
                                 ngx_pt_ids_one, &w);
}


/* the ids of the per-image distributions of a pull-through one, at most n */

ngx_int_t
ngx_pt_children_list(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_str_t *parent, ngx_uint_t n, ngx_array_t *out)
{
    ngx_pt_ids_walk_t  w;

    w.pool = pool;
    w.skip = 0;
    w.n = n;
    w.at = NGX_PT_UUID_LEN;
    w.out = out;

    return ngx_pt_db_each(log, txn, NGX_PT_DB_CHILDREN, parent, NULL,
                          ngx_pt_ids_one, &w);
}


/*
 * 2 -> 3: the created and children indexes, from every record. The
 * entries are collected first (a few tens of bytes a record), then
 * written in transactions of NGX_PT_UPGRADE_BATCH; writing one again is
 * harmless, so an interrupted upgrade simply runs again.
 */

typedef struct {
    ngx_pool_t                 *pool;
    ngx_pt_type_t              *type;
    ngx_array_t                 recs;        /* ngx_pt_index_rec_t */
} ngx_pt_reindex_t;


typedef struct {
    ngx_pt_type_t              *type;
    ngx_pt_meta_t               meta;
    ngx_str_t                   parent;
} ngx_pt_index_rec_t;


static ngx_int_t
ngx_pt_reindex_one(void *data, void *rec)
{
    ngx_pt_reindex_t *ri = data;

    ngx_pt_meta_t       *meta = rec;
    ngx_pt_index_rec_t  *ir;

    ir = ngx_array_push(&ri->recs);
    if (ir == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(ir, sizeof(ngx_pt_index_rec_t));

    ir->type = ri->type;
    ir->meta.id.len = meta->id.len;
    ir->meta.id.data = ngx_pstrdup(ri->pool, &meta->id);
    ir->meta.created.len = meta->created.len;
    ir->meta.created.data = ngx_pstrdup(ri->pool, &meta->created);

    if (ri->type == &ngx_pt_dist_type) {
        ir->parent.len = ((ngx_pt_dist_t *) rec)->parent.len;
        ir->parent.data = ngx_pstrdup(ri->pool,
                                      &((ngx_pt_dist_t *) rec)->parent);
    }

    return (ir->meta.id.data && ir->meta.created.data) ? NGX_OK : NGX_ERROR;
}


static ngx_int_t
ngx_pt_upgrade_2_3(ngx_log_t *log)
{
    MDB_txn             *txn;
    ngx_int_t            rc;
    ngx_uint_t           i, t;
    ngx_pt_reindex_t     ri;
    ngx_pt_index_rec_t  *ir;

    static ngx_pt_type_t  *types[] = {
        &ngx_pt_remote_type, &ngx_pt_pt_dist_type, &ngx_pt_dist_type,
        &ngx_pt_repo_type, &ngx_pt_task_type
    };

    ri.pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, log);
    if (ri.pool == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_array_init(&ri.recs, ri.pool, 64, sizeof(ngx_pt_index_rec_t));

    if (rc == NGX_OK) {
        rc = ngx_pt_txn_begin(log, 0, &txn);

        for (t = 0; rc == NGX_OK && t < sizeof(types) / sizeof(types[0]);
             t++)
        {
            ri.type = types[t];
            rc = ngx_pt_record_each(NULL, log, txn, types[t],
                                    ngx_pt_reindex_one, &ri);
        }

        if (t) {
            ngx_pt_txn_abort(txn);
        }
    }

    ir = ri.recs.elts;

    for (i = 0; rc == NGX_OK && i < ri.recs.nelts; i++) {

        if (i % NGX_PT_UPGRADE_BATCH == 0) {
            if (i && ngx_pt_txn_commit(log, txn) != NGX_OK) {
                rc = NGX_ERROR;
                break;
            }

            if (ngx_pt_txn_begin(log, 1, &txn) != NGX_OK) {
                rc = NGX_ERROR;
                break;
            }
        }

        rc = ngx_pt_record_index(log, txn, ir[i].type, &ir[i].meta,
                                 ir[i].parent.len ? &ir[i].parent : NULL, 0);
        if (rc != NGX_OK) {
            ngx_pt_txn_abort(txn);
        }
    }

    if (rc == NGX_OK && ri.recs.nelts) {
        rc = ngx_pt_txn_commit(log, txn);
    }

    if (rc == NGX_OK) {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "pullthrough: store upgrade 2 -> 3: %ui records "
                      "indexed by creation", ri.recs.nelts);
    }

    ngx_destroy_pool(ri.pool);

    return rc;
}


/* every record of a type, decoded; a corrupt one is logged and skipped */

ngx_int_t
ngx_pt_record_count(ngx_log_t *log, MDB_txn *txn, ngx_pt_type_t *type,
    size_t *n)
{
    return ngx_pt_db_count(log, txn, ngx_pt_type_db(type), n);
}


ngx_int_t
ngx_pt_record_each(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_pt_type_t *type, ngx_pt_record_pt handler, void *data)
{
    ngx_pt_walk_t  w;

    ngx_memzero(&w, sizeof(ngx_pt_walk_t));

    /* NULL: each record decoded in a pool of its own, freed after the
     * handler, which copies what it keeps: a walk costs one record */

    w.pool = pool;
    w.log = log;
    w.type = type;
    w.record = handler;
    w.data = data;

    return ngx_pt_db_each(log, txn, ngx_pt_type_db(type), NULL, NULL,
                          ngx_pt_walk_record, &w);
}


static ngx_int_t
ngx_pt_walk_record(void *data, ngx_str_t *key, ngx_str_t *val)
{
    ngx_pt_walk_t *w = data;

    void        *rec;
    ngx_int_t    rc;
    ngx_pool_t  *pool;

    pool = w->pool;

    if (pool == NULL) {
        pool = ngx_create_pool(4096, w->log);
        if (pool == NULL) {
            return NGX_ERROR;
        }
    }

    if (ngx_pt_value_strip(w->log, ngx_pt_type_db(w->type), val) != NGX_OK
        || ngx_pt_record_decode(pool, w->type, val, &rec) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, w->log, 0,
                      "pullthrough: %s record \"%V\" is corrupt, skipped",
                      w->type->name, key);
        rc = NGX_OK;

    } else {
        rc = w->record(w->data, rec);
    }

    if (w->pool == NULL) {
        ngx_destroy_pool(pool);
    }

    return rc;
}


/* tags: <repo>\0<tag> -> "<digest> <checked>" (format 1: "<digest>") */

ngx_int_t
ngx_pt_tag_get(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_str_t *repo, ngx_str_t *tag, ngx_pt_tag_t *t)
{
    ngx_int_t  rc;
    ngx_str_t  val;

    rc = ngx_pt_item_get(pool, log, txn, NGX_PT_DB_TAGS, repo, tag, &val);

    if (rc != NGX_OK || t == NULL) {
        return rc;
    }

    if (ngx_pt_tag_decode(&val, t) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "pullthrough: tag \"%V:%V\" is corrupt", repo, tag);
        return NGX_ERROR;
    }

    /* a copy: LMDB's memory is valid only in the transaction */

    t->digest.data = ngx_pstrdup(pool, &t->digest);

    return t->digest.data ? NGX_OK : NGX_ERROR;
}


ngx_int_t
ngx_pt_tag_put(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_str_t *repo, ngx_str_t *tag, ngx_pt_tag_t *t)
{
    u_char     *p;
    ngx_str_t   val;

    val.data = ngx_pnalloc(pool, t->digest.len + 1 + NGX_INT64_LEN);
    if (val.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(val.data, "%V %uL", &t->digest, t->checked);
    val.len = p - val.data;

    return ngx_pt_item_put(pool, log, txn, NGX_PT_DB_TAGS, repo, tag, &val);
}


/* referrers: <repo>\0<digest> -> "<asked ms> <index JSON>" */

ngx_int_t
ngx_pt_referrers_get(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_str_t *repo, ngx_str_t *digest, uint64_t *checked, ngx_str_t *index)
{
    u_char     *sp;
    off_t       n;
    ngx_int_t   rc;
    ngx_str_t   key, val;

    if (ngx_pt_key_item(pool, repo, digest, &key) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_pt_value_get(log, txn, NGX_PT_DB_REFERRERS, &key, &val);
    if (rc != NGX_OK) {
        return rc;
    }

    sp = ngx_strlchr(val.data, val.data + val.len, ' ');
    n = sp ? ngx_atoof(val.data, sp - val.data) : NGX_ERROR;

    if (n < 0) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "pullthrough: the referrers of %V in \"%V\" are "
                      "corrupt", digest, repo);
        return NGX_DECLINED;
    }

    *checked = (uint64_t) n;

    /* a copy: LMDB's memory is valid only in the transaction */

    index->len = val.data + val.len - sp - 1;
    index->data = ngx_pnalloc(pool, index->len);
    if (index->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(index->data, sp + 1, index->len);

    return NGX_OK;
}


ngx_int_t
ngx_pt_referrers_put(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_str_t *repo, ngx_str_t *digest, uint64_t checked, ngx_str_t *index)
{
    ngx_str_t  key, val;

    if (ngx_pt_key_item(pool, repo, digest, &key) != NGX_OK) {
        return NGX_ERROR;
    }

    val.data = ngx_pnalloc(pool, NGX_INT64_LEN + 1 + index->len);
    if (val.data == NULL) {
        return NGX_ERROR;
    }

    val.len = ngx_sprintf(val.data, "%uL %V", checked, index) - val.data;

    return ngx_pt_value_put(log, txn, NGX_PT_DB_REFERRERS, &key, &val);
}


/* a value with its format byte stripped: either format reads the same */

ngx_int_t
ngx_pt_tag_decode(ngx_str_t *value, ngx_pt_tag_t *t)
{
    u_char  *sp;
    off_t    n;

    sp = ngx_strlchr(value->data, value->data + value->len, ' ');

    t->digest.data = value->data;
    t->digest.len = sp ? (size_t) (sp - value->data) : value->len;
    t->checked = 0;

    if (sp == NULL) {
        return t->digest.len ? NGX_OK : NGX_ERROR;
    }

    n = ngx_atoof(sp + 1, value->data + value->len - sp - 1);
    if (n < 0 || t->digest.len == 0) {
        return NGX_ERROR;
    }

    t->checked = (uint64_t) n;

    return NGX_OK;
}


/* blobs: <repo>\0<digest> -> size, -1 while only a manifest names it */

ngx_int_t
ngx_pt_blob_rec_get(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_str_t *repo, ngx_str_t *digest, off_t *size)
{
    ngx_int_t  rc;
    ngx_str_t  val;

    rc = ngx_pt_item_get(pool, log, txn, NGX_PT_DB_BLOBS, repo, digest, &val);

    if (rc == NGX_OK && size) {
        *size = (val.len == 2 && val.data[0] == '-')
                ? -1 : ngx_atoof(val.data, val.len);
    }

    return rc;
}


ngx_int_t
ngx_pt_blob_rec_put(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_str_t *repo, ngx_str_t *digest, off_t size)
{
    u_char     buf[NGX_OFF_T_LEN + 1];
    ngx_str_t  val;

    val.data = buf;
    val.len = ngx_sprintf(buf, "%O", size) - buf;

    return ngx_pt_item_put(pool, log, txn, NGX_PT_DB_BLOBS, repo, digest,
                           &val);
}


/* manifests: <repo>\0<digest> -> {"media_type", "size", ...} */

ngx_int_t
ngx_pt_manifest_get(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_str_t *repo, ngx_str_t *digest, ngx_pt_manifest_rec_t *m)
{
    ngx_int_t  rc;
    ngx_str_t  val;

    rc = ngx_pt_item_get(pool, log, txn, NGX_PT_DB_MANIFESTS, repo, digest,
                         &val);

    if (rc != NGX_OK || m == NULL) {
        return rc;
    }

    if (ngx_pt_manifest_decode(pool, &val, m) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "pullthrough: the manifest record of %V in \"%V\" is "
                      "corrupt", digest, repo);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * What a hit needs of a manifest record, its type and size, without
 * decoding the JSON: the record begins {"media_type":"...","size":N, as
 * ngx_pt_manifest_put() writes it. Another shape is decoded in full.
 */

ngx_int_t
ngx_pt_manifest_record_head(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_str_t *repo, ngx_str_t *digest, ngx_str_t *type, off_t *size)
{
    u_char                 *p, *q, *last;
    ngx_int_t               rc;
    ngx_str_t               val;
    ngx_pt_manifest_rec_t   m;

    static u_char  head[] = "{\"media_type\":\"";
    static u_char  mid[] = "\",\"size\":";

    rc = ngx_pt_item_get(pool, log, txn, NGX_PT_DB_MANIFESTS, repo, digest,
                         &val);
    if (rc != NGX_OK) {
        return rc;
    }

    p = val.data;
    last = val.data + val.len;

    if ((size_t) (last - p) > sizeof(head) - 1
        && ngx_strncmp(p, head, sizeof(head) - 1) == 0)
    {
        p += sizeof(head) - 1;

        for (q = p; q < last && *q != '"' && *q != '\\'; q++) {
            /* void */
        }

        if ((size_t) (last - q) > sizeof(mid) - 1
            && ngx_strncmp(q, mid, sizeof(mid) - 1) == 0)
        {
            type->len = q - p;
            type->data = ngx_pnalloc(pool, type->len);
            if (type->data == NULL) {
                return NGX_ERROR;
            }

            ngx_memcpy(type->data, p, type->len);

            for (p = q + sizeof(mid) - 1, q = p;
                 q < last && *q >= '0' && *q <= '9';
                 q++)
            {
                /* void */
            }

            *size = (q > p) ? ngx_atoof(p, q - p) : -1;

            return NGX_OK;
        }
    }

    if (ngx_pt_manifest_decode(pool, &val, &m) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "pullthrough: the manifest record of %V in \"%V\" is "
                      "corrupt", digest, repo);
        return NGX_ERROR;
    }

    *type = m.media_type;
    *size = m.size;

    return NGX_OK;
}


ngx_int_t
ngx_pt_manifest_put(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_str_t *repo, ngx_str_t *digest, ngx_pt_manifest_rec_t *m)
{
    yajl_gen   g;
    ngx_str_t  val;

    g = ngx_pt_json_gen(pool);
    if (g == NULL) {
        return NGX_ERROR;
    }

    ngx_pt_json_map_open(g);
    ngx_pt_json_key(g, "media_type");
    ngx_pt_json_str(g, &m->media_type);
    ngx_pt_json_key(g, "size");
    ngx_pt_json_int(g, m->size);
    ngx_pt_json_key(g, "created");
    ngx_pt_json_str(g, &m->created);
    ngx_pt_json_key(g, "config");
    ngx_pt_json_str(g, &m->config);
    ngx_pt_strings_encode(g, "blobs", &m->blobs);
    ngx_pt_strings_encode(g, "manifests", &m->manifests);
    ngx_pt_manifest_encode_nature(g, m);
    ngx_pt_json_map_close(g);

    if (ngx_pt_json_result(g, pool, &val) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_pt_item_put(pool, log, txn, NGX_PT_DB_MANIFESTS, repo, digest,
                           &val);
}


/* what a manifest tells of itself, after the keys an earlier release wrote */

static void
ngx_pt_manifest_encode_nature(yajl_gen g, ngx_pt_manifest_rec_t *m)
{
    if (m->type.len) {
        ngx_pt_json_key(g, "type");
        ngx_pt_json_str(g, &m->type);
    }

    if (m->layers_size != NGX_PT_NULL_INT) {
        ngx_pt_json_key(g, "layers_size");
        ngx_pt_json_int(g, m->layers_size);
    }

    if (m->architecture.data) {
        ngx_pt_json_key(g, "architecture");
        ngx_pt_json_str(g, &m->architecture);
    }

    if (m->os.data) {
        ngx_pt_json_key(g, "os");
        ngx_pt_json_str(g, &m->os);
    }

    if (m->annotations) {
        ngx_pt_json_key(g, "annotations");
        ngx_pt_json_value(g, m->annotations);
    }
}


ngx_int_t
ngx_pt_manifest_decode(ngx_pool_t *pool, ngx_str_t *value,
    ngx_pt_manifest_rec_t *m)
{
    yajl_val   doc, v;
    ngx_str_t  err;

    ngx_memzero(m, sizeof(ngx_pt_manifest_rec_t));

    doc = ngx_pt_json_parse(pool, value, &err);
    if (doc == NULL) {
        return NGX_ERROR;
    }

    v = ngx_pt_json_get(doc, "size");
    m->size = (v && YAJL_IS_INTEGER(v)) ? YAJL_GET_INTEGER(v) : -1;

    ngx_pt_json_string(ngx_pt_json_get(doc, "media_type"), &m->media_type);
    ngx_pt_json_string(ngx_pt_json_get(doc, "created"), &m->created);
    ngx_pt_json_string(ngx_pt_json_get(doc, "config"), &m->config);

    /* absent from a record of an earlier release: null */

    v = ngx_pt_json_get(doc, "layers_size");
    m->layers_size = (v && YAJL_IS_INTEGER(v)) ? YAJL_GET_INTEGER(v)
                                               : NGX_PT_NULL_INT;

    ngx_pt_json_string(ngx_pt_json_get(doc, "type"), &m->type);
    ngx_pt_json_string(ngx_pt_json_get(doc, "architecture"),
                       &m->architecture);
    ngx_pt_json_string(ngx_pt_json_get(doc, "os"), &m->os);

    v = ngx_pt_json_get(doc, "annotations");
    m->annotations = (v && YAJL_IS_OBJECT(v)) ? v : NULL;

    if (m->media_type.data == NULL
        || ngx_pt_strings_decode(pool, ngx_pt_json_get(doc, "blobs"),
                                 &m->blobs) != NGX_OK
        || ngx_pt_strings_decode(pool, ngx_pt_json_get(doc, "manifests"),
                                 &m->manifests) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * configs: <config digest> -> {"architecture", "os", "labels", "bootable",
 * "flatpak"}, one per digest whatever repositories have the blob.
 */

ngx_int_t
ngx_pt_config_get(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_str_t *digest, ngx_pt_config_t *c)
{
    yajl_val   doc, v;
    ngx_int_t  rc;
    ngx_str_t  val, err;

    ngx_memzero(c, sizeof(ngx_pt_config_t));

    rc = ngx_pt_value_get(log, txn, NGX_PT_DB_CONFIGS, digest, &val);
    if (rc != NGX_OK) {
        return rc;
    }

    doc = ngx_pt_json_parse(pool, &val, &err);
    if (doc == NULL || !YAJL_IS_OBJECT(doc)) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "pullthrough: the config record of %V is corrupt",
                      digest);
        return NGX_DECLINED;
    }

    ngx_pt_json_string(ngx_pt_json_get(doc, "architecture"),
                       &c->architecture);
    ngx_pt_json_string(ngx_pt_json_get(doc, "os"), &c->os);

    v = ngx_pt_json_get(doc, "labels");
    c->labels = (v && YAJL_IS_OBJECT(v)) ? v : NULL;

    c->bootable = YAJL_IS_TRUE(ngx_pt_json_get(doc, "bootable"));
    c->flatpak = YAJL_IS_TRUE(ngx_pt_json_get(doc, "flatpak"));

    return NGX_OK;
}


ngx_int_t
ngx_pt_config_put(ngx_log_t *log, MDB_txn *txn, ngx_str_t *digest,
    ngx_str_t *value)
{
    return ngx_pt_value_put(log, txn, NGX_PT_DB_CONFIGS, digest, value);
}


ngx_int_t
ngx_pt_config_delete(ngx_log_t *log, MDB_txn *txn, ngx_str_t *digest)
{
    ngx_int_t  rc;

    rc = ngx_pt_db_del(log, txn, NGX_PT_DB_CONFIGS, digest);

    return rc == NGX_DECLINED ? NGX_OK : rc;
}


/*
 * A config's value. Labels are kept while they add up to at most
 * NGX_PT_CONFIG_LABELS_MAX bytes (the rest is left out: bootable and
 * flatpak were read from all of them), and only those whose value is a
 * string, as Docker's and OCI's configs have them. No allocation but from
 * pool: a fill's commit thread calls it with a pool of its own.
 */

ngx_int_t
ngx_pt_config_encode(ngx_pool_t *pool, ngx_pt_config_t *c, ngx_str_t *value)
{
    size_t    i, left, n;
    yajl_gen  g;
    yajl_val  v;

    g = ngx_pt_json_gen(pool);
    if (g == NULL) {
        return NGX_ERROR;
    }

    ngx_pt_json_map_open(g);
    ngx_pt_json_key(g, "architecture");
    ngx_pt_json_str(g, &c->architecture);
    ngx_pt_json_key(g, "os");
    ngx_pt_json_str(g, &c->os);

    ngx_pt_json_key(g, "labels");
    ngx_pt_json_map_open(g);

    left = NGX_PT_CONFIG_LABELS_MAX;

    for (i = 0; c->labels && i < c->labels->u.object.len; i++) {
        v = c->labels->u.object.values[i];

        if (!YAJL_IS_STRING(v)) {
            continue;
        }

        n = ngx_strlen(c->labels->u.object.keys[i]) + ngx_strlen(v->u.string);
        if (n > left) {
            break;
        }

        left -= n;

        ngx_pt_json_key(g, c->labels->u.object.keys[i]);
        ngx_pt_json_cstr(g, v->u.string);
    }

    ngx_pt_json_map_close(g);

    ngx_pt_json_key(g, "bootable");
    ngx_pt_json_bool(g, c->bootable);
    ngx_pt_json_key(g, "flatpak");
    ngx_pt_json_bool(g, c->flatpak);
    ngx_pt_json_map_close(g);

    return ngx_pt_json_result(g, pool, value);
}


/* every entry of db (tags, manifests, blobs) of repo, or of all repos */

ngx_int_t
ngx_pt_items_each(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_uint_t db, ngx_str_t *repo, ngx_pt_item_pt handler, void *data)
{
    ngx_str_t  prefix;

    if (repo && ngx_pt_key_item(pool, repo, NULL, &prefix) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_pt_items_under(pool, log, txn, db, repo ? &prefix : NULL,
                              handler, data);
}


/* the items of every repository whose name begins with prefix */

ngx_int_t
ngx_pt_items_under(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_uint_t db, ngx_str_t *prefix, ngx_pt_item_pt handler, void *data)
{
    ngx_pt_walk_t  w;

    ngx_memzero(&w, sizeof(ngx_pt_walk_t));

    w.pool = pool;
    w.log = log;
    w.item = handler;
    w.data = data;
    w.db = db;

    return ngx_pt_db_each(log, txn, db, prefix, NULL, ngx_pt_walk_item, &w);
}


static ngx_int_t
ngx_pt_walk_item(void *data, ngx_str_t *key, ngx_str_t *val)
{
    ngx_pt_walk_t *w = data;

    u_char     *nul;
    ngx_str_t   repo, item;

    nul = ngx_strlchr(key->data, key->data + key->len, '\0');

    if (nul == NULL || ngx_pt_value_strip(w->log, w->db, val) != NGX_OK) {
        return NGX_OK;
    }

    repo.data = key->data;
    repo.len = nul - key->data;
    item.data = nul + 1;
    item.len = key->len - repo.len - 1;

    return w->item(w->data, &repo, &item, val);
}


/* up to n names of repo's entries in db after "after" (0: all) */

ngx_int_t
ngx_pt_items_list(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_uint_t db, ngx_str_t *repo, ngx_str_t *after, ngx_uint_t n,
    ngx_array_t *out, ngx_uint_t *more)
{
    ngx_str_t  prefix, start;

    if (ngx_pt_key_item(pool, repo, NULL, &prefix) != NGX_OK
        || ngx_pt_key_item(pool, repo, after, &start) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_pt_schema_list(pool, log, txn, db, &prefix,
                              after->len ? &start : NULL, n, out, more);
}


ngx_int_t
ngx_pt_items_delete(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_uint_t db, ngx_str_t *repo)
{
    ngx_str_t  prefix;

    if (ngx_pt_key_item(pool, repo, NULL, &prefix) != NGX_OK) {
        return NGX_ERROR;
    }

    if ((db == NGX_PT_DB_TAGS || db == NGX_PT_DB_MANIFESTS
         || db == NGX_PT_DB_BLOBS)
        && ngx_pt_units_untrack(pool, log, txn, db, repo) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_pt_db_del_prefix(log, txn, db, &prefix);
}


/* keys after a prefix, in order, copied into out (ngx_str_t) */

static ngx_int_t
ngx_pt_schema_list(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_uint_t db, ngx_str_t *prefix, ngx_str_t *after, ngx_uint_t n,
    ngx_array_t *out, ngx_uint_t *more)
{
    ngx_int_t      rc;
    ngx_pt_walk_t  w;

    ngx_memzero(&w, sizeof(ngx_pt_walk_t));

    w.pool = pool;
    w.skip = prefix ? prefix->len : 0;
    w.n = n;
    w.out = out;

    rc = ngx_pt_db_each(log, txn, db, prefix, after, ngx_pt_walk_key, &w);

    *more = w.more;

    return rc;
}


static ngx_int_t
ngx_pt_walk_key(void *data, ngx_str_t *key, ngx_str_t *val)
{
    ngx_pt_walk_t *w = data;

    ngx_str_t  *s;

    if (w->n && w->out->nelts == w->n) {
        w->more = 1;
        return NGX_DONE;
    }

    s = ngx_array_push(w->out);
    if (s == NULL) {
        return NGX_ERROR;
    }

    s->len = key->len - w->skip;
    s->data = ngx_pnalloc(w->pool, s->len);
    if (s->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(s->data, key->data + w->skip, s->len);

    return NGX_OK;
}


/* versions: <repository id>/<number> -> {"number", "tags", ...} */

ngx_int_t
ngx_pt_version_get(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_str_t *repo_id, int64_t number, ngx_pt_version_t *v)
{
    u_char     buf[NGX_PT_VERSION_KEY_LEN];
    ngx_int_t  rc;
    ngx_str_t  key, val;

    ngx_pt_key_version(buf, repo_id, number, &key);

    rc = ngx_pt_value_get(log, txn, NGX_PT_DB_VERSIONS, &key, &val);

    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_pt_version_decode(pool, &val, v) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "pullthrough: version record \"%V\" is corrupt", &key);
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_pt_version_put(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_str_t *repo_id, ngx_pt_version_t *v)
{
    u_char         buf[NGX_PT_VERSION_KEY_LEN];
    yajl_gen       g;
    ngx_str_t      key, val;
    ngx_uint_t     i;
    ngx_keyval_t  *kv;

    g = ngx_pt_json_gen(pool);
    if (g == NULL) {
        return NGX_ERROR;
    }

    ngx_pt_json_map_open(g);
    ngx_pt_json_key(g, "number");
    ngx_pt_json_int(g, v->number);
    ngx_pt_json_key(g, "created");
    ngx_pt_json_str(g, &v->created);

    ngx_pt_json_key(g, "tags");
    ngx_pt_json_map_open(g);

    kv = v->tags.elts;
    for (i = 0; i < v->tags.nelts; i++) {
        yajl_gen_string(g, kv[i].key.data, kv[i].key.len);
        ngx_pt_json_str(g, &kv[i].value);
    }

    ngx_pt_json_map_close(g);

    ngx_pt_strings_encode(g, "manifests", &v->manifests);
    ngx_pt_strings_encode(g, "blobs", &v->blobs);
    ngx_pt_json_map_close(g);

    if (ngx_pt_json_result(g, pool, &val) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_pt_key_version(buf, repo_id, v->number, &key);

    return ngx_pt_value_put(log, txn, NGX_PT_DB_VERSIONS, &key, &val);
}


ngx_int_t
ngx_pt_version_delete(ngx_log_t *log, MDB_txn *txn, ngx_str_t *repo_id,
    int64_t number)
{
    u_char     buf[NGX_PT_VERSION_KEY_LEN];
    ngx_str_t  key;

    ngx_pt_key_version(buf, repo_id, number, &key);

    return ngx_pt_db_del(log, txn, NGX_PT_DB_VERSIONS, &key);
}


/* a repository's versions, oldest first */

ngx_int_t
ngx_pt_versions_each(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_str_t *repo_id, ngx_pt_version_pt handler, void *data)
{
    u_char         buf[NGX_PT_VERSION_KEY_LEN];
    ngx_str_t      prefix;
    ngx_pt_walk_t  w;

    ngx_memzero(&w, sizeof(ngx_pt_walk_t));

    w.pool = pool;
    w.log = log;
    w.version = handler;
    w.data = data;

    ngx_pt_key_version(buf, repo_id, -1, &prefix);

    return ngx_pt_db_each(log, txn, NGX_PT_DB_VERSIONS, &prefix, NULL,
                          ngx_pt_walk_version, &w);
}


static ngx_int_t
ngx_pt_walk_version(void *data, ngx_str_t *key, ngx_str_t *val)
{
    ngx_pt_walk_t *w = data;

    ngx_pt_version_t  v;

    if (ngx_pt_value_strip(w->log, NGX_PT_DB_VERSIONS, val) != NGX_OK
        || ngx_pt_version_decode(w->pool, val, &v) != NGX_OK)
    {
        return NGX_OK;
    }

    return w->version(w->data, &v);
}


ngx_int_t
ngx_pt_versions_delete(ngx_log_t *log, MDB_txn *txn, ngx_str_t *repo_id)
{
    u_char     buf[NGX_PT_VERSION_KEY_LEN];
    ngx_str_t  prefix;

    ngx_pt_key_version(buf, repo_id, -1, &prefix);

    return ngx_pt_db_del_prefix(log, txn, NGX_PT_DB_VERSIONS, &prefix);
}


static ngx_int_t
ngx_pt_version_decode(ngx_pool_t *pool, ngx_str_t *value, ngx_pt_version_t *v)
{
    size_t         i;
    yajl_val       doc, x;
    ngx_str_t      err;
    ngx_keyval_t  *kv;

    ngx_memzero(v, sizeof(ngx_pt_version_t));

    doc = ngx_pt_json_parse(pool, value, &err);

    x = ngx_pt_json_get(doc, "number");
    if (x == NULL || !YAJL_IS_INTEGER(x)) {
        return NGX_ERROR;
    }

    v->number = YAJL_GET_INTEGER(x);

    x = ngx_pt_json_get(doc, "tags");

    ngx_pt_json_string(ngx_pt_json_get(doc, "created"), &v->created);

    if (ngx_array_init(&v->tags, pool,
                          (x && YAJL_IS_OBJECT(x) && x->u.object.len)
                          ? x->u.object.len : 1,
                          sizeof(ngx_keyval_t)) != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (i = 0; x && YAJL_IS_OBJECT(x) && i < x->u.object.len; i++) {
        kv = ngx_array_push(&v->tags);
        if (kv == NULL) {
            return NGX_ERROR;
        }

        kv->key.data = (u_char *) x->u.object.keys[i];
        kv->key.len = ngx_strlen(kv->key.data);

        ngx_pt_json_string(x->u.object.values[i], &kv->value);
    }

    if (ngx_pt_strings_decode(pool, ngx_pt_json_get(doc, "manifests"),
                              &v->manifests) != NGX_OK
        || ngx_pt_strings_decode(pool, ngx_pt_json_get(doc, "blobs"),
                                 &v->blobs) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* JSON helpers of the stored forms: strings live as long as the pool */

static void
ngx_pt_json_string(yajl_val v, ngx_str_t *s)
{
    ngx_str_null(s);

    if (v && YAJL_IS_STRING(v)) {
        s->data = (u_char *) v->u.string;
        s->len = ngx_strlen(v->u.string);
    }
}


static ngx_int_t
ngx_pt_strings_decode(ngx_pool_t *pool, yajl_val v, ngx_array_t *a)
{
    size_t      i;
    ngx_str_t  *s;

    if (ngx_array_init(a, pool, (v && YAJL_IS_ARRAY(v) && v->u.array.len)
                                ? v->u.array.len : 1,
                       sizeof(ngx_str_t)) != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (i = 0; v && YAJL_IS_ARRAY(v) && i < v->u.array.len; i++) {
        if (!YAJL_IS_STRING(v->u.array.values[i])) {
            continue;
        }

        s = ngx_array_push(a);
        if (s == NULL) {
            return NGX_ERROR;
        }

        s->data = (u_char *) v->u.array.values[i]->u.string;
        s->len = ngx_strlen(s->data);
    }

    return NGX_OK;
}


static void
ngx_pt_strings_encode(yajl_gen g, const char *key, ngx_array_t *a)
{
    ngx_str_t   *s;
    ngx_uint_t   i;

    ngx_pt_json_key(g, key);
    ngx_pt_json_array_open(g);

    s = a->elts;
    for (i = 0; i < a->nelts; i++) {
        ngx_pt_json_str(g, &s[i]);
    }

    ngx_pt_json_array_close(g);
}


/*
 * The files of the store. Each file under blobs/ has one record in
 * "files", whatever repositories have it, with its size and its last
 * access; "lru" holds the same files in the order of their last access
 * (the key begins with it, big-endian), for eviction to find the oldest
 * without a walk; meta's store_totals adds them up. All three change in
 * the same transactions.
 */

#define NGX_PT_LRU_KEY_MAX  (8 + 256)

static ngx_str_t  ngx_pt_totals_key = ngx_string("store_totals");


static ngx_int_t
ngx_pt_key_lru(u_char *buf, uint64_t atime, ngx_str_t *digest,
    ngx_str_t *key)
{
    ngx_uint_t  i;

    if (digest->len > NGX_PT_LRU_KEY_MAX - 8) {
        return NGX_ERROR;
    }

    for (i = 0; i < 8; i++) {
        buf[i] = (u_char) (atime >> (56 - 8 * i));
    }

    ngx_memcpy(buf + 8, digest->data, digest->len);

    key->data = buf;
    key->len = 8 + digest->len;

    return NGX_OK;
}


static ngx_int_t
ngx_pt_file_decode(ngx_str_t *val, ngx_pt_file_t *f)
{
    u_char  *sp;
    off_t    size, atime;

    sp = ngx_strlchr(val->data, val->data + val->len, ' ');
    if (sp == NULL) {
        return NGX_ERROR;
    }

    size = ngx_atoof(val->data, sp - val->data);
    atime = ngx_atoof(sp + 1, val->data + val->len - sp - 1);

    if (size < 0 || atime < 0) {
        return NGX_ERROR;
    }

    f->size = size;
    f->atime = (uint64_t) atime;

    return NGX_OK;
}


ngx_int_t
ngx_pt_file_get(ngx_log_t *log, MDB_txn *txn, ngx_str_t *digest,
    ngx_pt_file_t *f)
{
    ngx_int_t  rc;
    ngx_str_t  val;

    rc = ngx_pt_value_get(log, txn, NGX_PT_DB_FILES, digest, &val);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_pt_file_decode(&val, f) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "pullthrough: the file record of %V is corrupt",
                      digest);
        return NGX_ERROR;
    }

    f->digest = *digest;

    return NGX_OK;
}


/* the record and its place in lru */

static ngx_int_t
ngx_pt_file_put(ngx_log_t *log, MDB_txn *txn, ngx_pt_file_t *f)
{
    u_char     buf[2 * NGX_INT64_LEN + 1], kbuf[NGX_PT_LRU_KEY_MAX];
    ngx_str_t  val, key, none;

    val.data = buf;
    val.len = ngx_sprintf(buf, "%O %uL", f->size, f->atime) - buf;

    ngx_str_null(&none);

    if (ngx_pt_key_lru(kbuf, f->atime, &f->digest, &key) != NGX_OK
        || ngx_pt_value_put(log, txn, NGX_PT_DB_FILES, &f->digest, &val)
           != NGX_OK
        || ngx_pt_value_put(log, txn, NGX_PT_DB_LRU, &key, &none) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_pt_file_unlru(ngx_log_t *log, MDB_txn *txn, ngx_pt_file_t *f)
{
    u_char     kbuf[NGX_PT_LRU_KEY_MAX];
    ngx_str_t  key;

    if (ngx_pt_key_lru(kbuf, f->atime, &f->digest, &key) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_pt_db_del(log, txn, NGX_PT_DB_LRU, &key) == NGX_ERROR
           ? NGX_ERROR : NGX_OK;
}


ngx_int_t
ngx_pt_totals_get(ngx_log_t *log, MDB_txn *txn, ngx_pt_totals_t *t)
{
    ngx_int_t      rc;
    ngx_str_t      val;
    ngx_pt_file_t  f;

    t->bytes = 0;
    t->files = 0;

    rc = ngx_pt_value_get(log, txn, NGX_PT_DB_META, &ngx_pt_totals_key, &val);

    if (rc == NGX_DECLINED) {
        return NGX_OK;
    }

    if (rc != NGX_OK || ngx_pt_file_decode(&val, &f) != NGX_OK) {
        return NGX_ERROR;
    }

    t->bytes = f.size;
    t->files = f.atime;

    return NGX_OK;
}


static ngx_int_t
ngx_pt_totals_add(ngx_log_t *log, MDB_txn *txn, off_t bytes,
    ngx_int_t files)
{
    u_char           buf[2 * NGX_INT64_LEN + 1];
    ngx_str_t        val;
    ngx_pt_totals_t  t;

    if (ngx_pt_totals_get(log, txn, &t) != NGX_OK) {
        return NGX_ERROR;
    }

    t.bytes = ngx_max(t.bytes + bytes, 0);
    t.files = (files < 0 && t.files < (uint64_t) -files) ? 0 : t.files + files;

    val.data = buf;
    val.len = ngx_sprintf(buf, "%O %uL", t.bytes, t.files) - buf;

    return ngx_pt_value_put(log, txn, NGX_PT_DB_META, &ngx_pt_totals_key,
                            &val);
}


/* a file renamed into blobs/ (or found there): new, or used again now */

ngx_int_t
ngx_pt_file_stored(ngx_log_t *log, MDB_txn *txn, ngx_str_t *digest,
    off_t size, uint64_t now)
{
    ngx_int_t      rc;
    ngx_pt_file_t  f;

    rc = ngx_pt_file_get(log, txn, digest, &f);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        f.digest = *digest;
        f.size = size;
        f.atime = now;

        if (ngx_pt_file_put(log, txn, &f) != NGX_OK
            || ngx_pt_totals_add(log, txn, size, 1) != NGX_OK)
        {
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    if (f.atime >= now && f.size == size) {
        return NGX_OK;
    }

    if (ngx_pt_file_unlru(log, txn, &f) != NGX_OK
        || ngx_pt_totals_add(log, txn, size - f.size, 0) != NGX_OK)
    {
        return NGX_ERROR;
    }

    f.size = size;
    f.atime = ngx_max(f.atime, now);

    return ngx_pt_file_put(log, txn, &f);
}


/* a read: the file moves to its place in lru (NGX_DECLINED: unknown) */

ngx_int_t
ngx_pt_file_accessed(ngx_log_t *log, MDB_txn *txn, ngx_str_t *digest,
    uint64_t atime)
{
    ngx_int_t      rc;
    ngx_pt_file_t  f;

    rc = ngx_pt_file_get(log, txn, digest, &f);

    if (rc != NGX_OK || f.atime >= atime) {
        return rc;
    }

    if (ngx_pt_file_unlru(log, txn, &f) != NGX_OK) {
        return NGX_ERROR;
    }

    f.atime = atime;

    return ngx_pt_file_put(log, txn, &f);
}


/* the file is gone (or is going): its record, place and share of totals */

ngx_int_t
ngx_pt_file_forget(ngx_log_t *log, MDB_txn *txn, ngx_str_t *digest,
    ngx_pt_file_t *out)
{
    ngx_int_t      rc;
    ngx_pt_file_t  f;

    rc = ngx_pt_file_get(log, txn, digest, &f);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_pt_file_unlru(log, txn, &f) != NGX_OK
        || ngx_pt_db_del(log, txn, NGX_PT_DB_FILES, digest) == NGX_ERROR
        || ngx_pt_totals_add(log, txn, -f.size, -1) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (out) {
        *out = f;
    }

    return NGX_OK;
}


typedef struct {
    ngx_pool_t                 *pool;
    ngx_log_t                  *log;
    MDB_txn                    *txn;
    ngx_array_t                *out;
    ngx_uint_t                  n;
    ngx_pt_file_pt              handler;
    void                       *data;
} ngx_pt_files_walk_t;


static ngx_int_t
ngx_pt_files_oldest_one(void *data, ngx_str_t *key, ngx_str_t *val)
{
    ngx_pt_files_walk_t *w = data;

    ngx_int_t       rc;
    ngx_str_t       digest;
    ngx_uint_t      i;
    ngx_pt_file_t  *f, rec;

    if (key->len <= 8) {
        return NGX_OK;
    }

    digest.data = key->data + 8;
    digest.len = key->len - 8;

    rc = ngx_pt_file_get(w->log, w->txn, &digest, &rec);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    f = ngx_array_push(w->out);
    if (f == NULL) {
        return NGX_ERROR;
    }

    f->digest.len = digest.len;
    f->digest.data = ngx_pnalloc(w->pool, digest.len);
    if (f->digest.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(f->digest.data, digest.data, digest.len);

    f->atime = 0;
    for (i = 0; i < 8; i++) {
        f->atime = (f->atime << 8) | key->data[i];
    }

    /* a place without its record (never left by this module): size -1 */
    f->size = (rc == NGX_OK && rec.atime == f->atime) ? rec.size : -1;

    return w->out->nelts < w->n ? NGX_OK : NGX_DONE;
}


/* up to n files in the order of their last access, after *after (NULL:
 * the oldest) */

ngx_int_t
ngx_pt_files_oldest(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_pt_file_t *after, ngx_uint_t n, ngx_array_t *out)
{
    u_char               kbuf[NGX_PT_LRU_KEY_MAX];
    ngx_str_t            key;
    ngx_pt_files_walk_t  w;

    w.pool = pool;
    w.log = log;
    w.txn = txn;
    w.out = out;
    w.n = n;

    if (after
        && ngx_pt_key_lru(kbuf, after->atime, &after->digest, &key) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_pt_db_each(log, txn, NGX_PT_DB_LRU, NULL, after ? &key : NULL,
                          ngx_pt_files_oldest_one, &w);
}


static ngx_int_t
ngx_pt_files_each_one(void *data, ngx_str_t *key, ngx_str_t *val)
{
    ngx_pt_files_walk_t *w = data;

    ngx_pt_file_t  f;

    if (ngx_pt_value_strip(w->log, NGX_PT_DB_FILES, val) != NGX_OK
        || ngx_pt_file_decode(val, &f) != NGX_OK)
    {
        return NGX_OK;
    }

    f.digest = *key;

    return w->handler(w->data, &f);
}


/* every file record, in digest order (the digest points into the map) */

ngx_int_t
ngx_pt_files_each(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_pt_file_pt handler, void *data)
{
    ngx_pt_files_walk_t  w;

    w.pool = pool;
    w.log = log;
    w.txn = txn;
    w.handler = handler;
    w.data = data;

    return ngx_pt_db_each(log, txn, NGX_PT_DB_FILES, NULL, NULL,
                          ngx_pt_files_each_one, &w);
}
