/*
 * Scratch arena of an execution context: bump allocation out of chunks that come from
 * the backend's allocator (device memory on CUDA). Everything handed out stays valid
 * until ms_arena_reset. Growing adds a chunk and never moves memory already handed
 * out; a reset rewinds and, when the last pass needed several chunks, replaces them
 * with one chunk of their total size, so steady-state serving allocates nothing.
 */
#ifndef MS_ARENA_H
#define MS_ARENA_H

#include <stddef.h>

#include "kernels/backend.h"

enum { MS_ARENA_ALIGN = 256 };

/* first_chunk_bytes: size of the first chunk (0: a default of 16 MiB). */
ms_arena *ms_arena_create(ms_backend *be, size_t first_chunk_bytes);
void ms_arena_destroy(ms_arena *a);
/* MS_ARENA_ALIGN-aligned block of bytes (>= 1 byte is reserved for bytes == 0);
 * NULL when the backend is out of memory. */
void *ms_arena_alloc(ms_arena *a, size_t bytes);
void ms_arena_reset(ms_arena *a);
/* Bytes handed out since the last reset, and bytes held in chunks. */
size_t ms_arena_used(const ms_arena *a);
size_t ms_arena_capacity(const ms_arena *a);
int ms_arena_chunk_count(const ms_arena *a);
/* How many times the arena asked the backend for memory (steady state: constant). */
size_t ms_arena_backend_allocs(const ms_arena *a);

#endif
