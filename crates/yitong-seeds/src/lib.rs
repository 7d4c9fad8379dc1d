//! The seed files under `seeds/`: the designated institutions, insured persons, catalog items
//! and policies every local network loads into empty stores.
//!
//! [`load_seeds`] reads them; the generator writes them from a fixed random seed, so the same
//! command always produces the same files (`yitong seed generate`).

mod read;

pub use read::{SeedError, Seeds, load_seeds};
