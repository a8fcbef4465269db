/* engine/rng.h - counter-based Gaussian noise: the same numbers from (seed, chunk, draw) on any
 * machine, in any thread order, and in the Python reference (tools/flipbook_ref).
 *
 * Every noise tensor of a stream is a pure function of the stream's seed, the chunk index and
 * the draw number (0 = the chunk's initial noise, k >= 1 = the re-noise before denoising step
 * k). Element pair j of the flat tensor comes from splitmix64(key + j) through Box-Muller in
 * double precision, so any slice can be generated independently and a stream's frames depend
 * only on (seed, chunk), never on the thread count or on what other streams did.
 *
 * Thread-safety: pure functions; no state.
 */
#ifndef FLIPBOOK_ENGINE_RNG_H
#define FLIPBOOK_ENGINE_RNG_H

#include <stddef.h>
#include <stdint.h>

/* splitmix64 finaliser of x + golden gamma (all arithmetic mod 2^64). */
uint64_t fb_splitmix64(uint64_t x);

/* The key of one noise tensor: splitmix64(seed) ^ splitmix64((chunk << 8) | draw). */
uint64_t fb_rng_key(uint64_t seed, uint64_t chunk, unsigned draw);

/* Fills out[0..n) with standard normal floats for (seed, chunk, draw). Elements 2j and 2j+1
 * come from counter j; an odd last element uses only the cosine half. */
void fb_rng_normal(uint64_t seed, uint64_t chunk, unsigned draw, float *out, size_t n);

/* Same values for elements [first, first + n) of the tensor: lets threads split one draw. */
void fb_rng_normal_range(uint64_t key, size_t first, float *out, size_t n);

#endif
