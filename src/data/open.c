/* Opening a dataset split from a data spec: "fashion-mnist", DIR (IDX files or an image folder),
 * "npy:X,Y[,TX,TY]", "images:DIR" or "text:FILE". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "core/error.h"
#include "kiln/dataset.h"

#define SPEC_FORMS "fashion-mnist, a directory (IDX files or an image folder), " \
                   "npy:X.npy,Y.npy[,TEST_X.npy,TEST_Y.npy], images:DIR or text:FILE"

/* Whether s starts with prefix. */
static bool has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Whether dir holds an IDX images file of either split (raw or gzip). */
static bool holds_idx(const char *dir)
{
    static const char *const names[] = { "train-images-idx3-ubyte", "train-images-idx3-ubyte.gz",
                                         "t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz" };
    struct stat sb;
    size_t len = strlen(dir) + 32;
    char *path = malloc(len);
    bool found = false;
    for (size_t i = 0; path && !found && i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, len, "%s/%s", dir, names[i]);
        found = stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
    }
    free(path);
    return found;
}

/* Opens "npy:X,Y[,TX,TY]": the paths are split at commas. */
static kiln_status open_npy(const char *spec, bool train, kiln_dataset *out)
{
    char *list = strdup(spec + 4), *paths[4] = { 0 };
    int n = 1;
    bool empty = false;
    if (!list)
        return kiln_error(KILN_ERR_NOMEM, "data \"%s\": out of memory", spec);
    for (const char *p = list; (p = strchr(p, ',')) != NULL; p++)
        n++;
    if (n == 2 || n == 4) {
        char *p = list;
        for (int i = 0; i < n; i++) {
            char *comma = strchr(p, ',');
            if (comma)
                *comma = '\0';
            paths[i] = p;
            empty = empty || p[0] == '\0';
            p = comma ? comma + 1 : p;
        }
    }
    kiln_status st = KILN_OK;
    if ((n != 2 && n != 4) || empty)
        st = kiln_error(KILN_ERR_ARG, "data \"%s\": expected npy:X.npy,Y.npy or npy:X.npy,Y.npy,"
                        "TEST_X.npy,TEST_Y.npy (2 or 4 non-empty paths), found %s%d paths", spec,
                        empty ? "an empty one among " : "", n);
    else if (train)
        st = kiln_dataset_load_npy(paths[0], paths[1], out);
    else if (n == 4)
        st = kiln_dataset_load_npy(paths[2], paths[3], out);
    else
        out->kind = KILN_DATA_ARRAYS;   /* no test split: empty */
    free(list);
    return st;
}

/* Opens "text:FILE". */
static kiln_status open_text(const char *spec, const kiln_data_options *opt, bool train,
                             kiln_dataset *out)
{
    const char *path = spec + 5;
    int context = opt ? opt->context : 0;
    if (path[0] == '\0')
        return kiln_error(KILN_ERR_ARG, "data \"%s\": expected text:FILE, found no file name",
                          spec);
    if (context < 1)
        return kiln_error(KILN_ERR_ARG, "%s: context: expected a window of at least 1 byte "
                          "(--context N), found %d", path, context);
    return kiln_dataset_load_text(path, context, train, out);
}

kiln_status kiln_dataset_open(const char *spec, const kiln_data_options *opt, bool train,
                              kiln_dataset *out)
{
    struct stat sb;
    if (!out || !spec)
        return kiln_error(KILN_ERR_ARG, "kiln_dataset_open: expected a data spec and an output, "
                          "found NULL");
    memset(out, 0, sizeof *out);
    if (has_prefix(spec, "npy:"))
        return open_npy(spec, train, out);
    if (has_prefix(spec, "text:"))
        return open_text(spec, opt, train, out);
    if (has_prefix(spec, "images:"))
        return kiln_dataset_load_image_folder(spec + 7, opt, train, out);
    if (strcmp(spec, "fashion-mnist") == 0)
        return kiln_dataset_load(spec, train, out);
    if (stat(spec, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return kiln_error(KILN_ERR_IO, "data \"%s\": expected " SPEC_FORMS ", found %s", spec,
                          stat(spec, &sb) != 0 ? "no such directory" : "a file");
    if (holds_idx(spec))
        return kiln_dataset_load(spec, train, out);
    return kiln_dataset_load_image_folder(spec, opt, train, out);
}
