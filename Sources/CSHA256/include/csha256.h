// SHA-256 block compression with the x86 SHA extensions, when the CPU has them.
#pragma once
#include <stddef.h>
#include <stdint.h>

/// Whether frost_sha256_blocks may be called (x86-64 with SHA-NI and SSE4.1).
int frost_sha256_accelerated(void);

/// Compresses `blocks` 64-byte blocks of `data` into `state` (8 words, FIPS 180-4 order).
void frost_sha256_blocks(uint32_t state[8], const uint8_t *data, size_t blocks);
