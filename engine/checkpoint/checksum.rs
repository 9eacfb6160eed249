//! The checksum of a model file's data ([`checksum`]), computed incrementally
//! ([`Checksum`]) so that a model streamed to the file a piece at a time gets the same value
//! as one held whole.

use super::Model;

/// A 64-bit checksum of a model's data: each weight's layer names, matrix and bias, in order,
/// then every extra (names, tensors, scalars, strings). Floats count by their bits (so
/// `-0.0 ≠ 0.0`), and each array's length is mixed in. The descriptor's attributes are not
/// covered. Not cryptographic: it catches corruption, not tampering.
pub fn checksum(model: &Model) -> u64 {
    let mut h = Checksum::new();
    for w in &model.weights {
        h.text(&w.input_layer);
        h.text(&w.output_layer);
        h.floats(&w.data);
        h.floats(&w.bias);
    }
    h.batch_norm(model);
    for (name, t) in &model.extras.tensors {
        h.text(name);
        h.floats(t);
    }
    h.extras_rest(model);
    h.value()
}

/// [`checksum`]'s state, fed in its order: an array of floats either whole
/// ([`Checksum::floats`]) or as its length then consecutive pieces of any sizes
/// ([`Checksum::floats_begin`], [`Checksum::floats_piece`], [`Checksum::floats_end`]).
#[derive(Clone, Debug)]
pub(crate) struct Checksum {
    h: u64,
    /// The first float of an odd-length piece, waiting for its pair.
    pending: Option<u32>,
}

/// A multiply–xorshift mix per 64-bit word (after SplitMix64's finaliser).
fn mix(h: u64, word: u64) -> u64 {
    let mut x = (h ^ word).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^ (x >> 32)
}

impl Checksum {
    pub(crate) fn new() -> Self {
        Checksum {
            h: 0x6D6F_6972_615F_636B,
            pending: None,
        }
    }

    pub(crate) fn value(&self) -> u64 {
        self.h
    }

    pub(crate) fn word(&mut self, word: u64) {
        self.h = mix(self.h, word);
    }

    pub(crate) fn text(&mut self, s: &str) {
        self.word(s.len() as u64);
        for chunk in s.as_bytes().chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.word(u64::from_le_bytes(word));
        }
    }

    /// A whole array of floats: its length, then its values two by two (an odd last value
    /// paired with 0).
    pub(crate) fn floats(&mut self, a: &[f32]) {
        self.floats_begin(a.len());
        self.floats_piece(a);
        self.floats_end();
    }

    /// The start of an array of `len` floats.
    pub(crate) fn floats_begin(&mut self, len: usize) {
        self.word(len as u64);
        self.pending = None;
    }

    /// The next values of the array begun with [`Checksum::floats_begin`].
    pub(crate) fn floats_piece(&mut self, mut a: &[f32]) {
        if let (Some(lo), Some(&hi)) = (self.pending, a.first()) {
            self.word(u64::from(lo) | u64::from(hi.to_bits()) << 32);
            self.pending = None;
            a = &a[1..];
        }
        let mut pairs = a.chunks_exact(2);
        for pair in &mut pairs {
            self.word(u64::from(pair[0].to_bits()) | u64::from(pair[1].to_bits()) << 32);
        }
        if let [last] = pairs.remainder() {
            self.pending = Some(last.to_bits());
        }
    }

    /// The end of the array: an odd last value is mixed in with 0.
    pub(crate) fn floats_end(&mut self) {
        if let Some(lo) = self.pending.take() {
            self.word(u64::from(lo));
        }
    }

    /// The batch-normalisation values, after the weights.
    pub(crate) fn batch_norm(&mut self, model: &Model) {
        for b in &model.batch_norm {
            self.text(&b.layer);
            for v in [&b.scale, &b.bias, &b.running_mean, &b.running_variance] {
                self.floats(v);
            }
        }
    }

    /// The extra scalars and strings, after the extra tensors.
    pub(crate) fn extras_rest(&mut self, model: &Model) {
        for (name, v) in &model.extras.scalars {
            self.text(name);
            self.word(*v);
        }
        for (name, v) in &model.extras.strings {
            self.text(name);
            self.text(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Checksum;

    /// Pieces of any sizes give the checksum of the whole array.
    #[test]
    fn pieces_hash_like_the_whole() {
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.37 - 3.0).collect();
        let mut whole = Checksum::new();
        whole.floats(&a);
        for sizes in [
            vec![37],
            vec![1, 36],
            vec![3, 3, 3, 28],
            vec![0, 5, 0, 1, 31],
            vec![2; 18],
        ] {
            let mut h = Checksum::new();
            h.floats_begin(a.len());
            let mut at = 0;
            for s in sizes {
                let s = s.min(a.len() - at);
                h.floats_piece(&a[at..at + s]);
                at += s;
            }
            h.floats_piece(&a[at..]);
            h.floats_end();
            assert_eq!(h.value(), whole.value());
        }
    }
}
