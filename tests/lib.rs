//! End-to-end tests of Yitong live in `e2e/`; this library is empty so that the package has a
//! home for them outside `crates/`. Run them with the README's test command.
