//! A refused input value, named by its field path (INVALID_ARGUMENT on the wire, through
//! `yitong_rpc::invalid_argument`).

/// One input field that failed validation.
///
/// The field path follows the request message ("credential.card_number", "lines[3].quantity"),
/// so an HIS developer finds the offending field without reading our code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    field: String,
    reason: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Nests this violation under a parent field: `credential` + `card_number`.
    pub fn within(mut self, parent: &str) -> Self {
        self.field = if self.field.is_empty() {
            parent.to_owned()
        } else {
            format!("{parent}.{}", self.field)
        };
        self
    }

    /// Renames the field, for values parsed before their place in the request is known.
    pub fn at(mut self, field: impl Into<String>) -> Self {
        self.field = field.into();
        self
    }

    pub fn field(&self) -> &str {
        &self.field
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }
}
