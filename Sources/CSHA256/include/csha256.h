// SHA-256 block compression, with the x86 SHA extensions when the CPU has them.
#pragma once
#include <stddef.h>
#include <stdint.h>

/// Compresses `blocks` 64-byte blocks of `data` into `state` (8 words, FIPS 180-4 order),
/// with SHA-NI when the CPU has it.
void frost_sha256_blocks(uint32_t state[8], const uint8_t *data, size_t blocks);

/// The same in portable C (what runs without SHA-NI; tests compare the two).
void frost_sha256_blocks_portable(uint32_t state[8], const uint8_t *data, size_t blocks);
