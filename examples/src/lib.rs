//! Example programs live beside this crate (`examples/*.rs`); see the README there.
