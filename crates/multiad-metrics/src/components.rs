//! Connected components of a binary mask (8-connectivity, as the MVTec AD
//! reference evaluation's `scipy.ndimage.label` with a 3x3 structure).

/// Per-pixel component labels (0 = background, 1..=count) and each
/// component's size (`sizes[label - 1]`).
#[derive(Debug, Clone)]
pub struct Components {
    pub labels: Vec<u32>,
    pub sizes: Vec<u64>,
}

impl Components {
    pub fn count(&self) -> usize {
        self.sizes.len()
    }
}

fn find(parent: &mut [u32], mut x: u32) -> u32 {
    while parent[x as usize] != x {
        let p = parent[x as usize];
        parent[x as usize] = parent[p as usize];
        x = p;
    }
    x
}

fn union(parent: &mut [u32], a: u32, b: u32) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
        parent[hi as usize] = lo;
    }
}

/// Two-pass union-find labelling; labels are numbered in raster order of each
/// component's first pixel. `mask[y * width + x] != 0` is foreground.
pub fn label_components(mask: &[u8], width: usize, height: usize) -> Components {
    assert_eq!(mask.len(), width * height, "mask length must be width * height");
    let mut labels = vec![0u32; mask.len()];
    let mut parent: Vec<u32> = vec![0]; // index 0 = background
    for y in 0..height {
        for x in 0..width {
            let i = y * width + x;
            if mask[i] == 0 {
                continue;
            }
            // Already-visited neighbours: W, NW, N, NE.
            let mut neigh = [0u32; 4];
            if x > 0 {
                neigh[0] = labels[i - 1];
            }
            if y > 0 {
                let up = i - width;
                if x > 0 {
                    neigh[1] = labels[up - 1];
                }
                neigh[2] = labels[up];
                if x + 1 < width {
                    neigh[3] = labels[up + 1];
                }
            }
            let first = neigh.iter().copied().find(|&l| l != 0);
            match first {
                None => {
                    let l = parent.len() as u32;
                    parent.push(l);
                    labels[i] = l;
                }
                Some(l) => {
                    labels[i] = l;
                    for &m in &neigh {
                        if m != 0 && m != l {
                            union(&mut parent, l, m);
                        }
                    }
                }
            }
        }
    }
    // Compact roots to 1..=count in order of first appearance.
    let mut compact = vec![0u32; parent.len()];
    let mut sizes = Vec::new();
    for l in labels.iter_mut() {
        if *l == 0 {
            continue;
        }
        let r = find(&mut parent, *l) as usize;
        if compact[r] == 0 {
            sizes.push(0);
            compact[r] = sizes.len() as u32;
        }
        *l = compact[r];
        sizes[*l as usize - 1] += 1;
    }
    Components { labels, sizes }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagonal_pixels_join_and_separate_blobs_do_not() {
        #[rustfmt::skip]
        let m = [
            1, 0, 0, 0, 1,
            0, 1, 0, 0, 1,
            0, 0, 0, 0, 0,
            1, 1, 0, 1, 0,
            0, 0, 0, 0, 1,
        ];
        let c = label_components(&m, 5, 5);
        assert_eq!(c.count(), 4);
        assert_eq!(c.sizes, vec![2, 2, 2, 2]);
        assert_eq!(c.labels[0], c.labels[6]);
        assert_eq!(c.labels[18], c.labels[24]);
    }

    #[test]
    fn u_shape_merges_late() {
        #[rustfmt::skip]
        let m = [
            1, 0, 1,
            1, 0, 1,
            1, 1, 1,
        ];
        let c = label_components(&m, 3, 3);
        assert_eq!(c.count(), 1);
        assert_eq!(c.sizes, vec![7]);
    }
}
