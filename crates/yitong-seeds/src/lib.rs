//! The seed files under `seeds/`: the designated institutions, insured persons, catalog items
//! and policies every local network loads into empty stores.
//!
//! [`load_seeds`] reads them; the generator ([`write_seeds`]) writes them for every city of the
//! network file from a fixed random seed, so the same command always produces the same files
//! (`yitong seed generate`).

mod catalog;
mod generate;
mod generate_catalog;
mod generate_persons;
mod read;

pub use generate::{GENERATED_FILES, write_seeds};
pub use generate_catalog::write_catalog_seeds;
pub use generate_persons::{PERSONS_PER_CITY, PERSONS_PER_JOINING_CITY, write_persons};
pub use read::{SeedError, Seeds, load_seeds};
