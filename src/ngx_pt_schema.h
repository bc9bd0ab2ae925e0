
/*
 * ngx_pullthrough: the layout of the metadata store (ngx_pt_schema.c):
 * its databases, the keys and values of each, their formats and the
 * upgrade of a store written by an earlier version.
 */


#ifndef _NGX_PT_SCHEMA_H_INCLUDED_
#define _NGX_PT_SCHEMA_H_INCLUDED_


#include <ngx_pt.h>
#include <ngx_pt_record.h>
#include <ngx_pt_store.h>


#define NGX_PT_SCHEMA_VERSION     4
#define NGX_PT_CREATED_MAX        64     /* a record's created time */
#define NGX_PT_CONFIG_LABELS_MAX  32768  /* bytes of a config's labels kept */


typedef enum {
    NGX_PT_DB_META = 0,
    NGX_PT_DB_REMOTES,
    NGX_PT_DB_REMOTE_NAMES,
    NGX_PT_DB_PT_DISTS,
    NGX_PT_DB_DISTS,
    NGX_PT_DB_DIST_NAMES,
    NGX_PT_DB_DIST_PATHS,
    NGX_PT_DB_REPOS,
    NGX_PT_DB_REPO_NAMES,
    NGX_PT_DB_VERSIONS,
    NGX_PT_DB_TAGS,
    NGX_PT_DB_MANIFESTS,
    NGX_PT_DB_BLOBS,
    NGX_PT_DB_TASKS,
    NGX_PT_DB_FILES,
    NGX_PT_DB_LRU,
    NGX_PT_DB_CREATED,
    NGX_PT_DB_CHILDREN,
    NGX_PT_DB_MANIFEST_UNITS,
    NGX_PT_DB_BLOB_UNITS,
    NGX_PT_DB_UNIT_HOLDERS,
    NGX_PT_DB_UNIT_IDS,
    NGX_PT_DB_REFERRERS,
    NGX_PT_DB_CONFIGS,
    NGX_PT_DB_COUNT
} ngx_pt_db_e;


/* a manifest a repository has, as recorded (manifests) */
typedef struct {
    ngx_str_t                   media_type;
    off_t                       size;
    ngx_str_t                   created;
    ngx_str_t                   config;      /* config blob digest */
    ngx_array_t                 blobs;       /* ngx_str_t: config, layers */
    ngx_array_t                 manifests;   /* ngx_str_t: an index's */

    /* what Pulp tells of a manifest from its own bytes; a record of an
     * earlier release has none of them (type empty, sizes null) */
    ngx_str_t                   type;        /* Pulp's: image, index, ... */
    int64_t                     layers_size; /* NGX_PT_NULL_INT: unknown */
    ngx_str_t                   architecture; /* schema 1 only */
    ngx_str_t                   os;
    yajl_val                    annotations; /* an object, or NULL */
} ngx_pt_manifest_rec_t;


/*
 * What a config blob says of its image (configs): read from the blob's
 * bytes when its fill commits, in the thread that verified it; bootable
 * and flatpak from all its labels, which are kept up to a bound.
 */
typedef struct {
    ngx_str_t                   architecture; /* data NULL: none */
    ngx_str_t                   os;
    yajl_val                    labels;      /* an object, or NULL */
    ngx_uint_t                  bootable;
    ngx_uint_t                  flatpak;
} ngx_pt_config_t;


/* a tag: its digest and when the upstream last confirmed it */
typedef struct {
    ngx_str_t                   digest;
    uint64_t                    checked;     /* ms since the epoch, 0: never */
} ngx_pt_tag_t;


/* a repository version: what its tags reach (versions) */
typedef struct {
    int64_t                     number;
    ngx_str_t                   created;
    ngx_array_t                 tags;        /* ngx_keyval_t: tag, digest */
    ngx_array_t                 manifests;   /* ngx_str_t */
    ngx_array_t                 blobs;       /* ngx_str_t */
} ngx_pt_version_t;


/* a file of the store, whatever repositories have it (files, lru) */
typedef struct {
    ngx_str_t                   digest;
    off_t                       size;
    uint64_t                    atime;       /* last access, ms since the
                                                epoch */
} ngx_pt_file_t;


/* content units: a tag of a repository, or a manifest or blob whatever
 * repositories have it (then repo: one of them) */
#define NGX_PT_UNIT_TAGS          0
#define NGX_PT_UNIT_MANIFESTS     1
#define NGX_PT_UNIT_BLOBS         2
#define NGX_PT_UNIT_NAMESPACES    3        /* ids only: digest is the name */

typedef struct {
    ngx_str_t                   repo;
    ngx_str_t                   name;        /* tags */
    ngx_str_t                   digest;
} ngx_pt_unit_t;


/* what the files of the store add up to */
typedef struct {
    off_t                       bytes;
    uint64_t                    files;
} ngx_pt_totals_t;


/* an entry of a repository's content: <repo>\0<item> -> value */
typedef ngx_int_t (*ngx_pt_item_pt)(void *data, ngx_str_t *repo,
    ngx_str_t *item, ngx_str_t *value);
typedef ngx_int_t (*ngx_pt_record_pt)(void *data, void *rec);
typedef ngx_int_t (*ngx_pt_version_pt)(void *data, ngx_pt_version_t *v);
typedef ngx_int_t (*ngx_pt_file_pt)(void *data, ngx_pt_file_t *f);


ngx_int_t ngx_pt_schema_prepare(ngx_cycle_t *cycle,
    ngx_http_pullthrough_main_conf_t *pmcf);
void ngx_pt_schema_release(ngx_cycle_t *cycle,
    ngx_http_pullthrough_main_conf_t *pmcf);
ngx_int_t ngx_pt_meta_get(ngx_log_t *log, MDB_txn *txn, ngx_str_t *key,
    ngx_str_t *value);
ngx_int_t ngx_pt_meta_put(ngx_log_t *log, MDB_txn *txn, ngx_str_t *key,
    ngx_str_t *value);
ngx_int_t ngx_pt_schema_open(ngx_cycle_t *cycle,
    ngx_http_pullthrough_main_conf_t *pmcf);

/* unique indexes: name -> id */
ngx_int_t ngx_pt_index_get(ngx_log_t *log, MDB_txn *txn, ngx_uint_t db,
    ngx_str_t *name, ngx_str_t *id);
ngx_int_t ngx_pt_index_put(ngx_log_t *log, MDB_txn *txn, ngx_uint_t db,
    ngx_str_t *name, ngx_str_t *id);
ngx_int_t ngx_pt_index_del(ngx_log_t *log, MDB_txn *txn, ngx_uint_t db,
    ngx_str_t *name);
ngx_int_t ngx_pt_index_list(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_uint_t db, ngx_str_t *after, ngx_uint_t n, ngx_array_t *out,
    ngx_uint_t *more);

/* records: id -> the record of its type */
ngx_int_t ngx_pt_record_load(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_pt_type_t *type, ngx_str_t *id, void **rec);
ngx_int_t ngx_pt_record_raw(ngx_log_t *log, MDB_txn *txn,
    ngx_pt_type_t *type, ngx_str_t *id, ngx_str_t *raw);
ngx_int_t ngx_pt_record_save(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_pt_type_t *type, void *rec);
ngx_int_t ngx_pt_record_delete(ngx_log_t *log, MDB_txn *txn,
    ngx_pt_type_t *type, ngx_str_t *id);
ngx_int_t ngx_pt_record_count(ngx_log_t *log, MDB_txn *txn,
    ngx_pt_type_t *type, size_t *n);
ngx_int_t ngx_pt_record_each(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_pt_type_t *type, ngx_pt_record_pt handler, void *data);
ngx_int_t ngx_pt_records_page(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_pt_type_t *type, ngx_uint_t desc, ngx_uint_t offset, ngx_uint_t n,
    ngx_array_t *out);
ngx_int_t ngx_pt_children_list(ngx_pool_t *pool, ngx_log_t *log,
    MDB_txn *txn, ngx_str_t *parent, ngx_uint_t n, ngx_array_t *out);

/* what a repository's pulls recorded: tags, manifests, blobs */
ngx_int_t ngx_pt_tag_get(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_str_t *repo, ngx_str_t *tag, ngx_pt_tag_t *t);
ngx_int_t ngx_pt_tag_put(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_str_t *repo, ngx_str_t *tag, ngx_pt_tag_t *t);
ngx_int_t ngx_pt_tag_decode(ngx_str_t *value, ngx_pt_tag_t *t);
ngx_int_t ngx_pt_blob_rec_get(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_str_t *repo, ngx_str_t *digest, off_t *size);
ngx_int_t ngx_pt_blob_rec_put(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_str_t *repo, ngx_str_t *digest, off_t size);
ngx_int_t ngx_pt_manifest_get(ngx_pool_t *pool, ngx_log_t *log,
    MDB_txn *txn, ngx_str_t *repo, ngx_str_t *digest,
    ngx_pt_manifest_rec_t *m);
ngx_int_t ngx_pt_manifest_record_head(ngx_pool_t *pool,
    ngx_log_t *log, MDB_txn *txn, ngx_str_t *repo, ngx_str_t *digest,
    ngx_str_t *type, off_t *size);
ngx_int_t ngx_pt_manifest_put(ngx_pool_t *pool, ngx_log_t *log,
    MDB_txn *txn, ngx_str_t *repo, ngx_str_t *digest,
    ngx_pt_manifest_rec_t *m);
ngx_int_t ngx_pt_manifest_decode(ngx_pool_t *pool, ngx_str_t *value,
    ngx_pt_manifest_rec_t *m);
ngx_int_t ngx_pt_items_each(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_uint_t db, ngx_str_t *repo, ngx_pt_item_pt handler, void *data);
ngx_int_t ngx_pt_items_under(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_uint_t db, ngx_str_t *prefix, ngx_pt_item_pt handler, void *data);
ngx_int_t ngx_pt_items_list(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_uint_t db, ngx_str_t *repo, ngx_str_t *after, ngx_uint_t n,
    ngx_array_t *out, ngx_uint_t *more);
ngx_int_t ngx_pt_items_delete(ngx_pool_t *pool, ngx_log_t *log,
    MDB_txn *txn, ngx_uint_t db, ngx_str_t *repo);

/* a repository's referrers index of a subject, and when it was asked */
ngx_int_t ngx_pt_referrers_get(ngx_pool_t *pool, ngx_log_t *log,
    MDB_txn *txn, ngx_str_t *repo, ngx_str_t *digest, uint64_t *checked,
    ngx_str_t *index);
ngx_int_t ngx_pt_referrers_put(ngx_pool_t *pool, ngx_log_t *log,
    MDB_txn *txn, ngx_str_t *repo, ngx_str_t *digest, uint64_t checked,
    ngx_str_t *index);

/* what config blobs say: <digest> -> {"architecture", "os", ...} */
ngx_int_t ngx_pt_config_get(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_str_t *digest, ngx_pt_config_t *c);
ngx_int_t ngx_pt_config_put(ngx_log_t *log, MDB_txn *txn, ngx_str_t *digest,
    ngx_str_t *value);
ngx_int_t ngx_pt_config_delete(ngx_log_t *log, MDB_txn *txn,
    ngx_str_t *digest);
ngx_int_t ngx_pt_config_encode(ngx_pool_t *pool, ngx_pt_config_t *c,
    ngx_str_t *value);

/* content units (ngx_pt_schema_units.c): ids, counts, pages in order */
const char *ngx_pt_unit_prn(ngx_uint_t kind);
ngx_int_t ngx_pt_unit_id(ngx_uint_t kind, ngx_pt_unit_t *unit, u_char *id);
ngx_int_t ngx_pt_unit_find(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_uint_t kind, ngx_str_t *id, ngx_pt_unit_t *unit);
ngx_int_t ngx_pt_unit_get(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_uint_t kind, ngx_str_t *digest, ngx_pt_unit_t *unit);
ngx_int_t ngx_pt_units_count(ngx_log_t *log, MDB_txn *txn, ngx_uint_t kind,
    size_t *n);
ngx_int_t ngx_pt_units_page(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_uint_t kind, ngx_pt_unit_t *filter, ngx_uint_t offset, ngx_uint_t n,
    ngx_array_t *out, size_t *count);
ngx_int_t ngx_pt_units_each(ngx_log_t *log, MDB_txn *txn, ngx_uint_t kind,
    ngx_pt_item_pt handler, void *data);

/* repository versions: <repository id>/<number> */
ngx_int_t ngx_pt_version_get(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_str_t *repo_id, int64_t number, ngx_pt_version_t *v);
ngx_int_t ngx_pt_version_put(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_str_t *repo_id, ngx_pt_version_t *v);
ngx_int_t ngx_pt_version_delete(ngx_log_t *log, MDB_txn *txn,
    ngx_str_t *repo_id, int64_t number);
ngx_int_t ngx_pt_versions_each(ngx_pool_t *pool, ngx_log_t *log,
    MDB_txn *txn, ngx_str_t *repo_id, ngx_pt_version_pt handler, void *data);
ngx_int_t ngx_pt_versions_delete(ngx_log_t *log, MDB_txn *txn,
    ngx_str_t *repo_id);

/* the files of the store: sizes, last accesses and their totals */
ngx_int_t ngx_pt_file_get(ngx_log_t *log, MDB_txn *txn, ngx_str_t *digest,
    ngx_pt_file_t *f);
ngx_int_t ngx_pt_file_stored(ngx_log_t *log, MDB_txn *txn,
    ngx_str_t *digest, off_t size, uint64_t now);
ngx_int_t ngx_pt_file_accessed(ngx_log_t *log, MDB_txn *txn,
    ngx_str_t *digest, uint64_t atime);
ngx_int_t ngx_pt_file_forget(ngx_log_t *log, MDB_txn *txn,
    ngx_str_t *digest, ngx_pt_file_t *f);
ngx_int_t ngx_pt_files_oldest(ngx_pool_t *pool, ngx_log_t *log,
    MDB_txn *txn, ngx_pt_file_t *after, ngx_uint_t n, ngx_array_t *out);
ngx_int_t ngx_pt_files_each(ngx_pool_t *pool, ngx_log_t *log, MDB_txn *txn,
    ngx_pt_file_pt handler, void *data);
ngx_int_t ngx_pt_totals_get(ngx_log_t *log, MDB_txn *txn,
    ngx_pt_totals_t *t);


#endif /* _NGX_PT_SCHEMA_H_INCLUDED_ */
