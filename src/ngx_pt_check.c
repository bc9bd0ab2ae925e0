
/*
 * ngx_pullthrough: the checks of field values the tables name: URLs (a
 * remote's, whose path is a prefix of upstream names, and its proxy's),
 * PEM certificates and keys, choices, base paths on the OCI name grammar,
 * ids; and the cross-field check of a remote (a client key that matches
 * its certificate).
 */


#include <ngx_pt.h>
#include <ngx_pt_record.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>


static ngx_int_t ngx_pt_url_valid(ngx_str_t *url, ngx_uint_t proxy,
    ngx_str_t *err);
static ngx_int_t ngx_pt_url_path_valid(u_char *p, u_char *last,
    ngx_uint_t proxy, ngx_str_t *err);
static EVP_PKEY *ngx_pt_read_key(ngx_str_t *pem);
static int ngx_pt_no_passphrase(char *buf, int size, int rwflag, void *u);


ngx_int_t
ngx_pt_check_url(ngx_pool_t *pool, void *value, ngx_str_t *err)
{
    return ngx_pt_url_valid(value, 0, err);
}


ngx_int_t
ngx_pt_check_proxy_url(ngx_pool_t *pool, void *value, ngx_str_t *err)
{
    return ngx_pt_url_valid(value, 1, err);
}


static ngx_int_t
ngx_pt_url_valid(ngx_str_t *url, ngx_uint_t proxy, ngx_str_t *err)
{
    u_char  *p, *host, *last, *port;

    p = url->data;
    last = p + url->len;

    for (host = p; host < last; host++) {
        if (*host <= 0x20 || *host == 0x7f) {
            ngx_str_set(err, "Enter a valid URL: it contains spaces or "
                        "control characters.");
            return NGX_DECLINED;
        }
    }

    if (url->len > 7 && ngx_strncasecmp(p, (u_char *) "http://", 7) == 0) {
        host = p + 7;

    } else if (url->len > 8
               && ngx_strncasecmp(p, (u_char *) "https://", 8) == 0)
    {
        host = p + 8;

    } else {
        ngx_str_set(err, "Enter a valid URL: the scheme must be http:// or "
                    "https://.");
        return NGX_DECLINED;
    }

    for (p = host; p < last && *p != '/' && *p != '?' && *p != '#'; p++) {
        if (*p == '@') {
            if (proxy) {
                ngx_str_set(err, "The proxy URL must not contain "
                            "credentials: set proxy_username and "
                            "proxy_password instead.");
            } else {
                ngx_str_set(err, "The URL must not contain credentials: "
                            "set username and password instead.");
            }

            return NGX_DECLINED;
        }
    }

    if (ngx_pt_url_path_valid(p, last, proxy, err) != NGX_OK) {
        return NGX_DECLINED;
    }

    last = p;

    if (host == last) {
        ngx_str_set(err, "Enter a valid URL: the host is missing.");
        return NGX_DECLINED;
    }

    /* an optional port after the host (or after "]" for IPv6) */

    if (*host == '[') {
        port = ngx_strlchr(host, last, ']');
        if (port == NULL || port == host + 1) {
            goto invalid;
        }

        port++;

        if (port < last && *port != ':') {
            goto invalid;
        }

    } else {
        port = ngx_strlchr(host, last, ':');

        if (port == host) {
            goto invalid;
        }

        for (p = host; p < (port ? port : last); p++) {
            if (!(isalnum(*p) || *p == '-' || *p == '.' || *p == '_')) {
                goto invalid;
            }
        }
    }

    if (port && port < last) {
        port++;

        if (port == last || ngx_atoi(port, last - port) == NGX_ERROR
            || ngx_atoi(port, last - port) > 65535)
        {
            goto invalid;
        }
    }

    return NGX_OK;

invalid:

    ngx_str_set(err, "Enter a valid URL: the host or port is invalid.");
    return NGX_DECLINED;
}


/*
 * What follows a URL's host: nothing for a proxy; for a remote a path
 * that prefixes its upstream repository names, so components of the OCI
 * name grammar, and neither a query nor a fragment. "/v2" would be that
 * prefix too: refused, as the likely mistake of a url naming the API.
 */

static ngx_int_t
ngx_pt_url_path_valid(u_char *p, u_char *last, ngx_uint_t proxy,
    ngx_str_t *err)
{
    u_char  *c;

    if (p < last && *p == '/') {
        p++;
    }

    if (p < last && last[-1] == '/') {
        last--;
    }

    if (p == last) {
        return NGX_OK;
    }

    if (proxy) {
        ngx_str_set(err, "Enter a valid URL: a proxy URL has no path.");
        return NGX_DECLINED;
    }

    if (last - p >= 2 && p[0] == 'v' && p[1] == '2'
        && (last - p == 2 || p[2] == '/'))
    {
        ngx_str_set(err, "Enter the registry's URL without /v2: a path on "
                    "the URL is a prefix of the upstream repository "
                    "names.");
        return NGX_DECLINED;
    }

    for (c = p; c <= last; c = p + 1) {
        p = ngx_strlchr(c, last, '/');
        if (p == NULL) {
            p = last;
        }

        if (!ngx_pt_oci_component_valid(c, p - c)) {
            ngx_str_set(err, "Enter a valid URL: its path is a prefix of "
                        "the upstream repository names, lowercase letters "
                        "and digits separated by '.', '_', '__' or '-' "
                        "between single '/', without a query or a "
                        "fragment.");
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_pt_check_cert(ngx_pool_t *pool, void *value, ngx_str_t *err)
{
    BIO         *bio;
    X509        *x;
    ngx_str_t   *pem = value;
    ngx_uint_t   n;

    bio = BIO_new_mem_buf(pem->data, pem->len);
    if (bio == NULL) {
        return NGX_ERROR;
    }

    for (n = 0; ; n++) {
        x = PEM_read_bio_X509(bio, NULL, ngx_pt_no_passphrase, NULL);
        if (x == NULL) {
            break;
        }

        X509_free(x);
    }

    BIO_free(bio);
    ERR_clear_error();

    if (n == 0) {
        ngx_str_set(err, "Invalid certificate: no PEM-encoded X.509 "
                    "certificate found.");
        return NGX_DECLINED;
    }

    return NGX_OK;
}


ngx_int_t
ngx_pt_check_key(ngx_pool_t *pool, void *value, ngx_str_t *err)
{
    EVP_PKEY  *key;

    key = ngx_pt_read_key(value);

    if (key == NULL) {
        ngx_str_set(err, "Invalid private key: no unencrypted PEM-encoded "
                    "private key found.");
        return NGX_DECLINED;
    }

    EVP_PKEY_free(key);

    return NGX_OK;
}


static EVP_PKEY *
ngx_pt_read_key(ngx_str_t *pem)
{
    BIO       *bio;
    EVP_PKEY  *key;

    bio = BIO_new_mem_buf(pem->data, pem->len);
    if (bio == NULL) {
        return NULL;
    }

    key = PEM_read_bio_PrivateKey(bio, NULL, ngx_pt_no_passphrase, NULL);

    BIO_free(bio);
    ERR_clear_error();

    return key;
}


/* never prompt on a terminal for a passphrase: encrypted keys are refused */

static int
ngx_pt_no_passphrase(char *buf, int size, int rwflag, void *u)
{
    return 0;
}


ngx_int_t
ngx_pt_check_policy(ngx_pool_t *pool, void *value, ngx_str_t *err)
{
    ngx_str_t  *s = value;

    if (s->len == sizeof("on_demand") - 1
        && ngx_strncmp(s->data, "on_demand", s->len) == 0)
    {
        return NGX_OK;
    }

    err->data = ngx_pnalloc(pool, s->len + 64);
    if (err->data == NULL) {
        return NGX_ERROR;
    }

    err->len = ngx_sprintf(err->data, "\"%V\" is not a valid choice.", s)
               - err->data;

    return NGX_DECLINED;
}


ngx_int_t
ngx_pt_check_base_path(ngx_pool_t *pool, void *value, ngx_str_t *err)
{
    return ngx_pt_base_path_valid(value, err) ? NGX_OK : NGX_DECLINED;
}


ngx_int_t
ngx_pt_base_path_valid(ngx_str_t *path, ngx_str_t *err)
{
    u_char  *p, *c, *last;

    if (path->len > NGX_PT_NAME_MAX) {
        ngx_str_set(err, "Ensure this field has no more than 255 "
                    "characters.");
        return 0;
    }

    if (path->data[0] == '/' || path->data[path->len - 1] == '/') {
        ngx_str_set(err, "The base path must not start or end with '/'.");
        return 0;
    }

    last = path->data + path->len;

    for (c = path->data; c < last; c = p + 1) {
        p = ngx_strlchr(c, last, '/');
        if (p == NULL) {
            p = last;
        }

        if (!ngx_pt_oci_component_valid(c, p - c)) {
            ngx_str_set(err, "Each path component must be lowercase letters "
                        "and digits, separated by '.', '_', '__' or '-' "
                        "(the OCI repository name grammar).");
            return 0;
        }
    }

    return 1;
}


ngx_int_t
ngx_pt_check_content_guard(ngx_pool_t *pool, void *value, ngx_str_t *err)
{
    ngx_str_t  *s = value;

    if (s->len == 0) {
        return NGX_OK;
    }

    ngx_str_set(err, "Content guards are not supported.");
    return NGX_DECLINED;
}


ngx_int_t
ngx_pt_id_valid(ngx_str_t *id)
{
    ngx_uint_t  i;

    if (id->len != NGX_PT_UUID_LEN) {
        return 0;
    }

    for (i = 0; i < NGX_PT_UUID_LEN; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (id->data[i] != '-') {
                return 0;
            }

        } else if (!((id->data[i] >= '0' && id->data[i] <= '9')
                     || (id->data[i] >= 'a' && id->data[i] <= 'f')))
        {
            return 0;
        }
    }

    return 1;
}


/* cross-field checks of a remote, after its fields passed their own */

ngx_int_t
ngx_pt_remote_validate(ngx_pool_t *pool, ngx_pt_remote_t *remote,
    ngx_pt_errors_t *errs)
{
    BIO       *bio;
    X509      *cert;
    EVP_PKEY  *key;
    ngx_int_t  ok;

    if (remote->client_key.data && remote->client_cert.data == NULL) {
        return ngx_pt_error_addc(errs, "client_cert", "A client certificate "
                                 "is required with client_key.");
    }

    if (remote->client_key.data == NULL || remote->client_cert.data == NULL) {
        return NGX_OK;
    }

    bio = BIO_new_mem_buf(remote->client_cert.data, remote->client_cert.len);
    if (bio == NULL) {
        return NGX_ERROR;
    }

    cert = PEM_read_bio_X509(bio, NULL, ngx_pt_no_passphrase, NULL);
    BIO_free(bio);

    key = ngx_pt_read_key(&remote->client_key);

    ok = (cert && key && X509_check_private_key(cert, key) == 1);

    X509_free(cert);
    EVP_PKEY_free(key);
    ERR_clear_error();

    if (!ok) {
        return ngx_pt_error_addc(errs, "client_key", "The private key does "
                                 "not match client_cert.");
    }

    return NGX_OK;
}
