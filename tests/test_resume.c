/* Checkpoints: a run killed with SIGKILL and resumed ends with the same weights, bit for bit, as
 * an uninterrupted run; a diverging run stops with a clear message and keeps its last good
 * checkpoint. Drives the kiln CLI on Fashion-MNIST. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "check.h"
#include "kiln/dataset.h"
#include "io/safetensors.h"

static const char *cli;

static const char spec_text[] =
    "# small model with every kind of state: batchnorm statistics, dropout, adam moments\n"
    "input 1 28 28\n"
    "conv2d 8 3 pad=1\n"
    "batchnorm\n"
    "relu\n"
    "maxpool2d 2\n"
    "flatten\n"
    "dropout 0.3\n"
    "dense 10\n";

/* a 2,000-image slice of Fashion-MNIST keeps the runs short (4 epochs of 63 steps) */
#define COMMON "--data resume_data --epochs 4 --batch 32 --seed 7 --threads 2 --opt adam --lr 0.002 " \
               "--crop 2 --flip --quiet"
#define TOTAL_STEPS 252

static void write_be32(FILE *f, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8),
                          (unsigned char)v};
    fwrite(b, 1, 4, f);
}

/* Writes the first n examples of d as raw IDX image and label files under dir with prefix. */
static void write_idx_slice(const kiln_dataset *d, int n, const char *dir, const char *prefix)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte", dir, prefix);
    FILE *f = fopen(path, "wb");
    write_be32(f, 0x803);
    write_be32(f, (uint32_t)n);
    write_be32(f, (uint32_t)d->h);
    write_be32(f, (uint32_t)d->w);
    fwrite(d->images, 1, (size_t)n * d->h * d->w, f);
    fclose(f);
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte", dir, prefix);
    f = fopen(path, "wb");
    write_be32(f, 0x801);
    write_be32(f, (uint32_t)n);
    fwrite(d->labels, 1, (size_t)n, f);
    fclose(f);
}

static int make_data(void)
{
    kiln_dataset tr = {0}, te = {0};
    if (kiln_dataset_load("fashion-mnist", true, &tr) || kiln_dataset_load("fashion-mnist", false, &te)) {
        fprintf(stderr, "%s\n", kiln_last_error());
        return -1;
    }
    mkdir("resume_data", 0755);
    write_idx_slice(&tr, 2000, "resume_data", "train");
    write_idx_slice(&te, 1000, "resume_data", "t10k");
    kiln_dataset_free(&tr);
    kiln_dataset_free(&te);
    return 0;
}

/* Starts the CLI with a shell command line in a child; returns its pid. */
static pid_t start(const char *args)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "exec %s train resume_test.kiln %s >/dev/null 2>resume_test.err", cli, args);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Waits for the child; on a failure exit shows what it printed on stderr. */
static int wait_exit(pid_t pid)
{
    int status;
    waitpid(pid, &status, 0);
    int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (rc != 0 && rc != 128 + SIGKILL) {
        char buf[1024];
        FILE *f = fopen("resume_test.err", "r");
        size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        buf[n] = 0;
        if (f)
            fclose(f);
        fprintf(stderr, "(exit %d; stderr: %s)\n", rc, buf);
    }
    return rc;
}

/* Step recorded in a checkpoint, or -1. */
static long ckpt_step(const char *path)
{
    kiln_st_file *f = kiln_st_open(path);
    if (!f)
        return -1;
    const char *s = kiln_st_meta(f, "kiln.checkpoint.global_step");
    long v = s ? atol(s) : -1;
    kiln_st_close(f);
    return v;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void check_same_weights(const char *a, const char *b)
{
    kiln_st_file *fa = kiln_st_open(a), *fb = kiln_st_open(b);
    CHECK(fa && fb, "cannot open %s or %s: %s", a, b, kiln_last_error());
    if (!fa || !fb)
        goto done;
    CHECK(kiln_st_count(fa) == kiln_st_count(fb), "tensor counts differ");
    int differ = 0;
    for (int i = 0; i < kiln_st_count(fa); i++) {
        const kiln_st_tensor *ta = kiln_st_at(fa, i), *tb = kiln_st_find(fb, ta->name);
        if (!tb || tb->nbytes != ta->nbytes || memcmp(ta->data, tb->data, ta->nbytes) != 0) {
            fprintf(stderr, "tensor %s differs\n", ta->name);
            differ++;
        }
    }
    CHECK(differ == 0, "%d tensors differ between the uninterrupted and the resumed run", differ);
done:
    kiln_st_close(fa);
    kiln_st_close(fb);
}

static void test_kill_and_resume(void)
{
    remove("resume_ck.safetensors");
    /* the uninterrupted run */
    int rc = wait_exit(start(COMMON " --out resume_a.safetensors"));
    CHECK(rc == 0, "uninterrupted run failed (%d)", rc);
    /* the same run, killed once its checkpoint has passed step 300 */
    pid_t pid = start(COMMON " --out resume_b.safetensors --checkpoint resume_ck.safetensors --checkpoint-every 20");
    long step = -1;
    for (int i = 0; i < 600000 && step < 80; i++) {
        sleep_ms(5);
        step = ckpt_step("resume_ck.safetensors");
    }
    kill(pid, SIGKILL);
    rc = wait_exit(pid);
    CHECK(rc == 128 + SIGKILL, "the run was not killed mid-way (status %d, checkpoint step %ld)", rc, step);
    long at = ckpt_step("resume_ck.safetensors");
    CHECK(at >= 80 && at < TOTAL_STEPS && at % 20 == 0, "checkpoint after the kill is at step %ld", at);
    printf("killed at checkpoint step %ld, resuming\n", at);
    rc = wait_exit(start(COMMON " --out resume_b.safetensors --resume resume_ck.safetensors --checkpoint-every 20"));
    CHECK(rc == 0, "resumed run failed (%d)", rc);
    check_same_weights("resume_a.safetensors", "resume_b.safetensors");
    CHECK(ckpt_step("resume_ck.safetensors") == TOTAL_STEPS, "final checkpoint step %ld", ckpt_step("resume_ck.safetensors"));
    /* resuming with another seed is refused */
    rc = wait_exit(start("--data resume_data --epochs 4 --batch 32 --seed 8 --opt adam --quiet "
                         "--out resume_c.safetensors --resume resume_ck.safetensors"));
    CHECK(rc != 0, "resuming with a different seed was accepted");
}

static void test_divergence(void)
{
    remove("resume_nan.safetensors");
    int rc = wait_exit(start("--data resume_data --epochs 1 --batch 32 --seed 1 --opt sgd --lr 1e7 --quiet "
                             "--out resume_nan_model.safetensors --checkpoint resume_nan.safetensors "
                             "--checkpoint-every 1"));
    CHECK(rc != 0, "a diverging run exited 0");
    char msg[2048] = "";
    FILE *f = fopen("resume_test.err", "r");
    if (f) {
        size_t n = fread(msg, 1, sizeof msg - 1, f);
        msg[n] = 0;
        fclose(f);
    }
    CHECK(strstr(msg, "NaN") || strstr(msg, "infinite"), "no clear divergence message: %s", msg);
    CHECK(strstr(msg, "resume_nan.safetensors") != NULL, "message does not name the last good checkpoint: %s", msg);
    long at = ckpt_step("resume_nan.safetensors");
    CHECK(at >= 0, "the last good checkpoint is unreadable: %s", kiln_last_error());
    struct stat st;
    CHECK(stat("resume_nan_model.safetensors", &st) != 0, "a diverged run wrote its model file");
}

int main(void)
{
    cli = getenv("KILN_CLI");
    if (!cli) {
        fprintf(stderr, "KILN_CLI is not set (ctest sets it)\n");
        return 1;
    }
    FILE *f = fopen("resume_test.kiln", "w");
    fputs(spec_text, f);
    fclose(f);
    if (make_data() != 0)
        return 1;
    test_kill_and_resume();
    test_divergence();
    return check_report();
}
