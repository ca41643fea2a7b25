//! Choosing an endpoint for each call, in proportion to the weights.
//!
//! Owns: the immutable [`Picker`] built for one set of usable endpoints.
//! Must never: lock, allocate or block on the call path; a new endpoint set
//! means a new `Picker`, swapped in atomically by its owner.

mod picker;

pub(crate) use picker::gcd;
pub use picker::{Picker, PickerError};
