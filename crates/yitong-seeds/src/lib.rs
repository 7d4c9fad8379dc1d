//! The seed files under `seeds/`: the designated institutions, insured persons, catalog items
//! and policies every local network loads into empty stores.
//!
//! [`load_seeds`] reads them; the generator writes them from a fixed random seed, so the same
//! command always produces the same files (`yitong seed generate`).

mod catalog;
mod generate_catalog;
mod generate_persons;
mod read;

pub use generate_catalog::write_catalog_seeds;
pub use generate_persons::{PERSONS_PER_CITY, write_persons};
pub use read::{SeedError, Seeds, load_seeds};
