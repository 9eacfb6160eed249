//! Element types of the collectives: what may be moved ([`Element`]), what may be reduced
//! ([`Reduce`]), and the few wire types the transports reduce natively ([`Wire`]).

use super::Collective;
use crate::error::{Error, Result};

/// A reduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// Sum (integers: exact, wrapping; floats: order unspecified).
    Sum,
    /// Maximum (floats: under `total_cmp`).
    Max,
}

/// A read-only buffer of a wire type.
#[derive(Clone, Copy, Debug)]
pub enum Wire<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
    I32(&'a [i32]),
    I64(&'a [i64]),
    U64(&'a [u64]),
}

/// A mutable buffer of a wire type.
#[derive(Debug)]
pub enum WireMut<'a> {
    F32(&'a mut [f32]),
    F64(&'a mut [f64]),
    I32(&'a mut [i32]),
    I64(&'a mut [i64]),
    U64(&'a mut [u64]),
}

impl Wire<'_> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Wire::F32(b) => b.len(),
            Wire::F64(b) => b.len(),
            Wire::I32(b) => b.len(),
            Wire::I64(b) => b.len(),
            Wire::U64(b) => b.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl WireMut<'_> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            WireMut::F32(b) => b.len(),
            WireMut::F64(b) => b.len(),
            WireMut::I32(b) => b.len(),
            WireMut::I64(b) => b.len(),
            WireMut::U64(b) => b.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A plain-old-data element that collectives move as bytes (no padding, every bit pattern
/// valid): `u8`, `u32`, `u64`, `i32`, `i64`, `i128`, `f32`, `f64`.
pub trait Element: sealed::Sealed + Copy + Default + Send + Sync + 'static {
    /// The elements' bytes (native endianness).
    fn as_bytes(s: &[Self]) -> &[u8] {
        // SAFETY: `Self` is one of the sealed padding-free primitive types, so every byte of
        // the slice is initialised; u8 has alignment 1.
        unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<u8>(), size_of_val(s)) }
    }

    /// The elements' bytes, writable.
    fn as_bytes_mut(s: &mut [Self]) -> &mut [u8] {
        // SAFETY: as in `as_bytes`; moreover every bit pattern is a valid `Self`.
        unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<u8>(), size_of_val(s)) }
    }
}

macro_rules! element {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl Element for $t {}
    )*};
}
element!(u8, u32, u64, i32, i64, i128, f32, f64);

/// An element that collectives can reduce: `f32`, `f64` (sum, max), `i32`, `i64`, `u64` (sum
/// wrapping, max) and `i128` (sum only, exact and wrapping, for up to 2²¹ ranks).
pub trait Reduce: Element {
    /// See [`Collective::all_reduce`].
    fn all_reduce<C: Collective + ?Sized>(comm: &C, buf: &mut [Self], op: ReduceOp) -> Result<()>;

    /// See [`Collective::reduce_scatter`] (counts already checked).
    fn reduce_scatter<C: Collective + ?Sized>(
        comm: &C,
        send: &[Self],
        counts: &[usize],
        recv: &mut [Self],
        op: ReduceOp,
    ) -> Result<()>;
}

macro_rules! native {
    ($t:ty, $v:ident) => {
        impl Reduce for $t {
            fn all_reduce<C: Collective + ?Sized>(
                comm: &C,
                buf: &mut [Self],
                op: ReduceOp,
            ) -> Result<()> {
                comm.all_reduce_wire(WireMut::$v(buf), op)
            }

            fn reduce_scatter<C: Collective + ?Sized>(
                comm: &C,
                send: &[Self],
                counts: &[usize],
                recv: &mut [Self],
                op: ReduceOp,
            ) -> Result<()> {
                comm.reduce_scatter_wire(Wire::$v(send), counts, WireMut::$v(recv), op)
            }
        }
    };
}
native!(i32, I32);
native!(i64, I64);
native!(u64, U64);

/// The order-preserving integer key of a float's `total_cmp` (an involution).
#[inline]
fn key32(x: i32) -> i32 {
    x ^ ((((x >> 31) as u32) >> 1) as i32)
}

/// As [`key32`], for `f64`.
#[inline]
fn key64(x: i64) -> i64 {
    x ^ ((((x >> 63) as u64) >> 1) as i64)
}

macro_rules! float {
    ($t:ty, $v:ident, $int:ty, $iv:ident, $key:ident) => {
        impl Reduce for $t {
            fn all_reduce<C: Collective + ?Sized>(
                comm: &C,
                buf: &mut [Self],
                op: ReduceOp,
            ) -> Result<()> {
                match op {
                    ReduceOp::Sum => comm.all_reduce_wire(WireMut::$v(buf), op),
                    ReduceOp::Max => {
                        let mut keys: Vec<$int> =
                            buf.iter().map(|x| $key(x.to_bits() as $int)).collect();
                        comm.all_reduce_wire(WireMut::$iv(&mut keys), op)?;
                        for (x, k) in buf.iter_mut().zip(keys) {
                            *x = <$t>::from_bits($key(k) as _);
                        }
                        Ok(())
                    }
                }
            }

            fn reduce_scatter<C: Collective + ?Sized>(
                comm: &C,
                send: &[Self],
                counts: &[usize],
                recv: &mut [Self],
                op: ReduceOp,
            ) -> Result<()> {
                match op {
                    ReduceOp::Sum => {
                        comm.reduce_scatter_wire(Wire::$v(send), counts, WireMut::$v(recv), op)
                    }
                    ReduceOp::Max => {
                        let keys: Vec<$int> =
                            send.iter().map(|x| $key(x.to_bits() as $int)).collect();
                        let mut out: Vec<$int> = vec![0; recv.len()];
                        comm.reduce_scatter_wire(
                            Wire::$iv(&keys),
                            counts,
                            WireMut::$iv(&mut out),
                            op,
                        )?;
                        for (x, k) in recv.iter_mut().zip(out) {
                            *x = <$t>::from_bits($key(k) as _);
                        }
                        Ok(())
                    }
                }
            }
        }
    };
}
float!(f32, F32, i32, I32, key32);
float!(f64, F64, i64, I64, key64);

/// Bits per limb of an `i128` sum: 43 + 43 + 42 = 128; a limb sum stays below 2⁶⁴ for fewer
/// than 2²¹ ranks.
const LIMB_BITS: u32 = 43;
const LIMB_MASK: u128 = (1u128 << LIMB_BITS) - 1;
const MAX_I128_RANKS: usize = 1 << 21;

/// Splits each value (as two's complement `u128`) into three limbs.
fn to_limbs(values: &[i128]) -> Vec<u64> {
    let mut limbs = Vec::with_capacity(values.len() * 3);
    for &v in values {
        let u = v as u128;
        limbs.push((u & LIMB_MASK) as u64);
        limbs.push(((u >> LIMB_BITS) & LIMB_MASK) as u64);
        limbs.push((u >> (2 * LIMB_BITS)) as u64);
    }
    limbs
}

/// Recombines summed limbs into wrapping `i128` sums.
fn from_limbs(limbs: &[u64], out: &mut [i128]) {
    for (o, l) in out.iter_mut().zip(limbs.chunks_exact(3)) {
        let u = (l[0] as u128)
            .wrapping_add((l[1] as u128) << LIMB_BITS)
            .wrapping_add((l[2] as u128) << (2 * LIMB_BITS));
        *o = u as i128;
    }
}

fn i128_op<C: Collective + ?Sized>(comm: &C, op: ReduceOp) -> Result<()> {
    if op != ReduceOp::Sum {
        return Err(Error::Unsupported(
            "only sums of i128 are supported by the collectives".into(),
        ));
    }
    if comm.size() >= MAX_I128_RANKS {
        return Err(Error::Unsupported(format!(
            "i128 sums over {} ranks (at most {} supported)",
            comm.size(),
            MAX_I128_RANKS - 1
        )));
    }
    Ok(())
}

impl Reduce for i128 {
    fn all_reduce<C: Collective + ?Sized>(comm: &C, buf: &mut [Self], op: ReduceOp) -> Result<()> {
        i128_op(comm, op)?;
        let mut limbs = to_limbs(buf);
        comm.all_reduce_wire(WireMut::U64(&mut limbs), ReduceOp::Sum)?;
        from_limbs(&limbs, buf);
        Ok(())
    }

    fn reduce_scatter<C: Collective + ?Sized>(
        comm: &C,
        send: &[Self],
        counts: &[usize],
        recv: &mut [Self],
        op: ReduceOp,
    ) -> Result<()> {
        i128_op(comm, op)?;
        let limbs = to_limbs(send);
        let counts3: Vec<usize> = counts.iter().map(|&c| 3 * c).collect();
        let mut out = vec![0u64; 3 * recv.len()];
        comm.reduce_scatter_wire(Wire::U64(&limbs), &counts3, WireMut::U64(&mut out), op)?;
        from_limbs(&out, recv);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_keys_follow_total_cmp_and_invert() {
        let xs = [
            f32::NEG_INFINITY,
            -3.5,
            -0.0,
            0.0,
            1e-40,
            2.0,
            f32::INFINITY,
            f32::NAN,
        ];
        for w in xs.windows(2) {
            let (a, b) = (key32(w[0].to_bits() as i32), key32(w[1].to_bits() as i32));
            assert!(a < b, "{} < {}", w[0], w[1]);
        }
        for x in xs {
            let k = key32(x.to_bits() as i32);
            assert_eq!(key32(k) as u32, x.to_bits());
        }
        let k = key64((-2.5f64).to_bits() as i64);
        assert!(k < key64(0f64.to_bits() as i64));
        assert_eq!(key64(k) as u64, (-2.5f64).to_bits());
    }

    #[test]
    fn limbs_round_trip_and_sum() {
        let vals = [
            0i128,
            1,
            -1,
            i128::MAX,
            i128::MIN,
            123_456_789_012_345_678_901,
        ];
        let mut back = [0i128; 6];
        from_limbs(&to_limbs(&vals), &mut back);
        assert_eq!(back, vals);
        // Limb-wise sums recombine to the wrapping sum.
        let (a, b) = (to_limbs(&vals), to_limbs(&[-5i128; 6]));
        let sum: Vec<u64> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        from_limbs(&sum, &mut back);
        let expect: Vec<i128> = vals.iter().map(|v| v.wrapping_add(-5)).collect();
        assert_eq!(back.to_vec(), expect);
    }
}
