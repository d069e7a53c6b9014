/* The C API end to end: build the reference MLP in code, train it for one epoch on Fashion-MNIST
 * with the tape and an optimizer (no trainer), save it, load it back with the inference library
 * and evaluate it. usage: train_mlp [OUT.safetensors] */
#include <stdio.h>
#include <stdlib.h>
#include <kiln/kiln.h>
#include <kiln/kiln_train.h>

int main(int argc, char **argv)
{
    const char *out = argc > 1 ? argv[1] : "mlp_capi.safetensors";
    kiln_dataset train = {0}, test = {0};
    if (kiln_dataset_load("fashion-mnist", true, &train) || kiln_dataset_load("fashion-mnist", false, &test)) {
        fprintf(stderr, "%s\n", kiln_last_error());
        return 1;
    }
    kiln_graph_t *g = kiln_graph_create();
    kiln_graph_input(g, 1, 28, 28);
    kiln_graph_add(g, KILN_OP_FLATTEN, NULL, 0, NULL, NULL);
    kiln_graph_add(g, KILN_OP_DENSE, NULL, 0, &(kiln_attrs){.units = 256}, "fc1");
    kiln_graph_add(g, KILN_OP_RELU, NULL, 0, NULL, NULL);
    kiln_graph_add(g, KILN_OP_DENSE, NULL, 0, &(kiln_attrs){.units = 128}, "fc2");
    kiln_graph_add(g, KILN_OP_RELU, NULL, 0, NULL, NULL);
    kiln_graph_add(g, KILN_OP_DENSE, NULL, 0, &(kiln_attrs){.units = 10}, "fc3");
    kiln_graph_init_params(g, 0);
    enum { B = 64 };
    kiln_tape_t *tape = kiln_tape_create(g, B, false, 0);
    kiln_optim_t *opt = kiln_optim_create(&(kiln_optim_config){.kind = KILN_OPT_MOMENTUM, .lr = 0.01f},
                                          kiln_graph_param_count(g));
    float *x = malloc(sizeof(float) * B * 784), dlogits[B * 10];
    int idx[B], y[B];
    double loss_sum = 0;
    int steps = train.n / B;
    for (int s = 0; s < steps; s++) {   /* one epoch in file order, for brevity */
        for (int i = 0; i < B; i++)
            idx[i] = s * B + i;
        kiln_dataset_gather(&train, idx, B, x, y);
        const float *logits = kiln_tape_forward(tape, x, B, true);
        loss_sum += kiln_loss_softmax_ce(logits, y, B, 10, dlogits, NULL);
        kiln_tape_backward(tape, dlogits);
        kiln_optim_step(opt, kiln_graph_params(g), kiln_tape_param_grads(tape), 0.01f);
    }
    if (kiln_graph_save(g, out, NULL) != KILN_OK) {
        fprintf(stderr, "%s\n", kiln_last_error());
        return 1;
    }
    kiln_model_t *m = kiln_model_load(out);   /* the inference side: optimised, planned */
    float loss, acc;
    if (!m || kiln_evaluate(m, &test, 500, &loss, &acc) != KILN_OK) {
        fprintf(stderr, "%s\n", kiln_last_error());
        return 1;
    }
    printf("trained %d steps, mean train loss %.4f; %s: test accuracy %.2f%%\n", steps, loss_sum / steps, out,
           100 * acc);
    kiln_model_free(m);
    free(x);
    kiln_optim_free(opt);
    kiln_tape_free(tape);
    kiln_graph_free(g);
    kiln_dataset_free(&train);
    kiln_dataset_free(&test);
    return 0;
}
