/* Names to ints for the ONNX reader and importer: open addressing over FNV-1a hashes, growing as
 * needed, so a graph of a million values is read and imported in linear time. The keys are not
 * copied (they live in the parsed model). */
#ifndef KILN_IO_ONNX_NAME_MAP_H
#define KILN_IO_ONNX_NAME_MAP_H

#include <stddef.h>
#include "kiln/kiln.h"

/* The map; zero-initialised is an empty map. Owns its arrays, not the keys. */
typedef struct {
    const char **key;
    int *val;
    size_t cap, n;
} kiln_name_map;

/* The value stored for key, or -1. */
int kiln_name_map_get(const kiln_name_map *m, const char *key);
/* Stores key -> val: 0 when key was new, 1 when it was there already (its value is then kept),
 * -1 when out of memory. */
int kiln_name_map_put(kiln_name_map *m, const char *key, int val);
/* Frees the map's arrays (the map is empty again). */
void kiln_name_map_free(kiln_name_map *m);

#endif
