/* kiln: the command line. train -> save -> eval/run/info. */
#include <stdio.h>
#include <string.h>
#include "cli.h"
#include "core/error.h"

static const char usage[] =
    "usage: kiln COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  train SPEC.kiln   train a model spec; writes MODEL.safetensors, a metrics log and a plot\n"
    "      --data fashion-mnist|DIR|npy:X,Y[,TX,TY]|images:DIR|text:FILE (see README)  --context N\n"
    "      --epochs N (5)  --batch N (64)  --seed N (0)  --threads N (2)\n"
    "      --opt sgd|momentum|nesterov|adam|adamw (momentum)  --lr X  --momentum X (0.9)\n"
    "      --beta1 X --beta2 X  --wd X  --clip NORM  --schedule constant|step|cosine\n"
    "      --warmup STEPS  --step-size STEPS --gamma X  --min-lr X  --crop PAD  --flip\n"
    "      --out PATH  --metrics PATH  --plot PATH  --checkpoint PATH  --checkpoint-every STEPS\n"
    "      --resume PATH  --init-seed N  --steps N (the run's length; overrides --epochs)  --max-steps N\n"
    "      --loss mse|l1|huber|bce (float targets; class targets take cross-entropy)  --huber-delta X\n"
    "      --quiet  --json\n"
    "      --selective-backprop  --sb-beta X (3)  --sb-history N (1024)  --sb-stale EPOCHS (0)\n"
    "      --sb-scorer auto|fp32|int8 (auto)  --sb-min-rank X (0.95)\n"
    "  eval MODEL        test-set accuracy and loss   --data  --batch N  --threads N  --json\n"
    "  run MODEL [INPUT] classify a .npy, PNG/JPEG/PGM/PPM or IDX input (default: the first --count\n"
    "                    test examples of --data)\n"
    "      --data  --count N (5)  --top K (3)  --json\n"
    "      --input NAME=X.npy ... --output NAME=Y.npy ...   any model: .npy tensors in and out\n"
    "  info MODEL|SPEC   layers, shapes, parameters, FLOPs   --json\n"
    "  quantize MODEL    post-training int8 quantisation   --out PATH  --calib-data (as --data)\n"
    "      --calib N (1000)  --method auto|minmax|percentile  --weights int8|fp16  --json\n"
    "  import MODEL.onnx an ONNX model as a Kiln model file   --out PATH  (every MODEL may also be .onnx)\n"
    "  export MODEL      the model as an ONNX file (opset 17; int8 in QDQ form)   --onnx PATH\n"
    "  bench MODEL       inference latency p50/p99, throughput, arena, RSS   --batch N  --threads N\n"
    "                    --profile (time per layer)  --gemm-conv (no Winograd)  --no-amx\n"
    "      --runs N  --warmup N  --json\n"
    "  generate MODEL    sample bytes from a byte-level causal model with a KV cache\n"
    "      --prompt TEXT  --tokens N (200)  --temperature T (0.8; 0: greedy)  --top-k K  --seed N  --json\n"
    "  plot LOG[=LABEL]...  several runs' metrics logs on one chart   --out SVG  --title T  --by-time\n"
    "  help              this text\n";

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "train") == 0)
        return cmd_train(argc - 2, argv + 2);
    if (strcmp(cmd, "eval") == 0)
        return cmd_eval(argc - 2, argv + 2);
    if (strcmp(cmd, "info") == 0)
        return cmd_info(argc - 2, argv + 2);
    if (strcmp(cmd, "run") == 0)
        return cmd_run(argc - 2, argv + 2);
    if (strcmp(cmd, "quantize") == 0)
        return cmd_quantize(argc - 2, argv + 2);
    if (strcmp(cmd, "import") == 0)
        return cmd_import(argc - 2, argv + 2);
    if (strcmp(cmd, "export") == 0)
        return cmd_export(argc - 2, argv + 2);
    if (strcmp(cmd, "bench") == 0)
        return cmd_bench(argc - 2, argv + 2);
    if (strcmp(cmd, "generate") == 0)
        return cmd_generate(argc - 2, argv + 2);
    if (strcmp(cmd, "plot") == 0)
        return cmd_plot(argc - 2, argv + 2);
    fprintf(stderr, "kiln: unknown command '%s'\n%s", cmd, usage);
    return 2;
}
