//! Synthetic clustered data shared by the CLI tests: users in clusters, each liking distinct
//! items of its own cluster (each cluster owns `items / clusters` items), so a model that
//! learns the clusters beats a random ranking by far.

/// The shape of the clustered data set.
pub struct Clusters {
    /// Items in the catalogue.
    pub items: u64,
    /// Clusters of users and items.
    pub clusters: u64,
    /// Items per user (training and held-out together).
    pub per_user: usize,
}

/// A seeded 64-bit mix of `(a, b)` (SplitMix64's finaliser).
pub fn hash(a: u64, b: u64) -> u64 {
    let mut x = a
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(b)
        .wrapping_add(0x632B_E59B_D9B4_E019);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl Clusters {
    /// User `u`'s `per_user` distinct items, all from cluster `u % clusters`.
    pub fn user_items(&self, u: u64) -> Vec<u64> {
        let per = self.items / self.clusters;
        let base = (u % self.clusters) * per;
        let mut items = Vec::new();
        let mut k = 0;
        while items.len() < self.per_user {
            let item = base + hash(u, k) % per;
            k += 1;
            if !items.contains(&item) {
                items.push(item);
            }
        }
        items
    }

    /// Lists-format lines (`user item item …`) of users `0..users`, items `range` of each.
    pub fn lists(&self, users: u64, range: std::ops::Range<usize>) -> String {
        let mut text = String::new();
        for u in 0..users {
            text.push_str(&format!("u{u}"));
            for item in &self.user_items(u)[range.clone()] {
                text.push_str(&format!(" i{item}"));
            }
            text.push('\n');
        }
        text
    }
}
