
/*
 * ngx_pullthrough: the content-addressed files of the store. A verified
 * blob or manifest is one file, <store>/blobs/<algorithm>/<2 hex>/<hex>,
 * shared by every repository that has it; it only appears there by a
 * rename() from <store>/tmp (the same file system), so a partial file is
 * never visible under blobs/. Temp files are named <pid>.<n>.<kind>, and
 * their writer holds a lock on each: the files no process holds any more
 * (a worker killed mid-fill, an nginx that crashed) are removed when nginx
 * starts and when a worker starts.
 */


#include <ngx_pt.h>
#include <ngx_pt_blob.h>
#include <ngx_pt_shm.h>

#include <sys/file.h>


static ngx_str_t   ngx_pt_store_root;
static ngx_uint_t  ngx_pt_blob_next;


void
ngx_pt_blob_init(ngx_cycle_t *cycle, ngx_str_t *root)
{
    ngx_pt_store_root = *root;

    ngx_pt_blob_clean_temp(cycle, root);
}


/* the cache manager's: paths, and no temp files of its own */

void
ngx_pt_blob_set_root(ngx_str_t *root)
{
    ngx_pt_store_root = *root;
}


/*
 * Temp files are named <pid>.<n>.<kind>: those no process holds any more
 * (a worker killed mid-fill, an nginx that crashed) are removed when nginx
 * starts and when a worker starts.
 */

void
ngx_pt_blob_clean_temp(ngx_cycle_t *cycle, ngx_str_t *root)
{
    u_char      *name, *p;
    size_t       len;
    ngx_fd_t     fd;
    ngx_dir_t    dir;
    ngx_int_t    pid;
    ngx_str_t    path;
    ngx_uint_t   locked;

    path.len = root->len + sizeof("/tmp/") + NGX_MAX_PATH;
    path.data = ngx_pnalloc(cycle->pool, path.len);
    if (path.data == NULL) {
        return;
    }

    p = ngx_sprintf(path.data, "%V/tmp%Z", root);

    if (ngx_open_dir(&path, &dir) == NGX_ERROR) {
        return;
    }

    p[-1] = '/';

    while (ngx_read_dir(&dir) == NGX_OK) {
        name = ngx_de_name(&dir);
        len = ngx_de_namelen(&dir);

        if (name[0] == '.' || len > NGX_MAX_PATH) {
            continue;
        }

        p = ngx_strlchr(name, name + len, '.');
        if (p == NULL) {
            continue;
        }

        pid = ngx_atoi(name, p - name);
        if (pid == NGX_ERROR || pid == ngx_pid) {
            continue;
        }

        ngx_memcpy(path.data + root->len + sizeof("/tmp/") - 1, name, len);
        path.data[root->len + sizeof("/tmp/") - 1 + len] = '\0';

        /*
         * A file in use is locked by its writer; the lock goes with the
         * process, even one that is a zombie or whose pid was reused.
         */

        fd = ngx_open_file(path.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
        if (fd == NGX_INVALID_FILE) {
            continue;
        }

        locked = (flock(fd, LOCK_EX|LOCK_NB) == -1);
        ngx_close_file(fd);

        if (locked) {
            continue;
        }

        if (ngx_delete_file(path.data) == NGX_FILE_ERROR) {
            ngx_log_error(NGX_LOG_WARN, cycle->log, ngx_errno,
                          ngx_delete_file_n " \"%s\" failed", path.data);

        } else {
            ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                          "pullthrough: removed stale temp file \"%s\"",
                          path.data);
        }
    }

    ngx_close_dir(&dir);
}



/* "sha256:<64 hex>" or "sha512:<128 hex>", lowercase */

ngx_int_t
ngx_pt_digest_parse(ngx_str_t *s, ngx_pt_digest_t *d)
{
    size_t      hexlen;
    ngx_uint_t  i;

    if (s->len > 7 && ngx_strncmp(s->data, "sha256:", 7) == 0) {
        d->md = EVP_sha256();
        hexlen = 64;
        d->alg.len = 6;

    } else if (s->len > 7 && ngx_strncmp(s->data, "sha512:", 7) == 0) {
        d->md = EVP_sha512();
        hexlen = 128;
        d->alg.len = 6;

    } else {
        return NGX_DECLINED;
    }

    if (s->len != 7 + hexlen) {
        return NGX_DECLINED;
    }

    for (i = 7; i < s->len; i++) {
        if (!((s->data[i] >= '0' && s->data[i] <= '9')
              || (s->data[i] >= 'a' && s->data[i] <= 'f')))
        {
            return NGX_DECLINED;
        }
    }

    d->full = *s;
    d->alg.data = s->data;
    d->hex.data = s->data + 7;
    d->hex.len = hexlen;

    return NGX_OK;
}



/* the digest of bytes in memory, as "<alg>:<hex>" */

ngx_int_t
ngx_pt_digest_compute(ngx_pool_t *pool, const EVP_MD *md, u_char *data,
    size_t len, ngx_str_t *out)
{
    u_char        *p, buf[EVP_MAX_MD_SIZE];
    unsigned int   n;

    if (EVP_Digest(data, len, buf, &n, md, NULL) != 1) {
        return NGX_ERROR;
    }

    p = ngx_pnalloc(pool, 7 + 2 * n);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;
    p = ngx_cpymem(p, (md == EVP_sha512()) ? "sha512:" : "sha256:", 7);
    p = ngx_hex_dump(p, buf, n);
    out->len = p - out->data;

    return NGX_OK;
}



/* <store>/blobs/<alg>/<xx>/<hex>, NUL-terminated */

ngx_int_t
ngx_pt_blob_path(ngx_pool_t *pool, ngx_pt_digest_t *d, ngx_str_t *path)
{
    u_char  *p;

    path->len = ngx_pt_store_root.len + sizeof("/blobs/") - 1 + d->alg.len
                + 4 + d->hex.len;

    p = ngx_pnalloc(pool, path->len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    path->data = p;

    p = ngx_sprintf(p, "%V/blobs/%V/%*s/%V%Z", &ngx_pt_store_root, &d->alg,
                    (size_t) 2, d->hex.data, &d->hex);

    return NGX_OK;
}



/* <store>/tmp/<pid>.<seq>.<kind>, NUL-terminated */

ngx_int_t
ngx_pt_blob_temp(ngx_pool_t *pool, ngx_pid_t pid, ngx_uint_t seq,
    const char *kind, ngx_str_t *path)
{
    path->data = ngx_pnalloc(pool, ngx_pt_store_root.len + sizeof("/tmp/..")
                                   + 2 * NGX_INT_T_LEN + ngx_strlen(kind));
    if (path->data == NULL) {
        return NGX_ERROR;
    }

    path->len = ngx_sprintf(path->data, "%V/tmp/%P.%ui.%s%Z",
                            &ngx_pt_store_root, pid, seq, kind)
                - path->data - 1;

    return NGX_OK;
}


/* the number of this worker's next temp file */

ngx_uint_t
ngx_pt_blob_seq(void)
{
    return ++ngx_pt_blob_next;
}


/* the two directory levels of a blob path, made on first use */

void
ngx_pt_blob_mkdirs(u_char *path)
{
    u_char  *p, *slash;

    for (p = path + ngx_pt_store_root.len + sizeof("/blobs/") - 1;
         (slash = (u_char *) ngx_strchr(p, '/')) != NULL;
         p = slash + 1)
    {
        *slash = '\0';
        (void) ngx_create_dir(path, 0700);
        *slash = '/';
    }
}


/*
 * Writes a small verified object (a manifest) into the store, synced
 * before it is renamed into place as blobs are. It is done in place,
 * being a few KiB; large bodies go through fills.
 */

ngx_int_t
ngx_pt_blob_write_small(ngx_pool_t *pool, ngx_log_t *log, ngx_pt_digest_t *d,
    u_char *data, size_t len)
{
    ssize_t     n;
    ngx_fd_t    fd;
    ngx_err_t   err;
    ngx_str_t   path, temp;
    ngx_uint_t  level;

    if (ngx_pt_blob_path(pool, d, &path) != NGX_OK
        || ngx_pt_blob_temp(pool, ngx_pid, ngx_pt_blob_seq(), "small", &temp)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    fd = ngx_open_file(temp.data, NGX_FILE_WRONLY, NGX_FILE_TRUNCATE,
                       NGX_FILE_DEFAULT_ACCESS);
    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                      ngx_open_file_n " \"%s\" failed", temp.data);
        return NGX_ERROR;
    }

    (void) flock(fd, LOCK_EX|LOCK_NB);

    n = ngx_write_fd(fd, data, len);

    /* on the disk before its name: a crash never leaves a short one */

    if (n == (ssize_t) len && fdatasync(fd) == -1) {
        n = -1;
    }

    err = ngx_errno;

    ngx_close_file(fd);

    if (n != (ssize_t) len) {
        if (err == NGX_ENOSPC) {
            /* the cache manager evicts now */
            ngx_pt_shm_stat_add(NGX_PT_STAT_DISK_FULL, 1);
            ngx_pt_shm_stat_set(NGX_PT_STAT_EVICT_NOW, 1);
        }

        level = (err == NGX_ENOSPC) ? NGX_LOG_ALERT : NGX_LOG_CRIT;

        if (err == NGX_ENOSPC) {
            ngx_log_error(level, log, err, "pullthrough: the store \"%V\" "
                          "is full: writing \"%s\" failed, eviction "
                          "starts", &ngx_pt_store_root, temp.data);
        } else {
            ngx_log_error(level, log, err, "pullthrough: writing \"%s\" "
                          "failed", temp.data);
        }
        ngx_delete_file(temp.data);
        return NGX_ERROR;
    }

    ngx_pt_blob_mkdirs(path.data);

    if (ngx_rename_file(temp.data, path.data) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                      ngx_rename_file_n " \"%s\" to \"%s\" failed",
                      temp.data, path.data);
        ngx_delete_file(temp.data);
        return NGX_ERROR;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                   "pullthrough blob: %V stored, %uz bytes", &d->full, len);

    return NGX_OK;
}
