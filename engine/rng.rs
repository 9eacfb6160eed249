//! Counter-based random numbers: Philox4x32-10 (Salmon et al., SC'11, "Random123").
//!
//! Every number is a pure function of `(seed, stream, index)`, so any element of any random
//! array can be produced independently, in any order, on any thread or device: a CUDA kernel
//! that evaluates the same function gets the same bits. Nothing here has state.
//!
//! Layout: the 64-bit `seed` is the Philox key; the 128-bit counter is
//! `[block lo, block hi, stream lo, stream hi]` (32-bit words), where `block = index / 4`.
//! One Philox call gives four 32-bit words; element `index` is word `index % 4` of its block.
//! `stream` separates independent uses (weight matrix *k*, dropout of layer *l*, shuffling …);
//! the numbering of streams belongs to the caller.
//!
//! Conversions:
//! - [`uniform_f32`]: `((x >> 8) + 1) · 2⁻²⁴`, in (0, 1] — exact in `f32`, like curand's
//!   `curand_uniform` range (0, 1].
//! - [`normal_f32`]: Box–Muller on the word pairs (0, 1) and (2, 3) of a block, evaluated in
//!   `f64` and rounded once to `f32` (lanes 0 and 2 take the cosine, 1 and 3 the sine).
//!   The `f64` `ln`/`sqrt`/`sin`/`cos` of a GPU agree with the CPU's to an ulp or so of `f64`,
//!   so the rounded `f32` almost always agree bit for bit; uniform draws always do.

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

#[inline(always)]
fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = a as u64 * b as u64;
    ((p >> 32) as u32, p as u32)
}

/// The Philox4x32 bijection with 10 rounds: 4 counter words and 2 key words to 4 words.
#[inline]
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let [mut c0, mut c1, mut c2, mut c3] = counter;
    let [mut k0, mut k1] = key;
    for round in 0..10 {
        if round > 0 {
            k0 = k0.wrapping_add(W0);
            k1 = k1.wrapping_add(W1);
        }
        let (hi0, lo0) = mulhilo(M0, c0);
        let (hi1, lo1) = mulhilo(M1, c2);
        (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0);
    }
    [c0, c1, c2, c3]
}

/// The four random words of block `block` of `stream` under `seed`.
#[inline]
pub fn random_block(seed: u64, stream: u64, block: u64) -> [u32; 4] {
    philox4x32_10(
        [
            block as u32,
            (block >> 32) as u32,
            stream as u32,
            (stream >> 32) as u32,
        ],
        [seed as u32, (seed >> 32) as u32],
    )
}

/// Random word number `index` of `stream` (word `index % 4` of block `index / 4`).
#[inline]
pub fn u32_at(seed: u64, stream: u64, index: u64) -> u32 {
    random_block(seed, stream, index / 4)[(index % 4) as usize]
}

/// A random 64-bit value: words 0 and 1 (lo, hi) of block `index` of `stream`
/// (for shuffle keys; this numbering is by block, not by word).
#[inline]
pub fn u64_at(seed: u64, stream: u64, index: u64) -> u64 {
    let w = random_block(seed, stream, index);
    w[0] as u64 | ((w[1] as u64) << 32)
}

/// Maps a random word to (0, 1]: `((x >> 8) + 1) · 2⁻²⁴`.
#[inline(always)]
pub fn word_to_uniform(x: u32) -> f32 {
    ((x >> 8) + 1) as f32 * (1.0 / 16_777_216.0)
}

/// Uniform number `index` of `stream`, in (0, 1].
#[inline]
pub fn uniform_f32(seed: u64, stream: u64, index: u64) -> f32 {
    word_to_uniform(u32_at(seed, stream, index))
}

/// The four uniform numbers `4·block .. 4·block + 3` of `stream`, in (0, 1].
#[inline]
pub fn uniform_f32_block(seed: u64, stream: u64, block: u64) -> [f32; 4] {
    random_block(seed, stream, block).map(word_to_uniform)
}

/// The four standard normal numbers `4·block .. 4·block + 3` of `stream`.
pub fn normal_f32_block(seed: u64, stream: u64, block: u64) -> [f32; 4] {
    let w = random_block(seed, stream, block);
    let (a0, a1) = box_muller(w[0], w[1]);
    let (b0, b1) = box_muller(w[2], w[3]);
    [a0, a1, b0, b1]
}

/// Standard normal number `index` of `stream` (see the module notes).
#[inline]
pub fn normal_f32(seed: u64, stream: u64, index: u64) -> f32 {
    normal_f32_block(seed, stream, index / 4)[(index % 4) as usize]
}

/// Box–Muller: `u1 = (x + 1)·2⁻³² ∈ (0, 1]`, `u2 = y·2⁻³² ∈ [0, 1)`,
/// `r = √(−2 ln u1)`, returns `(r cos 2πu2, r sin 2πu2)` rounded to `f32`.
fn box_muller(x: u32, y: u32) -> (f32, f32) {
    const TWO_M32: f64 = 1.0 / 4_294_967_296.0;
    let u1 = (x as f64 + 1.0) * TWO_M32;
    let u2 = y as f64 * TWO_M32;
    let r = (-2.0 * u1.ln()).sqrt();
    let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
    ((r * c) as f32, (r * s) as f32)
}

/// Fills `out[i]` with uniform number `first + i` of `stream`, in (0, 1].
pub fn fill_uniform(out: &mut [f32], seed: u64, stream: u64, first: u64) {
    fill_by_block(out, first, |block| uniform_f32_block(seed, stream, block));
}

/// Fills `out[i]` with standard normal number `first + i` of `stream`.
pub fn fill_normal(out: &mut [f32], seed: u64, stream: u64, first: u64) {
    fill_by_block(out, first, |block| normal_f32_block(seed, stream, block));
}

/// Writes element `first + i` of a block-generated sequence into `out[i]`, one generator call
/// per block of four.
fn fill_by_block(out: &mut [f32], first: u64, gen: impl Fn(u64) -> [f32; 4]) {
    let mut i = 0usize;
    while i < out.len() {
        let index = first + i as u64;
        let block = gen(index / 4);
        let lane = (index % 4) as usize;
        let take = (4 - lane).min(out.len() - i);
        out[i..i + take].copy_from_slice(&block[lane..lane + take]);
        i += take;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known-answer vectors of Random123 (`kat_vectors`, philox4x32_10).
    #[test]
    fn philox_known_answers() {
        assert_eq!(
            philox4x32_10([0; 4], [0; 2]),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
                [0xa409_3822, 0x299f_31d0]
            ),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    #[test]
    fn uniform_range_and_moments() {
        assert_eq!(word_to_uniform(0), 1.0 / 16_777_216.0);
        assert_eq!(word_to_uniform(u32::MAX), 1.0);
        let n = 200_000u64;
        let (mut sum, mut sq) = (0.0f64, 0.0f64);
        for i in 0..n {
            let u = uniform_f32(7, 3, i) as f64;
            assert!(u > 0.0 && u <= 1.0);
            sum += u;
            sq += u * u;
        }
        let mean = sum / n as f64;
        let var = sq / n as f64 - mean * mean;
        assert!((mean - 0.5).abs() < 0.005, "{mean}");
        assert!((var - 1.0 / 12.0).abs() < 0.002, "{var}");
    }

    #[test]
    fn normal_moments() {
        let n = 200_000u64;
        let (mut sum, mut sq) = (0.0f64, 0.0f64);
        for i in 0..n {
            let x = normal_f32(11, 0, i) as f64;
            sum += x;
            sq += x * x;
        }
        let mean = sum / n as f64;
        let var = sq / n as f64 - mean * mean;
        assert!(mean.abs() < 0.01, "{mean}");
        assert!((var - 1.0).abs() < 0.02, "{var}");
    }

    #[test]
    fn fills_match_elementwise_functions_at_any_offset() {
        for first in [0u64, 1, 2, 3, 5, 1 << 33] {
            let mut u = vec![0.0; 11];
            let mut g = vec![0.0; 11];
            fill_uniform(&mut u, 42, 9, first);
            fill_normal(&mut g, 42, 9, first);
            for i in 0..11 {
                assert_eq!(u[i], uniform_f32(42, 9, first + i as u64));
                assert_eq!(g[i], normal_f32(42, 9, first + i as u64));
            }
        }
        // Seeds and streams give different sequences.
        assert_ne!(u32_at(1, 0, 0), u32_at(2, 0, 0));
        assert_ne!(u32_at(1, 0, 0), u32_at(1, 1, 0));
        assert_ne!(u64_at(1, 0, 0), u64_at(1, 0, 1));
    }
}
