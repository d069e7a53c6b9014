/* Kiln: public API of libkiln, the inference side (tensor core, graph IR, forward kernels,
 * model I/O). Nothing here trains; see kiln_train.h for libkiln_train. */
#ifndef KILN_KILN_H
#define KILN_KILN_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KILN_MAX_INPUTS 8   /* most inputs one node takes (concat) */
#define KILN_MAX_PARAMS 4   /* most tensors one node owns (bn: weight, bias, mean, var) */
#define KILN_NAME_LEN 48    /* longest node name, with the terminating NUL */
#define KILN_MAX_RANK 6     /* most dims of a tensor's per-example shape (the batch not counted) */
#define KILN_MAX_OUTPUTS 16 /* most outputs a graph declares */

/* Status codes returned by every fallible call; details in kiln_last_error(). */
typedef enum {
    KILN_OK = 0,
    KILN_ERR_IO,      /* a file could not be opened, read or written */
    KILN_ERR_FORMAT,  /* a file or spec is malformed */
    KILN_ERR_SHAPE,   /* shapes do not agree */
    KILN_ERR_ARG,     /* a bad argument */
    KILN_ERR_NOMEM,   /* an allocation failed */
    KILN_ERR_NUMERIC  /* a NaN or infinity appeared */
} kiln_status;

/* The message of the last error on this thread (never NULL). */
const char *kiln_last_error(void);

/* Element types of tensors: in graphs (f32 for training; u8/i8/i32 in quantised runtime graphs;
 * i64 and bool constants for shape arithmetic), datasets and model files. */
typedef enum {
    KILN_DT_F32, KILN_DT_F16, KILN_DT_I8, KILN_DT_U8, KILN_DT_I32, KILN_DT_I64, KILN_DT_BOOL,
    KILN_DT_COUNT
} kiln_dtype;

/* Bytes per element of t, or 0 if t is out of range. */
size_t kiln_dtype_size(kiln_dtype t);
/* The name of t as safetensors spells it ("F32", "BOOL"), or NULL if t is out of range. */
const char *kiln_dtype_name(kiln_dtype t);

/* Operators of the graph IR (docs/IR.md); each has one record in the op table. */
typedef enum {
    KILN_OP_INPUT, KILN_OP_DENSE, KILN_OP_CONV2D, KILN_OP_MAXPOOL2D, KILN_OP_AVGPOOL2D,
    KILN_OP_GLOBAL_AVGPOOL, KILN_OP_RELU, KILN_OP_LEAKY_RELU, KILN_OP_SIGMOID, KILN_OP_TANH,
    KILN_OP_GELU, KILN_OP_SOFTMAX, KILN_OP_BATCHNORM, KILN_OP_DROPOUT, KILN_OP_FLATTEN,
    KILN_OP_ADD, KILN_OP_CONCAT,
    /* the general N-d ops */
    KILN_OP_PARAM,        /* a learned tensor of any shape, one copy for the whole batch */
    KILN_OP_LINEAR,       /* y = x W^T + b over the last axis, any rank */
    KILN_OP_MATMUL,       /* batched matrix product over the last two axes, leading ones broadcast */
    KILN_OP_LAYERNORM,    /* normalise over the last axis, then scale and shift */
    KILN_OP_RMSNORM,      /* divide by the root mean square over the last axis, then scale */
    KILN_OP_LOG_SOFTMAX,  /* log of softmax over an axis */
    KILN_OP_RESHAPE,      /* the same elements under another per-example shape (a view) */
    KILN_OP_TRANSPOSE,    /* permutes the per-example axes */
    KILN_OP_SLICE,        /* start:end:step along one axis */
    KILN_OP_SUB, KILN_OP_MUL, KILN_OP_DIV,   /* elementwise, NumPy broadcasting (add too) */
    KILN_OP_SILU, KILN_OP_HARD_SWISH, KILN_OP_RELU6,
    KILN_OP_EMBEDDING,    /* rows of a table gathered by int32 index: (...) -> (..., width) */
    KILN_OP_ATTENTION,    /* multi-head scaled dot-product attention over (tokens, width) */
    KILN_OP_MEAN, KILN_OP_SUM,               /* reductions over a set of axes */
    KILN_OP_UPSAMPLE,     /* (c, h, w) images resized by nearest or bilinear sampling */
    KILN_OP_CONV_TRANSPOSE2D, /* the transposed convolution (PyTorch's ConvTranspose2d, groups 1) */
    KILN_OP_PAD,          /* a constant border on any per-example axes */
    KILN_OP_CONST,        /* a constant tensor (f32, i64 or bool) held by the graph, unbatched */
    KILN_OP_SHAPE,        /* the i64 constant of an input's per-example dims (folded when added) */
    KILN_OP_EQUAL, KILN_OP_LESS, KILN_OP_GREATER, /* bool comparisons, NumPy broadcasting (constants only) */
    KILN_OP_WHERE,        /* where(cond, a, b), elementwise with broadcasting (constants only) */
    KILN_OP_CAST,         /* converts among f32, i64 and bool (constants only) */
    /* elementwise math (f32 at run time; folded on constants) */
    KILN_OP_SQRT, KILN_OP_EXP, KILN_OP_LOG, KILN_OP_ABS, KILN_OP_NEG, KILN_OP_RECIPROCAL,
    KILN_OP_FLOOR, KILN_OP_CEIL, KILN_OP_ROUND,  /* round: halves to even, as ONNX */
    KILN_OP_ERF,
    KILN_OP_CLIP,         /* clamps to [lo, hi] */
    KILN_OP_POW, KILN_OP_MIN, KILN_OP_MAX,   /* elementwise, NumPy broadcasting */
    KILN_OP_NOT,          /* logical not of a bool (constants only) */
    KILN_OP_COUNT
} kiln_op;

/* The spec keyword of an op ("conv2d"), or NULL if out of range. */
const char *kiln_op_name(kiln_op op);

/* Attributes of a layer; fields an op does not use are ignored. */
typedef struct {
    int units;           /* dense: out features; conv2d: out channels */
    int kernel[2];       /* conv/pool window (h, w) */
    int stride[2];       /* conv/pool stride; 0 means 1 for conv, window for pool */
    int pad[2];          /* zero padding (h, w) */
    int dilation[2];     /* conv dilation; 0 means 1 */
    int groups;          /* conv groups; 0 means 1 (= in channels gives depthwise) */
    bool no_bias;        /* dense/conv2d without bias */
    float alpha;         /* leaky_relu slope, dropout probability */
    float eps;           /* batchnorm epsilon; 0 means 1e-5 */
    float momentum;      /* batchnorm running-stat momentum; 0 means 0.1 (PyTorch) */
    kiln_op act;         /* activation fused into the output of dense, conv2d, batchnorm or add
                          * (inference graphs; relu, leaky_relu with alpha, sigmoid, tanh, gelu);
                          * KILN_OP_INPUT (0) for none */
    int axis;            /* softmax, log_softmax, concat, slice: per-example axis (negative:
                          * from the end); 0 is the channel axis of images */
    int heads;           /* attention: heads (the width splits into heads x head size) */
    bool causal;         /* attention: a query sees no key after it */
    int rank;            /* reshape, param, const: rank of shape[]; transpose: of perm[] */
    int shape[KILN_MAX_RANK]; /* reshape (one entry may be -1: inferred), param, const: the shape */
    int perm[KILN_MAX_RANK];  /* transpose: output axis i is input axis perm[i] */
    int start, end, step;     /* slice: along axis; end 0 means the axis' length; step 0 means 1 */
    unsigned axes;       /* mean, sum: bit i set reduces per-example axis i (bit 8 + k - 1: axis -k,
                          * resolved by shape inference) */
    bool keepdims;       /* mean, sum: keep reduced axes as 1 */
    int vocab;           /* embedding: rows of the table (units: its width) */
    int mode;            /* upsample: 0 nearest, 1 bilinear, 2 bicubic; pad: 0 constant, 1 reflect
                          * (the edge not repeated), 2 edge (repeated) */
    int size[2];         /* upsample: output (h, w); 0: by scale */
    float scale[2];      /* upsample: factors (h, w) when size is 0 */
    int coord;           /* upsample: where output pixels sample: 0 the mode's own (nearest
                          * asymmetric, bilinear and bicubic half-pixel), 1 half-pixel centres,
                          * 2 asymmetric (o * r), 3 align-corners, 4 PyTorch's half-pixel (0 for
                          * an output of one pixel) */
    int rounding;        /* upsample nearest: 0 floor, 1 halves down, 2 halves up, 3 ceil */
    float cubic_a;       /* upsample bicubic: the kernel's coefficient a; 0 means -0.75 */
    bool exclude;        /* upsample bicubic: taps outside the image weigh 0 (the rest renormalised)
                          * instead of repeating the edge */
    int out_pad[2];      /* conv_transpose2d: output padding (h, w) */
    int pads[2 * KILN_MAX_RANK]; /* pad: before for every axis, then after (ONNX order) */
    float value;         /* pad: the border's value */
    float lo, hi;        /* clip: the range kept (lo <= hi) */
    float std;           /* param init: normal with this deviation; 0 means zeros */
    kiln_dtype dtype;    /* const: its element type (F32, I64 or BOOL); cast: the target type */
    const void *values;  /* const: rank/shape's numel values (int64_t for I64 and BOOL (0 or 1), float
                          * for F32; NULL: zeros), copied by kiln_graph_add; afterwards an I64/BOOL
                          * const's points at the graph's copy, an F32 const's is NULL (its values
                          * are its tensor "value") */
} kiln_attrs;

/* A dataflow graph of layers with inferred shapes and the parameters it owns. */
typedef struct kiln_graph kiln_graph_t;

/* An empty graph. */
kiln_graph_t *kiln_graph_create(void);
/* Frees a graph and every parameter it owns. */
void kiln_graph_free(kiln_graph_t *g);
/* Adds the input node, per-example shape (c,h,w); h = w = 1 and c = n gives a vector. Returns
 * its node id or -1. */
int kiln_graph_input(kiln_graph_t *g, int c, int h, int w);
/* Adds a named graph input of a dtype (F32, or I32 for token indices) and a per-example shape
 * of rank 0..KILN_MAX_RANK; any number, anywhere before their readers. Returns its id or -1. */
int kiln_graph_input_nd(kiln_graph_t *g, const char *name, kiln_dtype dtype, int rank, const int *dims);
/* The number of input nodes; their ids in order into ids (may be NULL; up to the count). */
int kiln_graph_inputs(const kiln_graph_t *g, int *ids);
/* The number of input nodes. */
int kiln_graph_input_count(const kiln_graph_t *g);
/* Declares the graph's outputs (any nodes, 1..KILN_MAX_OUTPUTS, no repeats), replacing the
 * default (the last node). */
kiln_status kiln_graph_set_outputs(kiln_graph_t *g, const int *ids, int n);
/* The number of outputs (1 unless declared) and their ids into ids (may be NULL). */
int kiln_graph_outputs(const kiln_graph_t *g, int *ids);
/* Adds a layer taking the given node ids; infers its shape. Returns the new id or -1. */
int kiln_graph_add(kiln_graph_t *g, kiln_op op, const int *inputs, int n_inputs,
                   const kiln_attrs *attrs, const char *name);
/* Splits node input along axis into n parts of the given sizes (summing to the axis' length):
 * one slice node per part, named NAME.0, NAME.1, ... (ids into ids, may be NULL). Returns n, or
 * -1 with the parts added before the error left in g. */
int kiln_graph_split(kiln_graph_t *g, int input, int axis, const int *sizes, int n, const char *name, int *ids);
/* Nodes in the graph (ids are 0..n-1, topologically ordered). */
int kiln_graph_size(const kiln_graph_t *g);
/* The id of the (first) output node: the last node unless outputs were declared. */
int kiln_graph_output(const kiln_graph_t *g);
/* Per-example output shape of a node: returns its rank (0..KILN_MAX_RANK) and writes its dims
 * into out (entries past the rank are 1). */
int kiln_graph_shape(const kiln_graph_t *g, int node, int out[KILN_MAX_RANK]);
/* Elements per example of a node's output. */
size_t kiln_graph_numel(const kiln_graph_t *g, int node);
/* KILN_OK if every index of x (batch examples of I32 input node `input`) is inside the
 * vocabulary of each embedding reading it; else an error naming the input, the example and the
 * position. */
kiln_status kiln_graph_check_indices(const kiln_graph_t *g, int input, const int32_t *x, int batch);
/* Trainable parameter count. */
size_t kiln_graph_param_count(const kiln_graph_t *g);
/* Every trainable parameter, contiguous (kiln_graph_param_count floats), owned by the graph. */
float *kiln_graph_params(kiln_graph_t *g);
/* Forward FLOPs per example (multiply-add = 2). */
double kiln_graph_flops(const kiln_graph_t *g);
/* Fills parameters with PyTorch's default init (Kaiming-uniform a=sqrt(5) and its bias rule;
 * batchnorm weight 1, bias 0) from a seeded generator. */
void kiln_graph_init_params(kiln_graph_t *g, uint64_t seed);
/* Serialises the graph back to spec text; caller frees the string. */
char *kiln_graph_to_spec(const kiln_graph_t *g);
/* Prints one line per layer: name, op, shape, parameters. */
void kiln_graph_print(const kiln_graph_t *g, void *file);

/* Parses a model spec (one layer per line, '#' comments). NULL on error; the message names
 * origin (a file name for messages), line and column. */
kiln_graph_t *kiln_spec_parse(const char *text, const char *origin);
/* Reads and parses a spec file. */
kiln_graph_t *kiln_spec_load(const char *path);

/* Saves graph (spec in metadata) and parameters as safetensors, atomically. extra_meta is a
 * NULL-terminated key, value, key, value... list of strings added to __metadata__ (may be NULL). */
kiln_status kiln_graph_save(const kiln_graph_t *g, const char *path, const char *const *extra_meta);
/* Loads a model file written by kiln_graph_save, validating every field (or imports an ONNX file:
 * a path ending in ".onnx", see kiln_graph_import_onnx). NULL on error. */
kiln_graph_t *kiln_graph_load(const char *path);
/* Imports an ONNX model file (opset 11-17) as a graph with its weights (docs/ONNX.md): the first
 * dim of every graph input is the batch. NULL on error, with a message naming the file, the node,
 * the op and the attribute. */
kiln_graph_t *kiln_graph_import_onnx(const char *path);

/* A trained model prepared for inference: its graph optimised at load (batchnorm folded into
 * the conv/dense before it, dropout removed, activations fused, flatten as a view) with the
 * weights it owns. Read-only once created: one model serves many sessions on many threads. */
typedef struct kiln_model kiln_model_t;
/* One thread's means to run a model: the static activation arena and scratch space. */
typedef struct kiln_session kiln_session_t;

/* Session settings; zeroes give the defaults. */
typedef struct {
    int max_batch;        /* largest batch a run takes; 0 means 1 */
    int threads;          /* OpenMP threads a run uses; 0 means 1 */
    bool gemm_conv;       /* every fp32 convolution by im2col + GEMM (default: 3x3 stride-1
                           * ones by Winograd F(2x2, 3x3) where the CPU has AVX-512) */
    bool profile;         /* time every node of every run (kiln_session_node_seconds) */
} kiln_session_options;

/* Loads a model file (see kiln_graph_load; an ONNX file when the path ends in ".onnx") and
 * optimises it for inference. NULL on error. */
kiln_model_t *kiln_model_load(const char *path);
/* A model from a graph (copied; g stays the caller's); optimize=false keeps the graph as trained
 * (eval-mode batchnorm, identity dropout), the reference the optimised form is tested against. */
kiln_model_t *kiln_model_create(const kiln_graph_t *g, bool optimize);
/* Refreshes an optimised fp32 model's weights from g, the graph it was created from (same
 * structure, new parameter values: a model being trained), without allocating. No session on
 * m may be running meanwhile. */
kiln_status kiln_model_update(kiln_model_t *m, const kiln_graph_t *g);
/* Frees a model; every session on it must be freed first. */
void kiln_model_free(kiln_model_t *m);
/* The graph the model runs (after optimisation). */
const kiln_graph_t *kiln_model_graph(const kiln_model_t *m);
/* A session with its arena planned for opt->max_batch (opt may be NULL). */
kiln_session_t *kiln_session_create(const kiln_model_t *m, const kiln_session_options *opt);
/* Frees a session. */
void kiln_session_free(kiln_session_t *s);
/* Runs batch examples: one buffer per graph input in id order (batch x numel, f32 or int32 for
 * I32 inputs, whose indices are checked), one per output (batch x numel f32; numel for an
 * unbatched output; NULL skips it). Allocates nothing. */
kiln_status kiln_session_run_all(kiln_session_t *s, const void *const *inputs, int batch, float *const *outputs);
/* kiln_session_run_all for a model with one input and one output (NCHW fp32 images, say). */
kiln_status kiln_session_run(kiln_session_t *s, const float *input, int batch, float *output);
/* How int8 quantisation picks each activation's range from calibration data. */
typedef enum {
    KILN_CALIBRATE_AUTO,        /* both below; keeps the one whose outputs agree best with fp32 */
    KILN_CALIBRATE_MINMAX,      /* the observed minimum and maximum */
    KILN_CALIBRATE_PERCENTILE   /* the 0.01th and 99.99th percentiles (clips rare outliers) */
} kiln_calibration;

/* Post-training static int8 quantisation of an fp32 model of one input: weights symmetric per
 * output channel, activations per tensor (u8 with a zero point) from n_calib calibration inputs
 * (the input's layout: f32 values, or i32 token ids). conv2d (groups 1), dense, linear and max
 * pooling run in int8 (a linear quantises its fp32 input rows on the way in and writes fp32);
 * other ops in fp32. NULL on error. */
kiln_model_t *kiln_model_quantize(const kiln_model_t *m, const void *calib, int n_calib, kiln_calibration method);
/* Re-quantises an int8 model's weights from m, the fp32 model it was quantised from, after m's
 * weights changed (kiln_model_update), keeping the calibrated activation ranges. Allocates only
 * its scratch, on the first call. The fp32 tensors of qm's int8 layers (in kiln_model_graph)
 * keep their values from quantisation: int8 runs and saving use the quantised weights. */
kiln_status kiln_model_requantize(kiln_model_t *qm, const kiln_model_t *m);
/* Writes model m as an ONNX file (opset 17; the batch a symbolic first dim "N"; I32 inputs as
 * INT32; docs/ONNX.md), atomically: an int8 model in QDQ form with its own scales, zero points and
 * rounding. An op with no ONNX form (avgpool2d with padding, ...) is refused by name. */
kiln_status kiln_model_export_onnx(const kiln_model_t *m, const char *path);
/* The calibration a quantised model used ("minmax", "percentile"), or NULL for fp32 models. */
const char *kiln_model_calibration(const kiln_model_t *m);
/* Saves a model (fp32 or int8) as safetensors, atomically; fp16_weights stores an fp32 model's
 * weights as F16 (half the size). extra_meta as in kiln_graph_save. */
kiln_status kiln_model_save(const kiln_model_t *m, const char *path, bool fp16_weights, const char *const *extra_meta);
/* Bytes of the activation arena (all activations of a run at max_batch). */
size_t kiln_session_arena_bytes(const kiln_session_t *s);
/* Bytes of per-thread scratch space (im2col matrices). */
size_t kiln_session_scratch_bytes(const kiln_session_t *s);
/* Most activation bytes alive at any one step: the lower bound for any arena. */
size_t kiln_session_peak_live_bytes(const kiln_session_t *s);
/* The kernel node `node` of the model's optimised graph (kiln_model_graph) runs in this session:
 * "winograd", "im2col+gemm", "depthwise", "gemv", "gemm", "int8 <kernel>" for convolutions and
 * dense layers; "fused (conv)" for an int8 max pool its conv computes; the op's name otherwise. */
const char *kiln_session_node_kernel(const kiln_session_t *s, int node);
/* Seconds spent in node `node` over the runs since the session was created or last reset; 0
 * unless the session was created with options.profile. */
double kiln_session_node_seconds(const kiln_session_t *s, int node);
/* Zeroes the per-node times. */
void kiln_session_profile_reset(kiln_session_t *s);

/* Incremental decoding of a causal sequence model (one int32 token input of T positions, every
 * attention causal and packed): one position per step with a KV cache, holding the past
 * positions' keys and values and one position's activations, never a training forward's. */
typedef struct kiln_decoder kiln_decoder_t;
/* A decoder for model m (kept by the caller; its weights are copied). NULL with an error naming
 * the node when some op mixes positions. */
kiln_decoder_t *kiln_decoder_create(const kiln_model_t *m);
/* Frees a decoder. */
void kiln_decoder_free(kiln_decoder_t *d);
/* Feeds the token at the next position and writes the output at that position (the logits of
 * the token after it). Allocates nothing. */
kiln_status kiln_decoder_step(kiln_decoder_t *d, int32_t token, float *logits);
/* Empties the cache: the next step is position 0. */
void kiln_decoder_reset(kiln_decoder_t *d);
/* Positions filled so far. */
int kiln_decoder_position(const kiln_decoder_t *d);
/* The positions the model was built for (T). */
int kiln_decoder_context(const kiln_decoder_t *d);

/* Sets the worker thread count of OpenMP and BLAS. */
void kiln_set_threads(int n);

#ifdef __cplusplus
}
#endif
#endif
