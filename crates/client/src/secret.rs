//! Secrets (tokens, passwords) are `secrecy` types: `Debug` prints `[REDACTED]`, so they cannot
//! leak through logs, and the memory is zeroed on drop. Read one with [`ExposeSecret`] only
//! where it is sent, never where it is logged.

pub use secrecy::{ExposeSecret, SecretString};
