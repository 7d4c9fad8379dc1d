//! The four services and who owns each running instance.

use std::fmt;

use crate::PoolCode;

/// A Yitong service; each owns its own tables.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Service {
    Identity,
    Catalog,
    Settlement,
    Ledger,
}

impl Service {
    pub const ALL: [Service; 4] = [
        Service::Identity,
        Service::Catalog,
        Service::Settlement,
        Service::Ledger,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Service::Identity => "identity",
            Service::Catalog => "catalog",
            Service::Settlement => "settlement",
            Service::Ledger => "ledger",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who runs an instance of a service: a pool (its node), or the clearing house (which runs the
/// ledger).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Owner {
    Pool(PoolCode),
    ClearingHouse,
}

impl fmt::Display for Owner {
    /// The name used for the owner's storage: "370100" or "clearing". A city's own pool has the
    /// city's code, so the stores a city's node kept before pools are the same stores.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Pool(code) => write!(f, "{code}"),
            Owner::ClearingHouse => f.write_str("clearing"),
        }
    }
}
