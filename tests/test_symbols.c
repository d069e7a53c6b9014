/* libkiln, the inference library, holds no training code: no symbol of the autodiff tape, the
 * backward kernels, losses, optimizers, augmentation or the trainer. libkiln_train does (so the
 * check can fail). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"

static const char *const training_words[] = {"backward", "tape", "optim_", "loss", "trainer", "augment",
                                              "kiln_train", NULL};

/* Counts defined text symbols of lib whose name contains a training word. */
static int count_training_symbols(const char *lib, int *total, bool show)
{
    char cmd[1024], line[512];
    snprintf(cmd, sizeof cmd, "nm --defined-only -g '%s' 2>/dev/null", lib);
    FILE *p = popen(cmd, "r");
    int n = 0;
    *total = 0;
    if (!p)
        return -1;
    while (fgets(line, sizeof line, p)) {
        char *name = strrchr(line, ' ');
        if (!name || !strchr(line, ' ') || strlen(line) < 19)
            continue;
        (*total)++;
        for (int i = 0; training_words[i]; i++)
            if (strstr(name, training_words[i])) {
                if (show)
                    fprintf(stderr, "training symbol in %s: %s", lib, name + 1);
                n++;
                break;
            }
    }
    pclose(p);
    return n;
}

int main(void)
{
    const char *lib = getenv("KILN_LIB"), *train = getenv("KILN_TRAIN_LIB");
    CHECK(lib && train, "KILN_LIB and KILN_TRAIN_LIB must be set (ctest sets them)");
    if (!lib || !train)
        return check_report();
    int total, total_train;
    int in_lib = count_training_symbols(lib, &total, true);
    int in_train = count_training_symbols(train, &total_train, false);
    printf("libkiln: %d global symbols, %d training; libkiln_train: %d global symbols, %d training\n", total, in_lib,
           total_train, in_train);
    CHECK(total > 20, "nm found only %d symbols in %s", total, lib);
    CHECK(in_lib == 0, "libkiln defines %d training symbols", in_lib);
    CHECK(in_train >= 10, "libkiln_train defines only %d training symbols: the check is blind", in_train);
    return check_report();
}
