//! The one logging shim: `defmt`, `log`, or nothing. Every other module logs through these macros.
#![allow(unused_macros)]

// The style guide asks for `compile_error!` when both are enabled, but CI builds with `--all-features`, so both must
// compile together: then `log` logs (host builds, no defmt logger to link) and `defmt` only derives `Format`.

macro_rules! trace {
    ($($arg:tt)*) => {{
        #[cfg(all(feature = "defmt", not(feature = "log")))]
        ::defmt::trace!($($arg)*);
        #[cfg(feature = "log")]
        ::log::trace!($($arg)*);
        #[cfg(not(any(feature = "defmt", feature = "log")))]
        {
            let _ = ($($arg)*);
        }
    }};
}

macro_rules! debug {
    ($($arg:tt)*) => {{
        #[cfg(all(feature = "defmt", not(feature = "log")))]
        ::defmt::debug!($($arg)*);
        #[cfg(feature = "log")]
        ::log::debug!($($arg)*);
        #[cfg(not(any(feature = "defmt", feature = "log")))]
        {
            let _ = ($($arg)*);
        }
    }};
}

macro_rules! warn {
    ($($arg:tt)*) => {{
        #[cfg(all(feature = "defmt", not(feature = "log")))]
        ::defmt::warn!($($arg)*);
        #[cfg(feature = "log")]
        ::log::warn!($($arg)*);
        #[cfg(not(any(feature = "defmt", feature = "log")))]
        {
            let _ = ($($arg)*);
        }
    }};
}
