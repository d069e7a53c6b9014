/* Image-folder datasets: one subfolder per class, its images decoded (PNG, JPEG, PGM, PPM),
 * resized to the model's input shape and stored as uint8; train/ and test/ subfolders as splits. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "core/error.h"
#include "data/layout.h"
#include "kiln/tensor_io.h"

/* A growing list of strings (owned). */
typedef struct {
    char **v;
    size_t n, cap;
} name_list;

/* The images of a split: paths and class indices, in order. */
typedef struct {
    name_list paths;
    int *labels;
    size_t labels_cap;
} file_list;

/* Frees a list's strings and array. */
static void names_free(name_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* Appends a copy of s (or takes it when owned). */
static kiln_status names_add(name_list *l, char *s, const char *where)
{
    if (!s)
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory listing the folder", where);
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            free(s);
            return kiln_error(KILN_ERR_NOMEM, "%s: out of memory listing the folder", where);
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = s;
    return KILN_OK;
}

/* "dir/name" in a new string (NULL when out of memory). */
static char *join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *s = malloc(a + b + 2);
    if (s) {
        memcpy(s, dir, a);
        s[a] = '/';
        memcpy(s + a + 1, name, b + 1);
    }
    return s;
}

/* Whether path is a directory (following links). */
static bool is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* What is at path, for a message: "a file", or why nothing is. */
static const char *path_text(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? "a file" : strerror(errno);
}

/* Orders strings by their bytes. */
static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lists the names in dir of subfolders (dirs true) or of other entries (dirs false), skipping
 * names that start with '.', sorted by their bytes. */
static kiln_status list_dir(const char *dir, bool dirs, name_list *out)
{
    memset(out, 0, sizeof *out);
    DIR *dp = opendir(dir);
    if (!dp)
        return kiln_error(KILN_ERR_IO, "%s: cannot open the folder: %s", dir, strerror(errno));
    kiln_status st = KILN_OK;
    struct dirent *e;
    while (!st && (errno = 0, e = readdir(dp)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char *path = join(dir, e->d_name);
        bool listed = !path || is_dir(path) == dirs;
        if (listed)
            st = names_add(out, path ? strdup(e->d_name) : NULL, dir);
        free(path);
    }
    if (!st && errno)
        st = kiln_error(KILN_ERR_IO, "%s: cannot list the folder: %s", dir, strerror(errno));
    closedir(dp);
    if (st)
        names_free(out);
    else if (out->n)
        qsort(out->v, out->n, sizeof *out->v, by_name);
    return st;
}

/* Checks the options give a shape images can be decoded and resized to. */
static kiln_status check_options(const char *dir, const kiln_data_options *opt)
{
    if (!opt || (opt->c != 1 && opt->c != 3) || opt->h < 1 || opt->w < 1 ||
        opt->h > KILN_IMAGE_MAX_SIDE || opt->w > KILN_IMAGE_MAX_SIDE ||
        (int64_t)opt->c * opt->h * opt->w > INT_MAX)
        return kiln_error(KILN_ERR_ARG, "%s: image folder: expected the model's input shape to "
                          "decode and resize to (c 1 or 3, h and w 1..%d), found %d x %d x %d",
                          dir, KILN_IMAGE_MAX_SIDE, opt ? opt->c : 0, opt ? opt->h : 0,
                          opt ? opt->w : 0);
    return KILN_OK;
}

/* Adds the images of one class folder with class index label. */
static kiln_status add_class(const char *folder, int label, file_list *files)
{
    name_list names;
    kiln_status st = list_dir(folder, false, &names);
    if (st)
        return st;
    if (names.n == 0)
        st = kiln_error(KILN_ERR_FORMAT, "%s: class folder: expected at least one image, found "
                        "none", folder);
    for (size_t i = 0; !st && i < names.n; i++) {
        if (files->paths.n == files->labels_cap) {
            size_t cap = files->labels_cap ? files->labels_cap * 2 : 64;
            int *l = realloc(files->labels, cap * sizeof *l);
            if (!l) {
                st = kiln_error(KILN_ERR_NOMEM, "%s: out of memory listing images", folder);
                break;
            }
            files->labels = l;
            files->labels_cap = cap;
        }
        files->labels[files->paths.n] = label;
        st = names_add(&files->paths, join(folder, names.v[i]), folder);
    }
    if (!st && files->paths.n > INT_MAX)
        st = kiln_error(KILN_ERR_FORMAT, "%s: expected at most %d images, found more", folder,
                        INT_MAX);
    names_free(&names);
    return st;
}

/* Lists the images of split folder root whose class folders must be among classes. */
static kiln_status list_images(const char *root, const name_list *classes, file_list *files)
{
    name_list present;
    kiln_status st = list_dir(root, true, &present);
    for (size_t i = 0; !st && i < present.n; i++) {
        char **hit = bsearch(&present.v[i], classes->v, classes->n, sizeof *classes->v, by_name);
        char *folder = join(root, present.v[i]);
        if (!folder)
            st = kiln_error(KILN_ERR_NOMEM, "%s: out of memory", root);
        else if (!hit)
            st = kiln_error(KILN_ERR_FORMAT, "%s: class folder: expected one of the %zu training "
                            "classes (first '%s'), found '%s'", folder, classes->n,
                            classes->v[0], present.v[i]);
        else
            st = add_class(folder, (int)(hit - classes->v), files);
        free(folder);
    }
    if (!st && present.n == 0)
        st = kiln_error(KILN_ERR_FORMAT, "%s: expected one subfolder per class, found none",
                        root);
    names_free(&present);
    return st;
}

/* Decodes one image, resizes it to opt's shape and stores it as uint8 at dst. */
static kiln_status load_image(const char *path, const kiln_data_options *opt, uint8_t *dst)
{
    kiln_tensor_f32 img, sized;
    kiln_status st = kiln_image_read(path, opt->c, &img);
    if (st)
        return st;
    if (img.dims[1] != opt->h || img.dims[2] != opt->w) {
        st = kiln_tensor_resize(&img, opt->h, opt->w, &sized);
        kiln_tensor_f32_free(&img);
        if (st)
            return kiln_error(st, "%s: resizing to %d x %d: %s", path, opt->h, opt->w,
                              kiln_last_error());
        img = sized;
    }
    for (size_t i = 0; i < img.numel; i++) {
        float v = img.data[i] * 255.0f;
        dst[i] = (uint8_t)(v <= 0.0f ? 0 : v >= 255.0f ? 255 : lrintf(v));
    }
    kiln_tensor_f32_free(&img);
    return KILN_OK;
}

/* Fills in the dataset's description: (c, h, w) uint8 inputs, one class index each. */
static void describe(kiln_dataset *d, const kiln_data_options *opt, int n_classes)
{
    const int64_t dims[3] = { opt->c, opt->h, opt->w };
    d->kind = KILN_DATA_ARRAYS;
    d->n_classes = n_classes;
    kiln_layout_set(&d->input, 3, dims, KILN_DT_U8, KILN_DT_F32);
    kiln_layout_set(&d->target, 0, NULL, KILN_DT_I32, KILN_DT_I32);
    kiln_layout_model_shape(d);
}

/* Decodes every listed image into a new dataset. */
static kiln_status load_files(const char *root, const file_list *files,
                              const kiln_data_options *opt, int n_classes, kiln_dataset *out)
{
    kiln_dataset d = { 0 };
    describe(&d, opt, n_classes);
    size_t n = files->paths.n, per = d.input.numel;
    d.n = (int)n;
    if (n > SIZE_MAX / per || !(d.inputs = malloc(n * per)) ||
        !(d.targets = malloc(n * sizeof(int32_t)))) {
        kiln_dataset_free(&d);
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory for %zu images of %zu bytes", root,
                          n, per);
    }
    d.images = d.inputs;
    kiln_status st = KILN_OK;
    for (size_t i = 0; !st && i < n; i++) {
        st = load_image(files->paths.v[i], opt, (uint8_t *)d.inputs + i * per);
        ((int32_t *)d.targets)[i] = files->labels[i];
    }
    if (!st)
        st = kiln_layout_copy_labels(&d, root);
    if (st) {
        kiln_dataset_free(&d);
        return st;
    }
    *out = d;
    return KILN_OK;
}

/* Loads one split: classes come from class_root, images from root (NULL: an empty split). */
static kiln_status load_split(const char *class_root, const char *root,
                              const kiln_data_options *opt, kiln_dataset *out)
{
    name_list classes;
    file_list files = { 0 };
    kiln_status st = list_dir(class_root, true, &classes);
    if (st)
        return st;
    if (classes.n == 0 || classes.n > INT_MAX)
        st = kiln_error(KILN_ERR_FORMAT, "%s: expected one subfolder per class, found %s",
                        class_root, classes.n ? "too many" : "none");
    else if (!root)
        describe(out, opt, (int)classes.n);
    else if ((st = list_images(root, &classes, &files)) == KILN_OK)
        st = load_files(root, &files, opt, (int)classes.n, out);
    names_free(&files.paths);
    free(files.labels);
    names_free(&classes);
    return st;
}

kiln_status kiln_dataset_load_image_folder(const char *dir, const kiln_data_options *opt,
                                           bool train, kiln_dataset *out)
{
    if (!out || !dir)
        return kiln_error(KILN_ERR_ARG, "kiln_dataset_load_image_folder: %s is NULL",
                          out ? "dir" : "out");
    memset(out, 0, sizeof *out);
    kiln_status st = check_options(dir, opt);
    if (st)
        return st;
    if (!is_dir(dir))
        return kiln_error(KILN_ERR_IO, "%s: image folder: expected a directory, found %s", dir,
                          path_text(dir));
    char *base = strdup(dir);   /* without trailing slashes, for the paths in messages */
    for (size_t n = base ? strlen(base) : 0; n > 1 && base[n - 1] == '/'; n--)
        base[n - 1] = '\0';
    char *train_dir = base ? join(base, "train") : NULL;
    char *test_dir = base ? join(base, "test") : NULL;
    if (!train_dir || !test_dir) {
        st = kiln_error(KILN_ERR_NOMEM, "%s: out of memory", dir);
    } else if (is_dir(train_dir) && is_dir(test_dir)) {
        st = load_split(train_dir, train ? train_dir : test_dir, opt, out);
    } else {
        st = load_split(base, train ? base : NULL, opt, out);
    }
    free(base);
    free(train_dir);
    free(test_dir);
    return st;
}
