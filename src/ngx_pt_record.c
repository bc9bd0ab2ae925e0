
/*
 * ngx_pullthrough: records as wholes, by their field tables: a new one
 * with its defaults, one from a client's JSON object with Pulp's field
 * errors (Django REST framework style: unknown members, wrong types and
 * invalid values become errors, read-only members are ignored), its API
 * form (pulp_href, prn, timestamps, secrets only named in hidden_fields)
 * and its stored form (every field, secrets included).
 */


#include <ngx_pt.h>
#include <ngx_pt_record.h>


#define ngx_pt_field(rec, f)  ((u_char *) (rec) + (f)->offset)


/* shown, never taken: the generic ones and those the views add (a
 * per-image distribution's repository_version and registry_path) */
static const char  *ngx_pt_readonly_keys[] = {
    "pulp_href", "prn", "pulp_created", "pulp_last_updated",
    "hidden_fields", "repository_version", "registry_path", NULL
};


void *
ngx_pt_record_new(ngx_pool_t *pool, ngx_pt_type_t *type)
{
    void  *rec;

    rec = ngx_pcalloc(pool, type->size);
    if (rec == NULL) {
        return NULL;
    }

    if (type->init) {
        type->init(rec);
    }

    return rec;
}


void *
ngx_pt_record_copy(ngx_pool_t *pool, ngx_pt_type_t *type, void *rec)
{
    void  *copy;

    /* shallow: input replaces values, it never edits them in place */

    copy = ngx_palloc(pool, type->size);
    if (copy == NULL) {
        return NULL;
    }

    ngx_memcpy(copy, rec, type->size);

    return copy;
}


ngx_int_t
ngx_pt_errors_init(ngx_pool_t *pool, ngx_pt_errors_t *errs)
{
    return ngx_array_init(&errs->items, pool, 4,
                          sizeof(ngx_pt_field_error_t));
}


ngx_int_t
ngx_pt_error_add(ngx_pt_errors_t *errs, const char *field,
    ngx_str_t *message)
{
    ngx_uint_t             i;
    ngx_pt_field_error_t  *e;

    /* the first problem found with a field is the one reported */

    e = errs->items.elts;
    for (i = 0; i < errs->items.nelts; i++) {
        if (e[i].field.len == ngx_strlen(field)
            && ngx_strncmp(e[i].field.data, field, e[i].field.len) == 0)
        {
            return NGX_OK;
        }
    }

    e = ngx_array_push(&errs->items);
    if (e == NULL) {
        return NGX_ERROR;
    }

    e->field.data = (u_char *) field;
    e->field.len = ngx_strlen(field);
    e->message = *message;

    return NGX_OK;
}


ngx_int_t
ngx_pt_error_addc(ngx_pt_errors_t *errs, const char *field,
    const char *message)
{
    ngx_str_t  m;

    m.data = (u_char *) message;
    m.len = ngx_strlen(message);

    return ngx_pt_error_add(errs, field, &m);
}


void
ngx_pt_errors_render(yajl_gen g, ngx_pt_errors_t *errs)
{
    ngx_uint_t             i;
    ngx_pt_field_error_t  *e;

    e = errs->items.elts;

    ngx_pt_json_map_open(g);

    for (i = 0; i < errs->items.nelts; i++) {
        yajl_gen_string(g, e[i].field.data, e[i].field.len);
        ngx_pt_json_array_open(g);
        ngx_pt_json_str(g, &e[i].message);
        ngx_pt_json_array_close(g);
    }

    ngx_pt_json_map_close(g);
}


/*
 * Applies the members of a JSON object to a record, Django REST framework
 * style: unknown members, wrong types and invalid values become field
 * errors; read-only members are ignored.
 */

ngx_int_t
ngx_pt_record_input(ngx_pool_t *pool, ngx_pt_type_t *type, yajl_val obj,
    void *rec, ngx_uint_t mode, ngx_pt_errors_t *errs)
{
    size_t           i;
    ngx_str_t        err;
    const char     **ro, *key;
    ngx_pt_field_t  *f;

    for (i = 0; i < obj->u.object.len; i++) {

        key = obj->u.object.keys[i];

        for (ro = ngx_pt_readonly_keys; *ro; ro++) {
            if (ngx_strcmp(*ro, key) == 0) {
                break;
            }
        }

        if (*ro) {
            continue;
        }

        for (f = type->fields; f->name; f++) {
            if (!(f->flags & NGX_PT_F_INTERNAL)
                && ngx_strcmp(f->name, key) == 0)
            {
                break;
            }
        }

        if (f->name == NULL) {
            if (ngx_pt_error_addc(errs, key, "Unexpected field") != NGX_OK) {
                return NGX_ERROR;
            }
            continue;
        }

        if (f->flags & (NGX_PT_F_READONLY|NGX_PT_F_FIXED)) {
            continue;
        }

        switch (ngx_pt_field_set(pool, f, obj->u.object.values[i], rec, 0,
                                 &err))
        {
        case NGX_OK:
            break;

        case NGX_DECLINED:
            if (ngx_pt_error_add(errs, f->name, &err) != NGX_OK) {
                return NGX_ERROR;
            }
            break;

        default:
            return NGX_ERROR;
        }
    }

    if (mode != NGX_PT_INPUT_PARTIAL) {
        for (f = type->fields; f->name; f++) {
            if ((f->flags & NGX_PT_F_REQUIRED)
                && ngx_pt_json_get(obj, f->name) == NULL
                && ngx_pt_error_addc(errs, f->name, "This field is required.")
                   != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    return errs->items.nelts ? NGX_DECLINED : NGX_OK;
}


/* the API form */

void
ngx_pt_record_href(ngx_pt_type_t *type, ngx_str_t *id, u_char *buf,
    ngx_str_t *out)
{
    /* buf has room for NGX_PT_API_ROOT, the longest path and an id */

    out->data = buf;
    out->len = ngx_sprintf(buf, NGX_PT_API_ROOT "%s%V/", type->path, id)
               - buf;
}


/* what every record shows first: its href, PRN and timestamps */

void
ngx_pt_record_render_meta(yajl_gen g, ngx_pt_type_t *type, void *rec)
{
    u_char          buf[256];
    ngx_str_t       s;
    ngx_pt_meta_t  *meta = rec;

    ngx_pt_record_href(type, &meta->id, buf, &s);
    ngx_pt_json_key(g, "pulp_href");
    ngx_pt_json_str(g, &s);

    s.data = buf;
    s.len = ngx_sprintf(buf, "prn:%s:%V", type->prn, &meta->id) - buf;
    ngx_pt_json_key(g, "prn");
    ngx_pt_json_str(g, &s);

    ngx_pt_json_key(g, "pulp_created");
    ngx_pt_json_str(g, &meta->created);
    ngx_pt_json_key(g, "pulp_last_updated");
    ngx_pt_json_str(g, &meta->updated);
}


/*
 * Emits the members of a record as the API shows them, without the
 * enclosing braces so that callers may add computed members.
 */

void
ngx_pt_record_render(yajl_gen g, ngx_pt_type_t *type, void *rec)
{
    ngx_pt_record_render_meta(g, type, rec);
    ngx_pt_record_render_fields(g, type, rec, NULL);
}


/* the fields, but for one named "skip" (NULL: none) */

void
ngx_pt_record_render_fields(yajl_gen g, ngx_pt_type_t *type, void *rec,
    const char *skip)
{
    ngx_str_t       *s;
    ngx_uint_t       secrets;
    ngx_pt_field_t  *f;

    secrets = 0;

    for (f = type->fields; f->name; f++) {

        if (f->flags & (NGX_PT_F_INTERNAL|NGX_PT_F_READONLY|NGX_PT_F_HOOKED)
            || (skip && ngx_strcmp(f->name, skip) == 0))
        {
            continue;
        }

        if (f->flags & NGX_PT_F_SECRET) {
            secrets++;
            continue;
        }

        ngx_pt_json_key(g, f->name);
        ngx_pt_field_render(g, f, rec, 0);
    }

    if (secrets == 0) {
        return;
    }

    ngx_pt_json_key(g, "hidden_fields");
    ngx_pt_json_array_open(g);

    for (f = type->fields; f->name; f++) {
        if (f->flags & NGX_PT_F_SECRET) {
            s = (ngx_str_t *) ngx_pt_field(rec, f);

            ngx_pt_json_map_open(g);
            ngx_pt_json_key(g, "name");
            ngx_pt_json_cstr(g, f->name);
            ngx_pt_json_key(g, "is_set");
            ngx_pt_json_bool(g, s->data != NULL);
            ngx_pt_json_map_close(g);
        }
    }

    ngx_pt_json_array_close(g);
}


/* one field, named, as the API shows it; null if the type has none */

void
ngx_pt_record_render_field(yajl_gen g, ngx_pt_type_t *type, void *rec,
    const char *name)
{
    ngx_pt_field_t  *f;

    ngx_pt_json_key(g, name);

    for (f = type->fields; f->name; f++) {
        if (ngx_strcmp(f->name, name) == 0
            && !(f->flags & (NGX_PT_F_INTERNAL|NGX_PT_F_SECRET)))
        {
            ngx_pt_field_render(g, f, rec, 0);
            return;
        }
    }

    ngx_pt_json_null(g);
}


/* the stored form */

ngx_int_t
ngx_pt_record_encode(ngx_pool_t *pool, ngx_pt_type_t *type, void *rec,
    ngx_str_t *out)
{
    yajl_gen         g;
    ngx_pt_meta_t   *meta = rec;
    ngx_pt_field_t  *f;

    g = ngx_pt_json_gen(pool);
    if (g == NULL) {
        return NGX_ERROR;
    }

    ngx_pt_json_map_open(g);

    ngx_pt_json_key(g, "id");
    ngx_pt_json_str(g, &meta->id);
    ngx_pt_json_key(g, "created");
    ngx_pt_json_str(g, &meta->created);
    ngx_pt_json_key(g, "updated");
    ngx_pt_json_str(g, &meta->updated);

    for (f = type->fields; f->name; f++) {
        if (f->flags & NGX_PT_F_READONLY) {
            continue;
        }

        ngx_pt_json_key(g, f->name);
        ngx_pt_field_render(g, f, rec, 1);
    }

    ngx_pt_json_map_close(g);

    return ngx_pt_json_result(g, pool, out);
}


ngx_int_t
ngx_pt_record_decode(ngx_pool_t *pool, ngx_pt_type_t *type, ngx_str_t *val,
    void **recp)
{
    void            *rec;
    size_t           i;
    yajl_val         doc, v;
    ngx_str_t        err;
    const char      *key;
    ngx_pt_meta_t   *meta;
    ngx_pt_field_t  *f;

    doc = ngx_pt_json_parse(pool, val, &err);
    if (doc == NULL || !YAJL_IS_OBJECT(doc)) {
        return NGX_ERROR;
    }

    rec = ngx_pt_record_new(pool, type);
    if (rec == NULL) {
        return NGX_ERROR;
    }

    meta = rec;

    for (i = 0; i < doc->u.object.len; i++) {
        key = doc->u.object.keys[i];
        v = doc->u.object.values[i];

        if (YAJL_IS_STRING(v)) {
            if (ngx_strcmp(key, "id") == 0) {
                ngx_pt_strdup(pool, v->u.string, &meta->id);
                continue;
            }

            if (ngx_strcmp(key, "created") == 0) {
                ngx_pt_strdup(pool, v->u.string, &meta->created);
                continue;
            }

            if (ngx_strcmp(key, "updated") == 0) {
                ngx_pt_strdup(pool, v->u.string, &meta->updated);
                continue;
            }
        }

        for (f = type->fields; f->name; f++) {
            if (!(f->flags & NGX_PT_F_READONLY)
                && ngx_strcmp(f->name, key) == 0)
            {
                if (ngx_pt_field_set(pool, f, v, rec, 1, &err) == NGX_ERROR) {
                    return NGX_ERROR;
                }

                break;
            }
        }
    }

    if (meta->id.len == 0) {
        return NGX_ERROR;
    }

    *recp = rec;

    return NGX_OK;
}
