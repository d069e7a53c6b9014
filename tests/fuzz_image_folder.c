/* libFuzzer target for image-folder datasets. Input: a mode byte (bit 0: 3 channels, not 1;
 * bits 1-3: height - 1; bits 4-6: width - 1; bit 7: the test split), then entries of a slot
 * byte, a 2-byte little-endian length and that many bytes, each written as a file at the slot's
 * path (class folders, train/ and test/ splits, dot files, nested folders, stray files) under a
 * scratch folder (under /tmp, removed at exit) that kiln_dataset_load_image_folder then reads.
 * On success the dataset's invariants are checked and every example gathered; on failure it must
 * be empty. */
#define _GNU_SOURCE   /* nftw's FTW_DEPTH and FTW_PHYS */
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "fuzz_data_check.h"

static const char *const slots[16] = {
    "a/1.png", "a/2.jpg", "b/1", "b/.hidden", "c/sub/x.png", "stray", "train/a/1",
    "train/b/2", "train/b/3", "test/a/1", "test/z/1", "test/b/1", "a/3", "d/e", "train/a/x/y",
    "test/.z/1",
};

static char root[64];   /* the scratch folder, made once per process */

/* nftw callback removing one entry. */
static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Removes the scratch folder (at exit). */
static void remove_root(void)
{
    nftw(root, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* Writes root/run/rel (creating its folders). */
static void write_slot(const char *rel, const uint8_t *p, size_t n)
{
    char path[256];
    snprintf(path, sizeof path, "%s/run/%s", root, rel);
    for (char *s = path + strlen(root) + 1; *s; s++)
        if (*s == '/') {
            *s = '\0';
            mkdir(path, 0700);
            *s = '/';
        }
    FILE *fp = fopen(path, "wb");
    if (fp) {
        fwrite(p, 1, n, fp);
        fclose(fp);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char dir[80];
    if (size < 1)
        return 0;
    if (!root[0]) {
        snprintf(root, sizeof root, "/tmp/kiln_fuzz_folder_XXXXXX");
        require(mkdtemp(root) != NULL);
        atexit(remove_root);
    }
    snprintf(dir, sizeof dir, "%s/run", root);
    nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    mkdir(dir, 0700);
    kiln_data_options opt = { .c = data[0] & 1 ? 3 : 1, .h = 1 + (data[0] >> 1 & 7),
                              .w = 1 + (data[0] >> 4 & 7) };
    bool train = !(data[0] & 128);
    for (size_t pos = 1; pos + 3 <= size;) {
        size_t n = (size_t)data[pos + 1] | (size_t)data[pos + 2] << 8;
        n = n < size - pos - 3 ? n : size - pos - 3;
        write_slot(slots[data[pos] & 15], data + pos + 3, n);
        pos += 3 + n;
    }
    kiln_dataset d;
    if (kiln_dataset_load_image_folder(dir, &opt, train, &d) == KILN_OK) {
        require(d.kind == KILN_DATA_ARRAYS && d.c == opt.c && d.h == opt.h && d.w == opt.w);
        require(d.n_classes >= 1 && (train ? d.n >= 1 : d.n >= 0));
        require(d.n == 0 || (d.images == d.inputs && d.images != NULL));
        check_dataset(&d);
    } else {
        check_failed(&d);
        require(strncmp(kiln_last_error(), root, strlen(root)) == 0);
    }
    kiln_dataset_free(&d);
    return 0;
}
