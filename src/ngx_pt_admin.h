
/*
 * ngx_pullthrough: the admin API. Routing, answers and the resource table
 * (ngx_pt_admin.c), lists and the query string (ngx_pt_admin_list.c),
 * writes (ngx_pt_admin_write.c), the views of what pulls made
 * (ngx_pt_admin_content.c).
 */


#ifndef _NGX_PT_ADMIN_H_INCLUDED_
#define _NGX_PT_ADMIN_H_INCLUDED_


#include <ngx_pt.h>
#include <ngx_pt_content.h>
#include <ngx_pt_json.h>


/* the versions of Pulp whose API this one follows */
#define NGX_PT_PULP_CORE_VERSION       "3.73.0"
#define NGX_PT_PULP_CONTAINER_VERSION  "2.23.0"

#define NGX_PT_DEFAULT_LIMIT        100
#define NGX_PT_MAX_LIMIT            1000

/* content units (ngx_pt_admin_content.c) */
#define NGX_PT_CONTENT_TAGS         NGX_PT_UNIT_TAGS
#define NGX_PT_CONTENT_MANIFESTS    NGX_PT_UNIT_MANIFESTS
#define NGX_PT_CONTENT_BLOBS        NGX_PT_UNIT_BLOBS

/* resource flags */
#define NGX_PT_ADMIN_AT_ONCE        0x01   /* POST answers 201, no task */
#define NGX_PT_ADMIN_VERSIONS       0x02   /* <id>/versions/[<n>/] */
#define NGX_PT_ADMIN_LIST_ONLY      0x04   /* a list, no objects of its own */
#define NGX_PT_ADMIN_NO_STORE       0x08   /* answered without the store */


typedef struct ngx_pt_admin_s           ngx_pt_admin_t;
typedef struct ngx_pt_admin_resource_s  ngx_pt_admin_resource_t;


/* a view of its own, instead of the record one (content units) */
typedef ngx_int_t (*ngx_pt_admin_view_pt)(ngx_pt_admin_t *ctx);

/* create, update: checks against other records, into errs */
typedef ngx_int_t (*ngx_pt_admin_check_pt)(ngx_pt_admin_t *ctx,
    MDB_txn *txn, void *rec, void *old, ngx_pt_errors_t *errs);

/* create, update: the indexes, and what a change takes with it */
typedef ngx_int_t (*ngx_pt_admin_index_pt)(ngx_pt_admin_t *ctx,
    MDB_txn *txn, void *rec, void *old);

/* delete: the record and what goes with it; NGX_DECLINED: refused, the
 * answer is in ctx */
typedef ngx_int_t (*ngx_pt_admin_remove_pt)(ngx_pt_admin_t *ctx,
    MDB_txn *txn, void *old);

/* the JSON of a record: all of it, or what follows its fields */
typedef ngx_int_t (*ngx_pt_admin_render_pt)(ngx_pt_admin_t *ctx,
    MDB_txn *txn, void *rec);


/*
 * What an answer holds besides a record's fields, for the OpenAPI
 * document: a member's name and its kind, one of "string", "uri" (an
 * href), "date-time", "integer", "number", "boolean", "object", "array"
 * (of strings), "objects" (an array of objects); a trailing "?" makes it
 * nullable.
 */
typedef struct {
    const char                 *name;
    const char                 *kind;
} ngx_pt_admin_prop_t;

/* a resource's part of the OpenAPI document (ngx_pt_admin_openapi.c) */
typedef struct {
    const char                 *op;          /* operation ids' prefix */
    const char                 *href;        /* an object's href parameter */
    const char                 *schema;      /* its components' name */
    const char                 *tag;
    ngx_pt_admin_prop_t        *props;       /* the whole object, or what
                                                follows a record's fields */
    const char                **params;      /* a view's query parameters */
    ngx_pt_admin_prop_t        *body;        /* what a view's POST takes */
    const char                 *list;        /* the GET's id, if not
                                                <op>_list */
    const char                 *create;      /* the POST's, if not
                                                <op>_create */
    ngx_pt_type_t              *shape;       /* whose fields an answer
                                                shows, if not its
                                                resource's type's */
    unsigned                    single:1;    /* GET answers one object */
    unsigned                    shared:1;    /* schemas are another's */
} ngx_pt_admin_api_t;

struct ngx_pt_admin_resource_s {
    const char                 *path;        /* under NGX_PT_API_ROOT */
    ngx_pt_type_t              *type;        /* NULL: no records */
    ngx_uint_t                  collection_methods;
    ngx_uint_t                  item_methods;
    const char                 *collection_allow;
    const char                 *item_allow;
    ngx_uint_t                  flags;
    ngx_uint_t                  kind;        /* content units */
    ngx_pt_admin_view_pt        view;
    ngx_pt_admin_render_pt      render;      /* NULL: the fields */
    ngx_pt_admin_render_pt      extra;
    ngx_pt_admin_check_pt       check;
    ngx_pt_admin_index_pt       index;
    ngx_pt_admin_remove_pt      remove;
    ngx_pt_admin_api_t         *api;         /* NULL: not in the document */
    ngx_pt_type_t              *also;        /* a list's second type */
};


/* the query string, decoded once */
typedef struct {
    ngx_int_t                   limit;
    ngx_int_t                   offset;
    ngx_str_t                   ordering;
    ngx_array_t                 params;      /* ngx_keyval_t: the others */
} ngx_pt_admin_query_t;


struct ngx_pt_admin_s {
    ngx_http_request_t         *r;
    ngx_pool_t                 *pool;
    ngx_log_t                  *log;
    ngx_pt_admin_resource_t    *res;
    ngx_pt_type_t              *type;
    ngx_uint_t                  kind;        /* content units' */
    ngx_str_t                   id;          /* empty: the collection */
    ngx_uint_t                  versions;    /* .../<id>/versions/ */
    ngx_int_t                   version;     /* -1: all */
    ngx_str_t                   body;
    ngx_pt_admin_query_t        query;
    yajl_gen                    g;
    ngx_str_t                   raw;         /* sent as it is, if set */
    ngx_uint_t                  status;
    unsigned                    declared:1;  /* no request: the
                                                declarative configuration */
};


/* ngx_pt_admin.c: answers */
ngx_int_t ngx_pt_admin_hosts(ngx_conf_t *cf,
    ngx_http_pullthrough_loc_conf_t *plcf);
ngx_int_t ngx_pt_admin_guard(ngx_pt_admin_t *ctx);
ngx_int_t ngx_pt_admin_detail(ngx_pt_admin_t *ctx, ngx_uint_t status,
    const char *fmt, ...);
ngx_int_t ngx_pt_admin_field_error(ngx_pt_admin_t *ctx, const char *field,
    const char *message);
ngx_int_t ngx_pt_admin_store_error(ngx_pt_admin_t *ctx);
ngx_int_t ngx_pt_admin_render(ngx_pt_admin_t *ctx, MDB_txn *txn, void *rec);
ngx_int_t ngx_pt_admin_render_task(ngx_pt_admin_t *ctx, MDB_txn *txn,
    void *rec);
ngx_int_t ngx_pt_admin_render_children(ngx_pt_admin_t *ctx, MDB_txn *txn,
    void *rec);

extern ngx_pt_admin_resource_t  ngx_pt_admin_resources[];
/* the OpenAPI document's parts that live beside their views */
extern ngx_pt_admin_api_t       ngx_pt_admin_version_api;
extern ngx_pt_admin_api_t       ngx_pt_admin_repo_api;
extern ngx_pt_admin_api_t       ngx_pt_admin_repos_api;
extern ngx_pt_admin_api_t       ngx_pt_admin_dist_api;
extern ngx_pt_admin_api_t       ngx_pt_admin_tag_api;
extern ngx_pt_admin_api_t       ngx_pt_admin_manifest_api;
extern ngx_pt_admin_api_t       ngx_pt_admin_blob_api;
extern ngx_pt_admin_api_t       ngx_pt_admin_namespace_api;
extern ngx_pt_admin_api_t       ngx_pt_admin_status_api;
extern ngx_pt_admin_api_t       ngx_pt_admin_orphans_api;
extern ngx_pt_admin_api_t       ngx_pt_admin_artifact_api;
extern ngx_pt_admin_api_t       ngx_pt_admin_contents_api;
extern ngx_pt_admin_api_t       ngx_pt_admin_distributions_api;
extern ngx_pt_admin_api_t       ngx_pt_admin_image_remote_api;

/* ngx_pt_declare.c */
ngx_int_t ngx_pt_declare_apply(ngx_conf_t *cf,
    ngx_http_pullthrough_main_conf_t *pmcf);

/* ngx_pt_admin_generic.c */
ngx_int_t ngx_pt_admin_render_distribution(ngx_pt_admin_t *ctx,
    MDB_txn *txn, void *rec);
ngx_int_t ngx_pt_admin_render_image_remote(ngx_pt_admin_t *ctx,
    MDB_txn *txn, void *rec);
void ngx_pt_admin_image_remote_href(ngx_pt_dist_t *dist, u_char *buf,
    ngx_str_t *href);

/* ngx_pt_admin_list.c */
ngx_int_t ngx_pt_admin_query_parse(ngx_pt_admin_t *ctx);
void ngx_pt_admin_query_get(ngx_pt_admin_t *ctx, const char *name,
    ngx_str_t *value);
ngx_int_t ngx_pt_admin_list(ngx_pt_admin_t *ctx);
ngx_int_t ngx_pt_admin_page(ngx_pt_admin_t *ctx, ngx_uint_t count);
ngx_uint_t ngx_pt_admin_filterable(ngx_pt_field_t *f);
ngx_uint_t ngx_pt_admin_listed(ngx_str_t *list, ngx_str_t *s);

/* a filter's operation: the index of its suffix in ngx_pt_admin_filter_ops */
#define NGX_PT_OP_EXACT       0
#define NGX_PT_OP_CONTAINS    1
#define NGX_PT_OP_ICONTAINS   2
#define NGX_PT_OP_STARTSWITH  3
#define NGX_PT_OP_IN          4

extern const char  *ngx_pt_admin_filter_ops[];
extern const char  *ngx_pt_admin_orderings[];

/* ngx_pt_admin_write.c */
ngx_int_t ngx_pt_admin_write(ngx_pt_admin_t *ctx);
ngx_int_t ngx_pt_admin_save(ngx_pt_admin_t *ctx, MDB_txn *txn, yajl_val body,
    void *old, ngx_uint_t mode, void **recp);
ngx_int_t ngx_pt_admin_check_remote(ngx_pt_admin_t *ctx, MDB_txn *txn,
    void *rec, void *old, ngx_pt_errors_t *errs);
ngx_int_t ngx_pt_admin_check_dist(ngx_pt_admin_t *ctx, MDB_txn *txn,
    void *rec, void *old, ngx_pt_errors_t *errs);
ngx_int_t ngx_pt_admin_index_remote(ngx_pt_admin_t *ctx, MDB_txn *txn,
    void *rec, void *old);
ngx_int_t ngx_pt_admin_index_dist(ngx_pt_admin_t *ctx, MDB_txn *txn,
    void *rec, void *old);
ngx_int_t ngx_pt_admin_remove_remote(ngx_pt_admin_t *ctx, MDB_txn *txn,
    void *old);
ngx_int_t ngx_pt_admin_remove_dist(ngx_pt_admin_t *ctx, MDB_txn *txn,
    void *old);
ngx_int_t ngx_pt_admin_remove_image(ngx_pt_admin_t *ctx, MDB_txn *txn,
    void *old);
ngx_int_t ngx_pt_admin_remove_repo(ngx_pt_admin_t *ctx, MDB_txn *txn,
    void *old);
ngx_int_t ngx_pt_admin_task(ngx_pt_admin_t *ctx, MDB_txn *txn,
    const char *name, const char *state, ngx_str_t *created, ngx_str_t *href,
    ngx_str_t *id);

/* ngx_pt_admin_store.c */
ngx_int_t ngx_pt_admin_status(ngx_pt_admin_t *ctx);
ngx_int_t ngx_pt_admin_orphans(ngx_pt_admin_t *ctx);

/* ngx_pt_admin_content.c */
ngx_int_t ngx_pt_admin_versions(ngx_pt_admin_t *ctx);
ngx_int_t ngx_pt_admin_namespaces(ngx_pt_admin_t *ctx);
ngx_int_t ngx_pt_admin_content(ngx_pt_admin_t *ctx);
ngx_int_t ngx_pt_admin_content_all(ngx_pt_admin_t *ctx);
ngx_int_t ngx_pt_admin_render_repo(ngx_pt_admin_t *ctx, MDB_txn *txn,
    void *rec);
ngx_int_t ngx_pt_admin_render_dist(ngx_pt_admin_t *ctx, MDB_txn *txn,
    void *rec);


/* ngx_pt_admin_artifacts.c */
ngx_int_t ngx_pt_admin_artifacts(ngx_pt_admin_t *ctx);

/* ngx_pt_admin_openapi.c */
ngx_int_t ngx_pt_admin_openapi_init(ngx_conf_t *cf);
ngx_int_t ngx_pt_admin_openapi(ngx_pt_admin_t *ctx);

ngx_int_t ngx_http_pullthrough_admin_handler(ngx_http_request_t *r);


#endif /* _NGX_PT_ADMIN_H_INCLUDED_ */
