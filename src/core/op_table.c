/* The op table: one record per op. A new op is one enum value, one record here, its shape
 * inference (src/core/shape.c), its forward kernel (src/ops) and its backward (src/train). */
#include "core/op_table.h"
#include "ops/ops.h"

/* elementwise math, folded on constants (training keeps the input for backward) */
#define UNARY(nm) {nm, 1, 1, KILN_MEM_IN_PLACE, kiln_infer_same, kiln_unary_fwd, NULL, NULL, KILN_FOLD_CONST}
#define LEGACY(nm, lo, hi, mem) {nm, lo, hi, mem, kiln_infer_legacy, kiln_forward_legacy, NULL, NULL, KILN_FOLD_NEVER}

static const kiln_op_def defs[] = {
    [KILN_OP_INPUT] = {"input", 0, 0, KILN_MEM_OWN, NULL, NULL, NULL, NULL, KILN_FOLD_NEVER},
    [KILN_OP_DENSE] = LEGACY("dense", 1, 1, KILN_MEM_OWN),
    [KILN_OP_CONV2D] = LEGACY("conv2d", 1, 1, KILN_MEM_OWN),
    [KILN_OP_MAXPOOL2D] = LEGACY("maxpool2d", 1, 1, KILN_MEM_OWN),
    [KILN_OP_AVGPOOL2D] = LEGACY("avgpool2d", 1, 1, KILN_MEM_OWN),
    [KILN_OP_GLOBAL_AVGPOOL] = LEGACY("global_avgpool", 1, 1, KILN_MEM_OWN),
    [KILN_OP_RELU] = LEGACY("relu", 1, 1, KILN_MEM_IN_PLACE),
    [KILN_OP_LEAKY_RELU] = LEGACY("leaky_relu", 1, 1, KILN_MEM_IN_PLACE),
    [KILN_OP_SIGMOID] = LEGACY("sigmoid", 1, 1, KILN_MEM_IN_PLACE),
    [KILN_OP_TANH] = LEGACY("tanh", 1, 1, KILN_MEM_IN_PLACE),
    [KILN_OP_GELU] = LEGACY("gelu", 1, 1, KILN_MEM_IN_PLACE),
    [KILN_OP_SOFTMAX] = {"softmax", 1, 1, KILN_MEM_IN_PLACE, kiln_infer_softmax, kiln_softmax_fwd, NULL, NULL,
                         KILN_FOLD_NEVER},
    [KILN_OP_BATCHNORM] = {"batchnorm", 1, 1, KILN_MEM_IN_PLACE, kiln_infer_legacy, kiln_forward_legacy,
                           kiln_batchnorm_save_floats, NULL, KILN_FOLD_NEVER},
    [KILN_OP_DROPOUT] = {"dropout", 1, 1, KILN_MEM_IN_PLACE, kiln_infer_legacy, kiln_forward_legacy,
                         kiln_dropout_save_floats, NULL, KILN_FOLD_NEVER},
    [KILN_OP_FLATTEN] = LEGACY("flatten", 1, 1, KILN_MEM_VIEW),
    [KILN_OP_ADD] = {"add", 2, KILN_MAX_INPUTS, KILN_MEM_IN_PLACE, kiln_infer_broadcast, kiln_binary_fwd, NULL, NULL,
                     KILN_FOLD_CONST},
    [KILN_OP_CONCAT] = {"concat", 2, KILN_MAX_INPUTS, KILN_MEM_OWN, kiln_infer_concat, kiln_concat_fwd, NULL, NULL,
                        KILN_FOLD_CONST},
    [KILN_OP_PARAM] = {"param", 0, 0, KILN_MEM_OWN, kiln_infer_param, NULL, NULL, NULL, KILN_FOLD_NEVER},
    [KILN_OP_LINEAR] = {"linear", 1, 1, KILN_MEM_OWN, kiln_infer_linear, kiln_linear_fwd, NULL, NULL, KILN_FOLD_NEVER},
    [KILN_OP_MATMUL] = {"matmul", 2, 2, KILN_MEM_OWN, kiln_infer_matmul, kiln_matmul_fwd, NULL, NULL, KILN_FOLD_NEVER},
    [KILN_OP_LAYERNORM] = {"layernorm", 1, 1, KILN_MEM_OWN, kiln_infer_norm, kiln_norm_fwd, kiln_norm_save_floats,
                           NULL, KILN_FOLD_NEVER},
    [KILN_OP_RMSNORM] = {"rmsnorm", 1, 1, KILN_MEM_OWN, kiln_infer_norm, kiln_norm_fwd, kiln_norm_save_floats, NULL,
                         KILN_FOLD_NEVER},
    [KILN_OP_LOG_SOFTMAX] = {"log_softmax", 1, 1, KILN_MEM_IN_PLACE, kiln_infer_softmax, kiln_softmax_fwd, NULL,
                             NULL, KILN_FOLD_NEVER},
    /* a second input (an i64 const: the target shape, ONNX's rules) is resolved and dropped */
    [KILN_OP_RESHAPE] = {"reshape", 1, 2, KILN_MEM_VIEW, kiln_infer_reshape, NULL, NULL, NULL, KILN_FOLD_CONST},
    [KILN_OP_TRANSPOSE] = {"transpose", 1, 1, KILN_MEM_OWN, kiln_infer_transpose, kiln_transpose_fwd, NULL, NULL,
                           KILN_FOLD_CONST},
    [KILN_OP_SLICE] = {"slice", 1, 1, KILN_MEM_OWN, kiln_infer_slice, kiln_slice_fwd, NULL, NULL, KILN_FOLD_CONST},
    [KILN_OP_SUB] = {"sub", 2, 2, KILN_MEM_IN_PLACE, kiln_infer_broadcast, kiln_binary_fwd, NULL, NULL,
                     KILN_FOLD_CONST},
    [KILN_OP_MUL] = {"mul", 2, 2, KILN_MEM_IN_PLACE, kiln_infer_broadcast, kiln_binary_fwd, NULL, NULL,
                     KILN_FOLD_CONST},
    [KILN_OP_DIV] = {"div", 2, 2, KILN_MEM_IN_PLACE, kiln_infer_broadcast, kiln_binary_fwd, NULL, NULL,
                     KILN_FOLD_CONST},
    [KILN_OP_SILU] = {"silu", 1, 1, KILN_MEM_IN_PLACE, kiln_infer_same, kiln_activation_fwd, NULL, NULL,
                      KILN_FOLD_NEVER},
    [KILN_OP_HARD_SWISH] = {"hard_swish", 1, 1, KILN_MEM_IN_PLACE, kiln_infer_same, kiln_activation_fwd, NULL, NULL,
                            KILN_FOLD_NEVER},
    [KILN_OP_RELU6] = {"relu6", 1, 1, KILN_MEM_IN_PLACE, kiln_infer_same, kiln_activation_fwd, NULL, NULL,
                       KILN_FOLD_NEVER},
    [KILN_OP_EMBEDDING] = {"embedding", 1, 1, KILN_MEM_OWN, kiln_infer_embedding, kiln_embedding_fwd, NULL, NULL,
                           KILN_FOLD_NEVER},
    [KILN_OP_ATTENTION] = {"attention", 1, 3, KILN_MEM_OWN, kiln_infer_attention, kiln_attention_fwd,
                           kiln_attention_save_floats, kiln_attention_work_floats, KILN_FOLD_NEVER},
    [KILN_OP_MEAN] = {"mean", 1, 1, KILN_MEM_OWN, kiln_infer_reduce, kiln_reduce_fwd, NULL, NULL, KILN_FOLD_NEVER},
    [KILN_OP_SUM] = {"sum", 1, 1, KILN_MEM_OWN, kiln_infer_reduce, kiln_reduce_fwd, NULL, NULL, KILN_FOLD_NEVER},
    [KILN_OP_UPSAMPLE] = {"upsample", 1, 1, KILN_MEM_OWN, kiln_infer_upsample, kiln_upsample_fwd, NULL, NULL,
                          KILN_FOLD_NEVER},
    [KILN_OP_CONV_TRANSPOSE2D] = {"conv_transpose2d", 1, 1, KILN_MEM_OWN, kiln_infer_conv_transpose,
                                  kiln_conv_transpose_fwd, NULL, NULL, KILN_FOLD_NEVER},
    [KILN_OP_PAD] = {"pad", 1, 1, KILN_MEM_OWN, kiln_infer_pad, kiln_pad_fwd, NULL, NULL, KILN_FOLD_NEVER},
    /* constants: a const's kernel writes its values (as f32) for the readers that run */
    [KILN_OP_CONST] = {"const", 0, 0, KILN_MEM_OWN, kiln_infer_const, kiln_const_fwd, NULL, NULL, KILN_FOLD_NEVER},
    [KILN_OP_SHAPE] = {"shape", 1, 1, KILN_MEM_OWN, kiln_infer_shape, NULL, NULL, NULL, KILN_FOLD_ONLY},
    [KILN_OP_EQUAL] = {"equal", 2, 2, KILN_MEM_OWN, kiln_infer_broadcast, NULL, NULL, NULL, KILN_FOLD_ONLY},
    [KILN_OP_LESS] = {"less", 2, 2, KILN_MEM_OWN, kiln_infer_broadcast, NULL, NULL, NULL, KILN_FOLD_ONLY},
    [KILN_OP_GREATER] = {"greater", 2, 2, KILN_MEM_OWN, kiln_infer_broadcast, NULL, NULL, NULL, KILN_FOLD_ONLY},
    [KILN_OP_WHERE] = {"where", 3, 3, KILN_MEM_OWN, kiln_infer_broadcast, NULL, NULL, NULL, KILN_FOLD_ONLY},
    [KILN_OP_CAST] = {"cast", 1, 1, KILN_MEM_OWN, kiln_infer_cast, NULL, NULL, NULL, KILN_FOLD_ONLY},
    [KILN_OP_SQRT] = UNARY("sqrt"), [KILN_OP_EXP] = UNARY("exp"), [KILN_OP_LOG] = UNARY("log"),
    [KILN_OP_ABS] = UNARY("abs"), [KILN_OP_NEG] = UNARY("neg"), [KILN_OP_RECIPROCAL] = UNARY("reciprocal"),
    [KILN_OP_FLOOR] = UNARY("floor"), [KILN_OP_CEIL] = UNARY("ceil"), [KILN_OP_ROUND] = UNARY("round"),
    [KILN_OP_ERF] = UNARY("erf"), [KILN_OP_CLIP] = {"clip", 1, 1, KILN_MEM_IN_PLACE, kiln_infer_clip, kiln_unary_fwd, NULL, NULL,
                      KILN_FOLD_CONST},
    [KILN_OP_POW] = {"pow", 2, 2, KILN_MEM_IN_PLACE, kiln_infer_broadcast, kiln_binary_fwd, NULL, NULL,
                     KILN_FOLD_CONST},
    [KILN_OP_MIN] = {"min", 2, KILN_MAX_INPUTS, KILN_MEM_IN_PLACE, kiln_infer_broadcast, kiln_binary_fwd, NULL, NULL,
                     KILN_FOLD_CONST},
    [KILN_OP_MAX] = {"max", 2, KILN_MAX_INPUTS, KILN_MEM_IN_PLACE, kiln_infer_broadcast, kiln_binary_fwd, NULL, NULL,
                     KILN_FOLD_CONST},
    [KILN_OP_NOT] = {"not", 1, 1, KILN_MEM_OWN, kiln_infer_same, NULL, NULL, NULL, KILN_FOLD_ONLY},
};
_Static_assert(sizeof defs / sizeof defs[0] == KILN_OP_COUNT, "every op needs a record in the op table");

const kiln_op_def *kiln_op_def_of(kiln_op op)
{
    return &defs[op];
}

const char *kiln_op_name(kiln_op op)
{
    return (op >= 0 && op < KILN_OP_COUNT) ? defs[op].name : NULL;
}
