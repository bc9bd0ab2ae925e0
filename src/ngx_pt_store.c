
/*
 * ngx_pullthrough: the metadata store, an LMDB environment under
 * <store>/meta with named databases, and the directories of the store.
 *
 * This file knows LMDB, not what is kept in it: the databases come as a
 * table of names, and keys and values are bytes (ngx_pt_schema.c gives
 * them their meaning). The master prepares the store (directories,
 * ownership, the schema's check) and closes it again; every worker opens
 * its own environment after fork(). Each change is a single write
 * transaction, which LMDB serialises across processes, so concurrent
 * workers never lose an update; reads renew one read transaction handle.
 */


#include <ngx_pt.h>
#include <ngx_pt_store.h>


#define NGX_PT_STORE_MAX_DBS   32


typedef struct {
    MDB_env                    *env;
    MDB_dbi                     dbi[NGX_PT_STORE_MAX_DBS];
    const char                **names;
    MDB_txn                    *rtxn;        /* a reusable read transaction */
    ngx_uint_t                  rtxn_busy;
} ngx_pt_store_t;


static ngx_int_t ngx_pt_store_mkdir(ngx_cycle_t *cycle, ngx_str_t *root,
    const char *sub);
static void ngx_pt_store_owner(ngx_cycle_t *cycle);
static void ngx_pt_store_chown(ngx_cycle_t *cycle, u_char *path);
static ngx_int_t ngx_pt_store_failed(ngx_log_t *log, const char *what,
    ngx_uint_t db, int rc);
static ngx_int_t ngx_pt_db_walk(ngx_log_t *log, ngx_uint_t db,
    MDB_cursor *cur, int rc, MDB_val *k, MDB_val *v, MDB_cursor_op op,
    ngx_str_t *prefix, ngx_str_t *skip, ngx_pt_db_iter_pt handler,
    void *data);


static ngx_pt_store_t  ngx_pt_store;

/* the user and group workers run as, when started as root */
static ngx_uid_t  ngx_pt_store_uid = (ngx_uid_t) -1;
static ngx_gid_t  ngx_pt_store_gid = (ngx_gid_t) -1;


/* <store>, <store>/blobs, <store>/tmp and <store>/meta, owned by the
 * workers' user */

ngx_int_t
ngx_pt_store_dirs(ngx_cycle_t *cycle, ngx_str_t *root)
{
    ngx_uint_t  i;

    static const char  *subs[] = { "", "/blobs", "/tmp", "/meta" };

    ngx_pt_store_owner(cycle);

    for (i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
        if (ngx_pt_store_mkdir(cycle, root, subs[i]) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* the environment and its named databases (created as needed) */

ngx_int_t
ngx_pt_store_open(ngx_log_t *log, ngx_http_pullthrough_main_conf_t *pmcf,
    const char **names, ngx_uint_t n)
{
    int          rc, dead;
    u_char      *dir;
    MDB_txn     *txn;
    ngx_uint_t   i;

    dir = ngx_alloc(pmcf->path.len + sizeof("/meta"), log);
    if (dir == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(ngx_cpymem(dir, pmcf->path.data, pmcf->path.len),
               "/meta", sizeof("/meta"));

    ngx_pt_store.names = names;

    rc = mdb_env_create(&ngx_pt_store.env);

    if (rc == 0) {
        rc = mdb_env_set_maxdbs(ngx_pt_store.env, NGX_PT_STORE_MAX_DBS);
    }

    if (rc == 0) {
        rc = mdb_env_set_mapsize(ngx_pt_store.env, pmcf->map_size);
    }

    if (rc == 0) {
        /* MDB_NOTLS: read transactions may move to thread pools; 0600:
         * records hold secrets */
        rc = mdb_env_open(ngx_pt_store.env, (const char *) dir, MDB_NOTLS,
                          0600);
    }

    if (rc != 0) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "pullthrough: cannot open the metadata store \"%s\": "
                      "%s", dir, mdb_strerror(rc));
        goto failed;
    }

    /* reader slots of a process killed while reading are reclaimed here */
    (void) mdb_reader_check(ngx_pt_store.env, &dead);

    rc = mdb_txn_begin(ngx_pt_store.env, NULL, 0, &txn);
    if (rc != 0) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "pullthrough: mdb_txn_begin() failed: %s",
                      mdb_strerror(rc));
        goto failed;
    }

    for (i = 0; i < n && i < NGX_PT_STORE_MAX_DBS; i++) {
        rc = mdb_dbi_open(txn, names[i], MDB_CREATE, &ngx_pt_store.dbi[i]);
        if (rc != 0) {
            ngx_log_error(NGX_LOG_EMERG, log, 0,
                          "pullthrough: cannot open database \"%s\": %s",
                          names[i], mdb_strerror(rc));
            mdb_txn_abort(txn);
            goto failed;
        }
    }

    if (ngx_pt_txn_commit(log, txn) != NGX_OK) {
        goto failed;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_CORE, log, 0,
                   "pullthrough store: \"%s\" open", dir);

    ngx_free(dir);

    return NGX_OK;

failed:

    if (ngx_pt_store.env) {
        mdb_env_close(ngx_pt_store.env);
        ngx_pt_store.env = NULL;
    }

    ngx_free(dir);

    return NGX_ERROR;
}


void
ngx_pt_store_close(void)
{
    if (ngx_pt_store.rtxn) {
        mdb_txn_abort(ngx_pt_store.rtxn);
        ngx_pt_store.rtxn = NULL;
        ngx_pt_store.rtxn_busy = 0;
    }

    if (ngx_pt_store.env) {
        mdb_env_close(ngx_pt_store.env);
        ngx_pt_store.env = NULL;
    }
}


/* the environment's files were made by the master: hand them over */

void
ngx_pt_store_chown_env(ngx_cycle_t *cycle, ngx_str_t *root)
{
    u_char      path[NGX_MAX_PATH];
    ngx_uint_t  i;

    static const char  *files[] = { "/meta/data.mdb", "/meta/lock.mdb" };

    for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        if (root->len + ngx_strlen(files[i]) >= sizeof(path)) {
            return;
        }

        ngx_sprintf(path, "%V%s%Z", root, files[i]);
        ngx_pt_store_chown(cycle, path);
    }
}


ngx_int_t
ngx_pt_store_ready(void)
{
    return ngx_pt_store.env != NULL;
}


static ngx_int_t
ngx_pt_store_mkdir(ngx_cycle_t *cycle, ngx_str_t *root, const char *sub)
{
    u_char           dir[NGX_MAX_PATH];
    ngx_file_info_t  fi;

    if (root->len + ngx_strlen(sub) >= sizeof(dir)) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "pullthrough: the store path \"%V\" is too long", root);
        return NGX_ERROR;
    }

    ngx_sprintf(dir, "%V%s%Z", root, sub);

    if (ngx_create_dir(dir, 0700) == NGX_FILE_ERROR) {
        if (ngx_errno != NGX_EEXIST) {
            ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                          "pullthrough: cannot create the store directory "
                          "\"%s\"", dir);
            return NGX_ERROR;
        }

        if (ngx_file_info(dir, &fi) == NGX_FILE_ERROR || !ngx_is_dir(&fi)) {
            ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                          "pullthrough: \"%s\" is not a directory", dir);
            return NGX_ERROR;
        }
    }

    /* existing ones too: the worker user may have changed */
    ngx_pt_store_chown(cycle, dir);

    return NGX_OK;
}


/*
 * The owner workers need, as nginx resolves it for its temp paths: the
 * "user" directive, else nginx's default user when started as root. This
 * runs while the configuration is read, before the core module settles
 * its defaults.
 */

static void
ngx_pt_store_owner(ngx_cycle_t *cycle)
{
    struct group     *grp;
    struct passwd    *pwd;
    ngx_core_conf_t  *ccf;

    ngx_pt_store_uid = (ngx_uid_t) -1;
    ngx_pt_store_gid = (ngx_gid_t) -1;

    if (geteuid() != 0) {
        return;
    }

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    if (ccf && ccf->user != (ngx_uid_t) NGX_CONF_UNSET_UINT) {
        ngx_pt_store_uid = ccf->user;
        ngx_pt_store_gid = ccf->group;
        return;
    }

    pwd = getpwnam(NGX_USER);
    grp = getgrnam(NGX_GROUP);

    if (pwd && grp) {
        ngx_pt_store_uid = pwd->pw_uid;
        ngx_pt_store_gid = grp->gr_gid;
    }
}


static void
ngx_pt_store_chown(ngx_cycle_t *cycle, u_char *path)
{
    if (ngx_pt_store_uid == (ngx_uid_t) -1 || ngx_pt_store_uid == 0) {
        return;
    }

    if (chown((const char *) path, ngx_pt_store_uid, ngx_pt_store_gid) == -1
        && ngx_errno != NGX_ENOENT)
    {
        ngx_log_error(NGX_LOG_WARN, cycle->log, ngx_errno,
                      "pullthrough: chown(\"%s\") failed", path);
    }
}


ngx_int_t
ngx_pt_txn_begin(ngx_log_t *log, ngx_uint_t write, MDB_txn **txn)
{
    int  rc;

    if (ngx_pt_store.env == NULL) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "pullthrough: the metadata store is not open");
        return NGX_ERROR;
    }

    /* read transactions are many and short: one handle is renewed */

    if (!write && !ngx_pt_store.rtxn_busy) {

        if (ngx_pt_store.rtxn) {
            rc = mdb_txn_renew(ngx_pt_store.rtxn);

        } else {
            rc = mdb_txn_begin(ngx_pt_store.env, NULL, MDB_RDONLY,
                               &ngx_pt_store.rtxn);
        }

        if (rc == 0) {
            ngx_pt_store.rtxn_busy = 1;
            *txn = ngx_pt_store.rtxn;
            return NGX_OK;
        }

        if (ngx_pt_store.rtxn) {
            mdb_txn_abort(ngx_pt_store.rtxn);
            ngx_pt_store.rtxn = NULL;
        }
    }

    rc = mdb_txn_begin(ngx_pt_store.env, NULL, write ? 0 : MDB_RDONLY, txn);
    if (rc != 0) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "pullthrough: mdb_txn_begin() failed: %s",
                      mdb_strerror(rc));
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* ends the transaction, whether it commits or not */

ngx_int_t
ngx_pt_txn_commit(ngx_log_t *log, MDB_txn *txn)
{
    int  rc;

    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "pullthrough: mdb_txn_commit() failed: %s%s",
                      mdb_strerror(rc),
                      rc == MDB_MAP_FULL
                      ? " (raise map_size= of \"pullthrough_store\")" : "");
        return NGX_ERROR;
    }

    return NGX_OK;
}


void
ngx_pt_txn_abort(MDB_txn *txn)
{
    if (txn == ngx_pt_store.rtxn) {
        mdb_txn_reset(txn);
        ngx_pt_store.rtxn_busy = 0;
        return;
    }

    mdb_txn_abort(txn);
}


ngx_int_t
ngx_pt_db_get(ngx_log_t *log, MDB_txn *txn, ngx_uint_t db, ngx_str_t *key,
    ngx_str_t *val)
{
    int      rc;
    MDB_val  k, v;

    k.mv_data = key->data;
    k.mv_size = key->len;

    rc = mdb_get(txn, ngx_pt_store.dbi[db], &k, &v);

    if (rc == MDB_NOTFOUND) {
        return NGX_DECLINED;
    }

    if (rc != 0) {
        return ngx_pt_store_failed(log, "mdb_get", db, rc);
    }

    val->data = v.mv_data;
    val->len = v.mv_size;

    return NGX_OK;
}


/* room for a value of size bytes under key, to write in place */

ngx_int_t
ngx_pt_db_reserve(ngx_log_t *log, MDB_txn *txn, ngx_uint_t db,
    ngx_str_t *key, size_t size, u_char **p)
{
    int      rc;
    MDB_val  k, v;

    k.mv_data = key->data;
    k.mv_size = key->len;
    v.mv_data = NULL;
    v.mv_size = size;

    rc = mdb_put(txn, ngx_pt_store.dbi[db], &k, &v, MDB_RESERVE);

    if (rc != 0) {
        return ngx_pt_store_failed(log, "mdb_put", db, rc);
    }

    *p = v.mv_data;

    return NGX_OK;
}


ngx_int_t
ngx_pt_db_del(ngx_log_t *log, MDB_txn *txn, ngx_uint_t db, ngx_str_t *key)
{
    int      rc;
    MDB_val  k;

    k.mv_data = key->data;
    k.mv_size = key->len;

    rc = mdb_del(txn, ngx_pt_store.dbi[db], &k, NULL);

    if (rc == MDB_NOTFOUND) {
        return NGX_DECLINED;
    }

    if (rc != 0) {
        return ngx_pt_store_failed(log, "mdb_del", db, rc);
    }

    return NGX_OK;
}


/* the number of entries of a database, without a walk */

ngx_int_t
ngx_pt_db_count(ngx_log_t *log, MDB_txn *txn, ngx_uint_t db, size_t *n)
{
    int       rc;
    MDB_stat  st;

    rc = mdb_stat(txn, ngx_pt_store.dbi[db], &st);
    if (rc != 0) {
        return ngx_pt_store_failed(log, "mdb_stat", db, rc);
    }

    *n = st.ms_entries;

    return NGX_OK;
}


ngx_int_t
ngx_pt_db_each(ngx_log_t *log, MDB_txn *txn, ngx_uint_t db,
    ngx_str_t *prefix, ngx_str_t *after, ngx_pt_db_iter_pt handler,
    void *data)
{
    int          rc;
    MDB_val      k, v;
    ngx_str_t   *start;
    MDB_cursor  *cur;

    rc = mdb_cursor_open(txn, ngx_pt_store.dbi[db], &cur);
    if (rc != 0) {
        return ngx_pt_store_failed(log, "mdb_cursor_open", db, rc);
    }

    start = (after && after->len) ? after : prefix;

    if (start && start->len) {
        k.mv_data = start->data;
        k.mv_size = start->len;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);

    } else {
        rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    }

    return ngx_pt_db_walk(log, db, cur, rc, &k, &v, MDB_NEXT, prefix,
                          (start == after) ? after : NULL, handler, data);
}


/* the records whose keys begin with prefix, from the last one back */

ngx_int_t
ngx_pt_db_each_reverse(ngx_log_t *log, MDB_txn *txn, ngx_uint_t db,
    ngx_str_t *prefix, ngx_pt_db_iter_pt handler, void *data)
{
    int          rc;
    u_char       past[NGX_PT_STORE_KEY_MAX + 1];
    MDB_val      k, v;
    MDB_cursor  *cur;

    if (prefix->len > NGX_PT_STORE_KEY_MAX) {
        return NGX_ERROR;
    }

    rc = mdb_cursor_open(txn, ngx_pt_store.dbi[db], &cur);
    if (rc != 0) {
        return ngx_pt_store_failed(log, "mdb_cursor_open", db, rc);
    }

    /* just past the prefix's keys, then one back */

    ngx_memcpy(past, prefix->data, prefix->len);
    past[prefix->len] = 0xff;

    k.mv_data = past;
    k.mv_size = prefix->len + 1;

    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);

    if (rc == 0) {
        rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);

    } else if (rc == MDB_NOTFOUND) {
        rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    }

    return ngx_pt_db_walk(log, db, cur, rc, &k, &v, MDB_PREV, prefix, NULL,
                          handler, data);
}


/*
 * From where the cursor is (rc: how positioning it went), each record
 * while its key begins with prefix, in the direction of op; skip: a key
 * not to hand over (the "after" of a forward walk). The cursor is closed.
 */

static ngx_int_t
ngx_pt_db_walk(ngx_log_t *log, ngx_uint_t db, MDB_cursor *cur, int rc,
    MDB_val *k, MDB_val *v, MDB_cursor_op op, ngx_str_t *prefix,
    ngx_str_t *skip, ngx_pt_db_iter_pt handler, void *data)
{
    ngx_int_t  hrc;
    ngx_str_t  key, val;

    hrc = NGX_OK;

    for ( /* void */ ; rc == 0; rc = mdb_cursor_get(cur, k, v, op)) {

        if (prefix && (k->mv_size < prefix->len
                       || ngx_memcmp(k->mv_data, prefix->data, prefix->len)
                          != 0))
        {
            break;
        }

        if (skip && k->mv_size == skip->len
            && ngx_memcmp(k->mv_data, skip->data, skip->len) == 0)
        {
            /* strictly after it */
            continue;
        }

        key.data = k->mv_data;
        key.len = k->mv_size;
        val.data = v->mv_data;
        val.len = v->mv_size;

        hrc = handler(data, &key, &val);
        if (hrc != NGX_OK) {
            break;
        }
    }

    mdb_cursor_close(cur);

    if (rc != 0 && rc != MDB_NOTFOUND) {
        return ngx_pt_store_failed(log, "mdb_cursor_get", db, rc);
    }

    return hrc == NGX_DONE ? NGX_OK : hrc;
}


ngx_int_t
ngx_pt_db_del_prefix(ngx_log_t *log, MDB_txn *txn, ngx_uint_t db,
    ngx_str_t *prefix)
{
    int          rc;
    MDB_val      k, v;
    MDB_cursor  *cur;

    rc = mdb_cursor_open(txn, ngx_pt_store.dbi[db], &cur);
    if (rc != 0) {
        return ngx_pt_store_failed(log, "mdb_cursor_open", db, rc);
    }

    for ( ;; ) {
        k.mv_data = prefix->data;
        k.mv_size = prefix->len;

        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        if (rc != 0) {
            break;
        }

        if (k.mv_size < prefix->len
            || ngx_memcmp(k.mv_data, prefix->data, prefix->len) != 0)
        {
            break;
        }

        rc = mdb_cursor_del(cur, 0);
        if (rc != 0) {
            break;
        }
    }

    mdb_cursor_close(cur);

    if (rc != 0 && rc != MDB_NOTFOUND) {
        return ngx_pt_store_failed(log, "mdb_cursor_del", db, rc);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_pt_store_failed(ngx_log_t *log, const char *what, ngx_uint_t db, int rc)
{
    ngx_log_error(NGX_LOG_ALERT, log, 0,
                  "pullthrough: %s(%s) failed: %s%s", what,
                  ngx_pt_store.names[db], mdb_strerror(rc),
                  rc == MDB_MAP_FULL
                  ? " (raise map_size= of \"pullthrough_store\")" : "");

    return NGX_ERROR;
}
