
/*
 * ngx_pullthrough: the value of one field of a record, from JSON and back,
 * by the field's type: strings, booleans (and the form values httpie
 * sends), integers, numbers, string lists, labels, headers and references
 * (an href in the API, the bare id in the store). Values from the store
 * are trusted; values from clients are checked as Django REST framework
 * checks them, with its messages.
 */


#include <ngx_pt.h>
#include <ngx_pt_record.h>

#include <math.h>


#define ngx_pt_field(rec, f)  ((u_char *) (rec) + (f)->offset)


static ngx_int_t ngx_pt_set_str(ngx_pool_t *pool, ngx_pt_field_t *f,
    yajl_val v, ngx_str_t *s, ngx_uint_t trusted, ngx_str_t *err);
static ngx_int_t ngx_pt_set_bool(yajl_val v, ngx_flag_t *b, ngx_str_t *err);
static ngx_int_t ngx_pt_set_int(ngx_pool_t *pool, ngx_pt_field_t *f,
    yajl_val v, int64_t *n, ngx_str_t *err);
static ngx_int_t ngx_pt_set_num(ngx_pool_t *pool, ngx_pt_field_t *f,
    yajl_val v, double *n, ngx_str_t *err);
static ngx_int_t ngx_pt_set_strlist(ngx_pool_t *pool, ngx_pt_field_t *f,
    yajl_val v, ngx_array_t **a, ngx_str_t *err);
static ngx_int_t ngx_pt_set_labels(ngx_pool_t *pool, yajl_val v,
    ngx_array_t **a, ngx_str_t *err);
static ngx_uint_t ngx_pt_header_reserved(const char *name);
static ngx_int_t ngx_pt_set_headers(ngx_pool_t *pool, ngx_pt_field_t *f,
    yajl_val v, ngx_array_t **a, ngx_uint_t trusted, ngx_str_t *err);
static ngx_int_t ngx_pt_set_ref(ngx_pool_t *pool, ngx_pt_field_t *f,
    yajl_val v, ngx_str_t *s, ngx_uint_t trusted, ngx_str_t *err);
static void ngx_pt_type_error(yajl_val v, const char *expected,
    ngx_str_t *err, ngx_pool_t *pool);


ngx_int_t
ngx_pt_field_set(ngx_pool_t *pool, ngx_pt_field_t *f, yajl_val v, void *rec,
    ngx_uint_t trusted, ngx_str_t *err)
{
    void  *p;

    p = ngx_pt_field(rec, f);

    switch (f->type) {

    case NGX_PT_T_STR:
        return ngx_pt_set_str(pool, f, v, p, trusted, err);

    case NGX_PT_T_BOOL:
        return ngx_pt_set_bool(v, p, err);

    case NGX_PT_T_INT:
        return ngx_pt_set_int(pool, f, v, p, err);

    case NGX_PT_T_NUM:
        return ngx_pt_set_num(pool, f, v, p, err);

    case NGX_PT_T_STRLIST:
        return ngx_pt_set_strlist(pool, f, v, p, err);

    case NGX_PT_T_LABELS:
        return ngx_pt_set_labels(pool, v, p, err);

    case NGX_PT_T_HEADERS:
        return ngx_pt_set_headers(pool, f, v, p, trusted, err);

    default: /* NGX_PT_T_REF */
        return ngx_pt_set_ref(pool, f, v, p, trusted, err);
    }
}


static ngx_int_t
ngx_pt_set_str(ngx_pool_t *pool, ngx_pt_field_t *f, yajl_val v, ngx_str_t *s,
    ngx_uint_t trusted, ngx_str_t *err)
{
    ngx_str_t  value;

    if (YAJL_IS_NULL(v)) {
        if (!(f->flags & NGX_PT_F_NULLABLE)) {
            ngx_str_set(err, "This field may not be null.");
            return NGX_DECLINED;
        }

        ngx_str_null(s);
        return NGX_OK;
    }

    if (!YAJL_IS_STRING(v)) {
        ngx_str_set(err, "Not a valid string.");
        return NGX_DECLINED;
    }

    if (!trusted && ngx_pt_json_has_nul(v->u.string)) {
        ngx_str_set(err, "Null characters are not allowed.");
        return NGX_DECLINED;
    }

    if (ngx_pt_strdup(pool, v->u.string, &value) != NGX_OK) {
        return NGX_ERROR;
    }

    if (!trusted) {

        if (f->flags & NGX_PT_F_TRIM) {
            /* as Django REST framework trims a CharField */
            while (value.len && isspace(value.data[0])) {
                value.data++;
                value.len--;
            }

            while (value.len && isspace(value.data[value.len - 1])) {
                value.len--;
            }
        }

        if (value.len == 0 && !(f->flags & NGX_PT_F_BLANK)) {
            ngx_str_set(err, "This field may not be blank.");
            return NGX_DECLINED;
        }

        if (f->max && (int64_t) value.len > f->max) {
            err->data = ngx_pnalloc(pool, 80);
            if (err->data == NULL) {
                return NGX_ERROR;
            }

            err->len = ngx_sprintf(err->data, "Ensure this field has no more "
                                   "than %L characters.", f->max)
                       - err->data;
            return NGX_DECLINED;
        }

        if (f->check && f->check(pool, &value, err) != NGX_OK) {
            return NGX_DECLINED;
        }
    }

    *s = value;

    return NGX_OK;
}


static ngx_int_t
ngx_pt_set_bool(yajl_val v, ngx_flag_t *b, ngx_str_t *err)
{
    size_t       i;
    const char  *s;

    static const char  *yes[] = { "true", "True", "TRUE", "1", "yes", "on",
                                  "y", NULL };
    static const char  *no[] = { "false", "False", "FALSE", "0", "no", "off",
                                 "n", NULL };

    if (YAJL_IS_TRUE(v)) {
        *b = 1;
        return NGX_OK;
    }

    if (YAJL_IS_FALSE(v)) {
        *b = 0;
        return NGX_OK;
    }

    if (YAJL_IS_NULL(v)) {
        ngx_str_set(err, "This field may not be null.");
        return NGX_DECLINED;
    }

    /* form-style values, as httpie's "field=value" sends them */

    if (YAJL_IS_STRING(v)) {
        s = v->u.string;

        for (i = 0; yes[i]; i++) {
            if (ngx_strcmp(s, yes[i]) == 0) {
                *b = 1;
                return NGX_OK;
            }
        }

        for (i = 0; no[i]; i++) {
            if (ngx_strcmp(s, no[i]) == 0) {
                *b = 0;
                return NGX_OK;
            }
        }
    }

    if (YAJL_IS_INTEGER(v)
        && (YAJL_GET_INTEGER(v) == 0 || YAJL_GET_INTEGER(v) == 1))
    {
        *b = YAJL_GET_INTEGER(v);
        return NGX_OK;
    }

    ngx_str_set(err, "Must be a valid boolean.");
    return NGX_DECLINED;
}


static ngx_int_t
ngx_pt_set_int(ngx_pool_t *pool, ngx_pt_field_t *f, yajl_val v, int64_t *n,
    ngx_str_t *err)
{
    char       *end;
    double      d;
    int64_t     value;
    long long   ll;

    if (YAJL_IS_NULL(v)) {
        if (!(f->flags & NGX_PT_F_NULLABLE)) {
            ngx_str_set(err, "This field may not be null.");
            return NGX_DECLINED;
        }

        *n = NGX_PT_NULL_INT;
        return NGX_OK;
    }

    if (YAJL_IS_INTEGER(v)) {
        value = YAJL_GET_INTEGER(v);

    } else if (YAJL_IS_DOUBLE(v)) {
        d = YAJL_GET_DOUBLE(v);

        if (d != floor(d) || d > 1e15 || d < -1e15) {
            goto invalid;
        }

        value = (int64_t) d;

    } else if (YAJL_IS_STRING(v) && v->u.string[0] != '\0') {
        errno = 0;
        ll = strtoll(v->u.string, &end, 10);

        if (errno || *end != '\0' || ngx_strchr(v->u.string, ' ')) {
            goto invalid;
        }

        value = ll;

    } else {
        goto invalid;
    }

    if (value < f->min || (f->max && value > f->max)) {
        err->data = ngx_pnalloc(pool, 80);
        if (err->data == NULL) {
            return NGX_ERROR;
        }

        err->len = (value < f->min)
                   ? ngx_sprintf(err->data, "Ensure this value is greater "
                                 "than or equal to %L.", f->min) - err->data
                   : ngx_sprintf(err->data, "Ensure this value is less "
                                 "than or equal to %L.", f->max) - err->data;
        return NGX_DECLINED;
    }

    *n = value;
    return NGX_OK;

invalid:

    ngx_str_set(err, "A valid integer is required.");
    return NGX_DECLINED;
}


static ngx_int_t
ngx_pt_set_num(ngx_pool_t *pool, ngx_pt_field_t *f, yajl_val v, double *n,
    ngx_str_t *err)
{
    char    *end;
    double   d;

    if (YAJL_IS_NULL(v)) {
        if (!(f->flags & NGX_PT_F_NULLABLE)) {
            ngx_str_set(err, "This field may not be null.");
            return NGX_DECLINED;
        }

        *n = NAN;
        return NGX_OK;
    }

    if (YAJL_IS_NUMBER(v)) {
        d = YAJL_IS_INTEGER(v) ? (double) YAJL_GET_INTEGER(v)
                               : YAJL_GET_DOUBLE(v);

    } else if (YAJL_IS_STRING(v) && v->u.string[0] != '\0') {
        errno = 0;
        d = strtod(v->u.string, &end);

        if (errno || *end != '\0') {
            goto invalid;
        }

    } else {
        goto invalid;
    }

    if (!isfinite(d)) {
        goto invalid;
    }

    if (d < (double) f->min) {
        err->data = ngx_pnalloc(pool, 80);
        if (err->data == NULL) {
            return NGX_ERROR;
        }

        err->len = ngx_sprintf(err->data, "Ensure this value is greater "
                               "than or equal to %L.0.", f->min)
                   - err->data;
        return NGX_DECLINED;
    }

    if (f->max && d > (double) f->max) {
        err->data = ngx_pnalloc(pool, 80);
        if (err->data == NULL) {
            return NGX_ERROR;
        }

        err->len = ngx_sprintf(err->data, "Ensure this value is less "
                               "than or equal to %L.0.", f->max)
                   - err->data;
        return NGX_DECLINED;
    }

    *n = d;
    return NGX_OK;

invalid:

    ngx_str_set(err, "A valid number is required.");
    return NGX_DECLINED;
}


static ngx_int_t
ngx_pt_set_strlist(ngx_pool_t *pool, ngx_pt_field_t *f, yajl_val v,
    ngx_array_t **a, ngx_str_t *err)
{
    size_t       i;
    yajl_val     item;
    ngx_str_t   *s;
    ngx_array_t  *list;

    if (YAJL_IS_NULL(v)) {
        if (!(f->flags & NGX_PT_F_NULLABLE)) {
            ngx_str_set(err, "This field may not be null.");
            return NGX_DECLINED;
        }

        *a = NULL;
        return NGX_OK;
    }

    if (!YAJL_IS_ARRAY(v)) {
        ngx_pt_type_error(v, "a list of items", err, pool);
        return NGX_DECLINED;
    }

    if (f->max && (int64_t) v->u.array.len > f->max) {
        ngx_str_set(err, "Too many items.");
        return NGX_DECLINED;
    }

    list = ngx_array_create(pool, v->u.array.len + 1, sizeof(ngx_str_t));
    if (list == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < v->u.array.len; i++) {
        item = v->u.array.values[i];

        if (!YAJL_IS_STRING(item)) {
            ngx_str_set(err, "Not a valid string.");
            return NGX_DECLINED;
        }

        if (ngx_strlen(item->u.string) > NGX_PT_NAME_MAX) {
            ngx_str_set(err, "Items may have at most 255 characters.");
            return NGX_DECLINED;
        }

        if (ngx_pt_json_has_nul(item->u.string)) {
            ngx_str_set(err, "Null characters are not allowed.");
            return NGX_DECLINED;
        }

        s = ngx_array_push(list);
        if (s == NULL || ngx_pt_strdup(pool, item->u.string, s) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    *a = list;
    return NGX_OK;
}


/* the first byte of s that ok() refuses (its NUL when none) */

static u_char *
ngx_pt_scan(const char *s, ngx_uint_t (*ok)(u_char c))
{
    u_char  *p;

    for (p = (u_char *) s; *p && ok(*p); p++) { /* void */ }

    return p;
}


/* Pulp allows word characters, spaces, dots and dashes in label keys */

static ngx_uint_t
ngx_pt_label_char(u_char c)
{
    return isalnum(c) || c == '_' || c == ' ' || c == '-' || c == '.'
           || c >= 0x80;
}


/* a header name is an HTTP token */

static ngx_uint_t
ngx_pt_token_char(u_char c)
{
    return c > 0x20 && c < 0x7f
           && ngx_strchr("()<>@,;:\\\"/[]?={}", c) == NULL;
}


/* a header value holds no line breaks */

static ngx_uint_t
ngx_pt_line_char(u_char c)
{
    return c != CR && c != LF;
}


/* a copy of a JSON key and its string value, at the end of a */

static ngx_int_t
ngx_pt_kv_push(ngx_pool_t *pool, ngx_array_t *a, const char *key,
    const char *value)
{
    ngx_keyval_t  *kv;

    kv = ngx_array_push(a);
    if (kv == NULL
        || ngx_pt_strdup(pool, key, &kv->key) != NGX_OK
        || ngx_pt_strdup(pool, value, &kv->value) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_pt_set_labels(ngx_pool_t *pool, yajl_val v, ngx_array_t **a,
    ngx_str_t *err)
{
    size_t         i;
    u_char        *p;
    yajl_val       value;
    ngx_array_t   *labels;

    if (YAJL_IS_NULL(v)) {
        ngx_str_set(err, "This field may not be null.");
        return NGX_DECLINED;
    }

    if (!YAJL_IS_OBJECT(v)) {
        ngx_pt_type_error(v, "a dictionary of items", err, pool);
        return NGX_DECLINED;
    }

    labels = ngx_array_create(pool, v->u.object.len + 1,
                              sizeof(ngx_keyval_t));
    if (labels == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < v->u.object.len; i++) {
        value = v->u.object.values[i];

        if (!YAJL_IS_STRING(value)) {
            ngx_str_set(err, "Label values must be strings.");
            return NGX_DECLINED;
        }

        if (ngx_pt_json_has_nul(value->u.string)) {
            ngx_str_set(err, "Null characters are not allowed.");
            return NGX_DECLINED;
        }

        p = ngx_pt_scan(v->u.object.keys[i], ngx_pt_label_char);

        if (*p || p == (u_char *) v->u.object.keys[i]
            || ngx_pt_json_has_nul(v->u.object.keys[i]))
        {
            ngx_str_set(err, "Label keys may contain only letters, digits, "
                        "spaces, '_', '-' and '.'.");
            return NGX_DECLINED;
        }

        if (ngx_pt_kv_push(pool, labels, v->u.object.keys[i],
                           value->u.string) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    *a = labels;
    return NGX_OK;
}


/*
 * The headers every upstream request gets from the module: a remote's own
 * would be dropped or doubled, so they are refused instead.
 */

static ngx_uint_t
ngx_pt_header_reserved(const char *name)
{
    ngx_uint_t  i;

    static const char  *reserved[] = {
        "Authorization", "Proxy-Authorization", "Accept", "Host",
        "Connection", "Content-Length", "Transfer-Encoding", "User-Agent",
        "Range", "Upgrade", "TE", "Keep-Alive", NULL
    };

    for (i = 0; reserved[i]; i++) {
        if (ngx_strcasecmp((u_char *) name, (u_char *) reserved[i]) == 0) {
            return 1;
        }
    }

    return 0;
}


static ngx_int_t
ngx_pt_set_headers(ngx_pool_t *pool, ngx_pt_field_t *f, yajl_val v,
    ngx_array_t **a, ngx_uint_t trusted, ngx_str_t *err)
{
    size_t         i;
    u_char        *p;
    yajl_val       item, value;
    ngx_array_t   *headers;

    if (YAJL_IS_NULL(v)) {
        *a = NULL;
        return NGX_OK;
    }

    if (!YAJL_IS_ARRAY(v)) {
        ngx_pt_type_error(v, "a list of items", err, pool);
        return NGX_DECLINED;
    }

    headers = ngx_array_create(pool, v->u.array.len + 1,
                               sizeof(ngx_keyval_t));
    if (headers == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < v->u.array.len; i++) {
        item = v->u.array.values[i];

        if (!YAJL_IS_OBJECT(item) || item->u.object.len != 1
            || !YAJL_IS_STRING(item->u.object.values[0]))
        {
            ngx_str_set(err, "Each header must be an object with one name "
                        "and one string value, such as "
                        "{\"X-Name\": \"value\"}.");
            return NGX_DECLINED;
        }

        p = ngx_pt_scan(item->u.object.keys[0], ngx_pt_token_char);

        if (*p || p == (u_char *) item->u.object.keys[0]) {
            ngx_str_set(err, "Invalid header name.");
            return NGX_DECLINED;
        }

        if (!trusted && ngx_pt_header_reserved(item->u.object.keys[0])) {
            err->data = ngx_pnalloc(pool, NGX_PT_VALUE_MAX);
            if (err->data == NULL) {
                return NGX_ERROR;
            }

            err->len = ngx_snprintf(err->data, NGX_PT_VALUE_MAX,
                                    "The header %s is the module's own: "
                                    "credentials have their own fields "
                                    "(username, password), the others are "
                                    "set for every request.",
                                    item->u.object.keys[0])
                       - err->data;
            return NGX_DECLINED;
        }

        value = item->u.object.values[0];
        p = ngx_pt_scan(value->u.string, ngx_pt_line_char);

        if (*p || ngx_pt_json_has_nul(value->u.string)) {
            ngx_str_set(err, "Header values must not contain line breaks "
                        "or null characters.");
            return NGX_DECLINED;
        }

        if (ngx_pt_kv_push(pool, headers, item->u.object.keys[0],
                           value->u.string) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    *a = headers;
    return NGX_OK;
}


/*
 * A related object: an href such as "/pulp/api/v3/remotes/.../<id>/" (or
 * an absolute URL ending so) in the API, the bare id in the store.
 */

static ngx_int_t
ngx_pt_set_ref(ngx_pool_t *pool, ngx_pt_field_t *f, yajl_val v, ngx_str_t *s,
    ngx_uint_t trusted, ngx_str_t *err)
{
    size_t      root, path;
    u_char     *p, *last;
    ngx_str_t   value, id;

    if (YAJL_IS_NULL(v)) {
        if (!(f->flags & NGX_PT_F_NULLABLE)) {
            ngx_str_set(err, "This field may not be null.");
            return NGX_DECLINED;
        }

        ngx_str_null(s);
        return NGX_OK;
    }

    if (!YAJL_IS_STRING(v)) {
        ngx_pt_type_error(v, "a URL string", err, pool);
        return NGX_DECLINED;
    }

    if (ngx_pt_strdup(pool, v->u.string, &value) != NGX_OK) {
        return NGX_ERROR;
    }

    if (trusted) {
        *s = value;
        return NGX_OK;
    }

    p = value.data;
    last = p + value.len;

    if (value.len > 8 && (ngx_strncasecmp(p, (u_char *) "http://", 7) == 0
                          || ngx_strncasecmp(p, (u_char *) "https://", 8) == 0))
    {
        p = ngx_strlchr(p + 8, last, '/');
        if (p == NULL) {
            goto invalid;
        }
    }

    root = sizeof(NGX_PT_API_ROOT) - 1;
    path = ngx_strlen(f->ref);

    if ((size_t) (last - p) < root + path + NGX_PT_UUID_LEN
        || ngx_strncmp(p, NGX_PT_API_ROOT, root) != 0
        || ngx_strncmp(p + root, f->ref, path) != 0)
    {
        goto invalid;
    }

    id.data = p + root + path;
    id.len = NGX_PT_UUID_LEN;

    p = id.data + id.len;

    if (!ngx_pt_id_valid(&id)
        || !(p == last || (p + 1 == last && *p == '/')))
    {
        goto invalid;
    }

    *s = id;
    return NGX_OK;

invalid:

    ngx_str_set(err, "Invalid hyperlink - No URL match.");
    return NGX_DECLINED;
}


static void
ngx_pt_type_error(yajl_val v, const char *expected, ngx_str_t *err,
    ngx_pool_t *pool)
{
    const char  *got;

    if (YAJL_IS_STRING(v)) {
        got = "str";

    } else if (YAJL_IS_OBJECT(v)) {
        got = "dict";

    } else if (YAJL_IS_ARRAY(v)) {
        got = "list";

    } else if (YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v)) {
        got = "bool";

    } else if (YAJL_IS_INTEGER(v)) {
        got = "int";

    } else {
        got = "float";
    }

    err->data = ngx_pnalloc(pool, 128);
    if (err->data == NULL) {
        ngx_str_set(err, "Invalid type.");
        return;
    }

    err->len = ngx_sprintf(err->data, "Expected %s but got type \"%s\".",
                           expected, got)
               - err->data;
}




/* a field's value as JSON: as the API shows it, or as it is stored */

void
ngx_pt_field_render(yajl_gen g, ngx_pt_field_t *f, void *rec,
    ngx_uint_t stored)
{
    u_char        *p, buf[256];
    ngx_str_t     *s, href;
    ngx_uint_t     i;
    ngx_array_t   *a;
    ngx_keyval_t  *kv;

    p = ngx_pt_field(rec, f);

    switch (f->type) {

    case NGX_PT_T_STR:
        ngx_pt_json_str(g, (ngx_str_t *) p);
        break;

    case NGX_PT_T_BOOL:
        ngx_pt_json_bool(g, *(ngx_flag_t *) p);
        break;

    case NGX_PT_T_INT:
        ngx_pt_json_int(g, *(int64_t *) p);
        break;

    case NGX_PT_T_NUM:
        ngx_pt_json_num(g, *(double *) p);
        break;

    case NGX_PT_T_STRLIST:
        a = *(ngx_array_t **) p;

        if (a == NULL) {
            ngx_pt_json_null(g);
            break;
        }

        s = a->elts;
        ngx_pt_json_array_open(g);
        for (i = 0; i < a->nelts; i++) {
            ngx_pt_json_str(g, &s[i]);
        }
        ngx_pt_json_array_close(g);
        break;

    case NGX_PT_T_LABELS:
        a = *(ngx_array_t **) p;

        ngx_pt_json_map_open(g);
        if (a) {
            kv = a->elts;
            for (i = 0; i < a->nelts; i++) {
                yajl_gen_string(g, kv[i].key.data, kv[i].key.len);
                ngx_pt_json_str(g, &kv[i].value);
            }
        }
        ngx_pt_json_map_close(g);
        break;

    case NGX_PT_T_HEADERS:
        a = *(ngx_array_t **) p;

        if (a == NULL) {
            ngx_pt_json_null(g);
            break;
        }

        kv = a->elts;
        ngx_pt_json_array_open(g);
        for (i = 0; i < a->nelts; i++) {
            ngx_pt_json_map_open(g);
            yajl_gen_string(g, kv[i].key.data, kv[i].key.len);
            ngx_pt_json_str(g, &kv[i].value);
            ngx_pt_json_map_close(g);
        }
        ngx_pt_json_array_close(g);
        break;

    default: /* NGX_PT_T_REF */
        s = (ngx_str_t *) p;

        if (s->data == NULL || stored) {
            ngx_pt_json_str(g, s);
            break;
        }

        href.data = buf;
        href.len = ngx_sprintf(buf, NGX_PT_API_ROOT "%s%V/", f->ref, s)
                   - buf;
        ngx_pt_json_str(g, &href);
        break;
    }
}
