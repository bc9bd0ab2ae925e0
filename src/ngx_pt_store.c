
/*
 * ngx_pullthrough: the metadata store, an LMDB environment under
 * <store>/meta with one named database per record type and index.
 *
 * The master prepares the store (directories, ownership, schema check) and
 * closes it again; every worker opens its own environment after fork().
 * Each change is a single write transaction, which LMDB serialises across
 * processes, so concurrent workers never lose an update.
 */


#include <ngx_pt.h>
#include <ngx_pt_blob.h>


typedef struct {
    MDB_env                    *env;
    MDB_dbi                     dbi[NGX_PT_DB_COUNT];
    MDB_txn                    *rtxn;        /* a reusable read transaction */
    ngx_uint_t                  rtxn_busy;
} ngx_pt_store_t;


static ngx_int_t ngx_pt_store_env_open(ngx_log_t *log,
    ngx_http_pullthrough_main_conf_t *pmcf, u_char *dir, MDB_env **envp);
static ngx_int_t ngx_pt_store_dbis_open(ngx_log_t *log, MDB_env *env,
    MDB_dbi *dbi, MDB_txn **txnp);
static ngx_int_t ngx_pt_store_schema(ngx_log_t *log, MDB_txn *txn,
    MDB_dbi meta, u_char *dir);
static ngx_int_t ngx_pt_store_mkdir(ngx_cycle_t *cycle, u_char *dir);
static void ngx_pt_store_owner(ngx_cycle_t *cycle);
static void ngx_pt_store_chown(ngx_cycle_t *cycle, u_char *path);


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
    "tasks"
};


static ngx_pt_store_t  ngx_pt_store;

/* the user and group workers run as, when started as root */
static ngx_uid_t  ngx_pt_store_uid = (ngx_uid_t) -1;
static ngx_gid_t  ngx_pt_store_gid = (ngx_gid_t) -1;


ngx_int_t
ngx_pt_store_prepare(ngx_cycle_t *cycle,
    ngx_http_pullthrough_main_conf_t *pmcf)
{
    u_char     *dir, *p;
    MDB_env    *env;
    MDB_txn    *txn;
    MDB_dbi     dbi[NGX_PT_DB_COUNT];
    ngx_int_t   rc;

    /* room for "<path>/meta/lock.mdb" */
    dir = ngx_pnalloc(cycle->pool, pmcf->path.len + sizeof("/meta/lock.mdb"));
    if (dir == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(dir, pmcf->path.data, pmcf->path.len);
    dir[pmcf->path.len] = '\0';

    if (ngx_process == NGX_PROCESS_SIGNALLER) {
        /* "nginx -s": it reads the configuration, the store is not its */
        return NGX_OK;
    }

    ngx_pt_store_owner(cycle);

    if (ngx_pt_store_mkdir(cycle, dir) != NGX_OK) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(dir + pmcf->path.len, "/blobs", sizeof("/blobs"));
    if (ngx_pt_store_mkdir(cycle, dir) != NGX_OK) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(dir + pmcf->path.len, "/tmp", sizeof("/tmp"));
    if (ngx_pt_store_mkdir(cycle, dir) != NGX_OK) {
        return NGX_ERROR;
    }

    /*
     * Leftovers of processes that are gone: only those, as another nginx
     * (a binary upgrade, a second start by mistake) may be filling now.
     */

    if (ngx_is_init_cycle(cycle->old_cycle) && !ngx_test_config) {
        ngx_pt_blob_clean_temp(cycle, &pmcf->path);
    }

    p = ngx_cpymem(dir + pmcf->path.len, "/meta", sizeof("/meta"));
    if (ngx_pt_store_mkdir(cycle, dir) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_pt_store_env_open(cycle->log, pmcf, dir, &env) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_pt_store_dbis_open(cycle->log, env, dbi, &txn);

    if (rc == NGX_OK) {
        rc = ngx_pt_store_schema(cycle->log, txn, dbi[NGX_PT_DB_META], dir);

        if (rc == NGX_OK) {
            rc = ngx_pt_txn_commit(cycle->log, txn);

        } else {
            mdb_txn_abort(txn);
        }
    }

    mdb_env_close(env);

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    /* the environment's files were made by the master: hand them over */

    p = ngx_cpymem(dir + pmcf->path.len, "/meta/data.mdb",
                   sizeof("/meta/data.mdb"));
    ngx_pt_store_chown(cycle, dir);

    p = ngx_cpymem(dir + pmcf->path.len, "/meta/lock.mdb",
                   sizeof("/meta/lock.mdb"));
    ngx_pt_store_chown(cycle, dir);

    (void) p;

    return NGX_OK;
}


ngx_int_t
ngx_pt_store_open(ngx_cycle_t *cycle, ngx_http_pullthrough_main_conf_t *pmcf)
{
    int       dead;
    u_char   *dir;
    MDB_txn  *txn;

    dir = ngx_pnalloc(cycle->pool, pmcf->path.len + sizeof("/meta"));
    if (dir == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(ngx_cpymem(dir, pmcf->path.data, pmcf->path.len),
               "/meta", sizeof("/meta"));

    if (ngx_pt_store_env_open(cycle->log, pmcf, dir, &ngx_pt_store.env)
        != NGX_OK)
    {
        ngx_pt_store.env = NULL;
        return NGX_ERROR;
    }

    /* reader slots of a worker killed while reading are reclaimed here */
    (void) mdb_reader_check(ngx_pt_store.env, &dead);

    if (ngx_pt_store_dbis_open(cycle->log, ngx_pt_store.env,
                               ngx_pt_store.dbi, &txn)
        != NGX_OK
        || ngx_pt_txn_commit(cycle->log, txn) != NGX_OK)
    {
        mdb_env_close(ngx_pt_store.env);
        ngx_pt_store.env = NULL;
        return NGX_ERROR;
    }

    return NGX_OK;
}


void
ngx_pt_store_close(void)
{
    if (ngx_pt_store.rtxn) {
        mdb_txn_abort(ngx_pt_store.rtxn);
        ngx_pt_store.rtxn = NULL;
    }

    if (ngx_pt_store.env) {
        mdb_env_close(ngx_pt_store.env);
        ngx_pt_store.env = NULL;
    }
}


MDB_dbi
ngx_pt_store_dbi(ngx_uint_t db)
{
    return ngx_pt_store.dbi[db];
}


ngx_int_t
ngx_pt_store_ready(void)
{
    return ngx_pt_store.env != NULL;
}


static ngx_int_t
ngx_pt_store_env_open(ngx_log_t *log, ngx_http_pullthrough_main_conf_t *pmcf,
    u_char *dir, MDB_env **envp)
{
    int       rc;
    MDB_env  *env;

    rc = mdb_env_create(&env);
    if (rc != 0) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "pullthrough: mdb_env_create() failed: %s",
                      mdb_strerror(rc));
        return NGX_ERROR;
    }

    rc = mdb_env_set_maxdbs(env, 32);

    if (rc == 0) {
        rc = mdb_env_set_mapsize(env, pmcf->map_size);
    }

    if (rc == 0) {
        /* MDB_NOTLS: read transactions may move to thread pools */
        rc = mdb_env_open(env, (const char *) dir, MDB_NOTLS, 0600);
    }

    if (rc != 0) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "pullthrough: cannot open the metadata store \"%s\": "
                      "%s", dir, mdb_strerror(rc));
        mdb_env_close(env);
        return NGX_ERROR;
    }

    *envp = env;

    return NGX_OK;
}


/* opens (creating as needed) every database; the transaction stays open */

static ngx_int_t
ngx_pt_store_dbis_open(ngx_log_t *log, MDB_env *env, MDB_dbi *dbi,
    MDB_txn **txnp)
{
    int         rc;
    MDB_txn    *txn;
    ngx_uint_t  i;

    rc = mdb_txn_begin(env, NULL, 0, &txn);
    if (rc != 0) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "pullthrough: mdb_txn_begin() failed: %s",
                      mdb_strerror(rc));
        return NGX_ERROR;
    }

    for (i = 0; i < NGX_PT_DB_COUNT; i++) {
        rc = mdb_dbi_open(txn, ngx_pt_db_names[i], MDB_CREATE, &dbi[i]);
        if (rc != 0) {
            ngx_log_error(NGX_LOG_EMERG, log, 0,
                          "pullthrough: cannot open database \"%s\": %s",
                          ngx_pt_db_names[i], mdb_strerror(rc));
            mdb_txn_abort(txn);
            return NGX_ERROR;
        }
    }

    *txnp = txn;

    return NGX_OK;
}


static ngx_int_t
ngx_pt_store_schema(ngx_log_t *log, MDB_txn *txn, MDB_dbi meta, u_char *dir)
{
    int        rc;
    u_char     buf[NGX_INT_T_LEN];
    MDB_val    key, val;
    ngx_int_t  version;

    key.mv_data = "schema_version";
    key.mv_size = sizeof("schema_version") - 1;

    rc = mdb_get(txn, meta, &key, &val);

    if (rc == MDB_NOTFOUND) {
        val.mv_data = buf;
        val.mv_size = ngx_sprintf(buf, "%d", NGX_PT_SCHEMA_VERSION) - buf;

        rc = mdb_put(txn, meta, &key, &val, 0);
        if (rc != 0) {
            ngx_log_error(NGX_LOG_EMERG, log, 0,
                          "pullthrough: cannot write the schema version of "
                          "\"%s\": %s", dir, mdb_strerror(rc));
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    if (rc != 0) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "pullthrough: cannot read the schema version of "
                      "\"%s\": %s", dir, mdb_strerror(rc));
        return NGX_ERROR;
    }

    version = ngx_atoi(val.mv_data, val.mv_size);

    if (version == NGX_ERROR || version > NGX_PT_SCHEMA_VERSION) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "pullthrough: the store \"%s\" has schema version "
                      "\"%*s\", this module knows versions up to %d: "
                      "it was written by a newer ngx_pullthrough",
                      dir, val.mv_size, val.mv_data, NGX_PT_SCHEMA_VERSION);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_pt_store_mkdir(ngx_cycle_t *cycle, u_char *dir)
{
    ngx_file_info_t  fi;

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


ngx_int_t
ngx_pt_txn_commit(ngx_log_t *log, MDB_txn *txn)
{
    int  rc;

    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "pullthrough: mdb_txn_commit() failed: %s",
                      mdb_strerror(rc));
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
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "pullthrough: mdb_get(%s) failed: %s",
                      ngx_pt_db_names[db], mdb_strerror(rc));
        return NGX_ERROR;
    }

    val->data = v.mv_data;
    val->len = v.mv_size;

    return NGX_OK;
}


ngx_int_t
ngx_pt_db_put(ngx_log_t *log, MDB_txn *txn, ngx_uint_t db, ngx_str_t *key,
    ngx_str_t *val)
{
    int      rc;
    MDB_val  k, v;

    k.mv_data = key->data;
    k.mv_size = key->len;
    v.mv_data = val->data;
    v.mv_size = val->len;

    rc = mdb_put(txn, ngx_pt_store.dbi[db], &k, &v, 0);

    if (rc != 0) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "pullthrough: mdb_put(%s) failed: %s%s",
                      ngx_pt_db_names[db], mdb_strerror(rc),
                      rc == MDB_MAP_FULL
                      ? " (raise map_size= of \"pullthrough_store\")" : "");
        return NGX_ERROR;
    }

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
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "pullthrough: mdb_del(%s) failed: %s",
                      ngx_pt_db_names[db], mdb_strerror(rc));
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_pt_db_each(ngx_log_t *log, MDB_txn *txn, ngx_uint_t db,
    ngx_pt_db_iter_pt handler, void *data)
{
    return ngx_pt_db_each_prefix(log, txn, db, NULL, handler, data);
}


/* the same, for the keys that begin with prefix (NULL: all of them) */

ngx_int_t
ngx_pt_db_each_prefix(ngx_log_t *log, MDB_txn *txn, ngx_uint_t db,
    ngx_str_t *prefix, ngx_pt_db_iter_pt handler, void *data)
{
    int          rc;
    MDB_val      k, v;
    ngx_int_t    hrc;
    ngx_str_t    key, val;
    MDB_cursor  *cur;

    rc = mdb_cursor_open(txn, ngx_pt_store.dbi[db], &cur);
    if (rc != 0) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "pullthrough: mdb_cursor_open(%s) failed: %s",
                      ngx_pt_db_names[db], mdb_strerror(rc));
        return NGX_ERROR;
    }

    hrc = NGX_OK;

    if (prefix) {
        k.mv_data = prefix->data;
        k.mv_size = prefix->len;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);

    } else {
        rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    }

    for ( /* void */ ; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {

        if (prefix && (k.mv_size < prefix->len
                       || ngx_memcmp(k.mv_data, prefix->data, prefix->len)
                          != 0))
        {
            break;
        }

        key.data = k.mv_data;
        key.len = k.mv_size;
        val.data = v.mv_data;
        val.len = v.mv_size;

        hrc = handler(data, &key, &val);
        if (hrc != NGX_OK) {
            break;
        }
    }

    mdb_cursor_close(cur);

    if (rc != 0 && rc != MDB_NOTFOUND) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "pullthrough: mdb_cursor_get(%s) failed: %s",
                      ngx_pt_db_names[db], mdb_strerror(rc));
        return NGX_ERROR;
    }

    return hrc == NGX_DONE ? NGX_OK : hrc;
}
