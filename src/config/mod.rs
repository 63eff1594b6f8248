//! Pipeline files: parsing, interpolation, deserialization and validation.
pub mod de;
pub mod error;
pub mod interpolate;
pub mod spanned;
pub mod yaml;

pub use error::{ConfigError, ConfigErrors, Location, did_you_mean};
pub use spanned::{Span, Spanned};
