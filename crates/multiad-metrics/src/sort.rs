//! Order-preserving integer keys for `f32` scores and an LSD radix sort over
//! them: sorting 10^8 keys this way is several times faster than a comparison
//! sort and needs no float comparisons.

/// Maps a non-NaN `f32` to a `u32` whose unsigned order equals the float order.
/// `-0.0` is folded onto `+0.0` so that the two count as one tied score, as they
/// do in NumPy / scikit-learn.
#[inline]
pub fn key_of(x: f32) -> u32 {
    let x = if x == 0.0 { 0.0f32 } else { x };
    let b = x.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// Inverse of [`key_of`].
#[inline]
pub fn score_of(k: u32) -> f32 {
    let b = if k & 0x8000_0000 != 0 { k & 0x7fff_ffff } else { !k };
    f32::from_bits(b)
}

const DIGIT_BITS: u32 = 11;
const BUCKETS: usize = 1 << DIGIT_BITS;

/// Something a radix sort can order by a 32-bit key.
pub trait RadixItem: Copy + Default + Send {
    fn key(&self) -> u32;
}

impl RadixItem for u32 {
    #[inline]
    fn key(&self) -> u32 {
        *self
    }
}

/// A key with a 32-bit payload (a region id for AUPRO), ordered by key only.
impl RadixItem for u64 {
    #[inline]
    fn key(&self) -> u32 {
        (*self >> 32) as u32
    }
}

/// Sorts ascending by key in three 11-bit passes; stable, O(n), one scratch copy.
pub fn radix_sort<T: RadixItem>(items: &mut Vec<T>) {
    if items.len() < 256 {
        items.sort_unstable_by_key(|x| x.key());
        return;
    }
    let mut scratch = vec![T::default(); items.len()];
    // All three histograms in one read of the data.
    let mut hist = vec![[0usize; BUCKETS]; 3];
    for it in items.iter() {
        let k = it.key();
        for (pass, h) in hist.iter_mut().enumerate() {
            h[((k >> (pass as u32 * DIGIT_BITS)) as usize) & (BUCKETS - 1)] += 1;
        }
    }
    let mut src_is_items = true;
    for (pass, h) in hist.iter().enumerate() {
        // A pass whose digit is the same for every item changes nothing.
        if h.contains(&items.len()) {
            continue;
        }
        let mut offsets = [0usize; BUCKETS];
        let mut sum = 0;
        for (o, &c) in offsets.iter_mut().zip(h.iter()) {
            *o = sum;
            sum += c;
        }
        let shift = pass as u32 * DIGIT_BITS;
        let (src, dst) = if src_is_items { (&items[..], &mut scratch[..]) } else { (&scratch[..], &mut items[..]) };
        for it in src {
            let d = ((it.key() >> shift) as usize) & (BUCKETS - 1);
            dst[offsets[d]] = *it;
            offsets[d] += 1;
        }
        src_is_items = !src_is_items;
    }
    if !src_is_items {
        std::mem::swap(items, &mut scratch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_preserve_order() {
        let xs = [f32::NEG_INFINITY, -1e30, -1.5, -f32::MIN_POSITIVE, 0.0, f32::MIN_POSITIVE, 0.25, 1.0, 3e38, f32::INFINITY];
        for w in xs.windows(2) {
            assert!(key_of(w[0]) < key_of(w[1]), "{} vs {}", w[0], w[1]);
        }
        for &x in &xs {
            assert_eq!(score_of(key_of(x)), x);
        }
        assert_eq!(key_of(-0.0), key_of(0.0));
    }

    #[test]
    fn radix_sort_matches_comparison_sort() {
        let mut state = 12345u64;
        let mut v: Vec<u32> = (0..100_000)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (state >> 33) as u32 ^ ((state >> 13) as u32 & 0xff)
            })
            .collect();
        let mut expected = v.clone();
        expected.sort_unstable();
        radix_sort(&mut v);
        assert_eq!(v, expected);

        // Payloads ride along and the sort is stable.
        let mut p: Vec<u64> = (0..5000u64).map(|i| ((i % 7) << 32) | i).collect();
        radix_sort(&mut p);
        for w in p.windows(2) {
            let (a, b) = (w[0] >> 32, w[1] >> 32);
            assert!(a < b || (a == b && (w[0] as u32) < (w[1] as u32)));
        }
    }
}
