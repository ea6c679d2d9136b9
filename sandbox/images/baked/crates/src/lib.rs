//! Empty: this package only exists to pin the baked crate set.
