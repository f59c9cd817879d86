/* I2_S weights in the CUDA backend's device layout, I2G (described in bitnet/backends/cuda/kernels.cu): per row K/16
 * uint32 words, element 16w + 4j + i of a row in bits 8i + 2j of word w, as its code (code 3 read as 1, as the
 * CPU kernels read it). Done once at load, on the host, for the whole tensor.
 *
 * Sixteen consecutive elements 16g..16g+15 of plane l of an I2_S block of 128 are bits 6 - 2l of the block's
 * bytes 16g..16g+15, i.e. of four little-endian uint32 u_0..u_3 whose byte i holds element 4j + i of u_j; so
 * ((u_j >> (6 - 2l)) & 0x03030303) << 2j, OR-ed over j, is their I2G word. Words in tensor order are word
 * 8b + 2l + g of block b. */
#include <string.h>

#include "kernels.h"

void bn_i2g_pack(const uint8_t *i2s, int64_t w0, int64_t w1, uint32_t *out) {
    for (int64_t w = w0; w < w1; w++) {
        const int64_t block = w / 8, plane = w % 8 / 2, group = w % 2;
        uint32_t u[4], word = 0;
        memcpy(u, i2s + block * 32 + group * 16, sizeof u);
        for (int j = 0; j < 4; j++) {
            uint32_t v = (u[j] >> (6 - 2 * plane)) & 0x03030303u;
            v ^= (v & (v >> 1) & 0x01010101u) << 1;
            word |= v << (2 * j);
        }
        out[w] = word;   /* little-endian hosts only, as the rest of the loader */
    }
}
