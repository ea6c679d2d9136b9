//! The Docker executor lives here (issue: shared code execution). Architecture invariant: only this crate starts containers.
