//! The only home of generated code: one module per proto package, and the descriptor set.
//!
//! Wire types stop at the service boundary: each service crate converts them into its domain
//! types with `TryFrom`, so nothing past the handler sees a prost struct.

/// `yitong.identity.v1`: persons, cards, e-vouchers.
pub mod identity {
    pub mod v1 {
        tonic::include_proto!("yitong.identity.v1");
    }
}

/// `yitong.catalog.v1`: catalog items, versions, policies, institutions.
pub mod catalog {
    pub mod v1 {
        tonic::include_proto!("yitong.catalog.v1");
    }
}

/// `yitong.settlement.v1`: visits, fee lines, settlements and the insured city's benefits.
pub mod settlement {
    pub mod v1 {
        tonic::include_proto!("yitong.settlement.v1");
    }
}

/// `yitong.ledger.v1`: the clearing house's journal, reconciliation and clearing.
pub mod ledger {
    pub mod v1 {
        tonic::include_proto!("yitong.ledger.v1");
    }
}

/// `yitong.audit.v1`: the audit trail every server keeps of its store.
pub mod audit {
    pub mod v1 {
        tonic::include_proto!("yitong.audit.v1");
    }
}

/// Encoded `FileDescriptorSet` of every Yitong proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("yitong_descriptor");
