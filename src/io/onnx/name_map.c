/* Names to ints: open addressing with linear probing over FNV-1a hashes, at most half full. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "io/onnx/name_map.h"

static size_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return (size_t)h;
}

/* The slot of key, or the empty slot where it would go (cap > 0, never full). */
static size_t slot(const kiln_name_map *m, const char *key)
{
    size_t i = hash(key) & (m->cap - 1);
    while (m->key[i] && strcmp(m->key[i], key) != 0)
        i = (i + 1) & (m->cap - 1);
    return i;
}

int kiln_name_map_get(const kiln_name_map *m, const char *key)
{
    if (!m->cap)
        return -1;
    size_t i = slot(m, key);
    return m->key[i] ? m->val[i] : -1;
}

/* Doubles the table (or makes the first one), rehashing every key. */
static int grow(kiln_name_map *m)
{
    size_t cap = m->cap ? 2 * m->cap : 64;
    kiln_name_map bigger = {calloc(cap, sizeof(char *)), malloc(cap * sizeof(int)), cap, m->n};
    if (!bigger.key || !bigger.val) {
        free(bigger.key);
        free(bigger.val);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++)
        if (m->key[i]) {
            size_t j = slot(&bigger, m->key[i]);
            bigger.key[j] = m->key[i];
            bigger.val[j] = m->val[i];
        }
    kiln_name_map_free(m);
    *m = bigger;
    return 0;
}

int kiln_name_map_put(kiln_name_map *m, const char *key, int val)
{
    if (2 * (m->n + 1) > m->cap && grow(m) != 0)
        return -1;
    size_t i = slot(m, key);
    if (m->key[i])
        return 1;
    m->key[i] = key;
    m->val[i] = val;
    m->n++;
    return 0;
}

void kiln_name_map_free(kiln_name_map *m)
{
    free(m->key);
    free(m->val);
    *m = (kiln_name_map){0};
}
