/* Reading ONNX model files: protobuf-c parses, then the checks of docs/ONNX.md ("Reading") run
 * over everything the importer will use, so that it can trust sizes, names and data. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/error.h"
#include "io/onnx/name_map.h"
#include "io/onnx/onnx_read.h"

struct kiln_onnx_model {
    Onnx__ModelProto *proto;
    int opset;
    char origin[256];
};

/* A protobuf-c string, never NULL. */
static const char *str(const char *s)
{
    return s ? s : "";
}

/* ---------------------------------------------------------------- tensors */

int kiln_onnx_elem_size(int32_t dt)
{
    switch (dt) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT:
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: return 4;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64:
    case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: return 8;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT8:
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8:
    case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: return 1;
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16: return 2;
    default: return 0;
    }
}

int64_t kiln_onnx_numel(const Onnx__TensorProto *t)
{
    int64_t n = 1;
    for (size_t d = 0; d < t->n_dims; d++)
        n *= t->dims[d];
    return n;
}

/* The typed array that holds a tensor of type dt when it has no raw_data, and its count. */
static size_t typed_count(const Onnx__TensorProto *t, int32_t dt)
{
    switch (dt) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: return t->n_float_data;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: return t->n_int64_data;
    case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: return t->n_double_data;
    default: return t->n_int32_data;   /* INT32, INT8, UINT8, BOOL, FLOAT16 */
    }
}

kiln_status kiln_onnx_check_tensor(const Onnx__TensorProto *t, const char *origin, const char *what)
{
    int32_t dt = t->has_data_type ? t->data_type : 0;
    if (!kiln_onnx_elem_size(dt))
        return kiln_error(KILN_ERR_FORMAT, "%s: %s: data_type: expected FLOAT, DOUBLE, FLOAT16, INT64, INT32, INT8, "
                          "UINT8 or BOOL, found %d", origin, what, (int)dt);
    if (t->n_dims > KILN_ONNX_MAX_RANK)
        return kiln_error(KILN_ERR_FORMAT, "%s: %s: dims: expected at most %d, found %zu", origin, what,
                          KILN_ONNX_MAX_RANK, t->n_dims);
    int64_t n = 1;
    for (size_t d = 0; d < t->n_dims; d++) {
        if (t->dims[d] < 0 || t->dims[d] > KILN_ONNX_MAX_ELEMENTS)
            return kiln_error(KILN_ERR_FORMAT, "%s: %s: dims[%zu]: expected 0..%lld, found %lld", origin, what, d,
                              (long long)KILN_ONNX_MAX_ELEMENTS, (long long)t->dims[d]);
        n *= t->dims[d];   /* no overflow: each factor <= 2^28 and the product is checked each step */
        if (n > KILN_ONNX_MAX_ELEMENTS)
            return kiln_error(KILN_ERR_FORMAT, "%s: %s: dims: expected at most %lld elements, found more",
                              origin, what, (long long)KILN_ONNX_MAX_ELEMENTS);
    }
    if ((t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) ||
        t->n_external_data)
        return kiln_error(KILN_ERR_FORMAT, "%s: %s: data_location: expected the data in the file, found external "
                          "data (not supported)", origin, what);
    if (t->segment)
        return kiln_error(KILN_ERR_FORMAT, "%s: %s: segment: segmented tensors are not supported", origin, what);
    size_t es = (size_t)kiln_onnx_elem_size(dt);
    if (t->has_raw_data) {
        if (t->raw_data.len != (size_t)n * es)
            return kiln_error(KILN_ERR_FORMAT, "%s: %s: raw_data: expected %lld bytes (%lld elements of %zu), found "
                              "%zu", origin, what, (long long)n * (long long)es, (long long)n, es, t->raw_data.len);
        return KILN_OK;
    }
    size_t have = typed_count(t, dt);
    if (have != (size_t)n)
        return kiln_error(KILN_ERR_FORMAT, "%s: %s: expected %lld values for dims of %lld elements, found %zu",
                          origin, what, (long long)n, (long long)n, have);
    return KILN_OK;
}

/* IEEE half to float. */
static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31, man = h & 1023, bits;
    if (exp == 0) {   /* zero or subnormal: man * 2^-24 */
        float v = (float)man / 16777216.0f;
        return sign ? -v : v;
    }
    bits = exp == 31 ? sign | 0x7f800000u | (man << 13) : sign | ((exp + 112) << 23) | (man << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Element i of a checked tensor as a double. */
static double element(const Onnx__TensorProto *t, size_t i)
{
    int32_t dt = t->data_type;
    const uint8_t *raw = t->has_raw_data ? t->raw_data.data + i * (size_t)kiln_onnx_elem_size(dt) : NULL;
    switch (dt) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: {
        float v;
        if (!raw)
            return t->float_data[i];
        memcpy(&v, raw, 4);
        return v;
    }
    case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: {
        double v;
        if (!raw)
            return t->double_data[i];
        memcpy(&v, raw, 8);
        return v;
    }
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: {
        int64_t v;
        if (!raw)
            return (double)t->int64_data[i];
        memcpy(&v, raw, 8);
        return (double)v;
    }
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: {
        int32_t v;
        if (!raw)
            return t->int32_data[i];
        memcpy(&v, raw, 4);
        return v;
    }
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16: {
        uint16_t v;
        if (raw)
            memcpy(&v, raw, 2);
        else
            v = (uint16_t)t->int32_data[i];
        return half_to_float(v);
    }
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT8: return raw ? (int8_t)raw[0] : (int8_t)t->int32_data[i];
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8: return raw ? raw[0] : (uint8_t)t->int32_data[i];
    case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: return raw ? raw[0] != 0 : t->int32_data[i] != 0;
    default: return 0;
    }
}

void kiln_onnx_tensor_f32(const Onnx__TensorProto *t, float *out)
{
    size_t n = (size_t)kiln_onnx_numel(t);
    if (t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT && t->has_raw_data) {
        if (n)   /* (an empty tensor's data may be NULL) */
            memcpy(out, t->raw_data.data, n * sizeof(float));   /* little-endian, as ONNX stores it */
        return;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = (float)element(t, i);
}

void kiln_onnx_tensor_i64(const Onnx__TensorProto *t, int64_t *out)
{
    size_t n = (size_t)kiln_onnx_numel(t);
    if (t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64) {
        for (size_t i = 0; i < n; i++) {
            if (t->has_raw_data)
                memcpy(&out[i], t->raw_data.data + 8 * i, 8);
            else
                out[i] = t->int64_data[i];
        }
        return;
    }
    for (size_t i = 0; i < n; i++) {
        double v = element(t, i);
        out[i] = v != v ? 0 : v >= 9.2e18 ? INT64_MAX : v <= -9.2e18 ? INT64_MIN : (int64_t)v;
    }
}

/* ---------------------------------------------------------------- the graph */

/* Checks a graph input's or output's declared type, when it has one: a tensor of a known type
 * whose dims are numbers >= 0 or symbols. */
static kiln_status check_value_info(const Onnx__ValueInfoProto *v, const char *origin, const char *what)
{
    const char *name = str(v->name);
    if (!*name || strlen(name) > KILN_ONNX_MAX_NAME)
        return kiln_error(KILN_ERR_FORMAT, "%s: %s: name: expected 1..%d bytes, found %zu", origin, what,
                          KILN_ONNX_MAX_NAME, strlen(name));
    const Onnx__TypeProto *t = v->type;
    if (!t)
        return KILN_OK;
    if (t->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !t->tensor_type)
        return kiln_error(KILN_ERR_FORMAT, "%s: %s \"%s\": type: expected a tensor, found another kind of value "
                          "(sequences, maps and optionals are not supported)", origin, what, name);
    const Onnx__TypeProto__Tensor *tt = t->tensor_type;
    if (tt->has_elem_type && !kiln_onnx_elem_size(tt->elem_type))
        return kiln_error(KILN_ERR_FORMAT, "%s: %s \"%s\": elem_type: expected FLOAT, DOUBLE, FLOAT16, INT64, INT32, "
                          "INT8, UINT8 or BOOL, found %d", origin, what, name, (int)tt->elem_type);
    if (tt->shape) {
        if (tt->shape->n_dim > KILN_ONNX_MAX_RANK)
            return kiln_error(KILN_ERR_FORMAT, "%s: %s \"%s\": shape: expected at most %d dims, found %zu", origin,
                              what, name, KILN_ONNX_MAX_RANK, tt->shape->n_dim);
        for (size_t d = 0; d < tt->shape->n_dim; d++) {
            const Onnx__TensorShapeProto__Dimension *dim = tt->shape->dim[d];
            if (dim && dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE &&
                (dim->dim_value < 0 || dim->dim_value > KILN_ONNX_MAX_ELEMENTS))
                return kiln_error(KILN_ERR_FORMAT, "%s: %s \"%s\": shape dim %zu: expected 0..%lld, found %lld", origin,
                                  what, name, d, (long long)KILN_ONNX_MAX_ELEMENTS, (long long)dim->dim_value);
        }
    }
    return KILN_OK;
}

/* Checks one node's attributes: names, types that agree with their payloads, tensors. */
static kiln_status check_attributes(const Onnx__NodeProto *nd, const char *origin, const char *node)
{
    for (size_t a = 0; a < nd->n_attribute; a++) {
        const Onnx__AttributeProto *at = nd->attribute[a];
        if (!at || !*str(at->name))
            return kiln_error(KILN_ERR_FORMAT, "%s: node \"%s\": attribute %zu: expected a name, found none", origin,
                              node, a);
        if (at->g || at->n_graphs)
            return kiln_error(KILN_ERR_FORMAT, "%s: node \"%s\": attribute %s: subgraphs (If, Loop, Scan) are not "
                              "supported", origin, node, at->name);
        char what[KILN_ONNX_MAX_NAME + 64];
        if (at->t) {
            snprintf(what, sizeof what, "node \"%.1024s\": attribute %.1024s", node, at->name);
            if (kiln_onnx_check_tensor(at->t, origin, what) != KILN_OK)
                return KILN_ERR_FORMAT;
        }
        for (size_t k = 0; k < at->n_tensors; k++) {
            snprintf(what, sizeof what, "node \"%.1024s\": attribute %.1024s[%zu]", node, at->name, k);
            if (kiln_onnx_check_tensor(at->tensors[k], origin, what) != KILN_OK)
                return KILN_ERR_FORMAT;
        }
    }
    return KILN_OK;
}

/* Every value defined once (inputs, initializers, node outputs), every node input defined before
 * the node (topological order; a cycle shows as an input not defined yet), every graph output
 * defined. */
static kiln_status check_graph(const Onnx__GraphProto *g, const char *origin)
{
    if (g->n_node > KILN_ONNX_MAX_NODES || g->n_initializer > KILN_ONNX_MAX_NODES || g->n_input > KILN_ONNX_MAX_NODES ||
        g->n_output > KILN_ONNX_MAX_NODES)
        return kiln_error(KILN_ERR_FORMAT, "%s: graph: expected at most %d nodes, initializers, inputs and outputs, "
                          "found %zu, %zu, %zu and %zu", origin, KILN_ONNX_MAX_NODES, g->n_node, g->n_initializer,
                          g->n_input, g->n_output);
    if (g->n_sparse_initializer)
        return kiln_error(KILN_ERR_FORMAT, "%s: graph: sparse_initializer: sparse tensors are not supported", origin);
    if (!g->n_output)
        return kiln_error(KILN_ERR_FORMAT, "%s: graph: output: expected at least one, found none", origin);
    kiln_name_map ns = {0};   /* the values defined so far */
    kiln_status st = KILN_OK;
    char what[64];
    for (size_t i = 0; i < g->n_initializer && st == KILN_OK; i++) {
        const Onnx__TensorProto *t = g->initializer[i];
        const char *name = t ? str(t->name) : "";
        if (!*name || strlen(name) > KILN_ONNX_MAX_NAME) {
            st = kiln_error(KILN_ERR_FORMAT, "%s: initializer %zu: name: expected 1..%d bytes, found %zu", origin, i,
                            KILN_ONNX_MAX_NAME, strlen(name));
            break;
        }
        char tw[KILN_ONNX_MAX_NAME + 32];
        snprintf(tw, sizeof tw, "initializer \"%s\"", name);
        if ((st = kiln_onnx_check_tensor(t, origin, tw)) != KILN_OK)
            break;
        int put = kiln_name_map_put(&ns, name, 0);
        if (put)
            st = put < 0 ? kiln_error(KILN_ERR_NOMEM, "%s: out of memory checking names", origin)
                         : kiln_error(KILN_ERR_FORMAT, "%s: initializer \"%s\": expected a name used once, found it "
                                      "twice", origin, name);
    }
    for (size_t i = 0; i < g->n_input && st == KILN_OK; i++) {
        snprintf(what, sizeof what, "input %zu", i);
        if (!g->input[i]) {
            st = kiln_error(KILN_ERR_FORMAT, "%s: graph: %s is empty", origin, what);
        } else if ((st = check_value_info(g->input[i], origin, what)) == KILN_OK &&
                   kiln_name_map_put(&ns, g->input[i]->name, 0) < 0) {   /* (an initializer may be an input too) */
            st = kiln_error(KILN_ERR_NOMEM, "%s: out of memory checking names", origin);
        }
    }
    for (size_t i = 0; i < g->n_node && st == KILN_OK; i++) {
        const Onnx__NodeProto *nd = g->node[i];
        if (!nd) {
            st = kiln_error(KILN_ERR_FORMAT, "%s: node %zu is empty", origin, i);
            break;
        }
        char node[KILN_ONNX_MAX_NAME + 32];
        if (*str(nd->name))
            snprintf(node, sizeof node, "%.*s", KILN_ONNX_MAX_NAME, nd->name);
        else
            snprintf(node, sizeof node, "#%zu", i);
        const char *op = str(nd->op_type), *domain = str(nd->domain);
        if (!*op) {
            st = kiln_error(KILN_ERR_FORMAT, "%s: node \"%s\": op_type: expected an operator, found none", origin, node);
            break;
        }
        if (*domain && strcmp(domain, "ai.onnx") != 0) {
            st = kiln_error(KILN_ERR_FORMAT, "%s: node \"%s\": %s: domain: expected the default (ai.onnx), found \"%.64s\"",
                            origin, node, op, domain);
            break;
        }
        for (size_t j = 0; j < nd->n_input && st == KILN_OK; j++) {
            const char *in = str(nd->input[j]);
            if (*in && kiln_name_map_get(&ns, in) < 0)   /* "" is an optional input left out */
                st = kiln_error(KILN_ERR_FORMAT, "%s: node \"%s\": %s: input %zu \"%.200s\": expected a graph input, an "
                                "initializer or an earlier node's output, found none (missing, or a cycle)", origin,
                                node, op, j, in);
        }
        if (st == KILN_OK)
            st = check_attributes(nd, origin, node);
        for (size_t j = 0; j < nd->n_output && st == KILN_OK; j++) {
            const char *out = str(nd->output[j]);
            int put;
            if (!*out)
                continue;   /* an optional output left out */
            if (strlen(out) > KILN_ONNX_MAX_NAME)
                st = kiln_error(KILN_ERR_FORMAT, "%s: node \"%s\": output %zu: name of %zu bytes, at most %d", origin,
                                node, j, strlen(out), KILN_ONNX_MAX_NAME);
            else if ((put = kiln_name_map_put(&ns, out, 0)) != 0)
                st = put < 0 ? kiln_error(KILN_ERR_NOMEM, "%s: out of memory checking names", origin)
                             : kiln_error(KILN_ERR_FORMAT, "%s: node \"%s\": %s: output \"%.200s\": expected a new "
                                          "name, found one already defined", origin, node, op, out);
        }
    }
    for (size_t i = 0; i < g->n_output && st == KILN_OK; i++) {
        snprintf(what, sizeof what, "output %zu", i);
        if (!g->output[i])
            st = kiln_error(KILN_ERR_FORMAT, "%s: graph: %s is empty", origin, what);
        else if ((st = check_value_info(g->output[i], origin, what)) == KILN_OK &&
                 kiln_name_map_get(&ns, g->output[i]->name) < 0)
            st = kiln_error(KILN_ERR_FORMAT, "%s: graph: output \"%.200s\": expected a value the graph defines, found "
                            "none", origin, g->output[i]->name);
    }
    kiln_name_map_free(&ns);
    return st;
}

kiln_onnx_model *kiln_onnx_read_buffer(const uint8_t *data, size_t len, const char *origin)
{
    if (len > KILN_ONNX_MAX_FILE) {
        kiln_error(KILN_ERR_FORMAT, "%s: expected at most %zu bytes, found %zu", origin, KILN_ONNX_MAX_FILE, len);
        return NULL;
    }
    kiln_onnx_model *m = calloc(1, sizeof *m);
    if (!m) {
        kiln_error(KILN_ERR_NOMEM, "out of memory reading %s", origin);
        return NULL;
    }
    snprintf(m->origin, sizeof m->origin, "%s", origin);
    m->proto = onnx__model_proto__unpack(NULL, len, data);
    const Onnx__ModelProto *p = m->proto;
    kiln_status st = KILN_OK;
    if (!p) {
        st = kiln_error(KILN_ERR_FORMAT, "%s: expected an ONNX model (a protobuf ModelProto), found bytes that do not "
                        "parse as one", origin);
    } else if (!p->has_ir_version || p->ir_version < 3 || p->ir_version > 10) {
        st = kiln_error(KILN_ERR_FORMAT, "%s: ir_version: expected 3..10, found %lld", origin,
                        p->has_ir_version ? (long long)p->ir_version : -1LL);
    } else if (!p->graph) {
        st = kiln_error(KILN_ERR_FORMAT, "%s: graph: expected one, found none", origin);
    } else {
        m->opset = -1;
        for (size_t i = 0; i < p->n_opset_import; i++) {
            const Onnx__OperatorSetIdProto *o = p->opset_import[i];
            const char *d = o ? str(o->domain) : "";
            if (o && (!*d || strcmp(d, "ai.onnx") == 0))
                m->opset = o->has_version && o->version >= 0 && o->version < 1000 ? (int)o->version : 0;
        }
        if (m->opset < KILN_ONNX_MIN_OPSET || m->opset > KILN_ONNX_MAX_OPSET)
            st = kiln_error(KILN_ERR_FORMAT, "%s: opset_import: expected the default domain at opset %d..%d, found %s%d",
                            origin, KILN_ONNX_MIN_OPSET, KILN_ONNX_MAX_OPSET, m->opset < 0 ? "none " : "",
                            m->opset < 0 ? 0 : m->opset);
        else if (p->n_functions)
            st = kiln_error(KILN_ERR_FORMAT, "%s: functions: model-local functions are not supported", origin);
        else
            st = check_graph(p->graph, origin);
    }
    if (st != KILN_OK) {
        kiln_onnx_free(m);
        return NULL;
    }
    return m;
}

uint8_t *kiln_onnx_file_bytes(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        kiln_error(KILN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    uint8_t *buf = NULL;
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0) {
        kiln_error(KILN_ERR_IO, "%s: cannot read its size", path);
    } else if ((size_t)size > KILN_ONNX_MAX_FILE) {
        kiln_error(KILN_ERR_FORMAT, "%s: expected at most %zu bytes, found %ld", path, KILN_ONNX_MAX_FILE, size);
    } else if (!(buf = malloc(size ? (size_t)size : 1))) {
        kiln_error(KILN_ERR_NOMEM, "%s: out of memory for %ld bytes", path, size);
    } else if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
        kiln_error(KILN_ERR_IO, "%s: short read", path);
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = buf ? (size_t)size : 0;
    return buf;
}

kiln_onnx_model *kiln_onnx_read(const char *path)
{
    size_t len;
    uint8_t *buf = kiln_onnx_file_bytes(path, &len);
    kiln_onnx_model *m = buf ? kiln_onnx_read_buffer(buf, len, path) : NULL;
    free(buf);
    return m;
}

void kiln_onnx_free(kiln_onnx_model *m)
{
    if (!m)
        return;
    if (m->proto)
        onnx__model_proto__free_unpacked(m->proto, NULL);
    free(m);
}

const Onnx__GraphProto *kiln_onnx_graph(const kiln_onnx_model *m) { return m->proto->graph; }
int kiln_onnx_opset(const kiln_onnx_model *m) { return m->opset; }
const char *kiln_onnx_origin(const kiln_onnx_model *m) { return m->origin; }
