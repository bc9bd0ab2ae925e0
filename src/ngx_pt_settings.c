
/*
 * ngx_pullthrough: one snapshot of what an upstream exchange takes from
 * its remote. It is built from the remote's record when a request needs
 * the upstream, so that an edit of the remote applies to the next
 * exchange, and every part of an exchange (the transports, token
 * requests, the limits, retries and timeouts) reads it there. A fill,
 * which outlives the request that started it, copies it whole.
 *
 * A remote's url is a registry's scheme and host, and optionally a path:
 * a registry serves its API at /v2/ of its host, so the path cannot be
 * where the API is; it is a prefix of every upstream repository name
 * (http://regional:5000/hub pulls "library/x" as "hub/library/x"), the
 * way to point at one distribution of another cache, or at a namespace.
 */


#include <ngx_pt.h>
#include <ngx_pt_settings.h>


#define NGX_PT_DEFAULT_RETRIES        3       /* Pulp's */
#define NGX_PT_DEFAULT_TOKEN_TIMEOUT  30000   /* ms, without total_timeout */
#define NGX_PT_MAX_TIMEOUT            86400   /* s: more is a typo */

#define NGX_PT_DOCKER_HUB_URL         "https://registry-1.docker.io"


static ngx_int_t ngx_pt_settings_base_url(ngx_pool_t *pool,
    ngx_pt_remote_t *remote, ngx_str_t *url);
static ngx_int_t ngx_pt_settings_name(ngx_pool_t *pool,
    ngx_pt_remote_t *remote, ngx_str_t *name, ngx_str_t *out);
static ngx_int_t ngx_pt_settings_basic(ngx_pool_t *pool,
    ngx_pt_remote_t *remote, ngx_str_t *out);
static ngx_msec_t ngx_pt_settings_seconds(double seconds);
static ngx_int_t ngx_pt_settings_dup(ngx_pool_t *pool, ngx_str_t *dst,
    ngx_str_t *src);
static ngx_int_t ngx_pt_settings_strings(ngx_pool_t *pool,
    ngx_pt_settings_t *dst, ngx_pt_settings_t *src);
static ngx_array_t *ngx_pt_settings_headers(ngx_pool_t *pool,
    ngx_array_t *src);


ngx_pt_settings_t *
ngx_pt_settings_create(ngx_http_request_t *r, ngx_pt_remote_t *remote,
    ngx_str_t *name)
{
    ngx_msec_t                        t;
    ngx_pt_settings_t                *s, src;
    ngx_http_pullthrough_loc_conf_t  *plcf;

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_pullthrough_module);

    s = ngx_pcalloc(r->pool, sizeof(ngx_pt_settings_t));
    if (s == NULL) {
        return NULL;
    }

    ngx_memzero(&src, sizeof(ngx_pt_settings_t));

    src.remote = remote->meta.id;
    src.remote_name = remote->name;

    if (ngx_pt_settings_name(r->pool, remote, name, &src.name) != NGX_OK) {
        return NULL;
    }

    if (remote->username.data) {
        src.username = remote->username;
        src.password = remote->password;
    }

    src.link.ca_cert = remote->ca_cert;
    src.link.client_cert = remote->client_cert;
    src.link.client_key = remote->client_key;
    src.link.proxy_url = remote->proxy_url;
    src.link.proxy_username = remote->proxy_username;
    src.link.proxy_password = remote->proxy_password;

    /* copies, NUL-terminated for libcurl: the record is the request's */

    if (ngx_pt_settings_strings(r->pool, s, &src) != NGX_OK
        || ngx_pt_settings_base_url(r->pool, remote, &s->base_url) != NGX_OK
        || ngx_pt_settings_basic(r->pool, remote, &s->basic) != NGX_OK)
    {
        return NULL;
    }

    s->link.tls_validation = remote->tls_validation;
    s->insecure = !remote->tls_validation;

    /* nginx's proxy module cannot use a forward proxy, nor a CA or a
     * client certificate of the remote's own: libcurl can */
    s->curl = s->link.proxy_url.len || s->link.client_cert.len
              || (s->link.ca_cert.len && s->link.tls_validation);

    s->max_retries = (remote->max_retries == NGX_PT_NULL_INT)
                     ? NGX_PT_DEFAULT_RETRIES
                     : (ngx_uint_t) remote->max_retries;
    s->rate_limit = remote->rate_limit > 0
                    ? (ngx_uint_t) remote->rate_limit : 0;
    s->concurrency = remote->download_concurrency > 0
                     ? (ngx_uint_t) remote->download_concurrency : 0;

    s->total_timeout = ngx_pt_settings_seconds(remote->total_timeout);
    s->read_timeout = ngx_pt_settings_seconds(remote->sock_read_timeout);

    /* the stricter of the two connect timeouts */
    s->connect_timeout = ngx_pt_settings_seconds(remote->connect_timeout);
    t = ngx_pt_settings_seconds(remote->sock_connect_timeout);

    if (t && (s->connect_timeout == 0 || t < s->connect_timeout)) {
        s->connect_timeout = t;
    }

    /* a token request is bounded by total_timeout too */
    s->token_timeout = s->total_timeout ? s->total_timeout
                                        : NGX_PT_DEFAULT_TOKEN_TIMEOUT;

    s->headers = remote->headers;
    s->thread_pool = plcf->thread_pool;

    return s;
}


/* the same settings in another pool, for what outlives the request */

ngx_pt_settings_t *
ngx_pt_settings_copy(ngx_pool_t *pool, ngx_pt_settings_t *s)
{
    ngx_pt_settings_t  *copy;

    copy = ngx_palloc(pool, sizeof(ngx_pt_settings_t));
    if (copy == NULL) {
        return NULL;
    }

    *copy = *s;

    if (ngx_pt_settings_strings(pool, copy, s) != NGX_OK
        || ngx_pt_settings_dup(pool, &copy->base_url, &s->base_url) != NGX_OK
        || ngx_pt_settings_dup(pool, &copy->basic, &s->basic) != NGX_OK)
    {
        return NULL;
    }

    if (s->headers) {
        copy->headers = ngx_pt_settings_headers(pool, s->headers);
        if (copy->headers == NULL) {
            return NULL;
        }
    }

    return copy;
}


/* the host[:port] of a remote's url, and where its port begins (or ends) */

static ngx_int_t
ngx_pt_settings_authority(ngx_pt_remote_t *remote, ngx_str_t *authority,
    size_t *host_len)
{
    u_char  *p, *host, *last;

    last = remote->url.data + remote->url.len;

    p = ngx_pt_strfind(remote->url.data, last, (u_char *) "://", 3, 0);
    if (p == NULL) {
        return NGX_DECLINED;
    }

    host = p + 3;

    for (p = host; p < last && *p != '/' && *p != '?' && *p != '#'; p++) {
        /* void */
    }

    authority->data = host;
    authority->len = p - host;

    p = ngx_strlchr(host, p, ':');
    *host_len = (p ? p : host + authority->len) - host;

    return NGX_OK;
}


static ngx_uint_t
ngx_pt_settings_docker_hub_host(u_char *host, size_t len)
{
    ngx_uint_t  i;

    static ngx_str_t  hosts[] = {
        ngx_string("registry-1.docker.io"),
        ngx_string("docker.io"),
        ngx_string("index.docker.io"),
        ngx_string("registry.hub.docker.com"),
    };

    for (i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
        if (len == hosts[i].len
            && ngx_strncasecmp(host, hosts[i].data, hosts[i].len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* whether a remote's url names Docker Hub (one of its hosts) */

ngx_uint_t
ngx_pt_settings_docker_hub(ngx_pt_remote_t *remote)
{
    size_t     host_len;
    ngx_str_t  authority;

    if (ngx_pt_settings_authority(remote, &authority, &host_len) != NGX_OK) {
        return 0;
    }

    return ngx_pt_settings_docker_hub_host(authority.data, host_len);
}


/*
 * Whether a remote's upstream is the registry a client names by its host
 * (containerd's "ns"): host[:port] as in the url, the host alone when the
 * url has no port, any of Docker Hub's hosts for Docker Hub.
 */

ngx_uint_t
ngx_pt_settings_serves(ngx_pt_remote_t *remote, ngx_str_t *registry)
{
    size_t     host_len;
    ngx_str_t  authority;

    if (ngx_pt_settings_authority(remote, &authority, &host_len) != NGX_OK) {
        return 0;
    }

    if (ngx_pt_settings_docker_hub_host(authority.data, host_len)) {
        return ngx_pt_settings_docker_hub_host(registry->data,
                                               registry->len);
    }

    return registry->len == authority.len
           && ngx_strncasecmp(registry->data, authority.data,
                              authority.len) == 0;
}


/*
 * The path of a remote's url, the prefix of its upstream names: without
 * its slashes, empty when the url has none. Into the url itself.
 */

void
ngx_pt_settings_prefix(ngx_pt_remote_t *remote, ngx_str_t *prefix)
{
    u_char     *p, *last;
    size_t      host_len;
    ngx_str_t   authority;

    ngx_str_null(prefix);

    if (ngx_pt_settings_authority(remote, &authority, &host_len) != NGX_OK) {
        return;
    }

    last = remote->url.data + remote->url.len;
    p = authority.data + authority.len;

    while (p < last && *p == '/') {
        p++;
    }

    prefix->data = p;

    while (p < last && *p != '?' && *p != '#') {
        p++;
    }

    while (p > prefix->data && p[-1] == '/') {
        p--;
    }

    prefix->len = p - prefix->data;
}


/* the upstream name of a local name: the remote's prefix, then the name */

static ngx_int_t
ngx_pt_settings_name(ngx_pool_t *pool, ngx_pt_remote_t *remote,
    ngx_str_t *name, ngx_str_t *out)
{
    ngx_str_t  prefix;

    ngx_pt_settings_prefix(remote, &prefix);

    if (prefix.len == 0) {
        *out = *name;
        return NGX_OK;
    }

    out->len = prefix.len + 1 + name->len;
    out->data = ngx_pnalloc(pool, out->len);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(out->data, "%V/%V", &prefix, name);

    return NGX_OK;
}


/* scheme://host[:port]: Docker Hub's registry whatever host of it the
 * remote names */

static ngx_int_t
ngx_pt_settings_base_url(ngx_pool_t *pool, ngx_pt_remote_t *remote,
    ngx_str_t *url)
{
    size_t     host_len;
    ngx_str_t  base, authority;

    if (ngx_pt_settings_docker_hub(remote)) {
        ngx_str_set(&base, NGX_PT_DOCKER_HUB_URL);

    } else if (ngx_pt_settings_authority(remote, &authority, &host_len)
               == NGX_OK)
    {
        base.data = remote->url.data;
        base.len = authority.data + authority.len - remote->url.data;

    } else {
        base = remote->url;
    }

    return ngx_pt_settings_dup(pool, url, &base);
}


/* "Basic <base64 of user:password>", empty when the remote has no user */

static ngx_int_t
ngx_pt_settings_basic(ngx_pool_t *pool, ngx_pt_remote_t *remote,
    ngx_str_t *out)
{
    ngx_str_t  plain, enc;

    ngx_str_null(out);

    if (remote->username.data == NULL) {
        return NGX_OK;
    }

    plain.len = remote->username.len + 1 + remote->password.len;
    plain.data = ngx_pnalloc(pool, plain.len);

    out->data = ngx_pnalloc(pool, sizeof("Basic ") - 1
                                  + ngx_base64_encoded_length(plain.len));

    if (plain.data == NULL || out->data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(plain.data, "%V:%V", &remote->username, &remote->password);

    enc.data = ngx_cpymem(out->data, "Basic ", sizeof("Basic ") - 1);
    ngx_encode_base64(&enc, &plain);

    out->len = sizeof("Basic ") - 1 + enc.len;

    return NGX_OK;
}


/* a remote's timeout in milliseconds, 0 when not set */

static ngx_msec_t
ngx_pt_settings_seconds(double seconds)
{
    if (ngx_pt_null_num(seconds) || seconds <= 0
        || seconds > NGX_PT_MAX_TIMEOUT)
    {
        return 0;
    }

    return (ngx_msec_t) (seconds * 1000);
}


/* the C strings libcurl takes: credentials and the link */

static ngx_int_t
ngx_pt_settings_strings(ngx_pool_t *pool, ngx_pt_settings_t *dst,
    ngx_pt_settings_t *src)
{
    ngx_uint_t     i;
    ngx_str_t     *d, *s;

    static size_t  offsets[] = {
        offsetof(ngx_pt_settings_t, remote),
        offsetof(ngx_pt_settings_t, remote_name),
        offsetof(ngx_pt_settings_t, name),
        offsetof(ngx_pt_settings_t, username),
        offsetof(ngx_pt_settings_t, password),
        offsetof(ngx_pt_settings_t, link.ca_cert),
        offsetof(ngx_pt_settings_t, link.client_cert),
        offsetof(ngx_pt_settings_t, link.client_key),
        offsetof(ngx_pt_settings_t, link.proxy_url),
        offsetof(ngx_pt_settings_t, link.proxy_username),
        offsetof(ngx_pt_settings_t, link.proxy_password)
    };

    for (i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
        d = (ngx_str_t *) ((u_char *) dst + offsets[i]);
        s = (ngx_str_t *) ((u_char *) src + offsets[i]);

        if (ngx_pt_settings_dup(pool, d, s) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    /* a user without a password sends an empty one */

    if (dst->username.len && dst->password.data == NULL) {
        ngx_str_set(&dst->password, "");
    }

    return NGX_OK;
}


static ngx_int_t
ngx_pt_settings_dup(ngx_pool_t *pool, ngx_str_t *dst, ngx_str_t *src)
{
    u_char  *p;

    if (src->data == NULL || src->len == 0) {
        ngx_str_null(dst);
        return NGX_OK;
    }

    p = ngx_pnalloc(pool, src->len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, src->data, src->len);
    p[src->len] = '\0';

    dst->data = p;
    dst->len = src->len;

    return NGX_OK;
}


static ngx_array_t *
ngx_pt_settings_headers(ngx_pool_t *pool, ngx_array_t *src)
{
    ngx_uint_t     i;
    ngx_array_t   *a;
    ngx_keyval_t  *kv, *from;

    a = ngx_array_create(pool, src->nelts ? src->nelts : 1,
                         sizeof(ngx_keyval_t));
    if (a == NULL) {
        return NULL;
    }

    from = src->elts;

    for (i = 0; i < src->nelts; i++) {
        kv = ngx_array_push(a);
        if (kv == NULL
            || ngx_pt_settings_dup(pool, &kv->key, &from[i].key) != NGX_OK
            || ngx_pt_settings_dup(pool, &kv->value, &from[i].value)
               != NGX_OK)
        {
            return NULL;
        }
    }

    return a;
}
